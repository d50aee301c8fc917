//! InterPodAffinity: required pod affinity / anti-affinity of the incoming pod, and
//! existing pods' required anti-affinity against it, filter nodes by topology domain;
//! preferred terms (both ways) and existing pods' required affinity score them.

use std::collections::HashMap;

use super::{Plugin, Rejection};
use crate::cache::{Cache, NodeInfo, PodInfo};
use crate::terms::AffinityTerm;

pub const REASON_AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub const REASON_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
pub const REASON_EXISTING_ANTI_AFFINITY: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";

/// Topology key → domain value → count.
type Counts = HashMap<String, HashMap<String, i64>>;

fn bump(c: &mut Counts, key: &str, value: &str, delta: i64) {
    let inner = c.entry(key.to_string()).or_default();
    let v = inner.entry(value.to_string()).or_insert(0);
    *v += delta;
    if *v == 0 {
        inner.remove(value);
        if inner.is_empty() {
            c.remove(key);
        }
    }
}

fn get(c: &Counts, key: &str, value: &str) -> i64 {
    c.get(key).and_then(|m| m.get(value)).copied().unwrap_or(0)
}

fn term_matches(cache: &Cache, term: &AffinityTerm, pod: &PodInfo) -> bool {
    term.matches(pod.namespace(), pod.labels(), &|ns| {
        cache.namespace_labels(ns)
    })
}

#[derive(Clone, Debug, Default)]
pub struct FilterState {
    existing_anti: Counts,
    affinity: Counts,
    anti: Counts,
}

impl FilterState {
    /// Adds (delta 1) or removes (-1) the effect of `other` on `node`.
    fn account(
        &mut self,
        cache: &Cache,
        pod: &PodInfo,
        other: &PodInfo,
        node: &NodeInfo,
        delta: i64,
    ) {
        if node.labels().is_none() {
            return;
        }
        for t in &other.required_anti_affinity {
            if let Some(v) = node.label(&t.topology_key) {
                if term_matches(cache, t, pod) {
                    bump(&mut self.existing_anti, &t.topology_key, v, delta);
                }
            }
        }
        if !pod.required_affinity.is_empty()
            && pod
                .required_affinity
                .iter()
                .all(|t| term_matches(cache, t, other))
        {
            for t in &pod.required_affinity {
                if let Some(v) = node.label(&t.topology_key) {
                    bump(&mut self.affinity, &t.topology_key, v, delta);
                }
            }
        }
        for t in &pod.required_anti_affinity {
            if let Some(v) = node.label(&t.topology_key) {
                if term_matches(cache, t, other) {
                    bump(&mut self.anti, &t.topology_key, v, delta);
                }
            }
        }
    }

    pub fn update(
        &mut self,
        cache: &Cache,
        pod: &PodInfo,
        other: &PodInfo,
        node: &NodeInfo,
        delta: i64,
    ) {
        self.account(cache, pod, other, node, delta);
    }

    pub fn filter(&self, cache: &Cache, pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
        if !self.satisfies_affinity(cache, pod, node) {
            return Err(Rejection::unresolvable(
                Plugin::InterPodAffinity,
                REASON_AFFINITY,
            ));
        }
        for t in &pod.required_anti_affinity {
            if node
                .label(&t.topology_key)
                .is_some_and(|v| get(&self.anti, &t.topology_key, v) > 0)
            {
                return Err(Rejection::unschedulable(
                    Plugin::InterPodAffinity,
                    REASON_ANTI_AFFINITY,
                ));
            }
        }
        for (key, values) in &self.existing_anti {
            if node
                .label(key)
                .is_some_and(|v| values.get(v).is_some_and(|c| *c > 0))
            {
                return Err(Rejection::unschedulable(
                    Plugin::InterPodAffinity,
                    REASON_EXISTING_ANTI_AFFINITY,
                ));
            }
        }
        Ok(())
    }

