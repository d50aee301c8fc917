//! What status to write (upstream's calculateStatus): counts over the active pods the
//! controller owns, observedGeneration, and the ReplicaFailure condition.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::util::pods;

/// The status both kinds share field for field. Serialized with every key present
/// (nulls included) so that a JSON merge patch clears what is gone.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaStatus {
    #[serde(default)]
    pub replicas: i32,
    #[serde(default)]
    pub fully_labeled_replicas: Option<i32>,
    #[serde(default)]
    pub ready_replicas: Option<i32>,
    #[serde(default)]
    pub available_replicas: Option<i32>,
    #[serde(default)]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub conditions: Option<Vec<Condition>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
}

pub const REPLICA_FAILURE: &str = "ReplicaFailure";

/// Why managing replicas failed, for the ReplicaFailure condition.
#[derive(Clone, Debug, PartialEq)]
pub struct ManageFailure {
    /// `FailedCreate` or `FailedDelete`.
    pub reason: &'static str,
    pub message: String,
}

/// What the controller's status should be now.
pub struct Inputs<'a> {
    pub current: &'a ReplicaStatus,
    pub generation: Option<i64>,
    pub template_labels: Option<&'a BTreeMap<String, String>>,
    pub min_ready_seconds: i32,
    /// The active pods the controller owns.
    pub pods: &'a [&'a Pod],
    pub failure: Option<&'a ManageFailure>,
    pub now: Timestamp,
}

pub fn calculate(i: &Inputs<'_>) -> ReplicaStatus {
    let mut fully_labeled = 0;
    let mut ready = 0;
    let mut available = 0;
    for pod in i.pods {
        let labels = pod.metadata.labels.as_ref();
        let has_all = i.template_labels.is_none_or(|want| {
            want.iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        });
        if has_all {
            fully_labeled += 1;
        }
        if pods::is_ready(pod) {
            ready += 1;
            if pods::is_available(pod, i.min_ready_seconds, i.now) {
                available += 1;
            }
        }
    }
    let mut conditions: Vec<Condition> = i.current.conditions.clone().unwrap_or_default();
    let has_failure = conditions.iter().any(|c| c.type_ == REPLICA_FAILURE);
    match i.failure {
        // Upstream sets the condition once and leaves it until managing succeeds.
        Some(f) if !has_failure => conditions.push(Condition {
            type_: REPLICA_FAILURE.into(),
            status: "True".into(),
            reason: Some(f.reason.into()),
            message: Some(f.message.clone()),
            last_transition_time: Some(Time(i.now)),
        }),
        None if has_failure => conditions.retain(|c| c.type_ != REPLICA_FAILURE),
        _ => {}
    }
    ReplicaStatus {
        replicas: i.pods.len() as i32,
        fully_labeled_replicas: Some(fully_labeled),
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        observed_generation: i.generation,
        conditions: (!conditions.is_empty()).then_some(conditions),
    }
}

/// Equal for writing purposes: zero counts and absent counts are the same (the API
/// server omits zeros).
pub fn same(a: &ReplicaStatus, b: &ReplicaStatus) -> bool {
    let z = |v: Option<i32>| v.unwrap_or(0);
    a.replicas == b.replicas
        && z(a.fully_labeled_replicas) == z(b.fully_labeled_replicas)
        && z(a.ready_replicas) == z(b.ready_replicas)
        && z(a.available_replicas) == z(b.available_replicas)
        && a.observed_generation == b.observed_generation
        && a.conditions.as_deref().unwrap_or_default()
            == b.conditions.as_deref().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(labels: &[(&str, &str)], ready_at: Option<i64>) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"labels": labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>()},
            "status": {"phase": "Running", "conditions": ready_at.map(|t| vec![serde_json::json!({
                "type": "Ready", "status": "True",
                "lastTransitionTime": Timestamp::from_second(t).unwrap().to_string(),
            })]).unwrap_or_default()},
        }))
        .unwrap()
    }

    fn template() -> BTreeMap<String, String> {
        [
            ("app".to_string(), "web".to_string()),
            ("tier".to_string(), "fe".to_string()),
        ]
        .into()
    }

    #[test]
    fn counts() {
        struct Case {
            name: &'static str,
            pods: Vec<Pod>,
            min_ready: i32,
            want: (i32, i32, i32, i32),
        }
        let cases = [
            Case {
                name: "no pods",
                pods: vec![],
                min_ready: 0,
                want: (0, 0, 0, 0),
            },
            Case {
                name: "partly labeled pods are counted but not fully labeled",
                pods: vec![
                    pod(&[("app", "web")], Some(0)),
                    pod(&[("app", "web"), ("tier", "fe")], Some(0)),
                ],
                min_ready: 0,
                want: (2, 1, 2, 2),
            },
            Case {
                name: "unready pods are neither ready nor available",
                pods: vec![pod(&[("app", "web"), ("tier", "fe")], None)],
                min_ready: 0,
                want: (1, 1, 0, 0),
            },
            Case {
                name: "minReadySeconds holds back availability",
                pods: vec![
                    pod(&[("app", "web"), ("tier", "fe")], Some(995)),
                    pod(&[("app", "web"), ("tier", "fe")], Some(900)),
                ],
                min_ready: 10,
                want: (2, 2, 2, 1),
            },
        ];
        let tpl = template();
        for c in cases {
            let refs: Vec<&Pod> = c.pods.iter().collect();
            let s = calculate(&Inputs {
                current: &ReplicaStatus::default(),
                generation: Some(3),
                template_labels: Some(&tpl),
                min_ready_seconds: c.min_ready,
                pods: &refs,
                failure: None,
                now: Timestamp::from_second(1000).unwrap(),
            });
            let got = (
                s.replicas,
                s.fully_labeled_replicas.unwrap_or(0),
                s.ready_replicas.unwrap_or(0),
                s.available_replicas.unwrap_or(0),
            );
            assert_eq!(got, c.want, "{}", c.name);
            assert_eq!(s.observed_generation, Some(3), "{}", c.name);
        }
    }

    #[test]
    fn replica_failure_is_set_once_and_cleared_on_success() {
        let failure = ManageFailure {
            reason: "FailedCreate",
            message: "exceeded quota".into(),
        };
        let now = Timestamp::from_second(1000).unwrap();
        let inputs = |current, failure| Inputs {
            current,
            generation: Some(1),
            template_labels: None,
            min_ready_seconds: 0,
            pods: &[],
            failure,
            now,
        };
        let empty = ReplicaStatus::default();
        let failed = calculate(&inputs(&empty, Some(&failure)));
        let conds = failed.conditions.clone().unwrap();
        assert_eq!(conds.len(), 1);
        assert_eq!(conds[0].type_, "ReplicaFailure");
        assert_eq!(conds[0].reason.as_deref(), Some("FailedCreate"));
        assert_eq!(conds[0].message.as_deref(), Some("exceeded quota"));
        let again = calculate(&inputs(&failed, Some(&failure)));
        assert_eq!(again.conditions, failed.conditions);
        let ok = calculate(&inputs(&failed, None));
        assert_eq!(ok.conditions, None);
    }
}
