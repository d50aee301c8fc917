//! The scheduler's decision core, without sockets or clocks: it takes cluster changes
//! (pods, nodes, volumes, budgets, bind results) and hands back one decision per
//! scheduling attempt (bind this pod to that node, or: unschedulable, with the message,
//! the nomination and the victims to evict).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use skiff_runtime::ObjectKey;

use crate::cache::{Cache, NodeInfo, PodInfo};
use crate::message::Diagnosis;
use crate::plugins::{self, filter, CycleState, Plugin, Rejection, Volumes};
use crate::preemption::{self, Budget};

/// Upstream's floor on the nodes to find feasible before scoring.
const MIN_FEASIBLE_NODES: usize = 100;
/// Upstream's floor on the adaptive percentage of nodes to score.
const MIN_FEASIBLE_PERCENTAGE: usize = 5;

pub const NO_NODES: &str = "no nodes available to schedule pods";
/// Upstream's status for nodes a PreFilter result left out.
pub const FILTERED_BY_PREFILTER: &str = "node is filtered out by the prefilter result";

/// How the core is configured.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    pub scheduler_name: String,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub max_unschedulable: Duration,
    /// `None` (or 0): upstream's adaptive percentage.
    pub percentage_of_nodes_to_score: Option<u32>,
    pub seed: u64,
}

/// The result of one scheduling attempt.
#[derive(Debug)]
pub enum Outcome {
    /// Assumed on `node`; bind it.
    Bind { pod: Arc<PodInfo>, node: String },
    /// No node fits.
    Unschedulable(Failure),
}

#[derive(Debug)]
pub struct Failure {
    pub pod: Arc<Pod>,
    /// Upstream's FitError text, for the PodScheduled condition and the event.
    pub message: String,
    /// What `status.nominatedNodeName` should be after this attempt.
    pub nominated_node: Option<String>,
    /// Pods to evict so the pod fits on `nominated_node` (preemption).
    pub victims: Vec<Arc<PodInfo>>,
    /// Lower-priority pods whose nomination to that node ends (clear their
    /// `status.nominatedNodeName`).
    pub cleared: Vec<Arc<Pod>>,
}

pub struct Core {
    config: CoreConfig,
    pub cache: Cache,
    pub queue: crate::queue::SchedulingQueue,
    volumes: Volumes,
    budgets: HashMap<ObjectKey, Budget>,
    /// Pods nominated to a node by preemption (ours or a predecessor's), by node.
    nominated: HashMap<String, Vec<Arc<PodInfo>>>,
    nominated_node: HashMap<ObjectKey, String>,
    /// Service selectors by namespace, and the selectors of ReplicaSets,
    /// ReplicationControllers and StatefulSets by (kind, namespace, name), for the
    /// default spreading selector.
    services: HashMap<String, HashMap<String, BTreeMap<String, String>>>,
    controllers: HashMap<(&'static str, String, String), LabelSelector>,
    next_start: usize,
    rng: StdRng,
}

fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

/// Whether a pending pod's update may change where it fits (upstream ignores updates
/// of status and bookkeeping metadata only).
fn scheduling_relevant_change(old: &Pod, new: &Pod) -> bool {
    old.spec != new.spec
        || old.metadata.labels != new.metadata.labels
        || old.metadata.annotations != new.metadata.annotations
        || old.metadata.deletion_timestamp != new.metadata.deletion_timestamp
}

fn bits(plugins: &[Plugin]) -> u16 {
    plugins.iter().fold(0, |acc, p| acc | p.bit())
}

impl Core {
    pub fn new(config: CoreConfig) -> Self {
        Self {
            queue: crate::queue::SchedulingQueue::new(
                config.initial_backoff,
                config.max_backoff,
                config.max_unschedulable,
            ),
            rng: StdRng::seed_from_u64(config.seed),
            config,
            cache: Cache::default(),
            volumes: Volumes::default(),
            budgets: HashMap::new(),
            nominated: HashMap::new(),
            nominated_node: HashMap::new(),
            services: HashMap::new(),
            controllers: HashMap::new(),
            next_start: 0,
        }
    }

    fn is_ours(&self, pod: &Pod) -> bool {
        pod.spec
            .as_ref()
            .and_then(|s| s.scheduler_name.as_deref())
            .unwrap_or("default-scheduler")
            == self.config.scheduler_name
    }

    fn nominate(&mut self, pi: Arc<PodInfo>, node: &str) {
        self.unnominate(&pi.key);
        self.nominated_node.insert(pi.key.clone(), node.to_string());
        self.nominated.entry(node.to_string()).or_default().push(pi);
    }

    fn unnominate(&mut self, key: &ObjectKey) {
        if let Some(node) = self.nominated_node.remove(key) {
            if let Some(list) = self.nominated.get_mut(&node) {
                list.retain(|p| &p.key != key);
                if list.is_empty() {
                    self.nominated.remove(&node);
                }
            }
        }
    }

