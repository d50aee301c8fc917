//! The ResourceQuota controller against a real API server: status.hard copies
//! spec.hard, and status.used follows pods (count and requests.cpu) and other objects.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, ResourceQuota};
use kube::api::PostParams;
use kube::Api;
use support::{eventually, Cluster};

fn pod(name: &str, cpu: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "nginx", "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}}]}
    }))
    .unwrap()
}

async fn used(api: &Api<ResourceQuota>) -> Option<BTreeMap<String, String>> {
    let q = api.get("quota").await.ok()?;
    Some(q.status?.used?.into_iter().map(|(k, v)| (k, v.0)).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_usage_follows_pods_and_objects() {
    let cluster = Cluster::start(&["resourcequota"]).await;
    cluster.namespace("team").await;
    let pods = cluster.api::<Pod>("team");
    pods.create(&PostParams::default(), &pod("a", "250m"))
        .await
        .unwrap();
    let quotas = cluster.api::<ResourceQuota>("team");
    let quota: ResourceQuota = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "quota"},
        "spec": {"hard": {"pods": "10", "requests.cpu": "2", "requests.memory": "1Gi", "configmaps": "5", "count/deployments.apps": "3"}}
    }))
    .unwrap();
    quotas.create(&PostParams::default(), &quota).await.unwrap();
    let want = |pods: &str, cpu: &str, mem: &str, cms: &str| -> BTreeMap<String, String> {
        [
            ("pods", pods),
            ("requests.cpu", cpu),
            ("requests.memory", mem),
            ("configmaps", cms),
            ("count/deployments.apps", "0"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    };
    let w = want("1", "250m", "64Mi", "0");
    eventually("usage of one pod", Duration::from_secs(20), || async {
        (used(&quotas).await? == w).then_some(())
    })
    .await;
    let q = quotas.get("quota").await.unwrap();
    let hard = q.status.unwrap().hard.unwrap();
    assert_eq!(hard["requests.cpu"].0, "2", "status.hard copies spec.hard");

    pods.create(&PostParams::default(), &pod("b", "500m"))
        .await
        .unwrap();
    let cm: ConfigMap =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "cm"}})).unwrap();
    cluster
        .api::<ConfigMap>("team")
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    let w = want("2", "750m", "128Mi", "1");
    eventually(
        "usage of two pods and a config map",
        Duration::from_secs(20),
        || async { (used(&quotas).await? == w).then_some(()) },
    )
    .await;

    pods.delete("a", &Default::default()).await.unwrap();
    let w = want("1", "500m", "64Mi", "1");
    eventually(
        "usage after a pod is deleted",
        Duration::from_secs(20),
        || async { (used(&quotas).await? == w).then_some(()) },
    )
    .await;
}
