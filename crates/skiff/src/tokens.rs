//! Join tokens, like k3s and kubeadm: the server's own bootstrap token (`--token` /
//! `SKIFF_TOKEN`, or one generated on first start) kept as a full join token
//! `K10<sha256 of the CA>::<id>.<secret>` in `<data-dir>/server/token`, and
//! `skiff token create|list|delete` for more, all stored as bootstrap token Secrets.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use base64::Engine;
use clap::{Args, Subcommand};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::Api;
use skiff_api::jointoken::{BootstrapToken, JoinToken, SECRET_NAMESPACE, SECRET_TYPE};

/// Group every token made here adds, so one binding can cover all joining nodes.
pub const NODE_TOKEN_GROUP: &str = "system:bootstrappers:skiff:default-node-token";

fn random_token() -> BootstrapToken {
    let bytes: [u8; 22] = rand::random();
    BootstrapToken::from_random(&bytes)
}

/// A bootstrap token Secret, as kubeadm writes them.
pub fn token_secret(
    token: &BootstrapToken,
    expiration: Option<jiff::Timestamp>,
    description: &str,
) -> Secret {
    let mut data: BTreeMap<String, ByteString> = [
        ("token-id", token.id.as_str()),
        ("token-secret", token.secret.as_str()),
        ("usage-bootstrap-authentication", "true"),
        ("usage-bootstrap-signing", "true"),
        ("auth-extra-groups", NODE_TOKEN_GROUP),
        ("description", description),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
    .collect();
    if let Some(at) = expiration {
        data.insert(
            "expiration".into(),
            ByteString(at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string().into_bytes()),
        );
    }
    Secret {
        metadata: ObjectMeta {
            name: Some(token.secret_name()),
            namespace: Some(SECRET_NAMESPACE.into()),
            ..Default::default()
        },
        type_: Some(SECRET_TYPE.into()),
        data: Some(data),
        ..Default::default()
    }
}

/// Creates the Secret for `token`, or brings an existing one of that id up to date.
async fn store_token(client: &kube::Client, secret: &Secret) -> Result<()> {
    let api: Api<Secret> = Api::namespaced(client.clone(), SECRET_NAMESPACE);
    let name = secret.metadata.name.clone().unwrap_or_default();
    match api.create(&PostParams::default(), secret).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let mut current = api.get(&name).await?;
            if current.data == secret.data && current.type_ == secret.type_ {
                return Ok(());
            }
            current.data = secret.data.clone();
            current.type_ = secret.type_.clone();
            api.replace(&name, &PostParams::default(), &current).await?;
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("creating Secret kube-system/{name}")),
    }
}

