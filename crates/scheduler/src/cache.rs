//! The scheduler's view of the cluster, kept up to date incrementally: one [`NodeInfo`]
//! per node with what is bound or assumed on it (requests, host ports, pods with
//! affinity), plus the images nodes hold. Assumed pods (decided, bind in flight) count
//! exactly like bound ones, so the next decision never waits for a bind round trip.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use skiff_runtime::ObjectKey;

use crate::resources::{self, PodRequests, Resources};
use crate::terms::AffinityTerm;

/// A host port a container asks for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

/// Everything the plugins need of a pod, computed once per pod version.
#[derive(Debug)]
pub struct PodInfo {
    pub pod: Arc<Pod>,
    pub key: ObjectKey,
    pub priority: i32,
    pub requests: PodRequests,
    pub ports: Vec<HostPort>,
    pub required_affinity: Vec<AffinityTerm>,
    pub required_anti_affinity: Vec<AffinityTerm>,
    pub preferred_affinity: Vec<(i32, AffinityTerm)>,
    pub preferred_anti_affinity: Vec<(i32, AffinityTerm)>,
}

impl PodInfo {
    pub fn new(pod: Arc<Pod>) -> Self {
        let key = ObjectKey::of(pod.as_ref());
        let spec = pod.spec.as_ref();
        let priority = spec.and_then(|s| s.priority).unwrap_or(0);
        let requests = resources::pod_requests(&pod);
        let mut ports = Vec::new();
        for c in spec.into_iter().flat_map(|s| s.containers.iter()) {
            for p in c.ports.iter().flatten() {
                if let Some(hp) = p.host_port.filter(|hp| *hp > 0) {
                    ports.push(HostPort {
                        ip: p
                            .host_ip
                            .clone()
                            .filter(|ip| !ip.is_empty())
                            .unwrap_or_else(|| "0.0.0.0".into()),
                        protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                        port: hp,
                    });
                }
            }
        }
        let ns = key.namespace().to_string();
        let labels = pod.metadata.labels.as_ref();
        let aff = spec.and_then(|s| s.affinity.as_ref());
        let pa = aff.and_then(|a| a.pod_affinity.as_ref());
        let paa = aff.and_then(|a| a.pod_anti_affinity.as_ref());
        let parse = |terms: Option<&Vec<k8s_openapi::api::core::v1::PodAffinityTerm>>| {
            terms
                .into_iter()
                .flatten()
                .map(|t| AffinityTerm::parse(t, &ns, labels))
                .collect::<Vec<_>>()
        };
        let parse_weighted =
            |terms: Option<&Vec<k8s_openapi::api::core::v1::WeightedPodAffinityTerm>>| {
                terms
                    .into_iter()
                    .flatten()
                    .map(|t| {
                        (
                            t.weight,
                            AffinityTerm::parse(&t.pod_affinity_term, &ns, labels),
                        )
                    })
                    .collect::<Vec<_>>()
            };
        Self {
            required_affinity: parse(pa.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            required_anti_affinity: parse(paa.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            preferred_affinity: parse_weighted(pa.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            preferred_anti_affinity: parse_weighted(paa.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            pod,
            key,
            priority,
            requests,
            ports,
        }
    }

    pub fn namespace(&self) -> &str {
        self.key.namespace()
    }

    pub fn labels(&self) -> Option<&BTreeMap<String, String>> {
        self.pod.metadata.labels.as_ref()
    }

    pub fn has_affinity(&self) -> bool {
        !self.required_affinity.is_empty()
            || !self.required_anti_affinity.is_empty()
            || !self.preferred_affinity.is_empty()
            || !self.preferred_anti_affinity.is_empty()
    }

    pub fn is_terminating(&self) -> bool {
        self.pod.metadata.deletion_timestamp.is_some()
    }

    /// When the pod started (status.startTime), for preemption's tie-breaks.
    pub fn start_time(&self) -> Option<k8s_openapi::jiff::Timestamp> {
        self.pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map(|t| t.0)
    }
}

/// One node and what is on it.
#[derive(Clone, Debug, Default)]
pub struct NodeInfo {
    pub name: String,
    pub node: Option<Arc<Node>>,
    pub allocatable: Resources,
    pub pods: Vec<Arc<PodInfo>>,
    pub requested: Resources,
    pub non_zero_cpu: i64,
    pub non_zero_memory: i64,
    pub used_ports: Vec<HostPort>,
    pub pods_with_affinity: usize,
    pub pods_with_required_anti_affinity: usize,
    /// Image name (every name a node lists) → size in bytes.
    pub images: HashMap<String, i64>,
}

impl NodeInfo {
    pub fn new(node: Arc<Node>) -> Self {
        let mut n = NodeInfo::default();
        n.set_node(node);
        n
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn set_node(&mut self, node: Arc<Node>) {
        self.name = node.metadata.name.clone().unwrap_or_default();
        self.allocatable = resources::allocatable(&node);
        self.images.clear();
        for img in node.status.iter().flat_map(|s| s.images.iter().flatten()) {
            let size = img.size_bytes.unwrap_or(0);
            for name in img.names.iter().flatten() {
                self.images.insert(normalized_image(name), size);
            }
        }
        self.node = Some(node);
    }

    pub fn add_pod(&mut self, pi: Arc<PodInfo>) {
        self.requested.add(&pi.requests.requests);
        self.requested.pods += 1;
        self.non_zero_cpu += pi.requests.non_zero_cpu;
        self.non_zero_memory += pi.requests.non_zero_memory;
        self.used_ports.extend(pi.ports.iter().cloned());
        if pi.has_affinity() {
            self.pods_with_affinity += 1;
        }
        if !pi.required_anti_affinity.is_empty() {
            self.pods_with_required_anti_affinity += 1;
        }
        self.pods.push(pi);
    }

    /// Removes the pod with `key`; false when it is not here.
    pub fn remove_pod(&mut self, key: &ObjectKey) -> bool {
        let Some(i) = self.pods.iter().position(|p| &p.key == key) else {
            return false;
        };
        let pi = self.pods.swap_remove(i);
        self.requested.sub(&pi.requests.requests);
        self.requested.pods -= 1;
        self.non_zero_cpu -= pi.requests.non_zero_cpu;
        self.non_zero_memory -= pi.requests.non_zero_memory;
        for p in &pi.ports {
            if let Some(j) = self.used_ports.iter().position(|u| u == p) {
                self.used_ports.swap_remove(j);
            }
        }
        if pi.has_affinity() {
            self.pods_with_affinity -= 1;
        }
        if !pi.required_anti_affinity.is_empty() {
            self.pods_with_required_anti_affinity -= 1;
        }
        true
    }

    pub fn labels(&self) -> Option<&BTreeMap<String, String>> {
        self.node.as_ref().and_then(|n| n.metadata.labels.as_ref())
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels().and_then(|l| l.get(key)).map(String::as_str)
    }
}

/// Upstream's image name normalization: a name without a tag or digest means `:latest`.
pub fn normalized_image(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') || last.contains('@') {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

/// Where a pod is in the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Placement {
    node: String,
    assumed: bool,
}

/// All nodes and the pods bound or assumed on them.
///
/// Node infos live in a vector (walked in order, round-robin, without hashing) with
/// an index by name. A slot whose Node object is gone (or not yet seen) but which
/// still holds pods stays, as a placeholder, until its pods go.
#[derive(Default)]
pub struct Cache {
    slots: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    /// Slots with a Node object.
    real: usize,
    placements: HashMap<ObjectKey, Placement>,
    /// Image name → number of nodes holding it (ImageLocality's spread factor).
    image_nodes: HashMap<String, usize>,
    namespaces: HashMap<String, BTreeMap<String, String>>,
    /// Placed pods with any (anti-)affinity / with required anti-affinity, so the
    /// affinity plugins can skip the scan over all nodes when there are none.
    with_affinity: usize,
    with_required_anti_affinity: usize,
}

impl Cache {
    pub fn pods_with_affinity(&self) -> usize {
        self.with_affinity
    }

    pub fn pods_with_required_anti_affinity(&self) -> usize {
        self.with_required_anti_affinity
    }

    /// Nodes that exist (have a Node object).
    pub fn node_count(&self) -> usize {
        self.real
    }

    /// Slots, including placeholders; [`Cache::slot`] walks them by position.
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// The node in slot `i`, unless it is a placeholder.
    pub fn slot(&self, i: usize) -> Option<&NodeInfo> {
        self.slots.get(i).filter(|n| n.node.is_some())
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index
            .get(name)
            .and_then(|i| self.slots.get(*i))
            .filter(|n| n.node.is_some())
    }

    /// Every existing node, in slot order.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeInfo> {
        self.slots.iter().filter(|n| n.node.is_some())
    }

    fn slot_mut(&mut self, name: &str) -> &mut NodeInfo {
        let i = match self.index.get(name) {
            Some(i) => *i,
            None => {
                self.slots.push(NodeInfo {
                    name: name.to_string(),
                    ..Default::default()
                });
                self.index.insert(name.to_string(), self.slots.len() - 1);
                self.slots.len() - 1
            }
        };
        &mut self.slots[i]
    }

    fn drop_slot(&mut self, name: &str) {
        let Some(i) = self.index.remove(name) else {
            return;
        };
        self.slots.swap_remove(i);
        if let Some(moved) = self.slots.get(i) {
            self.index.insert(moved.name.clone(), i);
        }
    }

    pub fn image_node_count(&self, image: &str) -> usize {
        self.image_nodes.get(image).copied().unwrap_or(0)
    }

    pub fn namespace_labels(&self, ns: &str) -> Option<BTreeMap<String, String>> {
        self.namespaces.get(ns).cloned()
    }

    pub fn set_namespace(&mut self, ns: &Namespace) {
        if let Some(name) = ns.metadata.name.as_ref() {
            self.namespaces
                .insert(name.clone(), ns.metadata.labels.clone().unwrap_or_default());
        }
    }

    pub fn remove_namespace(&mut self, name: &str) {
        self.namespaces.remove(name);
    }

    fn count_images(&mut self, images: Vec<String>, delta: isize) {
        for img in images {
            let c = self.image_nodes.entry(img).or_default();
            *c = c.saturating_add_signed(delta);
        }
        self.image_nodes.retain(|_, c| *c > 0);
    }

    pub fn upsert_node(&mut self, node: Arc<Node>) {
        let Some(name) = node.metadata.name.clone() else {
            return;
        };
        let info = self.slot_mut(&name);
        let existed = info.node.is_some();
        let old: Vec<String> = info.images.keys().cloned().collect();
        info.set_node(node);
        let new: Vec<String> = info.images.keys().cloned().collect();
        if !existed {
            self.real += 1;
        }
        if old != new {
            self.count_images(old, -1);
            self.count_images(new, 1);
        }
    }

    pub fn remove_node(&mut self, name: &str) {
        let Some(i) = self.index.get(name).copied() else {
            return;
        };
        let info = &mut self.slots[i];
        if info.node.take().is_some() {
            self.real -= 1;
        }
        let images: Vec<String> = info.images.drain().map(|(k, _)| k).collect();
        // Pods still bound there keep the slot until they go (as upstream).
        let empty = info.pods.is_empty();
        self.count_images(images, -1);
        if empty {
            self.drop_slot(name);
        }
    }

    /// Whether `key` is assumed (decided, not yet confirmed by the informer).
    pub fn is_assumed(&self, key: &ObjectKey) -> bool {
        self.placements.get(key).is_some_and(|p| p.assumed)
    }

    /// Whether `key` is on a node in the cache (bound or assumed).
    pub fn is_placed(&self, key: &ObjectKey) -> bool {
        self.placements.contains_key(key)
    }

    fn place(&mut self, pi: Arc<PodInfo>, node: &str, assumed: bool) {
        self.unplace(&pi.key);
        self.placements.insert(
            pi.key.clone(),
            Placement {
                node: node.to_string(),
                assumed,
            },
        );
        self.with_affinity += usize::from(pi.has_affinity());
        self.with_required_anti_affinity += usize::from(!pi.required_anti_affinity.is_empty());
        self.slot_mut(node).add_pod(pi);
    }

    fn unplace(&mut self, key: &ObjectKey) {
        let Some(p) = self.placements.remove(key) else {
            return;
        };
        let Some(i) = self.index.get(&p.node).copied() else {
            return;
        };
        let info = &mut self.slots[i];
        if let Some(pi) = info.pods.iter().find(|x| &x.key == key) {
            self.with_affinity -= usize::from(pi.has_affinity());
            self.with_required_anti_affinity -= usize::from(!pi.required_anti_affinity.is_empty());
        }
        info.remove_pod(key);
        if info.node.is_none() && info.pods.is_empty() {
            self.drop_slot(&p.node);
        }
    }

    /// Records the decision to put `pi` on `node` before the bind is confirmed.
    pub fn assume(&mut self, pi: Arc<PodInfo>, node: &str) {
        self.place(pi, node, true);
    }

    /// Drops an assumption (the bind failed).
    pub fn forget(&mut self, key: &ObjectKey) {
        if self.is_assumed(key) {
            self.unplace(key);
        }
    }

    /// A bound pod seen by the informer (replaces any assumption).
    pub fn upsert_bound_pod(&mut self, pi: Arc<PodInfo>, node: &str) {
        self.place(pi, node, false);
    }

    /// A pod is gone, or no longer holds its node (finished).
    pub fn remove_pod(&mut self, key: &ObjectKey) {
        self.unplace(key);
    }

    /// Node the pod is on in the cache (bound or assumed).
    pub fn node_of(&self, key: &ObjectKey) -> Option<&str> {
        self.placements.get(key).map(|p| p.node.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, cpu: &str, host_port: Option<i32>) -> Arc<PodInfo> {
        let mut c = json!({"name": "c", "image": "i", "resources": {"requests": {"cpu": cpu}}});
        if let Some(hp) = host_port {
            c["ports"] = json!([{"containerPort": 80, "hostPort": hp}]);
        }
        let p: Pod = serde_json::from_value(
            json!({"metadata": {"name": name, "namespace": "ns"}, "spec": {"containers": [c]}}),
        )
        .unwrap();
        Arc::new(PodInfo::new(Arc::new(p)))
    }

    fn node(name: &str, images: serde_json::Value) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name}, "status": {"allocatable": {"cpu": "2", "pods": "10"}, "images": images}}))
                .unwrap(),
        )
    }

    #[test]
    fn assumed_pods_count_until_forgotten_and_confirmation_replaces_them() {
        let mut c = Cache::default();
        c.upsert_node(node("n1", json!([])));
        let p = pod("a", "500m", Some(8080));
        c.assume(p.clone(), "n1");
        let n = c.node("n1").unwrap();
        assert_eq!(n.requested.milli_cpu, 500);
        assert_eq!(n.requested.pods, 1);
        assert_eq!(n.used_ports.len(), 1);
        c.upsert_bound_pod(p.clone(), "n1");
        assert!(!c.is_assumed(&p.key));
        assert_eq!(
            c.node("n1").unwrap().requested.milli_cpu,
            500,
            "not counted twice"
        );
        c.forget(&p.key);
        assert_eq!(
            c.node("n1").unwrap().requested.pods,
            1,
            "a bound pod is not forgotten"
        );
        c.remove_pod(&p.key);
        let n = c.node("n1").unwrap();
        assert_eq!(
            (n.requested.milli_cpu, n.requested.pods, n.used_ports.len()),
            (0, 0, 0)
        );
    }

    #[test]
    fn pods_may_arrive_before_their_node() {
        let mut c = Cache::default();
        c.upsert_bound_pod(pod("a", "1", None), "late");
        assert!(c.node("late").is_none());
        assert_eq!(c.node_count(), 0);
        c.upsert_node(node("late", json!([])));
        assert_eq!(c.node("late").unwrap().requested.milli_cpu, 1000);
        assert_eq!(c.node_count(), 1);
    }

    #[test]
    fn removed_nodes_keep_their_pods_until_they_go_and_the_index_stays_right() {
        let mut c = Cache::default();
        for n in ["n1", "n2", "n3"] {
            c.upsert_node(node(n, json!([])));
        }
        let p = pod("a", "1", None);
        c.upsert_bound_pod(p.clone(), "n1");
        c.remove_node("n1");
        assert_eq!(c.node_count(), 2);
        assert!(c.node("n1").is_none());
        assert_eq!(c.slot_count(), 3, "a placeholder holds the pod");
        c.remove_pod(&p.key);
        assert_eq!(c.slot_count(), 2);
        c.remove_node("n2");
        assert_eq!(c.node("n3").map(|n| n.name()), Some("n3"));
        assert_eq!(c.nodes().count(), 1);
        c.upsert_node(node("n1", json!([])));
        assert_eq!(c.node("n1").unwrap().requested.pods, 0);
    }

    #[test]
    fn image_counts_follow_nodes() {
        let mut c = Cache::default();
        c.upsert_node(node("n1", json!([{"names": ["nginx:1.25", "docker.io/library/nginx@sha256:x"], "sizeBytes": 100}])));
        c.upsert_node(node(
            "n2",
            json!([{"names": ["nginx:1.25"], "sizeBytes": 100}]),
        ));
        assert_eq!(c.image_node_count("nginx:1.25"), 2);
        c.remove_node("n2");
        assert_eq!(c.image_node_count("nginx:1.25"), 1);
        assert_eq!(normalized_image("busybox"), "busybox:latest");
        assert_eq!(
            normalized_image("reg:5000/busybox"),
            "reg:5000/busybox:latest"
        );
    }
}
