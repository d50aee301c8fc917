//! Upstream's pod failure policy: which rule (if any) a failed pod matches, and what that
//! rule says to do with the failure.

use k8s_openapi::api::batch::v1::{PodFailurePolicy, PodFailurePolicyRule};
use k8s_openapi::api::core::v1::Pod;

/// What a matching rule asks for (`action` of a rule).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Fail the whole Job; the message names the pod and the rule.
    FailJob(String),
    /// Do not count the failure against `backoffLimit`.
    Ignore,
    /// Count it as usual (also what no matching rule means).
    Count,
    /// Fail the pod's index (needs `backoffLimitPerIndex`, which Skiff does not
    /// implement: counted as usual).
    FailIndex,
}

/// The action for failed `pod`: the first rule that matches wins; no match counts.
pub fn evaluate(policy: Option<&PodFailurePolicy>, pod: &Pod) -> Action {
    let Some(policy) = policy else {
        return Action::Count;
    };
    for (index, rule) in policy.rules.iter().enumerate() {
        if let Some(what) = matches(rule, pod) {
            return match rule.action.as_str() {
                "FailJob" => {
                    Action::FailJob(format!("{what} matching FailJob rule at index {index}"))
                }
                "Ignore" => Action::Ignore,
                "FailIndex" => Action::FailIndex,
                _ => Action::Count,
            };
        }
    }
    Action::Count
}

fn pod_name(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Whether `rule` matches `pod`; `Some` carries the start of upstream's message.
fn matches(rule: &PodFailurePolicyRule, pod: &Pod) -> Option<String> {
    if let Some(req) = &rule.on_exit_codes {
        let status = pod.status.as_ref()?;
        let containers = status
            .init_container_statuses
            .iter()
            .flatten()
            .chain(status.container_statuses.iter().flatten());
        for c in containers {
            if req.container_name.as_ref().is_some_and(|n| *n != c.name) {
                continue;
            }
            let Some(code) = c
                .state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .map(|t| t.exit_code)
            else {
                continue;
            };
            // Containers that succeeded never match (upstream excludes exit code 0).
            if code == 0 {
                continue;
            }
            let listed = req.values.contains(&code);
            let hit = match req.operator.as_str() {
                "In" => listed,
                "NotIn" => !listed,
                _ => false,
            };
            if hit {
                return Some(format!(
                    "Container {} for pod {} failed with exit code {code}",
                    c.name,
                    pod_name(pod)
                ));
            }
        }
        return None;
    }
    if let Some(patterns) = &rule.on_pod_conditions {
        let conditions = pod.status.as_ref()?.conditions.as_ref()?;
        for p in patterns {
            let want = if p.status.is_empty() {
                "True"
            } else {
                p.status.as_str()
            };
            if conditions
                .iter()
                .any(|c| c.type_ == p.type_ && c.status == want)
            {
                return Some(format!("Pod {} has condition {}", pod_name(pod), p.type_));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{
        PodFailurePolicyOnExitCodesRequirement, PodFailurePolicyOnPodConditionsPattern,
    };
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStatus, PodCondition, PodStatus,
    };

    fn failed(codes: &[(&str, i32)], conditions: &[&str]) -> Pod {
        Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            status: Some(PodStatus {
                phase: Some("Failed".into()),
                container_statuses: Some(
                    codes
                        .iter()
                        .map(|(n, c)| ContainerStatus {
                            name: n.to_string(),
                            state: Some(ContainerState {
                                terminated: Some(ContainerStateTerminated {
                                    exit_code: *c,
                                    ..Default::default()
                                }),
                                ..Default::default()
                            }),
                            ..Default::default()
                        })
                        .collect(),
                ),
                conditions: Some(
                    conditions
                        .iter()
                        .map(|t| PodCondition {
                            type_: t.to_string(),
                            status: "True".into(),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn codes(
        action: &str,
        op: &str,
        values: &[i32],
        container: Option<&str>,
    ) -> PodFailurePolicyRule {
        PodFailurePolicyRule {
            action: action.into(),
            on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                container_name: container.map(str::to_string),
                operator: op.into(),
                values: values.to_vec(),
            }),
            on_pod_conditions: None,
        }
    }

    fn condition(action: &str, type_: &str) -> PodFailurePolicyRule {
        PodFailurePolicyRule {
            action: action.into(),
            on_exit_codes: None,
            on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                type_: type_.into(),
                status: "True".into(),
            }]),
        }
    }

    #[test]
    fn rules_in_order() {
        let policy = |rules| PodFailurePolicy { rules };
        let cases: Vec<(&str, Option<PodFailurePolicy>, Pod, Action)> = vec![
            ("no policy counts", None, failed(&[("c", 1)], &[]), Action::Count),
            (
                "exit code In matches FailJob",
                Some(policy(vec![codes("FailJob", "In", &[42], None)])),
                failed(&[("c", 42)], &[]),
                Action::FailJob(
                    "Container c for pod ns/p failed with exit code 42 matching FailJob rule at index 0"
                        .into(),
                ),
            ),
            (
                "exit code not listed falls through to count",
                Some(policy(vec![codes("FailJob", "In", &[42], None)])),
                failed(&[("c", 1)], &[]),
                Action::Count,
            ),
            (
                "NotIn ignores succeeded containers",
                Some(policy(vec![codes("FailJob", "NotIn", &[1], None)])),
                failed(&[("a", 0), ("b", 1)], &[]),
                Action::Count,
            ),
            (
                "container name restricts the rule",
                Some(policy(vec![codes("Ignore", "In", &[3], Some("other"))])),
                failed(&[("c", 3)], &[]),
                Action::Count,
            ),
            (
                "disruption condition ignored",
                Some(policy(vec![
                    condition("Ignore", "DisruptionTarget"),
                    codes("FailJob", "NotIn", &[], None),
                ])),
                failed(&[("c", 1)], &["DisruptionTarget"]),
                Action::Ignore,
            ),
            (
                "first matching rule wins",
                Some(policy(vec![
                    codes("Count", "In", &[5], None),
                    codes("FailJob", "In", &[5], None),
                ])),
                failed(&[("c", 5)], &[]),
                Action::Count,
            ),
        ];
        for (name, policy, pod, want) in cases {
            assert_eq!(evaluate(policy.as_ref(), &pod), want, "{name}");
        }
    }
}
