//! Pure status decisions: the counts, the Available condition, the Progressing
//! condition's lifecycle (created / found / updated / available / paused / timed out),
//! and when to look again for the progress deadline.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::util::{self, Params};

pub const AVAILABLE: &str = "Available";
pub const PROGRESSING: &str = "Progressing";
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

pub const MIN_AVAILABLE: &str = "MinimumReplicasAvailable";
pub const MIN_UNAVAILABLE: &str = "MinimumReplicasUnavailable";
pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
pub const RS_UPDATED: &str = "ReplicaSetUpdated";
pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub const PAUSED: &str = "DeploymentPaused";
pub const RESUMED: &str = "DeploymentResumed";
pub const FAILED_RS_CREATE: &str = "FailedRSCreate";

pub fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

pub fn get<'a>(s: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    s.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

pub fn remove(s: &mut DeploymentStatus, type_: &str) {
    if let Some(cs) = s.conditions.as_mut() {
        cs.retain(|c| c.type_ != type_);
        if cs.is_empty() {
            s.conditions = None;
        }
    }
}

/// Upstream's SetDeploymentCondition: same status and reason is no change; same
/// status keeps the transition time.
pub fn set(s: &mut DeploymentStatus, mut c: DeploymentCondition) {
    if let Some(cur) = get(s, &c.type_) {
        if cur.status == c.status && cur.reason == c.reason {
            return;
        }
        if cur.status == c.status {
            c.last_transition_time = cur.last_transition_time.clone();
        }
    }
    remove(s, &c.type_);
    s.conditions.get_or_insert_with(Vec::new).push(c);
}

pub fn progress_deadline(d: &Deployment) -> Option<i32> {
    d.spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .filter(|s| *s != i32::MAX)
}

fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// Upstream's calculateStatus: counts over all ReplicaSets and the Available condition.
pub fn calculate(
    d: &Deployment,
    p: &Params,
    all: &[&ReplicaSet],
    new: Option<&ReplicaSet>,
    now: Timestamp,
) -> DeploymentStatus {
    let available = util::sum(all, util::available);
    let total = util::sum(all, util::spec_replicas);
    let old = d.status.clone().unwrap_or_default();
    let mut s = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(util::sum(all, util::status_replicas)),
        updated_replicas: Some(new.map(util::status_replicas).unwrap_or(0)),
        ready_replicas: Some(util::sum(all, util::ready)),
        available_replicas: Some(available),
        unavailable_replicas: Some((total - available).max(0)),
        collision_count: old.collision_count,
        conditions: old.conditions.clone(),
        terminating_replicas: None,
    };
    if available >= p.replicas - p.max_unavailable() {
        set(
            &mut s,
            condition(
                AVAILABLE,
                "True",
                MIN_AVAILABLE,
                "Deployment has minimum availability.".into(),
                now,
            ),
        );
    } else {
        set(
            &mut s,
            condition(
                AVAILABLE,
                "False",
                MIN_UNAVAILABLE,
                "Deployment does not have minimum availability.".into(),
                now,
            ),
        );
    }
    s
}

fn z(v: Option<i32>) -> i32 {
    v.unwrap_or(0)
}

/// Every new pod is updated and available and the status is current.
pub fn complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    let r = replicas(d);
    z(s.updated_replicas) == r
        && z(s.replicas) == r
        && z(s.available_replicas) == r
        && s.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// Something moved since the last status (upstream's DeploymentProgressing).
pub fn progressing(d: &Deployment, s: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let old_old = z(old.replicas) - z(old.updated_replicas);
    let new_old = z(s.replicas) - z(s.updated_replicas);
    z(s.updated_replicas) > z(old.updated_replicas)
        || new_old < old_old
        || z(s.ready_replicas) > z(old.ready_replicas)
        || z(s.available_replicas) > z(old.available_replicas)
}

