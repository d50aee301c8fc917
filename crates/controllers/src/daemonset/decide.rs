//! The DaemonSet controller's decisions, free of IO: which nodes need a daemon pod,
//! which pods must go (wrong node, duplicates, failed, outdated during a rolling update),
//! and the status to write.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{Node, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

use super::eligibility::{add_default_tolerations, fit, pin_to_node, target_node};
use crate::statefulset::revision::HASH_LABEL;
use crate::util::{owner, podcontrol, pods};

pub const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";

pub struct Input<'a> {
    pub ds: &'a DaemonSet,
    pub nodes: &'a [Arc<Node>],
    /// Pods the DaemonSet controls.
    pub pods: &'a [Arc<Pod>],
    /// Hash of the current template's revision.
    pub hash: &'a str,
    /// No creates or deletes of an earlier pass are still unseen.
    pub settled: bool,
    pub now: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

#[derive(Debug, Default)]
pub struct Plan {
    /// Nodes to start a daemon pod on.
    pub create: Vec<String>,
    /// Pods to delete: name and uid.
    pub delete: Vec<(String, Option<String>)>,
    pub events: Vec<Event>,
    pub status: DaemonSetStatus,
    pub requeue: Option<Duration>,
}

/// The template's pod spec plus the default daemon tolerations: what eligibility is
/// judged on.
fn daemon_spec(ds: &DaemonSet) -> PodSpec {
    let mut spec = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .unwrap_or_default();
    add_default_tolerations(&mut spec);
    spec
}

fn hash_of(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(HASH_LABEL)
        .map(String::as_str)
}

/// Resolves an int-or-percent against `total`, percentages rounded up (as upstream for
/// both maxUnavailable and maxSurge of DaemonSets).
fn scaled(v: Option<&IntOrString>, total: usize, default: usize) -> usize {
    match v {
        None => default,
        Some(IntOrString::Int(n)) => (*n).max(0) as usize,
        Some(IntOrString::String(s)) => {
            let pct: usize = s.trim_end_matches('%').parse().unwrap_or(0);
            (pct * total).div_ceil(100)
        }
    }
}

