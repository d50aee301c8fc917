//! Pod garbage collector (upstream's `pod-garbage-collector`). Every 20 s it:
//! - deletes the oldest terminated pods (Succeeded/Failed; evicted ones first) beyond
//!   `terminated_pod_gc_threshold`;
//! - deletes pods bound to nodes that no longer exist, once the node has been missing for
//!   a 40 s quarantine and a live GET confirms it is gone: they are marked Failed with a
//!   `DisruptionTarget` condition (reason `DeletionByPodGC`) first, then deleted with no
//!   grace (no kubelet is left to finish a graceful delete);
//! - force-deletes terminating pods on nodes that are NotReady and tainted
//!   `node.kubernetes.io/out-of-service`;
//! - force-deletes terminating pods that were never scheduled.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::Api;
use skiff_runtime::Informer;

use crate::util::pods;
use crate::{Ctx, Loop};

const OUT_OF_SERVICE_TAINT: &str = "node.kubernetes.io/out-of-service";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("pod {namespace}/{name}: {op}: {source}")]
    Pod {
        namespace: String,
        name: String,
        op: &'static str,
        #[source]
        source: kube::Error,
    },
}

/// Why a pod is collected: decides whether it is marked Failed with a condition first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Terminated,
    Orphaned,
    TerminatingOutOfService,
    UnscheduledTerminating,
}

fn is_evicted(pod: &Pod) -> bool {
    let st = pod.status.as_ref();
    pods::phase(pod) == "Failed" && st.and_then(|s| s.reason.as_deref()) == Some("Evicted")
}

/// Evicted first, then oldest, then by name (upstream's byEvictionAndCreationTimestamp).
fn deletion_order(a: &Pod, b: &Pod) -> Ordering {
    is_evicted(b)
        .cmp(&is_evicted(a))
        .then_with(|| {
            let ta = a.metadata.creation_timestamp.as_ref().map(|t| t.0);
            let tb = b.metadata.creation_timestamp.as_ref().map(|t| t.0);
            ta.cmp(&tb)
        })
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// The terminated pods to delete so at most `threshold` remain (0 disables).
pub fn terminated_to_delete(all: &[Arc<Pod>], threshold: usize) -> Vec<Arc<Pod>> {
    if threshold == 0 {
        return Vec::new();
    }
    let mut terminated: Vec<Arc<Pod>> = all
        .iter()
        .filter(|p| pods::is_terminal(p))
        .cloned()
        .collect();
    if terminated.len() <= threshold {
        return Vec::new();
    }
    terminated.sort_by(|a, b| deletion_order(a, b));
    let excess = terminated.len() - threshold;
    terminated.truncate(excess);
    terminated
}

/// Nodes that pods are bound to but the node cache does not know.
pub fn missing_nodes(all: &[Arc<Pod>], known: &HashSet<String>) -> HashSet<String> {
    all.iter()
        .filter_map(|p| pods::node_name(p))
        .filter(|n| !known.contains(*n))
        .map(str::to_string)
        .collect()
}

/// Terminating pods that were never scheduled.
pub fn unscheduled_terminating(all: &[Arc<Pod>]) -> Vec<Arc<Pod>> {
    all.iter()
        .filter(|p| pods::is_terminating(p) && pods::node_name(p).is_none())
        .cloned()
        .collect()
}

/// A node NotReady with the out-of-service taint: its terminating pods will not finish.
pub fn out_of_service(node: &Node) -> bool {
    let tainted = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|ts| ts.iter().any(|t| t.key == OUT_OF_SERVICE_TAINT));
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True");
    tainted && !ready
}

/// The pods to collect this pass, with why. `confirmed_gone` are missing nodes past
/// their quarantine that a live GET confirmed gone.
pub fn plan(
    all: &[Arc<Pod>],
    nodes: &[Arc<Node>],
    confirmed_gone: &HashSet<String>,
    threshold: usize,
) -> Vec<(Arc<Pod>, Reason)> {
    let mut out: Vec<(Arc<Pod>, Reason)> = terminated_to_delete(all, threshold)
        .into_iter()
        .map(|p| (p, Reason::Terminated))
        .collect();
    let mut seen: HashSet<(Option<String>, Option<String>)> = out
        .iter()
        .map(|(p, _)| (p.metadata.namespace.clone(), p.metadata.name.clone()))
        .collect();
    let mut push = |p: &Arc<Pod>, r: Reason, out: &mut Vec<(Arc<Pod>, Reason)>| {
        if seen.insert((p.metadata.namespace.clone(), p.metadata.name.clone())) {
            out.push((p.clone(), r));
        }
    };
    let oos: HashSet<&str> = nodes
        .iter()
        .filter(|n| out_of_service(n))
        .filter_map(|n| n.metadata.name.as_deref())
        .collect();
    for p in all {
        match pods::node_name(p) {
            Some(n) if confirmed_gone.contains(n) => push(p, Reason::Orphaned, &mut out),
            Some(n) if oos.contains(n) && pods::is_terminating(p) => {
                push(p, Reason::TerminatingOutOfService, &mut out)
            }
            _ => {}
        }
    }
    for p in unscheduled_terminating(all) {
        push(&p, Reason::UnscheduledTerminating, &mut out);
    }
    out
}

