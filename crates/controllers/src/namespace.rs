//! Namespace controller (upstream's `namespace-controller`): empties a namespace being
//! deleted, then releases it.
//!
//! For a Namespace with a deletionTimestamp and `kubernetes` in `spec.finalizers`: every
//! namespaced type the server serves (discovery) is emptied (deletecollection where
//! supported, else list + delete), the status conditions say what is left
//! (NamespaceDeletionDiscoveryFailure, NamespaceDeletionGroupVersionParsingFailure,
//! NamespaceDeletionContentFailure, NamespaceContentRemaining,
//! NamespaceFinalizersRemaining), and once nothing remains `kubernetes` is removed
//! through `PUT namespaces/{name}/finalize`, after which the API server deletes the
//! namespace. While content remains it looks again: after about half the longest pod
//! grace period when pods are terminating, else with backoff.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Api;
use skiff_runtime::{Informer, WorkQueue};

use crate::garbagecollector::api_for;
use crate::garbagecollector::discovery::{self, Type};
use crate::{Ctx, Loop};

/// The finalizer this controller owns in `spec.finalizers`.
pub const FINALIZER: &str = "kubernetes";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("namespace {namespace}: {op}: {source}")]
    Api {
        namespace: String,
        op: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("namespace {namespace}: discovery failed: {message}")]
    Discovery { namespace: String, message: String },
    #[error("namespace {namespace}: content remains: {remaining}")]
    ContentRemaining {
        namespace: String,
        remaining: String,
    },
}

/// What one pass over a namespace's content found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub discovery_failure: Option<String>,
    /// Types whose deletion failed: "group.resource: error".
    pub delete_failures: Vec<String>,
    /// Objects still there, by upstream's "resource.group" name.
    pub remaining: BTreeMap<String, usize>,
    /// Finalizers on the objects still there, with how many objects carry each.
    pub finalizers: BTreeMap<String, usize>,
    /// Seconds the remaining pods may still take to terminate.
    pub estimate: i64,
}

impl Report {
    pub fn is_empty(&self) -> bool {
        self.discovery_failure.is_none()
            && self.delete_failures.is_empty()
            && self.remaining.values().all(|n| *n == 0)
    }
}

fn condition(type_: &str, failed: Option<(&str, String)>, ok: (&str, &str)) -> NamespaceCondition {
    let (status, reason, message) = match failed {
        Some((reason, message)) => ("True", reason.to_string(), message),
        None => ("False", ok.0.to_string(), ok.1.to_string()),
    };
    NamespaceCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason),
        message: Some(message),
        last_transition_time: None,
    }
}

/// The five deletion conditions for `report`, keeping a condition's transition time
/// when its status did not change.
pub fn conditions(
    report: &Report,
    existing: &[NamespaceCondition],
    now: Timestamp,
) -> Vec<NamespaceCondition> {
    let remaining: Vec<String> = report
        .remaining
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(r, n)| format!("{r} has {n} resource instances"))
        .collect();
    let finalizers: Vec<String> = report
        .finalizers
        .iter()
        .map(|(f, n)| format!("{f} in {n} resource instances"))
        .collect();
    let mut out = vec![
        condition(
            "NamespaceDeletionDiscoveryFailure",
            report.discovery_failure.clone().map(|e| {
                (
                    "DiscoveryFailed",
                    format!("Discovery failed for some groups, 1 failing: {e}"),
                )
            }),
            (
                "ResourcesDiscovered",
                "All resources successfully discovered",
            ),
        ),
        // Discovery hands back typed group/versions, so none fail to parse.
        condition(
            "NamespaceDeletionGroupVersionParsingFailure",
            None,
            (
                "ParsedGroupVersions",
                "All legacy kube types successfully parsed",
            ),
        ),
        condition(
            "NamespaceDeletionContentFailure",
            (!report.delete_failures.is_empty()).then(|| {
                (
                    "ContentDeletionFailed",
                    format!(
                        "Failed to delete all resource types, {} remaining: {}",
                        report.delete_failures.len(),
                        report.delete_failures.join(", ")
                    ),
                )
            }),
            (
                "ContentDeleted",
                "All content successfully deleted, may be waiting on finalization",
            ),
        ),
        condition(
            "NamespaceContentRemaining",
            (!remaining.is_empty()).then(|| {
                (
                    "SomeResourcesRemain",
                    format!("Some resources are remaining: {}", remaining.join(", ")),
                )
            }),
            ("ContentRemoved", "All content successfully removed"),
        ),
        condition(
            "NamespaceFinalizersRemaining",
            (!finalizers.is_empty()).then(|| {
                (
                    "SomeFinalizersRemain",
                    format!(
                        "Some content in the namespace has finalizers remaining: {}",
                        finalizers.join(", ")
                    ),
                )
            }),
            (
                "ContentHasNoFinalizers",
                "All content-preserving finalizers finished",
            ),
        ),
    ];
    for c in &mut out {
        let kept = existing
            .iter()
            .find(|e| e.type_ == c.type_ && e.status == c.status)
            .and_then(|e| e.last_transition_time.clone());
        c.last_transition_time = Some(kept.unwrap_or(Time(now)));
    }
    // Conditions of other types (set by others) stay.
    out.extend(
        existing
            .iter()
            .filter(|e| !out.iter().any(|c| c.type_ == e.type_))
            .cloned()
            .collect::<Vec<_>>(),
    );
    out
}

