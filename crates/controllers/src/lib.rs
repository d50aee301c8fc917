//! Skiff's controller manager: every control loop that makes the cluster match what its
//! objects say. Each loop is one module with one reconcile: it queues keys from shared
//! informers (watch-fed caches), re-reads the object from the cache on every pass, and
//! writes through the API server like any other client. Loops are level-triggered:
//! restarting one mid-work converges to the same result.
//!
//! What it is not: no scheduling (skiff-scheduler) and nothing that runs containers.

pub mod util;

pub mod certificates;
pub mod clusterdns;
pub mod clusterroleaggregation;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpointslice;
pub mod garbagecollector;
pub mod job;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod podautoscaler;
pub mod podgc;
pub mod replicaset;
pub mod resourcequota;
pub mod rootcacertpublisher;
pub mod serviceaccount;
pub mod servicelb;
pub mod statefulset;
pub mod tokencleaner;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use skiff_runtime::events::Recorder;
use skiff_runtime::{CancellationToken, InformerFactory};

/// Settings of the controller manager (upstream's flag defaults unless noted).
#[derive(Clone, Debug)]
pub struct Settings {
    /// A node whose Lease is not renewed for this long is marked unknown
    /// (`--node-monitor-grace-period`).
    pub node_monitor_grace_period: Duration,
    /// Terminated pods kept before the pod GC deletes the oldest
    /// (`--terminated-pod-gc-threshold`).
    pub terminated_pod_gc_threshold: usize,
    /// How often the pod GC looks (upstream: 20 s).
    pub pod_gc_period: Duration,
    /// How long a pod's node must be missing before the pod GC deletes the pod
    /// (upstream: 40 s).
    pub pod_gc_orphan_quarantine: Duration,
    /// Workers per loop (upstream's `--concurrent-*-syncs`, 5 for most loops).
    pub workers: usize,
    /// Longest retry backoff for a failing key.
    pub max_retry_delay: Duration,
    /// Range node pod subnets are carved from (`--cluster-cidr`).
    pub cluster_cidr: nodeipam::Ipv4Cidr,
    /// Prefix length of each node's pod subnet (`--node-cidr-mask-size`).
    pub node_cidr_mask_size: u8,
    /// CA certificate and key the CSR signer signs with (`--cluster-signing-cert-file`,
    /// `--cluster-signing-key-file`); without them approved requests stay unsigned.
    pub cluster_signing_cert_file: Option<PathBuf>,
    pub cluster_signing_key_file: Option<PathBuf>,
    /// Longest certificate the signer issues (`--cluster-signing-duration`, 1 year).
    pub cluster_signing_duration: Duration,
    /// CA published as `kube-root-ca.crt` in every namespace (`--root-ca-file`).
    pub root_ca_file: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            node_monitor_grace_period: Duration::from_secs(40),
            terminated_pod_gc_threshold: 12500,
            pod_gc_period: Duration::from_secs(20),
            pod_gc_orphan_quarantine: Duration::from_secs(40),
            workers: 5,
            max_retry_delay: Duration::from_secs(60),
            cluster_cidr: nodeipam::Ipv4Cidr {
                network: std::net::Ipv4Addr::new(10, 42, 0, 0),
                prefix: 16,
            },
            node_cidr_mask_size: 24,
            cluster_signing_cert_file: None,
            cluster_signing_key_file: None,
            cluster_signing_duration: Duration::from_secs(365 * 24 * 3600),
            root_ca_file: None,
        }
    }
}

/// What every loop gets: a client, the shared informers, settings, and the shutdown
/// signal (cancelled when the process stops or leadership is lost).
#[derive(Clone)]
pub struct Ctx {
    pub client: kube::Client,
    pub informers: InformerFactory,
    pub settings: Arc<Settings>,
    pub shutdown: CancellationToken,
}

impl Ctx {
    pub fn new(client: kube::Client, settings: Settings, shutdown: CancellationToken) -> Self {
        Self {
            informers: InformerFactory::new(client.clone()),
            client,
            settings: Arc::new(settings),
            shutdown,
        }
    }

    /// An event recorder whose events name `component` as their source.
    pub fn recorder(&self, component: &str) -> Recorder {
        Recorder::new(self.client.clone(), component)
    }
}

