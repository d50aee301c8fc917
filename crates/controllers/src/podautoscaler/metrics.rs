//! Where metric values come from, behind a narrow trait so a metrics API client can be
//! plugged in later. Skiff has no metrics API yet: [`NoMetrics`] fails every fetch with
//! the errors upstream's clients give when the metrics APIs are not served.
//!
//! Values are in milli-units (CPU in millicores, memory in milli-bytes, custom metric
//! quantities times 1000), as upstream's replica calculator works in MilliValue.

use std::collections::BTreeMap;

use futures::future::BoxFuture;

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct MetricsError(pub String);

/// One pod's sample.
#[derive(Clone, Debug, PartialEq)]
pub struct PodSample {
    pub milli: i64,
}

/// Samples by pod name.
pub type PodSamples = BTreeMap<String, PodSample>;

pub trait MetricsSource: Send + Sync {
    /// Usage of `resource` by the pods `selector` selects (summed over their containers,
    /// or of one container when `container` is given): the resource metrics API.
    fn resource<'a>(
        &'a self,
        namespace: &'a str,
        selector: &'a str,
        resource: &'a str,
        container: Option<&'a str>,
    ) -> BoxFuture<'a, Result<PodSamples, MetricsError>>;

    /// A per-pod custom metric: the custom metrics API.
    fn pods<'a>(
        &'a self,
        namespace: &'a str,
        selector: &'a str,
        metric: &'a str,
    ) -> BoxFuture<'a, Result<PodSamples, MetricsError>>;

    /// A metric describing one object (`kind/name`): the custom metrics API.
    fn object<'a>(
        &'a self,
        namespace: &'a str,
        object: &'a str,
        metric: &'a str,
    ) -> BoxFuture<'a, Result<i64, MetricsError>>;

    /// An external metric's values: the external metrics API.
    fn external<'a>(
        &'a self,
        namespace: &'a str,
        metric: &'a str,
    ) -> BoxFuture<'a, Result<Vec<i64>, MetricsError>>;
}

/// The metrics source of a cluster without metrics APIs.
pub struct NoMetrics;

impl MetricsSource for NoMetrics {
    fn resource<'a>(
        &'a self,
        _namespace: &'a str,
        _selector: &'a str,
        resource: &'a str,
        _container: Option<&'a str>,
    ) -> BoxFuture<'a, Result<PodSamples, MetricsError>> {
        Box::pin(async move {
            Err(MetricsError(format!(
                "unable to get metrics for resource {resource}: unable to fetch metrics from resource metrics API: the server could not find the requested resource (get pods.metrics.k8s.io)"
            )))
        })
    }

    fn pods<'a>(
        &'a self,
        _namespace: &'a str,
        _selector: &'a str,
        metric: &'a str,
    ) -> BoxFuture<'a, Result<PodSamples, MetricsError>> {
        Box::pin(async move {
            Err(MetricsError(format!(
                "unable to get metric {metric}: unable to fetch metrics from custom metrics API: no custom metrics API (custom.metrics.k8s.io) registered"
            )))
        })
    }

    fn object<'a>(
        &'a self,
        _namespace: &'a str,
        _object: &'a str,
        metric: &'a str,
    ) -> BoxFuture<'a, Result<i64, MetricsError>> {
        Box::pin(async move {
            Err(MetricsError(format!(
                "unable to get metric {metric}: unable to fetch metrics from custom metrics API: no custom metrics API (custom.metrics.k8s.io) registered"
            )))
        })
    }

    fn external<'a>(
        &'a self,
        _namespace: &'a str,
        metric: &'a str,
    ) -> BoxFuture<'a, Result<Vec<i64>, MetricsError>> {
        Box::pin(async move {
            Err(MetricsError(format!(
                "unable to get external metric {metric}: unable to fetch metrics from external metrics API: no external metrics API (external.metrics.k8s.io) registered"
            )))
        })
    }
}
