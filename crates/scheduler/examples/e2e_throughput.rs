//! End-to-end scheduling throughput against a real API server in this process:
//! N Ready nodes (objects only) and M pending pods are created first; then the
//! scheduler starts, and the time from its start (cache sync included) until every pod
//! is bound is reported.
//!
//! `cargo run -p skiff-scheduler --example e2e_throughput -- 500 2000 [bind-concurrency]`
//! (build with optimizations for meaningful figures).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;
use skiff_runtime::{CancellationToken, InformerFactory};

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let nodes = args.first().copied().unwrap_or(500);
    let pods = args.get(1).copied().unwrap_or(2000);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = skiff_apiserver::Config::new(dir.path());
    config.bind_address = [127, 0, 0, 1].into();
    config.https_port = 0;
    let running = skiff_apiserver::start(config).await.expect("API server");
    while !running.app.is_ready() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let client = skiff_runtime::client::from_kubeconfig_file(&running.kubeconfig)
        .await
        .expect("client");
    let node_api: Api<Node> = Api::all(client.clone());
    futures::stream::iter(0..nodes)
        .map(|i| {
            let api = node_api.clone();
            async move {
                let name = format!("node-{i}");
                let node: Node = serde_json::from_value(json!({"metadata": {"name": name,
                    "labels": {"kubernetes.io/hostname": name}}}))
                .expect("node");
                api.create(&PostParams::default(), &node)
                    .await
                    .expect("create node");
                let amounts = json!({"cpu": "32", "memory": "128Gi", "pods": "110"});
                api.patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": {
                    "capacity": amounts, "allocatable": amounts,
                    "conditions": [{"type": "Ready", "status": "True"}]}})),
                )
                .await
                .expect("node status");
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    let shutdown = CancellationToken::new();
    let factory = InformerFactory::new(client.clone());
    let informer = factory.informer::<Pod>();
    let bound = Arc::new(AtomicUsize::new(0));
    let b = bound.clone();
    informer.on_change(move |c| {
        let was = c
            .old
            .as_ref()
            .and_then(|o| o.spec.as_ref()?.node_name.clone())
            .is_some();
        let is = c
            .new
            .as_ref()
            .and_then(|n| n.spec.as_ref()?.node_name.clone())
            .is_some();
        if is && !was {
            b.fetch_add(1, Ordering::SeqCst);
        }
    });
    factory.start(shutdown.clone());
    factory.wait_synced().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let start = Instant::now();
    futures::stream::iter(0..pods)
        .map(|i| {
            let api = pod_api.clone();
            async move {
                let pod: Pod =
                    serde_json::from_value(json!({"metadata": {"name": format!("pod-{i}")},
                    "spec": {"containers": [{"name": "c", "image": "pause",
                        "resources": {"requests": {"cpu": "100m", "memory": "100Mi"}}}]}}))
                    .expect("pod");
                api.create(&PostParams::default(), &pod)
                    .await
                    .expect("create pod");
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    let created = start.elapsed().as_secs_f64();
    // Scheduling starts once every pod is pending, as upstream's scheduler_perf measures.
    let start = Instant::now();
    let mut settings = skiff_scheduler::Settings::default();
    if let Some(c) = args.get(2) {
        settings.bind_concurrency = *c;
    }
    tokio::spawn(skiff_scheduler::run(
        client.clone(),
        settings,
        shutdown.clone(),
    ));
    while bound.load(Ordering::SeqCst) < pods {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{nodes} nodes, {pods} pods: created in {created:.2} s; scheduler start to all bound {secs:.2} s = {:.0} pods/s",
        pods as f64 / secs
    );
    shutdown.cancel();
}