/// A control loop, ready to run once the informers have synced.
pub type Loop = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Builds one loop: registers its informers and handlers, returns its workers.
pub type Builder = fn(&Ctx) -> Loop;

impl Ctx {
    /// A loop's workers: `workers` tasks take keys from `queue` until shutdown and hand
    /// each, with the loop's shared `state`, to `reconcile` (what every loop ends with).
    pub(crate) fn run_workers<K, S, F, Fut, E>(
        &self,
        queue: skiff_runtime::WorkQueue<K>,
        workers: usize,
        state: Arc<S>,
        reconcile: F,
    ) -> Loop
    where
        K: Clone + Eq + std::hash::Hash + Send + Sync + std::fmt::Display + 'static,
        S: Send + Sync + 'static,
        F: Fn(Arc<S>, K) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Option<Duration>, E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let shutdown = self.shutdown.clone();
        Box::pin(async move {
            skiff_runtime::worker::run(queue, workers, shutdown, move |key| {
                reconcile(state.clone(), key)
            })
            .await
        })
    }
}

/// Every loop the controller manager runs, by upstream's controller name.
pub const CONTROLLERS: &[(&str, Builder)] = &[
    ("replicaset", replicaset::replicasets),
    ("replicationcontroller", replicaset::replication_controllers),
    ("deployment", deployment::controller),
    ("statefulset", statefulset::controller),
    ("daemonset", daemonset::controller),
    ("job", job::controller),
    ("cronjob", cronjob::controller),
    ("garbagecollector", garbagecollector::controller),
    ("namespace", namespace::controller),
    ("endpointslice", endpointslice::controller),
    ("endpoints", endpointslice::endpoints_controller),
    ("nodelifecycle", nodelifecycle::controller),
    ("nodeipam", nodeipam::controller),
    ("podgc", podgc::controller),
    ("serviceaccount", serviceaccount::controller),
    ("resourcequota", resourcequota::controller),
    ("disruption", disruption::controller),
    ("horizontalpodautoscaling", podautoscaler::controller),
    (
        "clusterrole-aggregation",
        clusterroleaggregation::controller,
    ),
    ("csrapproving", certificates::approving_controller),
    ("csrsigning", certificates::signing_controller),
    ("root-ca-cert-publisher", rootcacertpublisher::controller),
    ("tokencleaner", tokencleaner::controller),
    // Skiff's own (k3s runs the same as separate addons).
    ("clusterdns", clusterdns::controller),
    ("servicelb", servicelb::controller),
];

/// Whether `--controllers` selects `name`, with upstream's syntax: `*` turns on every
/// loop, `foo` turns on foo, `-foo` turns foo off; an empty list is `*`.
pub fn selected(only: &[String], name: &str) -> bool {
    if only.iter().any(|o| o.strip_prefix('-') == Some(name)) {
        return false;
    }
    only.iter().all(|o| o.starts_with('-')) || only.iter().any(|o| o == "*" || o == name)
}

/// Runs the loops `only` selects (see [`selected`]) until `shutdown`.
pub async fn run(
    client: kube::Client,
    settings: Settings,
    only: &[String],
    shutdown: CancellationToken,
) {
    let ctx = Ctx::new(client, settings, shutdown.clone());
    let loops: Vec<Loop> = CONTROLLERS
        .iter()
        .filter(|(name, _)| selected(only, name))
        .map(|(_, build)| build(&ctx))
        .collect();
    ctx.informers.start(shutdown.clone());
    tokio::select! {
        _ = ctx.informers.wait_synced() => {}
        _ = shutdown.cancelled() => return,
    }
    tracing::info!(
        loops = loops.len(),
        "controller manager caches synced; loops running"
    );
    futures::future::join_all(loops).await;
}

#[cfg(test)]
mod tests {
    use super::selected;

    #[test]
    fn controllers_flag_follows_upstream_syntax() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(selected(&[], "job"));
        assert!(selected(&v(&["-servicelb"]), "job"));
        assert!(!selected(&v(&["-servicelb"]), "servicelb"));
        assert!(selected(&v(&["*", "-servicelb"]), "job"));
        assert!(selected(&v(&["job"]), "job"));
        assert!(!selected(&v(&["job"]), "cronjob"));
        assert!(!selected(&v(&["job", "-job"]), "job"));
    }
}
