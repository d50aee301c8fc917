//! The harness itself works: a pod created by hand is bound and runs on the fake node.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use support::{eventually, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_kubelet_binds_and_runs_pods() {
    let cluster = Cluster::start(&[]).await;
    cluster.fake_kubelet(&["node-a"]).await;
    let pods = cluster.api::<Pod>("default");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    eventually("pod running on node-a", Duration::from_secs(20), || async {
        let p = pods.get("p").await.ok()?;
        let on_node = p.spec.as_ref()?.node_name.as_deref() == Some("node-a");
        let running = p.status.as_ref()?.phase.as_deref() == Some("Running");
        (on_node && running).then_some(())
    })
    .await;
}
