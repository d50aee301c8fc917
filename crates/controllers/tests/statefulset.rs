//! The StatefulSet controller against a real API server and the fake kubelet.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use support::{eventually, Cluster};

fn set(name: &str, replicas: i32, extra: serde_json::Value) -> StatefulSet {
    let mut spec = serde_json::json!({
        "replicas": replicas,
        "serviceName": "nginx",
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}
        },
    });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    serde_json::from_value(serde_json::json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

/// What a pod watch saw, in order: ("add" | "delete", pod name, names Ready at the time).
type Log = Arc<Mutex<Vec<(String, String, Vec<String>)>>>;

fn record_pods(cluster: &Cluster) -> Log {
    let log: Log = Arc::default();
    let out = log.clone();
    let api = cluster.api::<Pod>("default");
    tokio::spawn(async move {
        let mut ready: BTreeMap<String, bool> = BTreeMap::new();
        let mut known: BTreeMap<String, ()> = BTreeMap::new();
        let mut stream = watcher(api, watcher::Config::default()).boxed();
        while let Some(Ok(ev)) = stream.next().await {
            let (pods, deleted) = match ev {
                watcher::Event::Apply(p) | watcher::Event::InitApply(p) => (vec![p], false),
                watcher::Event::Delete(p) => (vec![p], true),
                _ => continue,
            };
            for p in pods {
                let name = p.metadata.name.clone().unwrap_or_default();
                let now_ready: Vec<String> = ready
                    .iter()
                    .filter(|(_, r)| **r)
                    .map(|(n, _)| n.clone())
                    .collect();
                if deleted {
                    known.remove(&name);
                    ready.remove(&name);
                    out.lock().unwrap().push(("delete".into(), name, now_ready));
                    continue;
                }
                if known.insert(name.clone(), ()).is_none() {
                    out.lock()
                        .unwrap()
                        .push(("add".into(), name.clone(), now_ready));
                }
                let is_ready = p
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                ready.insert(name, is_ready && p.metadata.deletion_timestamp.is_none());
            }
        }
    });
    log
}

fn events(log: &Log, kind: &str) -> Vec<(String, Vec<String>)> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|(k, _, _)| k == kind)
        .map(|(_, n, r)| (n.clone(), r.clone()))
        .collect()
}

