//! Keeps the Node registered and alive: registers it (taking over one that exists),
//! posts its status when something changed and every `status_report_interval`
//! otherwise, and renews its Lease in kube-node-lease every quarter of its duration.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, NodeStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use skiff_runtime::CancellationToken;
use tokio::sync::watch;

use crate::config::Config;
use crate::node::{self, Health};
use crate::sysinfo::Machine;

pub const LEASE_NAMESPACE: &str = "kube-node-lease";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op} node {node}: {source}")]
    Api {
        op: &'static str,
        node: String,
        #[source]
        source: kube::Error,
    },
}

pub struct Heartbeat {
    pub config: Arc<Config>,
    pub machine: Machine,
    pub runtime_version: String,
    pub nodes: Api<Node>,
    pub leases: Api<Lease>,
}

fn code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

impl Heartbeat {
    pub fn new(
        client: kube::Client,
        config: Arc<Config>,
        machine: Machine,
        runtime_version: String,
    ) -> Self {
        Self {
            nodes: Api::all(client.clone()),
            leases: Api::namespaced(client, LEASE_NAMESPACE),
            config,
            machine,
            runtime_version,
        }
    }

    fn name(&self) -> &str {
        &self.config.node_name
    }

    fn err(&self, op: &'static str) -> impl FnOnce(kube::Error) -> Error + '_ {
        move |source| Error::Api {
            op,
            node: self.name().to_string(),
            source,
        }
    }

    /// Creates the Node, or takes over the one with our name; returns it.
    pub async fn register(&self) -> Result<Node, Error> {
        let wanted = node::node_object(&self.config, &self.machine);
        match self.nodes.create(&PostParams::default(), &wanted).await {
            Ok(n) => {
                tracing::info!(node = self.name(), "registered the node");
                Ok(n)
            }
            Err(e) if code(&e) == Some(409) => {
                // Already registered (a restart): re-assert our labels and annotations,
                // drop our annotations this run no longer sets, keep the rest.
                let current = self
                    .nodes
                    .get(self.name())
                    .await
                    .map_err(self.err("reading"))?;
                let mut annotations = serde_json::Map::new();
                for key in current
                    .metadata
                    .annotations
                    .iter()
                    .flatten()
                    .map(|(k, _)| k)
                {
                    if key.starts_with(node::SKIFF_ANNOTATION_PREFIX) {
                        annotations.insert(key.clone(), serde_json::Value::Null);
                    }
                }
                for (k, v) in node::annotations(&self.config) {
                    annotations.insert(k, v.into());
                }
                let patch = serde_json::json!({ "metadata": {
                    "labels": wanted.metadata.labels,
                    "annotations": annotations,
                } });
                self.nodes
                    .patch(self.name(), &PatchParams::default(), &Patch::Merge(patch))
                    .await
                    .map_err(self.err("updating"))
            }
            Err(e) => Err(self.err("registering")(e)),
        }
    }

    /// Posts the status for `health` if it differs from `posted` (or `force`); returns
    /// what the server now holds.
    pub async fn post_status(
        &self,
        health: &Health,
        posted: Option<&NodeStatus>,
        force: bool,
    ) -> Result<Option<NodeStatus>, Error> {
        let status = node::node_status(
            &self.config,
            &self.machine,
            &self.runtime_version,
            health,
            posted,
            Timestamp::now(),
        );
        if !force && !node::changed(posted, &status) {
            return Ok(None);
        }
        let patch = serde_json::json!({ "status": status });
        let node = self
            .nodes
            .patch_status(
                self.name(),
                &PatchParams::default(),
                &Patch::Strategic(patch),
            )
            .await
            .map_err(self.err("posting the status of"))?;
        Ok(node.status)
    }

    /// Renews (or creates) the node's Lease, owned by the Node with `uid`.
    pub async fn renew(&self, uid: &str) -> Result<(), Error> {
        let now = MicroTime(Timestamp::now());
        let owner = OwnerReference {
            api_version: "v1".into(),
            kind: "Node".into(),
            name: self.name().into(),
            uid: uid.into(),
            ..Default::default()
        };
        let patch = serde_json::json!({
            "metadata": { "ownerReferences": [owner] },
            "spec": {
                "holderIdentity": self.name(),
                "leaseDurationSeconds": self.config.lease_duration_seconds,
                "renewTime": now,
            }
        });
        match self
            .leases
            .patch(self.name(), &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if code(&e) == Some(404) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name().into()),
                        namespace: Some(LEASE_NAMESPACE.into()),
                        owner_references: Some(vec![owner]),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.name().into()),
                        lease_duration_seconds: Some(self.config.lease_duration_seconds),
                        renew_time: Some(now),
                        ..Default::default()
                    }),
                };
                match self.leases.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(()),
                    Err(e) if code(&e) == Some(409) => Ok(()),
                    Err(e) => Err(self.err("creating the lease of")(e)),
                }
            }
            Err(e) => Err(self.err("renewing the lease of")(e)),
        }
    }

    /// Registers, then posts status and renews the lease until `shutdown`. Errors are
    /// logged and retried: a control plane that is away for a while must not stop the
    /// node (its pods keep running).
    pub async fn run(self, mut health: watch::Receiver<Health>, shutdown: CancellationToken) {
        let mut retry = Duration::from_millis(200);
        let mut node = loop {
            match self.register().await {
                Ok(n) => break n,
                Err(e) => tracing::warn!("{e}; retrying"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(retry) => {}
            }
            retry = (retry * 2).min(Duration::from_secs(10));
        };
        let mut posted = node.status.take();
        let mut uid = node.metadata.uid.clone().unwrap_or_default();
        let mut lease_tick = tokio::time::interval(self.config.lease_renew_interval());
        let mut status_tick = tokio::time::interval(self.config.status_report_interval);
        let mut check_tick = tokio::time::interval(Duration::from_secs(10));
        loop {
            let mut force = false;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = lease_tick.tick() => {
                    if let Err(e) = self.renew(&uid).await {
                        tracing::warn!("{e}");
                    }
                    continue;
                }
                _ = status_tick.tick() => force = true,
                _ = check_tick.tick() => {
                    // The node lifecycle controller may have marked us Unknown while we
                    // were away, or the Node was deleted: look at what the server holds.
                    match self.nodes.get_opt(self.name()).await {
                        Ok(Some(n)) => {
                            uid = n.metadata.uid.clone().unwrap_or_default();
                            posted = n.status;
                        }
                        Ok(None) => match self.register().await {
                            Ok(n) => {
                                uid = n.metadata.uid.clone().unwrap_or_default();
                                posted = None;
                            }
                            Err(e) => tracing::warn!("{e}"),
                        },
                        Err(e) => tracing::warn!(node = self.name(), "reading the node: {e}"),
                    }
                }
                changed = health.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
            let current = health.borrow().clone();
            match self.post_status(&current, posted.as_ref(), force).await {
                Ok(Some(s)) => posted = Some(s),
                Ok(None) => {}
                Err(e) => tracing::warn!("{e}"),
            }
        }
    }
}
