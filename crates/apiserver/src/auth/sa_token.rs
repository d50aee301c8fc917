//! Service account tokens: JWTs signed with ES256 (ECDSA P-256) by a key the server
//! generates on first start and keeps in its pki dir (`service-account.key`), with the
//! claims upstream's TokenRequest issues. This module signs and checks the signature and
//! time/audience claims; whether the named objects still exist is the authenticator's
//! job (it has the watch cache).

use std::path::Path;

use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair};
use serde::{Deserialize, Serialize};

use crate::ServerError;

/// Upstream's default issuer: the in-cluster URL of the API server.
pub fn default_issuer(cluster_domain: &str) -> String {
    format!("https://kubernetes.default.svc.{cluster_domain}")
}

const KEY_FILE: &str = "service-account.key";
const PEM_LABEL: &str = "PRIVATE KEY";
/// DER prefix of a SubjectPublicKeyInfo for an uncompressed P-256 point (id-ecPublicKey,
/// prime256v1); the 65-byte point follows.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The signing key, its public half and key id (as upstream: base64url of the SHA-256
/// of the public key's DER).
pub struct SigningKey {
    pair: EcdsaKeyPair,
    pub key_id: String,
    public_point: Vec<u8>,
}

impl SigningKey {
    /// Loads `<dir>/service-account.key`, creating it (mode 0600) when missing.
    pub fn ensure(dir: &Path) -> Result<Self, ServerError> {
        let path = dir.join(KEY_FILE);
        let pkcs8 = match std::fs::read_to_string(&path) {
            Ok(pem) => decode_pem(&pem).ok_or_else(|| {
                ServerError::Tls(format!("{}: not a PEM private key", path.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let doc = EcdsaKeyPair::generate_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    &SystemRandom::new(),
                )
                .map_err(|_| ServerError::Tls("generating the service account key".into()))?;
                crate::pki::write_private(&path, &encode_pem(doc.as_ref()))?;
                doc.as_ref().to_vec()
            }
            Err(e) => return Err(ServerError::io(&path, e)),
        };
        Self::from_pkcs8(&pkcs8)
            .ok_or_else(|| ServerError::Tls(format!("{}: not a P-256 key", path.display())))
    }

    pub fn from_pkcs8(der: &[u8]) -> Option<Self> {
        let pair = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            der,
            &SystemRandom::new(),
        )
        .ok()?;
        let public_point = pair.public_key().as_ref().to_vec();
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(&public_point);
        let key_id = b64url(ring::digest::digest(&ring::digest::SHA256, &spki).as_ref());
        Some(Self {
            pair,
            key_id,
            public_point,
        })
    }

    /// Signs `claims` into a compact JWS.
    pub fn sign(&self, claims: &Claims) -> Result<String, String> {
        let header = serde_json::json!({"alg": "ES256", "kid": self.key_id});
        let payload = serde_json::to_vec(claims).map_err(|e| e.to_string())?;
        let signing_input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(&payload)
        );
        let sig = self
            .pair
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .map_err(|_| "signing failed".to_string())?;
        Ok(format!("{signing_input}.{}", b64url(sig.as_ref())))
    }

    /// The public key as a JWK (what `/openid/v1/jwks` lists).
    pub fn jwk(&self) -> serde_json::Value {
        // Uncompressed point: 0x04 || x (32 bytes) || y (32 bytes).
        let (x, y) = self.public_point[1..].split_at(32);
        serde_json::json!({
            "use": "sig", "kty": "EC", "kid": self.key_id, "crv": "P-256", "alg": "ES256",
            "x": b64url(x), "y": b64url(y),
        })
    }

    /// Decodes `token` and checks its signature with this key; the claims are not judged.
    pub fn verify_signature(&self, token: &str) -> Option<Claims> {
        let mut parts = token.split('.');
        let (header, payload, sig) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let decode = |s: &str| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(s)
                .ok()
        };
        let header: serde_json::Value = serde_json::from_slice(&decode(header)?).ok()?;
        if header.get("alg").and_then(|a| a.as_str()) != Some("ES256") {
            return None;
        }
        let key = signature::UnparsedPublicKey::new(
            &signature::ECDSA_P256_SHA256_FIXED,
            &self.public_point,
        );
        let signing_input = &token[..header_len(token)?];
        key.verify(signing_input.as_bytes(), &decode(sig)?).ok()?;
        serde_json::from_slice(&decode(payload)?).ok()
    }
}

/// Length of `header.payload` (the signed part) in a compact JWS.
fn header_len(token: &str) -> Option<usize> {
    token.rfind('.')
}

fn encode_pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {PEM_LABEL}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {PEM_LABEL}-----\n"));
    out
}

