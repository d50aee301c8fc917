//! Node health (pure): when the controller last saw a node's kubelet alive (a renewed
//! Lease or a new Ready heartbeat, measured on the controller's own clock as upstream,
//! so clock skew between machines does not matter), and the conditions to write once
//! that is longer ago than the grace period.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};

/// The conditions the controller marks Unknown when the kubelet goes silent.
pub const WATCHED_CONDITIONS: [&str; 4] =
    ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// What the kubelet last reported: the Ready heartbeat and transition, and the Lease's
/// renew time. Any change means the kubelet is alive.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Signs {
    heartbeat: Option<Time>,
    transition: Option<Time>,
    renew: Option<MicroTime>,
}

pub fn signs(node: &Node, lease: Option<&Lease>) -> Signs {
    let ready = condition(node, "Ready");
    Signs {
        heartbeat: ready.and_then(|c| c.last_heartbeat_time.clone()),
        transition: ready.and_then(|c| c.last_transition_time.clone()),
        renew: lease.and_then(|l| l.spec.as_ref()?.renew_time.clone()),
    }
}

#[derive(Clone, Debug)]
pub struct Health {
    signs: Signs,
    /// When the controller last saw a sign of life (or first saw the node).
    pub probe: Instant,
}

/// The node's health after observing `now` signs: a change moves the probe time.
pub fn observe(saved: Option<&Health>, signs: Signs, now: Instant) -> Health {
    match saved {
        Some(h) if h.signs == signs => h.clone(),
        _ => Health { signs, probe: now },
    }
}

/// Whether the kubelet has been silent longer than `grace`.
pub fn is_silent(h: &Health, now: Instant, grace: Duration) -> bool {
    now.saturating_duration_since(h.probe) > grace
}

pub fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// The conditions of a silent node with the watched ones set Unknown (upstream's
/// NodeStatusUnknown / NodeStatusNeverUpdated), or `None` when they already are.
pub fn unknown_conditions(node: &Node, now: &Time) -> Option<Vec<NodeCondition>> {
    let mut conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let mut changed = false;
    for type_ in WATCHED_CONDITIONS {
        match conditions.iter_mut().find(|c| c.type_ == type_) {
            Some(c) if c.status == "Unknown" => {}
            Some(c) => {
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
                c.last_transition_time = Some(now.clone());
                changed = true;
            }
            None => {
                conditions.push(NodeCondition {
                    type_: type_.into(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusNeverUpdated".into()),
                    message: Some("Kubelet never posted node status.".into()),
                    last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                    last_transition_time: Some(now.clone()),
                });
                changed = true;
            }
        }
    }
    changed.then_some(conditions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn node(ready: Option<(&str, i64)>) -> Node {
        let mut n = Node::default();
        n.metadata.name = Some("n".into());
        if let Some((status, hb)) = ready {
            n.status = Some(k8s_openapi::api::core::v1::NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: status.into(),
                    last_heartbeat_time: Some(Time(Timestamp::from_second(hb).unwrap())),
                    ..Default::default()
                }]),
                ..Default::default()
            });
        }
        n
    }

    fn lease(renew: i64) -> Lease {
        Lease {
            spec: Some(k8s_openapi::api::coordination::v1::LeaseSpec {
                renew_time: Some(MicroTime(Timestamp::from_second(renew).unwrap())),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_renewed_lease_or_a_new_heartbeat_resets_the_probe() {
        let t0 = Instant::now();
        let grace = Duration::from_secs(40);
        let n = node(Some(("True", 100)));
        let h = observe(None, signs(&n, Some(&lease(100))), t0);
        let later = t0 + Duration::from_secs(50);
        let same = observe(Some(&h), signs(&n, Some(&lease(100))), later);
        assert!(is_silent(&same, later, grace), "nothing new for 50 s");
        let renewed = observe(Some(&h), signs(&n, Some(&lease(130))), later);
        assert!(!is_silent(&renewed, later, grace), "the lease was renewed");
        let beat = observe(
            Some(&h),
            signs(&node(Some(("True", 130))), Some(&lease(100))),
            later,
        );
        assert!(!is_silent(&beat, later, grace), "a new heartbeat");
    }

    #[test]
    fn silent_nodes_get_unknown_conditions_once() {
        let now = Time(Timestamp::from_second(500).unwrap());
        let conds = unknown_conditions(&node(Some(("True", 100))), &now).unwrap();
        let ready = conds.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "Unknown");
        assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(
            ready.message.as_deref(),
            Some("Kubelet stopped posting node status.")
        );
        assert_eq!(ready.last_transition_time, Some(now.clone()));
        let mem = conds.iter().find(|c| c.type_ == "MemoryPressure").unwrap();
        assert_eq!(mem.reason.as_deref(), Some("NodeStatusNeverUpdated"));
        let mut n = node(None);
        n.status = Some(k8s_openapi::api::core::v1::NodeStatus {
            conditions: Some(conds),
            ..Default::default()
        });
        assert!(
            unknown_conditions(&n, &now).is_none(),
            "already unknown: nothing to write"
        );
    }
}
