//! The DaemonSet controller against a real API server and the fake kubelet (which binds
//! pods to the node their required `metadata.name` affinity names).

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::Api;
use support::{eventually, Cluster};

fn daemonset(name: &str, node_selector: Option<serde_json::Value>) -> DaemonSet {
    let mut pod_spec = serde_json::json!({"containers": [{"name": "c", "image": "agent:1"}]});
    if let Some(sel) = node_selector {
        pod_spec["nodeSelector"] = sel;
    }
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec},
        }
    }))
    .unwrap()
}

/// Node → number of live pods of `app` running there.
async fn placement(cluster: &Cluster, app: &str) -> BTreeMap<String, usize> {
    let pods = cluster
        .api::<Pod>("default")
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let mut out = BTreeMap::new();
    for p in pods {
        if p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        let node = p.spec.and_then(|s| s.node_name).unwrap_or_default();
        if running {
            *out.entry(node).or_insert(0) += 1;
        }
    }
    out
}

fn expect(pairs: &[&str]) -> BTreeMap<String, usize> {
    pairs.iter().map(|n| (n.to_string(), 1)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pod_per_node_and_a_new_node_gets_one() {
    let cluster = Cluster::start(&["daemonset"]).await;
    cluster.fake_kubelet(&["node-a", "node-b"]).await;
    let sets = cluster.api::<DaemonSet>("default");
    sets.create(&PostParams::default(), &daemonset("agent", None))
        .await
        .unwrap();
    eventually("a pod on each node", Duration::from_secs(30), || async {
        (placement(&cluster, "agent").await == expect(&["node-a", "node-b"])).then_some(())
    })
    .await;
    let status = eventually("status counts", Duration::from_secs(30), || async {
        let s = sets.get("agent").await.ok()?.status?;
        (s.number_ready == 2).then_some(s)
    })
    .await;
    assert_eq!(status.desired_number_scheduled, 2);
    assert_eq!(status.current_number_scheduled, 2);
    assert_eq!(status.updated_number_scheduled, Some(2));
    assert_eq!(status.number_misscheduled, 0);

    cluster.fake_kubelet(&["node-c"]).await;
    eventually(
        "the new node gets a pod",
        Duration::from_secs(30),
        || async {
            (placement(&cluster, "agent").await == expect(&["node-a", "node-b", "node-c"]))
                .then_some(())
        },
    )
    .await;
    eventually("desired follows", Duration::from_secs(30), || async {
        let s = sets.get("agent").await.ok()?.status?;
        (s.desired_number_scheduled == 3 && s.number_ready == 3).then_some(())
    })
    .await;

    // A template change rolls out to every node.
    sets.patch(
        "agent",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "agent:2"}]}}}})),
    )
    .await
    .unwrap();
    eventually("rolled out", Duration::from_secs(60), || async {
        let s = sets.get("agent").await.ok()?.status?;
        let done = s.updated_number_scheduled == Some(3) && s.number_available == Some(3);
        let pods = cluster
            .api::<Pod>("default")
            .list(&ListParams::default().labels("app=agent"))
            .await
            .ok()?;
        let images: Vec<String> = pods
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| p.spec.as_ref()?.containers[0].image.clone())
            .collect();
        (done && images.len() == 3 && images.iter().all(|i| i == "agent:2")).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_selector_picks_nodes_and_unlabelled_nodes_lose_their_pod() {
    let cluster = Cluster::start(&["daemonset"]).await;
    cluster.fake_kubelet(&["node-a", "node-b"]).await;
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    let label =
        |v: Option<&str>| Patch::Merge(serde_json::json!({"metadata": {"labels": {"role": v}}}));
    nodes
        .patch("node-a", &PatchParams::default(), &label(Some("edge")))
        .await
        .unwrap();
    let sets = cluster.api::<DaemonSet>("default");
    sets.create(
        &PostParams::default(),
        &daemonset("edge", Some(serde_json::json!({"role": "edge"}))),
    )
    .await
    .unwrap();
    eventually("only node-a", Duration::from_secs(30), || async {
        (placement(&cluster, "edge").await == expect(&["node-a"])).then_some(())
    })
    .await;
    let s = sets.get("edge").await.unwrap().status.unwrap();
    assert_eq!(s.desired_number_scheduled, 1);

    nodes
        .patch("node-b", &PatchParams::default(), &label(Some("edge")))
        .await
        .unwrap();
    eventually("node-b joins", Duration::from_secs(30), || async {
        (placement(&cluster, "edge").await == expect(&["node-a", "node-b"])).then_some(())
    })
    .await;
    nodes
        .patch("node-a", &PatchParams::default(), &label(None))
        .await
        .unwrap();
    eventually("node-a's pod removed", Duration::from_secs(30), || async {
        (placement(&cluster, "edge").await == expect(&["node-b"])).then_some(())
    })
    .await;
}
