//! The pod side's IO: one watch of all bound pods (`spec.nodeName!=`) for every node
//! of the process, a compact record per pod of ours, and a bounded pool of workers
//! that post statuses and delete terminated pods.
//!
//! The watch handler only updates records and queues keys; the workers decide with
//! [`pod::advance`] and write. A key is never worked on by two workers at once (the
//! work queue's guarantee), and a worker keeps a new lifecycle only after its write
//! succeeded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use skiff_runtime::{CancellationToken, ObjectKey, WorkQueue};

use crate::addr::{self, PodIps};
use crate::config::Config;
use crate::pod::{self, Action, Life, PodRec, State};

/// Only pods bound to some node; those of other processes' nodes are skipped by name.
pub const FIELD_SELECTOR: &str = "spec.nodeName!=";

struct Known {
    pods: HashMap<ObjectKey, PodRec>,
    /// Pod addresses in use, per local node.
    ips: Vec<PodIps>,
}

/// Gives a pod's address back to its node.
fn release(ips: &mut [PodIps], rec: &mut PodRec) {
    if let (Some(off), Some(ips)) = (rec.ip.take(), ips.get_mut(rec.node as usize)) {
        ips.release(off);
    }
}

impl Known {
    fn remove(&mut self, key: &ObjectKey) {
        if let Some(mut rec) = self.pods.remove(key) {
            release(&mut self.ips, &mut rec);
        }
    }

    /// Takes in the latest state of a pod of ours. A new pod (or a new incarnation
    /// under the same name) gets the fresh record; a known one keeps its lifecycle and
    /// only updates what others change (deletion, finalizers).
    fn upsert(&mut self, key: ObjectKey, seen: Seen) {
        let Seen { mut rec, ip } = seen;
        if let Some(known) = self.pods.get_mut(&key) {
            if known.uid == rec.uid && known.node == rec.node {
                known.deleting = rec.deleting;
                known.has_finalizers = rec.has_finalizers;
                return;
            }
            self.remove(&key);
        }
        if let (Some(off), Some(ips)) = (ip, self.ips.get_mut(rec.node as usize)) {
            // Taken over from a previous run: keep its address reserved.
            ips.mark(off);
            rec.ip = Some(off);
        }
        self.pods.insert(key, rec);
    }
}

/// What one watch event tells about a pod of ours, reduced at once (a re-list of
/// 50,000 pods is held in this form, not as Pods, until it is complete).
struct Seen {
    rec: PodRec,
    /// The address it already runs with, if it is one of its node's.
    ip: Option<u16>,
}

impl Seen {
    fn of(config: &Config, pod: &Pod, k: u32) -> Self {
        let rec = pod::record(pod, k);
        let ip = if rec.life.state == State::Running && !rec.host_network {
            pod.status
                .as_ref()
                .and_then(|s| s.pod_ip.as_deref())
                .and_then(|ip| addr::pod_offset(config.global_index(k), ip))
        } else {
            None
        };
        Self { rec, ip }
    }
}

