//! Token cleaner (upstream's `tokencleaner`): deletes bootstrap token Secrets
//! (`kube-system`, type `bootstrap.kubernetes.io/token`) once their `expiration` has
//! passed, and looks again at the moment an unexpired one expires.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::DeleteParams;
use kube::runtime::watcher;
use kube::Api;
use skiff_api::jointoken::{SECRET_NAMESPACE, SECRET_TYPE};
use skiff_runtime::{Informer, ObjectKey, WorkQueue};

use crate::{Ctx, Loop};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("deleting expired bootstrap token Secret {name}: {source}")]
    Delete {
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// When the token expires: None for no (or an unreadable) expiration.
pub fn expiration(secret: &Secret) -> Option<Timestamp> {
    let bytes = secret.data.as_ref()?.get("expiration")?;
    std::str::from_utf8(&bytes.0).ok()?.parse().ok()
}

/// What to do with a token Secret at `now`: delete it, or look again after a while.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Delete,
    Keep(Option<Duration>),
}

pub fn decide(secret: &Secret, now: Timestamp) -> Action {
    if secret.type_.as_deref() != Some(SECRET_TYPE) {
        return Action::Keep(None);
    }
    match expiration(secret) {
        Some(at) if at <= now => Action::Delete,
        Some(at) => {
            let secs = (at.as_second() - now.as_second()).max(1);
            Action::Keep(Some(Duration::from_secs(u64::try_from(secs).unwrap_or(1))))
        }
        None => Action::Keep(None),
    }
}

struct State {
    api: Api<Secret>,
    secrets: Informer<Secret>,
}

impl State {
    async fn reconcile(&self, key: ObjectKey) -> Result<Option<Duration>, Error> {
        let Some(secret) = self.secrets.get(&key) else {
            return Ok(None);
        };
        if key.namespace() != SECRET_NAMESPACE {
            return Ok(None);
        }
        match decide(&secret, Timestamp::now()) {
            Action::Keep(again) => Ok(again),
            Action::Delete => {
                // Only the Secret we judged: a replaced one is looked at again.
                let dp = DeleteParams {
                    preconditions: Some(kube::api::Preconditions {
                        uid: secret.metadata.uid.clone(),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                match self.api.delete(&key.name, &dp).await {
                    Ok(_) => {
                        tracing::info!(secret = %key.name, "deleted expired bootstrap token");
                        Ok(None)
                    }
                    Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(None),
                    Err(source) => Err(Error::Delete {
                        name: key.name.clone(),
                        source,
                    }),
                }
            }
        }
    }
}

pub fn controller(ctx: &Ctx) -> Loop {
    let queue: WorkQueue<ObjectKey> = WorkQueue::new("token_cleaner", ctx.settings.max_retry_delay);
    let secrets = ctx.informers.informer_with::<Secret>(
        "bootstrap-tokens",
        watcher::Config::default().fields(&format!("type={SECRET_TYPE}")),
    );
    {
        let q = queue.clone();
        secrets.on_change(move |c| {
            if c.new.is_some() {
                q.add(ObjectKey::of(c.object().as_ref()));
            }
        });
    }
    let state = Arc::new(State {
        api: Api::namespaced(ctx.client.clone(), SECRET_NAMESPACE),
        secrets,
    });
    ctx.run_workers(queue, ctx.settings.workers, state, |s, k| async move {
        s.reconcile(k).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn secret(type_: &str, expiration: Option<&str>) -> Secret {
        let mut data = serde_json::json!({"token-id": b64("abcdef")});
        if let Some(e) = expiration {
            data["expiration"] = serde_json::json!(b64(e));
        }
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "bootstrap-token-abcdef", "namespace": "kube-system"},
            "type": type_, "data": data,
        }))
        .unwrap()
    }

    #[test]
    fn cleaner_cases() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            decide(&secret(SECRET_TYPE, Some("2025-12-31T23:59:59Z")), now),
            Action::Delete
        );
        assert_eq!(
            decide(&secret(SECRET_TYPE, Some("2026-01-01T00:01:00Z")), now),
            Action::Keep(Some(Duration::from_secs(60)))
        );
        assert_eq!(decide(&secret(SECRET_TYPE, None), now), Action::Keep(None));
        assert_eq!(
            decide(&secret("Opaque", Some("2020-01-01T00:00:00Z")), now),
            Action::Keep(None)
        );
    }
}
