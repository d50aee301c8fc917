//! Seams to the volume and probe managers, which live in their own modules: the pod
//! worker needs only these calls, and runs without them (no volume mounts, every
//! running container ready and started) where none is given.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Pod};
use skiff_cri::api as cri;

/// Sets up and tears down a pod's volumes.
#[async_trait::async_trait]
pub trait Volumes: Send + Sync {
    /// Makes every volume of `pod` ready (idempotent).
    async fn setup(&self, pod: &Pod) -> Result<Arc<dyn PodMounts>, String>;
    /// Removes what `setup` made for the pod.
    async fn teardown(&self, pod_uid: &str);
}

/// A pod's ready volumes, as mounts of one container.
pub trait PodMounts: Send + Sync {
    fn mounts(&self, container: &Container) -> Result<Vec<cri::Mount>, String>;
}

/// Probes running containers (liveness, readiness, startup).
pub trait Probes: Send + Sync {
    fn add(&self, pod: &Pod, container: &Container, container_id: &str, pod_ip: Option<String>);
    fn remove_container(&self, container_id: &str);
    fn remove_pod(&self, pod_uid: &str);
    /// `None` while not yet known.
    fn readiness(&self, container_id: &str) -> Option<bool>;
    fn started(&self, container_id: &str) -> bool;
    /// Whether liveness failed since last asked (asking clears it).
    fn liveness_failed(&self, container_id: &str) -> bool;
}

/// Makes the probe manager once the runtime is known; it wakes pods (by uid) whose
/// probe results changed through the sender.
pub type ProbeFactory = Arc<
    dyn Fn(skiff_cri::Cri, tokio::sync::mpsc::UnboundedSender<String>) -> Arc<dyn Probes>
        + Send
        + Sync,
>;

#[derive(Clone, Default)]
pub struct Plugins {
    pub volumes: Option<Arc<dyn Volumes>>,
    pub probes: Option<ProbeFactory>,
}
