//! Pure decisions: which pods to claim or release, how many to create, which to delete
//! (upstream's ranking), and how creates are batched.

use std::cmp::Ordering;
use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use skiff_runtime::selector::Selector;

use crate::util::{owner, pods};

/// At most this many creates or deletes per pass (upstream's burstReplicas).
pub const BURST_REPLICAS: usize = 500;

/// Pod annotation whose lower value means "delete me first" (upstream's PodDeletionCost).
pub const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// What to do with one active pod in the controller's namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Ours and selected: counts toward replicas.
    Keep,
    /// An orphan the selector matches: set our controller reference.
    Adopt,
    /// Ours but no longer selected: drop our controller reference.
    Release,
    /// Not ours to touch.
    Ignore,
}

/// Upstream's ClaimPods for one pod. `deleting` says the controller itself is being
/// deleted (then it neither adopts nor releases).
pub fn claim(pod: &Pod, owner_uid: &str, selector: &Selector, deleting: bool) -> Claim {
    let matches = selector.matches(pod.metadata.labels.as_ref());
    match owner::controller_of(&pod.metadata) {
        Some(r) if r.uid != owner_uid => Claim::Ignore,
        Some(_) if matches => Claim::Keep,
        Some(_) if deleting => Claim::Ignore,
        Some(_) => Claim::Release,
        None if deleting || !matches || pods::is_terminating(pod) => Claim::Ignore,
        None => Claim::Adopt,
    }
}

/// How many pods to create (positive) or delete (negative), capped at a burst.
pub fn diff(active: usize, desired: i32) -> i64 {
    let d = i64::from(desired.max(0)) - active as i64;
    d.clamp(-(BURST_REPLICAS as i64), BURST_REPLICAS as i64)
}

/// Upstream's slowStartBatch sizes: 1, 2, 4, ... until `count` is reached, so a
/// failing create (a quota, a bad template) fails once instead of `count` times.
pub fn slow_start_batches(count: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut left = count;
    let mut size = 1usize;
    while left > 0 {
        let n = size.min(left);
        out.push(n);
        left -= n;
        size *= 2;
    }
    out
}

/// The `count` pods to delete first, as upstream ranks them: unassigned before
/// assigned; Pending < Unknown < Running; not ready before ready; lower deletion cost;
/// more pods of the same family on the node; ready for less time (log2 buckets);
/// more restarts; newer (log2 buckets). `related` are the pods whose co-location
/// counts (the controller's own, or all of its Deployment's).
pub fn pods_to_delete<'a>(
    candidates: &[&'a Pod],
    related: &[&Pod],
    count: usize,
    now: Timestamp,
) -> Vec<&'a Pod> {
    let mut on_node: HashMap<&str, i64> = HashMap::new();
    for p in related {
        if let Some(n) = pods::node_name(p) {
            *on_node.entry(n).or_default() += 1;
        }
    }
    let rank = |p: &Pod| {
        pods::node_name(p)
            .and_then(|n| on_node.get(n))
            .copied()
            .unwrap_or(0)
    };
    let mut ranked: Vec<(&Pod, i64)> = candidates.iter().map(|p| (*p, rank(p))).collect();
    ranked.sort_by(|a, b| compare(a.0, a.1, b.0, b.1, now));
    ranked.into_iter().take(count).map(|(p, _)| p).collect()
}

fn phase_ordinal(p: &Pod) -> u8 {
    match pods::phase(p) {
        "Unknown" => 1,
        "Running" => 2,
        _ => 0,
    }
}

fn deletion_cost(p: &Pod) -> i32 {
    p.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DELETION_COST))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn ready_since(p: &Pod) -> Option<Timestamp> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")?
        .last_transition_time
        .as_ref()
        .map(|t| t.0)
}

fn restarts(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
        .unwrap_or(0)
}

/// floor(log2(now - t in ns)), -1 when t is not in the past (upstream's
/// LogarithmicScaleDown buckets).
fn log_bucket(t: Timestamp, now: Timestamp) -> i64 {
    let d = now.as_nanosecond() - t.as_nanosecond();
    if d > 0 {
        (d as f64).log2() as i64
    } else {
        -1
    }
}

