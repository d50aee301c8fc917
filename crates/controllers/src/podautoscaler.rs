//! The HorizontalPodAutoscaler controller (autoscaling/v2): every 15 s it reads the
//! target's `scale` subresource, computes a replica count from the HPA's metrics
//! ([`metrics`] source, [`replicas`] calculator, [`normalize`] stabilization and rate
//! rules, min/max bounds) and writes it back to `scale`, with upstream's conditions
//! (AbleToScale, ScalingActive, ScalingLimited) and events.
//!
//! Skiff serves no metrics API yet, so [`controller`] runs with [`metrics::NoMetrics`]:
//! as upstream when metrics cannot be fetched, ScalingActive is False with reason
//! FailedGetResourceMetric, and the count is only brought within min/max.
//! [`controller_with`] takes any other [`metrics::MetricsSource`].

pub mod metrics;
pub mod normalize;
pub mod replicas;
pub mod target;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::autoscaling::v2::{
    HorizontalPodAutoscaler, HorizontalPodAutoscalerCondition, HorizontalPodAutoscalerStatus,
    MetricSpec, MetricStatus, MetricTarget, MetricValueStatus,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use skiff_api::quantity::Quantity;
use skiff_api::selector::LabelSelector;
use skiff_runtime::events::Recorder;
use skiff_runtime::{Informer, ObjectKey, WorkQueue};

use crate::util::pods as podutil;
use crate::{Ctx, Loop};
use metrics::{MetricsSource, NoMetrics};
use normalize::{Recommendation, ScaleEvent};
use replicas::PodState;

/// Upstream's `--horizontal-pod-autoscaler-sync-period`.
pub const SYNC_PERIOD: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("update status of HorizontalPodAutoscaler {key}: {source}")]
    UpdateStatus {
        key: ObjectKey,
        #[source]
        source: kube::Error,
    },
    #[error("failed to rescale {target}: {source}")]
    Rescale {
        target: String,
        #[source]
        source: kube::Error,
    },
}

#[derive(Default)]
struct History {
    recommendations: Vec<Recommendation>,
    events: Vec<ScaleEvent>,
}

struct State {
    client: kube::Client,
    hpas: Informer<HorizontalPodAutoscaler>,
    pods: Informer<Pod>,
    metrics: Arc<dyn MetricsSource>,
    history: Mutex<HashMap<ObjectKey, History>>,
    recorder: Recorder,
}

/// The HPA controller without a metrics API.
pub fn controller(ctx: &Ctx) -> Loop {
    controller_with(ctx, Arc::new(NoMetrics))
}

/// The HPA controller reading metrics from `metrics`.
pub fn controller_with(ctx: &Ctx, metrics: Arc<dyn MetricsSource>) -> Loop {
    let hpas = ctx.informers.informer::<HorizontalPodAutoscaler>();
    let pods = ctx.informers.informer::<Pod>();
    let queue = WorkQueue::new("horizontalpodautoscaling", ctx.settings.max_retry_delay);
    let q = queue.clone();
    hpas.on_change(move |c| {
        // Status writes are this loop's own; the 15 s resync covers everything else.
        let spec_changed = match (&c.old, &c.new) {
            (Some(o), Some(n)) => o.spec != n.spec,
            _ => true,
        };
        if spec_changed {
            q.add(ObjectKey::of(c.object().as_ref()));
        }
    });
    let state = Arc::new(State {
        client: ctx.client.clone(),
        hpas,
        pods,
        metrics,
        history: Mutex::new(HashMap::new()),
        recorder: ctx.recorder("horizontal-pod-autoscaler"),
    });
    ctx.run_workers(queue, ctx.settings.workers, state, |s, key| async move {
        s.reconcile(key).await
    })
}

/// Sets a condition, keeping its transition time when the status is unchanged.
fn set_condition(
    conditions: &mut Vec<HorizontalPodAutoscalerCondition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
) {
    let status = if status { "True" } else { "False" };
    let message = Some(message.into());
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) if c.status == status => {
            c.reason = Some(reason.into());
            c.message = message;
        }
        other => {
            let new = HorizontalPodAutoscalerCondition {
                type_: type_.into(),
                status: status.into(),
                reason: Some(reason.into()),
                message,
                last_transition_time: Some(Time(Timestamp::now())),
            };
            match other {
                Some(c) => *c = new,
                None => conditions.push(new),
            }
        }
    }
}

