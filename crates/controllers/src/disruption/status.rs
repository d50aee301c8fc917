//! A PodDisruptionBudget's status (pure), as upstream's disruption controller computes
//! it: how many pods should be healthy (from minAvailable or maxUnavailable, integers
//! or percentages of the expected pod count, rounded up), how many are, which recent
//! evictions are still pending, and so how many disruptions are allowed now.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::util::pods;

/// How long an eviction recorded in `disruptedPods` may wait for the pod's deletion
/// before it is considered lost (upstream's DeletionTimeout).
pub const DELETION_TIMEOUT: SignedDuration = SignedDuration::from_secs(120);

pub const CONDITION: &str = "DisruptionAllowed";
pub const SUFFICIENT_PODS: &str = "SufficientPods";
pub const INSUFFICIENT_PODS: &str = "InsufficientPods";
pub const SYNC_FAILED: &str = "SyncFailed";

/// Whether the budget needs the expected pod count of the pods' controllers: for
/// maxUnavailable and for a percentage minAvailable.
pub fn needs_expected_scale(pdb: &PodDisruptionBudget) -> bool {
    let spec = pdb.spec.as_ref();
    spec.and_then(|s| s.max_unavailable.as_ref()).is_some()
        || matches!(
            spec.and_then(|s| s.min_available.as_ref()),
            Some(IntOrString::String(_))
        )
}

/// An integer, or a percentage of `total` rounded up (upstream's
/// GetScaledValueFromIntOrPercent with round-up).
pub fn scaled(v: &IntOrString, total: i32) -> Result<i32, String> {
    match v {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let pct: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("invalid value for IntOrString: invalid value {s:?}"))?;
            Ok(((pct * i64::from(total) + 99) / 100) as i32)
        }
    }
}

/// `(expectedPods, desiredHealthy)`. `scale` is the summed scale of the pods'
/// controllers, given when [`needs_expected_scale`].
pub fn expected_and_desired(
    pdb: &PodDisruptionBudget,
    pod_count: usize,
    scale: Option<i32>,
) -> Result<(i32, i32), String> {
    let spec = pdb.spec.as_ref();
    if let Some(max) = spec.and_then(|s| s.max_unavailable.as_ref()) {
        let expected = scale.unwrap_or(0);
        let desired = (expected - scaled(max, expected)?).max(0);
        return Ok((expected, desired));
    }
    match spec.and_then(|s| s.min_available.as_ref()) {
        Some(IntOrString::Int(n)) => Ok((pod_count as i32, *n)),
        Some(v) => {
            let expected = scale.unwrap_or(0);
            Ok((expected, scaled(v, expected)?))
        }
        None => Ok((0, 0)),
    }
}

/// The still-pending evictions (pods not yet deleted and within the timeout), and when
/// the earliest of them expires (the budget must be looked at again then).
pub fn pending_disruptions(
    pdb: &PodDisruptionBudget,
    pods: &[&Pod],
    now: Timestamp,
) -> (BTreeMap<String, Time>, Option<Timestamp>) {
    let recorded = pdb
        .status
        .as_ref()
        .and_then(|s| s.disrupted_pods.clone())
        .unwrap_or_default();
    let mut kept = BTreeMap::new();
    let mut recheck: Option<Timestamp> = None;
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let Some(at) = recorded.get(&name) else {
            continue;
        };
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let expires = at.0.checked_add(DELETION_TIMEOUT).unwrap_or(at.0);
        if expires <= now {
            continue;
        }
        recheck = Some(recheck.map_or(expires, |r| r.min(expires)));
        kept.insert(name, at.clone());
    }
    (kept, recheck)
}

/// Ready pods that are neither being deleted nor pending eviction.
pub fn count_healthy(pods: &[&Pod], disrupted: &BTreeMap<String, Time>) -> i32 {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| !disrupted.contains_key(p.metadata.name.as_deref().unwrap_or_default()))
        .filter(|p| pods::is_ready(p))
        .count() as i32
}

/// Sets the DisruptionAllowed condition, keeping its transition time if unchanged.
fn set_condition(
    conditions: &mut Vec<Condition>,
    status: &str,
    reason: &str,
    message: &str,
    generation: i64,
    now: &Time,
) {
    let new = Condition {
        type_: CONDITION.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: Some(generation),
        last_transition_time: now.clone(),
    };
    match conditions.iter_mut().find(|c| c.type_ == CONDITION) {
        Some(c) if c.status == status => {
            c.reason = new.reason;
            c.message = new.message;
            c.observed_generation = new.observed_generation;
        }
        Some(c) => *c = new,
        None => conditions.push(new),
    }
}