/// Newer first by log2 bucket (times in one bucket tie); a missing time sorts first.
/// Ties fall through to the next criterion: breaking them here (e.g. by uid) would make
/// the ranking inconsistent across criteria, and `sort_by` needs a total order.
fn newer_first(a: Option<Timestamp>, b: Option<Timestamp>, now: Timestamp) -> Ordering {
    match (a, b) {
        (Some(x), Some(y)) => log_bucket(x, now).cmp(&log_bucket(y, now)),
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

fn compare(a: &Pod, ra: i64, b: &Pod, rb: i64, now: Timestamp) -> Ordering {
    let assigned = |p: &Pod| pods::node_name(p).is_some();
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    assigned(a)
        .cmp(&assigned(b))
        .then_with(|| phase_ordinal(a).cmp(&phase_ordinal(b)))
        .then_with(|| pods::is_ready(a).cmp(&pods::is_ready(b)))
        .then_with(|| deletion_cost(a).cmp(&deletion_cost(b)))
        .then_with(|| rb.cmp(&ra))
        .then_with(|| {
            if pods::is_ready(a) && pods::is_ready(b) {
                newer_first(ready_since(a), ready_since(b), now)
            } else {
                Ordering::Equal
            }
        })
        .then_with(|| restarts(b).cmp(&restarts(a)))
        .then_with(|| newer_first(created(a), created(b), now))
        // Last, as upstream with LogarithmicScaleDown: the uid, so equal ranks are
        // broken the same way on every pass.
        .then_with(|| a.metadata.uid.cmp(&b.metadata.uid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(
        name: &str,
        node: Option<&str>,
        phase: &str,
        ready_at: Option<i64>,
        created: i64,
    ) -> Pod {
        serde_json::from_value(json!({
            "metadata": {
                "name": name, "uid": name,
                "creationTimestamp": Timestamp::from_second(created).unwrap().to_string(),
                "labels": {"app": "web"},
            },
            "spec": {"containers": [], "nodeName": node},
            "status": {"phase": phase, "conditions": ready_at.map(|t| vec![json!({
                "type": "Ready", "status": "True",
                "lastTransitionTime": Timestamp::from_second(t).unwrap().to_string(),
            })]).unwrap_or_default()},
        }))
        .unwrap()
    }

    fn names(ps: &[&Pod]) -> Vec<String> {
        ps.iter()
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect()
    }

    /// Regression: ranking 1,750 pods of a rollout panicked in `sort_by` ("comparison
    /// function does not correctly implement a total order"): equal times tied while
    /// nearby times in the same log2 bucket were ordered by uid. Checks transitivity.
    #[test]
    fn ranking_is_a_total_order() {
        let owned: Vec<Pod> = (0..24)
            .map(|i| {
                pod(
                    &format!("p{:02}", (i * 7) % 24),
                    Some("n"),
                    "Running",
                    Some(1000 + (i % 3) as i64),
                    900 + (i % 4) as i64,
                )
            })
            .collect();
        let now = Timestamp::from_second(1100).unwrap();
        let le = |a: &Pod, b: &Pod| compare(a, 0, b, 0, now) != Ordering::Greater;
        for a in &owned {
            for b in &owned {
                assert_eq!(
                    compare(a, 0, b, 0, now),
                    compare(b, 0, a, 0, now).reverse(),
                    "antisymmetric"
                );
                for c in &owned {
                    if le(a, b) && le(b, c) {
                        assert!(le(a, c), "transitive");
                    }
                }
            }
        }
        let refs: Vec<&Pod> = owned.iter().collect();
        assert_eq!(pods_to_delete(&refs, &refs, 10, now).len(), 10);
    }

    #[test]
    fn deletion_ranking() {
        let now = Timestamp::from_second(1_000_000).unwrap();
        struct Case {
            name: &'static str,
            pods: Vec<Pod>,
            first: &'static str,
        }
        let cases = [
            Case {
                name: "unassigned before assigned",
                pods: vec![
                    pod("a", Some("n"), "Pending", None, 0),
                    pod("u", None, "Pending", None, 0),
                ],
                first: "u",
            },
            Case {
                name: "pending before running",
                pods: vec![
                    pod("r", Some("n"), "Running", None, 0),
                    pod("p", Some("n"), "Pending", None, 0),
                ],
                first: "p",
            },
            Case {
                name: "unknown before running",
                pods: vec![
                    pod("r", Some("n"), "Running", None, 0),
                    pod("k", Some("n"), "Unknown", None, 0),
                ],
                first: "k",
            },
            Case {
                name: "not ready before ready",
                pods: vec![
                    pod("ready", Some("n"), "Running", Some(10), 0),
                    pod("unready", Some("m"), "Running", None, 0),
                ],
                first: "unready",
            },
            Case {
                name: "doubled-up node first",
                pods: vec![
                    pod("alone", Some("x"), "Running", Some(10), 0),
                    pod("pair1", Some("y"), "Running", Some(10), 0),
                    pod("pair2", Some("y"), "Running", Some(10), 0),
                ],
                first: "pair1",
            },
            Case {
                name: "ready for less time first (different log buckets)",
                pods: vec![
                    pod("old", Some("x"), "Running", Some(10), 0),
                    pod("fresh", Some("y"), "Running", Some(999_990), 0),
                ],
                first: "fresh",
            },
            Case {
                name: "newer first",
                pods: vec![
                    pod("older", Some("x"), "Running", None, 10),
                    pod("newer", Some("y"), "Running", None, 999_000),
                ],
                first: "newer",
            },
        ];
        for c in cases {
            let refs: Vec<&Pod> = c.pods.iter().collect();
            let got = pods_to_delete(&refs, &refs, 1, now);
            assert_eq!(names(&got), vec![c.first.to_string()], "{}", c.name);
        }
    }

    #[test]
    fn more_restarts_first_and_deletion_cost() {
        let now = Timestamp::from_second(1_000_000).unwrap();
        let mut flaky = pod("flaky", Some("x"), "Running", None, 100);
        flaky.status.as_mut().unwrap().container_statuses =
            Some(vec![serde_json::from_value(json!({
                "name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 4,
            }))
            .unwrap()]);
        let steady = pod("steady", Some("y"), "Running", None, 100);
        assert_eq!(
            names(&pods_to_delete(&[&steady, &flaky], &[], 1, now)),
            ["flaky"]
        );
        let mut cheap = pod("cheap", Some("x"), "Running", None, 100);
        cheap.metadata.annotations = Some([(DELETION_COST.to_string(), "-5".to_string())].into());
        assert_eq!(
            names(&pods_to_delete(&[&flaky, &cheap], &[], 1, now)),
            ["cheap"]
        );
    }

    #[test]
    fn claims() {
        let sel = Selector::from_map(Some(&[("app".to_string(), "web".to_string())].into()));
        let orphan = pod("o", None, "Running", None, 0);
        let mut ours = orphan.clone();
        ours.metadata.owner_references = Some(vec![serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "me", "controller": true,
        })).unwrap()]);
        let mut ours_relabeled = ours.clone();
        ours_relabeled.metadata.labels = Some([("app".to_string(), "other".to_string())].into());
        let mut theirs = ours.clone();
        theirs.metadata.owner_references.as_mut().unwrap()[0].uid = "them".into();
        let mut unmatched_orphan = orphan.clone();
        unmatched_orphan.metadata.labels = None;
        let cases = [
            ("orphan matching is adopted", &orphan, false, Claim::Adopt),
            (
                "orphan not adopted while we are deleted",
                &orphan,
                true,
                Claim::Ignore,
            ),
            (
                "unmatched orphan ignored",
                &unmatched_orphan,
                false,
                Claim::Ignore,
            ),
            ("ours and matching kept", &ours, false, Claim::Keep),
            (
                "ours but relabeled is released",
                &ours_relabeled,
                false,
                Claim::Release,
            ),
            (
                "ours relabeled while we are deleted stays",
                &ours_relabeled,
                true,
                Claim::Ignore,
            ),
            ("someone else's ignored", &theirs, false, Claim::Ignore),
        ];
        for (name, p, deleting, want) in cases {
            assert_eq!(claim(p, "me", &sel, deleting), want, "{name}");
        }
    }

    #[test]
    fn batches_and_diff() {
        assert_eq!(slow_start_batches(0), Vec::<usize>::new());
        assert_eq!(slow_start_batches(1), [1]);
        assert_eq!(slow_start_batches(10), [1, 2, 4, 3]);
        assert_eq!(diff(3, 5), 2);
        assert_eq!(diff(5, 3), -2);
        assert_eq!(diff(0, 10_000), 500);
        assert_eq!(diff(2, -1), -2);
    }
}