    /// A pod was added, changed or (`new` = None) deleted.
    pub fn pod_changed(&mut self, old: Option<&Arc<Pod>>, new: Option<&Arc<Pod>>, now: Instant) {
        let Some(pod) = new.or(old) else { return };
        let key = ObjectKey::of(pod.as_ref());
        let Some(new) = new else {
            let was_placed = self.cache.is_placed(&key);
            self.cache.remove_pod(&key);
            self.queue.delete(&key);
            self.unnominate(&key);
            if was_placed {
                self.assigned_pod_gone(now);
            }
            return;
        };
        if let Some(node) = node_name(new) {
            self.queue.delete(&key);
            self.unnominate(&key);
            if is_terminal(new) {
                if self.cache.is_placed(&key) {
                    self.cache.remove_pod(&key);
                    self.assigned_pod_gone(now);
                }
                return;
            }
            let unchanged = old.is_some_and(|o| {
                node_name(o) == Some(node)
                    && o.metadata.resource_version.is_some()
                    && o.metadata.resource_version == new.metadata.resource_version
            });
            if unchanged && self.cache.is_placed(&key) && !self.cache.is_assumed(&key) {
                return;
            }
            let labels_changed = old.is_none_or(|o| o.metadata.labels != new.metadata.labels);
            self.cache
                .upsert_bound_pod(Arc::new(PodInfo::new(new.clone())), node);
            if labels_changed {
                self.queue.move_for(
                    bits(&[Plugin::InterPodAffinity, Plugin::PodTopologySpread]),
                    now,
                );
            }
            return;
        }
        // Not bound.
        if self.cache.is_assumed(&key) {
            // Our bind is in flight; the informer has not seen it yet.
            return;
        }
        if self.cache.is_placed(&key) {
            // A bound pod cannot become unbound; treat it as gone.
            self.cache.remove_pod(&key);
        }
        // Pods with scheduling gates wait outside the queue until the gates are removed.
        let gated = new
            .spec
            .as_ref()
            .and_then(|s| s.scheduling_gates.as_ref())
            .is_some_and(|g| !g.is_empty());
        if new.metadata.deletion_timestamp.is_some()
            || is_terminal(new)
            || !self.is_ours(new)
            || gated
        {
            self.queue.delete(&key);
            self.unnominate(&key);
            return;
        }
        let nominated = new
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.as_deref())
            .filter(|n| !n.is_empty());
        match nominated {
            Some(n) if self.nominated_node.get(&key).map(String::as_str) != Some(n) => {
                self.nominate(Arc::new(PodInfo::new(new.clone())), n);
            }
            _ => {}
        }
        let relevant = old.is_none_or(|o| scheduling_relevant_change(o, new));
        if relevant || !self.queue.contains(&key) {
            self.queue.upsert(key, new.clone(), now);
        } else {
            self.queue.refresh(&key, new.clone());
        }
    }

    fn assigned_pod_gone(&mut self, now: Instant) {
        self.queue.move_for(
            bits(&[
                Plugin::NodeResourcesFit,
                Plugin::NodePorts,
                Plugin::InterPodAffinity,
                Plugin::PodTopologySpread,
            ]),
            now,
        );
    }

    pub fn node_changed(&mut self, old: Option<&Arc<Node>>, new: Option<&Arc<Node>>, now: Instant) {
        match (old, new) {
            (_, None) => {
                if let Some(name) = old.and_then(|o| o.metadata.name.as_deref()) {
                    self.cache.remove_node(name);
                }
            }
            (None, Some(n)) => {
                self.cache.upsert_node(n.clone());
                self.queue.move_for(u16::MAX, now);
            }
            (Some(o), Some(n)) => {
                self.cache.upsert_node(n.clone());
                let mut helps = Vec::new();
                let spec = |x: &Node| x.spec.clone().unwrap_or_default();
                let (os, ns) = (spec(o), spec(n));
                if os.unschedulable != ns.unschedulable {
                    helps.push(Plugin::NodeUnschedulable);
                }
                if os.taints != ns.taints {
                    helps.push(Plugin::TaintToleration);
                }
                if o.metadata.labels != n.metadata.labels {
                    helps.extend([
                        Plugin::NodeAffinity,
                        Plugin::PodTopologySpread,
                        Plugin::InterPodAffinity,
                        Plugin::VolumeBinding,
                    ]);
                }
                let alloc = |x: &Node| x.status.as_ref().and_then(|s| s.allocatable.clone());
                if alloc(o) != alloc(n) {
                    helps.extend([Plugin::NodeResourcesFit]);
                }
                if !helps.is_empty() {
                    self.queue.move_for(bits(&helps), now);
                }
            }
        }
    }

