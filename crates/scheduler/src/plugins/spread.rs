//! PodTopologySpread: `DoNotSchedule` constraints filter nodes whose domain would
//! exceed `maxSkew` over the emptiest domain; `ScheduleAnyway` constraints score nodes
//! by how many matching pods their domain already holds.
//!
//! Pods that declare no constraints are scored with upstream's system defaults (see
//! [`system_default_constraints`]).

use std::collections::HashMap;

use k8s_openapi::api::core::v1::TopologySpreadConstraint;
use skiff_runtime::selector::Selector;

use super::{taints, Plugin, Rejection};
use crate::cache::{Cache, NodeInfo, PodInfo};
use crate::terms::{selector_with_keys, RequiredNodeAffinity};

pub const REASON_NOT_MATCH: &str = "node(s) didn't match pod topology spread constraints";
pub const REASON_MISSING_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

const HOSTNAME: &str = "kubernetes.io/hostname";

#[derive(Clone, Debug)]
pub struct Constraint {
    pub max_skew: i64,
    pub key: String,
    pub selector: Selector,
    pub min_domains: i64,
    honor_affinity: bool,
    honor_taints: bool,
}

impl Constraint {
    fn parse(c: &TopologySpreadConstraint, pod: &PodInfo) -> Self {
        Self {
            max_skew: c.max_skew as i64,
            key: c.topology_key.clone(),
            selector: selector_with_keys(
                c.label_selector.as_ref(),
                c.match_label_keys.as_ref(),
                pod.labels(),
            ),
            min_domains: c.min_domains.unwrap_or(1).max(1) as i64,
            honor_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
            honor_taints: c.node_taints_policy.as_deref() == Some("Honor"),
        }
    }

    /// Whether `node` counts for this constraint (nodeAffinityPolicy/nodeTaintsPolicy).
    fn includes(&self, pod: &PodInfo, aff: &RequiredNodeAffinity, node: &NodeInfo) -> bool {
        let Some(n) = node.node.as_deref() else {
            return false;
        };
        if !self.honor_taints && (!self.honor_affinity || aff.is_empty()) {
            return true;
        }
        (!self.honor_affinity || aff.matches(n))
            && (!self.honor_taints || !taints::untolerated(pod, n))
    }

    fn counts(&self, pod: &PodInfo, other: &PodInfo) -> bool {
        !other.is_terminating()
            && other.namespace() == pod.namespace()
            && self.selector.matches(other.labels())
    }

    fn count_on(&self, pod: &PodInfo, node: &NodeInfo) -> i64 {
        if node.pods.is_empty() {
            return 0;
        }
        node.pods.iter().filter(|o| self.counts(pod, o)).count() as i64
    }
}

fn constraints(pod: &PodInfo, when: &str) -> Vec<Constraint> {
    pod.pod
        .spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| c.when_unsatisfiable == when)
        .map(|c| Constraint::parse(c, pod))
        .collect()
}

fn has_all_keys(node: &NodeInfo, cs: &[Constraint]) -> bool {
    cs.iter().all(|c| node.label(&c.key).is_some())
}

/// Matching pod counts per domain, for each DoNotSchedule constraint.
#[derive(Clone, Debug)]
pub struct FilterState {
    constraints: Vec<Constraint>,
    counts: Vec<HashMap<String, i64>>,
    min: Vec<i64>,
}

pub fn prefilter(cache: &Cache, pod: &PodInfo, aff: &RequiredNodeAffinity) -> Option<FilterState> {
    let cs = constraints(pod, "DoNotSchedule");
    if cs.is_empty() {
        return None;
    }
    let mut counts = vec![HashMap::new(); cs.len()];
    for node in cache.nodes() {
        if !has_all_keys(node, &cs) {
            continue;
        }
        for (i, c) in cs.iter().enumerate() {
            if !c.includes(pod, aff, node) {
                continue;
            }
            let value = node.label(&c.key).unwrap_or_default().to_string();
            *counts[i].entry(value).or_insert(0) += c.count_on(pod, node);
        }
    }
    let mut s = FilterState {
        constraints: cs,
        counts,
        min: Vec::new(),
    };
    s.recompute_min();
    Some(s)
}

impl FilterState {
    fn recompute_min(&mut self) {
        self.min = self
            .counts
            .iter()
            .map(|m| m.values().copied().min().unwrap_or(i64::MAX / 4))
            .collect();
    }

    pub fn update(&mut self, pod: &PodInfo, other: &PodInfo, node: &NodeInfo, delta: i64) {
        if !has_all_keys(node, &self.constraints) {
            return;
        }
        let mut changed = false;
        for (i, c) in self.constraints.iter().enumerate() {
            if !c.counts(pod, other) {
                continue;
            }
            if let Some(v) = node.label(&c.key).and_then(|v| self.counts[i].get_mut(v)) {
                *v += delta;
                changed = true;
            }
        }
        if changed {
            self.recompute_min();
        }
    }

