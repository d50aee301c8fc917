//! The namespace controller against a real API server: deleting a namespace removes its
//! pods, ConfigMaps and Secrets, reports what remains in the status conditions, and then
//! the namespace itself goes (through `kubectl delete namespace` too).

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, NamespaceCondition, Pod, Secret};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::Api;
use support::{eventually, Cluster};

async fn fill(cluster: &Cluster, ns: &str) {
    let pods = cluster.api::<Pod>(ns);
    for name in ["p1", "p2"] {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }
    let cm: ConfigMap =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "cm"}})).unwrap();
    cluster
        .api::<ConfigMap>(ns)
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    let secret: Secret = serde_json::from_value(
        serde_json::json!({"metadata": {"name": "s"}, "stringData": {"a": "b"}}),
    )
    .unwrap();
    cluster
        .api::<Secret>(ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    eventually("pods running", Duration::from_secs(20), || async {
        let list = pods.list(&Default::default()).await.ok()?;
        list.items
            .iter()
            .all(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .then_some(())
    })
    .await;
}

fn condition<'a>(ns: &'a Namespace, t: &str) -> Option<&'a NamespaceCondition> {
    ns.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == t)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_delete_namespace_removes_content_then_namespace() {
    let cluster = Cluster::start(&["namespace"]).await;
    cluster.fake_kubelet(&["node-a"]).await;
    cluster.namespace("doomed").await;
    fill(&cluster, "doomed").await;

    let out = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&cluster.running.kubeconfig)
        .args(["delete", "namespace", "doomed", "--timeout=90s"])
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // kubectl waits for the namespace to disappear; check it and its contents.
    let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
    eventually("namespace gone", Duration::from_secs(10), || async {
        namespaces
            .get_opt("doomed")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    let all_pods: Api<Pod> = Api::all(cluster.client.clone());
    let left: Vec<_> = all_pods
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some("doomed"))
        .collect();
    assert!(left.is_empty(), "pods left: {left:?}");
    assert!(cluster
        .api::<ConfigMap>("doomed")
        .get_opt("cm")
        .await
        .unwrap()
        .is_none());
    assert!(cluster
        .api::<Secret>("doomed")
        .get_opt("s")
        .await
        .unwrap()
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_with_finalizers_holds_the_namespace_and_is_reported() {
    let cluster = Cluster::start(&["namespace"]).await;
    cluster.namespace("held").await;
    let cms = cluster.api::<ConfigMap>("held");
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "sticky", "finalizers": ["test.skiff.dev/hold"]},
    }))
    .unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let plain: ConfigMap =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "plain"}})).unwrap();
    cms.create(&PostParams::default(), &plain).await.unwrap();

    let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
    namespaces
        .delete("held", &DeleteParams::default())
        .await
        .unwrap();
    let ns = eventually(
        "remaining content reported",
        Duration::from_secs(30),
        || async {
            let ns = namespaces.get("held").await.ok()?;
            let c = condition(&ns, "NamespaceFinalizersRemaining")?;
            (c.status == "True").then_some(ns)
        },
    )
    .await;
    assert_eq!(
        ns.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Terminating")
    );
    let remaining = condition(&ns, "NamespaceContentRemaining").expect("content condition");
    assert_eq!(remaining.status, "True");
    assert_eq!(remaining.reason.as_deref(), Some("SomeResourcesRemain"));
    assert_eq!(
        remaining.message.as_deref(),
        Some("Some resources are remaining: configmaps. has 1 resource instances")
    );
    let fins = condition(&ns, "NamespaceFinalizersRemaining").expect("finalizers condition");
    assert_eq!(
        fins.message.as_deref(),
        Some("Some content in the namespace has finalizers remaining: test.skiff.dev/hold in 1 resource instances")
    );
    let discovery =
        condition(&ns, "NamespaceDeletionDiscoveryFailure").expect("discovery condition");
    assert_eq!(
        (discovery.status.as_str(), discovery.reason.as_deref()),
        ("False", Some("ResourcesDiscovered"))
    );
    assert!(
        cms.get_opt("plain").await.unwrap().is_none(),
        "plain content deleted"
    );
    assert_eq!(
        ns.spec.as_ref().and_then(|s| s.finalizers.clone()),
        Some(vec!["kubernetes".to_string()]),
        "still finalizing"
    );

    cms.patch(
        "sticky",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    eventually(
        "namespace gone once content is gone",
        Duration::from_secs(90),
        || async {
            namespaces
                .get_opt("held")
                .await
                .ok()?
                .is_none()
                .then_some(())
        },
    )
    .await;
}
