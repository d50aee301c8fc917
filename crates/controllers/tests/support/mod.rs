//! Harness for the controllers' integration tests: a real Skiff API server (in this
//! process, embedded store in a temp dir), the named control loops as its clients, and
//! a fake kubelet that stands in for nodes so pods get bound and reach Running/Ready.
//!
//! The fake kubelet is test-only: the shipped stand-in for nodes is `skiff hollow-nodes`.

#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Node, NodeCondition, NodeStatus, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::Api;
use skiff_runtime::{CancellationToken, InformerFactory};

pub struct Cluster {
    pub client: kube::Client,
    pub shutdown: CancellationToken,
    pub running: skiff_apiserver::Running,
    _dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Pod annotation the fake kubelet reads: the container exits with this code right
/// after starting (pods of Jobs); absent, the pod runs until deleted.
pub const EXIT_CODE: &str = "test.skiff.dev/exit-code";

impl Cluster {
    /// A server plus the named loops (see `skiff_controllers::CONTROLLERS`).
    pub async fn start(controllers: &[&str]) -> Self {
        Self::start_with(controllers, skiff_controllers::Settings::default()).await
    }

    pub async fn start_with(controllers: &[&str], settings: skiff_controllers::Settings) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let running = skiff_apiserver::start_local(dir.path())
            .await
            .expect("API server starts");
        let client = skiff_runtime::client::from_kubeconfig_file(&running.kubeconfig)
            .await
            .expect("client");
        let shutdown = CancellationToken::new();
        let only: Vec<String> = controllers.iter().map(|s| s.to_string()).collect();
        tokio::spawn(skiff_controllers::run(
            client.clone(),
            settings,
            &only.leak()[..],
            shutdown.clone(),
        ));
        Self {
            client,
            shutdown,
            running,
            _dir: dir,
        }
    }

    pub fn api<K>(&self, ns: &str) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), ns)
    }

    pub async fn namespace(&self, name: &str) {
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(self.client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
    }

    /// Starts a fake kubelet for `nodes`: registers them Ready, binds unscheduled pods
    /// round-robin (no scheduler needed), marks bound pods Running and Ready (or
    /// Succeeded/Failed per [`EXIT_CODE`]), and finishes deleting terminating pods.
    pub async fn fake_kubelet(&self, nodes: &[&str]) {
        let node_api: Api<Node> = Api::all(self.client.clone());
        for name in nodes {
            let node = Node {
                metadata: ObjectMeta {
                    name: Some(name.to_string()),
                    labels: Some([("kubernetes.io/hostname".to_string(), name.to_string())].into()),
                    ..Default::default()
                },
                ..Default::default()
            };
            let _ = node_api.create(&PostParams::default(), &node).await;
            let now = Time(Timestamp::now());
            let status = NodeStatus {
                capacity: Some(
                    [("cpu", "4"), ("memory", "16Gi"), ("pods", "110")]
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                        .collect(),
                ),
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    reason: Some("KubeletReady".into()),
                    last_heartbeat_time: Some(now.clone()),
                    last_transition_time: Some(now),
                    ..Default::default()
                }]),
                ..Default::default()
            };
            node_api
                .patch_status(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(serde_json::json!({ "status": status })),
                )
                .await
                .expect("node status");
        }
        let factory = InformerFactory::new(self.client.clone());
        let pods = factory.informer::<Pod>();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Arc<Pod>>();
        pods.on_change(move |c| {
            if let Some(p) = &c.new {
                let _ = tx.send(p.clone());
            }
        });
        factory.start(self.shutdown.clone());
        let client = self.client.clone();
        let nodes: Vec<String> = nodes.iter().map(|s| s.to_string()).collect();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let mut next = 0usize;
            loop {
                let pod = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    p = rx.recv() => match p { Some(p) => p, None => return },
                };
                let ns = pod.metadata.namespace.clone().unwrap_or_default();
                let name = pod.metadata.name.clone().unwrap_or_default();
                let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
                if pod.metadata.deletion_timestamp.is_some() {
                    let _ = api
                        .delete(&name, &DeleteParams::default().grace_period(0))
                        .await;
                    continue;
                }
                let spec = pod.spec.clone().unwrap_or_default();
                if spec.node_name.as_deref().unwrap_or("").is_empty() {
                    // DaemonSet pods name their node in a required matchFields term
                    // (what the real scheduler honours); others go round-robin.
                    let node = match required_node_name(&spec) {
                        Some(n) if nodes.contains(&n) => n,
                        Some(_) => continue,
                        None => {
                            next += 1;
                            nodes[(next - 1) % nodes.len()].clone()
                        }
                    };
                    let binding = serde_json::json!({
                        "apiVersion": "v1", "kind": "Binding",
                        "metadata": {"name": name},
                        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
                    });
                    let _ = api
                        .create_subresource::<_, serde_json::Value>(
                            "binding",
                            &name,
                            &PostParams::default(),
                            &binding,
                        )
                        .await;
                    continue;
                }
                let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
                if phase.is_some_and(|p| p != "Pending") {
                    continue;
                }
                let exit = pod
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(EXIT_CODE))
                    .and_then(|v| v.parse::<i32>().ok());
                let now = Timestamp::now().to_string();
                let status = match exit {
                    None => serde_json::json!({
                        "phase": "Running",
                        "startTime": now,
                        "podIP": "10.42.0.10",
                        "conditions": [
                            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                            {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                            {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
                            {"type": "Ready", "status": "True", "lastTransitionTime": now},
                        ],
                    }),
                    Some(code) => serde_json::json!({
                        "phase": if code == 0 { "Succeeded" } else { "Failed" },
                        "startTime": now,
                        "conditions": [
                            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                            {"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": now},
                        ],
                        "containerStatuses": spec.containers.iter().map(|c| serde_json::json!({
                            "name": c.name, "image": c.image, "imageID": "", "ready": false, "restartCount": 0,
                            "state": {"terminated": {"exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" }, "startedAt": now, "finishedAt": now}},
                        })).collect::<Vec<_>>(),
                    }),
                };
                let _ = api
                    .patch_status(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(serde_json::json!({ "status": status })),
                    )
                    .await;
            }
        });
    }
}

/// The node a pod's required node affinity pins it to by `metadata.name`, if any.
fn required_node_name(spec: &k8s_openapi::api::core::v1::PodSpec) -> Option<String> {
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().find_map(|t| {
        t.match_fields.as_ref()?.iter().find_map(|f| {
            (f.key == "metadata.name" && f.operator == "In")
                .then(|| f.values.as_ref()?.first().cloned())
                .flatten()
        })
    })
}

/// Polls `f` until it returns `Some`, failing the test with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