    pub fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
        for (i, c) in self.constraints.iter().enumerate() {
            let Some(value) = node.label(&c.key) else {
                return Err(Rejection::unresolvable(
                    Plugin::PodTopologySpread,
                    REASON_MISSING_LABEL,
                ));
            };
            let self_match = i64::from(c.selector.matches(pod.labels()));
            let min = if (self.counts[i].len() as i64) < c.min_domains {
                0
            } else {
                self.min[i]
            };
            let matching = self.counts[i].get(value).copied().unwrap_or(0);
            if matching + self_match - min > c.max_skew {
                return Err(Rejection::unschedulable(
                    Plugin::PodTopologySpread,
                    REASON_NOT_MATCH,
                ));
            }
        }
        Ok(())
    }
}

/// Scoring state for ScheduleAnyway constraints over the feasible nodes.
pub struct ScoreState {
    constraints: Vec<Constraint>,
    /// Pod-declared constraints ignore nodes lacking a key; system defaults do not.
    require_all: bool,
    weights: Vec<f64>,
    /// (constraint index, domain) → matching pods, for non-hostname keys.
    counts: Vec<HashMap<String, i64>>,
}

/// Upstream's cluster-level defaults for pods that declare no constraints: spread
/// over hostnames (maxSkew 3) and zones (maxSkew 5), ScheduleAnyway, selecting the
/// pods of the same Services / ReplicaSets / ReplicationControllers / StatefulSets.
pub fn system_default_constraints(selector: Selector) -> Vec<Constraint> {
    [(HOSTNAME, 3), ("topology.kubernetes.io/zone", 5)]
        .into_iter()
        .map(|(key, skew)| Constraint {
            max_skew: skew,
            key: key.to_string(),
            selector: selector.clone(),
            min_domains: 1,
            honor_affinity: true,
            honor_taints: false,
        })
        .collect()
}

/// `system_default` is the pod's default selector (from the objects that select it),
/// used only when the pod declares no constraints.
pub fn prescore(
    cache: &Cache,
    pod: &PodInfo,
    feasible: &[&NodeInfo],
    system_default: Option<&Selector>,
) -> Option<ScoreState> {
    let declared = pod
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_ref())
        .is_some_and(|c| !c.is_empty());
    let (cs, require_all) = if declared {
        (constraints(pod, "ScheduleAnyway"), true)
    } else {
        (system_default_constraints(system_default?.clone()), false)
    };
    if cs.is_empty() {
        return None;
    }
    let aff = RequiredNodeAffinity::of(&pod.pod);
    let mut counts: Vec<HashMap<String, i64>> = vec![HashMap::new(); cs.len()];
    // Upstream also registers an empty domain for feasible nodes lacking the key
    // (system defaults); it only widens the domain count used for the weight.
    let mut empty_domain = vec![false; cs.len()];
    let mut ignored = 0usize;
    for node in feasible {
        if require_all && !has_all_keys(node, &cs) {
            ignored += 1;
            continue;
        }
        for (i, c) in cs.iter().enumerate() {
            if c.key == HOSTNAME {
                continue;
            }
            match node.label(&c.key) {
                Some(v) => {
                    counts[i].entry(v.to_string()).or_insert(0);
                }
                None => empty_domain[i] = true,
            }
        }
    }
    let weights = cs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let size = if c.key == HOSTNAME {
                feasible.len() - ignored
            } else {
                let empty_counted = empty_domain[i] && !counts[i].contains_key("");
                counts[i].len() + usize::from(empty_counted)
            };
            ((size + 2) as f64).ln()
        })
        .collect();
    if counts.iter().any(|m| !m.is_empty()) {
        for node in cache.nodes() {
            if require_all && !has_all_keys(node, &cs) {
                continue;
            }
            for (i, c) in cs.iter().enumerate() {
                if c.key == HOSTNAME || !c.includes(pod, &aff, node) {
                    continue;
                }
                let Some(slot) = node.label(&c.key).and_then(|v| counts[i].get_mut(v)) else {
                    continue;
                };
                *slot += c.count_on(pod, node);
            }
        }
    }
    Some(ScoreState {
        constraints: cs,
        require_all,
        weights,
        counts,
    })
}

impl ScoreState {
    /// Raw score (more matching pods = higher = worse); `None` for ignored nodes.
    pub fn score(&self, pod: &PodInfo, node: &NodeInfo) -> Option<i64> {
        if self.require_all && !has_all_keys(node, &self.constraints) {
            return None;
        }
        let mut score = 0f64;
        for (i, c) in self.constraints.iter().enumerate() {
            let Some(value) = node.label(&c.key) else {
                continue;
            };
            let count = if c.key == HOSTNAME {
                c.count_on(pod, node)
            } else {
                self.counts[i].get(value).copied().unwrap_or(0)
            };
            score += count as f64 * self.weights[i] + (c.max_skew - 1) as f64;
        }
        Some(score.round() as i64)
    }
}

