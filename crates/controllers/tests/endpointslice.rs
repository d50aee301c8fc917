//! The EndpointSlice and Endpoints controllers against a real API server: a Service's
//! pods become ready endpoints, readiness changes flip them, named target ports
//! resolve per pod, and the legacy Endpoints mirror the same pods.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::Api;
use support::{eventually, Cluster};

const WAIT: Duration = Duration::from_secs(30);

fn pod(name: &str, port: i32) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "nginx", "ports": [{"name": "web", "containerPort": port}]}]}
    }))
    .unwrap()
}

async fn slices(api: &Api<EndpointSlice>, svc: &str) -> Vec<EndpointSlice> {
    api.list(&ListParams::default().labels(&format!("kubernetes.io/service-name={svc}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

async fn set_status(pods: &Api<Pod>, name: &str, status: serde_json::Value) {
    pods.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({ "status": status })),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_pods_become_endpoints_and_readiness_flips_them() {
    let cluster = Cluster::start(&["endpointslice", "endpoints"]).await;
    cluster.fake_kubelet(&["node-a"]).await;
    let pods = cluster.api::<Pod>("default");
    for (i, port) in [(0, 8080), (1, 8080), (2, 9090)] {
        pods.create(&PostParams::default(), &pod(&format!("web-{i}"), port))
            .await
            .unwrap();
    }
    for i in 0..3 {
        let name = format!("web-{i}");
        eventually("pod running", WAIT, || async {
            let p = pods.get(&name).await.ok()?;
            (p.status?.phase.as_deref() == Some("Running")).then_some(())
        })
        .await;
        // The fake kubelet gives every pod one IP; give each its own.
        set_status(&pods, &name, serde_json::json!({"podIP": format!("10.42.0.{}", 20 + i), "podIPs": [{"ip": format!("10.42.0.{}", 20 + i)}]})).await;
    }
    let svc: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "web"}]}
    }))
    .unwrap();
    let svc = cluster
        .api::<Service>("default")
        .create(&PostParams::default(), &svc)
        .await
        .unwrap();
    let slice_api = cluster.api::<EndpointSlice>("default");

    let found = eventually("three ready endpoints in slices", WAIT, || async {
        let s = slices(&slice_api, "web").await;
        let ready = s
            .iter()
            .flat_map(|s| &s.endpoints)
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
            .count();
        (ready == 3).then_some(s)
    })
    .await;
    // Named target port "web" resolves to 8080 for two pods and 9090 for the third:
    // two port sets, two slices.
    assert_eq!(found.len(), 2);
    for s in &found {
        assert_eq!(s.address_type, "IPv4");
        let labels = s.metadata.labels.as_ref().unwrap();
        assert_eq!(
            labels["endpointslice.kubernetes.io/managed-by"],
            "endpointslice-controller.k8s.io"
        );
        let owner = &s.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(owner.uid, svc.metadata.uid.clone().unwrap());
        assert!(s.metadata.name.as_deref().unwrap().starts_with("web-"));
        let port = s.ports.as_ref().unwrap()[0].port.unwrap();
        for e in &s.endpoints {
            let pod = e.target_ref.as_ref().unwrap().name.clone().unwrap();
            assert_eq!(port, if pod == "web-2" { 9090 } else { 8080 }, "{pod}");
            assert_eq!(e.node_name.as_deref(), Some("node-a"));
        }
    }

    // web-0 turns not ready: its endpoint's ready flips to false, serving too.
    set_status(
        &pods,
        "web-0",
        serde_json::json!({"conditions": [{"type": "Ready", "status": "False"}]}),
    )
    .await;
    eventually("web-0's endpoint not ready", WAIT, || async {
        let s = slices(&slice_api, "web").await;
        let e = s
            .iter()
            .flat_map(|s| &s.endpoints)
            .find(|e| e.target_ref.as_ref().and_then(|r| r.name.as_deref()) == Some("web-0"))?
            .clone();
        let c = e.conditions?;
        (c.ready == Some(false) && c.serving == Some(false)).then_some(())
    })
    .await;

    // The legacy Endpoints show the same: two subsets (by port), web-0 not ready.
    let ep_api = cluster.api::<Endpoints>("default");
    let ep = eventually("Endpoints mirror the pods", WAIT, || async {
        let ep = ep_api.get("web").await.ok()?;
        let subsets = ep.subsets.clone()?;
        let ready: usize = subsets
            .iter()
            .map(|s| s.addresses.as_ref().map_or(0, Vec::len))
            .sum();
        let not_ready: usize = subsets
            .iter()
            .map(|s| s.not_ready_addresses.as_ref().map_or(0, Vec::len))
            .sum();
        (ready == 2 && not_ready == 1).then_some(ep)
    })
    .await;
    let subsets = ep.subsets.clone().unwrap();
    assert_eq!(subsets.len(), 2);
    let nr = subsets
        .iter()
        .find(|s| s.not_ready_addresses.is_some())
        .unwrap();
    assert_eq!(nr.not_ready_addresses.as_ref().unwrap()[0].ip, "10.42.0.20");
    assert_eq!(nr.ports.as_ref().unwrap()[0].port, 8080);
    let annotations = ep.metadata.annotations.clone().unwrap_or_default();
    assert!(annotations.contains_key("endpoints.kubernetes.io/last-change-trigger-time"));

    // Deleting a pod takes it out of both.
    pods.delete("web-2", &Default::default()).await.unwrap();
    eventually("web-2 gone from slices and Endpoints", WAIT, || async {
        let s = slices(&slice_api, "web").await;
        let left = s.iter().flat_map(|s| &s.endpoints).count();
        let ep = ep_api.get("web").await.ok()?;
        (left == 2 && ep.subsets?.len() == 1).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_without_selector_get_no_managed_slices_and_losing_it_removes_them() {
    let cluster = Cluster::start(&["endpointslice"]).await;
    let services = cluster.api::<Service>("default");
    for (name, selector) in [
        ("manual", serde_json::Value::Null),
        ("auto", serde_json::json!({"app": "x"})),
    ] {
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"selector": selector, "ports": [{"port": 80}]}
        }))
        .unwrap();
        services.create(&PostParams::default(), &svc).await.unwrap();
    }
    let slice_api = cluster.api::<EndpointSlice>("default");
    // A service with no pods still gets one empty placeholder slice.
    eventually("placeholder slice for auto", WAIT, || async {
        let s = slices(&slice_api, "auto").await;
        (s.len() == 1 && s[0].endpoints.is_empty()).then_some(())
    })
    .await;
    assert!(slices(&slice_api, "manual").await.is_empty());
    services
        .patch(
            "auto",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"selector": null}})),
        )
        .await
        .unwrap();
    eventually("auto's slice deleted", WAIT, || async {
        slices(&slice_api, "auto").await.is_empty().then_some(())
    })
    .await;
}
