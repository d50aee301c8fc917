//! Service account tokens for projected volumes: requested from the API server's
//! TokenRequest API (`serviceaccounts/<sa>/token`), bound to the pod, cached, and
//! renewed once 80% of their lifetime has passed (or after 24 h), as upstream's token
//! manager does.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::PostParams;
use kube::Api;

/// Upstream's default `expirationSeconds` of a projected token.
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
const MAX_AGE: Duration = Duration::from_secs(24 * 3600);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TokenKey {
    pub pod_uid: String,
    pub namespace: String,
    pub service_account: String,
    pub audience: String,
    pub expiration_seconds: i64,
}

struct Cached {
    token: String,
    refresh_at: Instant,
}

/// Tokens by pod and request; `forget_pod` drops a pod's tokens at teardown.
#[derive(Default)]
pub struct TokenCache {
    tokens: Mutex<HashMap<TokenKey, Cached>>,
}

impl TokenCache {
    /// A valid token for `key` (from the cache while fresh), with when it is due for
    /// renewal.
    pub async fn get(
        &self,
        client: &kube::Client,
        key: &TokenKey,
        pod_name: &str,
    ) -> Result<(String, Instant), String> {
        if let Some(c) = self.lock().get(key) {
            if Instant::now() < c.refresh_at {
                return Ok((c.token.clone(), c.refresh_at));
            }
        }
        let (token, refresh_at) = request(client, key, pod_name).await?;
        self.lock().insert(
            key.clone(),
            Cached {
                token: token.clone(),
                refresh_at,
            },
        );
        Ok((token, refresh_at))
    }

    pub fn forget_pod(&self, pod_uid: &str) {
        self.lock().retain(|k, _| k.pod_uid != pod_uid);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TokenKey, Cached>> {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn request(
    client: &kube::Client,
    key: &TokenKey,
    pod_name: &str,
) -> Result<(String, Instant), String> {
    let req = TokenRequest {
        spec: TokenRequestSpec {
            audiences: if key.audience.is_empty() {
                Vec::new()
            } else {
                vec![key.audience.clone()]
            },
            expiration_seconds: Some(key.expiration_seconds),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(pod_name.into()),
                uid: Some(key.pod_uid.clone()),
            }),
        },
        ..Default::default()
    };
    let asked = Instant::now();
    let api = Api::<ServiceAccount>::namespaced(client.clone(), &key.namespace);
    let resp = api
        .create_token_request(&key.service_account, &PostParams::default(), &req)
        .await
        .map_err(|e| describe(e, &key.service_account))?;
    let status = resp
        .status
        .ok_or("failed to fetch token: the TokenRequest response has no status")?;
    let lifetime = status
        .expiration_timestamp
        .0
        .duration_since(jiff_now())
        .try_into()
        .ok()
        .filter(|d: &Duration| !d.is_zero())
        .unwrap_or(Duration::from_secs(key.expiration_seconds.max(1) as u64));
    Ok((status.token, asked + refresh_after(lifetime)))
}

/// When a token of `lifetime` is renewed: at 80% of it, and at least daily.
pub fn refresh_after(lifetime: Duration) -> Duration {
    lifetime.mul_f64(0.8).min(MAX_AGE)
}

fn jiff_now() -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::now()
}

/// Upstream's `failed to fetch token: ...`, naming a server without TokenRequest plainly.
fn describe(e: kube::Error, sa: &str) -> String {
    match &e {
        kube::Error::Api(status)
            if status.code == 404 && !status.message.contains("serviceaccount") =>
        {
            format!(
                "failed to fetch token: the API server does not serve TokenRequest \
                 (serviceaccounts/{sa}/token): {}",
                status.message
            )
        }
        kube::Error::Api(status) => format!("failed to fetch token: {}", status.message),
        _ => format!("failed to fetch token: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_at_eighty_percent_capped_at_a_day() {
        assert_eq!(
            refresh_after(Duration::from_secs(3600)),
            Duration::from_secs(2880)
        );
        assert_eq!(refresh_after(Duration::from_secs(7 * 24 * 3600)), MAX_AGE);
    }
}
