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
    /// Failed (and warned) probe runs from now on, to record as events.
    fn events(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<crate::probe::ProbeEvent>> {
        None
    }
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

impl Plugins {
    /// The agent's own volume and probe managers.
    pub fn standard(agent_dir: std::path::PathBuf, client: kube::Client) -> Self {
        Self {
            volumes: Some(Arc::new(crate::volumes::VolumeManager::new(
                agent_dir, client,
            ))),
            probes: Some(Arc::new(|cri, wake| {
                Arc::new(crate::probe::ProbeManager::new(cri, wake)) as Arc<dyn Probes>
            })),
        }
    }
}

#[async_trait::async_trait]
impl Volumes for crate::volumes::VolumeManager {
    async fn setup(&self, pod: &Pod) -> Result<Arc<dyn PodMounts>, String> {
        crate::volumes::VolumeManager::setup(self, pod)
            .await
            .map(|v| Arc::new(v) as Arc<dyn PodMounts>)
            .map_err(|e| e.to_string())
    }

    async fn teardown(&self, pod_uid: &str) {
        if let Err(err) = crate::volumes::VolumeManager::teardown(self, pod_uid).await {
            tracing::warn!(%err, pod_uid, "tearing down volumes failed");
        }
    }
}

impl PodMounts for crate::volumes::PodVolumes {
    fn mounts(&self, container: &Container) -> Result<Vec<cri::Mount>, String> {
        crate::volumes::PodVolumes::mounts(self, container).map_err(|e| e.to_string())
    }
}

impl Probes for crate::probe::ProbeManager {
    fn add(&self, pod: &Pod, container: &Container, container_id: &str, pod_ip: Option<String>) {
        crate::probe::ProbeManager::add(self, pod, container, container_id, pod_ip)
    }
    fn remove_container(&self, container_id: &str) {
        crate::probe::ProbeManager::remove_container(self, container_id)
    }
    fn remove_pod(&self, pod_uid: &str) {
        crate::probe::ProbeManager::remove_pod(self, pod_uid)
    }
    fn readiness(&self, container_id: &str) -> Option<bool> {
        crate::probe::ProbeManager::readiness(self, container_id)
    }
    fn started(&self, container_id: &str) -> bool {
        crate::probe::ProbeManager::started(self, container_id)
    }
    fn liveness_failed(&self, container_id: &str) -> bool {
        crate::probe::ProbeManager::liveness_failed(self, container_id)
    }
    fn events(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<crate::probe::ProbeEvent>> {
        Some(crate::probe::ProbeManager::events(self))
    }
}