pub fn decide(input: &Input<'_>) -> Plan {
    let ds = input.ds;
    let mut plan = Plan::default();
    let spec = daemon_spec(ds);
    let min_ready = ds
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    let available = |p: &Pod| pods::is_available(p, min_ready, input.now);

    let mut on_node: BTreeMap<String, Vec<&Arc<Pod>>> = BTreeMap::new();
    for p in input.pods {
        if let Some(n) = p.spec.as_ref().and_then(target_node) {
            on_node.entry(n).or_default().push(p);
        }
    }
    let delete = |plan: &mut Plan, p: &Pod| {
        plan.delete.push((
            p.metadata.name.clone().unwrap_or_default(),
            p.metadata.uid.clone(),
        ));
    };

    let mut status = DaemonSetStatus {
        observed_generation: ds.metadata.generation,
        collision_count: ds.status.as_ref().and_then(|s| s.collision_count),
        conditions: ds.status.as_ref().and_then(|s| s.conditions.clone()),
        ..Default::default()
    };
    let (mut desired, mut current, mut misscheduled, mut ready, mut avail, mut updated) =
        (0, 0, 0, 0, 0, 0);
    // Nodes that should run a daemon, with their live pods (for the rolling update).
    let mut running: Vec<(String, Vec<&Arc<Pod>>)> = Vec::new();

    for node in input.nodes {
        let name = node.metadata.name.clone().unwrap_or_default();
        let here = on_node.remove(&name).unwrap_or_default();
        let mut live: Vec<&Arc<Pod>> = Vec::new();
        for p in here {
            if pods::is_terminating(p) {
                continue;
            }
            if pods::phase(p) == "Failed" {
                plan.events.push(Event {
                    warning: true,
                    reason: "FailedDaemonPod",
                    message: format!(
                        "Found failed daemon pod {}/{} on node {name}, will try to kill it",
                        p.metadata.namespace.as_deref().unwrap_or_default(),
                        p.metadata.name.as_deref().unwrap_or_default()
                    ),
                });
                delete(&mut plan, p);
                continue;
            }
            live.push(p);
        }
        let f = fit(&spec, node);
        if f.should_run {
            desired += 1;
        } else if !live.is_empty() {
            misscheduled += 1;
        }
        if !f.should_run && !f.should_continue {
            for p in &live {
                delete(&mut plan, p);
            }
            continue;
        }
        if live.is_empty() {
            if f.should_run {
                plan.create.push(name.clone());
            }
            continue;
        }
        // Duplicates: keep the oldest of each revision (an old and a new pod may
        // coexist while surging), at most one of each.
        live.sort_by_key(|p| {
            (
                p.metadata.creation_timestamp.as_ref().map(|t| t.0),
                p.metadata.name.clone(),
            )
        });
        let mut seen = BTreeSet::new();
        let mut kept = Vec::new();
        for p in live {
            let is_new = hash_of(p) == Some(input.hash);
            if seen.insert(is_new) {
                kept.push(p);
            } else {
                delete(&mut plan, p);
            }
        }
        if f.should_run {
            current += 1;
            if kept.iter().any(|p| pods::is_ready(p)) {
                ready += 1;
            }
            if kept.iter().any(|p| available(p)) {
                avail += 1;
            }
            if kept.iter().any(|p| hash_of(p) == Some(input.hash)) {
                updated += 1;
            }
            running.push((name, kept.clone()));
        }
        for p in &kept {
            if let Some(wait) = pods::available_in(p, min_ready, input.now) {
                plan.requeue = Some(plan.requeue.map_or(wait, |r| r.min(wait)));
            }
        }
    }
    // Pods for nodes that no longer exist are left to the pod GC, as upstream.

    status.desired_number_scheduled = desired;
    status.current_number_scheduled = current;
    status.number_misscheduled = misscheduled;
    status.number_ready = ready;
    status.number_available = Some(avail);
    status.updated_number_scheduled = Some(updated);
    status.number_unavailable = Some(desired - avail);

    let strategy = ds
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.clone())
        .unwrap_or_default();
    if strategy.type_.as_deref().unwrap_or("RollingUpdate") == "RollingUpdate" && input.settled {
        let ru = strategy.rolling_update.unwrap_or_default();
        let total = desired as usize;
        let surge = scaled(ru.max_surge.as_ref(), total, 0);
        let mut max_unavailable = scaled(ru.max_unavailable.as_ref(), total, 1);
        if surge == 0 && max_unavailable == 0 {
            max_unavailable = 1;
        }
        roll(
            &mut plan,
            &running,
            input.hash,
            surge,
            max_unavailable,
            desired as usize,
            &available,
        );
    }
    if !input.settled {
        plan.create.clear();
        plan.delete.clear();
    }
    plan.status = status;
    plan
}

/// One step of a rolling update over the nodes that should run a daemon.
fn roll(
    plan: &mut Plan,
    running: &[(String, Vec<&Arc<Pod>>)],
    hash: &str,
    surge: usize,
    max_unavailable: usize,
    desired: usize,
    available: &dyn Fn(&Pod) -> bool,
) {
    let is_new = |p: &Pod| hash_of(p) == Some(hash);
    let del = |plan: &mut Plan, p: &Pod| {
        let r = (
            p.metadata.name.clone().unwrap_or_default(),
            p.metadata.uid.clone(),
        );
        if !plan.delete.contains(&r) {
            plan.delete.push(r);
        }
    };
    if surge == 0 {
        let with_available = running
            .iter()
            .filter(|(_, ps)| ps.iter().any(|p| available(p)))
            .count();
        let mut unavailable = desired.saturating_sub(with_available);
        for (_, ps) in running {
            let Some(old) = ps.iter().find(|p| !is_new(p)) else {
                continue;
            };
            if ps.iter().any(|p| is_new(p)) {
                del(plan, old);
            } else if !available(old) {
                // Already unavailable: replacing it costs nothing.
                del(plan, old);
            } else if unavailable < max_unavailable {
                del(plan, old);
                unavailable += 1;
            }
        }
        return;
    }
    let mut surging = running
        .iter()
        .filter(|(_, ps)| ps.iter().any(|p| is_new(p)) && ps.iter().any(|p| !is_new(p)))
        .count();
    for (node, ps) in running {
        let Some(old) = ps.iter().find(|p| !is_new(p)) else {
            continue;
        };
        match ps.iter().find(|p| is_new(p)) {
            Some(new) if available(new) => del(plan, old),
            Some(_) => {}
            None if !available(old) => del(plan, old),
            None if surging < surge => {
                plan.create.push(node.clone());
                surging += 1;
            }
            None => {}
        }
    }
}

