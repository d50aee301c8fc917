//! Authentication: client certificates signed by the cluster CA (user = CN, groups = O),
//! then bearer tokens: a static token file (kube-apiserver's `--token-auth-file`),
//! bootstrap tokens (`<id>.<secret>`, checked against their Secret) and service account
//! JWTs (signature, claims, and the account and bound object still existing with the same
//! UID). No credentials, or bad ones, is a 401: there is no anonymous user.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;
use skiff_api::jointoken::BootstrapToken;

use super::sa_token::{self, SigningKey};
use super::UserInfo;
use crate::ServerError;

/// The user a verified client certificate names.
pub fn identity_from_cert(der: &[u8]) -> Option<UserInfo> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let cn = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    let orgs: Vec<String> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    let orgs: Vec<&str> = orgs.iter().map(String::as_str).collect();
    Some(UserInfo::new(&cn, &orgs))
}

/// Static bearer tokens: CSV lines `token,user,uid[,"group1,group2"]`.
#[derive(Default)]
pub struct TokenFile {
    tokens: HashMap<String, UserInfo>,
}

impl TokenFile {
    pub fn load(path: &Path) -> Result<Self, ServerError> {
        let text = std::fs::read_to_string(path).map_err(|e| ServerError::io(path, e))?;
        Self::parse(&text)
            .map_err(|why| ServerError::Config(format!("token file {}: {why}", path.display())))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let mut tokens = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (head, groups) = match line.find('"') {
                Some(q) => (&line[..q], line[q..].trim_matches('"')),
                None => (line, ""),
            };
            let fields: Vec<&str> = head.split(',').map(str::trim).collect();
            if fields.len() < 3 || fields[0].is_empty() || fields[1].is_empty() {
                return Err(format!(
                    "line {}: expected token,user,uid[,\"groups\"]",
                    n + 1
                ));
            }
            let groups: Vec<&str> = groups
                .split(',')
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .collect();
            let mut user = UserInfo::new(fields[1], &groups);
            user.uid = fields[2].to_string();
            tokens.insert(fields[0].to_string(), user);
        }
        Ok(Self { tokens })
    }

    pub fn lookup(&self, token: &str) -> Option<&UserInfo> {
        self.tokens.get(token)
    }
}

/// Reads objects for token checks: the watch cache, then the store for what the cache
/// has not seen yet (an account created a moment ago).
#[async_trait::async_trait]
pub trait Objects: Send + Sync {
    async fn get_object(&self, plural: &str, namespace: &str, name: &str) -> Option<Value>;
}

#[async_trait::async_trait]
impl Objects for crate::App {
    async fn get_object(&self, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        let def = crate::resources::find("", "v1", plural)?;
        let key = crate::storage::object_key(def, namespace, name);
        if let Some(obj) = self.cache.resource(def).and_then(|c| c.get(&key)) {
            return Some(obj.value());
        }
        self.storage.get(&key).await.ok().flatten()
    }
}

/// Service account token verification settings (`--service-account-issuer`,
/// `--api-audiences`) and the key that signs and checks them.
pub struct ServiceAccountTokens {
    pub key: SigningKey,
    pub issuer: String,
    pub audiences: Vec<String>,
}

/// The authentication step: certificate first, then bearer token.
#[derive(Default)]
pub struct Authenticator {
    pub tokens: TokenFile,
    pub service_accounts: Option<ServiceAccountTokens>,
    /// Bootstrap token Secrets authenticate (upstream's `--enable-bootstrap-token-auth`).
    pub bootstrap_tokens: bool,
}

impl Authenticator {
    /// `cert_user` is the identity of a verified client certificate on the connection.
    pub async fn authenticate(
        &self,
        cert_user: Option<&UserInfo>,
        authorization: Option<&str>,
        objects: &dyn Objects,
    ) -> Option<UserInfo> {
        if let Some(user) = cert_user {
            return Some(user.clone());
        }
        let token = authorization?.strip_prefix("Bearer ")?.trim();
        if let Some(user) = self.tokens.lookup(token) {
            return Some(user.clone());
        }
        if self.bootstrap_tokens {
            if let Some(bt) = BootstrapToken::parse(token) {
                let secret = objects
                    .get_object(
                        "secrets",
                        skiff_api::jointoken::SECRET_NAMESPACE,
                        &bt.secret_name(),
                    )
                    .await;
                return super::bootstrap_token::authenticate(
                    &bt,
                    secret.as_ref(),
                    jiff::Timestamp::now(),
                );
            }
        }
        let sa = self.service_accounts.as_ref()?;
        service_account_user(sa, token, objects).await
    }
}