/// The status a successful sync writes.
pub fn new_status(
    pdb: &PodDisruptionBudget,
    current_healthy: i32,
    desired_healthy: i32,
    expected: i32,
    disrupted: BTreeMap<String, Time>,
    now: &Time,
) -> PodDisruptionBudgetStatus {
    let mut allowed = current_healthy - desired_healthy;
    if expected <= 0 || allowed <= 0 {
        allowed = 0;
    }
    let generation = pdb.metadata.generation.unwrap_or(0);
    let mut status = pdb.status.clone().unwrap_or_default();
    status.current_healthy = current_healthy;
    status.desired_healthy = desired_healthy;
    status.expected_pods = expected;
    status.disruptions_allowed = allowed;
    status.disrupted_pods = (!disrupted.is_empty()).then_some(disrupted);
    status.observed_generation = Some(generation);
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    if allowed > 0 {
        set_condition(conditions, "True", SUFFICIENT_PODS, "", generation, now);
    } else {
        set_condition(conditions, "False", INSUFFICIENT_PODS, "", generation, now);
    }
    status
}

/// The status written when the budget cannot be computed: no disruptions allowed.
pub fn fail_safe(pdb: &PodDisruptionBudget, err: &str, now: &Time) -> PodDisruptionBudgetStatus {
    let generation = pdb.metadata.generation.unwrap_or(0);
    let mut status = pdb.status.clone().unwrap_or_default();
    status.disruptions_allowed = 0;
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    set_condition(conditions, "False", SYNC_FAILED, err, generation, now);
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pdb(spec: serde_json::Value, disrupted: serde_json::Value) -> PodDisruptionBudget {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "b", "generation": 2}, "spec": spec,
            "status": {"disruptedPods": disrupted, "currentHealthy": 0, "desiredHealthy": 0, "disruptionsAllowed": 0, "expectedPods": 0}}))
        .unwrap()
    }

    fn pod(name: &str, ready: bool) -> Pod {
        serde_json::from_value(serde_json::json!({"metadata": {"name": name},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}}))
        .unwrap()
    }

    #[test]
    fn desired_healthy_as_upstream() {
        let cases = [
            (
                "minAvailable int counts matching pods",
                serde_json::json!({"minAvailable": 2}),
                4,
                None,
                (4, 2),
            ),
            (
                "minAvailable percent of the scale, rounded up",
                serde_json::json!({"minAvailable": "50%"}),
                4,
                Some(5),
                (5, 3),
            ),
            (
                "maxUnavailable int",
                serde_json::json!({"maxUnavailable": 1}),
                3,
                Some(3),
                (3, 2),
            ),
            (
                "maxUnavailable percent rounds up the unavailable",
                serde_json::json!({"maxUnavailable": "30%"}),
                3,
                Some(5),
                (5, 3),
            ),
            (
                "maxUnavailable above the scale floors at zero",
                serde_json::json!({"maxUnavailable": 9}),
                3,
                Some(3),
                (3, 0),
            ),
            ("neither", serde_json::json!({}), 3, None, (0, 0)),
        ];
        for (name, spec, count, scale, want) in cases {
            let p = pdb(spec, serde_json::Value::Null);
            assert_eq!(
                expected_and_desired(&p, count, scale).unwrap(),
                want,
                "{name}"
            );
        }
        assert!(needs_expected_scale(&pdb(
            serde_json::json!({"maxUnavailable": 1}),
            serde_json::Value::Null
        )));
        assert!(!needs_expected_scale(&pdb(
            serde_json::json!({"minAvailable": 1}),
            serde_json::Value::Null
        )));
        assert!(scaled(&IntOrString::String("x".into()), 3).is_err());
    }

    #[test]
    fn pending_evictions_do_not_count_as_healthy_until_they_expire() {
        let now = Timestamp::from_second(1000).unwrap();
        let p = pdb(
            serde_json::json!({"minAvailable": 1}),
            serde_json::json!({
            "a": "1970-01-01T00:16:00Z", "b": "1970-01-01T00:10:00Z"}),
        );
        let (a, b, c) = (pod("a", true), pod("b", true), pod("c", false));
        let pods = [&a, &b, &c];
        let (pending, recheck) = pending_disruptions(&p, &pods, now);
        assert_eq!(
            pending.keys().collect::<Vec<_>>(),
            vec!["a"],
            "b's eviction timed out"
        );
        assert_eq!(recheck, Some(Timestamp::from_second(960 + 120).unwrap()));
        assert_eq!(
            count_healthy(&pods, &pending),
            1,
            "a is pending, c not ready"
        );
    }

    #[test]
    fn status_and_condition() {
        let now = Time(Timestamp::from_second(5).unwrap());
        let p = pdb(
            serde_json::json!({"minAvailable": 2}),
            serde_json::Value::Null,
        );
        let s = new_status(&p, 3, 2, 3, BTreeMap::new(), &now);
        assert_eq!((s.disruptions_allowed, s.observed_generation), (1, Some(2)));
        let c = &s.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", SUFFICIENT_PODS)
        );
        let s = new_status(&p, 2, 2, 3, BTreeMap::new(), &now);
        assert_eq!(s.disruptions_allowed, 0);
        assert_eq!(s.conditions.as_ref().unwrap()[0].reason, INSUFFICIENT_PODS);
        assert_eq!(
            new_status(&p, 3, 0, 0, BTreeMap::new(), &now).disruptions_allowed,
            0,
            "no expected pods"
        );
        let f = fail_safe(&p, "boom", &now);
        assert_eq!(f.conditions.as_ref().unwrap()[0].reason, SYNC_FAILED);
    }
}