/// Whether writing `want` over `have` changes anything but transition times.
pub fn conditions_changed(have: &[NamespaceCondition], want: &[NamespaceCondition]) -> bool {
    let key = |c: &NamespaceCondition| {
        (
            c.type_.clone(),
            c.status.clone(),
            c.reason.clone(),
            c.message.clone(),
        )
    };
    have.len() != want.len() || have.iter().zip(want).any(|(a, b)| key(a) != key(b))
}

/// Upstream's estimate: the longest termination grace period of the pods not yet
/// finished, less the time since the namespace deletion began.
pub fn estimate_pod_termination(pods: &[Pod], deleted_at: Timestamp, now: Timestamp) -> i64 {
    let longest = pods
        .iter()
        .filter(|p| !crate::util::pods::is_terminal(p))
        .map(|p| {
            p.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
                .unwrap_or(30)
        })
        .max()
        .unwrap_or(0);
    let elapsed = now.as_second() - deleted_at.as_second();
    (longest - elapsed.max(0)).max(0)
}

/// `spec.finalizers` without ours.
pub fn without_finalizer(ns: &Namespace) -> Vec<String> {
    ns.spec
        .as_ref()
        .and_then(|s| s.finalizers.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f != FINALIZER)
        .collect()
}

/// Whether the controller has work on `ns`: being deleted, our finalizer present.
pub fn needs_finalizing(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_some()
        && ns
            .spec
            .as_ref()
            .and_then(|s| s.finalizers.as_ref())
            .is_some_and(|f| f.iter().any(|x| x == FINALIZER))
}

struct State {
    client: kube::Client,
    namespaces: Informer<Namespace>,
}

/// Upstream's "resource.group" spelling in the remaining-content message.
fn remaining_name(t: &Type) -> String {
    format!("{}.{}", t.resource.plural, t.resource.group)
}

fn is_unsupported(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404 || s.code == 405)
}

impl State {
    fn err<'a>(namespace: &'a str, op: &'static str) -> impl Fn(kube::Error) -> Error + 'a {
        move |source| Error::Api {
            namespace: namespace.to_string(),
            op,
            source,
        }
    }

