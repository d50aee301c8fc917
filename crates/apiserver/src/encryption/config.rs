//! The EncryptionConfiguration file (`--encryption-provider-config`), as
//! kube-apiserver reads it: for each group of resources, an ordered provider list whose
//! first entry encrypts new writes and all of which can read.

use std::path::Path;

use base64::Engine;
use serde::Deserialize;

use super::providers::{Provider, ProviderKind};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct File {
    api_version: Option<String>,
    kind: Option<String>,
    #[serde(default)]
    resources: Vec<ResourceEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceEntry {
    resources: Vec<String>,
    providers: Vec<ProviderEntry>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ProviderEntry {
    aesgcm: Option<Keys>,
    aescbc: Option<Keys>,
    secretbox: Option<Keys>,
    identity: Option<serde_json::Value>,
    kms: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Keys {
    keys: Vec<Key>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Key {
    name: String,
    secret: String,
}

/// One `resources` entry: which resources it covers and how they are stored.
pub struct Rule {
    /// `secrets`, `deployments.apps`, `*.apps`, `*.*` (upstream's notation).
    pub resources: Vec<String>,
    pub providers: Vec<Provider>,
}

impl Rule {
    /// Whether the rule covers a resource of `group` with `plural`.
    pub fn covers(&self, group: &str, plural: &str) -> bool {
        self.resources.iter().any(|r| {
            let (res, grp) = r.split_once('.').unwrap_or((r.as_str(), ""));
            let group_ok = grp == "*" || grp == group;
            group_ok && (res == "*" || res == plural)
        })
    }
}

pub fn load(path: &Path) -> Result<Vec<Rule>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("reading encryption configuration {}: {e}", path.display()))?;
    parse(&text).map_err(|why| format!("encryption configuration {}: {why}", path.display()))
}

pub fn parse(text: &str) -> Result<Vec<Rule>, String> {
    let file: File = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
    if file.kind.as_deref() != Some("EncryptionConfiguration") {
        return Err("kind must be EncryptionConfiguration".into());
    }
    match file.api_version.as_deref() {
        Some("apiserver.config.k8s.io/v1") => {}
        other => {
            return Err(format!(
                "apiVersion {:?} is not supported: use apiserver.config.k8s.io/v1",
                other.unwrap_or("")
            ))
        }
    }
    let mut rules = Vec::new();
    for (i, entry) in file.resources.into_iter().enumerate() {
        let at = format!("resources[{i}]");
        if entry.resources.is_empty() {
            return Err(format!("{at}.resources: Required value"));
        }
        for r in &entry.resources {
            if r.starts_with("*.") && r != "*.*" && r.matches('.').count() == 0 {
                return Err(format!("{at}.resources: Invalid value: {r:?}"));
            }
        }
        if entry.providers.is_empty() {
            return Err(format!("{at}.providers: Required value"));
        }
        let mut providers = Vec::new();
        for (j, p) in entry.providers.into_iter().enumerate() {
            providers.extend(provider(p, &format!("{at}.providers[{j}]"))?);
        }
        rules.push(Rule {
            resources: entry.resources,
            providers,
        });
    }
    Ok(rules)
}

/// The providers one entry names (each key of a keyed provider is one reader; the first
/// key of the first provider is the writer).
fn provider(p: ProviderEntry, at: &str) -> Result<Vec<Provider>, String> {
    let set = [
        p.aesgcm.is_some(),
        p.aescbc.is_some(),
        p.secretbox.is_some(),
        p.identity.is_some(),
        p.kms.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if set != 1 {
        return Err(format!(
            "{at}: exactly one of aesgcm, aescbc, secretbox, identity must be given"
        ));
    }
    if p.kms.is_some() {
        return Err(format!(
            "{at}.kms: KMS providers are not supported by Skiff; use aesgcm, aescbc or secretbox"
        ));
    }
    if p.identity.is_some() {
        return Ok(vec![Provider::identity()]);
    }
    let (kind, keys) = if let Some(k) = p.aesgcm {
        (ProviderKind::AesGcm, k)
    } else if let Some(k) = p.aescbc {
        (ProviderKind::AesCbc, k)
    } else {
        (
            ProviderKind::Secretbox,
            p.secretbox.unwrap_or(Keys { keys: Vec::new() }),
        )
    };
    if keys.keys.is_empty() {
        return Err(format!("{at}.{}.keys: Required value", kind.name()));
    }
    let mut out = Vec::new();
    for (k, key) in keys.keys.into_iter().enumerate() {
        let kat = format!("{at}.{}.keys[{k}]", kind.name());
        if key.name.is_empty() || key.name.contains(':') {
            return Err(format!(
                "{kat}.name: Invalid value: {:?}: a non-empty name without ':' is required",
                key.name
            ));
        }
        let secret = base64::engine::general_purpose::STANDARD
            .decode(key.secret.trim())
            .map_err(|e| format!("{kat}.secret: Invalid value: not valid base64: {e}"))?;
        out.push(
            Provider::keyed(kind, &key.name, &secret)
                .map_err(|why| format!("{kat}.secret: {why}"))?,
        );
    }
    Ok(out)
}
