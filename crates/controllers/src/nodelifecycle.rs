//! The node lifecycle controller: watches node health and acts on it, as upstream's
//! node-lifecycle-controller plus taint-eviction-controller.
//!
//! - Health ([`health`]): a node whose kubelet neither renews its Lease in
//!   kube-node-lease nor posts a new Ready heartbeat for `node_monitor_grace_period` gets
//!   Ready/MemoryPressure/DiskPressure/PIDPressure Unknown; its pods are marked not
//!   Ready (event NodeNotReady on the node and each pod).
//! - Taints ([`taints`]): NoSchedule taints mirror conditions; NoExecute not-ready /
//!   unreachable follow Ready, added at a per-zone rate and not at all when every zone is
//!   fully disrupted ([`zones`]); removed at once when the node recovers.
//! - Eviction ([`eviction`]): pods not tolerating a NoExecute taint are deleted (with
//!   the DisruptionTarget condition first), at once or after their tolerationSeconds.

pub mod eviction;
pub mod health;
pub mod taints;
pub mod zones;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use skiff_runtime::events::{EventType, Recorder};
use skiff_runtime::{Informer, ObjectKey, WorkQueue};

use crate::util::{podcontrol, pods as podutil};
use crate::{Ctx, Loop};
use eviction::Decision;
use zones::{Bucket, ZoneState};

pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
const PODS_BY_NODE: &str = "nodelifecycle-node";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op} {what}: {source}")]
    Api {
        op: &'static str,
        what: String,
        #[source]
        source: kube::Error,
    },
}

fn api_err(op: &'static str, what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Api { op, what, source }
}

#[derive(Default)]
struct ZoneBook {
    states: BTreeMap<String, (ZoneState, usize)>,
    all_full: bool,
    buckets: HashMap<String, Bucket>,
}

struct State {
    client: kube::Client,
    nodes: Informer<Node>,
    leases: Informer<Lease>,
    pods: Informer<Pod>,
    grace: Duration,
    period: Duration,
    health: Mutex<HashMap<String, health::Health>>,
    /// Node name -> uid of every node seen, to tell when one is removed.
    known: Mutex<HashMap<String, String>>,
    /// Nodes whose pods still have to be marked not Ready (a write failed).
    mark_pending: Mutex<HashSet<String>>,
    zones: Mutex<ZoneBook>,
    /// When a NoExecute taint without timeAdded was first seen, by (node, key).
    first_seen: Mutex<HashMap<(String, String), Timestamp>>,
    /// Pods with an eviction scheduled, to report its cancellation.
    scheduled: Mutex<HashSet<ObjectKey>>,
    node_queue: WorkQueue<ObjectKey>,
    pod_queue: WorkQueue<ObjectKey>,
    recorder: Recorder,
    eviction_recorder: Recorder,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn no_execute_taints(node: &Node) -> Vec<Taint> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .filter(|t| t.effect == "NoExecute")
        .cloned()
        .collect()
}