    /// Deletes everything of type `t` in `namespace`; `Err` says why it failed.
    async fn delete_type(&self, t: &Type, namespace: &str) -> Result<(), kube::Error> {
        let api = api_for(&self.client, t, Some(namespace));
        let dp = DeleteParams::background();
        if t.supports(kube::discovery::verbs::DELETE_COLLECTION) {
            match api.delete_collection(&dp, &ListParams::default()).await {
                Ok(_) => return Ok(()),
                Err(e) if is_unsupported(&e) => {}
                Err(e) => return Err(e),
            }
        }
        if !t.supports(kube::discovery::verbs::DELETE) {
            return Ok(());
        }
        for obj in api.list_metadata(&ListParams::default()).await?.items {
            let Some(name) = obj.metadata.name else {
                continue;
            };
            match api.delete(&name, &dp).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn delete_content(&self, ns: &Namespace, namespace: &str) -> Report {
        let mut report = Report::default();
        let resources = match discovery::discover(&self.client).await {
            Ok(r) => r,
            Err(e) => {
                report.discovery_failure = Some(e.to_string());
                return report;
            }
        };
        let deleted_at = ns
            .metadata
            .deletion_timestamp
            .as_ref()
            .map_or_else(Timestamp::now, |t| t.0);
        for t in resources.namespaced_deletable() {
            if t.resource.group.is_empty() && t.resource.plural == "pods" {
                let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
                if let Ok(list) = pods.list(&ListParams::default()).await {
                    let e = estimate_pod_termination(&list.items, deleted_at, Timestamp::now());
                    report.estimate = report.estimate.max(e);
                }
            }
            if let Err(e) = self.delete_type(&t, namespace).await {
                report
                    .delete_failures
                    .push(format!("{}: {e}", t.group_resource()));
                continue;
            }
            let api = api_for(&self.client, &t, Some(namespace));
            match api.list_metadata(&ListParams::default()).await {
                Ok(list) if !list.items.is_empty() => {
                    report
                        .remaining
                        .insert(remaining_name(&t), list.items.len());
                    for item in &list.items {
                        for f in item.metadata.finalizers.iter().flatten() {
                            *report.finalizers.entry(f.clone()).or_default() += 1;
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => report
                    .delete_failures
                    .push(format!("{}: {e}", t.group_resource())),
            }
        }
        report
    }

    async fn reconcile(&self, namespace: String) -> Result<Option<Duration>, Error> {
        let Some(ns) = self.namespaces.get_named(None, &namespace) else {
            return Ok(None);
        };
        if !needs_finalizing(&ns) {
            return Ok(None);
        }
        let report = self.delete_content(&ns, &namespace).await;
        let api: Api<Namespace> = Api::all(self.client.clone());
        let have = ns
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let want = conditions(&report, &have, Timestamp::now());
        if conditions_changed(&have, &want) {
            let patch = serde_json::json!({"status": {"phase": "Terminating", "conditions": want}});
            match api
                .patch_status(&namespace, &PatchParams::default(), &Patch::Merge(patch))
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => return Ok(None),
                Err(e) => return Err(Self::err(&namespace, "writing status")(e)),
            }
        }
        if let Some(message) = report.discovery_failure {
            return Err(Error::Discovery { namespace, message });
        }
        if !report.is_empty() {
            if report.estimate > 0 {
                return Ok(Some(Duration::from_secs((report.estimate / 2 + 1) as u64)));
            }
            let mut remaining: Vec<String> = report.delete_failures.clone();
            remaining.extend(report.remaining.iter().map(|(r, n)| format!("{r}: {n}")));
            return Err(Error::ContentRemaining {
                namespace,
                remaining: remaining.join(", "),
            });
        }
        // Empty: release the namespace through /finalize, from its current version.
        let Some(mut live) = api
            .get_opt(&namespace)
            .await
            .map_err(Self::err(&namespace, "reading"))?
        else {
            return Ok(None);
        };
        if !needs_finalizing(&live) {
            return Ok(None);
        }
        let rest = without_finalizer(&live);
        live.spec.get_or_insert_with(Default::default).finalizers = Some(rest);
        match api
            .replace_subresource::<Namespace>("finalize", &namespace, &PostParams::default(), &live)
            .await
        {
            Ok(_) => Ok(None),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
            Err(e) => Err(Self::err(&namespace, "finalizing")(e)),
        }
    }
}

pub fn controller(ctx: &Ctx) -> Loop {
    let queue: WorkQueue<String> = WorkQueue::new("namespace", ctx.settings.max_retry_delay);
    let namespaces = ctx.informers.informer::<Namespace>();
    {
        let q = queue.clone();
        namespaces.on_change(move |c| {
            if let Some(ns) = &c.new {
                if needs_finalizing(ns) {
                    if let Some(name) = &ns.metadata.name {
                        q.add(name.clone());
                    }
                }
            }
        });
    }
    let state = Arc::new(State {
        client: ctx.client.clone(),
        namespaces,
    });
    ctx.run_workers(queue, ctx.settings.workers, state, |s, ns| async move {
        s.reconcile(ns).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn by_type<'a>(cs: &'a [NamespaceCondition], t: &str) -> &'a NamespaceCondition {
        cs.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn conditions_for_an_empty_namespace_are_all_false() {
        let cs = conditions(&Report::default(), &[], ts("2026-01-01T00:00:00Z"));
        assert_eq!(cs.len(), 5);
        assert!(cs.iter().all(|c| c.status == "False"));
        assert_eq!(
            by_type(&cs, "NamespaceContentRemaining").reason.as_deref(),
            Some("ContentRemoved")
        );
        assert_eq!(
            by_type(&cs, "NamespaceDeletionDiscoveryFailure")
                .reason
                .as_deref(),
            Some("ResourcesDiscovered")
        );
    }

    #[test]
    fn conditions_cases() {
        let report = Report {
            discovery_failure: None,
            delete_failures: vec!["widgets.example.com: boom".into()],
            remaining: [("pods.".to_string(), 2), ("configmaps.".to_string(), 0)].into(),
            finalizers: [("example.com/keep".to_string(), 1)].into(),
            estimate: 30,
        };
        let cs = conditions(&report, &[], ts("2026-01-01T00:00:00Z"));
        let cases: &[(&str, &str, &str, &str)] = &[
            ("NamespaceDeletionContentFailure", "True", "ContentDeletionFailed", "Failed to delete all resource types, 1 remaining: widgets.example.com: boom"),
            ("NamespaceContentRemaining", "True", "SomeResourcesRemain", "Some resources are remaining: pods. has 2 resource instances"),
            ("NamespaceFinalizersRemaining", "True", "SomeFinalizersRemain", "Some content in the namespace has finalizers remaining: example.com/keep in 1 resource instances"),
            ("NamespaceDeletionGroupVersionParsingFailure", "False", "ParsedGroupVersions", "All legacy kube types successfully parsed"),
        ];
        for (t, status, reason, message) in cases {
            let c = by_type(&cs, t);
            assert_eq!(c.status, *status, "{t}");
            assert_eq!(c.reason.as_deref(), Some(*reason), "{t}");
            assert_eq!(c.message.as_deref(), Some(*message), "{t}");
        }
        let failed = Report {
            discovery_failure: Some("no".into()),
            ..Default::default()
        };
        let c = conditions(&failed, &[], ts("2026-01-01T00:00:00Z"));
        assert_eq!(
            by_type(&c, "NamespaceDeletionDiscoveryFailure")
                .reason
                .as_deref(),
            Some("DiscoveryFailed")
        );
        assert!(!failed.is_empty());
        assert!(!report.is_empty());
        assert!(Report {
            remaining: [("pods.".to_string(), 0)].into(),
            ..Default::default()
        }
        .is_empty());
    }

    #[test]
    fn transition_time_kept_while_status_holds() {
        let first = conditions(&Report::default(), &[], ts("2026-01-01T00:00:00Z"));
        let again = conditions(&Report::default(), &first, ts("2026-01-02T00:00:00Z"));
        assert_eq!(first, again);
        assert!(!conditions_changed(&first, &again));
        let remaining = Report {
            remaining: [("pods.".to_string(), 1)].into(),
            ..Default::default()
        };
        let changed = conditions(&remaining, &first, ts("2026-01-02T00:00:00Z"));
        assert!(conditions_changed(&first, &changed));
        let c = by_type(&changed, "NamespaceContentRemaining");
        assert_eq!(
            c.last_transition_time,
            Some(Time(ts("2026-01-02T00:00:00Z")))
        );
    }

    #[test]
    fn estimate_cases() {
        let pod = |grace: Option<i64>, phase: &str| -> Pod {
            serde_json::from_value(serde_json::json!({
                "spec": {"containers": [], "terminationGracePeriodSeconds": grace},
                "status": {"phase": phase},
            }))
            .unwrap()
        };
        let at = ts("2026-01-01T00:00:00Z");
        let cases: Vec<(&str, Vec<Pod>, &str, i64)> = vec![
            ("no pods", vec![], "2026-01-01T00:00:00Z", 0),
            (
                "default grace",
                vec![pod(None, "Running")],
                "2026-01-01T00:00:00Z",
                30,
            ),
            (
                "longest wins",
                vec![pod(Some(5), "Running"), pod(Some(60), "Running")],
                "2026-01-01T00:00:00Z",
                60,
            ),
            (
                "finished pods ignored",
                vec![pod(Some(60), "Succeeded")],
                "2026-01-01T00:00:00Z",
                0,
            ),
            (
                "time already spent",
                vec![pod(Some(60), "Running")],
                "2026-01-01T00:00:20Z",
                40,
            ),
            (
                "past due",
                vec![pod(Some(10), "Running")],
                "2026-01-01T00:01:00Z",
                0,
            ),
        ];
        for (name, pods, now, want) in cases {
            assert_eq!(estimate_pod_termination(&pods, at, ts(now)), want, "{name}");
        }
    }

    #[test]
    fn finalizer_cases() {
        let ns = |deleting: bool, fins: &[&str]| -> Namespace {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "n", "deletionTimestamp": if deleting { Some("2026-01-01T00:00:00Z") } else { None }},
                "spec": {"finalizers": fins},
            }))
            .unwrap()
        };
        assert!(needs_finalizing(&ns(true, &["kubernetes"])));
        assert!(!needs_finalizing(&ns(false, &["kubernetes"])));
        assert!(!needs_finalizing(&ns(true, &["other"])));
        assert_eq!(
            without_finalizer(&ns(true, &["a", "kubernetes"])),
            vec!["a"]
        );
    }
}