    fn satisfies_affinity(&self, cache: &Cache, pod: &PodInfo, node: &NodeInfo) -> bool {
        let mut pods_exist = true;
        for t in &pod.required_affinity {
            match node.label(&t.topology_key) {
                None => return false,
                Some(v) => {
                    if get(&self.affinity, &t.topology_key, v) <= 0 {
                        pods_exist = false;
                    }
                }
            }
        }
        // The first pod of a group with affinity to itself may go anywhere.
        pods_exist
            || (self.affinity.is_empty()
                && pod
                    .required_affinity
                    .iter()
                    .all(|t| term_matches(cache, t, pod)))
    }
}

pub fn prefilter(cache: &Cache, pod: &PodInfo) -> Option<FilterState> {
    let own = !pod.required_affinity.is_empty() || !pod.required_anti_affinity.is_empty();
    if !own && cache.pods_with_required_anti_affinity() == 0 {
        return None;
    }
    let mut state = FilterState::default();
    let mut any_existing = false;
    for node in cache.nodes() {
        if !own && node.pods_with_required_anti_affinity == 0 {
            continue;
        }
        any_existing |= node.pods_with_required_anti_affinity > 0;
        for other in &node.pods {
            if !own && other.required_anti_affinity.is_empty() {
                continue;
            }
            state.account(cache, pod, other, node, 1);
        }
    }
    (own || any_existing).then_some(state)
}

/// Scoring state: topology key → domain → summed weights.
pub struct ScoreState {
    scores: Counts,
}

pub fn prescore(cache: &Cache, pod: &PodInfo) -> Option<ScoreState> {
    let own = !pod.preferred_affinity.is_empty() || !pod.preferred_anti_affinity.is_empty();
    if !own && cache.pods_with_affinity() == 0 {
        return None;
    }
    let mut scores = Counts::new();
    let mut any = own;
    for node in cache.nodes() {
        if !own && node.pods_with_affinity == 0 {
            continue;
        }
        if node.labels().is_none_or(|l| l.is_empty()) {
            continue;
        }
        for other in &node.pods {
            if !own && !other.has_affinity() {
                continue;
            }
            any = true;
            let mut add = |t: &AffinityTerm, weight: i64, target: &PodInfo| {
                if let Some(v) = node.label(&t.topology_key) {
                    if weight != 0 && term_matches(cache, t, target) {
                        bump(&mut scores, &t.topology_key, v, weight);
                    }
                }
            };
            for (w, t) in &pod.preferred_affinity {
                add(t, *w as i64, other);
            }
            for (w, t) in &pod.preferred_anti_affinity {
                add(t, -(*w as i64), other);
            }
            // Upstream's hardPodAffinityWeight (1): existing pods' required affinity.
            for t in &other.required_affinity {
                add(t, 1, pod);
            }
            for (w, t) in &other.preferred_affinity {
                add(t, *w as i64, pod);
            }
            for (w, t) in &other.preferred_anti_affinity {
                add(t, -(*w as i64), pod);
            }
        }
    }
    any.then_some(ScoreState { scores })
}

impl ScoreState {
    pub fn score(&self, node: &NodeInfo) -> i64 {
        self.scores
            .iter()
            .filter_map(|(key, values)| node.label(key).and_then(|v| values.get(v)))
            .sum()
    }
}

