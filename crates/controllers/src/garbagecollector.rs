//! Garbage collector (upstream's `garbage-collector-controller`): deletes objects whose
//! owners are gone, and carries out foreground and orphan deletions.
//!
//! - The ownership graph ([`graph`]) covers every type that supports list, watch and
//!   delete ([`discovery`], re-run every 30 s so new types such as CRDs join), fed by
//!   metadata-only watches.
//! - Background: when an owner disappears its dependents are checked; a dependent whose
//!   every owner is gone (confirmed by a live GET, as the cache may lag) is deleted, one
//!   with another live owner only loses the dead reference ([`decide`]).
//! - Foreground: an owner being deleted with the `foregroundDeletion` finalizer has its
//!   dependents deleted; the finalizer goes once no dependent with
//!   `blockOwnerDeletion` remains.
//! - Orphan: an owner being deleted with the `orphan` finalizer has the references to it
//!   removed from its dependents, then the finalizer removed.
//!
//! Assumptions: references from a cluster-scoped dependent to a namespaced owner are
//! invalid; they count as absent and are reported with an `OwnerRefInvalidNamespace`
//! event, as are references whose uid the graph saw in another namespace.

pub mod decide;
pub mod discovery;
pub mod graph;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{
    DeleteParams, DynamicObject, PartialObjectMeta, Patch, PatchParams, Preconditions,
    PropagationPolicy,
};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Api;
use skiff_runtime::events::{EventType, Recorder};
use skiff_runtime::{CancellationToken, WorkQueue};

use self::decide::{Action, OwnerState};
use self::discovery::{Resources, Type};
use self::graph::{Graph, Node, FOREGROUND, ORPHAN};
use crate::{Ctx, Loop};

/// How often discovery runs again so new types join the graph.
pub const REDISCOVERY_PERIOD: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op} {resource} {name}: {source}")]
    Api {
        op: &'static str,
        resource: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "ownerReference of {dependent} names {api_version} {kind}, which the server does not serve"
    )]
    UnknownKind {
        dependent: String,
        api_version: String,
        kind: String,
    },
}

/// An API handle for objects of `t` in `namespace` (ignored for cluster-scoped types).
pub fn api_for(client: &kube::Client, t: &Type, namespace: Option<&str>) -> Api<DynamicObject> {
    match namespace {
        Some(ns) if t.namespaced => Api::namespaced_with(client.clone(), ns, &t.resource),
        _ => Api::all_with(client.clone(), &t.resource),
    }
}

fn policy(p: &str) -> PropagationPolicy {
    match p {
        "Orphan" => PropagationPolicy::Orphan,
        "Foreground" => PropagationPolicy::Foreground,
        _ => PropagationPolicy::Background,
    }
}

fn node_from(kind: &Arc<Type>, meta: ObjectMeta) -> Option<Node> {
    Some(Node {
        kind: kind.clone(),
        namespace: meta.namespace.filter(|n| !n.is_empty()),
        name: meta.name?,
        uid: meta.uid?,
        owners: meta.owner_references.unwrap_or_default(),
        deleting: meta.deletion_timestamp.is_some(),
        finalizers: meta.finalizers.unwrap_or_default(),
    })
}

struct Monitor {
    stop: CancellationToken,
    synced: Arc<AtomicBool>,
}

struct Collector {
    client: kube::Client,
    graph: Mutex<Graph>,
    resources: RwLock<Arc<Resources>>,
    queue: WorkQueue<String>,
    recorder: Recorder,
}

impl Collector {
    fn wake(&self, uids: Vec<String>) {
        for uid in uids {
            self.queue.add(uid);
        }
    }

    fn upsert(&self, node: Node) {
        let wake = match self.graph.lock() {
            Ok(mut g) => g.upsert(node),
            Err(_) => return,
        };
        self.wake(wake);
    }

    fn remove(&self, uid: &str) {
        let wake = match self.graph.lock() {
            Ok(mut g) => g.remove(uid),
            Err(_) => return,
        };
        self.wake(wake);
    }

    fn node(&self, uid: &str) -> Option<Node> {
        self.graph.lock().ok()?.get(uid).cloned()
    }