/// The status patch written before deleting: Failed (unless already terminal) and, for
/// orphans, the DisruptionTarget condition.
pub fn failed_status(pod: &Pod, reason: Reason) -> Option<serde_json::Value> {
    let mut status = serde_json::Map::new();
    if !pods::is_terminal(pod) {
        status.insert("phase".into(), "Failed".into());
    }
    if reason == Reason::Orphaned {
        status.insert(
            "conditions".into(),
            serde_json::json!([{
                "type": "DisruptionTarget",
                "status": "True",
                "reason": "DeletionByPodGC",
                "message": "PodGC: node no longer exists",
                "lastTransitionTime": k8s_openapi::jiff::Timestamp::now().to_string(),
            }]),
        );
    }
    (!status.is_empty()).then(|| serde_json::json!({ "status": status }))
}

struct State {
    client: kube::Client,
    pods: Informer<Pod>,
    nodes: Informer<Node>,
    threshold: usize,
    /// How long a node must be missing before its pods count as orphaned.
    quarantine: Duration,
    /// Missing nodes and when they were first seen missing.
    missing_since: HashMap<String, Instant>,
}

impl State {
    async fn pass(&mut self) {
        let all = self.pods.list();
        let nodes = self.nodes.list();
        let known: HashSet<String> = nodes
            .iter()
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        let missing = missing_nodes(&all, &known);
        let now = Instant::now();
        self.missing_since.retain(|n, _| missing.contains(n));
        let mut confirmed = HashSet::new();
        for n in missing {
            let since = *self.missing_since.entry(n.clone()).or_insert(now);
            if now.duration_since(since) < self.quarantine {
                continue;
            }
            // The cache may lag: only a NotFound from the server confirms the node gone.
            let api: Api<Node> = Api::all(self.client.clone());
            if let Ok(None) = api.get_opt(&n).await {
                confirmed.insert(n);
            }
        }
        for (pod, reason) in plan(&all, &nodes, &confirmed, self.threshold) {
            if let Err(e) = self.collect(&pod, reason).await {
                tracing::warn!("pod GC: {e}");
            }
        }
    }

    async fn collect(&self, pod: &Pod, reason: Reason) -> Result<(), Error> {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let err = |op, source| Error::Pod {
            namespace: namespace.clone(),
            name: name.clone(),
            op,
            source,
        };
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        tracing::info!(pod = %format!("{namespace}/{name}"), ?reason, "pod GC deleting pod");
        if let Some(status) = failed_status(pod, reason) {
            match api
                .patch_status(&name, &PatchParams::default(), &Patch::Strategic(status))
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
                Err(e) => return Err(err("marking failed", e)),
            }
        }
        let mut dp = DeleteParams::default().grace_period(0);
        dp.preconditions = pod
            .metadata
            .uid
            .clone()
            .map(|uid| kube::api::Preconditions {
                uid: Some(uid),
                resource_version: None,
            });
        match api.delete(&name, &dp).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
            Err(e) => Err(err("deleting", e)),
        }
    }
}

