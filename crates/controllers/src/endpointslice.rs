//! The EndpointSlice controller and the legacy Endpoints controller: for each Service
//! with a selector, the endpoints of its pods, as discovery.k8s.io/v1 EndpointSlices
//! (what proxies read) and as one core/v1 Endpoints (what older tools read).
//!
//! Both share the pure parts: [`desired`] (which pods, which ports, which conditions),
//! [`plan`] (minimal slice changes) and [`legacy`] (Endpoints subsets).
//!
//! Guarantees: a slice whose content is already right is never rewritten; a sync that
//! runs before the cache shows this controller's own last writes waits and retries
//! (as upstream's EndpointSliceTracker), so a stale cache never duplicates slices.

pub mod desired;
pub mod legacy;
pub mod plan;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};
use skiff_runtime::events::Recorder;
use skiff_runtime::selector::Selector;
use skiff_runtime::{Informer, ObjectKey, WorkQueue};

use crate::{Ctx, Loop};
use desired::{MANAGED_BY_LABEL, SERVICE_NAME_LABEL, ZONE_LABEL};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op} {what}: {source}")]
    Api {
        op: &'static str,
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("the cache does not yet show this controller's last writes for {0}")]
    Stale(ObjectKey),
}

fn api_err(op: &'static str, what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Api { op, what, source }
}

const SLICES_BY_SERVICE: &str = "endpointslice-service";

/// The pods in `svc`'s namespace its selector matches.
fn selected_pods(pods: &Informer<Pod>, svc: &Service) -> Vec<Arc<Pod>> {
    let selector = Selector::from_map(svc.spec.as_ref().and_then(|s| s.selector.as_ref()));
    pods.list_namespace(svc.metadata.namespace.as_deref().unwrap_or_default())
        .into_iter()
        .filter(|p| selector.matches(p.metadata.labels.as_ref()))
        .collect()
}

/// Queues the services whose selector matches the pod before or after a change.
fn enqueue_pod_services(
    services: &Informer<Service>,
    queue: &WorkQueue<ObjectKey>,
    old: Option<&Pod>,
    new: Option<&Pod>,
    mut also: impl FnMut(&ObjectKey),
) {
    let Some(ns) = new.or(old).and_then(|p| p.metadata.namespace.clone()) else {
        return;
    };
    for svc in services.list_namespace(&ns) {
        let selector = Selector::from_map(svc.spec.as_ref().and_then(|s| s.selector.as_ref()));
        let hit = [old, new]
            .into_iter()
            .flatten()
            .any(|p| selector.matches(p.metadata.labels.as_ref()));
        if hit {
            let key = ObjectKey::of(svc.as_ref());
            also(&key);
            queue.add(key);
        }
    }
}

/// What the controller last wrote per service, so a sync can tell a stale cache.
/// A write not seen within [`TRACK_TIMEOUT`] is given up on (someone else may have
/// deleted or replaced the slice meanwhile), as expectations expire.
#[derive(Default)]
struct Tracker {
    map: Mutex<HashMap<ObjectKey, Writes>>,
}

/// Slice name -> the resourceVersion written (`None`: deleted) and when.
type Writes = HashMap<String, (Option<u64>, Instant)>;

const TRACK_TIMEOUT: Duration = Duration::from_secs(30);

