//! The taints the node lifecycle controller owns (pure): NoSchedule taints that mirror
//! node conditions (upstream's TaintNodesByCondition) and the NoExecute not-ready /
//! unreachable taints that drive taint-based eviction.

use k8s_openapi::api::core::v1::{Node, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::health::condition;

pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
pub const DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
pub const PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
pub const NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";
pub const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

const NO_SCHEDULE_KEYS: [&str; 7] = [
    NOT_READY,
    UNREACHABLE,
    MEMORY_PRESSURE,
    DISK_PRESSURE,
    PID_PRESSURE,
    NETWORK_UNAVAILABLE,
    UNSCHEDULABLE,
];

/// The Ready condition's status: "True", "False" or "Unknown" (missing is Unknown).
pub fn ready_status(node: &Node) -> &str {
    match condition(node, "Ready").map(|c| c.status.as_str()) {
        Some("True") => "True",
        Some("False") => "False",
        _ => "Unknown",
    }
}

/// Keys of the NoSchedule taints the node's conditions call for.
pub fn no_schedule_keys(node: &Node) -> Vec<&'static str> {
    let is_true = |t: &str| condition(node, t).is_some_and(|c| c.status == "True");
    let mut keys = Vec::new();
    match ready_status(node) {
        "False" => keys.push(NOT_READY),
        "Unknown" => keys.push(UNREACHABLE),
        _ => {}
    }
    for (cond, key) in [
        ("MemoryPressure", MEMORY_PRESSURE),
        ("DiskPressure", DISK_PRESSURE),
        ("PIDPressure", PID_PRESSURE),
        ("NetworkUnavailable", NETWORK_UNAVAILABLE),
    ] {
        if is_true(cond) {
            keys.push(key);
        }
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        keys.push(UNSCHEDULABLE);
    }
    keys
}

/// The NoExecute taint key the Ready condition calls for, if any.
pub fn no_execute_key(node: &Node) -> Option<&'static str> {
    match ready_status(node) {
        "False" => Some(NOT_READY),
        "True" => None,
        _ => Some(UNREACHABLE),
    }
}

fn is_ours(t: &Taint, effect: &str, keys: &[&str]) -> bool {
    t.effect == effect && keys.contains(&t.key.as_str())
}

/// The node's taints as they should be, and whether a new NoExecute taint is wanted but
/// not `granted` (the eviction rate limiter decides). `allow_no_execute` is false in
/// full-disruption mode: then the NoExecute taints go. Returns `None` for the taints
/// when they are already right.
pub fn desired_taints(
    node: &Node,
    allow_no_execute: bool,
    granted: bool,
    now: &Time,
) -> (Option<Vec<Taint>>, bool) {
    let current: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let exec_keys = [NOT_READY, UNREACHABLE];
    let mut out: Vec<Taint> = current
        .iter()
        .filter(|t| {
            !is_ours(t, "NoSchedule", &NO_SCHEDULE_KEYS) && !is_ours(t, "NoExecute", &exec_keys)
        })
        .cloned()
        .collect();
    for key in no_schedule_keys(node) {
        let existing = current
            .iter()
            .find(|t| t.key == key && t.effect == "NoSchedule");
        out.push(existing.cloned().unwrap_or_else(|| Taint {
            key: key.into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        }));
    }
    let mut waiting = false;
    if let Some(key) = no_execute_key(node).filter(|_| allow_no_execute) {
        let existing = current.iter().find(|t| is_ours(t, "NoExecute", &exec_keys));
        match existing {
            Some(t) if t.key == key => out.push(t.clone()),
            // Swapping not-ready and unreachable is not rate limited (as upstream).
            Some(_) => out.push(no_execute(key, now)),
            None if granted => out.push(no_execute(key, now)),
            None => waiting = true,
        }
    }
    let same = out.len() == current.len() && out.iter().all(|t| current.contains(t));
    ((!same).then_some(out), waiting)
}

