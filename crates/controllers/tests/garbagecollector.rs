//! The garbage collector against a real API server: background cascade, foreground
//! deletion held by a blocking dependent, orphaning (through the API and through the
//! real kubectl), cluster-scoped owners, and invalid cluster-scoped dependents.

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Resource};
use support::{eventually, Cluster};

const WAIT: Duration = Duration::from_secs(30);

fn owner_ref<K: Resource<DynamicType = ()>>(owner: &K, block: bool) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "name": owner.meta().name,
        "uid": owner.meta().uid,
        "blockOwnerDeletion": block,
    })
}

async fn configmap(
    api: &Api<ConfigMap>,
    name: &str,
    owners: Vec<serde_json::Value>,
    finalizers: &[&str],
) -> ConfigMap {
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "ownerReferences": owners, "finalizers": finalizers},
        "data": {"k": "v"},
    }))
    .unwrap();
    api.create(&PostParams::default(), &cm).await.unwrap()
}

async fn gone<K>(api: &Api<K>, name: &str, what: &str)
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    eventually(what, WAIT, || async {
        api.get_opt(name).await.ok()?.is_none().then_some(())
    })
    .await;
}

fn owner_uids(cm: &ConfigMap) -> Vec<String> {
    cm.metadata
        .owner_references
        .iter()
        .flatten()
        .map(|r| r.uid.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_deletes_dependents_whose_owners_are_all_gone() {
    let cluster = Cluster::start(&["garbagecollector"]).await;
    let cms = cluster.api::<ConfigMap>("default");
    let owner = configmap(&cms, "owner", vec![], &[]).await;
    let keeper = configmap(&cms, "keeper", vec![], &[]).await;
    configmap(&cms, "only-child", vec![owner_ref(&owner, false)], &[]).await;
    configmap(
        &cms,
        "shared",
        vec![owner_ref(&owner, false), owner_ref(&keeper, true)],
        &[],
    )
    .await;

    cms.delete("owner", &DeleteParams::default()).await.unwrap();
    gone(&cms, "only-child", "dependent of the deleted owner deleted").await;
    let shared = eventually(
        "shared dependent loses the dead reference",
        WAIT,
        || async {
            let cm = cms.get("shared").await.ok()?;
            (owner_uids(&cm).len() == 1).then_some(cm)
        },
    )
    .await;
    assert_eq!(
        owner_uids(&shared),
        vec![keeper.metadata.uid.clone().unwrap()]
    );
    assert!(cms.get_opt("keeper").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependents_created_after_their_owner_is_gone_are_deleted() {
    let cluster = Cluster::start(&["garbagecollector"]).await;
    let cms = cluster.api::<ConfigMap>("default");
    let owner = configmap(&cms, "owner", vec![], &[]).await;
    cms.delete("owner", &DeleteParams::default()).await.unwrap();
    // Same name, new object: the reference names the old uid, so it is dangling.
    configmap(&cms, "owner", vec![], &[]).await;
    configmap(&cms, "late", vec![owner_ref(&owner, false)], &[]).await;
    gone(&cms, "late", "dependent of a vanished owner deleted").await;
    assert!(
        cms.get_opt("owner").await.unwrap().is_some(),
        "the new same-named object is no owner"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreground_owner_waits_for_blocking_dependents() {
    let cluster = Cluster::start(&["garbagecollector"]).await;
    let cms = cluster.api::<ConfigMap>("default");
    let owner = configmap(&cms, "owner", vec![], &[]).await;
    // A finalizer of its own keeps the blocking dependent around while being deleted.
    configmap(
        &cms,
        "blocker",
        vec![owner_ref(&owner, true)],
        &["test.skiff.dev/hold"],
    )
    .await;
    configmap(&cms, "loose", vec![owner_ref(&owner, false)], &[]).await;

    cms.delete("owner", &DeleteParams::foreground())
        .await
        .unwrap();
    gone(&cms, "loose", "non-blocking dependent deleted").await;
    eventually("blocking dependent being deleted", WAIT, || async {
        cms.get("blocker")
            .await
            .ok()?
            .metadata
            .deletion_timestamp
            .map(|_| ())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held = cms
        .get("owner")
        .await
        .expect("owner still there while a dependent blocks");
    assert!(held.metadata.deletion_timestamp.is_some());
    assert_eq!(
        held.metadata.finalizers,
        Some(vec!["foregroundDeletion".to_string()])
    );

    cms.patch(
        "blocker",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    gone(&cms, "blocker", "blocking dependent gone").await;
    gone(&cms, "owner", "owner gone once nothing blocks it").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_keeps_dependents_without_the_reference() {
    let cluster = Cluster::start(&["garbagecollector"]).await;
    let cms = cluster.api::<ConfigMap>("default");
    let owner = configmap(&cms, "owner", vec![], &[]).await;
    let other = configmap(&cms, "other", vec![], &[]).await;
    configmap(
        &cms,
        "child",
        vec![owner_ref(&owner, true), owner_ref(&other, false)],
        &[],
    )
    .await;

    cms.delete("owner", &DeleteParams::orphan()).await.unwrap();
    gone(&cms, "owner", "orphaning owner gone").await;
    let child = cms.get("child").await.expect("orphaned dependent kept");
    assert_eq!(
        owner_uids(&child),
        vec![other.metadata.uid.clone().unwrap()]
    );
}

fn kubectl(cluster: &Cluster, args: &[&str]) -> std::process::Output {
    std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&cluster.running.kubeconfig)
        .args(args)
        .arg("--timeout=60s")
        .output()
        .expect("kubectl runs")
}

fn replicaset(name: &str) -> ReplicaSet {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
        },
    }))
    .unwrap()
}

fn owned_pod(name: &str, owner: &ReplicaSet) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "ownerReferences": [owner_ref(owner, true)]},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_cascades_to_pods_and_orphans_on_request() {
    let cluster = Cluster::start(&["garbagecollector"]).await;
    cluster.fake_kubelet(&["node-a"]).await;
    let rss = cluster.api::<ReplicaSet>("default");
    let pods = cluster.api::<Pod>("default");
    let cascade = rss
        .create(&PostParams::default(), &replicaset("cascade"))
        .await
        .unwrap();
    let keep = rss
        .create(&PostParams::default(), &replicaset("keep"))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &owned_pod("cascade-1", &cascade))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &owned_pod("keep-1", &keep))
        .await
        .unwrap();
    eventually("pods running", WAIT, || async {
        let a = pods.get("cascade-1").await.ok()?.status?.phase;
        let b = pods.get("keep-1").await.ok()?.status?.phase;
        (a.as_deref() == Some("Running") && b.as_deref() == Some("Running")).then_some(())
    })
    .await;

    let out = kubectl(
        &cluster,
        &["delete", "replicaset", "keep", "--cascade=orphan"],
    );
    assert!(
        out.status.success(),
        "kubectl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    gone(&rss, "keep", "orphaning ReplicaSet gone").await;
    let kept = pods.get("keep-1").await.expect("orphaned pod kept");
    assert!(kept
        .metadata
        .owner_references
        .unwrap_or_default()
        .is_empty());
    assert!(kept.metadata.deletion_timestamp.is_none());

    let out = kubectl(&cluster, &["delete", "replicaset", "cascade"]);
    assert!(
        out.status.success(),
        "kubectl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    gone(&pods, "cascade-1", "pod of the deleted ReplicaSet deleted").await;

    let fg = rss
        .create(&PostParams::default(), &replicaset("fg"))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &owned_pod("fg-1", &fg))
        .await
        .unwrap();
    let out = kubectl(
        &cluster,
        &["delete", "replicaset", "fg", "--cascade=foreground"],
    );
    assert!(
        out.status.success(),
        "kubectl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    gone(
        &pods,
        "fg-1",
        "pod of the foreground-deleted ReplicaSet deleted",
    )
    .await;
    gone(&rss, "fg", "foreground-deleted ReplicaSet gone").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_scoped_owner_and_invalid_cluster_scoped_dependent() {
    let cluster = Cluster::start(&["garbagecollector"]).await;
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    let node: Node =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "owner-node"}})).unwrap();
    let node = nodes.create(&PostParams::default(), &node).await.unwrap();
    let cms = cluster.api::<ConfigMap>("default");
    configmap(&cms, "node-child", vec![owner_ref(&node, false)], &[]).await;
    let anchor = configmap(&cms, "anchor", vec![], &[]).await;

    // A cluster-scoped object cannot be owned by a namespaced one: the reference counts
    // as absent, so the object is collected although the ConfigMap exists.
    let roles: Api<ClusterRole> = Api::all(cluster.client.clone());
    let role: ClusterRole = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "invalid-child", "ownerReferences": [owner_ref(&anchor, false)]},
    }))
    .unwrap();
    roles.create(&PostParams::default(), &role).await.unwrap();
    gone(
        &roles,
        "invalid-child",
        "cluster-scoped dependent of a namespaced owner collected",
    )
    .await;

    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        cms.get_opt("node-child").await.unwrap().is_some(),
        "live cluster-scoped owner keeps it"
    );
    nodes
        .delete("owner-node", &DeleteParams::default())
        .await
        .unwrap();
    gone(&cms, "node-child", "dependent of the deleted Node deleted").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_to_an_owner_in_another_namespace_counts_as_absent() {
    let cluster = Cluster::start(&["garbagecollector"]).await;
    cluster.namespace("team-a").await;
    cluster.namespace("team-b").await;
    let owner = configmap(&cluster.api::<ConfigMap>("team-a"), "owner", vec![], &[]).await;
    let cms_b = cluster.api::<ConfigMap>("team-b");
    configmap(&cms_b, "cross", vec![owner_ref(&owner, false)], &[]).await;
    gone(
        &cms_b,
        "cross",
        "dependent naming an owner of another namespace collected",
    )
    .await;
    assert!(cluster
        .api::<ConfigMap>("team-a")
        .get_opt("owner")
        .await
        .unwrap()
        .is_some());
    let events = cluster.api::<k8s_openapi::api::core::v1::Event>("team-b");
    eventually("OwnerRefInvalidNamespace event", WAIT, || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items.into_iter().find(|e| {
            e.reason.as_deref() == Some("OwnerRefInvalidNamespace")
                && e.type_.as_deref() == Some("Warning")
                && e.involved_object.name.as_deref() == Some("cross")
        })
    })
    .await;
}
