//! The agent's calls into the CRI runtime, each one request with the error naming what
//! was asked, and the reduction of runtime containers to [`CtrObs`].

use std::collections::HashMap;
use std::time::Duration;

use skiff_cri::api as cri;
use skiff_cri::Cri;

use crate::pod::spec::{ANNOTATION_RESTART_COUNT, LABEL_CONTAINER_NAME, LABEL_POD_UID};
use crate::pod::status::{CtrObs, CtrState};

#[derive(Debug, thiserror::Error)]
#[error("{op}: {message}")]
pub struct RuntimeError {
    pub op: String,
    /// The runtime's own message (what users see in waiting/termination messages).
    pub message: String,
    pub not_found: bool,
}

fn err(op: impl Into<String>) -> impl FnOnce(tonic::Status) -> RuntimeError {
    let op = op.into();
    move |s| RuntimeError {
        op,
        message: s.message().to_string(),
        not_found: s.code() == tonic::Code::NotFound,
    }
}

/// A sandbox of a pod as the runtime lists it.
#[derive(Clone, Debug)]
pub struct SandboxObs {
    pub id: String,
    pub uid: String,
    pub attempt: u32,
    pub ready: bool,
    pub created_at: i64,
}

#[derive(Clone)]
pub struct Runtime {
    pub cri: Cri,
}

fn state(s: i32) -> CtrState {
    match cri::ContainerState::try_from(s) {
        Ok(cri::ContainerState::ContainerCreated) => CtrState::Created,
        Ok(cri::ContainerState::ContainerRunning) => CtrState::Running,
        Ok(cri::ContainerState::ContainerExited) => CtrState::Exited,
        _ => CtrState::Unknown,
    }
}

impl Runtime {
    pub fn new(cri: Cri) -> Self {
        Self { cri }
    }

    /// "containerd://1.6.20" for nodeInfo.containerRuntimeVersion.
    pub async fn version(&self) -> Result<String, RuntimeError> {
        let v = self
            .cri
            .runtime
            .clone()
            .version(cri::VersionRequest::default())
            .await
            .map_err(err("asking the runtime's version"))?
            .into_inner();
        Ok(format!("{}://{}", v.runtime_name, v.runtime_version))
    }

    /// Sandboxes, of one pod (`uid`) or of all pods.
    pub async fn sandboxes(&self, uid: Option<&str>) -> Result<Vec<SandboxObs>, RuntimeError> {
        let filter = cri::PodSandboxFilter {
            label_selector: uid
                .map(|u| [(LABEL_POD_UID.to_string(), u.to_string())].into())
                .unwrap_or_default(),
            ..Default::default()
        };
        let items = self
            .cri
            .runtime
            .clone()
            .list_pod_sandbox(cri::ListPodSandboxRequest {
                filter: Some(filter),
            })
            .await
            .map_err(err("listing pod sandboxes"))?
            .into_inner()
            .items;
        Ok(items
            .into_iter()
            .filter_map(|s| {
                let uid = s.labels.get(LABEL_POD_UID)?.clone();
                Some(SandboxObs {
                    id: s.id,
                    uid,
                    attempt: s.metadata.map(|m| m.attempt).unwrap_or(0),
                    ready: s.state == cri::PodSandboxState::SandboxReady as i32,
                    created_at: s.created_at,
                })
            })
            .collect())
    }

