//! The node IPAM controller against a real API server: every Node gets its own /24 of
//! the cluster CIDR, a full range leaves a new node without one (CIDRNotAvailable), and
//! a deleted node's subnet goes to the next node.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{DeleteParams, PostParams};
use kube::Api;
use support::{eventually, Cluster};

fn node(name: &str) -> Node {
    serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap()
}

async fn pod_cidr(nodes: &Api<Node>, name: &str) -> Option<String> {
    let n = nodes.get_opt(name).await.ok()??;
    let spec = n.spec?;
    let cidr = spec.pod_cidr?;
    assert_eq!(
        spec.pod_cidrs,
        Some(vec![cidr.clone()]),
        "podCIDRs matches podCIDR"
    );
    Some(cidr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_get_distinct_subnets_and_freed_ones_are_reused() {
    let settings = skiff_controllers::Settings {
        // Room for exactly two nodes.
        cluster_cidr: "10.99.0.0/23".parse().unwrap(),
        node_cidr_mask_size: 24,
        ..Default::default()
    };
    let cluster = Cluster::start_with(&["nodeipam"], settings).await;
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    for name in ["a", "b"] {
        nodes
            .create(&PostParams::default(), &node(name))
            .await
            .unwrap();
    }
    let t = Duration::from_secs(30);
    let a = eventually("a has a subnet", t, || pod_cidr(&nodes, "a")).await;
    let b = eventually("b has a subnet", t, || pod_cidr(&nodes, "b")).await;
    let mut got = vec![a.clone(), b.clone()];
    got.sort();
    assert_eq!(got, vec!["10.99.0.0/24", "10.99.1.0/24"]);

    // The range is full: c waits.
    nodes
        .create(&PostParams::default(), &node("c"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(pod_cidr(&nodes, "c").await, None);

    // Deleting a frees its subnet for the next node that comes.
    nodes.delete("a", &DeleteParams::default()).await.unwrap();
    nodes.delete("c", &DeleteParams::default()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    nodes
        .create(&PostParams::default(), &node("d"))
        .await
        .unwrap();
    let d = eventually("d has a subnet", t, || pod_cidr(&nodes, "d")).await;
    assert_eq!(d, a);
    assert_eq!(pod_cidr(&nodes, "b").await, Some(b), "b keeps its subnet");
}
