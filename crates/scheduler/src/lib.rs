//! Skiff's scheduler: kube-scheduler's job and behaviour (v1.33 default profile). It
//! watches pods that name this scheduler and have no node, picks a node for each
//! (filter, score, select), and binds through the `pods/binding` subresource. Pods no
//! node fits get `PodScheduled=False` with upstream's message and a `FailedScheduling`
//! event, and may preempt lower-priority pods.
//!
//! Layout: a pure core — [`cache`] (node info kept incrementally, with assumed pods),
//! [`plugins`] (filters and scores), [`queue`] (active / backoff / unschedulable),
//! [`preemption`], [`message`] and [`core`] (one decision per attempt) — and a thin
//! [`shell`] that feeds informer changes in and carries decisions out (binds, status
//! writes, evictions, events).
//!
//! What it is not: no leader election (wrap [`run`] in `skiff_runtime::leader::Elector`),
//! no scheduler profiles, extenders or configuration file, no binding of unbound volume
//! claims (delayed binding, provisioning), no volume limits / VolumeRestrictions /
//! VolumeZone, no DRA, no pod-level resources.

pub mod cache;
pub mod core;
pub mod message;
pub mod plugins;
pub mod preemption;
pub mod queue;
pub mod resources;
pub mod shell;
pub mod terms;

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Scheduler settings (upstream's KubeSchedulerConfiguration, the parts Skiff honours).
#[derive(Clone, Debug)]
pub struct Settings {
    /// Pods whose `spec.schedulerName` is this are ours.
    pub scheduler_name: String,
    /// Binds (and status writes) in flight at once.
    pub bind_concurrency: usize,
    /// Backoff after a failed attempt, doubled per attempt up to `pod_max_backoff`.
    pub pod_initial_backoff: Duration,
    pub pod_max_backoff: Duration,
    /// `percentageOfNodesToScore`; `None` means upstream's adaptive value
    /// (50% − nodes/125, at least 5%, and at least 100 nodes).
    pub percentage_of_nodes_to_score: Option<u32>,
    /// How long a pod stays unschedulable before it is retried anyway.
    pub pod_max_in_unschedulable: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            scheduler_name: "default-scheduler".into(),
            bind_concurrency: 64,
            pod_initial_backoff: Duration::from_secs(1),
            pod_max_backoff: Duration::from_secs(10),
            percentage_of_nodes_to_score: None,
            pod_max_in_unschedulable: Duration::from_secs(300),
        }
    }
}

/// What can go wrong talking to the API server (logged; the scheduler retries).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("binding pod {pod} to node {node}: {source}")]
    Bind {
        pod: String,
        node: String,
        #[source]
        source: kube::Error,
    },
    #[error("updating the status of pod {pod}: {source}")]
    Status {
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error("preempting pod {pod}: {source}")]
    Preempt {
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error("encoding a request: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Runs the scheduler until `shutdown` is cancelled.
pub async fn run(client: kube::Client, settings: Settings, shutdown: CancellationToken) {
    shell::run(client, settings, shutdown).await
}