/// Upstream's normalization: min..max mapped to 0..100 (all 0 when they are equal).
pub fn normalize(raw: &[i64]) -> Vec<i64> {
    let min = raw.iter().copied().min().unwrap_or(0);
    let max = raw.iter().copied().max().unwrap_or(0);
    let diff = max - min;
    raw.iter()
        .map(|s| {
            if diff > 0 {
                (100.0 * ((s - min) as f64 / diff as f64)) as i64
            } else {
                0
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::{pod_labeled, small_node};
    use serde_json::{json, Value};
    use std::sync::Arc;

    fn term(app: &str, key: &str) -> Value {
        json!({"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key})
    }

    fn anti(app: &str, key: &str) -> Value {
        json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term(app, key)]}}})
    }

    fn aff(app: &str, key: &str) -> Value {
        json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term(app, key)]}}})
    }

    #[test]
    fn filter_cases() {
        struct Case {
            name: &'static str,
            existing: Vec<(&'static str, Value, Value)>,
            pod: Arc<PodInfo>,
            node: &'static str,
            want: Result<(), &'static str>,
        }
        let web = json!({"app": "web"});
        let cases = [
            Case {
                name: "anti-affinity: node with a matching pod",
                existing: vec![("n1", web.clone(), json!({}))],
                pod: pod_labeled("p", web.clone(), anti("web", "kubernetes.io/hostname")),
                node: "n1",
                want: Err(REASON_ANTI_AFFINITY),
            },
            Case {
                name: "anti-affinity: other node",
                existing: vec![("n1", web.clone(), json!({}))],
                pod: pod_labeled("p", web.clone(), anti("web", "kubernetes.io/hostname")),
                node: "n2",
                want: Ok(()),
            },
            Case {
                name: "anti-affinity by zone covers the zone's other node",
                existing: vec![("n1", web.clone(), json!({}))],
                pod: pod_labeled("p", web.clone(), anti("web", "zone")),
                node: "n3",
                want: Err(REASON_ANTI_AFFINITY),
            },
            Case {
                name: "existing pod's anti-affinity keeps the pod off",
                existing: vec![(
                    "n1",
                    json!({"app": "db"}),
                    anti("web", "kubernetes.io/hostname"),
                )],
                pod: pod_labeled("p", web.clone(), json!({})),
                node: "n1",
                want: Err(REASON_EXISTING_ANTI_AFFINITY),
            },
            Case {
                name: "existing pod's anti-affinity elsewhere",
                existing: vec![(
                    "n1",
                    json!({"app": "db"}),
                    anti("web", "kubernetes.io/hostname"),
                )],
                pod: pod_labeled("p", web.clone(), json!({})),
                node: "n2",
                want: Ok(()),
            },
            Case {
                name: "affinity satisfied in the zone",
                existing: vec![("n1", json!({"app": "db"}), json!({}))],
                pod: pod_labeled("p", web.clone(), aff("db", "zone")),
                node: "n3",
                want: Ok(()),
            },
            Case {
                name: "affinity not satisfied in another zone",
                existing: vec![("n1", json!({"app": "db"}), json!({}))],
                pod: pod_labeled("p", web.clone(), aff("db", "zone")),
                node: "n2",
                want: Err(REASON_AFFINITY),
            },
            Case {
                name: "no matching pod anywhere",
                existing: vec![],
                pod: pod_labeled("p", web.clone(), aff("db", "zone")),
                node: "n2",
                want: Err(REASON_AFFINITY),
            },
            Case {
                name: "first pod of a self-affine group",
                existing: vec![],
                pod: pod_labeled("p", web.clone(), aff("web", "zone")),
                node: "n2",
                want: Ok(()),
            },
        ];
        for c in cases {
            let mut cache = Cache::default();
            cache.upsert_node(small_node("n1", json!({"zone": "a"})));
            cache.upsert_node(small_node("n2", json!({"zone": "b"})));
            cache.upsert_node(small_node("n3", json!({"zone": "a"})));
            for (i, (node, labels, spec)) in c.existing.into_iter().enumerate() {
                cache.upsert_bound_pod(pod_labeled(&format!("e{i}"), labels, spec), node);
            }
            let got = match prefilter(&cache, &c.pod) {
                None => Ok(()),
                Some(s) => s
                    .filter(&cache, &c.pod, cache.node(c.node).unwrap())
                    .map_err(|r| r.reasons[0].to_string()),
            };
            assert_eq!(got, c.want.map_err(str::to_string), "{}", c.name);
        }
    }

    #[test]
    fn preferred_scores() {
        let mut cache = Cache::default();
        cache.upsert_node(small_node("n1", json!({"zone": "a"})));
        cache.upsert_node(small_node("n2", json!({"zone": "b"})));
        cache.upsert_bound_pod(pod_labeled("db", json!({"app": "db"}), json!({})), "n1");
        let p = pod_labeled(
            "p",
            json!({}),
            json!({"affinity": {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 10, "podAffinityTerm": term("db", "zone")}]}}}),
        );
        let s = prescore(&cache, &p).unwrap();
        let raw: Vec<i64> = cache.nodes().map(|n| s.score(n)).collect();
        assert_eq!(raw, vec![10, 0]);
        assert_eq!(normalize(&raw), vec![100, 0]);
        assert!(prescore(&cache, &pod_labeled("q", json!({}), json!({}))).is_none());
    }
}
