//! The disruption controller against a real API server: a budget's status counts the
//! healthy pods it covers, derives desiredHealthy from minAvailable or from
//! maxUnavailable and the owning ReplicaSet's scale, and the eviction subresource
//! honours the resulting disruptionsAllowed.

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{EvictParams, PostParams};
use support::{eventually, Cluster};

const WAIT: Duration = Duration::from_secs(20);

fn status_of(p: &PodDisruptionBudget) -> Option<(i32, i32, i32, i32, String)> {
    let s = p.status.as_ref()?;
    let reason = s
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "DisruptionAllowed")?
        .reason
        .clone();
    Some((
        s.current_healthy,
        s.desired_healthy,
        s.expected_pods,
        s.disruptions_allowed,
        reason,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_status_follows_pods_and_gates_evictions() {
    let cluster = Cluster::start(&["disruption"]).await;
    cluster.fake_kubelet(&["node-a"]).await;
    // A ReplicaSet of scale 3 (no replicaset loop runs: the test makes its pods).
    let rs: ReplicaSet = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
    }))
    .unwrap();
    let rs = cluster
        .api::<ReplicaSet>("default")
        .create(&PostParams::default(), &rs)
        .await
        .unwrap();
    let pods = cluster.api::<Pod>("default");
    for i in 0..3 {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("web-{i}"), "labels": {"app": "web"},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
                                              "uid": rs.metadata.uid.clone().unwrap(), "controller": true}]},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }
    let pdbs = cluster.api::<PodDisruptionBudget>("default");
    for (name, spec) in [
        (
            "min",
            serde_json::json!({"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}),
        ),
        (
            "max",
            serde_json::json!({"maxUnavailable": "34%", "selector": {"matchLabels": {"app": "web"}}}),
        ),
    ] {
        let pdb: PodDisruptionBudget =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}, "spec": spec}))
                .unwrap();
        pdbs.create(&PostParams::default(), &pdb).await.unwrap();
    }
    // minAvailable 2 of 3 ready pods: one disruption allowed.
    eventually("min budget allows one", WAIT, || async {
        let p = pdbs.get("min").await.ok()?;
        (status_of(&p)? == (3, 2, 3, 1, "SufficientPods".into())).then_some(())
    })
    .await;
    // maxUnavailable 34% of the ReplicaSet's 3 rounds up to 2: desiredHealthy 1.
    let max = eventually("max budget from the scale", WAIT, || async {
        let p = pdbs.get("max").await.ok()?;
        (status_of(&p)? == (3, 1, 3, 2, "SufficientPods".into())).then_some(p)
    })
    .await;
    assert_eq!(
        max.status.unwrap().observed_generation,
        max.metadata.generation
    );

    // Evict one pod: allowed. The budgets then have two healthy pods.
    pods.evict("web-0", &EvictParams::default()).await.unwrap();
    eventually("min budget exhausted", WAIT, || async {
        let p = pdbs.get("min").await.ok()?;
        (status_of(&p)? == (2, 2, 2, 0, "InsufficientPods".into())).then_some(())
    })
    .await;
    // Now "min" allows no disruption: the API server refuses the next eviction.
    // (A client without kube's default retry of 429s, which would retry for minutes.)
    let kubeconfig = kube::config::Kubeconfig::read_from(&cluster.running.kubeconfig).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    config.default_retry = false;
    let no_retry: kube::Api<Pod> =
        kube::Api::namespaced(kube::Client::try_from(config).unwrap(), "default");
    match no_retry.evict("web-1", &EvictParams::default()).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 429, "{s:?}"),
        other => panic!("eviction should be refused by the budget, got {other:?}"),
    }
}