fn milli_quantity(milli: i64) -> K8sQuantity {
    K8sQuantity(Quantity::from_milli(milli).to_string())
}

/// The sum of the pod's (or one container's) requests of `resource`, in milli-units.
fn request_milli(pod: &Pod, resource: &str, container: Option<&str>) -> Option<i64> {
    let spec = pod.spec.as_ref()?;
    let mut total = 0i64;
    for c in spec
        .containers
        .iter()
        .filter(|c| container.is_none_or(|n| n == c.name))
    {
        let q = c.resources.as_ref()?.requests.as_ref()?.get(resource)?;
        total += i64::try_from(q.0.parse::<Quantity>().ok()?.milli_value()).ok()?;
    }
    Some(total)
}

/// A metric's proposal, or the condition reason and error of its failure.
struct Outcome {
    replicas: i32,
    name: String,
    status: MetricStatus,
}

type Failure = (&'static str, String);

impl State {
    async fn reconcile(&self, key: ObjectKey) -> Result<Option<Duration>, Error> {
        let Some(hpa) = self.hpas.get(&key) else {
            self.history
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
            return Ok(None);
        };
        let spec = hpa.spec.clone().unwrap_or_default();
        let target_ref = &spec.scale_target_ref;
        let reference = format!("{}/{}", target_ref.kind, target_ref.name);
        let mut status = hpa.status.clone().unwrap_or_default();
        status.observed_generation = hpa.metadata.generation;
        let conditions = status.conditions.get_or_insert_with(Vec::new);
        let api = target::scale_api(
            self.client.clone(),
            key.namespace(),
            target_ref.api_version.as_deref().unwrap_or("v1"),
            &target_ref.kind,
        );
        let scale = match api.get_scale(&target_ref.name).await {
            Ok(s) => s,
            Err(e) => {
                set_condition(
                    conditions,
                    "AbleToScale",
                    false,
                    "FailedGetScale",
                    format!("the HPA controller was unable to get the target's current scale: {e}"),
                );
                self.recorder
                    .warning(hpa.as_ref(), "FailedGetScale", e.to_string());
                self.write_status(&key, &hpa, status).await?;
                return Ok(Some(SYNC_PERIOD));
            }
        };
        set_condition(
            conditions,
            "AbleToScale",
            true,
            "SucceededGetScale",
            "the HPA controller was able to get the target's current scale",
        );
        let current = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let min = spec.min_replicas.unwrap_or(1);
        let max = spec.max_replicas;
        let now = Timestamp::now();
        let (desired, reason) = if current == 0 && min != 0 {
            set_condition(
                conditions,
                "ScalingActive",
                false,
                "ScalingDisabled",
                "scaling is disabled since the replica count of the target is zero",
            );
            (0, String::new())
        } else if current > max {
            (
                max,
                "Current number of replicas above Spec.MaxReplicas".to_string(),
            )
        } else if current < min {
            (
                min,
                "Current number of replicas below Spec.MinReplicas".to_string(),
            )
        } else {
            match self
                .compute_from_metrics(&hpa, &scale, current, conditions)
                .await
            {
                Err(message) => {
                    status.current_replicas = Some(current);
                    self.recorder
                        .warning(hpa.as_ref(), "FailedComputeMetricsReplicas", message);
                    self.write_status(&key, &hpa, status).await?;
                    return Ok(Some(SYNC_PERIOD));
                }
                Ok((proposal, metric, metric_statuses)) => {
                    status.current_metrics = Some(metric_statuses);
                    let reason = if proposal > current {
                        format!("{metric} above target")
                    } else if proposal < current {
                        "All metrics below target".to_string()
                    } else {
                        String::new()
                    };
                    let n = self.normalize(&key, &spec, current, proposal, min, max, now);
                    let conditions = status.conditions.get_or_insert_with(Vec::new);
                    set_condition(conditions, "AbleToScale", true, n.able.0, n.able.1);
                    set_condition(
                        conditions,
                        "ScalingLimited",
                        n.limited.0,
                        n.limited.1,
                        n.limited.2,
                    );
                    (n.replicas, reason)
                }
            }
        };
        let rescale = desired != current;
        if rescale {
            let mut s = scale.clone();
            s.spec.get_or_insert_with(Default::default).replicas = Some(desired);
            if let Err(e) = api
                .replace_scale(&target_ref.name, &PostParams::default(), &s)
                .await
            {
                let conditions = status.conditions.get_or_insert_with(Vec::new);
                set_condition(
                    conditions,
                    "AbleToScale",
                    false,
                    "FailedUpdateScale",
                    format!("the HPA controller was unable to update the target scale: {e}"),
                );
                self.recorder.warning(
                    hpa.as_ref(),
                    "FailedRescale",
                    format!("New size: {desired}; reason: {reason}; error: {e}"),
                );
                self.write_status(&key, &hpa, status).await?;
                return Err(Error::Rescale {
                    target: reference,
                    source: e,
                });
            }
            let conditions = status.conditions.get_or_insert_with(Vec::new);
            set_condition(
                conditions,
                "AbleToScale",
                true,
                "SucceededRescale",
                format!("the HPA controller was able to update the target scale to {desired}"),
            );
            self.recorder.normal(
                hpa.as_ref(),
                "SuccessfulRescale",
                format!("New size: {desired}; reason: {reason}"),
            );
            let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
            let h = history.entry(key.clone()).or_default();
            h.events.push(ScaleEvent {
                at: now,
                change: desired - current,
            });
            let cutoff = now
                .checked_sub(SignedDuration::from_secs(1800))
                .unwrap_or(now);
            h.events.retain(|e| e.at > cutoff);
            status.last_scale_time = Some(Time(now));
        }
        status.current_replicas = Some(current);
        status.desired_replicas = desired;
        self.write_status(&key, &hpa, status).await?;
        Ok(Some(SYNC_PERIOD))
    }

    #[allow(clippy::too_many_arguments)]
    fn normalize(
        &self,
        key: &ObjectKey,
        spec: &k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerSpec,
        current: i32,
        proposal: i32,
        min: i32,
        max: i32,
        now: Timestamp,
    ) -> normalize::Normalized {
        let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        let h = history.entry(key.clone()).or_default();
        let n = match &spec.behavior {
            None => normalize::plain(current, proposal, min, max, &h.recommendations, now),
            Some(b) => normalize::with_behavior(
                b,
                current,
                proposal,
                min,
                max,
                &h.recommendations,
                &h.events,
                now,
            ),
        };
        h.recommendations.push(Recommendation {
            at: now,
            replicas: proposal,
        });
        // One hour is upstream's longest allowed stabilization window.
        let cutoff = now
            .checked_sub(SignedDuration::from_secs(3600))
            .unwrap_or(now);
        h.recommendations.retain(|r| r.at > cutoff);
        n
    }

    /// The highest proposal of the HPA's metrics, the name of the metric behind it and
    /// the metrics' statuses; or, when every metric failed (or some failed and the rest
    /// would scale down), upstream's "invalid metrics" error, with ScalingActive set
    /// from the first failure.
    async fn compute_from_metrics(
        &self,
        hpa: &HorizontalPodAutoscaler,
        scale: &Scale,
        current: i32,
        conditions: &mut Vec<HorizontalPodAutoscalerCondition>,
    ) -> Result<(i32, String, Vec<MetricStatus>), String> {
        let specs: Vec<MetricSpec> = hpa
            .spec
            .as_ref()
            .and_then(|s| s.metrics.clone())
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| {
                // autoscaling/v2's default: 80 % average CPU utilization.
                vec![serde_json::from_value(serde_json::json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}))
                    .unwrap_or_default()]
            });
        let ns = hpa.namespace().unwrap_or_default();
        let selector = scale
            .status
            .as_ref()
            .and_then(|s| s.selector.clone())
            .unwrap_or_default();
        let pods: Vec<Arc<Pod>> = match LabelSelector::parse(&selector) {
            Ok(sel) if !selector.is_empty() => self
                .pods
                .list_namespace(&ns)
                .into_iter()
                .filter(|p| p.metadata.labels.as_ref().is_some_and(|l| sel.matches(l)))
                .collect(),
            _ => Vec::new(),
        };
        let mut best: Option<(i32, String)> = None;
        let mut statuses = Vec::new();
        let mut invalid = 0usize;
        let mut first: Option<Failure> = None;
        for spec in &specs {
            match metric(self.metrics.as_ref(), spec, &ns, &selector, &pods, current).await {
                Ok(o) => {
                    if best.as_ref().is_none_or(|(r, _)| o.replicas > *r) {
                        best = Some((o.replicas, o.name));
                    }
                    statuses.push(o.status);
                }
                Err((reason, err)) => {
                    self.recorder.warning(hpa, reason, err.clone());
                    invalid += 1;
                    first.get_or_insert((reason, err));
                }
            }
        }
        let proposal = best.as_ref().map_or(0, |(r, _)| *r);
        if let Some((reason, err)) = first {
            if invalid >= specs.len() || proposal < current {
                set_condition(
                    conditions,
                    "ScalingActive",
                    false,
                    reason,
                    format!("the HPA was unable to compute the replica count: {err}"),
                );
                return Err(format!(
                    "invalid metrics ({invalid} invalid out of {}), first error is: {err}",
                    specs.len()
                ));
            }
        }
        let (replicas, name) = best.unwrap_or((current, String::new()));
        set_condition(
            conditions,
            "ScalingActive",
            true,
            "ValidMetricFound",
            format!("the HPA was able to successfully calculate a replica count from {name}"),
        );
        Ok((replicas, name, statuses))
    }

    async fn write_status(
        &self,
        key: &ObjectKey,
        hpa: &HorizontalPodAutoscaler,
        status: HorizontalPodAutoscalerStatus,
    ) -> Result<(), Error> {
        if hpa.status.as_ref() == Some(&status) {
            return Ok(());
        }
        let mut h = hpa.clone();
        h.status = Some(status);
        let api: Api<HorizontalPodAutoscaler> =
            Api::namespaced(self.client.clone(), key.namespace());
        match api
            .replace_status(&key.name, &PostParams::default(), &h)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(source) => Err(Error::UpdateStatus {
                key: key.clone(),
                source,
            }),
        }
    }
}