pub fn controller(ctx: &Ctx) -> Loop {
    let mut state = State {
        client: ctx.client.clone(),
        pods: ctx.informers.informer::<Pod>(),
        nodes: ctx.informers.informer::<Node>(),
        threshold: ctx.settings.terminated_pod_gc_threshold,
        quarantine: ctx.settings.pod_gc_orphan_quarantine,
        missing_since: HashMap::new(),
    };
    let shutdown = ctx.shutdown.clone();
    let period = ctx.settings.pod_gc_period;
    Box::pin(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => state.pass().await,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, created: &str, phase: &str, node: Option<&str>, deleting: bool) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "ns", "creationTimestamp": created,
                    "deletionTimestamp": if deleting { Some("2026-01-01T00:00:00Z") } else { None }},
                "spec": {"containers": [], "nodeName": node},
                "status": {"phase": phase},
            }))
            .unwrap(),
        )
    }

    fn names(ps: &[Arc<Pod>]) -> Vec<&str> {
        ps.iter()
            .map(|p| p.metadata.name.as_deref().unwrap_or(""))
            .collect()
    }

    #[test]
    fn terminated_beyond_threshold() {
        let evicted: Arc<Pod> = Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "evicted", "namespace": "ns", "creationTimestamp": "2026-01-05T00:00:00Z"},
                "status": {"phase": "Failed", "reason": "Evicted"},
            }))
            .unwrap(),
        );
        let all = vec![
            pod("new", "2026-01-04T00:00:00Z", "Succeeded", Some("n"), false),
            pod("old", "2026-01-01T00:00:00Z", "Failed", Some("n"), false),
            pod("mid", "2026-01-02T00:00:00Z", "Succeeded", Some("n"), false),
            pod(
                "running",
                "2025-01-01T00:00:00Z",
                "Running",
                Some("n"),
                false,
            ),
            evicted,
        ];
        let cases: &[(&str, usize, Vec<&str>)] = &[
            ("zero disables", 0, vec![]),
            ("under threshold", 5, vec![]),
            ("at threshold", 4, vec![]),
            ("evicted first, then oldest", 2, vec!["evicted", "old"]),
            ("keep one", 1, vec!["evicted", "old", "mid"]),
        ];
        for (name, threshold, want) in cases {
            assert_eq!(
                &names(&terminated_to_delete(&all, *threshold)),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn plan_cases() {
        let all = vec![
            pod(
                "orphan",
                "2026-01-01T00:00:00Z",
                "Running",
                Some("gone"),
                false,
            ),
            pod(
                "quarantined",
                "2026-01-01T00:00:00Z",
                "Running",
                Some("missing"),
                false,
            ),
            pod(
                "healthy",
                "2026-01-01T00:00:00Z",
                "Running",
                Some("here"),
                false,
            ),
            pod(
                "unscheduled-deleting",
                "2026-01-01T00:00:00Z",
                "Pending",
                None,
                true,
            ),
            pod(
                "unscheduled",
                "2026-01-01T00:00:00Z",
                "Pending",
                None,
                false,
            ),
            pod(
                "oos-deleting",
                "2026-01-01T00:00:00Z",
                "Running",
                Some("oos"),
                true,
            ),
            pod(
                "oos-running",
                "2026-01-01T00:00:00Z",
                "Running",
                Some("oos"),
                false,
            ),
        ];
        let node = |name: &str, tainted: bool, ready: &str| -> Arc<Node> {
            Arc::new(
                serde_json::from_value(serde_json::json!({
                    "metadata": {"name": name},
                    "spec": {"taints": if tainted { serde_json::json!([{"key": OUT_OF_SERVICE_TAINT, "effect": "NoExecute"}]) } else { serde_json::json!([]) }},
                    "status": {"conditions": [{"type": "Ready", "status": ready}]},
                }))
                .unwrap(),
            )
        };
        let nodes = vec![node("here", false, "True"), node("oos", true, "False")];
        let gone: HashSet<String> = ["gone".to_string()].into();
        let planned = plan(&all, &nodes, &gone, 10);
        let got: Vec<(&str, Reason)> = planned
            .iter()
            .map(|(p, r)| (p.metadata.name.as_deref().unwrap_or(""), *r))
            .collect();
        assert_eq!(
            got,
            vec![
                ("orphan", Reason::Orphaned),
                ("oos-deleting", Reason::TerminatingOutOfService),
                ("unscheduled-deleting", Reason::UnscheduledTerminating),
            ]
        );
        let known: HashSet<String> = ["here".to_string(), "oos".to_string()].into();
        let mut missing: Vec<String> = missing_nodes(&all, &known).into_iter().collect();
        missing.sort();
        assert_eq!(missing, vec!["gone", "missing"]);
    }

    #[test]
    fn failed_status_cases() {
        let running = pod("p", "2026-01-01T00:00:00Z", "Running", Some("n"), false);
        let done = pod("p", "2026-01-01T00:00:00Z", "Succeeded", Some("n"), false);
        let orphan = failed_status(&running, Reason::Orphaned).unwrap();
        assert_eq!(orphan["status"]["phase"], "Failed");
        assert_eq!(
            orphan["status"]["conditions"][0]["reason"],
            "DeletionByPodGC"
        );
        let unscheduled = failed_status(&running, Reason::UnscheduledTerminating).unwrap();
        assert!(unscheduled["status"].get("conditions").is_none());
        assert!(
            failed_status(&done, Reason::Terminated).is_none(),
            "terminal pods keep their phase"
        );
        let done_orphan = failed_status(&done, Reason::Orphaned).unwrap();
        assert!(done_orphan["status"].get("phase").is_none());
    }
}