pub fn controller(ctx: &Ctx) -> Loop {
    let nodes = ctx.informers.informer::<Node>();
    let leases = ctx.informers.informer::<Lease>();
    let pods = ctx.informers.informer::<Pod>();
    pods.add_index(PODS_BY_NODE, |p: &Pod| {
        podutil::node_name(p)
            .map(str::to_string)
            .into_iter()
            .collect()
    });
    let grace = ctx.settings.node_monitor_grace_period;
    let state = Arc::new(State {
        client: ctx.client.clone(),
        nodes: nodes.clone(),
        leases,
        pods: pods.clone(),
        grace,
        // Upstream checks every 5 s against a 40 s grace; keep that proportion.
        period: (grace / 5).clamp(Duration::from_millis(100), Duration::from_secs(5)),
        health: Mutex::new(HashMap::new()),
        known: Mutex::new(HashMap::new()),
        mark_pending: Mutex::new(HashSet::new()),
        zones: Mutex::new(ZoneBook::default()),
        first_seen: Mutex::new(HashMap::new()),
        scheduled: Mutex::new(HashSet::new()),
        node_queue: WorkQueue::new("nodelifecycle-taints", ctx.settings.max_retry_delay),
        pod_queue: WorkQueue::new("taint-eviction", ctx.settings.max_retry_delay),
        recorder: ctx.recorder("node-controller"),
        eviction_recorder: ctx.recorder("taint-eviction-controller"),
    });
    let (nq, pq, pods_inf) = (
        state.node_queue.clone(),
        state.pod_queue.clone(),
        pods.clone(),
    );
    nodes.on_change(move |c| {
        let node = c.object();
        nq.add(ObjectKey::of(node.as_ref()));
        let taints_changed = match (&c.old, &c.new) {
            (Some(o), Some(n)) => no_execute_taints(o) != no_execute_taints(n),
            _ => true,
        };
        if taints_changed {
            for p in pods_inf.by_index(PODS_BY_NODE, &node.name_any()) {
                pq.add(ObjectKey::of(p.as_ref()));
            }
        }
    });
    let pq = state.pod_queue.clone();
    pods.on_change(move |c| {
        if c.new.as_deref().and_then(podutil::node_name).is_some() {
            pq.add(ObjectKey::of(c.object().as_ref()));
        }
    });
    let (workers, shutdown) = (ctx.settings.workers, ctx.shutdown.clone());
    Box::pin(async move {
        let s = state.clone();
        let monitor = {
            let shutdown = shutdown.clone();
            async move {
                let mut tick = tokio::time::interval(s.period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tick.tick() => s.monitor().await,
                    }
                }
            }
        };
        let s = state.clone();
        let taint_workers = skiff_runtime::worker::run(
            state.node_queue.clone(),
            workers,
            shutdown.clone(),
            move |key| {
                let s = s.clone();
                async move { s.sync_taints(key).await }
            },
        );
        let s = state.clone();
        let eviction_workers =
            skiff_runtime::worker::run(state.pod_queue.clone(), workers, shutdown, move |key| {
                let s = s.clone();
                async move { s.sync_pod(key).await }
            });
        futures::join!(monitor, taint_workers, eviction_workers);
    })
}

impl State {
    /// One health pass over every node (upstream's monitorNodeHealth).
    async fn monitor(&self) {
        let now = Instant::now();
        let now_t = Time(Timestamp::now());
        let nodes = self.nodes.list();
        let mut readiness = Vec::with_capacity(nodes.len());
        for node in &nodes {
            let name = node.name_any();
            lock(&self.known).insert(name.clone(), node.uid().unwrap_or_default());
            let lease = self.leases.get_named(Some(NODE_LEASE_NAMESPACE), &name);
            let h = {
                let mut map = lock(&self.health);
                let h = health::observe(map.get(&name), health::signs(node, lease.as_deref()), now);
                map.insert(name.clone(), h.clone());
                h
            };
            let mut ready = taints::ready_status(node) == "True";
            if health::is_silent(&h, now, self.grace) {
                if let Some(conditions) = health::unknown_conditions(node, &now_t) {
                    if self.write_unknown(node, conditions).await && ready {
                        self.recorder.normal(
                            node.as_ref(),
                            "NodeNotReady",
                            format!("Node {name} status is now: NodeNotReady"),
                        );
                        lock(&self.mark_pending).insert(name.clone());
                    }
                    ready = false;
                }
            }
            if !ready && lock(&self.mark_pending).contains(&name) {
                if self.mark_pods_not_ready(&name).await {
                    lock(&self.mark_pending).remove(&name);
                }
            } else if ready {
                lock(&self.mark_pending).remove(&name);
            }
            readiness.push((zones::zone_of(node), ready));
        }
        self.forget_removed(&nodes);
        self.update_zones(zones::zone_states(readiness), now);
    }

    async fn write_unknown(
        &self,
        node: &Node,
        conditions: Vec<k8s_openapi::api::core::v1::NodeCondition>,
    ) -> bool {
        let mut n = node.clone();
        n.status.get_or_insert_with(Default::default).conditions = Some(conditions);
        let api: Api<Node> = Api::all(self.client.clone());
        match api
            .replace_status(&node.name_any(), &PostParams::default(), &n)
            .await
        {
            Ok(_) => true,
            Err(e) => {
                // The next pass retries with a fresh copy.
                tracing::debug!(node = %node.name_any(), "marking node unknown failed: {e}");
                false
            }
        }
    }

