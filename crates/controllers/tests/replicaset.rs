//! The ReplicaSet and ReplicationController loops against a real API server with a fake
//! kubelet: the user's nginx RC example, self-healing, scaling, adoption and release.

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Event, Pod, ReplicationController};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;
use support::{eventually, Cluster};

const WAIT: Duration = Duration::from_secs(30);

fn owned_by<'a>(pods: &'a [Pod], uid: &str) -> Vec<&'a Pod> {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            p.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|r| r.uid == uid && r.controller == Some(true))
        })
        .collect()
}

fn running(p: &Pod) -> bool {
    p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

async fn running_pods(api: &Api<Pod>, uid: &str, n: usize) -> Vec<String> {
    eventually(&format!("{n} running pods"), WAIT, || async {
        let list = api.list(&ListParams::default()).await.ok()?.items;
        let owned = owned_by(&list, uid);
        (owned.len() == n && owned.iter().all(|p| running(p))).then(|| {
            owned
                .iter()
                .map(|p| p.metadata.name.clone().unwrap_or_default())
                .collect()
        })
    })
    .await
}

fn kubectl(cluster: &Cluster, args: &[&str]) -> std::process::Output {
    let out = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&cluster.running.kubeconfig)
        .args(args)
        .output()
        .expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_rc_example_runs_heals_and_scales() {
    let cluster = Cluster::start(&["replicationcontroller"]).await;
    cluster.fake_kubelet(&["node-a", "node-b"]).await;
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/examples/nginx-rc.yaml"
    );
    let example = if std::path::Path::new(example).exists() {
        example.to_string()
    } else {
        "/work/shared/examples/nginx-rc.yaml".to_string()
    };
    let cluster_ref = &cluster;
    tokio::task::block_in_place(|| kubectl(cluster_ref, &["create", "-f", &example]));
    let rcs: Api<ReplicationController> = cluster.api("default");
    let pods: Api<Pod> = cluster.api("default");
    let rc = rcs.get("nginx").await.unwrap();
    let uid = rc.metadata.uid.clone().unwrap();

    let names = running_pods(&pods, &uid, 3).await;
    for n in &names {
        assert!(
            n.starts_with("nginx-"),
            "pod {n} is named after its controller"
        );
        let p = pods.get(n).await.unwrap();
        assert_eq!(p.metadata.labels.unwrap()["app"], "nginx");
    }
    let status = eventually("RC status counts 3 ready", WAIT, || async {
        let s = rcs.get("nginx").await.ok()?.status?;
        (s.ready_replicas == Some(3) && s.available_replicas == Some(3)).then_some(s)
    })
    .await;
    assert_eq!(status.replicas, 3);
    assert_eq!(status.fully_labeled_replicas, Some(3));
    assert_eq!(status.observed_generation, rc.metadata.generation);

    let events: Api<Event> = cluster.api("default");
    eventually("SuccessfulCreate events", WAIT, || async {
        let list = events.list(&ListParams::default()).await.ok()?.items;
        list.iter()
            .any(|e| {
                e.reason.as_deref() == Some("SuccessfulCreate")
                    && e.message.as_deref() == Some(&format!("Created pod: {}", names[0]))
            })
            .then_some(())
    })
    .await;

    // Self-healing: a deleted pod is replaced.
    pods.delete(&names[0], &DeleteParams::default())
        .await
        .unwrap();
    let healed = running_pods(&pods, &uid, 3).await;
    assert!(!healed.contains(&names[0]));

    // Scale up and down through the scale subresource, as kubectl scale does.
    let cluster_ref = &cluster;
    tokio::task::block_in_place(|| kubectl(cluster_ref, &["scale", "rc", "nginx", "--replicas=5"]));
    running_pods(&pods, &uid, 5).await;
    tokio::task::block_in_place(|| kubectl(cluster_ref, &["scale", "rc", "nginx", "--replicas=2"]));
    running_pods(&pods, &uid, 2).await;
    eventually("status follows the scale-down", WAIT, || async {
        let rc = rcs.get("nginx").await.ok()?;
        let s = rc.status?;
        (s.replicas == 2 && s.observed_generation == rc.metadata.generation).then_some(())
    })
    .await;
    eventually("SuccessfulDelete events", WAIT, || async {
        let list = events.list(&ListParams::default()).await.ok()?.items;
        list.iter()
            .any(|e| {
                e.reason.as_deref() == Some("SuccessfulDelete")
                    && e.message
                        .as_deref()
                        .is_some_and(|m| m.starts_with("Deleted pod: nginx-"))
            })
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicaset_adopts_orphans_and_releases_relabeled_pods() {
    let cluster = Cluster::start(&["replicaset"]).await;
    cluster.fake_kubelet(&["node-a"]).await;
    let pods: Api<Pod> = cluster.api("default");
    let orphan: Pod = serde_json::from_value(json!({
        "metadata": {"name": "orphan", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &orphan).await.unwrap();
    eventually("orphan running", WAIT, || async {
        running(&pods.get("orphan").await.ok()?).then_some(())
    })
    .await;

    let rss: Api<ReplicaSet> = cluster.api("default");
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web", "tier": "fe"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    }))
    .unwrap();
    let rs = rss.create(&PostParams::default(), &rs).await.unwrap();
    let uid = rs.metadata.uid.clone().unwrap();
    let names = running_pods(&pods, &uid, 2).await;
    assert!(
        names.contains(&"orphan".to_string()),
        "orphan adopted: {names:?}"
    );
    let orphan = pods.get("orphan").await.unwrap();
    let r = &orphan.metadata.owner_references.unwrap()[0];
    assert_eq!(
        (r.kind.as_str(), r.name.as_str(), r.controller),
        ("ReplicaSet", "web", Some(true))
    );

    let status = eventually("RS status", WAIT, || async {
        let s = rss.get("web").await.ok()?.status?;
        (s.available_replicas == Some(2)).then_some(s)
    })
    .await;
    assert_eq!(status.replicas, 2);
    assert_eq!(status.ready_replicas, Some(2));
    // The adopted orphan lacks the template's tier label.
    assert_eq!(status.fully_labeled_replicas, Some(1));
    assert_eq!(status.observed_generation, Some(1));

    // Relabel the adopted pod: it is released and replaced.
    pods.patch(
        "orphan",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "other"}}})),
    )
    .await
    .unwrap();
    eventually("relabeled pod released", WAIT, || async {
        let p = pods.get("orphan").await.ok()?;
        p.metadata
            .owner_references
            .is_none_or(|r| r.is_empty())
            .then_some(())
    })
    .await;
    let names = running_pods(&pods, &uid, 2).await;
    assert!(!names.contains(&"orphan".to_string()));
    eventually("fully labeled after replacement", WAIT, || async {
        let s = rss.get("web").await.ok()?.status?;
        (s.fully_labeled_replicas == Some(2) && s.available_replicas == Some(2)).then_some(())
    })
    .await;
    // Released, not deleted.
    assert!(pods.get("orphan").await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_ready_seconds_delays_availability() {
    let cluster = Cluster::start(&["replicaset"]).await;
    cluster.fake_kubelet(&["node-a"]).await;
    let rss: Api<ReplicaSet> = cluster.api("default");
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "slow"},
        "spec": {
            "replicas": 1,
            "minReadySeconds": 2,
            "selector": {"matchLabels": {"app": "slow"}},
            "template": {
                "metadata": {"labels": {"app": "slow"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    }))
    .unwrap();
    rss.create(&PostParams::default(), &rs).await.unwrap();
    // Ready is reported before available: status passes through ready=1, available=0.
    eventually("ready but not yet available", WAIT, || async {
        let s = rss.get("slow").await.ok()?.status?;
        (s.ready_replicas == Some(1) && s.available_replicas.unwrap_or(0) == 0).then_some(())
    })
    .await;
    eventually("available after minReadySeconds", WAIT, || async {
        let s = rss.get("slow").await.ok()?.status?;
        (s.available_replicas == Some(1)).then_some(())
    })
    .await;
}