    pub fn namespace_changed(
        &mut self,
        old: Option<&Arc<Namespace>>,
        new: Option<&Arc<Namespace>>,
        now: Instant,
    ) {
        match new {
            Some(ns) => {
                self.cache.set_namespace(ns);
                self.queue.move_for(Plugin::InterPodAffinity.bit(), now);
            }
            None => {
                if let Some(name) = old.and_then(|o| o.metadata.name.as_deref()) {
                    self.cache.remove_namespace(name);
                }
            }
        }
    }

    pub fn claim_changed(
        &mut self,
        old: Option<&Arc<PersistentVolumeClaim>>,
        new: Option<&Arc<PersistentVolumeClaim>>,
        now: Instant,
    ) {
        let Some(obj) = new.or(old) else { return };
        let key = (
            obj.metadata.namespace.clone().unwrap_or_default(),
            obj.metadata.name.clone().unwrap_or_default(),
        );
        match new {
            Some(n) => {
                self.volumes.claims.insert(key, n.clone());
                self.queue.move_for(Plugin::VolumeBinding.bit(), now);
            }
            None => {
                self.volumes.claims.remove(&key);
            }
        }
    }

    pub fn volume_changed(
        &mut self,
        old: Option<&Arc<PersistentVolume>>,
        new: Option<&Arc<PersistentVolume>>,
        now: Instant,
    ) {
        let Some(obj) = new.or(old) else { return };
        let name = obj.metadata.name.clone().unwrap_or_default();
        match new {
            Some(n) => {
                self.volumes.volumes.insert(name, n.clone());
                self.queue.move_for(Plugin::VolumeBinding.bit(), now);
            }
            None => {
                self.volumes.volumes.remove(&name);
            }
        }
    }

    pub fn budget_changed(
        &mut self,
        old: Option<&Arc<PodDisruptionBudget>>,
        new: Option<&Arc<PodDisruptionBudget>>,
    ) {
        let Some(obj) = new.or(old) else { return };
        let key = ObjectKey::of(obj.as_ref());
        match new.and_then(|n| Budget::from_pdb(n)) {
            Some(b) => {
                self.budgets.insert(key, b);
            }
            None => {
                self.budgets.remove(&key);
            }
        }
    }

    /// A Service's selector (`None`: the Service is gone or selects nothing).
    pub fn service_changed(
        &mut self,
        namespace: &str,
        name: &str,
        selector: Option<BTreeMap<String, String>>,
    ) {
        let ns = self.services.entry(namespace.to_string()).or_default();
        match selector.filter(|s| !s.is_empty()) {
            Some(sel) => {
                ns.insert(name.to_string(), sel);
            }
            None => {
                ns.remove(name);
            }
        }
    }

    /// A ReplicaSet's, ReplicationController's or StatefulSet's selector (`kind` as in
    /// an ownerReference; `None`: gone).
    pub fn controller_changed(
        &mut self,
        kind: &'static str,
        namespace: &str,
        name: &str,
        selector: Option<LabelSelector>,
    ) {
        let key = (kind, namespace.to_string(), name.to_string());
        match selector {
            Some(sel) => {
                self.controllers.insert(key, sel);
            }
            None => {
                self.controllers.remove(&key);
            }
        }
    }

    /// Upstream's DefaultSelector: the labels of the Services selecting the pod plus
    /// the selector of its controller (ReplicationController, ReplicaSet or
    /// StatefulSet); `None` when that is empty.
    pub fn default_spread_selector(
        &self,
        pod: &PodInfo,
    ) -> Option<skiff_runtime::selector::Selector> {
        let labels = pod.labels();
        let mut set: BTreeMap<String, String> = BTreeMap::new();
        for sel in self
            .services
            .get(pod.namespace())
            .into_iter()
            .flat_map(|m| m.values())
        {
            if sel
                .iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
            {
                set.extend(sel.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        let mut exprs: Vec<LabelSelectorRequirement> = Vec::new();
        let owner = pod
            .pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true));
        if let Some(o) = owner {
            let kind: Option<&'static str> = match (o.api_version.as_str(), o.kind.as_str()) {
                ("v1", "ReplicationController") => Some("ReplicationController"),
                ("apps/v1", "ReplicaSet") => Some("ReplicaSet"),
                ("apps/v1", "StatefulSet") => Some("StatefulSet"),
                _ => None,
            };
            let found = kind.and_then(|k| {
                self.controllers
                    .get(&(k, pod.namespace().to_string(), o.name.clone()))
                    .map(|s| (k, s))
            });
            match found {
                Some(("ReplicationController", sel)) => {
                    set.extend(
                        sel.match_labels
                            .iter()
                            .flatten()
                            .map(|(k, v)| (k.clone(), v.clone())),
                    );
                }
                Some((_, sel)) => {
                    exprs.extend(sel.match_labels.iter().flatten().map(|(k, v)| {
                        LabelSelectorRequirement {
                            key: k.clone(),
                            operator: "In".into(),
                            values: Some(vec![v.clone()]),
                        }
                    }));
                    exprs.extend(sel.match_expressions.iter().flatten().cloned());
                }
                None => {}
            }
        }
        if set.is_empty() && exprs.is_empty() {
            return None;
        }
        let typed = LabelSelector {
            match_labels: (!set.is_empty()).then_some(set),
            match_expressions: (!exprs.is_empty()).then_some(exprs),
        };
        skiff_runtime::selector::Selector::new(Some(&typed)).ok()
    }