    fn forget_removed(&self, nodes: &[Arc<Node>]) {
        let present: HashSet<String> = nodes.iter().map(|n| n.name_any()).collect();
        let gone: Vec<(String, String)> = lock(&self.known)
            .iter()
            .filter(|(n, _)| !present.contains(*n))
            .map(|(n, u)| (n.clone(), u.clone()))
            .collect();
        for (name, uid) in gone {
            lock(&self.known).remove(&name);
            lock(&self.health).remove(&name);
            lock(&self.mark_pending).remove(&name);
            lock(&self.first_seen).retain(|(n, _), _| *n != name);
            let reference = ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(name.clone()),
                uid: Some(uid),
                ..Default::default()
            };
            self.recorder.record(
                reference,
                EventType::Normal,
                "RemovingNode",
                format!("Node {name} event: Removing Node {name} from Controller"),
            );
        }
    }

    fn update_zones(&self, states: BTreeMap<String, (ZoneState, usize)>, now: Instant) {
        let all_full = zones::all_fully_disrupted(&states);
        let mut book = lock(&self.zones);
        let changed = book.states != states || book.all_full != all_full;
        if book.all_full && !all_full {
            // Leaving full disruption: every node gets a fresh grace period, as upstream.
            for h in lock(&self.health).values_mut() {
                h.probe = now;
            }
        }
        if all_full && !book.all_full {
            tracing::warn!("every node is not ready: stopping taint-based eviction");
        }
        for (zone, (state, size)) in &states {
            let rate = zones::eviction_rate(*state, *size);
            book.buckets
                .entry(zone.clone())
                .or_insert_with(|| Bucket::new(rate, now))
                .set_rate(rate, now);
        }
        book.buckets.retain(|z, _| states.contains_key(z));
        book.states = states;
        book.all_full = all_full;
        drop(book);
        if changed {
            for node in self.nodes.list() {
                self.node_queue.add(ObjectKey::of(node.as_ref()));
            }
        }
    }

    /// Sets every pod on the node not Ready (upstream's MarkPodsNotReady). True when all
    /// writes succeeded.
    async fn mark_pods_not_ready(&self, node: &str) -> bool {
        let mut ok = true;
        for pod in self.pods.by_index(PODS_BY_NODE, node) {
            if podutil::is_terminal(&pod) {
                continue;
            }
            let mut p = (*pod).clone();
            let Some(cond) = p
                .status
                .as_mut()
                .and_then(|s| s.conditions.as_mut())
                .and_then(|c| c.iter_mut().find(|c| c.type_ == "Ready"))
            else {
                continue;
            };
            if cond.status == "False" {
                continue;
            }
            cond.status = "False".into();
            cond.last_transition_time = Some(Time(Timestamp::now()));
            let api: Api<Pod> =
                Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
            match api
                .replace_status(&pod.name_any(), &PostParams::default(), &p)
                .await
            {
                Ok(_) => self
                    .recorder
                    .warning(pod.as_ref(), "NodeNotReady", "Node is not ready"),
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => {
                    tracing::debug!(pod = %pod.name_any(), "marking pod not ready failed: {e}");
                    ok = false;
                }
            }
        }
        ok
    }

    /// Brings one node's controller-owned taints in line with its conditions.
    async fn sync_taints(&self, key: ObjectKey) -> Result<Option<Duration>, Error> {
        let Some(node) = self.nodes.get(&key) else {
            return Ok(None);
        };
        let name = node.name_any();
        let now_t = Time(Timestamp::now());
        let allow = !lock(&self.zones).all_full;
        let (mut taints, waiting) = taints::desired_taints(&node, allow, false, &now_t);
        let mut again = None;
        if waiting {
            let zone = zones::zone_of(&node);
            let now = Instant::now();
            let took = lock(&self.zones)
                .buckets
                .entry(zone)
                .or_insert_with(|| Bucket::new(zones::EVICTION_RATE, now))
                .take(now);
            match took {
                Ok(()) => taints = taints::desired_taints(&node, allow, true, &now_t).0,
                Err(wait) => again = Some(wait.unwrap_or(self.period).max(self.period)),
            }
        }
        let present: HashSet<String> = no_execute_taints(&node)
            .into_iter()
            .map(|t| t.key)
            .collect();
        lock(&self.first_seen).retain(|(n, k), _| *n != name || present.contains(k));
        if let Some(taints) = taints {
            let mut n = (*node).clone();
            n.spec.get_or_insert_with(Default::default).taints = Some(taints);
            let api: Api<Node> = Api::all(self.client.clone());
            api.replace(&name, &PostParams::default(), &n)
                .await
                .map_err(api_err("update taints of node", name))?;
        }
        Ok(again)
    }

    fn taint_added(&self, node: &str, taint: &Taint) -> Timestamp {
        if let Some(t) = &taint.time_added {
            return t.0;
        }
        *lock(&self.first_seen)
            .entry((node.to_string(), taint.key.clone()))
            .or_insert_with(Timestamp::now)
    }

    fn cancel(&self, key: &ObjectKey, pod: Option<&Pod>) {
        if lock(&self.scheduled).remove(key) {
            if let Some(pod) = pod {
                self.eviction_recorder.normal(
                    pod,
                    "TaintManagerEviction",
                    format!("Cancelling deletion of Pod {key}"),
                );
            }
        }
    }

    /// Decides (and carries out) one pod's taint-based eviction.
    async fn sync_pod(&self, key: ObjectKey) -> Result<Option<Duration>, Error> {
        let pod = self.pods.get(&key);
        let node = pod
            .as_deref()
            .and_then(podutil::node_name)
            .and_then(|n| self.nodes.get_named(None, n));
        let (Some(pod), Some(node)) = (pod, node) else {
            lock(&self.scheduled).remove(&key);
            return Ok(None);
        };
        if pod.metadata.deletion_timestamp.is_some() {
            lock(&self.scheduled).remove(&key);
            return Ok(None);
        }
        let node_name = node.name_any();
        let tolerations = pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.clone())
            .unwrap_or_default();
        let now = Timestamp::now();
        let decision = eviction::decide(
            &tolerations,
            &no_execute_taints(&node),
            |t| self.taint_added(&node_name, t),
            now,
        );
        match decision {
            Decision::Keep => {
                self.cancel(&key, Some(&pod));
                Ok(None)
            }
            Decision::DeleteAt(at) => {
                lock(&self.scheduled).insert(key);
                let wait = at.duration_since(now).unsigned_abs();
                Ok(Some(wait.max(Duration::from_millis(10))))
            }
            Decision::DeleteNow => {
                self.evict(&key, &pod).await?;
                lock(&self.scheduled).remove(&key);
                Ok(None)
            }
        }
    }

    async fn evict(&self, key: &ObjectKey, pod: &Pod) -> Result<(), Error> {
        self.eviction_recorder.normal(
            pod,
            "TaintManagerEviction",
            format!("Marking for deletion Pod {key}"),
        );
        let api: Api<Pod> = Api::namespaced(self.client.clone(), key.namespace());
        let has_condition = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c.type_ == "DisruptionTarget" && c.status == "True")
            });
        if !has_condition {
            let patch = serde_json::json!({"status": {"conditions": [{
                "type": "DisruptionTarget",
                "status": "True",
                "reason": "DeletionByTaintManager",
                "message": "Taint manager: deleting due to NoExecute taint",
                "lastTransitionTime": Timestamp::now().to_string(),
            }]}});
            match api
                .patch_status(&key.name, &PatchParams::default(), &Patch::Strategic(patch))
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
                Err(e) => return Err(api_err("add DisruptionTarget to pod", key.to_string())(e)),
            }
        }
        podcontrol::delete(
            &self.client,
            key.namespace(),
            &key.name,
            pod.metadata.uid.as_deref(),
        )
        .await
        .map_err(api_err("delete pod", key.to_string()))
    }
}
