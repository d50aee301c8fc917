//! ServiceAccount controller (upstream's `serviceaccount-controller`): every active
//! namespace has a `default` ServiceAccount, re-created when deleted. Terminating
//! namespaces get none (the API server would refuse the create anyway).

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::Api;
use skiff_runtime::{Informer, ObjectKey, WorkQueue};

use crate::{Ctx, Loop};

/// The accounts every active namespace gets (upstream's `--service-account-names`
/// default: just `default`).
pub const MANAGED: &[&str] = &["default"];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("creating ServiceAccount {namespace}/{name}: {source}")]
    Create {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// The managed accounts `ns` lacks: none unless the namespace is active (not being
/// deleted, phase Active or not yet set).
pub fn missing_accounts(ns: &Namespace, has: impl Fn(&str) -> bool) -> Vec<&'static str> {
    let terminating = ns.metadata.deletion_timestamp.is_some()
        || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
    if terminating {
        return Vec::new();
    }
    MANAGED.iter().copied().filter(|n| !has(n)).collect()
}

struct State {
    client: kube::Client,
    namespaces: Informer<Namespace>,
    accounts: Informer<ServiceAccount>,
}

impl State {
    async fn reconcile(&self, namespace: String) -> Result<Option<Duration>, Error> {
        let Some(ns) = self.namespaces.get_named(None, &namespace) else {
            return Ok(None);
        };
        let missing = missing_accounts(&ns, |name| {
            self.accounts.get_named(Some(&namespace), name).is_some()
        });
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &namespace);
        for name in missing {
            let sa = ServiceAccount {
                metadata: ObjectMeta {
                    name: Some(name.to_string()),
                    namespace: Some(namespace.clone()),
                    ..Default::default()
                },
                ..Default::default()
            };
            match api.create(&PostParams::default(), &sa).await {
                Ok(_) => {}
                // Already there (our cache lags), or the namespace began terminating.
                Err(kube::Error::Api(e)) if e.code == 409 || e.code == 403 => {}
                Err(source) => {
                    return Err(Error::Create {
                        namespace: namespace.clone(),
                        name: name.to_string(),
                        source,
                    })
                }
            }
        }
        Ok(None)
    }
}

pub fn controller(ctx: &Ctx) -> Loop {
    let queue: WorkQueue<String> = WorkQueue::new("serviceaccount", ctx.settings.max_retry_delay);
    let namespaces = ctx.informers.informer::<Namespace>();
    let accounts = ctx.informers.informer::<ServiceAccount>();
    {
        let q = queue.clone();
        namespaces.on_change(move |c| {
            if c.new.is_some() {
                q.add(ObjectKey::of(c.object().as_ref()).name);
            }
        });
    }
    {
        let q = queue.clone();
        accounts.on_change(move |c| {
            let sa = c.object();
            if c.is_delete() && MANAGED.contains(&sa.metadata.name.as_deref().unwrap_or("")) {
                if let Some(ns) = &sa.metadata.namespace {
                    q.add(ns.clone());
                }
            }
        });
    }
    let state = std::sync::Arc::new(State {
        client: ctx.client.clone(),
        namespaces,
        accounts,
    });
    ctx.run_workers(queue, ctx.settings.workers, state, |s, ns| async move {
        s.reconcile(ns).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(deleting: bool, phase: Option<&str>) -> Namespace {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n", "deletionTimestamp": if deleting { Some("2026-01-01T00:00:00Z") } else { None }},
            "status": {"phase": phase},
        }))
        .unwrap()
    }

    #[test]
    fn missing_accounts_cases() {
        let cases: &[(&str, Namespace, bool, Vec<&str>)] = &[
            (
                "active without default",
                ns(false, Some("Active")),
                false,
                vec!["default"],
            ),
            (
                "active with default",
                ns(false, Some("Active")),
                true,
                vec![],
            ),
            ("no phase yet", ns(false, None), false, vec!["default"]),
            (
                "terminating phase",
                ns(false, Some("Terminating")),
                false,
                vec![],
            ),
            (
                "deletion requested",
                ns(true, Some("Active")),
                false,
                vec![],
            ),
        ];
        for (name, n, has, want) in cases {
            assert_eq!(&missing_accounts(n, |_| *has), want, "{name}");
        }
    }
}
