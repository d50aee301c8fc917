//! Service account issuer discovery (upstream's ServiceAccountIssuerDiscovery): the OpenID
//! provider configuration at `/.well-known/openid-configuration` and the signing keys at
//! `/openid/v1/jwks`, so other systems can verify service account tokens. Upstream lets
//! `system:service-account-issuer-discovery` (bound to system:authenticated) read both.

use serde_json::{json, Value};

use super::ServiceAccountTokens;

pub const CONFIG_PATH: &str = "/.well-known/openid-configuration";
pub const JWKS_PATH: &str = "/openid/v1/jwks";

/// The provider configuration.
pub fn configuration(sa: &ServiceAccountTokens) -> Value {
    json!({
        "issuer": sa.issuer,
        "jwks_uri": format!("{}{JWKS_PATH}", sa.issuer.trim_end_matches('/')),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
    })
}

/// The key set.
pub fn jwks(sa: &ServiceAccountTokens) -> Value {
    json!({"keys": [sa.key.jwk()]})
}
