//! The pod garbage collector against a real API server: terminated pods beyond the
//! threshold go oldest first; pods bound to a node that no longer exists are marked
//! with a DisruptionTarget condition and deleted after the quarantine.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::Api;
use skiff_runtime::InformerFactory;
use support::{eventually, Cluster, EXIT_CODE};

fn pod(name: &str, exit: Option<&str>) -> Pod {
    let annotations = exit.map(|e| serde_json::json!({ EXIT_CODE: e }));
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    }))
    .unwrap()
}

/// Shortened from upstream's 40 s so the test is quick; the default is in Settings.
const QUARANTINE: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_pods_beyond_threshold_are_deleted_oldest_first() {
    let settings = skiff_controllers::Settings {
        terminated_pod_gc_threshold: 2,
        pod_gc_period: Duration::from_secs(1),
        ..Default::default()
    };
    let cluster = Cluster::start_with(&["podgc"], settings).await;
    cluster.fake_kubelet(&["node-a"]).await;
    let pods = cluster.api::<Pod>("default");
    for name in ["done-1", "done-2", "done-3", "done-4"] {
        pods.create(&PostParams::default(), &pod(name, Some("0")))
            .await
            .unwrap();
        // Creation timestamps have one-second resolution: keep the order unambiguous.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    pods.create(&PostParams::default(), &pod("running", None))
        .await
        .unwrap();
    let left = eventually(
        "only the two newest terminated pods left",
        Duration::from_secs(60),
        || async {
            let list = pods.list(&ListParams::default()).await.ok()?;
            let mut names: Vec<String> = list
                .items
                .iter()
                .filter_map(|p| p.metadata.name.clone())
                .collect();
            names.sort();
            (names.len() == 3).then_some(names)
        },
    )
    .await;
    assert_eq!(left, vec!["done-3", "done-4", "running"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_on_a_deleted_node_are_collected_after_quarantine() {
    let settings = skiff_controllers::Settings {
        pod_gc_period: Duration::from_secs(1),
        pod_gc_orphan_quarantine: QUARANTINE,
        ..Default::default()
    };
    let cluster = Cluster::start_with(&["podgc"], settings).await;
    cluster.fake_kubelet(&["node-a"]).await;
    let pods = cluster.api::<Pod>("default");
    pods.create(&PostParams::default(), &pod("orphan", None))
        .await
        .unwrap();
    eventually("pod running", Duration::from_secs(20), || async {
        let p = pods.get("orphan").await.ok()?;
        (p.status?.phase.as_deref() == Some("Running")).then_some(())
    })
    .await;
    // A watch sees every write, so the short-lived Failed + DisruptionTarget state is
    // caught even though the delete follows at once.
    let marked = Arc::new(AtomicBool::new(false));
    let factory = InformerFactory::new(cluster.client.clone());
    let m = marked.clone();
    factory.informer::<Pod>().on_change(move |c| {
        let Some(p) = &c.new else { return };
        let status = p.status.clone().unwrap_or_default();
        let conds = status.conditions.unwrap_or_default();
        if status.phase.as_deref() == Some("Failed")
            && conds.iter().any(|c| {
                c.type_ == "DisruptionTarget"
                    && c.status == "True"
                    && c.reason.as_deref() == Some("DeletionByPodGC")
            })
        {
            m.store(true, Ordering::SeqCst);
        }
    });
    factory.start(cluster.shutdown.clone());
    factory.wait_synced().await;

    let nodes: Api<Node> = Api::all(cluster.client.clone());
    nodes
        .delete("node-a", &DeleteParams::default())
        .await
        .unwrap();
    let started = Instant::now();
    eventually("orphaned pod deleted", Duration::from_secs(120), || async {
        pods.get_opt("orphan").await.ok()?.is_none().then_some(())
    })
    .await;
    // Not before the quarantine.
    assert!(
        started.elapsed() >= QUARANTINE,
        "collected after {:?}",
        started.elapsed()
    );
    assert!(
        marked.load(Ordering::SeqCst),
        "pod was not marked Failed with DisruptionTarget/DeletionByPodGC first"
    );
}
