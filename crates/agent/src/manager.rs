//! The pod manager: which pods should run here (from the API server's pods bound to
//! this node and from static manifests), one work queue keyed by pod uid so each pod is
//! synced by one worker at a time, and the relist (the kubelet's PLEG) that wakes a pod
//! whenever one of its containers changes state in the runtime.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus, Service};
use k8s_openapi::jiff::Timestamp;
use skiff_runtime::events::Recorder;
use skiff_runtime::{CancellationToken, Informer, WorkQueue};

use crate::config::Config;
use crate::plugins::{Probes, Volumes};
use crate::pod::backoff::Backoff;
use crate::pod::spec::HostDns;
use crate::runtime::Runtime;
use crate::sysinfo::Machine;

/// Annotation of a mirror pod (the API's copy of a static pod).
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// A pod this node should run (or just stopped running: `removed`).
#[derive(Clone, Debug)]
pub struct Desired {
    pub pod: Arc<Pod>,
    pub is_static: bool,
    /// No source has it any more: kill and forget it.
    pub removed: bool,
}

/// What the agent remembers of a pod between passes (all of it can be lost: a
/// restarted agent rebuilds from the runtime, only back-off starts over).
#[derive(Debug, Default)]
pub struct PodMemory {
    /// Why a container waits (reason, message), by container name.
    pub waiting: HashMap<String, (String, String)>,
    pub backoff: Backoff,
    pub pull_backoff: Backoff,
    pub pull_failed_at: HashMap<String, Timestamp>,
    pub pulled_event: HashSet<String>,
    pub start_time: Option<Timestamp>,
    pub written: Option<PodStatus>,
    pub pod_ip: Option<String>,
    /// The pod finished (Succeeded/Failed): nothing starts again.
    pub terminal: bool,
    /// Its containers and sandbox were stopped.
    pub killed: bool,
    /// It ran past activeDeadlineSeconds.
    pub deadline_exceeded: bool,
}

pub struct Manager {
    pub config: Arc<Config>,
    pub client: kube::Client,
    pub runtime: Runtime,
    pub machine: Machine,
    pub host_dns: HostDns,
    pub recorder: Recorder,
    pub volumes: Option<Arc<dyn Volumes>>,
    pub probes: Option<Arc<dyn Probes>>,
    pub queue: WorkQueue<String>,
    /// Services, for the variables every container gets.
    pub services: Informer<Service>,
    desired: Mutex<HashMap<String, Desired>>,
    memory: Mutex<HashMap<String, PodMemory>>,
    /// Every pod source has delivered its first full list (orphans can be told apart).
    pub synced: std::sync::atomic::AtomicBool,
}

fn is_mirror(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(MIRROR_ANNOTATION))
}

impl Manager {
    pub fn new(
        config: Arc<Config>,
        client: kube::Client,
        runtime: Runtime,
        machine: Machine,
        volumes: Option<Arc<dyn Volumes>>,
        probes: Option<Arc<dyn Probes>>,
        services: Informer<Service>,
    ) -> Arc<Self> {
        let host_dns = std::fs::read_to_string(&config.resolv_conf)
            .map(|t| crate::pod::spec::parse_resolv_conf(&t))
            .unwrap_or_default();
        Arc::new(Self {
            recorder: Recorder::new(client.clone(), "kubelet").with_host(config.node_name.clone()),
            config,
            client,
            runtime,
            machine,
            host_dns,
            volumes,
            probes,
            queue: WorkQueue::new("agent-pods", Duration::from_secs(30)),
            services,
            desired: Mutex::new(HashMap::new()),
            memory: Mutex::new(HashMap::new()),
            synced: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn desired_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Desired>> {
        self.desired.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn desired(&self, uid: &str) -> Option<Desired> {
        self.desired_map().get(uid).cloned()
    }

    /// Uids of every pod some source wants here.
    pub fn known(&self) -> HashSet<String> {
        self.desired_map()
            .iter()
            .filter(|(_, d)| !d.removed)
            .map(|(u, _)| u.clone())
            .collect()
    }

    /// A source says `pod` should run here (added or changed).
    pub fn upsert(&self, pod: Arc<Pod>, is_static: bool) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        self.desired_map().insert(
            uid.clone(),
            Desired {
                pod,
                is_static,
                removed: false,
            },
        );
        self.queue.add(uid);
    }

    /// A source no longer has the pod.
    pub fn remove_source(&self, uid: &str) {
        if let Some(d) = self.desired_map().get_mut(uid) {
            d.removed = true;
        }
        self.queue.add(uid.to_string());
    }

    pub(crate) fn forget(&self, uid: &str) {
        {
            let mut map = self.desired_map();
            if map.get(uid).is_some_and(|d| d.removed) {
                map.remove(uid);
            }
        }
        self.memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(uid);
    }

    pub(crate) fn take_memory(&self, uid: &str) -> PodMemory {
        self.memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(uid)
            .unwrap_or_default()
    }

    pub(crate) fn put_memory(&self, uid: &str, mem: PodMemory) {
        self.memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(uid.to_string(), mem);
    }

    /// Feeds API pods bound to this node into the manager (mirror pods excluded: their
    /// static pod is the source).
    pub fn watch_api(self: &Arc<Self>, pods: &Informer<Pod>) {
        let this = self.clone();
        pods.on_change(move |change| {
            let pod = change.object();
            if is_mirror(pod) {
                return;
            }
            let Some(uid) = pod.metadata.uid.clone() else {
                return;
            };
            match &change.new {
                Some(new) => this.upsert(new.clone(), false),
                None => this.remove_source(&uid),
            }
        });
    }

    /// Every `relist_period`, lists the runtime's containers and wakes the pods whose
    /// containers appeared, vanished or changed state. The first relist also wakes the
    /// pods the runtime has that no source knows (left from before a restart).
    pub async fn relist(self: Arc<Self>, shutdown: CancellationToken) {
        let mut last: HashMap<String, (String, i32)> = HashMap::new();
        let mut tick = tokio::time::interval(self.config.relist_period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut orphans_checked = false;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let Ok(containers) = self.runtime.list(None).await else {
                continue;
            };
            let now = crate::runtime::snapshot(&containers);
            let mut wake: HashSet<String> = HashSet::new();
            for (id, (uid, state)) in &now {
                if last.get(id).map(|(_, s)| s) != Some(state) {
                    wake.insert(uid.clone());
                }
            }
            for (id, (uid, _)) in &last {
                if !now.contains_key(id) {
                    wake.insert(uid.clone());
                }
            }
            last = now;
            if !orphans_checked && self.sources_synced() {
                orphans_checked = true;
                if let Ok(sandboxes) = self.runtime.sandboxes(None).await {
                    let known = self.known();
                    for sb in sandboxes {
                        if !known.contains(&sb.uid) {
                            tracing::info!(uid = %sb.uid, "removing a pod no source knows");
                            wake.insert(sb.uid);
                        }
                    }
                }
            }
            for uid in wake.into_iter().filter(|u| !u.is_empty()) {
                self.queue.add(uid);
            }
        }
    }

    pub(crate) fn sources_synced(&self) -> bool {
        self.synced.load(std::sync::atomic::Ordering::Acquire)
    }
}
