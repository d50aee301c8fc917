//! Finding a pod's sandbox and containers in the runtime by the labels the agent puts on
//! them (the kubelet's: `io.kubernetes.pod.namespace`, `io.kubernetes.pod.name`,
//! `io.kubernetes.container.name`), and choosing the current or previous instance of a
//! container by its restart count annotation.

use std::collections::HashMap;

use skiff_cri::api::{
    ContainerFilter, ContainerState, ContainerStatusRequest, ListContainersRequest,
    ListPodSandboxRequest, PodSandboxFilter, PodSandboxState,
};
use skiff_cri::Cri;

use super::Failure;

pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const POD_NAME: &str = "io.kubernetes.pod.name";
pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
pub const RESTART_COUNT: &str = "io.kubernetes.container.restartCount";

/// One instance of a container (each restart is a new runtime container).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    pub restart_count: u32,
    pub created_at: i64,
    pub running: bool,
}

/// Which instance a request means: the newest, or the one before it (`previous`).
/// Instances are ordered by restart count, then creation time.
pub fn choose(mut all: Vec<Instance>, previous: bool) -> Option<Instance> {
    all.sort_by_key(|i| (i.restart_count, i.created_at));
    let n = all.len();
    match (previous, n) {
        (_, 0) | (true, 1) => None,
        (false, _) => all.pop(),
        (true, _) => all.into_iter().nth(n - 2),
    }
}

fn selector(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn cri_failure(what: &str, status: tonic::Status) -> Failure {
    Failure::internal(format!("{what}: {}", status.message()))
}

/// Every instance of container `name` of pod `ns/pod`.
pub async fn instances(
    cri: &Cri,
    ns: &str,
    pod: &str,
    name: &str,
) -> Result<Vec<Instance>, Failure> {
    let filter = ContainerFilter {
        label_selector: selector(&[(POD_NAMESPACE, ns), (POD_NAME, pod), (CONTAINER_NAME, name)]),
        ..Default::default()
    };
    let resp = cri
        .runtime
        .clone()
        .list_containers(ListContainersRequest {
            filter: Some(filter),
        })
        .await
        .map_err(|e| cri_failure("listing containers", e))?;
    Ok(resp
        .into_inner()
        .containers
        .into_iter()
        .map(|c| Instance {
            restart_count: c
                .annotations
                .get(RESTART_COUNT)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            running: c.state == ContainerState::ContainerRunning as i32,
            created_at: c.created_at,
            id: c.id,
        })
        .collect())
}

/// The current instance of a container, or the upstream error when there is none yet.
pub async fn current(cri: &Cri, ns: &str, pod: &str, name: &str) -> Result<Instance, Failure> {
    choose(instances(cri, ns, pod, name).await?, false).ok_or_else(|| {
        Failure::bad_request(format!(
            "container {name:?} in pod {pod:?} is waiting to start: ContainerCreating"
        ))
    })
}

/// The container's log file and whether it is still running.
pub async fn status(cri: &Cri, id: &str) -> Result<(String, bool), Failure> {
    let resp = cri
        .runtime
        .clone()
        .container_status(ContainerStatusRequest {
            container_id: id.to_string(),
            verbose: false,
        })
        .await
        .map_err(|e| cri_failure("reading container status", e))?;
    let status = resp
        .into_inner()
        .status
        .ok_or_else(|| Failure::internal("the runtime returned no container status"))?;
    Ok((
        status.log_path,
        status.state == ContainerState::ContainerRunning as i32,
    ))
}

/// The ready sandbox of pod `ns/pod`.
pub async fn sandbox(cri: &Cri, ns: &str, pod: &str) -> Result<String, Failure> {
    let filter = PodSandboxFilter {
        label_selector: selector(&[(POD_NAMESPACE, ns), (POD_NAME, pod)]),
        ..Default::default()
    };
    let resp = cri
        .runtime
        .clone()
        .list_pod_sandbox(ListPodSandboxRequest {
            filter: Some(filter),
        })
        .await
        .map_err(|e| cri_failure("listing pod sandboxes", e))?;
    resp.into_inner()
        .items
        .into_iter()
        .filter(|s| s.state == PodSandboxState::SandboxReady as i32)
        .max_by_key(|s| s.created_at)
        .map(|s| s.id)
        .ok_or_else(|| Failure::not_found(format!("pod {ns}/{pod} is not running")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(id: &str, restart_count: u32, created_at: i64) -> Instance {
        Instance {
            id: id.into(),
            restart_count,
            created_at,
            running: false,
        }
    }

    #[test]
    fn current_is_the_highest_restart_count_previous_the_one_below() {
        let all = vec![inst("b", 1, 20), inst("c", 2, 30), inst("a", 0, 10)];
        assert_eq!(choose(all.clone(), false).unwrap().id, "c");
        assert_eq!(choose(all, true).unwrap().id, "b");
    }

    #[test]
    fn no_previous_for_a_container_that_never_restarted() {
        assert_eq!(choose(vec![inst("a", 0, 10)], true), None);
        assert_eq!(choose(Vec::new(), false), None);
    }

    #[test]
    fn equal_restart_counts_fall_back_to_creation_time() {
        let all = vec![inst("new", 0, 20), inst("old", 0, 10)];
        assert_eq!(choose(all.clone(), false).unwrap().id, "new");
        assert_eq!(choose(all, true).unwrap().id, "old");
    }
}
