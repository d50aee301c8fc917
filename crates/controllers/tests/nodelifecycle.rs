//! The node lifecycle controller against a real API server, with a shortened grace
//! period: a node whose Lease stops being renewed goes Ready=Unknown and gets the
//! unreachable taints; pods not tolerating them go at once, those tolerating them for
//! 3 s go after about 3 s, those tolerating them forever stay (marked not Ready); the
//! taints go when the kubelet is back.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::Api;
use support::{eventually, Cluster};

const GRACE: Duration = Duration::from_secs(3);

fn pod(name: &str, node: &str, tolerations: serde_json::Value) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"nodeName": node, "tolerations": tolerations,
                 "containers": [{"name": "c", "image": "nginx"}]}
    }))
    .unwrap()
}

fn unreachable_for(secs: Option<i64>) -> serde_json::Value {
    serde_json::json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                        "effect": "NoExecute", "tolerationSeconds": secs}])
}

/// Renews `node`'s Lease every 300 ms while `alive` is set, as a kubelet would.
fn heartbeat(client: kube::Client, node: &'static str, alive: Arc<AtomicBool>) {
    tokio::spawn(async move {
        let api: Api<Lease> = Api::namespaced(client, "kube-node-lease");
        loop {
            if alive.load(Ordering::SeqCst) {
                let lease = serde_json::json!({
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": node},
                    "spec": {"holderIdentity": node, "leaseDurationSeconds": 40,
                             "renewTime": Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()},
                });
                let _ = api
                    .patch(
                        node,
                        &PatchParams::apply("kubelet").force(),
                        &Patch::Apply(&lease),
                    )
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
}

fn has_taint(node: &Node, key: &str, effect: &str) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|t| t.iter().any(|t| t.key == key && t.effect == effect))
}

fn ready_status(node: &Node) -> Option<(String, Option<String>)> {
    let c = node
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?;
    Some((c.status.clone(), c.reason.clone()))
}

async fn gone(pods: &Api<Pod>, name: &str) -> bool {
    match pods.get(name).await {
        Err(kube::Error::Api(s)) if s.code == 404 => true,
        Ok(p) => p.metadata.deletion_timestamp.is_some(),
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_node_is_tainted_and_its_pods_evicted_by_toleration() {
    let settings = skiff_controllers::Settings {
        node_monitor_grace_period: GRACE,
        ..Default::default()
    };
    let cluster = Cluster::start_with(&["nodelifecycle"], settings).await;
    let (a_alive, b_alive) = (
        Arc::new(AtomicBool::new(true)),
        Arc::new(AtomicBool::new(true)),
    );
    heartbeat(cluster.client.clone(), "node-a", a_alive.clone());
    heartbeat(cluster.client.clone(), "node-b", b_alive.clone());
    cluster.fake_kubelet(&["node-a", "node-b"]).await;
    let pods = cluster.api::<Pod>("default");
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    for p in [
        // tolerationSeconds 0 is "not tolerated" (and keeps the case meaningful once the
        // API server adds upstream's default 300 s tolerations to pods without one).
        pod("doomed", "node-a", unreachable_for(Some(0))),
        pod("patient", "node-a", unreachable_for(Some(3))),
        pod("stays", "node-a", unreachable_for(None)),
        pod("on-b", "node-b", serde_json::json!([])),
    ] {
        pods.create(&PostParams::default(), &p).await.unwrap();
    }
    for name in ["doomed", "patient", "stays", "on-b"] {
        eventually("pod running", Duration::from_secs(20), || async {
            let p = pods.get(name).await.ok()?;
            (p.status?.phase.as_deref() == Some("Running")).then_some(())
        })
        .await;
    }
    // Both nodes heartbeat: past the grace period nothing happens.
    tokio::time::sleep(GRACE + Duration::from_secs(1)).await;
    let a = nodes.get("node-a").await.unwrap();
    assert_eq!(
        ready_status(&a).unwrap().0,
        "True",
        "a renewing node stays Ready"
    );
    assert!(!has_taint(
        &a,
        "node.kubernetes.io/unreachable",
        "NoExecute"
    ));

    a_alive.store(false, Ordering::SeqCst);
    let stopped = Instant::now();
    let a = eventually(
        "node-a unknown and tainted",
        Duration::from_secs(20),
        || async {
            let n = nodes.get("node-a").await.ok()?;
            let unknown = ready_status(&n)? == ("Unknown".into(), Some("NodeStatusUnknown".into()));
            (unknown && has_taint(&n, "node.kubernetes.io/unreachable", "NoExecute")).then_some(n)
        },
    )
    .await;
    let tainted = Instant::now();
    assert!(
        tainted - stopped <= GRACE + Duration::from_secs(5),
        "tainted {:?} after the lease stopped",
        tainted - stopped
    );
    assert!(has_taint(
        &a,
        "node.kubernetes.io/unreachable",
        "NoSchedule"
    ));
    let mem = a.status.as_ref().unwrap().conditions.as_ref().unwrap();
    assert!(mem
        .iter()
        .any(|c| c.type_ == "MemoryPressure" && c.status == "Unknown"));
    let b = nodes.get("node-b").await.unwrap();
    assert_eq!(ready_status(&b).unwrap().0, "True");
    assert!(!has_taint(
        &b,
        "node.kubernetes.io/unreachable",
        "NoExecute"
    ));

    eventually("doomed deleted at once", Duration::from_secs(5), || async {
        gone(&pods, "doomed").await.then_some(())
    })
    .await;
    assert!(
        !gone(&pods, "patient").await,
        "patient tolerates the taint for 3 s"
    );
    eventually(
        "patient deleted after its 3 s",
        Duration::from_secs(10),
        || async { gone(&pods, "patient").await.then_some(()) },
    )
    .await;
    assert!(
        tainted.elapsed() >= Duration::from_secs(1),
        "patient went {:?} after the taint, before its toleration ran out",
        tainted.elapsed()
    );
    let events: Api<Event> = cluster.api("default");
    eventually(
        "TaintManagerEviction event",
        Duration::from_secs(5),
        || async {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items
                .iter()
                .any(|e| {
                    e.reason.as_deref() == Some("TaintManagerEviction")
                        && e.message.as_deref() == Some("Marking for deletion Pod default/doomed")
                })
                .then_some(())
        },
    )
    .await;
    // The pod tolerating forever stays, marked not Ready.
    let stays = eventually("stays marked not ready", Duration::from_secs(5), || async {
        let p = pods.get("stays").await.ok()?;
        let ready = p
            .status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == "Ready")?
            .status
            .clone();
        (ready == "False").then_some(p)
    })
    .await;
    assert!(stays.metadata.deletion_timestamp.is_none());
    assert!(
        !gone(&pods, "on-b").await,
        "pods of healthy nodes are untouched"
    );

    // The kubelet comes back: lease renewed, Ready posted. The taints go.
    a_alive.store(true, Ordering::SeqCst);
    let now = Timestamp::now().to_string();
    nodes
        .patch_status(
            "node-a",
            &PatchParams::default(),
            &Patch::Strategic(serde_json::json!({"status": {"conditions": [
                {"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": now, "lastTransitionTime": now}]}})),
        )
        .await
        .unwrap();
    eventually(
        "node-a's taints removed",
        Duration::from_secs(10),
        || async {
            let n = nodes.get("node-a").await.ok()?;
            let any = n
                .spec?
                .taints
                .unwrap_or_default()
                .iter()
                .any(|t| t.key.starts_with("node.kubernetes.io/"));
            (!any).then_some(())
        },
    )
    .await;
    tokio::time::sleep(GRACE + Duration::from_secs(1)).await;
    let a = nodes.get("node-a").await.unwrap();
    assert_eq!(
        ready_status(&a).unwrap().0,
        "True",
        "a renewing node is not marked again"
    );
    assert!(!gone(&pods, "stays").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_untolerated_no_execute_taint_evicts_and_the_pod_gets_disruption_target() {
    let cluster = Cluster::start(&["nodelifecycle"]).await;
    cluster.fake_kubelet(&["node-a"]).await;
    let pods = cluster.api::<Pod>("default");
    pods.create(
        &PostParams::default(),
        &pod("plain", "node-a", serde_json::json!([])),
    )
    .await
    .unwrap();
    let tolerant = pod(
        "tolerant",
        "node-a",
        serde_json::json!([{"key": "example.com/maintenance", "operator": "Exists"}]),
    );
    pods.create(&PostParams::default(), &tolerant)
        .await
        .unwrap();
    // A finalizer keeps the evicted pod readable, so its condition can be checked.
    pods.patch(
        "plain",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"metadata": {"finalizers": ["example.com/keep"]}})),
    )
    .await
    .unwrap();
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    nodes
        .patch(
            "node-a",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"taints": [
            {"key": "example.com/maintenance", "effect": "NoExecute"}]}})),
        )
        .await
        .unwrap();
    let p = eventually("plain evicted", Duration::from_secs(10), || async {
        let p = pods.get("plain").await.ok()?;
        p.metadata.deletion_timestamp.is_some().then_some(p)
    })
    .await;
    let cond = p
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "DisruptionTarget")
        .unwrap();
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_deref()),
        ("True", Some("DeletionByTaintManager"))
    );
    assert!(!gone(&pods, "tolerant").await);
    pods.patch(
        "plain",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    // The user's taint stays: the controller only manages its own.
    let n = nodes.get("node-a").await.unwrap();
    assert!(has_taint(&n, "example.com/maintenance", "NoExecute"));
}