    /// Feeds the graph from one type's metadata watch until `stop`; then forgets the
    /// type's objects (the type is no longer served).
    async fn monitor(
        self: Arc<Self>,
        kind: Arc<Type>,
        stop: CancellationToken,
        synced: Arc<AtomicBool>,
    ) {
        // Metadata-only: the graph needs nothing else.
        let api: Api<PartialObjectMeta<DynamicObject>> =
            Api::all_with(self.client.clone(), &kind.resource);
        let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
        let mut stream = std::pin::pin!(stream);
        let key = kind.key();
        let mut listed: Option<HashSet<String>> = None;
        loop {
            let event = tokio::select! {
                _ = stop.cancelled() => break,
                e = stream.next() => match e {
                    Some(e) => e,
                    None => break,
                },
            };
            match event {
                Ok(Event::Init) => listed = Some(HashSet::new()),
                Ok(Event::InitApply(obj)) => {
                    if let (Some(seen), Some(uid)) = (listed.as_mut(), obj.metadata.uid.clone()) {
                        seen.insert(uid);
                    }
                    if let Some(n) = node_from(&kind, obj.metadata) {
                        self.upsert(n);
                    }
                }
                Ok(Event::InitDone) => {
                    // Objects a relist no longer shows were deleted while we were away.
                    if let Some(seen) = listed.take() {
                        let stale: Vec<String> = match self.graph.lock() {
                            Ok(g) => g.uids_of_type(&key),
                            Err(_) => Vec::new(),
                        };
                        for uid in stale.iter().filter(|u| !seen.contains(*u)) {
                            self.remove(uid);
                        }
                    }
                    synced.store(true, Ordering::SeqCst);
                }
                Ok(Event::Apply(obj)) => {
                    if let Some(n) = node_from(&kind, obj.metadata) {
                        self.upsert(n);
                    }
                }
                Ok(Event::Delete(obj)) => {
                    if let Some(uid) = obj.metadata.uid {
                        self.remove(&uid);
                    }
                }
                Err(e) => tracing::debug!(resource = %key, "garbage collector watch: {e}"),
            }
        }
        let uids = match self.graph.lock() {
            Ok(g) => g.uids_of_type(&key),
            Err(_) => Vec::new(),
        };
        for uid in uids {
            self.remove(&uid);
        }
    }

    async fn reconcile(&self, uid: String) -> Result<Option<Duration>, Error> {
        let Some(node) = self.node(&uid) else {
            return Ok(None);
        };
        if node.orphaning() {
            return self.orphan(&node).await;
        }
        if node.deleting_dependents() {
            return self.foreground(&node).await;
        }
        if node.deleting || node.owners.is_empty() {
            return Ok(None);
        }
        self.attempt_to_delete(&node).await
    }

    fn api_error(op: &'static str, node: &Node, source: kube::Error) -> Error {
        Error::Api {
            op,
            resource: node.kind.group_resource(),
            name: match &node.namespace {
                Some(ns) => format!("{ns}/{}", node.name),
                None => node.name.clone(),
            },
            source,
        }
    }

    /// The object as the server has it now, if it is still the one the graph knows.
    async fn live(&self, node: &Node) -> Result<Option<ObjectMeta>, Error> {
        let api = api_for(&self.client, &node.kind, node.namespace.as_deref());
        match api.get_metadata_opt(&node.name).await {
            Ok(Some(m)) if m.metadata.uid.as_deref() == Some(node.uid.as_str()) => {
                Ok(Some(m.metadata))
            }
            Ok(_) => Ok(None),
            Err(e) => Err(Self::api_error("reading", node, e)),
        }
    }

    /// Writes `metadata` fields with the read resourceVersion, so a concurrent change
    /// makes this a conflict (retried) rather than lost.
    async fn patch_meta(
        &self,
        node: &Node,
        rv: Option<String>,
        fields: serde_json::Value,
    ) -> Result<(), Error> {
        let api = api_for(&self.client, &node.kind, node.namespace.as_deref());
        let mut meta = fields;
        meta["resourceVersion"] = serde_json::json!(rv);
        let patch = serde_json::json!({ "metadata": meta });
        match api
            .patch_metadata(&node.name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(Self::api_error("patching", node, e)),
        }
    }

