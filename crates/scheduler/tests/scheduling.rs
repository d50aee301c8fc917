//! The scheduler against a real API server: binding, spreading, upstream's failure
//! messages and events, taints, selectors, affinity, topology spread, preemption.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use kube::api::DeleteParams;
use serde_json::json;
use support::{eventually, Cluster};

const CP_TAINT: &str = "node-role.kubernetes.io/control-plane";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_spread_over_nodes_by_resources_and_get_scheduled_events() {
    let c = Cluster::start().await;
    for n in ["n1", "n2", "n3"] {
        c.node(n, "4", json!({})).await;
    }
    for i in 0..6 {
        c.pod(&format!("p{i}"), "1", json!({})).await;
    }
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for i in 0..6 {
        *per_node.entry(c.bound(&format!("p{i}")).await).or_default() += 1;
    }
    assert_eq!(per_node.len(), 3, "{per_node:?}");
    assert!(per_node.values().all(|n| *n == 2), "{per_node:?}");
    let node = c.bound("p0").await;
    assert_eq!(
        c.event("p0", "Scheduled").await,
        format!("Successfully assigned default/p0 to {node}")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_big_pod_gets_upstreams_message_then_schedules_on_a_new_node() {
    let c = Cluster::start().await;
    c.node("worker", "4", json!({})).await;
    c.node(
        "cp",
        "8",
        json!({"spec": {"taints": [{"key": CP_TAINT, "effect": "NoSchedule"}]}}),
    )
    .await;
    c.pod("big", "6", json!({})).await;
    let want = "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }. preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, 1 Preemption is not helpful for scheduling.";
    assert_eq!(c.unschedulable("big").await, want);
    assert_eq!(c.event("big", "FailedScheduling").await, want);
    let events = c.events("big", "FailedScheduling").await;
    assert_eq!(events[0].type_.as_deref(), Some("Warning"));
    c.node("large", "8", json!({})).await;
    assert_eq!(c.bound("big").await, "large");
    let pod = c.pods().get("big").await.expect("pod");
    let scheduled = pod
        .status
        .and_then(|s| s.conditions)
        .and_then(|cs| cs.into_iter().find(|c| c.type_ == "PodScheduled"))
        .expect("PodScheduled condition");
    assert_eq!(
        scheduled.status, "True",
        "the binding replaced our False condition"
    );
    assert_eq!(
        c.event("big", "Scheduled").await,
        "Successfully assigned default/big to large"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taints_tolerations_and_node_selectors() {
    let c = Cluster::start().await;
    c.node(
        "db",
        "4",
        json!({"metadata": {"labels": {"disk": "ssd"}}, "spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}}),
    )
    .await;
    c.node("web", "4", json!({"metadata": {"labels": {"disk": "hdd"}}}))
        .await;
    c.pod(
        "plain-ssd",
        "1",
        json!({"spec": {"nodeSelector": {"disk": "ssd"}}}),
    )
    .await;
    c.pod(
        "tolerating-ssd",
        "1",
        json!({"spec": {"nodeSelector": {"disk": "ssd"}, "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]}}),
    )
    .await;
    c.pod("anywhere", "1", json!({})).await;
    assert_eq!(c.bound("tolerating-ssd").await, "db");
    assert_eq!(
        c.bound("anywhere").await,
        "web",
        "the untolerated taint keeps it off db"
    );
    assert_eq!(
        c.unschedulable("plain-ssd").await,
        "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {dedicated: db}. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    );
    // Required node affinity on metadata.name.
    c.pod(
        "pinned",
        "1",
        json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["web"]}]}]}}}}}),
    )
    .await;
    assert_eq!(c.bound("pinned").await, "web");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_anti_affinity_keeps_replicas_apart() {
    let c = Cluster::start().await;
    for n in ["n1", "n2", "n3"] {
        c.node(n, "8", json!({})).await;
    }
    let anti = json!({
        "metadata": {"labels": {"app": "web"}},
        "spec": {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}
        ]}}}
    });
    for i in 0..3 {
        c.pod(&format!("web{i}"), "100m", anti.clone()).await;
    }
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(c.bound(&format!("web{i}")).await);
    }
    nodes.sort();
    assert_eq!(nodes, ["n1", "n2", "n3"]);
    c.pod("web3", "100m", anti).await;
    assert_eq!(
        c.unschedulable("web3").await,
        "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."
    );
    // An existing pod's anti-affinity repels a newcomer it selects.
    c.pods()
        .delete("web3", &DeleteParams::default())
        .await
        .expect("delete web3");
    c.pod(
        "guard",
        "100m",
        json!({"spec": {"nodeSelector": {"kubernetes.io/hostname": "n1"}, "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": "kubernetes.io/hostname"}
        ]}}}}),
    )
    .await;
    assert_eq!(c.bound("guard").await, "n1");
    c.pod(
        "cache",
        "100m",
        json!({"metadata": {"labels": {"app": "cache"}}, "spec": {"nodeSelector": {"kubernetes.io/hostname": "n1"}}}),
    )
    .await;
    assert_eq!(
        c.unschedulable("cache").await,
        "0/3 nodes are available: 1 node(s) didn't satisfy existing pods anti-affinity rules, 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling."
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topology_spread_balances_zones() {
    let c = Cluster::start().await;
    c.node("a1", "8", json!({"metadata": {"labels": {"zone": "a"}}}))
        .await;
    c.node("a2", "8", json!({"metadata": {"labels": {"zone": "a"}}}))
        .await;
    c.node("b1", "8", json!({"metadata": {"labels": {"zone": "b"}}}))
        .await;
    c.node("nozone", "8", json!({})).await;
    let spread = json!({
        "metadata": {"labels": {"app": "s"}},
        "spec": {"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone",
            "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "s"}}}]}
    });
    let mut zones: HashMap<&str, usize> = HashMap::new();
    for i in 0..6 {
        let name = format!("s{i}");
        c.pod(&name, "100m", spread.clone()).await;
        let node = c.bound(&name).await;
        assert_ne!(node, "nozone", "nodes without the key are filtered");
        *zones
            .entry(if node.starts_with('a') { "a" } else { "b" })
            .or_default() += 1;
    }
    assert_eq!(zones.get("a"), Some(&3), "{zones:?}");
    assert_eq!(zones.get("b"), Some(&3), "{zones:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preemption_evicts_a_lower_priority_pod_and_nominates_the_node() {
    let c = Cluster::start().await;
    c.node("only", "4", json!({})).await;
    // The API server's Priority admission turns class names into spec.priority.
    let classes: kube::Api<k8s_openapi::api::scheduling::v1::PriorityClass> =
        kube::Api::all(c.client.clone());
    for (name, value, policy) in [
        ("middle-never", 500, "Never"),
        ("top", 1000, "PreemptLowerPriority"),
    ] {
        let class = serde_json::from_value(json!({
            "metadata": {"name": name}, "value": value, "preemptionPolicy": policy,
        }))
        .expect("priority class");
        classes
            .create(&kube::api::PostParams::default(), &class)
            .await
            .expect("create priority class");
    }
    c.pod("low", "3", json!({})).await;
    assert_eq!(c.bound("low").await, "only");
    c.pod(
        "never",
        "3",
        json!({"spec": {"priorityClassName": "middle-never"}}),
    )
    .await;
    assert_eq!(
        c.unschedulable("never").await,
        "0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never."
    );
    c.pod("high", "2", json!({"spec": {"priorityClassName": "top"}}))
        .await;
    // No kubelet here: finish the victim's graceful deletion as a node agent would.
    let pods = c.pods();
    let victim = eventually(
        "the low-priority pod is being deleted",
        Duration::from_secs(20),
        || {
            let pods = pods.clone();
            async move {
                match pods.get_opt("low").await {
                    Ok(Some(p)) if p.metadata.deletion_timestamp.is_some() => Some(p),
                    Ok(None) => Some(Default::default()),
                    _ => None,
                }
            }
        },
    )
    .await;
    if let Some(conds) = victim.status.and_then(|s| s.conditions) {
        let dt = conds
            .iter()
            .find(|c| c.type_ == "DisruptionTarget")
            .expect("DisruptionTarget condition");
        assert_eq!(dt.reason.as_deref(), Some("PreemptionByScheduler"));
    }
    let nominated = eventually("nominatedNodeName", Duration::from_secs(20), || {
        let pods = pods.clone();
        async move { pods.get("high").await.ok()?.status?.nominated_node_name }
    })
    .await;
    assert_eq!(nominated, "only");
    let high_uid = pods
        .get("high")
        .await
        .expect("high")
        .metadata
        .uid
        .unwrap_or_default();
    assert_eq!(
        c.event("low", "Preempted").await,
        format!("Preempted by pod {high_uid} on node only")
    );
    let _ = pods
        .delete(
            "low",
            &DeleteParams {
                grace_period_seconds: Some(0),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(c.bound("high").await, "only");
    // The preemptionPolicy=Never pod is still waiting: it never evicts anyone.
    assert!(pods
        .get("never")
        .await
        .expect("never")
        .spec
        .and_then(|s| s.node_name)
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_of_one_replicaset_spread_by_the_system_default_constraints() {
    use k8s_openapi::api::apps::v1::ReplicaSet;
    use kube::api::PostParams;
    let c = Cluster::start().await;
    c.node("big", "64", json!({})).await;
    c.node("small", "4", json!({})).await;
    // Without an owner, LeastAllocated alone sends every pod to the big node.
    for i in 0..3 {
        c.pod(
            &format!("loose{i}"),
            "500m",
            json!({"metadata": {"labels": {"app": "loose"}}}),
        )
        .await;
        assert_eq!(c.bound(&format!("loose{i}")).await, "big");
    }
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
    }))
    .expect("rs");
    let rs = kube::Api::<ReplicaSet>::namespaced(c.client.clone(), "default")
        .create(&PostParams::default(), &rs)
        .await
        .expect("create rs");
    let owner = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
        "uid": rs.metadata.uid, "controller": true}]);
    let mut nodes = Vec::new();
    for i in 0..4 {
        let name = format!("web{i}");
        c.pod(
            &name,
            "500m",
            json!({"metadata": {"labels": {"app": "web"}, "ownerReferences": owner}}),
        )
        .await;
        nodes.push(c.bound(&name).await);
    }
    let on_small = nodes.iter().filter(|n| *n == "small").count();
    assert_eq!(on_small, 2, "replicas alternate between nodes: {nodes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bound_volumes_node_affinity_picks_the_node() {
    use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
    use kube::api::PostParams;
    let c = Cluster::start().await;
    c.node("a1", "4", json!({"metadata": {"labels": {"zone": "a"}}}))
        .await;
    c.node("b1", "4", json!({"metadata": {"labels": {"zone": "b"}}}))
        .await;
    let pv: PersistentVolume = serde_json::from_value(json!({
        "metadata": {"name": "local-b"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "hostPath": {"path": "/tmp/local-b"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "zone", "operator": "In", "values": ["b"]}]}]}}},
    }))
    .expect("pv");
    kube::Api::<PersistentVolume>::all(c.client.clone())
        .create(&PostParams::default(), &pv)
        .await
        .expect("create pv");
    let claim = |name: &str, volume: Option<&str>| -> PersistentVolumeClaim {
        let mut spec = json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}});
        if let Some(v) = volume {
            spec["volumeName"] = json!(v);
        }
        serde_json::from_value(
            json!({"metadata": {"name": name, "namespace": "default"}, "spec": spec}),
        )
        .expect("pvc")
    };
    let pvcs = kube::Api::<PersistentVolumeClaim>::namespaced(c.client.clone(), "default");
    pvcs.create(&PostParams::default(), &claim("data", Some("local-b")))
        .await
        .expect("create pvc");
    pvcs.create(&PostParams::default(), &claim("unbound", None))
        .await
        .expect("create pvc");
    let uses = |claim: &str| json!({"spec": {"volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": claim}}]}});
    c.pod("with-volume", "100m", uses("data")).await;
    assert_eq!(c.bound("with-volume").await, "b1");
    c.pod("with-unbound", "100m", uses("unbound")).await;
    assert_eq!(
        c.unschedulable("with-unbound").await,
        "0/2 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    );
    c.pod("with-missing", "100m", uses("nope")).await;
    assert_eq!(
        c.unschedulable("with-missing").await,
        "0/2 nodes are available: persistentvolumeclaim \"nope\" not found. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    );
}
