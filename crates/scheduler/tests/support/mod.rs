//! Harness for the scheduler's integration tests: a real Skiff API server in this
//! process (embedded store in a temp dir, start-up copied from the controllers'
//! harness) and the scheduler as its client. Nodes are plain Node objects with
//! allocatable and a Ready condition: scheduling needs no kubelet.

#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::{json, Value};
use skiff_runtime::CancellationToken;

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

impl Cluster {
    /// A server plus the scheduler with default settings.
    pub async fn start() -> Self {
        Self::start_with(skiff_scheduler::Settings::default()).await
    }

    pub async fn start_with(settings: skiff_scheduler::Settings) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let running = skiff_apiserver::start_local(dir.path())
            .await
            .expect("API server starts");
        let client = skiff_runtime::client::from_kubeconfig_file(&running.kubeconfig)
            .await
            .expect("client");
        let shutdown = CancellationToken::new();
        tokio::spawn(skiff_scheduler::run(
            client.clone(),
            settings,
            shutdown.clone(),
        ));
        Self {
            client,
            shutdown,
            running,
            _dir: dir,
        }
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    /// Registers a Ready node with `cpu` cores, 16Gi, 110 pods; `extra` is merged into
    /// the Node (labels, spec.taints, ...).
    pub async fn node(&self, name: &str, cpu: &str, extra: Value) {
        let api: Api<Node> = Api::all(self.client.clone());
        let mut node = json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        });
        merge(&mut node, &extra);
        let node: Node = serde_json::from_value(node).expect("node");
        api.create(&PostParams::default(), &node)
            .await
            .expect("create node");
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let amounts = json!({"cpu": cpu, "memory": "16Gi", "pods": "110"});
        api.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "capacity": amounts,
                "allocatable": amounts,
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                    "lastHeartbeatTime": now, "lastTransitionTime": now}],
            }})),
        )
        .await
        .expect("node status");
    }

    /// Creates a pod in `default` with one container requesting `cpu`; `extra` is
    /// merged into the Pod.
    pub async fn pod(&self, name: &str, cpu: &str, extra: Value) -> Pod {
        let mut pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "busybox",
                "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}}]},
        });
        merge(&mut pod, &extra);
        let pod: Pod = serde_json::from_value(pod).expect("pod");
        self.pods()
            .create(&PostParams::default(), &pod)
            .await
            .expect("create pod")
    }

    /// Waits until the pod is bound and returns its node.
    pub async fn bound(&self, name: &str) -> String {
        let pods = self.pods();
        eventually(
            &format!("pod {name} bound"),
            Duration::from_secs(20),
            || {
                let pods = pods.clone();
                async move {
                    pods.get(name)
                        .await
                        .ok()
                        .and_then(|p| p.spec.and_then(|s| s.node_name))
                }
            },
        )
        .await
    }

    /// Waits until the pod has PodScheduled=False/Unschedulable and returns its message.
    pub async fn unschedulable(&self, name: &str) -> String {
        let pods = self.pods();
        eventually(
            &format!("pod {name} unschedulable"),
            Duration::from_secs(20),
            || {
                let pods = pods.clone();
                async move {
                    let p = pods.get(name).await.ok()?;
                    let c = p
                        .status?
                        .conditions?
                        .into_iter()
                        .find(|c| c.type_ == "PodScheduled")?;
                    (c.status == "False" && c.reason.as_deref() == Some("Unschedulable"))
                        .then(|| c.message.unwrap_or_default())
                }
            },
        )
        .await
    }

    /// Events about the pod `name` with `reason`.
    pub async fn events(&self, name: &str, reason: &str) -> Vec<Event> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), "default");
        api.list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
            .into_iter()
            .filter(|e| {
                e.involved_object.name.as_deref() == Some(name)
                    && e.reason.as_deref() == Some(reason)
            })
            .collect()
    }

    /// Waits for an event about `name` with `reason` and returns its message.
    pub async fn event(&self, name: &str, reason: &str) -> String {
        eventually(
            &format!("{reason} event for {name}"),
            Duration::from_secs(20),
            || async {
                self.events(name, reason)
                    .await
                    .into_iter()
                    .next()
                    .and_then(|e| e.message)
            },
        )
        .await
    }
}

fn merge(target: &mut Value, extra: &Value) {
    match (target, extra) {
        (Value::Object(t), Value::Object(e)) => {
            for (k, v) in e {
                match t.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                    _ => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (t, e) => *t = e.clone(),
    }
}

/// Polls `f` every 100 ms until it returns `Some`, failing the test after `timeout`.
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
