//! Bootstrap tokens (kubeadm's format, `<6 [a-z0-9]>.<16 [a-z0-9]>`) and the full join
//! token that carries the CA's fingerprint with them (k3s's `K10<sha256 hex>::<token>`),
//! so a joining node can trust the server without a CA file. Pure parsing and formatting:
//! the server, the CLI and the joining node share it.

/// Namespace and name prefix of the Secrets that hold bootstrap tokens.
pub const SECRET_NAMESPACE: &str = "kube-system";
pub const SECRET_PREFIX: &str = "bootstrap-token-";
pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
/// Group every bootstrap token user is in; extra groups must start with `system:bootstrappers:`.
pub const GROUP: &str = "system:bootstrappers";
pub const USER_PREFIX: &str = "system:bootstrap:";

/// A bootstrap token: public id and secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootstrapToken {
    pub id: String,
    pub secret: String,
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

impl BootstrapToken {
    /// Parses `abcdef.0123456789abcdef`.
    pub fn parse(s: &str) -> Option<Self> {
        let (id, secret) = s.split_once('.')?;
        let ok = |part: &str, len: usize| part.len() == len && part.chars().all(is_token_char);
        (ok(id, 6) && ok(secret, 16)).then(|| Self {
            id: id.to_string(),
            secret: secret.to_string(),
        })
    }

    /// A token from 22 random bytes (each mapped onto [a-z0-9]).
    pub fn from_random(bytes: &[u8; 22]) -> Self {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let chars: String = bytes
            .iter()
            .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
            .collect();
        Self {
            id: chars[..6].to_string(),
            secret: chars[6..].to_string(),
        }
    }

    pub fn secret_name(&self) -> String {
        format!("{SECRET_PREFIX}{}", self.id)
    }

    pub fn username(&self) -> String {
        format!("{USER_PREFIX}{}", self.id)
    }
}

impl std::fmt::Display for BootstrapToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.id, self.secret)
    }
}

/// A join token: the bootstrap token and, when given in full form, the SHA-256 (hex) of
/// the cluster CA certificate (its PEM bytes, as k3s hashes them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinToken {
    pub ca_hash: Option<String>,
    pub token: BootstrapToken,
}

impl JoinToken {
    /// Parses `K10<hex>::<id>.<secret>` or a bare `<id>.<secret>`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (ca_hash, rest) = match s.strip_prefix("K10") {
            Some(rest) => {
                let (hash, token) = rest
                    .split_once("::")
                    .ok_or("a K10 token has the form K10<sha256 of the CA>::<id>.<secret>")?;
                if hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err("the CA hash in a K10 token must be 64 hex digits".into());
                }
                (Some(hash.to_ascii_lowercase()), token)
            }
            None => (None, s),
        };
        let token = BootstrapToken::parse(rest).ok_or(
            "a bootstrap token has the form [a-z0-9]{6}.[a-z0-9]{16} (for example abcdef.0123456789abcdef)",
        )?;
        Ok(Self { ca_hash, token })
    }

    pub fn full(ca_hash: &str, token: &BootstrapToken) -> String {
        format!("K10{ca_hash}::{token}")
    }
}

/// Lower-case hex of bytes (the CA hash's spelling).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_token_format() {
        let t = BootstrapToken::parse("abcdef.0123456789abcdef").unwrap();
        assert_eq!(t.id, "abcdef");
        assert_eq!(t.secret_name(), "bootstrap-token-abcdef");
        assert_eq!(t.username(), "system:bootstrap:abcdef");
        assert_eq!(t.to_string(), "abcdef.0123456789abcdef");
        for bad in [
            "abcdef0123456789abcdef",
            "ABCDEF.0123456789abcdef",
            "abcde.0123456789abcdef",
            "abcdef.0123456789abcde",
            "abcdef.0123456789abcdef.x",
            "",
        ] {
            assert!(BootstrapToken::parse(bad).is_none(), "{bad}");
        }
        let random = BootstrapToken::from_random(&[255; 22]);
        assert!(BootstrapToken::parse(&random.to_string()).is_some());
    }

    #[test]
    fn join_token_forms() {
        let hash = "ab".repeat(32);
        let full = format!("K10{hash}::abcdef.0123456789abcdef");
        let j = JoinToken::parse(&full).unwrap();
        assert_eq!(j.ca_hash.as_deref(), Some(hash.as_str()));
        assert_eq!(JoinToken::full(&hash, &j.token), full);
        let bare = JoinToken::parse("abcdef.0123456789abcdef").unwrap();
        assert_eq!(bare.ca_hash, None);
        assert!(JoinToken::parse("K10abc::abcdef.0123456789abcdef").is_err());
        assert!(JoinToken::parse(&format!("K10{hash}abcdef.0123456789abcdef")).is_err());
        assert!(JoinToken::parse("K10::").is_err());
        assert_eq!(hex(&[0, 15, 255]), "000fff");
    }
}