    /// The bind of `key` failed: forget the assumption and retry after backoff (unless
    /// the pod is gone or was bound meanwhile).
    pub fn bind_failed(
        &mut self,
        pi: &Arc<PodInfo>,
        attempts: u32,
        still_pending: bool,
        now: Instant,
    ) {
        if !self.cache.is_assumed(&pi.key) {
            return;
        }
        self.cache.forget(&pi.key);
        self.assigned_pod_gone(now);
        if still_pending {
            self.queue
                .readd_after_error(pi.key.clone(), pi.pod.clone(), attempts, now);
        }
    }

    /// Upstream's numFeasibleNodesToFind.
    pub fn feasible_to_find(&self, all: usize) -> usize {
        if all < MIN_FEASIBLE_NODES {
            return all;
        }
        let mut pct = self.config.percentage_of_nodes_to_score.unwrap_or(0) as usize;
        if pct == 0 {
            pct = 50usize
                .saturating_sub(all / 125)
                .max(MIN_FEASIBLE_PERCENTAGE);
        }
        let n = all * pct.min(100) / 100;
        n.max(MIN_FEASIBLE_NODES)
    }

    /// Filters one node, counting pods nominated there with at least the pod's
    /// priority as if they were already placed (upstream runs the filters with and,
    /// if that passes, without them).
    fn filter_node(&self, state: &CycleState, node: &NodeInfo) -> Result<(), Rejection> {
        let nominated: Vec<&Arc<PodInfo>> = self
            .nominated
            .get(node.name())
            .into_iter()
            .flatten()
            .filter(|p| p.key != state.pod.key && p.priority >= state.pod.priority)
            .collect();
        if nominated.is_empty() {
            return filter(&self.cache, state, node);
        }
        let mut with = node.clone();
        let mut st = state.clone();
        for p in nominated {
            with.add_pod(p.clone());
            st.update(&self.cache, p, &with, 1);
        }
        filter(&self.cache, &st, &with)?;
        filter(&self.cache, state, node)
    }

    /// Takes the next pod from the queue and decides where it goes.
    pub fn schedule_one(&mut self, now: Instant) -> Option<(Outcome, u32)> {
        let popped = self.queue.pop(now)?;
        let pi = Arc::new(PodInfo::new(popped.pod.clone()));
        match self.find_node(&pi) {
            Ok(node) => {
                self.cache.assume(pi.clone(), &node);
                self.queue.done(&popped.key);
                self.unnominate(&popped.key);
                Some((Outcome::Bind { pod: pi, node }, popped.attempts))
            }
            Err((failure, rejected_by)) => {
                match failure.nominated_node.as_deref() {
                    Some(node) => self.nominate(pi.clone(), node),
                    None => self.unnominate(&popped.key),
                }
                self.queue.unschedulable(&popped.key, rejected_by, now);
                Some((Outcome::Unschedulable(failure), popped.attempts))
            }
        }
    }

    fn fail(
        &self,
        pi: &Arc<PodInfo>,
        message: String,
        nominated: Option<String>,
        victims: Vec<Arc<PodInfo>>,
    ) -> Failure {
        Failure {
            pod: pi.pod.clone(),
            message,
            nominated_node: nominated,
            victims,
            cleared: Vec::new(),
        }
    }

    /// Upstream's preemption takes the node away from pods of lower priority nominated
    /// to it: their nominations end (they may preempt elsewhere).
    fn clear_lower_nominations(&mut self, node: &str, priority: i32) -> Vec<Arc<Pod>> {
        let lower: Vec<Arc<PodInfo>> = self
            .nominated
            .get(node)
            .into_iter()
            .flatten()
            .filter(|p| p.priority < priority)
            .cloned()
            .collect();
        for p in &lower {
            self.unnominate(&p.key);
        }
        lower.into_iter().map(|p| p.pod.clone()).collect()
    }

