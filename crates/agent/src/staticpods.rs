//! Static pods: Pod manifests (YAML or JSON) in `<agent-dir>/manifests/` run on this
//! node without the API server, and each shows in the API as a mirror pod named
//! `<name>-<node>` (annotation kubernetes.io/config.mirror = the manifest's hash), as
//! the kubelet does. Editing a manifest restarts the pod (new hash, new uid); removing
//! it stops the pod and deletes the mirror.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, PostParams};
use kube::Api;
use skiff_runtime::{CancellationToken, Informer};

use crate::manager::{Manager, MIRROR_ANNOTATION};

pub const HASH_ANNOTATION: &str = "kubernetes.io/config.hash";
pub const SOURCE_ANNOTATION: &str = "kubernetes.io/config.source";
pub const SEEN_ANNOTATION: &str = "kubernetes.io/config.seen";

/// 128-bit FNV-1a of the manifest and node: stable across restarts, so a restarted
/// agent finds its static pods' containers under the same uid.
pub fn hash(content: &[u8], node: &str) -> String {
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for b in content.iter().chain([0u8].iter()).chain(node.as_bytes()) {
        h ^= u128::from(*b);
        h = h.wrapping_mul(0x0000000001000000000000000000013B);
    }
    format!("{h:032x}")
}

/// The static pod a manifest describes, as this node runs it.
pub fn static_pod(content: &[u8], node: &str) -> Result<Pod, String> {
    let text = std::str::from_utf8(content).map_err(|e| format!("not UTF-8: {e}"))?;
    let value: serde_json::Value = if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| e.to_string())?
    } else {
        serde_saphyr::from_str(text).map_err(|e| e.to_string())?
    };
    let kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or("");
    if kind != "Pod" {
        return Err(format!("kind is {kind:?}, not Pod"));
    }
    let mut pod: Pod = serde_json::from_value(value).map_err(|e| e.to_string())?;
    let name = pod
        .metadata
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or("metadata.name is missing")?;
    let uid = hash(content, node);
    pod.metadata.name = Some(format!("{name}-{node}"));
    if pod.metadata.namespace.as_deref().unwrap_or("").is_empty() {
        pod.metadata.namespace = Some("default".into());
    }
    pod.metadata.uid = Some(uid.clone());
    let annotations = pod.metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(HASH_ANNOTATION.into(), uid);
    annotations.insert(SOURCE_ANNOTATION.into(), "file".into());
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.node_name = Some(node.into());
    Ok(pod)
}

/// Reads every manifest in `dir`: uid -> pod. Bad files are skipped with a warning.
pub fn scan(dir: &Path, node: &str) -> HashMap<String, Pod> {
    let mut out = HashMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with('.') || !path.is_file() {
            continue;
        }
        let Ok(content) = std::fs::read(&path) else {
            continue;
        };
        match static_pod(&content, node) {
            Ok(pod) => {
                if let Some(uid) = pod.metadata.uid.clone() {
                    out.insert(uid, pod);
                }
            }
            Err(e) => tracing::warn!(file = %path.display(), "skipping static pod manifest: {e}"),
        }
    }
    out
}

/// The mirror pod for a static pod.
pub fn mirror(pod: &Pod, node_uid: Option<&str>) -> Pod {
    let mut m = pod.clone();
    m.metadata.uid = None;
    m.metadata.resource_version = None;
    let hash = pod.metadata.uid.clone().unwrap_or_default();
    let annotations = m.metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(MIRROR_ANNOTATION.into(), hash);
    if let Some(uid) = node_uid {
        m.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "v1".into(),
            kind: "Node".into(),
            name: pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default(),
            uid: uid.into(),
            controller: Some(true),
            ..Default::default()
        }]);
    }
    m.status = None;
    m
}

fn mirror_hash(p: &Pod) -> Option<&str> {
    p.metadata
        .annotations
        .as_ref()?
        .get(MIRROR_ANNOTATION)
        .map(String::as_str)
}