/// The scale target's pods as the calculator sees them.
fn pod_states(pods: &[Arc<Pod>], resource: Option<(&str, Option<&str>)>) -> Vec<PodState> {
    pods.iter()
        .map(|p| {
            let phase = podutil::phase(p);
            let cpu = resource.is_some_and(|(r, _)| r == "cpu");
            PodState {
                name: p.name_any(),
                ignored: p.metadata.deletion_timestamp.is_some() || phase == "Failed",
                unready: phase == "Pending" || (cpu && !podutil::is_ready(p)),
                request_milli: resource.and_then(|(r, c)| request_milli(p, r, c)),
            }
        })
        .collect()
}

/// One metric's proposal from `metrics`, or the condition reason and error of its
/// failure (upstream's computeReplicasForMetric).
async fn metric(
    metrics: &dyn MetricsSource,
    spec: &MetricSpec,
    ns: &str,
    selector: &str,
    pods: &[Arc<Pod>],
    current: i32,
) -> Result<Outcome, Failure> {
    let value_status =
        |avg_util: Option<i32>, avg: Option<i64>, value: Option<i64>| MetricValueStatus {
            average_utilization: avg_util,
            average_value: avg.map(milli_quantity),
            value: value.map(milli_quantity),
        };
    let milli = |q: Option<&K8sQuantity>| -> i64 {
        q.and_then(|q| q.0.parse::<Quantity>().ok())
            .and_then(|q| i64::try_from(q.milli_value()).ok())
            .unwrap_or(0)
    };
    // Object and External metrics: one value against `value`, or shared by the pods
    // against `averageValue`.
    let against_target = |value: i64, target: &MetricTarget| {
        if target.type_ == "AverageValue" {
            let p =
                replicas::for_average_value(current, value, milli(target.average_value.as_ref()));
            let avg = p.current;
            (p, value_status(None, Some(avg), None))
        } else {
            let ready = pods.iter().filter(|p| podutil::is_ready(p)).count() as i32;
            (
                replicas::for_value(current, ready, value, milli(target.value.as_ref())),
                value_status(None, None, Some(value)),
            )
        }
    };
    match spec.type_.as_str() {
        "Resource" | "ContainerResource" => {
            let (name, container, target, reason) = match (&spec.resource, &spec.container_resource)
            {
                (Some(r), _) if spec.type_ == "Resource" => (
                    r.name.clone(),
                    None,
                    r.target.clone(),
                    "FailedGetResourceMetric",
                ),
                (_, Some(c)) => (
                    c.name.clone(),
                    Some(c.container.clone()),
                    c.target.clone(),
                    "FailedGetContainerResourceMetric",
                ),
                _ => {
                    return Err((
                        "FailedGetResourceMetric",
                        "metric spec has no resource source".into(),
                    ))
                }
            };
            let utilization = target.type_ == "Utilization";
            let what = if utilization { "utilization" } else { "usage" };
            let fail = |e: String| (reason, format!("failed to get {name} {what}: {e}"));
            let samples = metrics
                .resource(ns, selector, &name, container.as_deref())
                .await
                .map_err(|e| fail(e.0))?;
            let states = pod_states(pods, Some((&name, container.as_deref())));
            let kind = if container.is_some() {
                "container resource"
            } else {
                "resource"
            };
            if utilization {
                let t = target.average_utilization.unwrap_or(80);
                let p = replicas::for_utilization(current, &states, &samples, t).map_err(fail)?;
                let avg =
                    samples.values().map(|s| s.milli).sum::<i64>() / samples.len().max(1) as i64;
                Ok(Outcome {
                    replicas: p.replicas,
                    name: format!("{name} {kind} utilization (percentage of request)"),
                    status: resource_status(
                        spec,
                        &name,
                        container,
                        value_status(Some(p.current as i32), Some(avg), None),
                    ),
                })
            } else {
                let t = milli(target.average_value.as_ref());
                let p = replicas::for_average(current, &states, &samples, t).map_err(fail)?;
                Ok(Outcome {
                    replicas: p.replicas,
                    name: format!("{name} {kind}"),
                    status: resource_status(
                        spec,
                        &name,
                        container,
                        value_status(None, Some(p.current), None),
                    ),
                })
            }
        }
        "Pods" => {
            let Some(m) = &spec.pods else {
                return Err((
                    "FailedGetPodsMetric",
                    "metric spec has no pods source".into(),
                ));
            };
            let name = m.metric.name.clone();
            let samples = metrics
                .pods(ns, selector, &name)
                .await
                .map_err(|e| ("FailedGetPodsMetric", e.0))?;
            let states = pod_states(pods, None);
            let p = replicas::for_average(
                current,
                &states,
                &samples,
                milli(m.target.average_value.as_ref()),
            )
            .map_err(|e| ("FailedGetPodsMetric", e))?;
            let mut status = MetricStatus {
                type_: "Pods".into(),
                ..Default::default()
            };
            status.pods = Some(k8s_openapi::api::autoscaling::v2::PodsMetricStatus {
                metric: m.metric.clone(),
                current: value_status(None, Some(p.current), None),
            });
            Ok(Outcome {
                replicas: p.replicas,
                name: format!("pods metric {name}"),
                status,
            })
        }
        "Object" => {
            let Some(m) = &spec.object else {
                return Err((
                    "FailedGetObjectMetric",
                    "metric spec has no object source".into(),
                ));
            };
            let object = format!("{}/{}", m.described_object.kind, m.described_object.name);
            let name = m.metric.name.clone();
            let value = metrics
                .object(ns, &object, &name)
                .await
                .map_err(|e| ("FailedGetObjectMetric", e.0))?;
            let (p, current_status) = against_target(value, &m.target);
            let mut status = MetricStatus {
                type_: "Object".into(),
                ..Default::default()
            };
            status.object = Some(k8s_openapi::api::autoscaling::v2::ObjectMetricStatus {
                described_object: m.described_object.clone(),
                metric: m.metric.clone(),
                current: current_status,
            });
            Ok(Outcome {
                replicas: p.replicas,
                name: format!("{name} metric on {object}"),
                status,
            })
        }
        "External" => {
            let Some(m) = &spec.external else {
                return Err((
                    "FailedGetExternalMetric",
                    "metric spec has no external source".into(),
                ));
            };
            let name = m.metric.name.clone();
            let values = metrics
                .external(ns, &name)
                .await
                .map_err(|e| ("FailedGetExternalMetric", e.0))?;
            let value: i64 = values.iter().sum();
            let (p, current_status) = against_target(value, &m.target);
            let mut status = MetricStatus {
                type_: "External".into(),
                ..Default::default()
            };
            status.external = Some(k8s_openapi::api::autoscaling::v2::ExternalMetricStatus {
                metric: m.metric.clone(),
                current: current_status,
            });
            Ok(Outcome {
                replicas: p.replicas,
                name: format!("external metric {name}"),
                status,
            })
        }
        other => Err((
            "InvalidMetricSourceType",
            format!("unknown metric source type {other:?}"),
        )),
    }
}

