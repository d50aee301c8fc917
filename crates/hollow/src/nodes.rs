//! The node side's IO: registers Nodes (taking back ones that exist), re-posts their
//! status, renews their Leases, and watches Nodes to re-register a deleted one or
//! re-assert conditions someone changed.
//!
//! Per node it keeps a [`Slot`]: the Node's uid and when its conditions last changed.

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use skiff_runtime::{CancellationToken, WorkQueue};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::config::Config;
use crate::{lease, node, spread};

#[derive(Clone, Debug, Default)]
struct Slot {
    uid: Option<Arc<str>>,
    /// lastTransitionTime of the conditions; `None` means "changes at the next post".
    since: Option<Timestamp>,
    /// The status was posted since the Node was (re-)registered.
    posted: bool,
}

pub(crate) struct Nodes {
    config: Arc<Config>,
    nodes: Api<Node>,
    leases: Api<Lease>,
    slots: Mutex<Vec<Slot>>,
    /// Local node indexes whose Node must be registered and its status posted.
    queue: WorkQueue<u32>,
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

impl Nodes {
    pub(crate) fn new(client: Client, config: Arc<Config>) -> Arc<Self> {
        let count = config.count as usize;
        Arc::new(Self {
            config,
            nodes: Api::all(client.clone()),
            leases: Api::namespaced(client, lease::NAMESPACE),
            slots: Mutex::new(vec![Slot::default(); count]),
            queue: WorkQueue::new("hollow-nodes", std::time::Duration::from_secs(30)),
        })
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn slot(&self, k: u32) -> Slot {
        self.slots().get(k as usize).cloned().unwrap_or_default()
    }

    fn update(&self, k: u32, f: impl FnOnce(&mut Slot)) {
        if let Some(s) = self.slots().get_mut(k as usize) {
            f(s);
        }
    }

    /// Registers every node, then keeps them registered, posted and leased until
    /// `shutdown`.
    pub(crate) async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let config = self.config.clone();
        for k in 0..config.count {
            self.queue.add(k);
        }
        let workers = {
            let this = self.clone();
            skiff_runtime::worker::run(
                self.queue.clone(),
                config.max_in_flight,
                shutdown.clone(),
                move |k| {
                    let this = this.clone();
                    async move { this.reconcile(k).await.map(|()| None) }
                },
            )
        };
        let status_loop = {
            let queue = self.queue.clone();
            spread::run(
                config.count,
                config.status_update_interval,
                Instant::now() + config.status_update_interval,
                Arc::new(Semaphore::new(config.max_in_flight)),
                shutdown.clone(),
                move |k| {
                    queue.add(k);
                    async {}
                },
            )
        };
        let lease_loop = {
            let this = self.clone();
            spread::run(
                config.count,
                config.heartbeat_interval,
                Instant::now(),
                Arc::new(Semaphore::new(config.max_in_flight)),
                shutdown.clone(),
                move |k| {
                    let this = this.clone();
                    async move { this.renew(k).await }
                },
            )
        };
        tokio::join!(
            workers,
            status_loop,
            lease_loop,
            self.watch(shutdown.clone())
        );
    }

