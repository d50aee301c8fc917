//! Upstream's default plugins, as pure functions over the cache: PreFilter (per pod,
//! [`CycleState::prefilter`]), Filter (per node, [`filter`], in upstream's order, the first
//! rejection wins) and Score ([`score`], normalized to 0..100 and weighted as the
//! default profile weights them).

pub mod fit;
pub mod interpod;
pub mod nodeaffinity;
pub mod score;
pub mod spread;
pub mod taints;
pub mod volumes;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};

use crate::cache::{Cache, NodeInfo, PodInfo};
use crate::terms::RequiredNodeAffinity;

pub use score::score;

/// The filter plugins, in upstream's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Plugin {
    NodeUnschedulable,
    NodeName,
    TaintToleration,
    NodeAffinity,
    NodePorts,
    NodeResourcesFit,
    VolumeBinding,
    PodTopologySpread,
    InterPodAffinity,
}

impl Plugin {
    /// A bit for sets of plugins (what rejected a pod, what an event may help).
    pub fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// Why a node (or, from PreFilter, every node) cannot take the pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub plugin: Plugin,
    /// Upstream's `Unschedulable` (preemption may help) as opposed to
    /// `UnschedulableAndUnresolvable`.
    pub resolvable: bool,
    pub reasons: Vec<Cow<'static, str>>,
}

impl Rejection {
    pub fn unresolvable(plugin: Plugin, reason: impl Into<Cow<'static, str>>) -> Self {
        Self {
            plugin,
            resolvable: false,
            reasons: vec![reason.into()],
        }
    }

    pub fn unschedulable(plugin: Plugin, reason: impl Into<Cow<'static, str>>) -> Self {
        Self {
            plugin,
            resolvable: true,
            reasons: vec![reason.into()],
        }
    }
}

/// Persistent volume objects the VolumeBinding plugin reads.
#[derive(Default)]
pub struct Volumes {
    pub claims: HashMap<(String, String), Arc<PersistentVolumeClaim>>,
    pub volumes: HashMap<String, Arc<PersistentVolume>>,
}

/// What PreFilter computes once per pod per cycle.
#[derive(Clone)]
pub struct CycleState {
    pub pod: Arc<PodInfo>,
    pub node_affinity: RequiredNodeAffinity,
    pub spread: Option<spread::FilterState>,
    pub interpod: Option<interpod::FilterState>,
    pub volumes: volumes::State,
    /// NodeAffinity's PreFilter result: the only nodes worth filtering, when required
    /// terms name nodes by `metadata.name`.
    pub node_names: Option<std::collections::BTreeSet<String>>,
    /// The pod's default spreading selector (from the Services, ReplicaSets,
    /// ReplicationControllers and StatefulSets selecting it), for PodTopologySpread's
    /// system defaults; set by the caller.
    pub default_spread: Option<skiff_runtime::selector::Selector>,
}

impl CycleState {
    /// Upstream's PreFilter: per-pod state, or a rejection that holds for every node.
    pub fn prefilter(cache: &Cache, vols: &Volumes, pod: Arc<PodInfo>) -> Result<Self, Rejection> {
        let node_affinity = RequiredNodeAffinity::of(&pod.pod);
        let node_names = nodeaffinity::prefilter_node_names(&pod)?;
        let volumes = volumes::prefilter(vols, &pod)?;
        let spread = spread::prefilter(cache, &pod, &node_affinity);
        let interpod = interpod::prefilter(cache, &pod);
        Ok(Self {
            pod,
            node_affinity,
            spread,
            interpod,
            volumes,
            node_names,
            default_spread: None,
        })
    }

    /// Updates the pod-count state as if `other` were added to (`delta` = 1) or removed
    /// from (-1) `node` (preemption's what-ifs, nominated pods).
    pub fn update(&mut self, cache: &Cache, other: &PodInfo, node: &NodeInfo, delta: i64) {
        if let Some(s) = self.spread.as_mut() {
            s.update(&self.pod, other, node, delta);
        }
        if let Some(s) = self.interpod.as_mut() {
            s.update(cache, &self.pod, other, node, delta);
        }
    }
}

/// Runs the filter plugins on one node in upstream's order; the first rejection wins.
pub fn filter(cache: &Cache, state: &CycleState, node: &NodeInfo) -> Result<(), Rejection> {
    let Some(n) = node.node.as_deref() else {
        return Err(Rejection::unresolvable(Plugin::NodeName, "node not found"));
    };
    let pod = &state.pod;
    taints::filter_unschedulable(pod, n)?;
    nodeaffinity::filter_node_name(pod, n)?;
    taints::filter(pod, n)?;
    nodeaffinity::filter(&state.node_affinity, n)?;
    fit::filter_ports(pod, node)?;
    fit::filter(pod, node)?;
    volumes::filter(&state.volumes, n)?;
    if let Some(s) = &state.spread {
        s.filter(pod, node)?;
    }
    if let Some(s) = &state.interpod {
        s.filter(cache, pod, node)?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Builders for plugin tests.
    use super::*;
    use k8s_openapi::api::core::v1::{Node, Pod};
    use serde_json::{json, Value};

    pub fn pod(name: &str, spec: Value) -> Arc<PodInfo> {
        pod_labeled(name, json!({}), spec)
    }

    pub fn pod_labeled(name: &str, labels: Value, mut spec: Value) -> Arc<PodInfo> {
        if spec.get("containers").is_none() {
            spec["containers"] = json!([{"name": "c", "image": "busybox"}]);
        }
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "labels": labels},
            "spec": spec,
        }))
        .expect("test pod");
        Arc::new(PodInfo::new(Arc::new(p)))
    }

    pub fn node(name: &str, labels: Value, spec: Value, alloc: Value) -> Arc<Node> {
        let mut labels = labels;
        labels["kubernetes.io/hostname"] = json!(name);
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "labels": labels},
                "spec": spec,
                "status": {"allocatable": alloc},
            }))
            .expect("test node"),
        )
    }

    pub fn small_node(name: &str, labels: Value) -> Arc<Node> {
        node(
            name,
            labels,
            json!({}),
            json!({"cpu": "4", "memory": "8Gi", "pods": "110"}),
        )
    }

    pub fn resources(cpu: &str, mem: &str) -> Value {
        json!({"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": cpu, "memory": mem}}}]})
    }
}