/// Watches the manifest directory (every `period`) and keeps the manager and the
/// mirror pods in step with it.
pub async fn run(
    manager: Arc<Manager>,
    pods: Informer<Pod>,
    nodes: Informer<Node>,
    period: Duration,
    first_scan: tokio::sync::oneshot::Sender<()>,
    shutdown: CancellationToken,
) {
    let dir = manager.config.manifests_dir();
    let node = manager.config.node_name.clone();
    let mut current: HashMap<String, Pod> = HashMap::new();
    let mut first_scan = Some(first_scan);
    loop {
        let found = scan(&dir, &node);
        for uid in current.keys() {
            if !found.contains_key(uid) {
                manager.remove_source(uid);
            }
        }
        for (uid, pod) in &found {
            if !current.contains_key(uid) {
                let mut pod = pod.clone();
                pod.metadata
                    .annotations
                    .get_or_insert_with(BTreeMap::new)
                    .insert(
                        SEEN_ANNOTATION.into(),
                        k8s_openapi::jiff::Timestamp::now().to_string(),
                    );
                manager.upsert(Arc::new(pod), true);
            }
        }
        current = found;
        if let Some(tx) = first_scan.take() {
            let _ = tx.send(());
        }
        if pods.is_synced() {
            sync_mirrors(&manager, &pods, &nodes, &current).await;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
    }
}

async fn sync_mirrors(
    manager: &Manager,
    pods: &Informer<Pod>,
    nodes: &Informer<Node>,
    current: &HashMap<String, Pod>,
) {
    let node_uid = nodes
        .get_named(None, &manager.config.node_name)
        .and_then(|n| n.metadata.uid.clone());
    let wanted: HashMap<(String, String), &Pod> = current
        .values()
        .map(|p| {
            let (ns, name, _) = crate::pod::spec::meta(p);
            ((ns.to_string(), name.to_string()), p)
        })
        .collect();
    // Mirrors of manifests that are gone or changed.
    for existing in pods.list() {
        let Some(hash) = mirror_hash(&existing) else {
            continue;
        };
        let (ns, name, _) = crate::pod::spec::meta(&existing);
        let keep = wanted
            .get(&(ns.to_string(), name.to_string()))
            .is_some_and(|p| p.metadata.uid.as_deref() == Some(hash));
        if !keep && existing.metadata.deletion_timestamp.is_none() {
            let api: Api<Pod> = Api::namespaced(manager.client.clone(), ns);
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                ..Default::default()
            };
            if let Err(e) = api.delete(name, &params).await {
                tracing::debug!(pod = %name, "deleting a stale mirror pod: {e}");
            }
        }
    }
    for ((ns, name), pod) in wanted {
        if pods.get_named(Some(&ns), &name).is_some() {
            continue;
        }
        let api: Api<Pod> = Api::namespaced(manager.client.clone(), &ns);
        match api
            .create(&PostParams::default(), &mirror(pod, node_uid.as_deref()))
            .await
        {
            Ok(_) => {
                tracing::info!(pod = %format!("{ns}/{name}"), "created the mirror pod");
                // Post the static pod's status onto its mirror.
                if let Some(uid) = pod.metadata.uid.clone() {
                    manager.queue.add(uid);
                }
            }
            Err(e) => tracing::debug!(pod = %name, "creating the mirror pod: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_become_static_pods_named_after_the_node() {
        let yaml = b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: c\n    image: busybox:1\n";
        let p = static_pod(yaml, "n1").unwrap();
        assert_eq!(p.metadata.name.as_deref(), Some("web-n1"));
        assert_eq!(p.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(p.spec.as_ref().unwrap().node_name.as_deref(), Some("n1"));
        let uid = p.metadata.uid.clone().unwrap();
        assert_eq!(uid.len(), 32);
        assert_eq!(
            p.metadata.annotations.as_ref().unwrap()[HASH_ANNOTATION],
            uid
        );
        assert_eq!(
            static_pod(yaml, "n1").unwrap().metadata.uid.unwrap(),
            uid,
            "stable"
        );
        assert_ne!(static_pod(yaml, "n2").unwrap().metadata.uid.unwrap(), uid);
        let json = br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"j","namespace":"kube-system"},"spec":{"containers":[]}}"#;
        assert_eq!(
            static_pod(json, "n1")
                .unwrap()
                .metadata
                .namespace
                .as_deref(),
            Some("kube-system")
        );
        assert!(static_pod(b"kind: Service\nmetadata:\n  name: x\n", "n1").is_err());
        assert!(static_pod(b"kind: Pod\nmetadata: {}\n", "n1").is_err());
        assert!(static_pod(b"::: not yaml", "n1").is_err());

        let m = mirror(&p, Some("node-uid"));
        assert_eq!(
            m.metadata.annotations.as_ref().unwrap()[MIRROR_ANNOTATION],
            uid
        );
        assert!(m.metadata.uid.is_none());
        let owner = &m.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("Node", "n1"));
    }

    #[test]
    fn scan_reads_manifests_and_skips_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.yaml"),
            "kind: Pod\nmetadata:\n  name: a\nspec:\n  containers: []\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("bad.yaml"), "kind: Deployment\n").unwrap();
        std::fs::write(
            dir.path().join(".hidden.yaml"),
            "kind: Pod\nmetadata:\n  name: h\n",
        )
        .unwrap();
        let found = scan(dir.path(), "n1");
        assert_eq!(found.len(), 1);
        assert_eq!(
            found.values().next().unwrap().metadata.name.as_deref(),
            Some("a-n1")
        );
    }
}
