//! The HPA controller against a real API server. Without a metrics API it still brings
//! a Deployment's scale within min/max and reports ScalingActive False as upstream;
//! with a metrics source plugged in it scales by upstream's formula.

mod support;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{ListParams, PostParams};
use skiff_controllers::podautoscaler::metrics::{
    MetricsError, MetricsSource, PodSample, PodSamples,
};
use skiff_controllers::podautoscaler::{self};
use support::{eventually, Cluster};

fn deployment(replicas: i32) -> Deployment {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx", "resources": {"requests": {"cpu": "200m"}}}]}}}
    }))
    .unwrap()
}

fn hpa(min: i32, max: i32) -> HorizontalPodAutoscaler {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                 "minReplicas": min, "maxReplicas": max,
                 "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]}
    }))
    .unwrap()
}

fn condition(h: &HorizontalPodAutoscaler, type_: &str) -> Option<(String, String, String)> {
    let c = h
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone()?, c.message.clone()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_metrics_raises_to_min_replicas_and_reports_scaling_inactive() {
    let cluster = Cluster::start(&["horizontalpodautoscaling"]).await;
    let deployments = cluster.api::<Deployment>("default");
    deployments
        .create(&PostParams::default(), &deployment(1))
        .await
        .unwrap();
    let hpas = cluster.api::<HorizontalPodAutoscaler>("default");
    hpas.create(&PostParams::default(), &hpa(3, 5))
        .await
        .unwrap();
    eventually(
        "deployment scaled to minReplicas",
        Duration::from_secs(20),
        || async {
            let d = deployments.get("web").await.ok()?;
            (d.spec?.replicas == Some(3)).then_some(())
        },
    )
    .await;
    let h = eventually(
        "HPA status after the rescale",
        Duration::from_secs(10),
        || async {
            let h = hpas.get("web").await.ok()?;
            (h.status.as_ref()?.desired_replicas == 3).then_some(h)
        },
    )
    .await;
    let status = h.status.clone().unwrap();
    assert!(status.last_scale_time.is_some());
    assert_eq!(condition(&h, "AbleToScale").unwrap().1, "SucceededRescale");
    // The next pass (15 s later) is within bounds and needs metrics: there are none.
    let h = eventually("ScalingActive False", Duration::from_secs(40), || async {
        let h = hpas.get("web").await.ok()?;
        let c = condition(&h, "ScalingActive")?;
        (c.0 == "False").then_some(h)
    })
    .await;
    let (_, reason, message) = condition(&h, "ScalingActive").unwrap();
    assert_eq!(reason, "FailedGetResourceMetric");
    assert_eq!(
        message,
        "the HPA was unable to compute the replica count: failed to get cpu utilization: unable to get metrics for resource cpu: unable to fetch metrics from resource metrics API: the server could not find the requested resource (get pods.metrics.k8s.io)"
    );
    let status = h.status.clone().unwrap();
    assert_eq!(
        (status.current_replicas, status.desired_replicas),
        (Some(3), 3)
    );
    assert_eq!(condition(&h, "AbleToScale").unwrap().1, "SucceededGetScale");
    let events = cluster.api::<Event>("default");
    eventually("FailedComputeMetricsReplicas event", Duration::from_secs(5), || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| e.reason.as_deref() == Some("FailedComputeMetricsReplicas")
                && e.message.as_deref().is_some_and(|m| m.starts_with("invalid metrics (1 invalid out of 1), first error is: failed to get cpu utilization")))
            .then_some(())
    })
    .await;
}

/// Every pod uses 200m CPU: 100 % of its request.
struct Busy;

impl MetricsSource for Busy {
    fn resource<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: &'a str,
        _: Option<&'a str>,
    ) -> BoxFuture<'a, Result<PodSamples, MetricsError>> {
        Box::pin(async move {
            Ok(["web-0", "web-1"]
                .iter()
                .map(|n| (n.to_string(), PodSample { milli: 200 }))
                .collect())
        })
    }
    fn pods<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a, Result<PodSamples, MetricsError>> {
        Box::pin(async { Err(MetricsError("unused".into())) })
    }
    fn object<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a, Result<i64, MetricsError>> {
        Box::pin(async { Err(MetricsError("unused".into())) })
    }
    fn external<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Vec<i64>, MetricsError>> {
        Box::pin(async { Err(MetricsError("unused".into())) })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugged_in_metrics_source_drives_scaling() {
    // Every loop but the built-in autoscaler: it would compete with the one under test.
    let cluster = Cluster::start(&["-horizontalpodautoscaling"]).await;
    cluster.fake_kubelet(&["node-a"]).await;
    let pods = cluster.api::<Pod>("default");
    for i in 0..2 {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("web-{i}"), "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "nginx", "resources": {"requests": {"cpu": "200m"}}}]}
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }
    for i in 0..2 {
        let name = format!("web-{i}");
        eventually("pod running", Duration::from_secs(20), || async {
            let p = pods.get(&name).await.ok()?;
            (p.status?.phase.as_deref() == Some("Running")).then_some(())
        })
        .await;
    }
    let deployments = cluster.api::<Deployment>("default");
    deployments
        .create(&PostParams::default(), &deployment(2))
        .await
        .unwrap();
    let ctx = skiff_controllers::Ctx::new(
        cluster.client.clone(),
        Default::default(),
        cluster.shutdown.clone(),
    );
    let hpa_loop = podautoscaler::controller_with(&ctx, Arc::new(Busy));
    ctx.informers.start(cluster.shutdown.clone());
    ctx.informers.wait_synced().await;
    tokio::spawn(hpa_loop);
    let hpas = cluster.api::<HorizontalPodAutoscaler>("default");
    hpas.create(&PostParams::default(), &hpa(1, 10))
        .await
        .unwrap();
    // 100 % against a 50 % target on 2 ready pods: 4 replicas.
    eventually(
        "deployment scaled to 4",
        Duration::from_secs(20),
        || async {
            let d = deployments.get("web").await.ok()?;
            (d.spec?.replicas == Some(4)).then_some(())
        },
    )
    .await;
    let h = eventually("HPA status", Duration::from_secs(10), || async {
        let h = hpas.get("web").await.ok()?;
        (h.status.as_ref()?.desired_replicas == 4).then_some(h)
    })
    .await;
    assert_eq!(
        condition(&h, "ScalingActive").unwrap().1,
        "ValidMetricFound"
    );
    let metrics = h.status.unwrap().current_metrics.unwrap();
    assert_eq!(
        metrics[0]
            .resource
            .as_ref()
            .unwrap()
            .current
            .average_utilization,
        Some(100)
    );
}