    /// Makes sure node `k` is registered, then posts its status.
    async fn reconcile(&self, k: u32) -> Result<(), kube::Error> {
        let name = self.config.node_name(k);
        let now = Timestamp::now();
        let mut slot = self.slot(k);
        if slot.uid.is_none() {
            let (uid, since) = self.register(k, &name, now).await?;
            slot = Slot {
                uid: Some(uid.clone()),
                since: Some(since),
                posted: false,
            };
            self.update(k, |s| {
                s.uid = Some(uid);
                s.since = Some(since);
            });
        }
        let since = slot.since.unwrap_or(now);
        let status = node::node_status(&self.config, k, since, now);
        let patch = serde_json::json!({ "status": status });
        match self
            .nodes
            .patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
        {
            Ok(_) => {
                self.update(k, |s| {
                    s.since = Some(since);
                    s.posted = true;
                });
                Ok(())
            }
            Err(e) if is_status(&e, 404) => {
                // Deleted under us: register it again on the retry.
                self.update(k, |s| *s = Slot::default());
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Creates node `k`, or takes it back if it exists (a restarted process): its
    /// labels are re-asserted, other labels and its spec are left as they are (the
    /// kubelet applies `--register-with-taints` only when it creates the Node).
    /// Returns its uid and its conditions' transition time.
    async fn register(
        &self,
        k: u32,
        name: &str,
        now: Timestamp,
    ) -> Result<(Arc<str>, Timestamp), kube::Error> {
        let uid_of =
            |n: &Node| -> Arc<str> { n.metadata.uid.as_deref().unwrap_or_default().into() };
        match self
            .nodes
            .create(&PostParams::default(), &node::node_object(&self.config, k))
            .await
        {
            Ok(created) => {
                tracing::debug!(node = name, "registered");
                Ok((uid_of(&created), now))
            }
            Err(e) if is_status(&e, 409) => {
                let existing = self.nodes.get(name).await?;
                let patch = serde_json::json!({
                    "metadata": { "labels": node::labels(&self.config, name) }
                });
                let taken = self
                    .nodes
                    .patch(name, &PatchParams::default(), &Patch::Merge(patch))
                    .await?;
                tracing::debug!(node = name, "took back existing node");
                Ok((uid_of(&taken), node::transition_time(&existing, now)))
            }
            Err(e) => Err(e),
        }
    }

    /// Renews node `k`'s Lease (creating it if missing). Failures are logged and the
    /// next round tries again, as the kubelet's lease controller does.
    async fn renew(&self, k: u32) {
        let name = self.config.node_name(k);
        let uid = self.slot(k).uid;
        let duration = self.config.lease_duration_seconds;
        let now = Timestamp::now();
        let patch = lease::renew_patch(&name, uid.as_deref(), duration, now);
        let result = match self
            .leases
            .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Err(e) if is_status(&e, 404) => {
                let l = lease::lease(&name, uid.as_deref(), duration, now);
                match self.leases.create(&PostParams::default(), &l).await {
                    Err(e) if is_status(&e, 409) => Ok(()),
                    other => other.map(|_| ()),
                }
            }
            other => other.map(|_| ()),
        };
        if let Err(e) = result {
            tracing::debug!(node = %name, "lease renewal failed: {e}");
        }
    }

    /// Watches hollow Nodes: a deleted one is registered again, one whose conditions
    /// someone changed gets its status re-posted now.
    async fn watch(&self, shutdown: CancellationToken) {
        let (key, value) = node::TYPE_LABEL;
        let selector = format!("{key}={value}");
        let stream = watcher::watcher(
            self.nodes.clone(),
            watcher::Config::default().labels(&selector),
        )
        .default_backoff();
        futures::pin_mut!(stream);
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => return,
                e = stream.next() => e,
            };
            match event {
                None => return,
                Some(Ok(Event::Apply(n) | Event::InitApply(n))) => self.observed(&n),
                Some(Ok(Event::Delete(n))) => self.deleted(&n),
                Some(Ok(Event::Init | Event::InitDone)) => {}
                Some(Err(e)) => tracing::warn!("node watch failed (retrying): {e}"),
            }
        }
    }

    fn local(&self, n: &Node) -> Option<u32> {
        self.config.node_index(n.metadata.name.as_deref()?)
    }

    fn observed(&self, n: &Node) {
        let Some(k) = self.local(n) else { return };
        let uid = n.metadata.uid.as_deref().unwrap_or_default();
        let mut wake = false;
        self.update(k, |s| {
            if s.uid.as_deref().is_some_and(|u| u != uid) {
                // Deleted and created again by someone else: adopt it, post at once.
                s.uid = Some(uid.into());
                s.since = None;
                wake = true;
            } else if s.posted && !node::conditions_asserted(n) {
                s.since = None;
                wake = true;
            }
        });
        if wake {
            self.queue.add(k);
        }
    }

    fn deleted(&self, n: &Node) {
        let Some(k) = self.local(n) else { return };
        let uid = n.metadata.uid.as_deref().unwrap_or_default();
        let mut wake = false;
        self.update(k, |s| {
            if s.uid.as_deref().is_none_or(|u| u == uid) {
                *s = Slot::default();
                wake = true;
            }
        });
        if wake {
            tracing::info!(node = ?n.metadata.name, "node deleted: registering it again");
            self.queue.add(k);
        }
    }
}