/// The Progressing condition was last updated longer ago than the deadline.
pub fn timed_out(d: &Deployment, s: &DeploymentStatus, now: Timestamp) -> bool {
    let Some(deadline) = progress_deadline(d) else {
        return false;
    };
    let Some(c) = get(s, PROGRESSING) else {
        return false;
    };
    match c.reason.as_deref() {
        Some(NEW_RS_AVAILABLE) => false,
        Some(TIMED_OUT) => true,
        _ => c
            .last_update_time
            .as_ref()
            .is_some_and(|t| t.0.as_second() + i64::from(deadline) < now.as_second()),
    }
}

fn subject(d: &Deployment, new: Option<&ReplicaSet>) -> String {
    match new {
        Some(rs) => format!("ReplicaSet \"{}\"", util::name(rs)),
        None => format!(
            "Deployment \"{}\"",
            d.metadata.name.as_deref().unwrap_or("")
        ),
    }
}

/// Upstream's syncRolloutStatus, the decision half: the status to write after a
/// rollout step, with the Progressing and ReplicaFailure conditions updated.
pub fn rollout(
    d: &Deployment,
    p: &Params,
    all: &[&ReplicaSet],
    new: Option<&ReplicaSet>,
    now: Timestamp,
) -> DeploymentStatus {
    let mut s = calculate(d, p, all, new, now);
    if progress_deadline(d).is_none() {
        remove(&mut s, PROGRESSING);
    }
    let current = d
        .status
        .as_ref()
        .and_then(|st| get(st, PROGRESSING))
        .cloned();
    let already_complete = z(s.replicas) == z(s.updated_replicas)
        && current
            .as_ref()
            .is_some_and(|c| c.reason.as_deref() == Some(NEW_RS_AVAILABLE));
    if progress_deadline(d).is_some() && !already_complete {
        if complete(d, &s) {
            let msg = format!("{} has successfully progressed.", subject(d, new));
            set(
                &mut s,
                condition(PROGRESSING, "True", NEW_RS_AVAILABLE, msg, now),
            );
        } else if progressing(d, &s) {
            let msg = format!("{} is progressing.", subject(d, new));
            let mut c = condition(PROGRESSING, "True", RS_UPDATED, msg, now);
            // A fresh update time restarts the deadline; the transition time stays.
            if let Some(cur) = &current {
                if cur.status == "True" {
                    c.last_transition_time = cur.last_transition_time.clone();
                }
                remove(&mut s, PROGRESSING);
            }
            set(&mut s, c);
        } else if timed_out(d, &s, now) {
            let msg = format!("{} has timed out progressing.", subject(d, new));
            set(&mut s, condition(PROGRESSING, "False", TIMED_OUT, msg, now));
        }
    }
    let failure = all.iter().find_map(|rs| {
        rs.status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == REPLICA_FAILURE)
            .cloned()
    });
    match failure {
        Some(f) => set(
            &mut s,
            DeploymentCondition {
                type_: REPLICA_FAILURE.into(),
                status: f.status,
                reason: f.reason,
                message: f.message,
                last_update_time: f.last_transition_time.clone(),
                last_transition_time: f.last_transition_time,
            },
        ),
        None => remove(&mut s, REPLICA_FAILURE),
    }
    s
}

/// When to look again so a stuck rollout is noticed at its deadline (upstream's
/// requeueStuckDeployment); `None` when there is no deadline to watch.
pub fn requeue_stuck(d: &Deployment, s: &DeploymentStatus, now: Timestamp) -> Option<Duration> {
    let deadline = progress_deadline(d)?;
    let c = get(s, PROGRESSING)?;
    if complete(d, s) || c.reason.as_deref() == Some(TIMED_OUT) {
        return None;
    }
    let from = c.last_update_time.as_ref()?.0.as_second();
    let after = from + i64::from(deadline) - now.as_second();
    // One second past the deadline: the check is strictly "later than".
    Some(Duration::from_secs((after + 1).max(1) as u64))
}