fn uid(obj: &Value) -> &str {
    obj.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Whether `obj` exists now as the object the token was bound to (same UID, and for a pod
/// not past its deletion time, as upstream checks).
fn still_bound(obj: Option<&Value>, want_uid: &str, now: jiff::Timestamp) -> bool {
    let Some(obj) = obj else { return false };
    if uid(obj) != want_uid {
        return false;
    }
    let deleting = obj
        .pointer("/metadata/deletionTimestamp")
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<jiff::Timestamp>().ok());
    deleting.is_none_or(|t| t > now)
}

/// Checks a service account JWT and returns its user, with upstream's extra info.
async fn service_account_user(
    sa: &ServiceAccountTokens,
    token: &str,
    objects: &dyn Objects,
) -> Option<UserInfo> {
    let claims = sa.key.verify_signature(token)?;
    let now = jiff::Timestamp::now();
    if let Err(why) = sa_token::check_claims(&claims, &sa.issuer, &sa.audiences, now.as_second()) {
        tracing::debug!(?why, "service account token refused");
        return None;
    }
    let k = &claims.kubernetes;
    let account = objects
        .get_object("serviceaccounts", &k.namespace, &k.serviceaccount.name)
        .await;
    if !still_bound(account.as_ref(), &k.serviceaccount.uid, now) {
        tracing::debug!(account = %claims.sub, "service account token refused: the account is gone or was replaced");
        return None;
    }
    let mut extra: Vec<(&str, String)> = vec![(
        "authentication.kubernetes.io/credential-id",
        format!("JTI={}", claims.jti),
    )];
    for (plural, bound) in [("pods", &k.pod), ("secrets", &k.secret)] {
        if let Some(bound) = bound {
            let obj = objects.get_object(plural, &k.namespace, &bound.name).await;
            if !still_bound(obj.as_ref(), &bound.uid, now) {
                tracing::debug!(account = %claims.sub, object = %bound.name, "service account token refused: its bound object is gone");
                return None;
            }
        }
    }
    if let Some(pod) = &k.pod {
        extra.push(("authentication.kubernetes.io/pod-name", pod.name.clone()));
        extra.push(("authentication.kubernetes.io/pod-uid", pod.uid.clone()));
    }
    if let Some(node) = &k.node {
        extra.push(("authentication.kubernetes.io/node-name", node.name.clone()));
        if !node.uid.is_empty() {
            extra.push(("authentication.kubernetes.io/node-uid", node.uid.clone()));
        }
    }
    let ns_group = format!("system:serviceaccounts:{}", k.namespace);
    let mut user = UserInfo::new(&claims.sub, &["system:serviceaccounts", &ns_group]);
    user.uid = k.serviceaccount.uid.clone();
    for (key, value) in extra {
        user.extra.insert(key.to_string(), vec![value]);
    }
    Some(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_lines() {
        let tf =
            TokenFile::parse("# comment\nabc123,alice,1001,\"dev,ops\"\nxyz,bob,1002\n").unwrap();
        let alice = tf.lookup("abc123").unwrap();
        assert_eq!(alice.name, "alice");
        assert_eq!(alice.uid, "1001");
        assert!(
            alice.in_group("dev")
                && alice.in_group("ops")
                && alice.in_group("system:authenticated")
        );
        assert_eq!(tf.lookup("xyz").unwrap().name, "bob");
        assert!(tf.lookup("nope").is_none());
        assert!(TokenFile::parse("only-a-token\n").is_err());
    }

    struct NoObjects;

    #[async_trait::async_trait]
    impl Objects for NoObjects {
        async fn get_object(&self, _: &str, _: &str, _: &str) -> Option<Value> {
            None
        }
    }

    #[tokio::test]
    async fn certificate_wins_over_token_and_nothing_is_nobody() {
        let authn = Authenticator {
            tokens: TokenFile::parse("t,bob,1").unwrap(),
            ..Default::default()
        };
        let cert = UserInfo::new("admin", &["system:masters"]);
        assert_eq!(
            authn
                .authenticate(Some(&cert), Some("Bearer t"), &NoObjects)
                .await
                .unwrap()
                .name,
            "admin"
        );
        assert_eq!(
            authn
                .authenticate(None, Some("Bearer t"), &NoObjects)
                .await
                .unwrap()
                .name,
            "bob"
        );
        assert!(authn
            .authenticate(None, Some("Bearer wrong"), &NoObjects)
            .await
            .is_none());
        assert!(authn
            .authenticate(None, Some("Basic dXNlcg=="), &NoObjects)
            .await
            .is_none());
        assert!(authn.authenticate(None, None, &NoObjects).await.is_none());
    }
}