fn no_execute(key: &str, now: &Time) -> Taint {
    Taint {
        key: key.into(),
        effect: "NoExecute".into(),
        time_added: Some(now.clone()),
        value: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeCondition, NodeSpec, NodeStatus};
    use k8s_openapi::jiff::Timestamp;

    fn node(conds: &[(&str, &str)], taints: Vec<Taint>, unschedulable: bool) -> Node {
        Node {
            spec: Some(NodeSpec {
                taints: Some(taints),
                unschedulable: Some(unschedulable),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                conditions: Some(
                    conds
                        .iter()
                        .map(|(t, s)| NodeCondition {
                            type_: t.to_string(),
                            status: s.to_string(),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn taint(key: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            ..Default::default()
        }
    }

    fn keys(t: &Option<Vec<Taint>>) -> Vec<String> {
        let mut k: Vec<String> = t
            .iter()
            .flatten()
            .map(|t| format!("{}:{}", t.key, t.effect))
            .collect();
        k.sort();
        k
    }

    #[test]
    fn taints_follow_conditions() {
        let now = Time(Timestamp::from_second(100).unwrap());
        let user = taint("dedicated", "NoSchedule");
        let cases: Vec<(&str, Node, bool, Vec<&str>, bool)> = vec![
            (
                "ready node, nothing",
                node(&[("Ready", "True")], vec![], false),
                true,
                vec![],
                false,
            ),
            (
                "not ready: both not-ready taints",
                node(&[("Ready", "False")], vec![], false),
                true,
                vec![
                    "node.kubernetes.io/not-ready:NoExecute",
                    "node.kubernetes.io/not-ready:NoSchedule",
                ],
                false,
            ),
            (
                "unknown: unreachable taints",
                node(&[("Ready", "Unknown")], vec![], false),
                true,
                vec![
                    "node.kubernetes.io/unreachable:NoExecute",
                    "node.kubernetes.io/unreachable:NoSchedule",
                ],
                false,
            ),
            (
                "pressure and cordon",
                node(
                    &[
                        ("Ready", "True"),
                        ("MemoryPressure", "True"),
                        ("DiskPressure", "True"),
                        ("PIDPressure", "True"),
                        ("NetworkUnavailable", "True"),
                    ],
                    vec![],
                    true,
                ),
                true,
                vec![
                    "node.kubernetes.io/disk-pressure:NoSchedule",
                    "node.kubernetes.io/memory-pressure:NoSchedule",
                    "node.kubernetes.io/network-unavailable:NoSchedule",
                    "node.kubernetes.io/pid-pressure:NoSchedule",
                    "node.kubernetes.io/unschedulable:NoSchedule",
                ],
                false,
            ),
            (
                "recovered: ours go, the user's stays",
                node(
                    &[("Ready", "True")],
                    vec![
                        taint(UNREACHABLE, "NoExecute"),
                        taint(UNREACHABLE, "NoSchedule"),
                        user.clone(),
                    ],
                    false,
                ),
                true,
                vec!["dedicated:NoSchedule"],
                false,
            ),
            (
                "full disruption: no NoExecute",
                node(
                    &[("Ready", "Unknown")],
                    vec![taint(UNREACHABLE, "NoExecute")],
                    false,
                ),
                false,
                vec!["node.kubernetes.io/unreachable:NoSchedule"],
                false,
            ),
            (
                "swap is not rate limited",
                node(
                    &[("Ready", "False")],
                    vec![taint(UNREACHABLE, "NoExecute")],
                    false,
                ),
                true,
                vec![
                    "node.kubernetes.io/not-ready:NoExecute",
                    "node.kubernetes.io/not-ready:NoSchedule",
                ],
                false,
            ),
        ];
        for (name, n, allow, want, waiting) in cases {
            let (t, w) = desired_taints(&n, allow, true, &now);
            assert_eq!(keys(&t), want, "{name}");
            assert_eq!(w, waiting, "{name}");
        }
    }

    #[test]
    fn new_no_execute_taints_wait_for_the_limiter_and_carry_time_added() {
        let now = Time(Timestamp::from_second(100).unwrap());
        let n = node(&[("Ready", "Unknown")], vec![], false);
        let (t, waiting) = desired_taints(&n, true, false, &now);
        assert!(waiting);
        assert_eq!(keys(&t), vec!["node.kubernetes.io/unreachable:NoSchedule"]);
        let (t, waiting) = desired_taints(&n, true, true, &now);
        assert!(!waiting);
        let exec = t
            .unwrap()
            .into_iter()
            .find(|t| t.effect == "NoExecute")
            .unwrap();
        assert_eq!(exec.time_added, Some(now.clone()));
        let tainted = node(
            &[("Ready", "Unknown")],
            vec![exec, taint(UNREACHABLE, "NoSchedule")],
            false,
        );
        assert_eq!(
            desired_taints(&tainted, true, false, &now),
            (None, false),
            "already right"
        );
    }
}