fn resource_status(
    spec: &MetricSpec,
    name: &str,
    container: Option<String>,
    current: MetricValueStatus,
) -> MetricStatus {
    let mut status = MetricStatus {
        type_: spec.type_.clone(),
        ..Default::default()
    };
    match container {
        Some(container) => {
            status.container_resource = Some(
                k8s_openapi::api::autoscaling::v2::ContainerResourceMetricStatus {
                    name: name.into(),
                    container,
                    current,
                },
            )
        }
        None => {
            status.resource = Some(k8s_openapi::api::autoscaling::v2::ResourceMetricStatus {
                name: name.into(),
                current,
            })
        }
    }
    status
}

#[cfg(test)]
mod tests {
    use super::metrics::{MetricsError, PodSample, PodSamples};
    use super::*;
    use futures::future::BoxFuture;

    /// A metrics source with fixed per-pod CPU samples.
    struct Fake(PodSamples);

    impl MetricsSource for Fake {
        fn resource<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
            _: &'a str,
            _: Option<&'a str>,
        ) -> BoxFuture<'a, Result<PodSamples, MetricsError>> {
            Box::pin(async move { Ok(self.0.clone()) })
        }
        fn pods<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
            _: &'a str,
        ) -> BoxFuture<'a, Result<PodSamples, MetricsError>> {
            Box::pin(async move { Ok(self.0.clone()) })
        }
        fn object<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
            _: &'a str,
        ) -> BoxFuture<'a, Result<i64, MetricsError>> {
            Box::pin(async move { Ok(self.0.values().map(|s| s.milli).sum()) })
        }
        fn external<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
        ) -> BoxFuture<'a, Result<Vec<i64>, MetricsError>> {
            Box::pin(async move { Ok(self.0.values().map(|s| s.milli).collect()) })
        }
    }

    fn pods() -> Vec<Arc<Pod>> {
        ["a", "b"]
            .iter()
            .map(|n| {
                Arc::new(
                    serde_json::from_value(serde_json::json!({"metadata": {"name": n},
                        "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "200m"}}}]},
                        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}))
                    .unwrap(),
                )
            })
            .collect()
    }

    fn cpu(target: serde_json::Value) -> MetricSpec {
        serde_json::from_value(
            serde_json::json!({"type": "Resource", "resource": {"name": "cpu", "target": target}}),
        )
        .unwrap()
    }

    fn fake(milli: i64) -> Fake {
        Fake(
            ["a", "b"]
                .iter()
                .map(|n| (n.to_string(), PodSample { milli }))
                .collect(),
        )
    }

    #[tokio::test]
    async fn utilization_from_a_metrics_source() {
        let spec = cpu(serde_json::json!({"type": "Utilization", "averageUtilization": 50}));
        let cases = [
            ("at 100 % of request against 50 %: double", 200, 4, 100),
            ("at 50 %: stay", 100, 2, 50),
            ("at 53 %: within tolerance", 106, 2, 53),
            ("at 10 %: down to one", 20, 1, 10),
        ];
        for (name, milli, want, util) in cases {
            let o = metric(&fake(milli), &spec, "ns", "app=web", &pods(), 2)
                .await
                .ok()
                .unwrap();
            assert_eq!(o.replicas, want, "{name}");
            assert_eq!(o.name, "cpu resource utilization (percentage of request)");
            let current = o.status.resource.unwrap().current;
            assert_eq!(current.average_utilization, Some(util), "{name}");
        }
        let avg = cpu(serde_json::json!({"type": "AverageValue", "averageValue": "100m"}));
        let o = metric(&fake(300), &avg, "ns", "app=web", &pods(), 2)
            .await
            .ok()
            .unwrap();
        assert_eq!(o.replicas, 6);
        assert_eq!(
            o.status.resource.unwrap().current.average_value,
            Some(K8sQuantity("300m".into()))
        );
    }

    #[tokio::test]
    async fn without_metrics_api_the_failure_is_upstreams() {
        let spec = cpu(serde_json::json!({"type": "Utilization", "averageUtilization": 50}));
        let Err((reason, err)) = metric(&NoMetrics, &spec, "ns", "app=web", &pods(), 2).await
        else {
            panic!("NoMetrics must fail");
        };
        assert_eq!(reason, "FailedGetResourceMetric");
        assert_eq!(err, "failed to get cpu utilization: unable to get metrics for resource cpu: unable to fetch metrics from resource metrics API: the server could not find the requested resource (get pods.metrics.k8s.io)");
        let pods_metric: MetricSpec =
            serde_json::from_value(serde_json::json!({"type": "Pods", "pods": {
            "metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "10"}}}))
            .unwrap();
        let Err((reason, _)) = metric(&NoMetrics, &pods_metric, "ns", "app=web", &pods(), 2).await
        else {
            panic!("NoMetrics must fail");
        };
        assert_eq!(reason, "FailedGetPodsMetric");
        let o = metric(&fake(20_000), &pods_metric, "ns", "app=web", &pods(), 2)
            .await
            .ok()
            .unwrap();
        assert_eq!(o.replicas, 4, "20 per pod against 10");
    }

    #[tokio::test]
    async fn object_and_external_metrics_against_value_and_average_value() {
        let object: MetricSpec =
            serde_json::from_value(serde_json::json!({"type": "Object", "object": {
            "describedObject": {"apiVersion": "v1", "kind": "Service", "name": "web"},
            "metric": {"name": "rps"}, "target": {"type": "Value", "value": "500m"}}}))
            .unwrap();
        // Two pods at 500m each: the object's value is 1 against 500m, ratio 2 over 2 ready pods.
        let o = metric(&fake(500), &object, "ns", "app=web", &pods(), 2)
            .await
            .ok()
            .unwrap();
        assert_eq!(o.replicas, 4);
        assert_eq!(o.name, "rps metric on Service/web");
        assert_eq!(
            o.status.object.unwrap().current.value,
            Some(K8sQuantity("1".into()))
        );
        let external: MetricSpec = serde_json::from_value(serde_json::json!({"type": "External", "external": {
            "metric": {"name": "queue"}, "target": {"type": "AverageValue", "averageValue": "250m"}}}))
        .unwrap();
        // A total of 1 shared by replicas at 250m each: 4.
        let o = metric(&fake(500), &external, "ns", "app=web", &pods(), 2)
            .await
            .ok()
            .unwrap();
        assert_eq!(o.replicas, 4);
        assert_eq!(o.name, "external metric queue");
        assert_eq!(
            o.status.external.unwrap().current.average_value,
            Some(K8sQuantity("500m".into()))
        );
    }
}