pub(crate) struct Pods {
    config: Arc<Config>,
    client: Client,
    known: Mutex<Known>,
    queue: WorkQueue<ObjectKey>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteError {
    #[error("posting status of pod {key}: {source}")]
    Status {
        key: ObjectKey,
        #[source]
        source: kube::Error,
    },
    #[error("deleting pod {key}: {source}")]
    Delete {
        key: ObjectKey,
        #[source]
        source: kube::Error,
    },
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// How long to wait before trying again when a node has no pod address left.
const NO_ADDRESS_RETRY: Duration = Duration::from_secs(10);

impl Pods {
    pub(crate) fn new(client: Client, config: Arc<Config>) -> Arc<Self> {
        let count = config.count as usize;
        Arc::new(Self {
            config,
            client,
            known: Mutex::new(Known {
                pods: HashMap::new(),
                ips: vec![PodIps::default(); count],
            }),
            queue: WorkQueue::new("hollow-pods", Duration::from_secs(30)),
        })
    }

    fn known(&self) -> std::sync::MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many pods this process tracks (for tests and logs).
    #[allow(dead_code)]
    pub(crate) fn len(&self) -> usize {
        self.known().pods.len()
    }

    pub(crate) async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let this = self.clone();
        let workers = skiff_runtime::worker::run(
            self.queue.clone(),
            self.config.max_in_flight,
            shutdown.clone(),
            move |key| {
                let this = this.clone();
                async move { this.reconcile(key).await }
            },
        );
        tokio::join!(workers, self.watch(shutdown.clone()));
    }

    fn ours(&self, pod: &Pod) -> Option<u32> {
        let node = pod.spec.as_ref()?.node_name.as_deref()?;
        self.config.node_index(node)
    }

    async fn watch(&self, shutdown: CancellationToken) {
        let api: Api<Pod> = Api::all(self.client.clone());
        let stream = watcher::watcher(api, watcher::Config::default().fields(FIELD_SELECTOR))
            .default_backoff();
        futures::pin_mut!(stream);
        // A re-list is collected whole, then swapped in at once: addresses of pods
        // already running are reserved before any new pod gets one.
        let mut relist: Option<HashMap<ObjectKey, Seen>> = None;
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => return,
                e = stream.next() => e,
            };
            match event {
                None => return,
                Some(Ok(Event::Init)) => relist = Some(HashMap::new()),
                Some(Ok(Event::InitApply(p))) => {
                    if let Some(k) = self.ours(&p) {
                        relist
                            .get_or_insert_with(HashMap::new)
                            .insert(ObjectKey::of(&p), Seen::of(&self.config, &p, k));
                    }
                }
                Some(Ok(Event::InitDone)) => self.replace(relist.take().unwrap_or_default()),
                Some(Ok(Event::Apply(p))) => {
                    let key = ObjectKey::of(&p);
                    match self.ours(&p) {
                        Some(k) => {
                            let seen = Seen::of(&self.config, &p, k);
                            self.known().upsert(key.clone(), seen);
                            self.queue.add(key);
                        }
                        // Not (or no longer) ours.
                        None => self.known().remove(&key),
                    }
                }
                Some(Ok(Event::Delete(p))) => self.known().remove(&ObjectKey::of(&p)),
                Some(Err(e)) => tracing::warn!("pod watch failed (retrying): {e}"),
            }
        }
    }

    fn replace(&self, fresh: HashMap<ObjectKey, Seen>) {
        let keys: Vec<ObjectKey> = fresh.keys().cloned().collect();
        {
            let mut known = self.known();
            let gone: Vec<ObjectKey> = known
                .pods
                .keys()
                .filter(|k| !fresh.contains_key(*k))
                .cloned()
                .collect();
            for key in gone {
                known.remove(&key);
            }
            // Allocation happens only in workers, after this swap: every address
            // already in use is reserved before any pod gets a new one.
            for (key, seen) in fresh {
                known.upsert(key, seen);
            }
        }
        for key in keys {
            self.queue.add(key);
        }
    }

    /// Decides for one pod at the current time and carries it out.
    async fn reconcile(&self, key: ObjectKey) -> Result<Option<Duration>, WriteError> {
        let now = Timestamp::now();
        // Decide (and build the patch) under the lock; write without it.
        let (action, uid, patch) = {
            let mut guard = self.known();
            let Known { pods, ips } = &mut *guard;
            let Some(rec) = pods.get_mut(&key) else {
                return Ok(None);
            };
            let action = pod::advance(rec, now);
            let life = match &action {
                Action::Write { life, .. } => Some(*life),
                Action::Delete { stopped } => *stopped,
                Action::Nothing | Action::Wait(_) => None,
            };
            let k = rec.node;
            let patch = match life {
                None => None,
                Some(life) => {
                    let host_ip = addr::node_ip(self.config.global_index(k)).to_string();
                    let pod_ip = if rec.host_network {
                        host_ip.clone()
                    } else {
                        if rec.ip.is_none() {
                            rec.ip = ips.get_mut(k as usize).and_then(PodIps::allocate);
                        }
                        match rec.ip {
                            Some(off) => addr::pod_ip(self.config.global_index(k), off).to_string(),
                            None => {
                                tracing::warn!(pod = %key, "no pod address left on node");
                                return Ok(Some(NO_ADDRESS_RETRY));
                            }
                        }
                    };
                    let addrs = pod::Addresses { host_ip, pod_ip };
                    let status = pod::status(rec, &life, &addrs, now);
                    Some(serde_json::json!({
                        // A precondition: the write fails if the pod was replaced.
                        "metadata": { "uid": &*rec.uid },
                        "status": status,
                    }))
                }
            };
            (action, rec.uid.clone(), patch)
        };
        let api: Api<Pod> = Api::namespaced(self.client.clone(), key.namespace());
        if let Some(patch) = patch {
            match api
                .patch_status(&key.name, &PatchParams::default(), &Patch::Strategic(patch))
                .await
            {
                Ok(_) => {}
                // Gone or replaced: the watch tells us what happened next.
                Err(e) if is_status(&e, 404) => return Ok(None),
                Err(e) => return Err(WriteError::Status { key, source: e }),
            }
        }
        match action {
            Action::Nothing => Ok(None),
            Action::Wait(d) => Ok(Some(d)),
            Action::Write { life, wake } => {
                self.keep(&key, &uid, life);
                Ok(wake)
            }
            Action::Delete { .. } => {
                let params = DeleteParams {
                    grace_period_seconds: Some(0),
                    preconditions: Some(Preconditions {
                        uid: Some(uid.to_string()),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                match api.delete(&key.name, &params).await {
                    Ok(_) => {}
                    Err(e) if is_status(&e, 404) || is_status(&e, 409) => {}
                    Err(e) => return Err(WriteError::Delete { key, source: e }),
                }
                self.keep(
                    &key,
                    &uid,
                    Life {
                        state: State::Gone,
                        ..Life::NEW
                    },
                );
                Ok(None)
            }
        }
    }

    /// Stores a lifecycle that was written, unless the pod was replaced meanwhile.
    /// A pod that stopped running gives its address back.
    fn keep(&self, key: &ObjectKey, uid: &str, life: Life) {
        let mut guard = self.known();
        let Known { pods, ips } = &mut *guard;
        if let Some(rec) = pods.get_mut(key) {
            if &*rec.uid == uid {
                rec.life = life;
                if life.state != State::Running {
                    release(ips, rec);
                }
            }
        }
    }
}
