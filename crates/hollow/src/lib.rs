//! Hollow nodes: many simulated nodes in one process, like kubemark's hollow kubelets
//! or kwok. Each registers a Node, renews its Lease and reports, for the pods bound to
//! it, the statuses a v1.33 kubelet would, without running any container. They let the
//! control plane (API server, scheduler, controllers) be exercised and measured at
//! thousands of nodes and tens of thousands of pods on one machine.
//!
//! What it is not: no containers, images, volumes, probes or networking; addresses are
//! taken from blocks that are never routed. A hollow node never evicts or rejects a pod.
//!
//! # Nodes
//! Node `k` of a [`Config`] is named `{name_prefix}{start_index + k}`. It is created
//! with the kubelet's well-known labels (`kubernetes.io/hostname`, `kubernetes.io/os`
//! and `/arch`, the `beta.` ones), `type=hollow`, the configured labels and taints; if
//! it exists already (a restarted process) it is taken back: its labels are re-asserted
//! and its status re-posted. Its status has capacity = allocatable (cpu, memory,
//! ephemeral-storage, pods, zero hugepages), the conditions a healthy kubelet posts
//! (MemoryPressure/DiskPressure/PIDPressure False, Ready True with reason KubeletReady),
//! addresses (InternalIP, Hostname), nodeInfo (kubelet `v1.33.0-skiff-hollow`, runtime
//! `hollow://1.0`) and kubelet port 10250. It is re-posted every
//! `status_update_interval`, and at once when someone changes a condition (the node
//! lifecycle controller marking it Unknown while this process was down). A deleted
//! Node is registered again.
//!
//! # Heartbeats
//! A Lease per node in `kube-node-lease` (name and holder = node name, duration 40 s,
//! owned by the Node), renewed every `heartbeat_interval`. Renewals of all nodes are
//! spread evenly over the interval: 5,000 nodes every 10 s make a steady 500 requests a
//! second. Node status posts are spread the same way.
//!
//! # Pods
//! One watch of all bound pods (`fieldSelector=spec.nodeName!=`) serves every node of
//! the process; pods of other nodes are skipped. For a pod of ours, the node posts (via
//! pods/status, strategic merge) what the kubelet would once it started the pod: phase
//! Running, conditions PodReadyToStartContainers, Initialized, ContainersReady, Ready
//! and PodScheduled, container statuses (containerID `hollow://<pod uid>-<name>`,
//! running since start), init containers terminated (Completed, exit 0), startTime,
//! qosClass, hostIP and podIP. A container with a readinessProbe is ready only after
//! its `initialDelaySeconds`.
//!
//! Pod addresses: node with global index `i` owns `100.64.0.0 + i*512` as a /23 and
//! hands out offsets 2..=510; its InternalIP is `198.18.0.0 + i + 1` (see [`addr`]).
//! Host-network pods get the node's address.
//!
//! Pods with restartPolicy Never or OnFailure (Job pods) finish, steered by annotations:
//! - `hollow.skiff.dev/run-seconds` ([`pod::RUN_SECONDS`]): how long the containers run
//!   (default 1; fractions allowed);
//! - `hollow.skiff.dev/exit-code` ([`pod::EXIT_CODE`]): their exit code (default 0).
//!
//! Exit 0 gives phase Succeeded (containers terminated, reason Completed). A non-zero
//! code gives phase Failed (reason Error) under Never; under OnFailure the containers
//! restart at once (restartCount + 1, lastState terminated) and exit again after
//! run-seconds, a crash loop without the back-off delay.
//!
//! A pod being deleted is deleted with grace period 0 at once (its containers "stop"
//! immediately). When it has finalizers, its final status is posted first: containers
//! terminated with exit code 143 (SIGTERM), phase Failed.
//!
//! # Scale
//! Per node: a few dozen bytes plus a 64-byte address map. Per pod: a compact record
//! (uid, container names and images, a few numbers), not the Pod. Writes are bounded by
//! `max_in_flight` workers for pods and as many for node status and leases, retried
//! with back-off (conflicts, 429s, 5xx); the watch handler never waits on a write.
//!
//! # Flags for `skiff hollow-nodes`
//! `--node-count`, `--node-name-prefix`, `--node-start-index`, `--node-cpu`,
//! `--node-memory`, `--node-ephemeral-storage`, `--max-pods`, `--node-labels k=v,...`
//! ([`parse_labels`]), `--register-with-taints k=v:Effect,...` ([`parse_taints`]),
//! `--node-heartbeat-interval`, `--node-lease-duration-seconds`,
//! `--node-status-report-frequency`, `--max-in-flight`: one per [`Config`] field.

pub mod addr;
mod config;
pub mod lease;
pub mod node;
mod nodes;
pub mod pod;
mod pods;
mod spread;

use std::sync::Arc;

pub use config::{parse_labels, parse_taints, Config};
pub use skiff_runtime::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum HollowError {
    #[error("invalid hollow node configuration: {0}")]
    Config(String),
}

/// Runs the configured hollow nodes until `shutdown` fires. Fails only on an invalid
/// configuration; API errors are retried (and logged) for as long as it runs. When it
/// returns, nothing more is written: leases stop being renewed, so the node lifecycle
/// controller marks the nodes NotReady after the lease duration, as for a dead kubelet.
pub async fn run(
    client: kube::Client,
    config: Config,
    shutdown: CancellationToken,
) -> Result<(), HollowError> {
    config.validate()?;
    let config = Arc::new(config);
    tracing::info!(
        count = config.count,
        first = %config.node_name(0),
        "starting hollow nodes"
    );
    // Stop everything we start if the caller's token fires, and nothing else.
    let stop = shutdown.child_token();
    let nodes = nodes::Nodes::new(client.clone(), config.clone());
    let pods = pods::Pods::new(client, config);
    tokio::join!(nodes.run(stop.clone()), pods.run(stop.clone()));
    Ok(())
}
