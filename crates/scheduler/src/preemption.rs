//! Preemption (upstream's DefaultPreemption PostFilter), pure: for a pod that fits
//! nowhere, find the node where evicting the fewest, least important pods of strictly
//! lower priority makes it fit, preferring victims whose PodDisruptionBudget allows a
//! disruption.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use skiff_runtime::selector::Selector;

use crate::cache::{Cache, NodeInfo, PodInfo};
use crate::message::preemption_message;
use crate::plugins::{filter, CycleState, Rejection};

pub const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";

/// A PodDisruptionBudget as preemption reads it.
#[derive(Clone, Debug)]
pub struct Budget {
    pub namespace: String,
    pub selector: Selector,
    pub disruptions_allowed: i32,
    pub disrupted: Vec<String>,
}

impl Budget {
    pub fn from_pdb(pdb: &PodDisruptionBudget) -> Option<Self> {
        let selector = Selector::new(pdb.spec.as_ref().and_then(|s| s.selector.as_ref())).ok()?;
        let status = pdb.status.as_ref();
        Some(Self {
            namespace: pdb.metadata.namespace.clone().unwrap_or_default(),
            selector,
            disruptions_allowed: status.map_or(0, |s| s.disruptions_allowed),
            disrupted: status
                .and_then(|s| s.disrupted_pods.as_ref())
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default(),
        })
    }
}

/// The node chosen and the pods to evict there.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub node: String,
    pub victims: Vec<Arc<PodInfo>>,
    pub pdb_violations: usize,
}

/// Whether the pod may preempt at all; `Err` carries upstream's reason. `nominated` is
/// the node the pod is nominated to (its status, or a nomination not yet written).
pub fn eligible(cache: &Cache, pod: &PodInfo, nominated: Option<&str>) -> Result<(), String> {
    let spec = pod.pod.spec.as_ref();
    if spec.and_then(|s| s.preemption_policy.as_deref()) == Some("Never") {
        return Err("not eligible due to preemptionPolicy=Never.".into());
    }
    if let Some(node) = nominated.and_then(|n| cache.node(n)) {
        let waiting = node
            .pods
            .iter()
            .any(|p| p.is_terminating() && p.priority < pod.priority);
        if waiting {
            return Err("not eligible due to a terminating pod on the nominated node.".into());
        }
    }
    Ok(())
}

/// Splits victims into those whose eviction would violate a budget and those it would
/// not, decrementing budgets as upstream does.
fn split_by_budget(
    victims: &[Arc<PodInfo>],
    budgets: &[Budget],
) -> (Vec<Arc<PodInfo>>, Vec<Arc<PodInfo>>) {
    let mut allowed: Vec<i32> = budgets.iter().map(|b| b.disruptions_allowed).collect();
    let (mut violating, mut ok) = (Vec::new(), Vec::new());
    for v in victims {
        let mut violates = false;
        for (i, b) in budgets.iter().enumerate() {
            // As upstream here, a nil or empty selector matches nothing.
            if b.namespace != v.namespace()
                || b.selector.selects_everything()
                || b.selector.selects_nothing()
                || !b.selector.matches(v.labels())
            {
                continue;
            }
            if b.disrupted.iter().any(|n| n == &v.key.name) {
                continue;
            }
            allowed[i] -= 1;
            if allowed[i] < 0 {
                violates = true;
            }
        }
        if violates {
            violating.push(v.clone());
        } else {
            ok.push(v.clone());
        }
    }
    (violating, ok)
}

/// Upstream's MoreImportantPod order: higher priority first, then earlier start.
fn more_important_first(a: &Arc<PodInfo>, b: &Arc<PodInfo>) -> std::cmp::Ordering {
    b.priority.cmp(&a.priority).then_with(|| {
        let (sa, sb) = (a.start_time(), b.start_time());
        match (sa, sb) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        }
    })
}

/// Which pods on `node` to evict so the pod fits, or why none will do.
pub fn select_victims(
    cache: &Cache,
    state: &CycleState,
    node: &NodeInfo,
    budgets: &[Budget],
) -> Result<(Vec<Arc<PodInfo>>, usize), Vec<String>> {
    let pod = state.pod.clone();
    let mut potential: Vec<Arc<PodInfo>> = node
        .pods
        .iter()
        .filter(|p| p.priority < pod.priority)
        .cloned()
        .collect();
    if potential.is_empty() {
        return Err(vec![NO_VICTIMS.to_string()]);
    }
    // What-ifs run on copies; only nodes with possible victims get this far.
    let mut node = node.clone();
    let mut state = state.clone();
    for v in &potential {
        node.remove_pod(&v.key);
        state.update(cache, v, &node, -1);
    }
    if let Err(r) = filter(cache, &state, &node) {
        return Err(reasons(&r));
    }
    potential.sort_by(more_important_first);
    let (violating, ok) = split_by_budget(&potential, budgets);
    let mut victims = Vec::new();
    let mut violations = 0;
    let reprieve = |v: &Arc<PodInfo>, node: &mut NodeInfo, state: &mut CycleState| -> bool {
        node.add_pod(v.clone());
        state.update(cache, v, node, 1);
        if filter(cache, state, node).is_ok() {
            true
        } else {
            node.remove_pod(&v.key);
            state.update(cache, v, node, -1);
            false
        }
    };
    for v in &violating {
        if !reprieve(v, &mut node, &mut state) {
            victims.push(v.clone());
            violations += 1;
        }
    }
    for v in &ok {
        if !reprieve(v, &mut node, &mut state) {
            victims.push(v.clone());
        }
    }
    if victims.is_empty() {
        return Err(vec![format!(
            "expected at least one victim pod on node {:?}",
            node.name()
        )]);
    }
    Ok((victims, violations))
}

