//! Decisions per second of the scheduler's core alone (no API server): N nodes,
//! M pending pods, each decision followed by the informer's confirmation of the bind.
//!
//! `cargo run -p skiff-scheduler --example core_throughput -- 5000 10000 [1]`
//! (build with optimizations for meaningful figures).

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::json;
use skiff_scheduler::core::{Core, CoreConfig, Outcome};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let nodes = args.first().copied().unwrap_or(5000);
    let pods = args.get(1).copied().unwrap_or(10000);
    // A third argument of 1 makes the pods replicas of one ReplicaSet, so upstream's
    // default topology spreading (hostname and zone) scores every decision.
    let owned = args.get(2) == Some(&1);
    let mut core = Core::new(CoreConfig {
        scheduler_name: "default-scheduler".into(),
        initial_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(10),
        max_unschedulable: Duration::from_secs(300),
        percentage_of_nodes_to_score: None,
        seed: 1,
    });
    let now = Instant::now();
    for i in 0..nodes {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": format!("node-{i}"), "labels": {"kubernetes.io/hostname": format!("node-{i}"), "topology.kubernetes.io/zone": format!("zone-{}", i % 3)}},
            "status": {"allocatable": {"cpu": "32", "memory": "128Gi", "pods": "110"}},
        }))
        .expect("node");
        core.node_changed(None, Some(&Arc::new(node)), now);
    }
    if owned {
        core.controller_changed(
            "ReplicaSet",
            "default",
            "bench",
            Some(
                serde_json::from_value(json!({"matchLabels": {"app": "bench"}})).expect("selector"),
            ),
        );
    }
    let owners = if owned {
        json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "bench", "uid": "u", "controller": true}])
    } else {
        json!([])
    };
    for i in 0..pods {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": format!("pod-{i}"), "namespace": "default", "resourceVersion": "1", "labels": {"app": "bench"}, "ownerReferences": owners},
            "spec": {"schedulerName": "default-scheduler", "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                "resources": {"requests": {"cpu": "100m", "memory": "100Mi"}}}]},
        }))
        .expect("pod");
        core.pod_changed(None, Some(&Arc::new(pod)), now);
    }
    let start = Instant::now();
    let mut bound = 0;
    while let Some((outcome, _)) = core.schedule_one(now) {
        if let Outcome::Bind { pod, node } = outcome {
            let mut confirmed = (*pod.pod).clone();
            if let Some(spec) = confirmed.spec.as_mut() {
                spec.node_name = Some(node);
            }
            confirmed.metadata.resource_version = Some("2".into());
            core.pod_changed(Some(&pod.pod), Some(&Arc::new(confirmed)), now);
            bound += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{nodes} nodes, {pods} pods: {bound} bound in {secs:.2} s = {:.0} pods/s",
        bound as f64 / secs
    );
}