    /// The sandbox's IP, if it has a network of its own.
    pub async fn sandbox_ip(&self, id: &str) -> Result<Option<String>, RuntimeError> {
        let status = self
            .cri
            .runtime
            .clone()
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: id.into(),
                verbose: false,
            })
            .await
            .map_err(err(format!("reading the status of sandbox {id}")))?
            .into_inner()
            .status;
        Ok(status
            .and_then(|s| s.network)
            .map(|n| n.ip)
            .filter(|ip| !ip.is_empty()))
    }

    /// Containers (id, pod uid, state) of one pod or all: what the relist compares.
    pub async fn list(&self, uid: Option<&str>) -> Result<Vec<cri::Container>, RuntimeError> {
        let filter = cri::ContainerFilter {
            label_selector: uid
                .map(|u| [(LABEL_POD_UID.to_string(), u.to_string())].into())
                .unwrap_or_default(),
            ..Default::default()
        };
        Ok(self
            .cri
            .runtime
            .clone()
            .list_containers(cri::ListContainersRequest {
                filter: Some(filter),
            })
            .await
            .map_err(err("listing containers"))?
            .into_inner()
            .containers)
    }

    /// Every container of pod `uid` with its full status.
    pub async fn observe(&self, uid: &str) -> Result<Vec<CtrObs>, RuntimeError> {
        let mut out = Vec::new();
        for c in self.list(Some(uid)).await? {
            match self.container_status(&c.id).await {
                Ok(Some(mut s)) => {
                    s.sandbox_id = c.pod_sandbox_id.clone();
                    out.push(s)
                }
                Ok(None) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    pub async fn container_status(&self, id: &str) -> Result<Option<CtrObs>, RuntimeError> {
        let resp = self
            .cri
            .runtime
            .clone()
            .container_status(cri::ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            })
            .await;
        let s = match resp {
            Ok(r) => r.into_inner().status,
            Err(s) if s.code() == tonic::Code::NotFound => return Ok(None),
            Err(s) => return Err(err(format!("reading the status of container {id}"))(s)),
        };
        let Some(s) = s else { return Ok(None) };
        let name = s
            .labels
            .get(LABEL_CONTAINER_NAME)
            .cloned()
            .or_else(|| s.metadata.as_ref().map(|m| m.name.clone()))
            .unwrap_or_default();
        let attempt = s
            .annotations
            .get(ANNOTATION_RESTART_COUNT)
            .and_then(|v| v.parse().ok())
            .or_else(|| s.metadata.as_ref().map(|m| m.attempt))
            .unwrap_or(0);
        let sandbox_id = String::new();
        Ok(Some(CtrObs {
            id: s.id,
            name,
            attempt,
            sandbox_id,
            state: state(s.state),
            created_at: s.created_at,
            started_at: s.started_at,
            finished_at: s.finished_at,
            exit_code: s.exit_code,
            reason: s.reason,
            message: s.message,
            image_ref: s.image_ref,
        }))
    }

    /// The image's id if the runtime has it.
    pub async fn image_present(&self, image: &str) -> Result<Option<String>, RuntimeError> {
        let resp = self
            .cri
            .images
            .clone()
            .image_status(cri::ImageStatusRequest {
                image: Some(cri::ImageSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await
            .map_err(err(format!("reading the status of image {image}")))?
            .into_inner();
        Ok(resp.image.map(|i| i.id))
    }

    /// Pulls `image`; the runtime's error message is what ErrImagePull shows.
    pub async fn pull(
        &self,
        image: &str,
        sandbox: &cri::PodSandboxConfig,
    ) -> Result<String, RuntimeError> {
        Ok(self
            .cri
            .images
            .clone()
            .pull_image(cri::PullImageRequest {
                image: Some(cri::ImageSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                auth: None,
                sandbox_config: Some(sandbox.clone()),
            })
            .await
            .map_err(err(format!("pulling image {image}")))?
            .into_inner()
            .image_ref)
    }

    pub async fn run_sandbox(&self, config: cri::PodSandboxConfig) -> Result<String, RuntimeError> {
        Ok(self
            .cri
            .runtime
            .clone()
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            })
            .await
            .map_err(err("creating the pod sandbox"))?
            .into_inner()
            .pod_sandbox_id)
    }

    pub async fn create_container(
        &self,
        sandbox_id: &str,
        config: cri::ContainerConfig,
        sandbox: &cri::PodSandboxConfig,
    ) -> Result<String, RuntimeError> {
        Ok(self
            .cri
            .runtime
            .clone()
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: sandbox_id.into(),
                config: Some(config),
                sandbox_config: Some(sandbox.clone()),
            })
            .await
            .map_err(err("creating the container"))?
            .into_inner()
            .container_id)
    }

    pub async fn start_container(&self, id: &str) -> Result<(), RuntimeError> {
        self.cri
            .runtime
            .clone()
            .start_container(cri::StartContainerRequest {
                container_id: id.into(),
            })
            .await
            .map_err(err(format!("starting container {id}")))?;
        Ok(())
    }

    /// SIGTERM, then SIGKILL after `grace` (the runtime's StopContainer timeout).
    pub async fn stop_container(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        match self
            .cri
            .runtime
            .clone()
            .stop_container(cri::StopContainerRequest {
                container_id: id.into(),
                // Whole seconds, rounded up: a grace period never shrinks.
                timeout: grace.as_millis().div_ceil(1000) as i64,
            })
            .await
        {
            Ok(_) => Ok(()),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(()),
            Err(s) => Err(err(format!("stopping container {id}"))(s)),
        }
    }

    pub async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        match self
            .cri
            .runtime
            .clone()
            .remove_container(cri::RemoveContainerRequest {
                container_id: id.into(),
            })
            .await
        {
            Ok(_) => Ok(()),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(()),
            Err(s) => Err(err(format!("removing container {id}"))(s)),
        }
    }

    pub async fn stop_sandbox(&self, id: &str) -> Result<(), RuntimeError> {
        match self
            .cri
            .runtime
            .clone()
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await
        {
            Ok(_) => Ok(()),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(()),
            Err(s) => Err(err(format!("stopping sandbox {id}"))(s)),
        }
    }

    pub async fn remove_sandbox(&self, id: &str) -> Result<(), RuntimeError> {
        match self
            .cri
            .runtime
            .clone()
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await
        {
            Ok(_) => Ok(()),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(()),
            Err(s) => Err(err(format!("removing sandbox {id}"))(s)),
        }
    }

    /// Runs `cmd` in a container; returns (exit code, combined output).
    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout: Duration,
    ) -> Result<(i32, String), RuntimeError> {
        let r = self
            .cri
            .runtime
            .clone()
            .exec_sync(cri::ExecSyncRequest {
                container_id: id.into(),
                cmd,
                timeout: timeout.as_secs() as i64,
            })
            .await
            .map_err(err(format!("exec in container {id}")))?
            .into_inner();
        let mut out = String::from_utf8_lossy(&r.stdout).into_owned();
        out.push_str(&String::from_utf8_lossy(&r.stderr));
        Ok((r.exit_code, out))
    }
}

/// Container id -> (pod uid, state) of every container: one relist.
pub fn snapshot(containers: &[cri::Container]) -> HashMap<String, (String, i32)> {
    containers
        .iter()
        .map(|c| {
            (
                c.id.clone(),
                (
                    c.labels.get(LABEL_POD_UID).cloned().unwrap_or_default(),
                    c.state,
                ),
            )
        })
        .collect()
}
