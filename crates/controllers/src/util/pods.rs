//! Pure questions about a pod's state, as upstream's podutil answers them.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// Not finished and not being deleted: what replica counts count.
pub fn is_active(pod: &Pod) -> bool {
    let p = phase(pod);
    p != "Succeeded" && p != "Failed" && pod.metadata.deletion_timestamp.is_none()
}

pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// Finished (Succeeded or Failed).
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

fn ready_condition(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// The Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|c| c.status == "True")
}

/// Ready for at least `min_ready_seconds` at `now` (upstream's IsPodAvailable).
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    let Some(c) = ready_condition(pod).filter(|c| c.status == "True") else {
        return false;
    };
    if min_ready_seconds <= 0 {
        return true;
    }
    match &c.last_transition_time {
        Some(t) => t.0.as_second() + i64::from(min_ready_seconds) <= now.as_second(),
        None => false,
    }
}

/// When the pod will become available, if it is ready but not yet available.
pub fn available_in(
    pod: &Pod,
    min_ready_seconds: i32,
    now: Timestamp,
) -> Option<std::time::Duration> {
    let c = ready_condition(pod).filter(|c| c.status == "True")?;
    let t = c.last_transition_time.as_ref()?;
    let at = t.0.as_second() + i64::from(min_ready_seconds);
    let wait = at - now.as_second();
    (wait > 0).then(|| std::time::Duration::from_secs(wait as u64))
}

pub fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()?
        .node_name
        .as_deref()
        .filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn pod(phase: &str, ready_at: Option<i64>) -> Pod {
        Pod {
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: ready_at.map(|t| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(Timestamp::from_second(t).unwrap())),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn activity_and_availability() {
        let now = Timestamp::from_second(1000).unwrap();
        assert!(is_active(&pod("Running", None)));
        assert!(!is_active(&pod("Succeeded", None)));
        assert!(is_terminal(&pod("Failed", None)));
        assert!(!is_ready(&pod("Running", None)));
        assert!(is_available(&pod("Running", Some(990)), 10, now));
        assert!(!is_available(&pod("Running", Some(995)), 10, now));
        assert_eq!(
            available_in(&pod("Running", Some(995)), 10, now),
            Some(std::time::Duration::from_secs(5))
        );
        assert!(is_available(&pod("Running", Some(999)), 0, now));
    }
}
