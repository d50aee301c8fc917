//! Parsed selectors the plugins evaluate many times per pod: node selector terms
//! (nodeSelector, node affinity, PV node affinity) and pod affinity terms. Parsing once
//! keeps the per-node filter cheap.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use skiff_runtime::selector::Selector;

#[derive(Clone, Debug, PartialEq)]
enum Op {
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
    Gt(i64),
    Lt(i64),
    /// An operator or value upstream refuses: the requirement matches nothing.
    Invalid,
}

#[derive(Clone, Debug, PartialEq)]
struct Requirement {
    key: String,
    op: Op,
}

impl Requirement {
    fn parse(r: &NodeSelectorRequirement) -> Self {
        let values = r.values.clone().unwrap_or_default();
        let int = |v: &[String]| match v {
            [one] => one.parse::<i64>().ok(),
            _ => None,
        };
        let op = match r.operator.as_str() {
            "In" => Op::In(values),
            "NotIn" => Op::NotIn(values),
            "Exists" => Op::Exists,
            "DoesNotExist" => Op::DoesNotExist,
            "Gt" => int(&values).map_or(Op::Invalid, Op::Gt),
            "Lt" => int(&values).map_or(Op::Invalid, Op::Lt),
            _ => Op::Invalid,
        };
        Self {
            key: r.key.clone(),
            op,
        }
    }

    fn matches(&self, value: Option<&str>) -> bool {
        match (&self.op, value) {
            (Op::In(vs), Some(v)) => vs.iter().any(|x| x == v),
            (Op::In(_), None) => false,
            (Op::NotIn(vs), Some(v)) => !vs.iter().any(|x| x == v),
            (Op::NotIn(_), None) => true,
            (Op::Exists, v) => v.is_some(),
            (Op::DoesNotExist, v) => v.is_none(),
            (Op::Gt(n), Some(v)) => v.parse::<i64>().is_ok_and(|x| x > *n),
            (Op::Lt(n), Some(v)) => v.parse::<i64>().is_ok_and(|x| x < *n),
            _ => false,
        }
    }
}

/// One node selector term: all its label expressions and field expressions must match.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeTerm {
    labels: Vec<Requirement>,
    fields: Vec<Requirement>,
    /// A term with no requirements matches no node (upstream).
    empty: bool,
}

impl NodeTerm {
    pub fn parse(t: &NodeSelectorTerm) -> Self {
        let labels: Vec<Requirement> = t
            .match_expressions
            .iter()
            .flatten()
            .map(Requirement::parse)
            .collect();
        let fields: Vec<Requirement> = t
            .match_fields
            .iter()
            .flatten()
            .map(|r| {
                let mut req = Requirement::parse(r);
                // Only metadata.name is a supported field, with In/NotIn.
                if req.key != "metadata.name" || !matches!(req.op, Op::In(_) | Op::NotIn(_)) {
                    req.op = Op::Invalid;
                }
                req
            })
            .collect();
        let empty = labels.is_empty() && fields.is_empty();
        Self {
            labels,
            fields,
            empty,
        }
    }

    pub fn matches(&self, node: &Node) -> bool {
        if self.empty {
            return false;
        }
        let labels = node.metadata.labels.as_ref();
        let name = node.metadata.name.as_deref();
        self.labels
            .iter()
            .all(|r| r.matches(labels.and_then(|l| l.get(&r.key)).map(String::as_str)))
            && self.fields.iter().all(|r| r.matches(name))
    }
}

/// A node selector: any of its terms must match.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct NodeSelector {
    terms: Vec<NodeTerm>,
}

impl NodeSelector {
    pub fn parse(terms: &[NodeSelectorTerm]) -> Self {
        Self {
            terms: terms.iter().map(NodeTerm::parse).collect(),
        }
    }

    pub fn matches(&self, node: &Node) -> bool {
        self.terms.iter().any(|t| t.matches(node))
    }
}

/// What a pod requires of a node's labels: its `nodeSelector` and its required node
/// affinity, both of which must hold.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RequiredNodeAffinity {
    node_selector: Vec<(String, String)>,
    affinity: Option<NodeSelector>,
}