/// Makes sure the server's join token exists: the one given, else the one kept from an
/// earlier start, else a new one. Returns the path of the token file.
pub async fn ensure_server_token(
    client: &kube::Client,
    data_dir: &Path,
    ca_pem: &str,
    given: Option<&str>,
) -> Result<PathBuf> {
    let hash = skiff_runtime::join::ca_hash(ca_pem);
    let path = data_dir.join("server").join("token");
    let token = match given {
        Some(t) => {
            let parsed = JoinToken::parse(t).map_err(|e| anyhow::anyhow!("--token: {e}"))?;
            if parsed.ca_hash.as_deref().is_some_and(|h| h != hash) {
                bail!("--token names a CA hash that is not this server's CA ({hash})");
            }
            parsed.token
        }
        None => match std::fs::read_to_string(&path) {
            Ok(text) => {
                JoinToken::parse(&text)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
                    .token
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => random_token(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        },
    };
    store_token(
        client,
        &token_secret(&token, None, "The default bootstrap token of skiff server."),
    )
    .await?;
    write_private(&path, &format!("{}\n", JoinToken::full(&hash, &token)))?;
    Ok(path)
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(contents.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// Go-style durations as kubeadm's `--ttl` takes them: `24h`, `1h30m`, `90s`; `0` never
/// expires.
pub fn parse_duration(s: &str) -> Result<Option<Duration>> {
    let s = s.trim();
    if s == "0" {
        return Ok(None);
    }
    let mut total = 0u64;
    let mut number = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: u64 = number
            .parse()
            .with_context(|| format!("invalid duration {s:?}"))?;
        number.clear();
        total += n * match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => bail!("invalid duration {s:?}: units are s, m, h, d"),
        };
    }
    if !number.is_empty() || total == 0 {
        bail!("invalid duration {s:?} (for example 24h, 1h30m, or 0 for never)");
    }
    Ok(Some(Duration::from_secs(total)))
}

#[derive(Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
    /// Kubeconfig of the cluster [default: <data-dir>/kubeconfig.yaml].
    #[arg(long, global = true, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// The server's data dir (for its admin kubeconfig).
    #[arg(long, global = true, env = "SKIFF_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a join token and print it (K10<CA hash>::<id>.<secret>).
    Create {
        /// How long the token is valid (e.g. 24h, 30m); 0 for never.
        #[arg(long, default_value = "24h")]
        ttl: String,
        /// A description of what the token is for.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List the bootstrap tokens.
    List,
    /// Delete bootstrap tokens by id or full token.
    Delete { tokens: Vec<String> },
}

pub async fn run(args: TokenArgs, default_data_dir: PathBuf) -> Result<()> {
    let kubeconfig = args.kubeconfig.unwrap_or_else(|| {
        args.data_dir
            .unwrap_or(default_data_dir)
            .join("kubeconfig.yaml")
    });
    let client = skiff_runtime::client::from_kubeconfig_file(&kubeconfig).await?;
    let api: Api<Secret> = Api::namespaced(client.clone(), SECRET_NAMESPACE);
    match args.command {
        TokenCommand::Create { ttl, description } => {
            let ca = ca_from_kubeconfig(&kubeconfig)?;
            let token = random_token();
            let expiration = parse_duration(&ttl)?.map(|d| {
                jiff::Timestamp::now() + jiff::SignedDuration::from_secs(d.as_secs() as i64)
            });
            store_token(&client, &token_secret(&token, expiration, &description)).await?;
            println!(
                "{}",
                JoinToken::full(&skiff_runtime::join::ca_hash(&ca), &token)
            );
        }
        TokenCommand::List => {
            let secrets = api
                .list(&ListParams::default().fields(&format!("type={SECRET_TYPE}")))
                .await
                .context("listing bootstrap token Secrets")?;
            println!(
                "{:<24} {:<8} {:<21} {:<34} {:<24} EXTRA GROUPS",
                "TOKEN", "TTL", "EXPIRES", "USAGES", "DESCRIPTION"
            );
            for s in secrets.items {
                let get = |k: &str| {
                    s.data
                        .as_ref()
                        .and_then(|d| d.get(k))
                        .map(|v| String::from_utf8_lossy(&v.0).to_string())
                        .unwrap_or_default()
                };
                let usages: Vec<String> = s
                    .data
                    .iter()
                    .flatten()
                    .filter(|(k, v)| k.starts_with("usage-bootstrap-") && v.0 == b"true")
                    .map(|(k, _)| k.trim_start_matches("usage-bootstrap-").to_string())
                    .collect();
                let expires = get("expiration");
                let ttl = match expires.parse::<jiff::Timestamp>() {
                    Ok(at) => {
                        let left = at.as_second() - jiff::Timestamp::now().as_second();
                        if left <= 0 {
                            "<expired>".to_string()
                        } else {
                            format!("{}h", (left + 1799) / 3600)
                        }
                    }
                    Err(_) => "<forever>".to_string(),
                };
                println!(
                    "{:<24} {:<8} {:<21} {:<34} {:<24} {}",
                    format!("{}.{}", get("token-id"), get("token-secret")),
                    ttl,
                    if expires.is_empty() {
                        "<never>".to_string()
                    } else {
                        expires
                    },
                    usages.join(","),
                    get("description"),
                    get("auth-extra-groups"),
                );
            }
        }
        TokenCommand::Delete { tokens } => {
            for t in tokens {
                let id = match JoinToken::parse(&t) {
                    Ok(j) => j.token.id,
                    Err(_) => t.clone(),
                };
                let name = format!("{}{id}", skiff_api::jointoken::SECRET_PREFIX);
                api.delete(&name, &DeleteParams::default())
                    .await
                    .with_context(|| format!("deleting bootstrap token {id}"))?;
                println!("bootstrap token \"{id}\" deleted");
            }
        }
    }
    Ok(())
}

/// The cluster CA (PEM) a kubeconfig's current cluster names.
fn ca_from_kubeconfig(path: &Path) -> Result<String> {
    let kc = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("reading {}", path.display()))?;
    let context = kc.current_context.clone().unwrap_or_default();
    let cluster_name = kc
        .contexts
        .iter()
        .find(|c| c.name == context)
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone())
        .unwrap_or_default();
    let cluster = kc
        .clusters
        .iter()
        .find(|c| c.name == cluster_name)
        .and_then(|c| c.cluster.as_ref())
        .with_context(|| format!("{}: no cluster for the current context", path.display()))?;
    if let Some(data) = &cluster.certificate_authority_data {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .context("certificate-authority-data is not base64")?;
        return String::from_utf8(bytes).context("certificate-authority-data is not PEM");
    }
    if let Some(file) = &cluster.certificate_authority {
        return std::fs::read_to_string(file).with_context(|| format!("reading {file}"));
    }
    bail!(
        "{}: the cluster names no certificate authority",
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("24h").unwrap(),
            Some(Duration::from_secs(86400))
        );
        assert_eq!(
            parse_duration("1h30m").unwrap(),
            Some(Duration::from_secs(5400))
        );
        assert_eq!(parse_duration("0").unwrap(), None);
        for bad in ["", "h", "10", "5y", "-1h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_hold_what_the_authenticator_reads() {
        let t = BootstrapToken::parse("abcdef.0123456789abcdef").unwrap();
        let s = token_secret(&t, Some("2030-01-01T00:00:00Z".parse().unwrap()), "d");
        assert_eq!(s.metadata.name.as_deref(), Some("bootstrap-token-abcdef"));
        let data = s.data.unwrap();
        assert_eq!(data["token-secret"].0, b"0123456789abcdef");
        assert_eq!(data["expiration"].0, b"2030-01-01T00:00:00Z");
        assert_eq!(data["usage-bootstrap-authentication"].0, b"true");
    }
}
