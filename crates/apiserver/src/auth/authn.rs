//! Authentication: client certificates signed by the cluster CA (user = CN, groups = O),
//! then bearer tokens from a static token file (kube-apiserver's `--token-auth-file`).
//! No credentials, or bad ones, is a 401: there is no anonymous user.

use std::collections::HashMap;
use std::path::Path;

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

/// The authentication step: certificate first, then bearer token.
#[derive(Default)]
pub struct Authenticator {
    pub tokens: TokenFile,
}

impl Authenticator {
    /// `cert_user` is the identity of a verified client certificate on the connection.
    pub fn authenticate(
        &self,
        cert_user: Option<&UserInfo>,
        authorization: Option<&str>,
    ) -> Option<UserInfo> {
        if let Some(user) = cert_user {
            return Some(user.clone());
        }
        let token = authorization?.strip_prefix("Bearer ")?.trim();
        self.tokens.lookup(token).cloned()
    }
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

    #[test]
    fn certificate_wins_over_token_and_nothing_is_nobody() {
        let authn = Authenticator {
            tokens: TokenFile::parse("t,bob,1").unwrap(),
        };
        let cert = UserInfo::new("admin", &["system:masters"]);
        assert_eq!(
            authn
                .authenticate(Some(&cert), Some("Bearer t"))
                .unwrap()
                .name,
            "admin"
        );
        assert_eq!(
            authn.authenticate(None, Some("Bearer t")).unwrap().name,
            "bob"
        );
        assert!(authn.authenticate(None, Some("Bearer wrong")).is_none());
        assert!(authn.authenticate(None, Some("Basic dXNlcg==")).is_none());
        assert!(authn.authenticate(None, None).is_none());
    }
}