fn decode_pem(pem: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {PEM_LABEL}-----");
    let end = format!("-----END {PEM_LABEL}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = pem[start..].find(&end)? + start;
    let b64: String = pem[start..stop].split_whitespace().collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

/// A name and uid, as the `kubernetes.io` claim records bound objects.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ref {
    pub name: String,
    pub uid: String,
}

/// The private `kubernetes.io` claim.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaim {
    pub namespace: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<Ref>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<Ref>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<Ref>,
    pub serviceaccount: Ref,
    /// Set on tokens whose expiry was extended: after this the token is still valid but
    /// the holder should have refreshed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warnafter: Option<i64>,
}

/// The claims of a service account token (upstream's names and shapes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub iss: String,
    pub jti: String,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaim,
    pub nbf: i64,
    pub sub: String,
}

/// Why a token is refused (logged; the client only hears 401, as upstream).
#[derive(Debug, PartialEq, Eq)]
pub enum Invalid {
    Signature,
    Issuer,
    Expired,
    NotYetValid,
    Audience,
    Subject,
}

/// Checks issuer, time window (with upstream's 60 s leeway for clock skew) and that the
/// token names one of `audiences`.
pub fn check_claims(
    claims: &Claims,
    issuer: &str,
    audiences: &[String],
    now: i64,
) -> Result<(), Invalid> {
    const LEEWAY: i64 = 60;
    if claims.iss != issuer {
        return Err(Invalid::Issuer);
    }
    if now > claims.exp + LEEWAY {
        return Err(Invalid::Expired);
    }
    if now + LEEWAY < claims.nbf {
        return Err(Invalid::NotYetValid);
    }
    if !claims.aud.iter().any(|a| audiences.contains(a)) {
        return Err(Invalid::Audience);
    }
    let k = &claims.kubernetes;
    let want = format!(
        "system:serviceaccount:{}:{}",
        k.namespace, k.serviceaccount.name
    );
    if claims.sub != want {
        return Err(Invalid::Subject);
    }
    Ok(())
}

/// `system:serviceaccount:<ns>:<name>` → (ns, name).
pub fn split_username(user: &str) -> Option<(&str, &str)> {
    let rest = user.strip_prefix("system:serviceaccount:")?;
    let (ns, name) = rest.split_once(':')?;
    (!ns.is_empty() && !name.is_empty() && !name.contains(':')).then_some((ns, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(now: i64) -> Claims {
        Claims {
            aud: vec!["api".into()],
            exp: now + 3600,
            iat: now,
            iss: "https://issuer".into(),
            jti: "j".into(),
            kubernetes: KubernetesClaim {
                namespace: "ns".into(),
                serviceaccount: Ref {
                    name: "sa".into(),
                    uid: "u".into(),
                },
                ..Default::default()
            },
            nbf: now,
            sub: "system:serviceaccount:ns:sa".into(),
        }
    }

    #[test]
    fn signed_tokens_verify_and_tampered_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::ensure(dir.path()).unwrap();
        let again = SigningKey::ensure(dir.path()).unwrap();
        assert_eq!(key.key_id, again.key_id, "the key is kept across starts");
        let c = claims(1000);
        let token = key.sign(&c).unwrap();
        assert_eq!(again.verify_signature(&token), Some(c.clone()));
        let other = SigningKey::ensure(tempfile::tempdir().unwrap().path()).unwrap();
        assert_eq!(other.verify_signature(&token), None);
        let mut forged = c.clone();
        forged.sub = "system:serviceaccount:kube-system:admin".into();
        let forged_payload = b64url(&serde_json::to_vec(&forged).unwrap());
        let parts: Vec<&str> = token.split('.').collect();
        let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(key.verify_signature(&tampered), None);
        assert_eq!(key.verify_signature("a.b"), None);
        assert_eq!(key.verify_signature("not a token"), None);
    }

    #[test]
    fn claim_checks() {
        let aud = vec!["api".to_string()];
        let c = claims(1000);
        assert_eq!(check_claims(&c, "https://issuer", &aud, 1000), Ok(()));
        assert_eq!(
            check_claims(&c, "https://other", &aud, 1000),
            Err(Invalid::Issuer)
        );
        assert_eq!(
            check_claims(&c, "https://issuer", &aud, 1000 + 3600 + 61),
            Err(Invalid::Expired)
        );
        assert_eq!(
            check_claims(&c, "https://issuer", &aud, 1000 - 61),
            Err(Invalid::NotYetValid)
        );
        assert_eq!(
            check_claims(&c, "https://issuer", &["vault".to_string()], 1000),
            Err(Invalid::Audience)
        );
    }

    #[test]
    fn usernames() {
        assert_eq!(
            split_username("system:serviceaccount:a:b"),
            Some(("a", "b"))
        );
        assert_eq!(split_username("system:serviceaccount:a"), None);
        assert_eq!(split_username("alice"), None);
    }
}