fn reasons(r: &Rejection) -> Vec<String> {
    r.reasons.iter().map(|s| s.to_string()).collect()
}

/// Upstream's pickOneNodeForPreemption tie-breaks, in order.
fn pick(mut cands: Vec<Candidate>) -> Option<Candidate> {
    let key = |c: &Candidate| {
        let highest = c.victims.first().map_or(i32::MIN, |v| v.priority);
        let sum: i64 = c
            .victims
            .iter()
            .map(|v| v.priority as i64 + i32::MAX as i64 + 1)
            .sum();
        let earliest_of_highest: Option<Timestamp> = c
            .victims
            .iter()
            .filter(|v| v.priority == highest)
            .filter_map(|v| v.start_time())
            .min();
        (
            c.pdb_violations,
            highest,
            sum,
            c.victims.len(),
            // Latest start time first: negate by ordering on Reverse.
            std::cmp::Reverse(earliest_of_highest),
        )
    };
    let mut best = 0;
    for i in 1..cands.len() {
        if key(&cands[i]) < key(&cands[best]) {
            best = i;
        }
    }
    (!cands.is_empty()).then(|| cands.swap_remove(best))
}

/// Runs preemption for a pod that no node fits. `rejections` are the filter results
/// per node name. `Err` is the `preemption: ...` text for the FitError message.
pub fn preempt(
    cache: &Cache,
    state: &CycleState,
    rejections: &HashMap<String, Rejection>,
    budgets: &[Budget],
    nominated: Option<&str>,
) -> Result<Candidate, String> {
    let pod = &state.pod;
    if let Err(msg) = eligible(cache, pod, nominated) {
        return Err(format!("preemption: {msg}"));
    }
    let all = cache.node_count();
    let mut reasons: Vec<String> = Vec::new();
    let mut cands = Vec::new();
    // Upstream stops after max(100, 10% of nodes) candidates.
    let enough = (all / 10).max(100);
    for node in cache.nodes() {
        let helpful = rejections.get(node.name()).is_some_and(|r| r.resolvable);
        if !helpful {
            reasons.push(NOT_HELPFUL.to_string());
            continue;
        }
        if cands.len() >= enough {
            continue;
        }
        match select_victims(cache, state, node, budgets) {
            Ok((victims, pdb_violations)) => cands.push(Candidate {
                node: node.name().to_string(),
                victims,
                pdb_violations,
            }),
            Err(r) => reasons.extend(r),
        }
    }
    pick(cands).ok_or_else(|| preemption_message(all, &reasons))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::{pod_labeled, resources, small_node};
    use crate::plugins::Volumes;
    use serde_json::json;

    fn prio(name: &str, p: i32, cpu: &str, labels: serde_json::Value) -> Arc<PodInfo> {
        let mut spec = resources(cpu, "100Mi");
        spec["priority"] = json!(p);
        pod_labeled(name, labels, spec)
    }

    fn run(
        cache: &Cache,
        pod: Arc<PodInfo>,
        budgets: &[Budget],
    ) -> Result<(String, Vec<String>), String> {
        let state = CycleState::prefilter(cache, &Volumes::default(), pod).unwrap();
        let mut rejections = HashMap::new();
        for n in cache.nodes() {
            if let Err(r) = filter(cache, &state, n) {
                rejections.insert(n.name().to_string(), r);
            }
        }
        preempt(cache, &state, &rejections, budgets, None).map(|c| {
            let mut v: Vec<String> = c.victims.iter().map(|v| v.key.name.clone()).collect();
            v.sort();
            (c.node, v)
        })
    }

    #[test]
    fn preemption_cases() {
        struct Case {
            name: &'static str,
            existing: Vec<(&'static str, Arc<PodInfo>)>,
            pod: Arc<PodInfo>,
            budgets: Vec<Budget>,
            want: Result<(&'static str, Vec<&'static str>), &'static str>,
        }
        let budget = |app: &str, allowed| Budget {
            namespace: "default".into(),
            selector: Selector::new(Some(
                &serde_json::from_value(json!({"matchLabels": {"app": app}})).unwrap(),
            ))
            .unwrap(),
            disruptions_allowed: allowed,
            disrupted: vec![],
        };
        let cases = [
            Case {
                name: "evicts the one low-priority pod that frees enough",
                existing: vec![("n1", prio("low", 0, "3", json!({}))), ("n2", prio("mid", 50, "3", json!({})))],
                pod: prio("hi", 100, "2", json!({})),
                budgets: vec![],
                want: Ok(("n1", vec!["low"])),
            },
            Case {
                name: "fewest victims: keeps the pods it does not need to evict",
                existing: vec![("n1", prio("a", 0, "1", json!({}))), ("n1", prio("b", 0, "1", json!({}))), ("n1", prio("c", 0, "1", json!({}))), ("n1", prio("d", 0, "1", json!({})))],
                pod: prio("hi", 100, "1", json!({})),
                budgets: vec![],
                want: Ok(("n1", vec!["d"])),
            },
            Case {
                name: "prefers the node whose victims have lower priority",
                existing: vec![("n1", prio("mid", 50, "4", json!({}))), ("n2", prio("low", 10, "4", json!({})))],
                pod: prio("hi", 100, "1", json!({})),
                budgets: vec![],
                want: Ok(("n2", vec!["low"])),
            },
            Case {
                name: "prefers victims whose budget allows disruption",
                existing: vec![("n1", prio("guarded", 0, "4", json!({"app": "g"}))), ("n2", prio("free", 0, "4", json!({"app": "f"})))],
                pod: prio("hi", 100, "1", json!({})),
                budgets: vec![budget("g", 0), budget("f", 1)],
                want: Ok(("n2", vec!["free"])),
            },
            Case {
                name: "equal priority is never a victim",
                existing: vec![("n1", prio("peer", 100, "4", json!({}))), ("n2", prio("peer2", 100, "4", json!({})))],
                pod: prio("hi", 100, "1", json!({})),
                budgets: vec![],
                want: Err("preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod."),
            },
            Case {
                name: "too big even for an empty node",
                existing: vec![("n1", prio("low", 0, "1", json!({}))), ("n2", prio("low2", 0, "1", json!({})))],
                pod: prio("hi", 100, "8", json!({})),
                budgets: vec![],
                want: Err("preemption: 0/2 nodes are available: 2 Insufficient cpu."),
            },
        ];
        for c in cases {
            let mut cache = Cache::default();
            cache.upsert_node(small_node("n1", json!({})));
            cache.upsert_node(small_node("n2", json!({})));
            for (node, p) in c.existing {
                cache.upsert_bound_pod(p, node);
            }
            let got = run(&cache, c.pod, &c.budgets);
            let want = c
                .want
                .map(|(n, v)| {
                    (
                        n.to_string(),
                        v.into_iter().map(String::from).collect::<Vec<_>>(),
                    )
                })
                .map_err(String::from);
            assert_eq!(got, want, "{}", c.name);
        }
    }

    #[test]
    fn preemption_policy_never() {
        let mut cache = Cache::default();
        cache.upsert_node(small_node("n1", json!({})));
        cache.upsert_bound_pod(prio("low", 0, "4", json!({})), "n1");
        let mut spec = resources("1", "1Mi");
        spec["priority"] = json!(100);
        spec["preemptionPolicy"] = json!("Never");
        let got = run(&cache, pod_labeled("hi", json!({}), spec), &[]);
        assert_eq!(
            got,
            Err("preemption: not eligible due to preemptionPolicy=Never.".to_string())
        );
    }

    #[test]
    fn no_second_preemption_while_victims_terminate() {
        let mut cache = Cache::default();
        cache.upsert_node(small_node("n1", json!({})));
        let low = prio("low", 0, "4", json!({}));
        let mut terminating = (*low.pod).clone();
        terminating.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now()),
        );
        cache.upsert_bound_pod(Arc::new(PodInfo::new(Arc::new(terminating))), "n1");
        let hi = prio("hi", 100, "1", json!({}));
        assert_eq!(
            eligible(&cache, &hi, Some("n1")),
            Err("not eligible due to a terminating pod on the nominated node.".to_string())
        );
        assert_eq!(eligible(&cache, &hi, None), Ok(()));
    }

    #[test]
    fn unresolvable_nodes_are_not_helpful() {
        let mut cache = Cache::default();
        cache.upsert_node(crate::plugins::testutil::node(
            "n1",
            json!({}),
            json!({"taints": [{"key": "k", "effect": "NoSchedule"}]}),
            json!({"cpu": "4", "pods": "10"}),
        ));
        let got = run(&cache, prio("hi", 100, "1", json!({})), &[]);
        assert_eq!(
            got,
            Err(
                "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
                    .to_string()
            )
        );
    }
}