fn rv(slice: &EndpointSlice) -> u64 {
    slice
        .metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl Tracker {
    /// Whether `cached` (by name) shows every write recorded for `key`.
    fn fresh(&self, key: &ObjectKey, cached: &HashMap<String, &EndpointSlice>) -> bool {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let Some(writes) = map.get_mut(key) else {
            return true;
        };
        writes.retain(|name, (want, at)| {
            let unseen = match (want, cached.get(name)) {
                (Some(v), Some(s)) => rv(s) < *v,
                (Some(_), None) => true,
                (None, Some(_)) => true,
                (None, None) => false,
            };
            unseen && at.elapsed() < TRACK_TIMEOUT
        });
        let fresh = writes.is_empty();
        if fresh {
            map.remove(key);
        }
        fresh
    }

    fn wrote(&self, key: &ObjectKey, slice: &EndpointSlice) {
        self.record(key, slice.name_any(), Some(rv(slice)));
    }

    fn deleted(&self, key: &ObjectKey, name: String) {
        self.record(key, name, None);
    }

    fn record(&self, key: &ObjectKey, name: String, v: Option<u64>) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(key.clone())
            .or_default()
            .insert(name, (v, Instant::now()));
    }

    fn forget(&self, key: &ObjectKey) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

struct Slices {
    client: kube::Client,
    services: Informer<Service>,
    pods: Informer<Pod>,
    nodes: Informer<Node>,
    slices: Informer<EndpointSlice>,
    tracker: Tracker,
    recorder: Recorder,
}

/// The EndpointSlice controller.
pub fn controller(ctx: &Ctx) -> Loop {
    let services = ctx.informers.informer::<Service>();
    let pods = ctx.informers.informer::<Pod>();
    let nodes = ctx.informers.informer::<Node>();
    let slices = ctx.informers.informer::<EndpointSlice>();
    slices.add_index(SLICES_BY_SERVICE, |s: &EndpointSlice| {
        let labels = s.metadata.labels.as_ref();
        let managed = labels
            .and_then(|l| l.get(MANAGED_BY_LABEL))
            .is_some_and(|m| m == desired::CONTROLLER_NAME);
        let svc = labels.and_then(|l| l.get(SERVICE_NAME_LABEL));
        match (managed, svc) {
            (true, Some(svc)) => vec![format!(
                "{}/{svc}",
                s.metadata.namespace.as_deref().unwrap_or_default()
            )],
            _ => vec![],
        }
    });
    let queue = WorkQueue::new("endpointslice", ctx.settings.max_retry_delay);
    let q = queue.clone();
    services.on_change(move |c| q.add(ObjectKey::of(c.object().as_ref())));
    let (q, svcs) = (queue.clone(), services.clone());
    pods.on_change(move |c| {
        enqueue_pod_services(&svcs, &q, c.old.as_deref(), c.new.as_deref(), |_| {})
    });
    let (q, svcs) = (queue.clone(), services.clone());
    nodes.on_change(move |c| {
        // Only a zone change alters endpoints (their `zone`); that is rare.
        let zone = |n: Option<&Arc<Node>>| {
            n.and_then(|n| n.metadata.labels.as_ref()?.get(ZONE_LABEL).cloned())
        };
        if c.old.is_some() && zone(c.old.as_ref()) != zone(c.new.as_ref()) {
            for svc in svcs.list() {
                q.add(ObjectKey::of(svc.as_ref()));
            }
        }
    });
    let q = queue.clone();
    slices.on_change(move |c| {
        let s = c.object();
        let managed = s
            .labels()
            .get(MANAGED_BY_LABEL)
            .is_some_and(|m| m == desired::CONTROLLER_NAME);
        if let (true, Some(svc)) = (managed, s.labels().get(SERVICE_NAME_LABEL)) {
            q.add(ObjectKey::new(s.metadata.namespace.as_deref(), svc));
        }
    });
    let state = Arc::new(Slices {
        client: ctx.client.clone(),
        services,
        pods,
        nodes,
        slices,
        tracker: Tracker::default(),
        recorder: ctx.recorder("endpoint-slice-controller"),
    });
    ctx.run_workers(queue, ctx.settings.workers, state, |s, key| async move {
        s.reconcile(key).await.map(|()| None)
    })
}

impl Slices {
    async fn reconcile(&self, key: ObjectKey) -> Result<(), Error> {
        let existing: Vec<Arc<EndpointSlice>> = self
            .slices
            .by_index(SLICES_BY_SERVICE, &key.to_string())
            .into_iter()
            .filter(|s| s.address_type == plan::ADDRESS_TYPE)
            .collect();
        let cached: HashMap<String, &EndpointSlice> = existing
            .iter()
            .map(|s| (s.name_any(), s.as_ref()))
            .collect();
        if !self.tracker.fresh(&key, &cached) {
            return Err(Error::Stale(key));
        }
        let svc = self.services.get(&key);
        let Some(svc) = svc.filter(|s| desired::wants_endpoints(s)) else {
            // Deleted, selector removed, or ExternalName: no managed slices.
            for slice in &existing {
                self.delete(&key, slice).await?;
            }
            if existing.is_empty() {
                self.tracker.forget(&key);
            }
            return Ok(());
        };
        let pods = selected_pods(&self.pods, &svc);
        let pod_refs: Vec<&Pod> = pods.iter().map(Arc::as_ref).collect();
        let groups = desired::desired_groups(&svc, &pod_refs, |node| {
            self.nodes
                .get_named(None, node)?
                .metadata
                .labels
                .as_ref()?
                .get(ZONE_LABEL)
                .cloned()
        });
        let refs: Vec<&EndpointSlice> = existing.iter().map(Arc::as_ref).collect();
        let plan = plan::plan(&svc, &refs, &groups);
        let result = self.execute(&key, plan).await;
        if let Err(e) = &result {
            self.recorder.warning(
                svc.as_ref(),
                "FailedToUpdateEndpointSlices",
                format!("Error updating Endpoint Slices for Service {key}: {e}"),
            );
        }
        result
    }

    async fn execute(&self, key: &ObjectKey, plan: plan::Plan) -> Result<(), Error> {
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), key.namespace());
        for slice in &plan.delete {
            self.delete(key, slice).await?;
        }
        for slice in &plan.update {
            let name = slice.name_any();
            let done = api
                .replace(&name, &PostParams::default(), slice)
                .await
                .map_err(api_err(
                    "update EndpointSlice",
                    format!("{}/{name}", key.namespace()),
                ))?;
            self.tracker.wrote(key, &done);
        }
        for slice in &plan.create {
            let done = api
                .create(&PostParams::default(), slice)
                .await
                .map_err(api_err("create EndpointSlice for", key.to_string()))?;
            self.tracker.wrote(key, &done);
        }
        Ok(())
    }

    async fn delete(&self, key: &ObjectKey, slice: &EndpointSlice) -> Result<(), Error> {
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), key.namespace());
        let name = slice.name_any();
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(api_err("delete EndpointSlice", name)(e)),
        }
        self.tracker.deleted(key, name);
        Ok(())
    }
}

