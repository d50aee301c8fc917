//! NodeName and NodeAffinity: `spec.nodeName`, `nodeSelector` and required node
//! affinity filter nodes; preferred node affinity scores them.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Node;

use super::{Plugin, Rejection};
use crate::cache::PodInfo;
use crate::terms::{NodeTerm, RequiredNodeAffinity};

pub const REASON_NODE_NAME: &str = "node(s) didn't match the requested node name";
pub const REASON_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";

pub fn filter_node_name(pod: &PodInfo, node: &Node) -> Result<(), Rejection> {
    match pod.pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
        Some(want) if !want.is_empty() && Some(want) != node.metadata.name.as_deref() => {
            Err(Rejection::unresolvable(Plugin::NodeName, REASON_NODE_NAME))
        }
        _ => Ok(()),
    }
}

pub fn filter(required: &RequiredNodeAffinity, node: &Node) -> Result<(), Rejection> {
    if required.matches(node) {
        Ok(())
    } else {
        Err(Rejection::unresolvable(
            Plugin::NodeAffinity,
            REASON_AFFINITY,
        ))
    }
}

pub const REASON_CONFLICT: &str = "pod affinity terms conflict";

/// Upstream's NodeAffinity PreFilter result: when every required term names nodes
/// with `metadata.name In (...)`, only the union of those (each term's names
/// intersected) can fit; an empty union is a conflict.
pub fn prefilter_node_names(pod: &PodInfo) -> Result<Option<BTreeSet<String>>, Rejection> {
    let terms = pod
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .map(|r| r.node_selector_terms.as_slice())
        .unwrap_or(&[]);
    if terms.is_empty() {
        return Ok(None);
    }
    let mut union: BTreeSet<String> = BTreeSet::new();
    for t in terms {
        let mut names: Option<BTreeSet<String>> = None;
        for r in t.match_fields.iter().flatten() {
            if r.key == "metadata.name" && r.operator == "In" {
                let s: BTreeSet<String> = r.values.iter().flatten().cloned().collect();
                names = Some(match names {
                    None => s,
                    Some(prev) => prev.intersection(&s).cloned().collect(),
                });
            }
        }
        match names {
            // A term without a name requirement lets every node through.
            None => return Ok(None),
            Some(n) => union.extend(n),
        }
    }
    if union.is_empty() {
        return Err(Rejection::unresolvable(
            Plugin::NodeAffinity,
            REASON_CONFLICT,
        ));
    }
    Ok(Some(union))
}

/// The pod's preferred node affinity terms with their weights.
pub fn preferred(pod: &PodInfo) -> Vec<(i32, NodeTerm)> {
    pod.pod
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .into_iter()
        .flatten()
        .filter(|t| t.weight != 0)
        .map(|t| (t.weight, NodeTerm::parse(&t.preference)))
        .collect()
}

/// Raw score: the sum of the weights of the preferred terms the node matches.
pub fn score(terms: &[(i32, NodeTerm)], node: &Node) -> i64 {
    terms
        .iter()
        .filter(|(_, t)| t.matches(node))
        .map(|(w, _)| *w as i64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::{pod, small_node};
    use serde_json::json;

    #[test]
    fn selector_and_affinity_cases() {
        struct Case {
            name: &'static str,
            spec: serde_json::Value,
            want: bool,
        }
        let n = small_node("n1", json!({"disk": "ssd", "zone": "a"}));
        let req = |terms: serde_json::Value| json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}});
        let cases = [
            Case {
                name: "no constraints",
                spec: json!({}),
                want: true,
            },
            Case {
                name: "nodeSelector matches",
                spec: json!({"nodeSelector": {"disk": "ssd"}}),
                want: true,
            },
            Case {
                name: "nodeSelector misses",
                spec: json!({"nodeSelector": {"disk": "hdd"}}),
                want: false,
            },
            Case {
                name: "any term may match",
                spec: req(
                    json!([{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}, {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]),
                ),
                want: true,
            },
            Case {
                name: "matchFields on the name",
                spec: req(
                    json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}]),
                ),
                want: false,
            },
            Case {
                name: "nodeSelector and affinity both apply",
                spec: {
                    let mut s = req(
                        json!([{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]),
                    );
                    s["nodeSelector"] = json!({"disk": "hdd"});
                    s
                },
                want: false,
            },
        ];
        for c in cases {
            let p = pod("p", c.spec);
            let got = filter(&RequiredNodeAffinity::of(&p.pod), &n);
            assert_eq!(got.is_ok(), c.want, "{}", c.name);
            if let Err(r) = got {
                assert_eq!(r.reasons[0], REASON_AFFINITY);
                assert!(!r.resolvable);
            }
        }
    }

    #[test]
    fn preferred_weights_add_up() {
        let n = small_node("n1", json!({"disk": "ssd", "zone": "a"}));
        let p = pod(
            "p",
            json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 5, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}},
                {"weight": 3, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}},
                {"weight": 7, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}}
            ]}}}),
        );
        assert_eq!(score(&preferred(&p), &n), 8);
    }
}