    fn find_node(&mut self, pi: &Arc<PodInfo>) -> Result<String, (Failure, u16)> {
        let all = self.cache.node_count();
        if all == 0 {
            return Err((self.fail(pi, NO_NODES.to_string(), None, Vec::new()), 0));
        }
        let budgets: Vec<Budget> = self.budgets.values().cloned().collect();
        let mut state = match CycleState::prefilter(&self.cache, &self.volumes, pi.clone()) {
            Ok(s) => s,
            Err(r) => {
                let nominated = self.nominated_node.get(&pi.key).map(String::as_str);
                let post = preemption::eligible(&self.cache, pi, nominated)
                    .map(|_| {
                        crate::message::preemption_message(
                            all,
                            &vec![preemption::NOT_HELPFUL.to_string(); all],
                        )
                    })
                    .unwrap_or_else(|e| format!("preemption: {e}"));
                let diag = Diagnosis {
                    absent: None,
                    num_all_nodes: all,
                    prefilter: Some(r.reasons.join(", ")),
                    nodes: Vec::new(),
                    postfilter: Some(post),
                };
                return Err((
                    self.fail(pi, diag.message(), None, Vec::new()),
                    r.plugin.bit(),
                ));
            }
        };
        // A pod nominated by an earlier preemption tries that node first.
        let nominated = self.nominated_node.get(&pi.key).cloned().or_else(|| {
            pi.pod
                .status
                .as_ref()
                .and_then(|s| s.nominated_node_name.clone())
                .filter(|n| !n.is_empty())
        });
        if let Some(node) = nominated.as_deref().and_then(|n| self.cache.node(n)) {
            if self.filter_node(&state, node).is_ok() {
                return Ok(node.name().to_string());
            }
        }
        // NodeAffinity's PreFilter may narrow the nodes to those a required
        // `metadata.name` term names (DaemonSet pods): only those are filtered.
        let restricted: Option<Vec<String>> = state.node_names.as_ref().map(|names| {
            names
                .iter()
                .filter(|n| self.cache.node(n).is_some())
                .cloned()
                .collect()
        });
        let (count, start) = match &restricted {
            Some(list) => (list.len(), 0),
            None => {
                let slots = self.cache.slot_count().max(1);
                (self.cache.slot_count(), self.next_start % slots)
            }
        };
        let want = self.feasible_to_find(restricted.as_ref().map_or(all, Vec::len));
        let mut feasible: Vec<&NodeInfo> = Vec::with_capacity(want.min(count));
        let mut rejections: HashMap<String, Rejection> = HashMap::new();
        let mut visited = 0;
        for i in 0..count {
            if feasible.len() >= want {
                break;
            }
            visited += 1;
            let node = match &restricted {
                Some(list) => self.cache.node(&list[i]),
                None => self.cache.slot((start + i) % count),
            };
            let Some(node) = node else {
                continue;
            };
            match self.filter_node(&state, node) {
                Ok(()) => feasible.push(node),
                Err(r) => {
                    rejections.insert(node.name().to_string(), r);
                }
            }
        }
        if restricted.is_none() {
            self.next_start = (start + visited) % count.max(1);
        }
        let evaluated = restricted.as_ref().map_or(all, Vec::len);
        if feasible.len() == 1 {
            return Ok(feasible[0].name().to_string());
        }
        if !feasible.is_empty() {
            state.default_spread = self.default_spread_selector(pi);
            let scores = plugins::score(&self.cache, &state, &feasible);
            let best = select_host(&mut self.rng, &scores);
            return Ok(feasible[best].name().to_string());
        }
        let rejected_by = rejections
            .values()
            .fold(0u16, |acc, r| acc | r.plugin.bit());
        let mut diag = Diagnosis {
            absent: (evaluated < all).then(|| (all - evaluated, FILTERED_BY_PREFILTER.to_string())),
            num_all_nodes: all,
            prefilter: None,
            nodes: rejections.values().cloned().collect(),
            postfilter: None,
        };
        match preemption::preempt(
            &self.cache,
            &state,
            &rejections,
            &budgets,
            nominated.as_deref(),
        ) {
            Ok(c) => {
                let msg = diag.message();
                let mut failure = self.fail(pi, msg, Some(c.node.clone()), c.victims);
                failure.cleared = self.clear_lower_nominations(&c.node, pi.priority);
                Err((failure, rejected_by))
            }
            Err(post) => {
                diag.postfilter = Some(post);
                Err((self.fail(pi, diag.message(), None, Vec::new()), rejected_by))
            }
        }
    }
}