/// Upstream's normalization: fewer matching pods scores higher; ignored nodes get 0.
pub fn normalize(raw: &[Option<i64>]) -> Vec<i64> {
    let valid = raw.iter().flatten();
    let min = valid.clone().copied().min().unwrap_or(0);
    let max = valid.copied().max().unwrap_or(0).max(0);
    raw.iter()
        .map(|s| match s {
            None => 0,
            Some(_) if max == 0 => 100,
            Some(s) => 100 * (max + min - s) / max,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::{pod_labeled, small_node};
    use serde_json::json;
    use std::sync::Arc;

    fn cluster(pods_per_zone: &[(&str, &str, usize)]) -> Cache {
        let mut c = Cache::default();
        for (node, zone, n) in pods_per_zone {
            c.upsert_node(small_node(node, json!({"zone": zone})));
            for i in 0..*n {
                c.upsert_bound_pod(
                    pod_labeled(&format!("{node}-{i}"), json!({"app": "web"}), json!({})),
                    node,
                );
            }
        }
        c
    }

    fn spread_pod(key: &str, skew: i32, when: &str, min_domains: Option<i32>) -> Arc<PodInfo> {
        let mut c = json!({"maxSkew": skew, "topologyKey": key, "whenUnsatisfiable": when, "labelSelector": {"matchLabels": {"app": "web"}}});
        if let Some(m) = min_domains {
            c["minDomains"] = json!(m);
        }
        pod_labeled(
            "new",
            json!({"app": "web"}),
            json!({"topologySpreadConstraints": [c]}),
        )
    }

    #[test]
    fn filter_cases() {
        struct Case {
            name: &'static str,
            cluster: Vec<(&'static str, &'static str, usize)>,
            pod: Arc<PodInfo>,
            node: &'static str,
            want: Result<(), &'static str>,
        }
        let cases = [
            Case {
                name: "emptiest zone passes",
                cluster: vec![("n1", "a", 2), ("n2", "b", 1)],
                pod: spread_pod("zone", 1, "DoNotSchedule", None),
                node: "n2",
                want: Ok(()),
            },
            Case {
                name: "fullest zone exceeds the skew",
                cluster: vec![("n1", "a", 2), ("n2", "b", 1)],
                pod: spread_pod("zone", 1, "DoNotSchedule", None),
                node: "n1",
                want: Err(REASON_NOT_MATCH),
            },
            Case {
                name: "skew 2 allows it",
                cluster: vec![("n1", "a", 2), ("n2", "b", 1)],
                pod: spread_pod("zone", 2, "DoNotSchedule", None),
                node: "n1",
                want: Ok(()),
            },
            Case {
                name: "node without the key",
                cluster: vec![("n1", "a", 0)],
                pod: spread_pod("rack", 1, "DoNotSchedule", None),
                node: "n1",
                want: Err(REASON_MISSING_LABEL),
            },
            Case {
                name: "minDomains above the domain count makes the minimum 0",
                cluster: vec![("n1", "a", 1), ("n2", "b", 1)],
                pod: spread_pod("zone", 1, "DoNotSchedule", Some(3)),
                node: "n1",
                want: Err(REASON_NOT_MATCH),
            },
            Case {
                name: "ScheduleAnyway does not filter",
                cluster: vec![("n1", "a", 5), ("n2", "b", 0)],
                pod: spread_pod("zone", 1, "ScheduleAnyway", None),
                node: "n1",
                want: Ok(()),
            },
        ];
        for c in cases {
            let cache = cluster(&c.cluster);
            let aff = RequiredNodeAffinity::of(&c.pod.pod);
            let got = match prefilter(&cache, &c.pod, &aff) {
                None => Ok(()),
                Some(s) => s
                    .filter(&c.pod, cache.node(c.node).unwrap())
                    .map_err(|r| r.reasons[0].to_string()),
            };
            assert_eq!(got, c.want.map_err(str::to_string), "{}", c.name);
        }
    }

    #[test]
    fn score_prefers_emptier_domains() {
        let cache = cluster(&[("n1", "a", 3), ("n2", "b", 1), ("n3", "c", 0)]);
        let p = spread_pod("zone", 1, "ScheduleAnyway", None);
        let feasible: Vec<&NodeInfo> = cache.nodes().collect();
        let s = prescore(&cache, &p, &feasible, None).unwrap();
        let raw: Vec<Option<i64>> = feasible.iter().map(|n| s.score(&p, n)).collect();
        let norm = normalize(&raw);
        assert!(norm[2] > norm[1] && norm[1] > norm[0], "{norm:?}");
        assert_eq!(norm[2], 100);
    }

    #[test]
    fn system_defaults_spread_pods_of_one_owner_over_hostnames() {
        let cache = cluster(&[("n1", "a", 2), ("n2", "b", 0)]);
        let p = pod_labeled("new", json!({"app": "web"}), json!({}));
        let feasible: Vec<&NodeInfo> = cache.nodes().collect();
        assert!(
            prescore(&cache, &p, &feasible, None).is_none(),
            "no owner, no defaults"
        );
        let sel = Selector::from_map(Some(&[("app".to_string(), "web".to_string())].into()));
        let s = prescore(&cache, &p, &feasible, Some(&sel)).unwrap();
        let raw: Vec<Option<i64>> = feasible.iter().map(|n| s.score(&p, n)).collect();
        let norm = normalize(&raw);
        assert!(norm[1] > norm[0], "{raw:?} {norm:?}");
    }
}