impl RequiredNodeAffinity {
    pub fn of(pod: &Pod) -> Self {
        let Some(spec) = pod.spec.as_ref() else {
            return Self::default();
        };
        let node_selector = spec
            .node_selector
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let affinity = spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|na| {
                na.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(|ns| NodeSelector::parse(&ns.node_selector_terms));
        Self {
            node_selector,
            affinity,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.node_selector.is_empty() && self.affinity.is_none()
    }

    pub fn matches(&self, node: &Node) -> bool {
        let labels = node.metadata.labels.as_ref();
        self.node_selector
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
            && self.affinity.as_ref().is_none_or(|a| a.matches(node))
    }
}

/// A parsed pod (anti-)affinity term.
#[derive(Clone, Debug)]
pub struct AffinityTerm {
    pub topology_key: String,
    selector: Selector,
    namespaces: HashSet<String>,
    /// `Some` when the term has a namespaceSelector (empty = every namespace).
    namespace_selector: Option<Selector>,
}

impl AffinityTerm {
    /// Parses `t` of a pod in namespace `pod_ns` with labels `pod_labels` (for
    /// matchLabelKeys / mismatchLabelKeys). An unparsable selector matches nothing.
    pub fn parse(
        t: &PodAffinityTerm,
        pod_ns: &str,
        pod_labels: Option<&BTreeMap<String, String>>,
    ) -> Self {
        let mut sel = t.label_selector.clone();
        let extra = |keys: &Option<Vec<String>>, op: &str| -> Vec<LabelSelectorRequirement> {
            keys.iter()
                .flatten()
                .filter_map(|k| {
                    pod_labels
                        .and_then(|l| l.get(k))
                        .map(|v| LabelSelectorRequirement {
                            key: k.clone(),
                            operator: op.to_string(),
                            values: Some(vec![v.clone()]),
                        })
                })
                .collect()
        };
        let mut reqs = extra(&t.match_label_keys, "In");
        reqs.extend(extra(&t.mismatch_label_keys, "NotIn"));
        if !reqs.is_empty() {
            if let Some(s) = sel.as_mut() {
                s.match_expressions
                    .get_or_insert_with(Vec::new)
                    .extend(reqs);
            }
        }
        let selector = Selector::new(sel.as_ref()).unwrap_or_else(|_| nothing());
        let mut namespaces: HashSet<String> = t.namespaces.iter().flatten().cloned().collect();
        let namespace_selector = t
            .namespace_selector
            .as_ref()
            .map(|s| Selector::new(Some(s)).unwrap_or_else(|_| nothing()));
        if namespaces.is_empty() && namespace_selector.is_none() {
            namespaces.insert(pod_ns.to_string());
        }
        Self {
            topology_key: t.topology_key.clone(),
            selector,
            namespaces,
            namespace_selector,
        }
    }

    /// Whether a pod in `ns` with `labels` is one this term selects. `ns_labels` gives
    /// a namespace's labels (for namespaceSelector).
    pub fn matches(
        &self,
        ns: &str,
        labels: Option<&BTreeMap<String, String>>,
        ns_labels: &dyn Fn(&str) -> Option<BTreeMap<String, String>>,
    ) -> bool {
        let ns_ok = self.namespaces.contains(ns)
            || self
                .namespace_selector
                .as_ref()
                .is_some_and(|s| s.selects_everything() || s.matches(ns_labels(ns).as_ref()));
        ns_ok && self.selector.matches(labels)
    }
}

fn nothing() -> Selector {
    Selector::new(None).unwrap_or_else(|_| Selector::from_map(None))
}

/// A label selector with extra `key In (value)` requirements for `match_label_keys`
/// (topology spread), taking values from the pod's own labels.
pub fn selector_with_keys(
    sel: Option<&LabelSelector>,
    keys: Option<&Vec<String>>,
    pod_labels: Option<&BTreeMap<String, String>>,
) -> Selector {
    let mut sel = sel.cloned();
    if let Some(s) = sel.as_mut() {
        for k in keys.into_iter().flatten() {
            if let Some(v) = pod_labels.and_then(|l| l.get(k)) {
                s.match_expressions
                    .get_or_insert_with(Vec::new)
                    .push(LabelSelectorRequirement {
                        key: k.clone(),
                        operator: "In".into(),
                        values: Some(vec![v.clone()]),
                    });
            }
        }
    }
    Selector::new(sel.as_ref()).unwrap_or_else(|_| nothing())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, labels: serde_json::Value) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap()
    }

    #[test]
    fn node_selector_terms() {
        struct Case {
            name: &'static str,
            term: serde_json::Value,
            want: bool,
        }
        let n = node("n1", json!({"zone": "a", "gen": "5"}));
        let cases = [
            Case {
                name: "In matches",
                term: json!({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}),
                want: true,
            },
            Case {
                name: "In misses",
                term: json!({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}),
                want: false,
            },
            Case {
                name: "NotIn on a missing label matches",
                term: json!({"matchExpressions": [{"key": "x", "operator": "NotIn", "values": ["b"]}]}),
                want: true,
            },
            Case {
                name: "Exists",
                term: json!({"matchExpressions": [{"key": "gen", "operator": "Exists"}]}),
                want: true,
            },
            Case {
                name: "DoesNotExist",
                term: json!({"matchExpressions": [{"key": "gen", "operator": "DoesNotExist"}]}),
                want: false,
            },
            Case {
                name: "Gt",
                term: json!({"matchExpressions": [{"key": "gen", "operator": "Gt", "values": ["4"]}]}),
                want: true,
            },
            Case {
                name: "Lt",
                term: json!({"matchExpressions": [{"key": "gen", "operator": "Lt", "values": ["4"]}]}),
                want: false,
            },
            Case {
                name: "Gt with two values is invalid",
                term: json!({"matchExpressions": [{"key": "gen", "operator": "Gt", "values": ["1", "2"]}]}),
                want: false,
            },
            Case {
                name: "matchFields metadata.name",
                term: json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}),
                want: true,
            },
            Case {
                name: "matchFields other name",
                term: json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}),
                want: false,
            },
            Case {
                name: "empty term matches nothing",
                term: json!({}),
                want: false,
            },
        ];
        for c in cases {
            let t: NodeSelectorTerm = serde_json::from_value(c.term).unwrap();
            assert_eq!(NodeTerm::parse(&t).matches(&n), c.want, "{}", c.name);
        }
    }

    #[test]
    fn affinity_term_namespaces() {
        let t: PodAffinityTerm = serde_json::from_value(
            json!({"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"}),
        )
        .unwrap();
        let labels: BTreeMap<String, String> = [("app".to_string(), "db".to_string())].into();
        let none = |_: &str| None;
        let term = AffinityTerm::parse(&t, "ns1", None);
        assert!(term.matches("ns1", Some(&labels), &none));
        assert!(
            !term.matches("ns2", Some(&labels), &none),
            "own namespace only by default"
        );
        let t2: PodAffinityTerm = serde_json::from_value(json!({"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone", "namespaceSelector": {}})).unwrap();
        assert!(
            AffinityTerm::parse(&t2, "ns1", None).matches("ns2", Some(&labels), &none),
            "empty namespaceSelector: all namespaces"
        );
    }
}
