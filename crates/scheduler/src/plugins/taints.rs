//! NodeUnschedulable and TaintToleration: a node's `spec.unschedulable` and its
//! NoSchedule/NoExecute taints keep pods off unless tolerated; PreferNoSchedule taints
//! only lower the score.

use k8s_openapi::api::core::v1::{Node, Taint, Toleration};

use super::{Plugin, Rejection};
use crate::cache::PodInfo;

/// Upstream's reason for an unschedulable (cordoned) node.
pub const REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";

fn tolerations(pod: &PodInfo) -> &[Toleration] {
    pod.pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[])
}

/// Whether `t` tolerates `taint` (upstream's ToleratesTaint).
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let effect = t.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = t.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

pub fn filter_unschedulable(pod: &PodInfo, node: &Node) -> Result<(), Rejection> {
    if !node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
    {
        return Ok(());
    }
    let taint = Taint {
        key: "node.kubernetes.io/unschedulable".into(),
        effect: "NoSchedule".into(),
        ..Default::default()
    };
    if tolerations(pod).iter().any(|t| tolerates(t, &taint)) {
        return Ok(());
    }
    Err(Rejection::unresolvable(
        Plugin::NodeUnschedulable,
        REASON_UNSCHEDULABLE,
    ))
}

fn taints(node: &Node) -> &[Taint] {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[])
}

pub fn filter(pod: &PodInfo, node: &Node) -> Result<(), Rejection> {
    let tols = tolerations(pod);
    for taint in taints(node) {
        if taint.effect != "NoSchedule" && taint.effect != "NoExecute" {
            continue;
        }
        if !tols.iter().any(|t| tolerates(t, taint)) {
            return Err(Rejection::unresolvable(
                Plugin::TaintToleration,
                format!(
                    "node(s) had untolerated taint {{{}: {}}}",
                    taint.key,
                    taint.value.as_deref().unwrap_or("")
                ),
            ));
        }
    }
    Ok(())
}

/// Whether the node has a NoSchedule/NoExecute taint the pod does not tolerate
/// (topology spread's nodeTaintsPolicy: Honor).
pub fn untolerated(pod: &PodInfo, node: &Node) -> bool {
    filter(pod, node).is_err()
}

/// Raw score: the PreferNoSchedule taints the pod does not tolerate (fewer is better).
pub fn score(pod: &PodInfo, node: &Node) -> i64 {
    let tols = tolerations(pod).iter().filter(|t| {
        matches!(
            t.effect.as_deref(),
            None | Some("") | Some("PreferNoSchedule")
        )
    });
    taints(node)
        .iter()
        .filter(|taint| taint.effect == "PreferNoSchedule")
        .filter(|taint| !tols.clone().any(|t| tolerates(t, taint)))
        .count() as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::{node, pod};
    use serde_json::json;

    #[test]
    fn taint_filter_cases() {
        struct Case {
            name: &'static str,
            taints: serde_json::Value,
            tolerations: serde_json::Value,
            unschedulable: bool,
            want: Option<&'static str>,
        }
        let cp = json!([{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]);
        let cases = [
            Case {
                name: "no taints",
                taints: json!([]),
                tolerations: json!([]),
                unschedulable: false,
                want: None,
            },
            Case {
                name: "untolerated NoSchedule",
                taints: cp.clone(),
                tolerations: json!([]),
                unschedulable: false,
                want: Some(
                    "node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }",
                ),
            },
            Case {
                name: "tolerated by Exists on the key",
                taints: cp.clone(),
                tolerations: json!([{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}]),
                unschedulable: false,
                want: None,
            },
            Case {
                name: "tolerated by a wildcard",
                taints: cp.clone(),
                tolerations: json!([{"operator": "Exists"}]),
                unschedulable: false,
                want: None,
            },
            Case {
                name: "wrong effect does not tolerate",
                taints: cp,
                tolerations: json!([{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoExecute"}]),
                unschedulable: false,
                want: Some(
                    "node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }",
                ),
            },
            Case {
                name: "Equal needs the value",
                taints: json!([{"key": "k", "value": "v", "effect": "NoExecute"}]),
                tolerations: json!([{"key": "k", "value": "w"}]),
                unschedulable: false,
                want: Some("node(s) had untolerated taint {k: v}"),
            },
            Case {
                name: "Equal with the value",
                taints: json!([{"key": "k", "value": "v", "effect": "NoExecute"}]),
                tolerations: json!([{"key": "k", "value": "v"}]),
                unschedulable: false,
                want: None,
            },
            Case {
                name: "PreferNoSchedule does not filter",
                taints: json!([{"key": "k", "effect": "PreferNoSchedule"}]),
                tolerations: json!([]),
                unschedulable: false,
                want: None,
            },
            Case {
                name: "cordoned",
                taints: json!([]),
                tolerations: json!([]),
                unschedulable: true,
                want: Some(REASON_UNSCHEDULABLE),
            },
            Case {
                name: "cordoned but tolerated",
                taints: json!([]),
                tolerations: json!([{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]),
                unschedulable: true,
                want: None,
            },
        ];
        for c in cases {
            let n = node(
                "n",
                json!({}),
                json!({"taints": c.taints, "unschedulable": c.unschedulable}),
                json!({}),
            );
            let p = pod("p", json!({"tolerations": c.tolerations}));
            let got = filter_unschedulable(&p, &n)
                .and_then(|_| filter(&p, &n))
                .err()
                .map(|r| r.reasons[0].to_string());
            assert_eq!(got.as_deref(), c.want, "{}", c.name);
        }
    }

    #[test]
    fn prefer_no_schedule_counts() {
        let n = node(
            "n",
            json!({}),
            json!({"taints": [{"key": "a", "effect": "PreferNoSchedule"}, {"key": "b", "effect": "PreferNoSchedule"}]}),
            json!({}),
        );
        assert_eq!(score(&pod("p", json!({})), &n), 2);
        assert_eq!(
            score(
                &pod(
                    "p",
                    json!({"tolerations": [{"key": "a", "operator": "Exists"}]})
                ),
                &n
            ),
            1
        );
        assert_eq!(
            score(
                &pod(
                    "p",
                    json!({"tolerations": [{"key": "a", "operator": "Exists", "effect": "NoSchedule"}]})
                ),
                &n
            ),
            2
        );
    }
}
