//! Pod volumes, as the kubelet's volume manager sets them up: each volume of a pod gets
//! a directory `<agent-dir>/pods/<uid>/volumes/<plugin>/<name>` (plugin names as
//! upstream's, e.g. `kubernetes.io~configmap`), or a node path for hostPath and
//! persistent volumes; containers get them as CRI bind mounts.
//!
//! What it is not: a CSI or attach/detach implementation. Persistent volumes are served
//! only when their PV is a node path (hostPath or local).
//!
//! Guarantees:
//! - [`VolumeManager::setup`] is idempotent and cheap enough to run on every pod sync;
//!   it rewrites configMap/secret/downwardAPI/projected contents when they changed,
//!   swapping them in atomically (readers see the whole old or the whole new set).
//! - Secrets and projected volumes live on a tmpfs, never on the node's disk.
//!
//! Assumptions: calls for one pod do not overlap (the pod's worker serializes them).

mod atomic;
mod configmap;
mod downward;
mod empty_dir;
mod host_path;
mod keys;
mod mounts;
mod projected;
mod pvc;
mod secret;
mod tmpfs;
mod token;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::{Node, Pod, Volume};
use kube::Api;
use skiff_api::quantity::Quantity;

pub use atomic::{FileProjection, Payload};
use downward::Allocatable;
use token::TokenCache;

/// Upstream's volume plugin directory names.
pub mod plugin {
    pub const EMPTY_DIR: &str = "kubernetes.io~empty-dir";
    pub const CONFIG_MAP: &str = "kubernetes.io~configmap";
    pub const SECRET: &str = "kubernetes.io~secret";
    pub const PROJECTED: &str = "kubernetes.io~projected";
    pub const DOWNWARD_API: &str = "kubernetes.io~downward-api";
    pub const HOST_PATH: &str = "kubernetes.io~host-path";
    pub const PVC: &str = "kubernetes.io~persistent-volume";
}

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// A volume could not be set up: upstream's `FailedMount` event text; the pod stays
    /// in ContainerCreating and the agent retries on its next sync.
    #[error("MountVolume.SetUp failed for volume \"{volume}\" : {message}")]
    SetUp { volume: String, message: String },
    /// A container's volumeMounts cannot be made (upstream reports these as
    /// `CreateContainerConfigError`).
    #[error("{0}")]
    ContainerMount(String),
    #[error("pod has no {0}")]
    InvalidPod(&'static str),
    #[error("tearing down the volumes of pod {pod_uid}: {source}")]
    Teardown {
        pod_uid: String,
        #[source]
        source: std::io::Error,
    },
}

impl VolumeError {
    /// The event/status reason upstream uses for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            VolumeError::ContainerMount(_) => "CreateContainerConfigError",
            _ => "FailedMount",
        }
    }
}

/// A volume that is ready on the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadyVolume {
    /// What containers bind-mount.
    pub host_path: PathBuf,
    /// Forced read-only for every container (configMap, secret, downwardAPI, projected,
    /// and read-only claims), whatever the volumeMount says.
    pub read_only: bool,
}

/// A pod's volumes after [`VolumeManager::setup`].
#[derive(Clone, Debug)]
pub struct PodVolumes {
    pod: Arc<Pod>,
    volumes: BTreeMap<String, ReadyVolume>,
    refresh_at: Option<Instant>,
}

impl PodVolumes {
    /// The volume named `name`, if the pod has it.
    pub fn get(&self, name: &str) -> Option<&ReadyVolume> {
        self.volumes.get(name)
    }

    /// When a service account token in a projected volume is due for renewal: the agent
    /// should sync the pod (call `setup` again) by then.
    pub fn refresh_at(&self) -> Option<Instant> {
        self.refresh_at
    }
}

/// Sets up and tears down pod volumes under `<agent-dir>/pods/`.
#[derive(Clone)]
pub struct VolumeManager {
    agent_dir: PathBuf,
    client: kube::Client,
    tokens: Arc<TokenCache>,
}

impl VolumeManager {
    pub fn new(agent_dir: PathBuf, client: kube::Client) -> Self {
        Self {
            agent_dir,
            client,
            tokens: Arc::new(TokenCache::default()),
        }
    }

    /// `<agent-dir>/pods/<uid>/volumes`.
    pub fn volumes_dir(&self, pod_uid: &str) -> PathBuf {
        self.agent_dir.join("pods").join(pod_uid).join("volumes")
    }