/// The daemon pod for `node`: the template, the revision labels, the default
/// tolerations, and a required affinity naming the node (the scheduler binds it).
pub fn pod_for(ds: &DaemonSet, hash: &str, node: &str) -> Pod {
    let name = ds.metadata.name.clone().unwrap_or_default();
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let mut labels = BTreeMap::from([(HASH_LABEL.to_string(), hash.to_string())]);
    if let Some(g) = ds.metadata.generation {
        labels.insert(TEMPLATE_GENERATION_LABEL.into(), g.to_string());
    }
    let mut pod = podcontrol::pod_from_template(
        &template,
        ds.metadata.namespace.as_deref().unwrap_or("default"),
        owner::controller_ref(ds),
        &format!("{name}-"),
        None,
        &labels,
    );
    let spec = pod.spec.get_or_insert_with(Default::default);
    add_default_tolerations(spec);
    pin_to_node(spec, node);
    pod
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ds(extra: serde_json::Value) -> DaemonSet {
        let mut spec = json!({
            "selector": {"matchLabels": {"app": "d"}},
            "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"name": "c"}]}},
        });
        if let (Some(a), Some(b)) = (spec.as_object_mut(), extra.as_object()) {
            a.extend(b.clone());
        }
        serde_json::from_value(
            json!({"metadata": {"name": "d", "namespace": "ns", "generation": 2}, "spec": spec}),
        )
        .unwrap()
    }

    fn node(name: &str, labels: serde_json::Value) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap(),
        )
    }

    /// A running pod on `node` of revision `hash`, ready or not, created at `t`.
    fn pod(name: &str, node: &str, hash: &str, ready: bool, t: i64) -> Arc<Pod> {
        let created = Timestamp::from_second(1_000 + t).unwrap().to_string();
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "uid": name, "labels": {HASH_LABEL: hash}, "creationTimestamp": created},
                "spec": {"nodeName": node, "containers": [{"name": "c"}]},
                "status": {"phase": "Running", "conditions": [
                    {"type": "Ready", "status": if ready {"True"} else {"False"}, "lastTransitionTime": "1970-01-01T00:00:00Z"}
                ]},
            }))
            .unwrap(),
        )
    }

    struct Case {
        name: &'static str,
        ds: DaemonSet,
        nodes: Vec<Arc<Node>>,
        pods: Vec<Arc<Pod>>,
        create: Vec<&'static str>,
        delete: Vec<&'static str>,
        /// desired, current, misscheduled, ready, updated
        counts: (i32, i32, i32, i32, i32),
    }

    #[test]
    fn placement_and_rolling_update() {
        let two = || vec![node("a", json!({"disk": "ssd"})), node("b", json!({}))];
        let cases = vec![
            Case {
                name: "one pod per node",
                ds: ds(json!({})),
                nodes: two(),
                pods: vec![],
                create: vec!["a", "b"],
                delete: vec![],
                counts: (2, 0, 0, 0, 0),
            },
            Case {
                name: "nodeSelector limits nodes; misplaced pods go",
                ds: ds(json!({"template": {"metadata": {"labels": {"app": "d"}},
                    "spec": {"nodeSelector": {"disk": "ssd"}, "containers": [{"name": "c"}]}}})),
                nodes: two(),
                pods: vec![pod("p-b", "b", "h1", true, 0)],
                create: vec!["a"],
                delete: vec!["p-b"],
                counts: (1, 0, 1, 0, 0),
            },
            Case {
                name: "duplicates on a node: the newest goes",
                ds: ds(json!({})),
                nodes: vec![node("a", json!({}))],
                pods: vec![pod("p1", "a", "h1", true, 0), pod("p2", "a", "h1", true, 5)],
                create: vec![],
                delete: vec!["p2"],
                counts: (1, 1, 0, 1, 1),
            },
            Case {
                name: "rolling update: one unavailable at a time",
                ds: ds(json!({})),
                nodes: two(),
                pods: vec![
                    pod("old-a", "a", "h0", true, 0),
                    pod("old-b", "b", "h0", true, 0),
                ],
                create: vec![],
                delete: vec!["old-a"],
                counts: (2, 2, 0, 2, 0),
            },
            Case {
                name: "rolling update waits while a node is unavailable",
                ds: ds(json!({})),
                nodes: two(),
                pods: vec![
                    pod("new-a", "a", "h1", false, 1),
                    pod("old-b", "b", "h0", true, 0),
                ],
                create: vec![],
                delete: vec![],
                counts: (2, 2, 0, 1, 1),
            },
            Case {
                name: "maxUnavailable 100% replaces all at once",
                ds: ds(
                    json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "100%"}}}),
                ),
                nodes: two(),
                pods: vec![
                    pod("old-a", "a", "h0", true, 0),
                    pod("old-b", "b", "h0", true, 0),
                ],
                create: vec![],
                delete: vec!["old-a", "old-b"],
                counts: (2, 2, 0, 2, 0),
            },
            Case {
                name: "maxSurge starts the new pod beside the old",
                ds: ds(
                    json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}}),
                ),
                nodes: two(),
                pods: vec![
                    pod("old-a", "a", "h0", true, 0),
                    pod("old-b", "b", "h0", true, 0),
                ],
                create: vec!["a"],
                delete: vec![],
                counts: (2, 2, 0, 2, 0),
            },
            Case {
                name: "maxSurge: the old pod goes once the new one is available",
                ds: ds(
                    json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}}),
                ),
                nodes: two(),
                pods: vec![
                    pod("old-a", "a", "h0", true, 0),
                    pod("new-a", "a", "h1", true, 1),
                    pod("old-b", "b", "h0", true, 0),
                ],
                create: vec![],
                delete: vec!["old-a"],
                counts: (2, 2, 0, 2, 1),
            },
            Case {
                name: "OnDelete leaves old pods alone",
                ds: ds(json!({"updateStrategy": {"type": "OnDelete"}})),
                nodes: two(),
                pods: vec![
                    pod("old-a", "a", "h0", true, 0),
                    pod("old-b", "b", "h0", true, 0),
                ],
                create: vec![],
                delete: vec![],
                counts: (2, 2, 0, 2, 0),
            },
        ];
        let now = Timestamp::from_second(10_000).unwrap();
        for c in cases {
            let plan = decide(&Input {
                ds: &c.ds,
                nodes: &c.nodes,
                pods: &c.pods,
                hash: "h1",
                settled: true,
                now,
            });
            assert_eq!(plan.create, c.create, "{}: create", c.name);
            let deleted: Vec<&str> = plan.delete.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(deleted, c.delete, "{}: delete", c.name);
            let s = &plan.status;
            assert_eq!(
                (
                    s.desired_number_scheduled,
                    s.current_number_scheduled,
                    s.number_misscheduled,
                    s.number_ready,
                    s.updated_number_scheduled.unwrap_or(0)
                ),
                c.counts,
                "{}: counts",
                c.name
            );
            assert_eq!(s.observed_generation, Some(2));
        }
    }

    #[test]
    fn pod_is_pinned_and_tolerant() {
        let p = pod_for(&ds(json!({})), "h1", "a");
        let spec = p.spec.unwrap();
        assert_eq!(target_node(&spec).as_deref(), Some("a"));
        assert!(spec.node_name.is_none(), "the scheduler binds it");
        let tolerations = spec.tolerations.unwrap_or_default();
        assert!(tolerations.iter().any(|t| t.key.as_deref()
            == Some("node.kubernetes.io/unreachable")
            && t.effect.as_deref() == Some("NoExecute")
            && t.toleration_seconds.is_none()));
        let labels = p.metadata.labels.unwrap_or_default();
        assert_eq!(labels.get(HASH_LABEL).map(String::as_str), Some("h1"));
        assert_eq!(
            labels.get(TEMPLATE_GENERATION_LABEL).map(String::as_str),
            Some("2")
        );
        assert_eq!(p.metadata.generate_name.as_deref(), Some("d-"));
    }
}