/// The index of the highest score; ties are broken at random (upstream's reservoir
/// sampling).
fn select_host(rng: &mut StdRng, scores: &[i64]) -> usize {
    let mut best = 0;
    let mut ties = 1u32;
    for i in 1..scores.len() {
        if scores[i] > scores[best] {
            best = i;
            ties = 1;
        } else if scores[i] == scores[best] {
            ties += 1;
            if rng.random_range(0..ties) == 0 {
                best = i;
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::{node, small_node};
    use serde_json::json;

    fn core() -> Core {
        Core::new(CoreConfig {
            scheduler_name: "default-scheduler".into(),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            max_unschedulable: Duration::from_secs(300),
            percentage_of_nodes_to_score: None,
            seed: 7,
        })
    }

    fn pending(name: &str, spec: serde_json::Value) -> Arc<Pod> {
        let mut spec = spec;
        if spec.get("containers").is_none() {
            spec["containers"] = json!([{"name": "c", "image": "busybox"}]);
        }
        spec["schedulerName"] = json!("default-scheduler");
        Arc::new(serde_json::from_value(json!({"metadata": {"name": name, "namespace": "default", "resourceVersion": "1"}, "spec": spec})).unwrap())
    }

    fn cpu(c: &str) -> serde_json::Value {
        json!({"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": c}}}]})
    }

    fn bind_node(o: &Outcome) -> &str {
        match o {
            Outcome::Bind { node, .. } => node,
            Outcome::Unschedulable(f) => panic!("unschedulable: {}", f.message),
        }
    }

    #[test]
    fn feasible_nodes_to_find() {
        let c = core();
        let cases = [
            (50, 50),
            (100, 100),
            (1000, 420),
            (5000, 500),
            (6000, 300),
            (200, 100), // 49% is 98, below the floor of 100
        ];
        for (all, want) in cases {
            assert_eq!(c.feasible_to_find(all), want, "{all} nodes");
        }
    }

    #[test]
    fn assumed_pods_count_for_the_next_decision() {
        let mut c = core();
        let now = Instant::now();
        c.node_changed(None, Some(&small_node("n1", json!({}))), now);
        c.node_changed(None, Some(&small_node("n2", json!({}))), now);
        c.pod_changed(None, Some(&pending("a", cpu("3"))), now);
        c.pod_changed(None, Some(&pending("b", cpu("3"))), now);
        let (a, _) = c.schedule_one(now).unwrap();
        let (b, _) = c.schedule_one(now).unwrap();
        assert_ne!(
            bind_node(&a),
            bind_node(&b),
            "the second pod saw the first one's assumption"
        );
        c.pod_changed(None, Some(&pending("c", cpu("3"))), now);
        match c.schedule_one(now).unwrap().0 {
            Outcome::Unschedulable(f) => assert_eq!(
                f.message,
                "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod."
            ),
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn unschedulable_pod_retries_when_a_node_is_added() {
        let mut c = core();
        let now = Instant::now();
        c.node_changed(None, Some(&node("tainted", json!({}), json!({"taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]}), json!({"cpu": "4", "pods": "10"}))), now);
        c.node_changed(None, Some(&small_node("small", json!({}))), now);
        c.pod_changed(None, Some(&pending("big", cpu("6"))), now);
        match c.schedule_one(now).unwrap().0 {
            Outcome::Unschedulable(f) => assert_eq!(
                f.message,
                "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }. preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, 1 Preemption is not helpful for scheduling."
            ),
            o => panic!("{o:?}"),
        }
        assert!(c.schedule_one(now).is_none());
        let later = now + Duration::from_secs(2);
        c.node_changed(
            None,
            Some(&node(
                "large",
                json!({}),
                json!({}),
                json!({"cpu": "8", "pods": "10"}),
            )),
            later,
        );
        let (o, attempts) = c.schedule_one(later).unwrap();
        assert_eq!(bind_node(&o), "large");
        assert_eq!(attempts, 2);
    }

    #[test]
    fn no_nodes() {
        let mut c = core();
        let now = Instant::now();
        c.pod_changed(None, Some(&pending("p", json!({}))), now);
        match c.schedule_one(now).unwrap().0 {
            Outcome::Unschedulable(f) => assert_eq!(f.message, NO_NODES),
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn bind_failure_forgets_the_assumption_and_backs_off() {
        let mut c = core();
        let now = Instant::now();
        c.node_changed(None, Some(&small_node("n1", json!({}))), now);
        c.pod_changed(None, Some(&pending("a", cpu("3"))), now);
        let (o, attempts) = c.schedule_one(now).unwrap();
        let Outcome::Bind { pod, .. } = o else {
            panic!()
        };
        assert_eq!(c.cache.node("n1").unwrap().requested.milli_cpu, 3000);
        c.bind_failed(&pod, attempts, true, now);
        assert_eq!(c.cache.node("n1").unwrap().requested.milli_cpu, 0);
        assert!(c.schedule_one(now + Duration::from_millis(500)).is_none());
        assert!(c.schedule_one(now + Duration::from_secs(1)).is_some());
    }

    #[test]
    fn confirmation_replaces_the_assumption() {
        let mut c = core();
        let now = Instant::now();
        c.node_changed(None, Some(&small_node("n1", json!({}))), now);
        let p = pending("a", cpu("3"));
        c.pod_changed(None, Some(&p), now);
        c.schedule_one(now).unwrap();
        let mut bound = (*p).clone();
        bound.spec.as_mut().unwrap().node_name = Some("n1".into());
        bound.metadata.resource_version = Some("2".into());
        c.pod_changed(Some(&p), Some(&Arc::new(bound)), now);
        let key = ObjectKey::new(Some("default"), "a");
        assert!(c.cache.is_placed(&key) && !c.cache.is_assumed(&key));
        assert_eq!(c.cache.node("n1").unwrap().requested.milli_cpu, 3000);
    }

    #[test]
    fn our_own_status_write_does_not_requeue_the_pod() {
        let mut c = core();
        let now = Instant::now();
        c.node_changed(None, Some(&small_node("n1", json!({}))), now);
        let p = pending("big", cpu("8"));
        c.pod_changed(None, Some(&p), now);
        assert!(matches!(
            c.schedule_one(now).unwrap().0,
            Outcome::Unschedulable(_)
        ));
        let mut with_status = (*p).clone();
        with_status.status = Some(serde_json::from_value(json!({"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]})).unwrap());
        with_status.metadata.resource_version = Some("2".into());
        let with_status = Arc::new(with_status);
        c.pod_changed(Some(&p), Some(&with_status), now);
        let later = now + Duration::from_secs(20);
        assert!(c.schedule_one(later).is_none());
        // A label change may matter: it is tried again.
        let mut relabeled = (*with_status).clone();
        relabeled.metadata.labels = Some([("a".to_string(), "b".to_string())].into());
        c.pod_changed(Some(&with_status), Some(&Arc::new(relabeled)), later);
        assert!(c.schedule_one(later).is_some());
    }

    #[test]
    fn default_spread_selector_from_services_and_the_controller() {
        let mut c = core();
        let pod = |owner: serde_json::Value| {
            let p: Pod = serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "default",
                "labels": {"app": "web", "tier": "fe"}, "ownerReferences": owner}, "spec": {"containers": []}})).unwrap();
            PodInfo::new(Arc::new(p))
        };
        let rs_owner = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": "u", "controller": true}]);
        assert!(c.default_spread_selector(&pod(json!([]))).is_none());
        c.service_changed(
            "default",
            "web",
            Some([("app".to_string(), "web".to_string())].into()),
        );
        c.service_changed(
            "default",
            "other",
            Some([("app".to_string(), "db".to_string())].into()),
        );
        c.controller_changed(
            "ReplicaSet",
            "default",
            "web-1",
            Some(serde_json::from_value(json!({"matchLabels": {"tier": "fe"}})).unwrap()),
        );
        let sel = c.default_spread_selector(&pod(rs_owner)).unwrap();
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(sel.matches(Some(&labels(&[("app", "web"), ("tier", "fe")]))));
        assert!(
            !sel.matches(Some(&labels(&[("app", "web")]))),
            "the ReplicaSet's selector applies"
        );
        let only_service = c.default_spread_selector(&pod(json!([]))).unwrap();
        assert!(only_service.matches(Some(&labels(&[("app", "web")]))));
    }

    #[test]
    fn a_higher_preemptor_takes_the_node_from_a_lower_nominated_pod() {
        let mut c = core();
        let now = Instant::now();
        c.node_changed(None, Some(&small_node("n1", json!({}))), now);
        let mut low = (*pending("low", cpu("3"))).clone();
        low.spec.as_mut().unwrap().node_name = Some("n1".into());
        c.pod_changed(None, Some(&Arc::new(low)), now);
        let with_priority = |name: &str, p: i32| {
            let mut spec = cpu("2");
            spec["priority"] = json!(p);
            pending(name, spec)
        };
        c.pod_changed(None, Some(&with_priority("mid", 50)), now);
        let Outcome::Unschedulable(f) = c.schedule_one(now).unwrap().0 else {
            panic!()
        };
        assert_eq!(f.nominated_node.as_deref(), Some("n1"));
        c.pod_changed(None, Some(&with_priority("high", 100)), now);
        let Outcome::Unschedulable(f) = c.schedule_one(now).unwrap().0 else {
            panic!()
        };
        assert_eq!(f.nominated_node.as_deref(), Some("n1"));
        let cleared: Vec<_> = f
            .cleared
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        assert_eq!(cleared, ["mid"]);
    }

    #[test]
    fn absurd_quantities_do_not_panic() {
        let mut c = core();
        let now = Instant::now();
        c.node_changed(
            None,
            Some(&node(
                "huge",
                json!({}),
                json!({}),
                json!({"cpu": "1e30", "memory": "-5", "pods": "110"}),
            )),
            now,
        );
        c.node_changed(None, Some(&small_node("n1", json!({}))), now);
        for i in 0..3 {
            c.pod_changed(None, Some(&pending(&format!("p{i}"), cpu("9e29"))), now);
        }
        while c.schedule_one(now).is_some() {}
    }

    #[test]
    fn a_pod_pinned_by_name_only_looks_at_that_node() {
        let mut c = core();
        let now = Instant::now();
        for n in ["a", "b", "c"] {
            c.node_changed(None, Some(&small_node(n, json!({}))), now);
        }
        let pinned = |name: &str, node: &str, cpu: &str| {
            let mut spec = json!({"containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": cpu}}}]});
            spec["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]}}});
            pending(name, spec)
        };
        c.pod_changed(None, Some(&pinned("ds-b", "b", "1")), now);
        assert_eq!(bind_node(&c.schedule_one(now).unwrap().0), "b");
        c.pod_changed(None, Some(&pinned("too-big", "b", "8")), now);
        match c.schedule_one(now).unwrap().0 {
            Outcome::Unschedulable(f) => assert_eq!(
                f.message,
                "0/3 nodes are available: 1 Insufficient cpu, 2 node is filtered out by the prefilter result. preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling."
            ),
            o => panic!("{o:?}"),
        }
        let conflicting = {
            let mut spec = json!({"containers": [{"name": "c", "image": "i"}]});
            spec["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a"]}, {"key": "metadata.name", "operator": "In", "values": ["b"]}]}]}}});
            pending("conflict", spec)
        };
        c.pod_changed(None, Some(&conflicting), now);
        match c.schedule_one(now).unwrap().0 {
            Outcome::Unschedulable(f) => assert_eq!(
                f.message,
                "0/3 nodes are available: pod affinity terms conflict. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
            ),
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn gated_pods_wait_until_their_gates_are_removed() {
        let mut c = core();
        let now = Instant::now();
        c.node_changed(None, Some(&small_node("n1", json!({}))), now);
        let gated = pending(
            "g",
            json!({"schedulingGates": [{"name": "example.com/wait"}]}),
        );
        c.pod_changed(None, Some(&gated), now);
        assert!(c.schedule_one(now).is_none());
        let mut open = (*gated).clone();
        open.spec.as_mut().unwrap().scheduling_gates = None;
        c.pod_changed(Some(&gated), Some(&Arc::new(open)), now);
        assert_eq!(bind_node(&c.schedule_one(now).unwrap().0), "n1");
    }

    #[test]
    fn other_schedulers_pods_are_ignored() {
        let mut c = core();
        let now = Instant::now();
        c.node_changed(None, Some(&small_node("n1", json!({}))), now);
        c.pod_changed(
            None,
            Some(&pending("p", json!({"schedulerName": "other"}))),
            now,
        );
        // pending() overrides schedulerName; build by hand.
        let p: Pod = serde_json::from_value(json!({"metadata": {"name": "q", "namespace": "default"}, "spec": {"schedulerName": "other", "containers": []}})).unwrap();
        c.queue.delete(&ObjectKey::new(Some("default"), "p"));
        c.pod_changed(None, Some(&Arc::new(p)), now);
        assert!(c.schedule_one(now).is_none());
    }

    #[test]
    fn preemption_nominates_and_reserves_the_node() {
        let mut c = core();
        let now = Instant::now();
        c.node_changed(None, Some(&small_node("n1", json!({}))), now);
        let mut low = (*pending("low", cpu("3"))).clone();
        low.spec.as_mut().unwrap().node_name = Some("n1".into());
        c.pod_changed(None, Some(&Arc::new(low)), now);
        let mut spec = cpu("2");
        spec["priority"] = json!(1000);
        c.pod_changed(None, Some(&pending("high", spec)), now);
        let Outcome::Unschedulable(f) = c.schedule_one(now).unwrap().0 else {
            panic!()
        };
        assert_eq!(f.nominated_node.as_deref(), Some("n1"));
        assert_eq!(f.victims.len(), 1);
        assert_eq!(f.message, "0/1 nodes are available: 1 Insufficient cpu.");
        // The victim goes; a lower-priority pod must not take the room meanwhile.
        c.pod_changed(Some(&f.victims[0].pod), None, now);
        c.pod_changed(None, Some(&pending("sneaky", cpu("3"))), now);
        let later = now + Duration::from_secs(2);
        let mut outcomes = Vec::new();
        while let Some((o, _)) = c.schedule_one(later) {
            outcomes.push(o);
        }
        let bound: Vec<String> = outcomes
            .iter()
            .filter_map(|o| match o {
                Outcome::Bind { pod, node } => Some(format!("{}@{node}", pod.key.name)),
                _ => None,
            })
            .collect();
        assert_eq!(bound, ["high@n1"]);
    }
}
