//! Which nodes a DaemonSet's pod belongs on: the pod's nodeSelector, required node
//! affinity and tolerations (with the tolerations upstream adds to every daemon pod)
//! against the node's labels, name and taints.

use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PodSpec,
    Taint, Toleration,
};

/// The tolerations upstream's DaemonSet controller adds to its pods, so daemons keep
/// running on nodes that are unready, unreachable, under pressure or cordoned.
pub fn default_tolerations(host_network: bool) -> Vec<Toleration> {
    let t = |key: &str, effect: &str| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Default::default()
    };
    let mut out = vec![
        t("node.kubernetes.io/not-ready", "NoExecute"),
        t("node.kubernetes.io/unreachable", "NoExecute"),
        t("node.kubernetes.io/disk-pressure", "NoSchedule"),
        t("node.kubernetes.io/memory-pressure", "NoSchedule"),
        t("node.kubernetes.io/pid-pressure", "NoSchedule"),
        t("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        out.push(t("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    out
}

/// Adds the default tolerations the spec lacks (same key and effect).
pub fn add_default_tolerations(spec: &mut PodSpec) {
    let host_network = spec.host_network.unwrap_or(false);
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for d in default_tolerations(host_network) {
        if !tolerations
            .iter()
            .any(|t| t.key == d.key && t.effect == d.effect)
        {
            tolerations.push(d);
        }
    }
}

/// Pins the pod to `node` through a required `matchFields metadata.name In [node]`
/// term in every node selector term (as upstream since 1.12: the scheduler places it).
pub fn pin_to_node(spec: &mut PodSpec, node: &str) {
    let field = NodeSelectorRequirement {
        key: "metadata.name".into(),
        operator: "In".into(),
        values: Some(vec![node.into()]),
    };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let na = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    let required = na
        .required_during_scheduling_ignored_during_execution
        .get_or_insert_with(|| NodeSelector {
            node_selector_terms: vec![],
        });
    if required.node_selector_terms.is_empty() {
        required
            .node_selector_terms
            .push(NodeSelectorTerm::default());
    }
    for term in &mut required.node_selector_terms {
        term.match_fields = Some(vec![field.clone()]);
    }
}

/// The node a daemon pod is meant for: its nodeName, else its pinned `metadata.name`.
pub fn target_node(spec: &PodSpec) -> Option<String> {
    if let Some(n) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(n.clone());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().find_map(|t| {
        t.match_fields.as_ref()?.iter().find_map(|f| {
            (f.key == "metadata.name" && f.operator == "In")
                .then(|| f.values.as_ref()?.first().cloned())
                .flatten()
        })
    })
}

fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if t.effect
        .as_ref()
        .is_some_and(|e| !e.is_empty() && *e != taint.effect)
    {
        return false;
    }
    let exists = t.operator.as_deref() == Some("Exists");
    match t.key.as_deref().filter(|k| !k.is_empty()) {
        None => exists,
        Some(k) if k != taint.key => false,
        Some(_) => {
            exists || t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
    }
}

fn requirement(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    // An empty term selects nothing (upstream).
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let name = node.metadata.name.as_deref();
    exprs
        .iter()
        .all(|r| requirement(r, labels.get(&r.key).map(String::as_str)))
        && fields
            .iter()
            .all(|r| r.key == "metadata.name" && requirement(r, name))
}

/// Whether a pod with `spec` fits `node` by selector and affinity.
fn selected(spec: &PodSpec, node: &Node) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    if let Some(sel) = &spec.node_selector {
        if !sel.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return false;
        }
    }
    if let Some(name) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        if node.metadata.name.as_ref() != Some(name) {
            return false;
        }
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    match required {
        None => true,
        Some(r) => r.node_selector_terms.iter().any(|t| term_matches(t, node)),
    }
}

fn untolerated<'a>(spec: &PodSpec, node: &'a Node, effects: &[&str]) -> Option<&'a Taint> {
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    node.spec
        .as_ref()?
        .taints
        .as_ref()?
        .iter()
        .filter(|t| effects.contains(&t.effect.as_str()))
        .find(|taint| !tolerations.iter().any(|t| tolerates(t, taint)))
}

/// Upstream's two questions about a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fit {
    /// A daemon pod should be started there.
    pub should_run: bool,
    /// A daemon pod already there may stay (only NoExecute taints evict).
    pub should_continue: bool,
}

