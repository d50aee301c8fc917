//! Bootstrap token authentication (upstream's `--enable-bootstrap-token-auth`): a bearer
//! token `<id>.<secret>` is checked against the Secret `kube-system/bootstrap-token-<id>`
//! of type `bootstrap.kubernetes.io/token`. The user is `system:bootstrap:<id>` in
//! `system:bootstrappers` plus the Secret's `auth-extra-groups`.

use base64::Engine;
use serde_json::Value;
use skiff_api::jointoken::{BootstrapToken, GROUP, SECRET_TYPE};

use super::UserInfo;

/// A Secret data value, decoded (Secrets keep base64 in `data`; `stringData` is folded
/// into `data` on write, so only `data` is read).
fn data(secret: &Value, key: &str) -> Option<String> {
    let b64 = secret.pointer(&format!("/data/{key}"))?.as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    String::from_utf8(bytes).ok()
}

/// Whether two secrets are equal, in time that does not depend on where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Whether a token Secret's `expiration` (RFC 3339) has passed at `now`. An unreadable
/// expiration counts as expired, as upstream does.
pub fn expired(secret: &Value, now: jiff::Timestamp) -> bool {
    match data(secret, "expiration") {
        None => false,
        Some(exp) => exp.parse::<jiff::Timestamp>().map_or(true, |t| t <= now),
    }
}

/// The user `token` authenticates as, given the Secret named after its id (if any).
pub fn authenticate(
    token: &BootstrapToken,
    secret: Option<&Value>,
    now: jiff::Timestamp,
) -> Option<UserInfo> {
    let secret = secret?;
    if secret.get("type").and_then(Value::as_str) != Some(SECRET_TYPE)
        || secret.pointer("/metadata/deletionTimestamp").is_some()
    {
        return None;
    }
    let id = data(secret, "token-id")?;
    let stored = data(secret, "token-secret")?;
    if id != token.id || !same_secret(&stored, &token.secret) {
        return None;
    }
    if data(secret, "usage-bootstrap-authentication").as_deref() != Some("true") {
        return None;
    }
    if expired(secret, now) {
        return None;
    }
    let extra = data(secret, "auth-extra-groups").unwrap_or_default();
    let mut groups = vec![GROUP];
    for g in extra.split(',').map(str::trim).filter(|g| !g.is_empty()) {
        // Upstream refuses the token outright when an extra group is outside the prefix.
        if !g.starts_with("system:bootstrappers:") {
            return None;
        }
        groups.push(g);
    }
    Some(UserInfo::new(&token.username(), &groups))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn secret(expiration: Option<&str>, extra: &str, usage: &str) -> Value {
        let mut data = json!({
            "token-id": b64("abcdef"),
            "token-secret": b64("0123456789abcdef"),
            "usage-bootstrap-authentication": b64(usage),
        });
        if let Some(e) = expiration {
            data["expiration"] = json!(b64(e));
        }
        if !extra.is_empty() {
            data["auth-extra-groups"] = json!(b64(extra));
        }
        json!({"type": SECRET_TYPE, "metadata": {"name": "bootstrap-token-abcdef"}, "data": data})
    }

    #[test]
    fn bootstrap_token_cases() {
        let now: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let token = BootstrapToken::parse("abcdef.0123456789abcdef").unwrap();
        let wrong = BootstrapToken::parse("abcdef.0123456789abcdee").unwrap();
        let user = authenticate(
            &token,
            Some(&secret(
                Some("2026-01-02T00:00:00Z"),
                "system:bootstrappers:worker",
                "true",
            )),
            now,
        )
        .unwrap();
        assert_eq!(user.name, "system:bootstrap:abcdef");
        assert!(user.in_group("system:bootstrappers"));
        assert!(user.in_group("system:bootstrappers:worker"));
        assert!(user.in_group("system:authenticated"));
        let cases: &[(&str, Option<Value>, &BootstrapToken)] = &[
            ("no secret", None, &token),
            ("wrong secret", Some(secret(None, "", "true")), &wrong),
            (
                "expired",
                Some(secret(Some("2025-12-31T00:00:00Z"), "", "true")),
                &token,
            ),
            (
                "unreadable expiration",
                Some(secret(Some("tomorrow"), "", "true")),
                &token,
            ),
            (
                "not for authentication",
                Some(secret(None, "", "false")),
                &token,
            ),
            (
                "extra group outside the prefix",
                Some(secret(None, "system:masters", "true")),
                &token,
            ),
        ];
        for (name, s, t) in cases {
            assert!(authenticate(t, s.as_ref(), now).is_none(), "{name}");
        }
        let mut wrong_type = secret(None, "", "true");
        wrong_type["type"] = json!("Opaque");
        assert!(authenticate(&token, Some(&wrong_type), now).is_none());
        assert!(authenticate(&token, Some(&secret(None, "", "true")), now).is_some());
    }
}