async fn ready_replicas(sets: &kube::Api<StatefulSet>, name: &str, want: i32) -> StatefulSet {
    eventually(
        &format!("{name} has {want} ready"),
        Duration::from_secs(40),
        || async {
            let s = sets.get(name).await.ok()?;
            let st = s.status.clone()?;
            (st.ready_replicas == Some(want) && st.replicas == want).then_some(s)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_ready_creates_in_order_with_claims_and_scales_down_from_the_top() {
    let cluster = Cluster::start(&["statefulset"]).await;
    cluster.fake_kubelet(&["node-a", "node-b"]).await;
    let log = record_pods(&cluster);
    let sets = cluster.api::<StatefulSet>("default");
    let s = set(
        "web",
        3,
        serde_json::json!({"volumeClaimTemplates": [{
            "metadata": {"name": "www"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
        }]}),
    );
    sets.create(&PostParams::default(), &s).await.unwrap();
    let got = ready_replicas(&sets, "web", 3).await;

    // Each pod appeared only once its predecessors were Ready.
    let adds = events(&log, "add");
    let names: Vec<&str> = adds.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, vec!["web-0", "web-1", "web-2"]);
    assert!(
        adds[1].1.contains(&"web-0".to_string()),
        "web-1 created before web-0 was Ready"
    );
    assert!(
        adds[2].1.contains(&"web-0".to_string()) && adds[2].1.contains(&"web-1".to_string()),
        "web-2 created before web-0 and web-1 were Ready"
    );

    let claims = cluster.api::<PersistentVolumeClaim>("default");
    for i in 0..3 {
        let c = claims
            .get(&format!("www-web-{i}"))
            .await
            .expect("claim exists");
        assert_eq!(
            c.metadata
                .labels
                .unwrap_or_default()
                .get("app")
                .map(String::as_str),
            Some("web")
        );
    }
    let pod = cluster.api::<Pod>("default").get("web-1").await.unwrap();
    let spec = pod.spec.clone().unwrap();
    assert_eq!(spec.hostname.as_deref(), Some("web-1"));
    assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
    let claim = spec
        .volumes
        .unwrap_or_default()
        .into_iter()
        .find(|v| v.name == "www")
        .and_then(|v| v.persistent_volume_claim)
        .map(|c| c.claim_name);
    assert_eq!(claim.as_deref(), Some("www-web-1"));
    let labels = pod.metadata.labels.unwrap_or_default();
    assert_eq!(
        labels
            .get("statefulset.kubernetes.io/pod-name")
            .map(String::as_str),
        Some("web-1")
    );
    assert_eq!(
        labels
            .get("apps.kubernetes.io/pod-index")
            .map(String::as_str),
        Some("1")
    );
    let status = got.status.unwrap();
    assert_eq!(
        labels.get("controller-revision-hash"),
        status.update_revision.as_ref()
    );
    assert_eq!(status.current_revision, status.update_revision);
    assert_eq!(status.observed_generation, got.metadata.generation);
    let revs = cluster
        .api::<ControllerRevision>("default")
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(revs.items.len(), 1);

    // Scale down to one: web-2 goes first, then web-1; claims stay (Retain).
    sets.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    ready_replicas(&sets, "web", 1).await;
    let deletes: Vec<String> = events(&log, "delete").into_iter().map(|(n, _)| n).collect();
    assert_eq!(deletes, vec!["web-2", "web-1"]);
    assert!(
        claims.get("www-web-2").await.is_ok(),
        "claims are retained by default"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_rolling_update_stops_at_the_partition() {
    let cluster = Cluster::start(&["statefulset"]).await;
    cluster.fake_kubelet(&["node-a"]).await;
    let sets = cluster.api::<StatefulSet>("default");
    let pods = cluster.api::<Pod>("default");
    let s = set(
        "db",
        3,
        serde_json::json!({"podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}}),
    );
    sets.create(&PostParams::default(), &s).await.unwrap();
    let before = ready_replicas(&sets, "db", 3).await.status.unwrap();
    sets.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}}})),
    )
    .await
    .unwrap();
    let image = |p: &Pod| {
        p.spec
            .as_ref()
            .map(|s| s.containers[0].image.clone().unwrap_or_default())
    };
    let status = eventually(
        "ordinals 1 and 2 updated",
        Duration::from_secs(40),
        || async {
            let st = sets.get("db").await.ok()?.status?;
            (st.updated_replicas == Some(2) && st.ready_replicas == Some(3)).then_some(st)
        },
    )
    .await;
    assert_ne!(status.update_revision, before.update_revision);
    assert_eq!(
        status.current_revision, before.current_revision,
        "current revision stays below the partition"
    );
    for (name, want) in [
        ("db-0", "nginx:1"),
        ("db-1", "nginx:2"),
        ("db-2", "nginx:2"),
    ] {
        let p = pods.get(name).await.unwrap();
        assert_eq!(image(&p).as_deref(), Some(want), "{name}");
    }

    // Partition 0 finishes the update and makes the new revision current.
    sets.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(
            serde_json::json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}}}}),
        ),
    )
    .await
    .unwrap();
    let done = eventually("all updated", Duration::from_secs(40), || async {
        let st = sets.get("db").await.ok()?.status?;
        (st.updated_replicas == Some(3)
            && st.current_revision == st.update_revision
            && st.ready_replicas == Some(3))
        .then_some(st)
    })
    .await;
    assert_eq!(done.current_replicas, Some(3));
    assert_eq!(
        image(&pods.get("db-0").await.unwrap()).as_deref(),
        Some("nginx:2")
    );
}
