//! Pod cgroups: runc creates `/kubepods[/burstable|/besteffort]/pod<uid>` under every
//! controller for the pod's containers but removes only the containers' own; the agent
//! removes the pod's once its containers are gone, as the kubelet's pod container
//! manager does (otherwise each pod leaves empty cgroups behind).

use std::path::{Path, PathBuf};

/// The pod's cgroup directories under `root` (one per controller and QoS class that
/// exists), deepest first.
pub fn pod_dirs(root: &Path, uid: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(controllers) = std::fs::read_dir(root) else {
        return out;
    };
    for c in controllers.flatten() {
        for qos in ["", "burstable", "besteffort"] {
            let mut dir = c.path().join("kubepods");
            if !qos.is_empty() {
                dir = dir.join(qos);
            }
            let pod = dir.join(format!("pod{uid}"));
            if pod.is_dir() {
                // Container cgroups a killed runc left behind come first.
                if let Ok(children) = std::fs::read_dir(&pod) {
                    out.extend(children.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
                }
                out.push(pod);
            }
        }
    }
    out
}

/// Removes the pod's (empty) cgroups; ones still holding processes stay.
pub fn remove_pod(uid: &str) {
    if uid.is_empty() || uid.contains('/') {
        return;
    }
    for dir in pod_dirs(Path::new("/sys/fs/cgroup"), uid) {
        if let Err(e) = std::fs::remove_dir(&dir) {
            tracing::debug!(dir = %dir.display(), "removing a pod cgroup: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_pods_dirs_under_every_controller_children_first() {
        let root = tempfile::tempdir().unwrap();
        for d in [
            "memory/kubepods/besteffort/podu1/c1",
            "cpu/kubepods/besteffort/podu1",
            "memory/kubepods/burstable/podu2",
            "pids/kubepods/podu1",
        ] {
            std::fs::create_dir_all(root.path().join(d)).unwrap();
        }
        let dirs = pod_dirs(root.path(), "u1");
        let rel: Vec<String> = dirs
            .iter()
            .map(|d| d.strip_prefix(root.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(rel.len(), 4, "{rel:?}");
        let child = rel
            .iter()
            .position(|r| r == "memory/kubepods/besteffort/podu1/c1")
            .unwrap();
        let parent = rel
            .iter()
            .position(|r| r == "memory/kubepods/besteffort/podu1")
            .unwrap();
        assert!(child < parent);
        assert!(rel.contains(&"pids/kubepods/podu1".to_string()));
        assert!(!rel.iter().any(|r| r.contains("u2")));
    }
}