/// Upstream's checkPausedConditions: the Progressing condition says paused or resumed
/// (never overwriting a timeout). The new status, if it changes.
pub fn paused_condition(d: &Deployment, now: Timestamp) -> Option<DeploymentStatus> {
    progress_deadline(d)?;
    let mut s = d.status.clone().unwrap_or_default();
    let reason = get(&s, PROGRESSING).and_then(|c| c.reason.clone());
    if reason.as_deref() == Some(TIMED_OUT) {
        return None;
    }
    let paused = d.spec.as_ref().and_then(|sp| sp.paused).unwrap_or(false);
    let shown = reason.as_deref() == Some(PAUSED);
    if paused && !shown {
        set(
            &mut s,
            condition(
                PROGRESSING,
                "Unknown",
                PAUSED,
                "Deployment is paused".into(),
                now,
            ),
        );
    } else if !paused && shown {
        set(
            &mut s,
            condition(
                PROGRESSING,
                "Unknown",
                RESUMED,
                "Deployment is resumed".into(),
                now,
            ),
        );
    } else {
        return None;
    }
    Some(s)
}

/// Equal for writing purposes (zero and absent counts alike).
pub fn same(a: &DeploymentStatus, b: &DeploymentStatus) -> bool {
    z(a.replicas) == z(b.replicas)
        && z(a.updated_replicas) == z(b.updated_replicas)
        && z(a.ready_replicas) == z(b.ready_replicas)
        && z(a.available_replicas) == z(b.available_replicas)
        && z(a.unavailable_replicas) == z(b.unavailable_replicas)
        && a.observed_generation == b.observed_generation
        && a.collision_count == b.collision_count
        && a.conditions.as_deref().unwrap_or_default()
            == b.conditions.as_deref().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(replicas: i32, generation: i64, status: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "generation": generation},
            "spec": {"replicas": replicas, "selector": {}, "template": {}, "progressDeadlineSeconds": 60},
            "status": status,
        }))
        .unwrap()
    }

    fn rs(name: &str, replicas: i32, ready: i32, available: i32) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {}},
            "status": {"replicas": replicas, "readyReplicas": ready, "availableReplicas": available},
        }))
        .unwrap()
    }

    fn params(replicas: i32) -> Params {
        Params {
            replicas,
            rolling: true,
            max_surge: 1,
            max_unavailable: 1,
        }
    }

    fn now() -> Timestamp {
        Timestamp::from_second(10_000).unwrap()
    }

    fn progressing_at(reason: &str, at: i64) -> serde_json::Value {
        let t = Timestamp::from_second(at).unwrap().to_string();
        json!({"conditions": [{"type": "Progressing", "status": "True", "reason": reason,
            "lastUpdateTime": t, "lastTransitionTime": t}]})
    }

    #[test]
    fn counts_and_availability() {
        let d = deployment(3, 2, json!({}));
        let old = rs("old", 1, 1, 1);
        let new = rs("new", 3, 2, 1);
        let s = calculate(&d, &params(3), &[&old, &new], Some(&new), now());
        assert_eq!(
            (
                s.replicas,
                s.updated_replicas,
                s.ready_replicas,
                s.available_replicas,
                s.unavailable_replicas
            ),
            (Some(4), Some(3), Some(3), Some(2), Some(2))
        );
        assert_eq!(s.observed_generation, Some(2));
        let a = get(&s, AVAILABLE).unwrap();
        assert_eq!(
            (a.status.as_str(), a.reason.as_deref()),
            ("True", Some(MIN_AVAILABLE))
        );
        assert_eq!(
            a.message.as_deref(),
            Some("Deployment has minimum availability.")
        );
        let s = calculate(&d, &params(3), &[&new], Some(&new), now());
        let a = get(&s, AVAILABLE).unwrap();
        assert_eq!(
            (a.status.as_str(), a.reason.as_deref()),
            ("False", Some(MIN_UNAVAILABLE))
        );
    }

    #[test]
    fn progressing_condition_lifecycle() {
        struct Case {
            name: &'static str,
            d: Deployment,
            rs: ReplicaSet,
            want: (&'static str, &'static str, &'static str),
        }
        let cases = [
            Case {
                name: "all new pods available: complete",
                d: deployment(2, 1, progressing_at(RS_UPDATED, 9_990)),
                rs: rs("new", 2, 2, 2),
                want: (
                    "True",
                    NEW_RS_AVAILABLE,
                    "ReplicaSet \"new\" has successfully progressed.",
                ),
            },
            Case {
                name: "more ready than before: progressing",
                d: deployment(2, 1, progressing_at(NEW_RS_CREATED, 9_990)),
                rs: rs("new", 2, 1, 1),
                want: ("True", RS_UPDATED, "ReplicaSet \"new\" is progressing."),
            },
            Case {
                name: "nothing moved past the deadline: timed out",
                d: deployment(2, 1, progressing_at(NEW_RS_CREATED, 9_000)),
                rs: rs("new", 0, 0, 0),
                want: (
                    "False",
                    TIMED_OUT,
                    "ReplicaSet \"new\" has timed out progressing.",
                ),
            },
            Case {
                name: "nothing moved within the deadline: unchanged",
                d: deployment(2, 1, progressing_at(NEW_RS_CREATED, 9_990)),
                rs: rs("new", 0, 0, 0),
                want: ("True", NEW_RS_CREATED, ""),
            },
        ];
        for c in cases {
            let s = rollout(&c.d, &params(2), &[&c.rs], Some(&c.rs), now());
            let p = get(&s, PROGRESSING).unwrap();
            assert_eq!(p.status, c.want.0, "{}", c.name);
            assert_eq!(p.reason.as_deref(), Some(c.want.1), "{}", c.name);
            if !c.want.2.is_empty() {
                assert_eq!(p.message.as_deref(), Some(c.want.2), "{}", c.name);
            }
        }
    }

    #[test]
    fn stuck_rollouts_are_looked_at_after_the_deadline() {
        let d = deployment(2, 1, json!({}));
        let s: DeploymentStatus =
            serde_json::from_value(progressing_at(RS_UPDATED, 9_990)).unwrap();
        assert_eq!(requeue_stuck(&d, &s, now()), Some(Duration::from_secs(51)));
        let s: DeploymentStatus = serde_json::from_value(progressing_at(TIMED_OUT, 9_990)).unwrap();
        assert_eq!(requeue_stuck(&d, &s, now()), None);
    }

    #[test]
    fn paused_and_resumed() {
        let mut d = deployment(2, 1, progressing_at(RS_UPDATED, 9_990));
        d.spec.as_mut().unwrap().paused = Some(true);
        let s = paused_condition(&d, now()).unwrap();
        let c = get(&s, PROGRESSING).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_deref()),
            ("Unknown", Some(PAUSED))
        );
        assert_eq!(c.message.as_deref(), Some("Deployment is paused"));
        d.status = Some(s);
        assert!(paused_condition(&d, now()).is_none(), "already shown");
        d.spec.as_mut().unwrap().paused = Some(false);
        let s = paused_condition(&d, now()).unwrap();
        assert_eq!(
            get(&s, PROGRESSING).unwrap().reason.as_deref(),
            Some(RESUMED)
        );
        let timed_out = deployment(
            2,
            1,
            json!({"conditions": [{"type": "Progressing", "status": "False", "reason": TIMED_OUT}]}),
        );
        let mut timed_out_paused = timed_out.clone();
        timed_out_paused.spec.as_mut().unwrap().paused = Some(true);
        assert!(
            paused_condition(&timed_out_paused, now()).is_none(),
            "a timeout stays"
        );
    }
}