    async fn remove_finalizer(&self, node: &Node, finalizer: &str) -> Result<(), Error> {
        let Some(live) = self.live(node).await? else {
            return Ok(());
        };
        let current = live.finalizers.unwrap_or_default();
        if !current.iter().any(|f| f == finalizer) {
            return Ok(());
        }
        let rest = decide::without_finalizer(&current, finalizer);
        let value = if rest.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::json!(rest)
        };
        self.patch_meta(
            node,
            live.resource_version,
            serde_json::json!({ "finalizers": value }),
        )
        .await
    }

    async fn remove_refs(&self, node: &Node, owners: &[String]) -> Result<(), Error> {
        let Some(live) = self.live(node).await? else {
            return Ok(());
        };
        let current = live.owner_references.unwrap_or_default();
        let rest = decide::without_refs(&current, owners);
        if rest.len() == current.len() {
            return Ok(());
        }
        let value = if rest.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::json!(rest)
        };
        self.patch_meta(
            node,
            live.resource_version,
            serde_json::json!({ "ownerReferences": value }),
        )
        .await
    }

    async fn orphan(&self, owner: &Node) -> Result<Option<Duration>, Error> {
        let dependents: Vec<Node> = match self.graph.lock() {
            Ok(g) => g.dependents(&owner.uid).into_iter().cloned().collect(),
            Err(_) => Vec::new(),
        };
        for d in &dependents {
            self.remove_refs(d, std::slice::from_ref(&owner.uid))
                .await?;
        }
        self.remove_finalizer(owner, ORPHAN).await?;
        Ok(None)
    }

    async fn foreground(&self, owner: &Node) -> Result<Option<Duration>, Error> {
        let (check, done) = match self.graph.lock() {
            Ok(g) => decide::foreground_step(owner, &g.dependents(&owner.uid)),
            Err(_) => return Ok(None),
        };
        self.wake(check);
        if done {
            self.remove_finalizer(owner, FOREGROUND).await?;
        }
        // Otherwise each blocking dependent's removal wakes this owner again.
        Ok(None)
    }

    fn invalid_namespace_event(&self, dependent: &Node, r: &OwnerReference) {
        let object = ObjectReference {
            api_version: Some(dependent.kind.resource.api_version.clone()),
            kind: Some(dependent.kind.resource.kind.clone()),
            name: Some(dependent.name.clone()),
            namespace: dependent.namespace.clone(),
            uid: Some(dependent.uid.clone()),
            ..Default::default()
        };
        let message = format!(
            "ownerRef [{}/{}, namespace: {}, name: {}, uid: {}] does not exist in namespace {:?}",
            r.api_version,
            r.kind,
            dependent.namespace.as_deref().unwrap_or(""),
            r.name,
            r.uid,
            dependent.namespace.as_deref().unwrap_or(""),
        );
        self.recorder.record(
            object,
            EventType::Warning,
            "OwnerRefInvalidNamespace",
            message,
        );
    }

    /// Looks up one owner live and classifies it.
    async fn owner_state(
        &self,
        dependent: &Node,
        r: &OwnerReference,
        resources: &Resources,
    ) -> Result<OwnerState, Error> {
        let Some(kind) = resources.resolve(&r.api_version, &r.kind) else {
            return Err(Error::UnknownKind {
                dependent: dependent.name.clone(),
                api_version: r.api_version.clone(),
                kind: r.kind.clone(),
            });
        };
        if kind.namespaced && !dependent.kind.namespaced {
            // A cluster-scoped object cannot be owned by a namespaced one.
            self.invalid_namespace_event(dependent, r);
            return Ok(OwnerState::Dangling);
        }
        let seen_elsewhere = self
            .node(&r.uid)
            .is_some_and(|o| o.kind.namespaced && o.namespace != dependent.namespace);
        if seen_elsewhere {
            self.invalid_namespace_event(dependent, r);
        }
        let namespace = if kind.namespaced {
            dependent.namespace.as_deref()
        } else {
            None
        };
        let api = api_for(&self.client, kind, namespace);
        let found = api
            .get_metadata_opt(&r.name)
            .await
            .map_err(|e| Self::api_error("reading owner of", dependent, e))?;
        Ok(match found {
            None => decide::owner_state(r, None),
            Some(m) => {
                let fins = m.metadata.finalizers.unwrap_or_default();
                decide::owner_state(
                    r,
                    Some((
                        m.metadata.uid.as_deref().unwrap_or(""),
                        m.metadata.deletion_timestamp.is_some(),
                        &fins,
                    )),
                )
            }
        })
    }

    async fn attempt_to_delete(&self, node: &Node) -> Result<Option<Duration>, Error> {
        // The cache may lag: decide on the object as the server has it now.
        let Some(live) = self.live(node).await? else {
            return Ok(None);
        };
        if live.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let resources = match self.resources.read() {
            Ok(r) => r.clone(),
            Err(_) => return Ok(None),
        };
        let mut classified = Vec::new();
        for r in live.owner_references.clone().unwrap_or_default() {
            let state = self.owner_state(node, &r, &resources).await?;
            classified.push((r, state));
        }
        let has_dependents = self
            .graph
            .lock()
            .map(|g| !g.dependents(&node.uid).is_empty())
            .unwrap_or(false);
        let finalizers = live.finalizers.clone().unwrap_or_default();
        match decide::decide(&classified, has_dependents, &finalizers) {
            Action::Nothing => Ok(None),
            Action::RemoveRefs(uids) => {
                self.remove_refs(node, &uids).await?;
                Ok(None)
            }
            Action::Delete(p) => {
                tracing::info!(resource = %node.kind.group_resource(), namespace = ?node.namespace, name = %node.name, policy = p, "garbage collector deleting object");
                let api = api_for(&self.client, &node.kind, node.namespace.as_deref());
                let dp = DeleteParams {
                    propagation_policy: Some(policy(p)),
                    preconditions: Some(Preconditions {
                        uid: Some(node.uid.clone()),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                match api.delete(&node.name, &dp).await {
                    Ok(_) => Ok(None),
                    // Gone already, or replaced by a new object of the same name.
                    Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(None),
                    Err(e) => Err(Self::api_error("deleting", node, e)),
                }
            }
        }
    }
}

/// Starts monitors for newly served types and stops those no longer served.
fn sync_monitors(
    collector: &Arc<Collector>,
    monitors: &mut HashMap<String, Monitor>,
    wanted: Vec<Type>,
    shutdown: &CancellationToken,
) {
    let keys: HashSet<String> = wanted.iter().map(Type::key).collect();
    monitors.retain(|k, m| {
        let keep = keys.contains(k);
        if !keep {
            m.stop.cancel();
        }
        keep
    });
    for t in wanted {
        let key = t.key();
        if monitors.contains_key(&key) {
            continue;
        }
        let stop = shutdown.child_token();
        let synced = Arc::new(AtomicBool::new(false));
        tokio::spawn(
            collector
                .clone()
                .monitor(Arc::new(t), stop.clone(), synced.clone()),
        );
        monitors.insert(key, Monitor { stop, synced });
    }
}

pub fn controller(ctx: &Ctx) -> Loop {
    let queue: WorkQueue<String> = WorkQueue::new("garbagecollector", ctx.settings.max_retry_delay);
    let collector = Arc::new(Collector {
        client: ctx.client.clone(),
        graph: Mutex::new(Graph::default()),
        resources: RwLock::new(Arc::new(Resources::default())),
        queue: queue.clone(),
        recorder: ctx.recorder("garbage-collector-controller"),
    });
    let ctx = ctx.clone();
    Box::pin(async move {
        let shutdown = ctx.shutdown.clone();
        let mut monitors: HashMap<String, Monitor> = HashMap::new();
        let mut workers_started = false;
        loop {
            match discovery::discover(&collector.client).await {
                Ok(resources) => {
                    let wanted = resources.garbage_collectable();
                    if let Ok(mut r) = collector.resources.write() {
                        *r = Arc::new(resources);
                    }
                    sync_monitors(&collector, &mut monitors, wanted, &shutdown);
                }
                Err(e) => tracing::warn!("garbage collector discovery failed: {e}"),
            }
            if !workers_started && !monitors.is_empty() {
                // Acting before the graph holds every type could, e.g., finish a
                // foreground deletion whose dependents are not yet observed.
                let waiting_since = std::time::Instant::now();
                let mut warned = false;
                while !monitors.values().all(|m| m.synced.load(Ordering::SeqCst)) {
                    if !warned && waiting_since.elapsed() > Duration::from_secs(30) {
                        warned = true;
                        let unsynced: Vec<&String> = monitors
                            .iter()
                            .filter(|(_, m)| !m.synced.load(Ordering::SeqCst))
                            .map(|(k, _)| k)
                            .collect();
                        tracing::warn!(
                            ?unsynced,
                            "garbage collector still waiting for its graph to sync"
                        );
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    }
                }
                workers_started = true;
                let c = collector.clone();
                let (q, n, s) = (queue.clone(), ctx.settings.workers, shutdown.clone());
                tokio::spawn(skiff_runtime::worker::run(q, n, s, move |uid| {
                    let c = c.clone();
                    async move { c.reconcile(uid).await }
                }));
            }
            let wait = if workers_started {
                REDISCOVERY_PERIOD
            } else {
                Duration::from_secs(1)
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    })
}