struct LegacyEndpoints {
    client: kube::Client,
    services: Informer<Service>,
    pods: Informer<Pod>,
    endpoints: Informer<Endpoints>,
    /// When the first change since the last sync of each service was seen (upstream's
    /// trigger-time tracker keeps the earliest pending change).
    triggers: Mutex<HashMap<ObjectKey, Timestamp>>,
}

fn note_trigger(triggers: &Mutex<HashMap<ObjectKey, Timestamp>>, key: &ObjectKey) {
    triggers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(key.clone())
        .or_insert_with(Timestamp::now);
}

/// The legacy Endpoints controller.
pub fn endpoints_controller(ctx: &Ctx) -> Loop {
    let services = ctx.informers.informer::<Service>();
    let pods = ctx.informers.informer::<Pod>();
    let endpoints = ctx.informers.informer::<Endpoints>();
    let queue = WorkQueue::new("endpoints", ctx.settings.max_retry_delay);
    let state = Arc::new(LegacyEndpoints {
        client: ctx.client.clone(),
        services: services.clone(),
        pods: pods.clone(),
        endpoints: endpoints.clone(),
        triggers: Mutex::new(HashMap::new()),
    });
    let (q, st) = (queue.clone(), state.clone());
    services.on_change(move |c| {
        let key = ObjectKey::of(c.object().as_ref());
        note_trigger(&st.triggers, &key);
        q.add(key);
    });
    let (q, st) = (queue.clone(), state.clone());
    pods.on_change(move |c| {
        enqueue_pod_services(&st.services, &q, c.old.as_deref(), c.new.as_deref(), |k| {
            note_trigger(&st.triggers, k)
        })
    });
    let q = queue.clone();
    endpoints.on_change(move |c| q.add(ObjectKey::of(c.object().as_ref())));
    ctx.run_workers(queue, ctx.settings.workers, state, |s, key| async move {
        s.reconcile(key).await.map(|()| None)
    })
}

impl LegacyEndpoints {
    async fn reconcile(&self, key: ObjectKey) -> Result<(), Error> {
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), key.namespace());
        let current = self.endpoints.get(&key);
        let Some(svc) = self.services.get(&key) else {
            self.triggers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
            if current.is_some() {
                match api.delete(&key.name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(api_err("delete Endpoints", key.to_string())(e)),
                }
            }
            return Ok(());
        };
        // Without a selector the Endpoints are the user's to write.
        if svc
            .spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .is_none()
        {
            return Ok(());
        }
        let trigger = self
            .triggers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key)
            .unwrap_or_else(Timestamp::now);
        let pods = selected_pods(&self.pods, &svc);
        let refs: Vec<&Pod> = pods.iter().map(Arc::as_ref).collect();
        let trigger_str = trigger.to_string();
        let Some(want) = legacy::desired_endpoints(&svc, &refs, current.as_deref(), &trigger_str)
        else {
            return Ok(());
        };
        let result = match current {
            Some(_) => api
                .replace(&key.name, &PostParams::default(), &want)
                .await
                .map_err(api_err("update Endpoints", key.to_string())),
            None => api
                .create(&PostParams::default(), &want)
                .await
                .map_err(api_err("create Endpoints", key.to_string())),
        };
        if result.is_err() {
            // Keep the trigger for the retry.
            self.triggers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(key)
                .or_insert(trigger);
        }
        result.map(|_| ())
    }
}