    /// Makes every volume of `pod` ready (idempotent). The first volume that cannot be
    /// set up is returned as [`VolumeError::SetUp`].
    pub async fn setup(&self, pod: &Pod) -> Result<PodVolumes, VolumeError> {
        let uid = pod
            .metadata
            .uid
            .as_deref()
            .filter(|u| !u.is_empty() && !u.contains('/') && *u != "." && *u != "..")
            .ok_or(VolumeError::InvalidPod("uid"))?;
        let spec = pod.spec.as_ref().ok_or(VolumeError::InvalidPod("spec"))?;
        let volumes = spec.volumes.as_deref().unwrap_or(&[]);
        let allocatable = if volumes.iter().any(needs_allocatable) {
            self.node_allocatable(spec.node_name.as_deref()).await
        } else {
            Allocatable::new()
        };
        let base = self.volumes_dir(uid);
        let mut out = PodVolumes {
            pod: Arc::new(pod.clone()),
            volumes: BTreeMap::new(),
            refresh_at: None,
        };
        for volume in volumes {
            let (ready, refresh) = self
                .setup_one(pod, &base, volume, &allocatable)
                .await
                .map_err(|message| VolumeError::SetUp {
                    volume: volume.name.clone(),
                    message,
                })?;
            if let Some(r) = refresh {
                out.refresh_at = Some(out.refresh_at.map_or(r, |o| o.min(r)));
            }
            out.volumes.insert(volume.name.clone(), ready);
        }
        Ok(out)
    }

    async fn setup_one(
        &self,
        pod: &Pod,
        base: &Path,
        volume: &Volume,
        allocatable: &Allocatable,
    ) -> Result<(ReadyVolume, Option<Instant>), String> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        atomic::validate_path(&volume.name)?;
        let fs_group = pod_fs_group(pod);
        let dir = |plugin: &str| base.join(plugin).join(&volume.name);
        let ready = |host_path: PathBuf, read_only: bool| ReadyVolume {
            host_path,
            read_only,
        };
        if let Some(src) = &volume.empty_dir {
            let d = dir(plugin::EMPTY_DIR);
            empty_dir::setup(&d, src, pod, allocatable, fs_group)?;
            return Ok((ready(d, false), None));
        }
        if let Some(src) = &volume.host_path {
            host_path::check_type(&src.path, src.type_.as_deref())?;
            return Ok((ready(PathBuf::from(&src.path), false), None));
        }
        if let Some(src) = &volume.config_map {
            let payload = configmap::payload(&self.client, namespace, src).await?;
            let d = dir(plugin::CONFIG_MAP);
            write(&d, &payload, false, fs_group)?;
            return Ok((ready(d, true), None));
        }
        if let Some(src) = &volume.secret {
            let payload = secret::payload(&self.client, namespace, src).await?;
            let d = dir(plugin::SECRET);
            write(&d, &payload, true, fs_group)?;
            return Ok((ready(d, true), None));
        }
        if let Some(src) = &volume.downward_api {
            let default_mode = src
                .default_mode
                .map(keys::mode_bits)
                .unwrap_or(keys::DEFAULT_MODE);
            let items = src.items.as_deref().unwrap_or(&[]);
            let payload = downward::payload(pod, items, default_mode, allocatable)?;
            let d = dir(plugin::DOWNWARD_API);
            write(&d, &payload, false, fs_group)?;
            return Ok((ready(d, true), None));
        }
        if let Some(src) = &volume.projected {
            let (payload, refresh) =
                projected::payload(&self.client, &self.tokens, pod, src, allocatable).await?;
            let d = dir(plugin::PROJECTED);
            write(&d, &payload, true, fs_group)?;
            return Ok((ready(d, true), refresh));
        }
        if let Some(src) = &volume.persistent_volume_claim {
            let path = pvc::resolve(&self.client, namespace, &src.claim_name).await?;
            return Ok((
                ready(PathBuf::from(path), src.read_only.unwrap_or(false)),
                None,
            ));
        }
        if volume.ephemeral.is_some() {
            // A generic ephemeral volume is a claim named `<pod>-<volume>`, created by
            // the ephemeral volume controller.
            let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
            let claim = format!("{pod_name}-{}", volume.name);
            let path = pvc::resolve(&self.client, namespace, &claim).await?;
            return Ok((ready(PathBuf::from(path), false), None));
        }
        Err(
            "volume type not supported by this node (supported: emptyDir, hostPath, \
             configMap, secret, downwardAPI, projected, persistentVolumeClaim, ephemeral)"
                .into(),
        )
    }

    /// The node's allocatable resources; empty (limits read as 0) if the Node cannot be
    /// read, which a later sync corrects.
    async fn node_allocatable(&self, node: Option<&str>) -> Allocatable {
        let Some(node) = node.filter(|n| !n.is_empty()) else {
            return Allocatable::new();
        };
        let found = Api::<Node>::all(self.client.clone()).get_opt(node).await;
        let Ok(Some(node)) = found else {
            tracing::warn!(
                node,
                "reading the node's allocatable for downwardAPI limits failed"
            );
            return Allocatable::new();
        };
        node.status
            .and_then(|s| s.allocatable)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, v)| v.0.parse::<Quantity>().ok().map(|q| (k, q)))
            .collect()
    }

    /// UIDs of the pods that have a directory under `<agent-dir>/pods/`: after a restart
    /// the agent tears down those that are no longer bound to the node (upstream's
    /// orphaned pod directory cleanup).
    pub fn pods_on_disk(&self) -> std::io::Result<Vec<String>> {
        let dir = self.agent_dir.join("pods");
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut uids = Vec::new();
        for entry in entries {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                uids.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        uids.sort();
        Ok(uids)
    }

    /// Unmounts the pod's tmpfs volumes and removes `<agent-dir>/pods/<uid>/volumes`.
    /// Node paths (hostPath, persistent volumes) are left alone.
    pub async fn teardown(&self, pod_uid: &str) -> Result<(), VolumeError> {
        if pod_uid.is_empty() || pod_uid.contains('/') || pod_uid == "." || pod_uid == ".." {
            return Err(VolumeError::InvalidPod("uid"));
        }
        self.tokens.forget_pod(pod_uid);
        let dir = self.volumes_dir(pod_uid);
        let uid = pod_uid.to_owned();
        tokio::task::spawn_blocking(move || teardown_dir(&dir))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|r| r)
            .map_err(|source| VolumeError::Teardown {
                pod_uid: uid,
                source,
            })
    }
}

