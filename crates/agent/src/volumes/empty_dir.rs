//! emptyDir volumes: a directory that lives as long as the pod, on the node's disk or,
//! with `medium: Memory`, on a tmpfs sized as upstream sizes it: the smallest of the
//! node's allocatable memory, the pod's memory limit and the volume's `sizeLimit`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use k8s_openapi::api::core::v1::{Container, EmptyDirVolumeSource, Pod};
use skiff_api::quantity::Quantity;

use super::downward::Allocatable;
use super::tmpfs;

/// Upstream makes emptyDir world-writable so any container user can use it.
const MODE: u32 = 0o777;

pub fn setup(
    dir: &Path,
    src: &EmptyDirVolumeSource,
    pod: &Pod,
    allocatable: &Allocatable,
    fs_group: Option<u32>,
) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    match src.medium.as_deref().unwrap_or("") {
        "" => {}
        "Memory" => {
            let size = memory_size(src, pod, allocatable)?;
            tmpfs::ensure(dir, size, MODE)
                .map_err(|e| format!("mounting tmpfs on {}: {e}", dir.display()))?;
        }
        other => return Err(format!("unknown storage medium {other:?}")),
    }
    // With an fsGroup the directory belongs to it and new files inherit it (setgid).
    let mode = match fs_group {
        Some(gid) => {
            std::os::unix::fs::lchown(dir, None, Some(gid))
                .map_err(|e| format!("chown {}: {e}", dir.display()))?;
            MODE | 0o2000
        }
        None => MODE,
    };
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", dir.display()))
}

/// Bytes for a memory-backed emptyDir: the smallest positive bound of the node's
/// allocatable memory, the pod's memory limit and `sizeLimit` (None: no bound known).
pub fn memory_size(
    src: &EmptyDirVolumeSource,
    pod: &Pod,
    allocatable: &Allocatable,
) -> Result<Option<u64>, String> {
    let size_limit = src
        .size_limit
        .as_ref()
        .map(|q| {
            q.0.parse::<Quantity>()
                .map_err(|e| format!("sizeLimit: {e}"))
        })
        .transpose()?
        .map(|q| q.value());
    let node = allocatable.get("memory").map(|q| q.value());
    let bounds = [node, pod_memory_limit(pod), size_limit];
    Ok(bounds
        .into_iter()
        .flatten()
        .filter(|&b| b > 0)
        .min()
        .map(|b| b.clamp(0, u64::MAX as i128) as u64))
}

/// The pod's memory limit as its cgroup gets it: the sum over its containers (or the
/// largest init container's, if bigger), and only when every container has one.
fn pod_memory_limit(pod: &Pod) -> Option<i128> {
    let spec = pod.spec.as_ref()?;
    let limit = |c: &Container| -> Option<i128> {
        let q = c.resources.as_ref()?.limits.as_ref()?.get("memory")?;
        q.0.parse::<Quantity>().ok().map(|q| q.value())
    };
    let mut sum = 0i128;
    for c in &spec.containers {
        sum += limit(c)?;
    }
    let mut init_max = 0i128;
    for c in spec.init_containers.iter().flatten() {
        init_max = init_max.max(limit(c)?);
    }
    Some(sum.max(init_max))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;

    fn pod(limits: &[Option<&str>]) -> Pod {
        let containers: Vec<_> = limits
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let mut c = serde_json::json!({"name": format!("c{i}")});
                if let Some(l) = l {
                    c["resources"] = serde_json::json!({"limits": {"memory": l}});
                }
                c
            })
            .collect();
        serde_json::from_value(serde_json::json!({"spec": {"containers": containers}})).unwrap()
    }

    #[test]
    fn memory_size_is_the_smallest_bound() {
        const MI: u64 = 1024 * 1024;
        let mut alloc = Allocatable::new();
        alloc.insert("memory".into(), "1Gi".parse().unwrap());
        let sized = EmptyDirVolumeSource {
            medium: Some("Memory".into()),
            size_limit: Some(K8sQuantity("16Mi".into())),
        };
        let no_limit = EmptyDirVolumeSource {
            medium: Some("Memory".into()),
            size_limit: None,
        };
        let cases = [
            (&sized, pod(&[Some("64Mi")]), Some(16 * MI)),
            (&no_limit, pod(&[Some("64Mi"), Some("32Mi")]), Some(96 * MI)),
            // One container without a limit: the pod has none; the node bounds it.
            (&no_limit, pod(&[Some("64Mi"), None]), Some(1024 * MI)),
        ];
        for (src, p, want) in cases {
            assert_eq!(memory_size(src, &p, &alloc).unwrap(), want);
        }
        assert_eq!(
            memory_size(&no_limit, &pod(&[None]), &Allocatable::new()).unwrap(),
            None
        );
    }
}