/// `spec` is the daemon pod's spec with the default tolerations already added.
pub fn fit(spec: &PodSpec, node: &Node) -> Fit {
    if !selected(spec, node) {
        return Fit {
            should_run: false,
            should_continue: false,
        };
    }
    Fit {
        should_run: untolerated(spec, node, &["NoSchedule", "NoExecute"]).is_none(),
        should_continue: untolerated(spec, node, &["NoExecute"]).is_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, labels: serde_json::Value, taints: serde_json::Value) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"taints": taints},
        }))
        .unwrap()
    }

    fn spec(extra: serde_json::Value) -> PodSpec {
        let mut s = json!({"containers": [{"name": "c"}]});
        if let (Some(a), Some(b)) = (s.as_object_mut(), extra.as_object()) {
            a.extend(b.clone());
        }
        let mut spec: PodSpec = serde_json::from_value(s).unwrap();
        add_default_tolerations(&mut spec);
        spec
    }

    #[test]
    fn fits() {
        let run = Fit {
            should_run: true,
            should_continue: true,
        };
        let no = Fit {
            should_run: false,
            should_continue: false,
        };
        let stay = Fit {
            should_run: false,
            should_continue: true,
        };
        let cases = vec![
            (
                "plain node",
                spec(json!({})),
                node("a", json!({}), json!([])),
                run,
            ),
            (
                "nodeSelector matches",
                spec(json!({"nodeSelector": {"disk": "ssd"}})),
                node("a", json!({"disk": "ssd"}), json!([])),
                run,
            ),
            (
                "nodeSelector misses",
                spec(json!({"nodeSelector": {"disk": "ssd"}})),
                node("a", json!({"disk": "hdd"}), json!([])),
                no,
            ),
            (
                "required affinity NotIn",
                spec(
                    json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["z1"]}]}]}}}}),
                ),
                node("a", json!({"zone": "z1"}), json!([])),
                no,
            ),
            (
                "untolerated NoSchedule taint: stay, do not start",
                spec(json!({})),
                node(
                    "a",
                    json!({}),
                    json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]),
                ),
                stay,
            ),
            (
                "untolerated NoExecute taint: neither",
                spec(json!({})),
                node(
                    "a",
                    json!({}),
                    json!([{"key": "dedicated", "effect": "NoExecute"}]),
                ),
                Fit {
                    should_run: false,
                    should_continue: false,
                },
            ),
            (
                "tolerated taint",
                spec(
                    json!({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]}),
                ),
                node(
                    "a",
                    json!({}),
                    json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]),
                ),
                run,
            ),
            (
                "default tolerations: cordoned and not-ready nodes still run daemons",
                spec(json!({})),
                node(
                    "a",
                    json!({}),
                    json!([
                        {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
                        {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"},
                        {"key": "node.kubernetes.io/memory-pressure", "effect": "NoSchedule"}
                    ]),
                ),
                run,
            ),
            (
                "network-unavailable only tolerated with hostNetwork",
                spec(json!({})),
                node(
                    "a",
                    json!({}),
                    json!([{"key": "node.kubernetes.io/network-unavailable", "effect": "NoSchedule"}]),
                ),
                stay,
            ),
            (
                "hostNetwork tolerates network-unavailable",
                spec(json!({"hostNetwork": true})),
                node(
                    "a",
                    json!({}),
                    json!([{"key": "node.kubernetes.io/network-unavailable", "effect": "NoSchedule"}]),
                ),
                run,
            ),
        ];
        for (name, s, n, want) in cases {
            assert_eq!(fit(&s, &n), want, "{name}");
        }
    }

    #[test]
    fn pinning_keeps_expressions_and_names_the_node() {
        let mut s = spec(
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]}]}}}}),
        );
        pin_to_node(&mut s, "a");
        assert_eq!(target_node(&s).as_deref(), Some("a"));
        assert!(fit(&s, &node("a", json!({"zone": "z1"}), json!([]))).should_run);
        assert!(!fit(&s, &node("b", json!({"zone": "z1"}), json!([]))).should_run);
        let mut plain = spec(json!({}));
        pin_to_node(&mut plain, "b");
        assert_eq!(target_node(&plain).as_deref(), Some("b"));
    }
}