fn teardown_dir(dir: &Path) -> std::io::Result<()> {
    for mount in tmpfs::mounts_under(dir)? {
        tmpfs::unmount(&mount)?;
    }
    // Never delete through a mount that is still there (it could be a bind of
    // something that is not ours).
    if !tmpfs::mounts_under(dir)?.is_empty() {
        return Err(std::io::Error::other(format!(
            "{} still has mounts under it",
            dir.display()
        )));
    }
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    // The pod directory itself goes too once nothing else is in it.
    if let Some(pod_dir) = dir.parent() {
        let _ = std::fs::remove_dir(pod_dir);
    }
    Ok(())
}

/// The pod's fsGroup, if it has a valid one.
fn pod_fs_group(pod: &Pod) -> Option<u32> {
    let gid = pod.spec.as_ref()?.security_context.as_ref()?.fs_group?;
    u32::try_from(gid).ok()
}

/// Whether setting up `v` reads the node's allocatable resources (downward API limits,
/// memory-backed emptyDir sizes).
fn needs_allocatable(v: &Volume) -> bool {
    v.empty_dir
        .as_ref()
        .is_some_and(|e| e.medium.as_deref() == Some("Memory"))
        || v.downward_api
            .as_ref()
            .is_some_and(|d| downward::reads_resources(d.items.as_deref().unwrap_or(&[])))
        || v.projected.as_ref().is_some_and(projected::reads_resources)
}

/// Writes a payload into a volume directory, on a tmpfs when `in_memory`.
/// With an fsGroup the files belong to that group and are group-readable, as upstream's
/// volume ownership change does.
fn write(
    dir: &Path,
    payload: &Payload,
    in_memory: bool,
    fs_group: Option<u32>,
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    if in_memory {
        tmpfs::ensure(dir, None, 0o755)
            .map_err(|e| format!("mounting tmpfs on {}: {e}", dir.display()))?;
    }
    let adjusted;
    let payload = match fs_group {
        None => payload,
        Some(_) => {
            adjusted = payload
                .iter()
                .map(|(k, f)| {
                    let mut f = f.clone();
                    f.mode |= 0o440;
                    (k.clone(), f)
                })
                .collect::<Payload>();
            &adjusted
        }
    };
    atomic::write(dir, payload, fs_group)
        .map(drop)
        .map_err(|e| format!("writing {}: {e}", dir.display()))
}
