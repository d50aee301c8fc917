//! The watch cache: every resource's objects in memory, fed by ONE store watch over
//! `/registry/`, so lists and watches are served without touching the store.
//!
//! - All caches advance together to the last store revision seen, so a consistent read
//!   ("resourceVersion unset") only has to wait until the cache reaches the store's current
//!   revision.
//! - Each resource keeps a bounded history of recent events for watches that start from a
//!   past resourceVersion; older ones get 410 Expired, as upstream.
//! - Watchers read from a bounded broadcast; one that falls behind is cut off (its stream
//!   ends, the client re-watches from its last resourceVersion) instead of growing memory.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;
use skiff_api::selector::{FieldSelector, LabelSelector};
use skiff_api::{meta, ApiError};
use skiff_store::{EventKind, RangeRequest, Store};
use tokio::sync::{broadcast, watch};

use crate::resources::{self, ResourceDef};
use crate::storage::decode;

/// Events kept per resource for watches from a past resourceVersion.
const HISTORY: usize = 10_000;
/// Events buffered per watcher before it counts as fallen behind.
const WATCHER_BUFFER: usize = 4096;

/// One object as cached: serialized (with its resourceVersion) and indexed. Only the JSON
/// is kept — lists and watches send it as is — and the rare paths that need the object
/// parse it, which halves the cache's memory against keeping both forms.
pub struct CachedObject {
    pub key: String,
    pub namespace: String,
    pub name: String,
    pub rv: i64,
    pub json: Bytes,
    pub labels: BTreeMap<String, String>,
    pub fields: BTreeMap<&'static str, String>,
}

impl CachedObject {
    #[cfg(test)]
    pub fn for_test(def: &ResourceDef, value: Value, rv: i64) -> Self {
        Self::new(def, String::new(), &value, rv)
    }

    fn new(def: &ResourceDef, key: String, value: &Value, rv: i64) -> Self {
        Self {
            key,
            namespace: meta::namespace(value).to_string(),
            name: meta::name(value).to_string(),
            rv,
            labels: meta::labels(value),
            fields: resources::selectable_fields(def.hooks.as_ref(), value),
            json: Bytes::from(serde_json::to_vec(value).unwrap_or_default()),
        }
    }

    /// The object, parsed from its cached JSON (which this process wrote, so it parses).
    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.json).unwrap_or(Value::Null)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

pub struct CacheEvent {
    pub rv: i64,
    pub kind: EventType,
    /// The object after the change (for a delete: its last state, stamped with the
    /// deletion's resourceVersion).
    pub object: Arc<CachedObject>,
    pub prev: Option<Arc<CachedObject>>,
}

/// Which objects a list or watch wants.
#[derive(Clone, Default)]
pub struct Filter {
    pub namespace: String,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filter {
    pub fn matches(&self, obj: &CachedObject) -> bool {
        (self.namespace.is_empty() || obj.namespace == self.namespace)
            && (self.labels.is_empty() || self.labels.matches(&obj.labels))
            && (self.fields.is_empty() || self.fields.matches(&obj.fields))
    }

    /// The same test on an object read from the store.
    pub fn matches_value(&self, def: &ResourceDef, obj: &Value) -> bool {
        (self.namespace.is_empty() || meta::namespace(obj) == self.namespace)
            && self.labels.matches_object(obj)
            && (self.fields.is_empty()
                || self
                    .fields
                    .matches(&resources::selectable_fields(def.hooks.as_ref(), obj)))
    }
}

struct State {
    objects: BTreeMap<String, Arc<CachedObject>>,
    history: VecDeque<Arc<CacheEvent>>,
    /// Every event with a resourceVersion above this is in `history`.
    history_floor: i64,
    /// The store revision this cache reflects (it moves with every store revision, also
    /// ones that changed other resources).
    revision: i64,
    /// Live events, sent under the write lock so subscribing under the read lock sees
    /// each event exactly once: in the replay or live, never both, never neither.
    events: broadcast::Sender<Arc<CacheEvent>>,
}

pub struct ResourceCache {
    pub def: &'static ResourceDef,
    /// The store prefix of its objects (`/registry/pods/`, `/registry/<group>/<plural>/`).
    prefix: String,
    state: RwLock<State>,
}

/// What a new watch starts with: events to replay, then the live receiver.
pub struct Subscription {
    pub initial: Vec<Arc<CacheEvent>>,
    pub live: broadcast::Receiver<Arc<CacheEvent>>,
    /// The cache revision at subscription: live events at or below it are already covered.
    pub revision: i64,
}

impl ResourceCache {
    fn new(def: &'static ResourceDef, prefix: String, revision: i64) -> Self {
        Self {
            def,
            prefix,
            state: RwLock::new(State {
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                history_floor: revision,
                revision,
                events: broadcast::channel(WATCHER_BUFFER).0,
            }),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Objects matching `filter`, in key order, and the revision they are a snapshot of.
    pub fn list(&self, filter: &Filter) -> (Vec<Arc<CachedObject>>, i64) {
        let state = self.read();
        let prefix = match (self.def.namespaced, filter.namespace.is_empty()) {
            (true, false) => format!("{}{}/", self.prefix, filter.namespace),
            _ => self.prefix.clone(),
        };
        let objects = state
            .objects
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(_, o)| filter.matches(o))
            .map(|(_, o)| o.clone())
            .collect();
        (objects, state.revision)
    }

    pub fn get(&self, key: &str) -> Option<Arc<CachedObject>> {
        self.read().objects.get(key).cloned()
    }

    /// Starts a watch after `from` (a resourceVersion), or — with `initial_state` — with a
    /// synthetic ADDED event for every current object, then everything after.
    pub fn subscribe(
        &self,
        from: Option<i64>,
        initial_state: bool,
    ) -> Result<Subscription, ApiError> {
        let state = self.read();
        let revision = state.revision;
        let live = state.events.subscribe();
        let initial = if initial_state {
            state
                .objects
                .values()
                .map(|o| {
                    Arc::new(CacheEvent {
                        rv: o.rv,
                        kind: EventType::Added,
                        object: o.clone(),
                        prev: None,
                    })
                })
                .collect()
        } else {
            let from = from.unwrap_or(revision);
            if from < state.history_floor {
                return Err(ApiError::expired(from, state.history_floor + 1));
            }
            state
                .history
                .iter()
                .filter(|e| e.rv > from)
                .cloned()
                .collect()
        };
        Ok(Subscription {
            initial,
            live,
            revision,
        })
    }

    fn apply(&self, key: String, kind: EventKind, value: Option<Value>, rv: i64) {
        let mut state = self.write();
        let prev = state.objects.get(&key).cloned();
        let event = match (kind, value) {
            (EventKind::Put, Some(value)) => {
                let obj = Arc::new(CachedObject::new(self.def, key.clone(), &value, rv));
                state.objects.insert(key, obj.clone());
                let kind = if prev.is_some() {
                    EventType::Modified
                } else {
                    EventType::Added
                };
                CacheEvent {
                    rv,
                    kind,
                    object: obj,
                    prev,
                }
            }
            (EventKind::Delete, _) => {
                let Some(prev) = state.objects.remove(&key) else {
                    return;
                };
                let mut last = prev.value();
                meta::set_meta(&mut last, "resourceVersion", rv.to_string());
                let obj = Arc::new(CachedObject::new(self.def, key, &last, rv));
                CacheEvent {
                    rv,
                    kind: EventType::Deleted,
                    object: obj,
                    prev: Some(prev),
                }
            }
            (EventKind::Put, None) => return,
        };
        let event = Arc::new(event);
        state.history.push_back(event.clone());
        while state.history.len() > HISTORY {
            if let Some(old) = state.history.pop_front() {
                state.history_floor = old.rv;
            }
        }
        // No receivers is fine: nobody is watching this resource.
        let _ = state.events.send(event);
    }

    fn advance(&self, revision: i64) {
        let mut state = self.write();
        state.revision = state.revision.max(revision);
    }

    fn reset(&self, objects: BTreeMap<String, Arc<CachedObject>>, revision: i64) {
        let mut state = self.write();
        state.objects = objects;
        state.revision = revision;
        state.history.clear();
        state.history_floor = revision;
        // Watchers of the old state cannot continue across a re-list: a new channel ends
        // their streams, and clients re-watch.
        state.events = broadcast::channel(WATCHER_BUFFER).0;
    }
}

/// All resource caches plus the one store watch feeding them.
pub struct WatchCache {
    store: Arc<dyn Store>,
    caches: HashMap<&'static str, Arc<ResourceCache>>,
    /// Custom resources' caches by `<group>/<plural>`: made when the first key under such
    /// a prefix is seen (or a served CRD asks), so they never miss an object whatever the
    /// order in which a CRD and its objects arrive.
    custom: RwLock<HashMap<String, Arc<ResourceCache>>>,
    revision: watch::Sender<i64>,
    ready: watch::Sender<bool>,
}

impl WatchCache {
    pub fn new(store: Arc<dyn Store>) -> Arc<Self> {
        // One cache per stored resource, keyed by its plural (the store prefix segment).
        // Other served versions of it (`conversion` set) share that cache: it holds
        // storage-form objects, converted per response.
        let caches = resources::RESOURCES
            .iter()
            .filter(|def| def.conversion.is_none())
            .map(|def| {
                let cache = ResourceCache::new(def, def.storage_prefix(), 0);
                (def.storage_resource, Arc::new(cache))
            })
            .collect();
        Arc::new(Self {
            store,
            caches,
            custom: RwLock::new(HashMap::new()),
            revision: watch::channel(0).0,
            ready: watch::channel(false).0,
        })
    }

    pub fn resource(&self, def: &ResourceDef) -> Option<Arc<ResourceCache>> {
        match self.caches.get(def.storage_resource) {
            Some(cache) => Some(cache.clone()),
            None => self.custom_cache(def.storage_resource),
        }
    }

    /// The cache of a custom resource's segment (`<group>/<plural>`), made if missing.
    fn custom_cache(&self, segment: &str) -> Option<Arc<ResourceCache>> {
        // Only a custom resource's segment: a group (it has a dot) and a plural.
        let (group, plural) = segment.split_once('/')?;
        if !group.contains('.') || plural.is_empty() || plural.contains('/') {
            return None;
        }
        if let Some(c) = self.custom_read().get(segment) {
            return Some(c.clone());
        }
        let mut custom = self.custom.write().unwrap_or_else(|p| p.into_inner());
        let cache = custom.entry(segment.to_string()).or_insert_with(|| {
            let prefix = format!("/registry/{segment}/");
            Arc::new(ResourceCache::new(
                crate::crd::cache_def(),
                prefix,
                self.revision(),
            ))
        });
        Some(cache.clone())
    }

    /// Ends the watches of a custom resource whose CRD is gone (as upstream does): a new
    /// event channel closes the old one, and clients that re-watch get a 404.
    pub fn end_custom_watches(&self, segment: &str) {
        if let Some(cache) = self.custom_read().get(segment) {
            cache.write().events = broadcast::channel(WATCHER_BUFFER).0;
        }
    }

    fn custom_read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<ResourceCache>>> {
        self.custom.read().unwrap_or_else(|p| p.into_inner())
    }

    fn all_caches(&self) -> Vec<Arc<ResourceCache>> {
        let mut all: Vec<Arc<ResourceCache>> = self.caches.values().cloned().collect();
        all.extend(self.custom_read().values().cloned());
        all
    }

    /// The last store revision applied to every cache.
    pub fn revision(&self) -> i64 {
        *self.revision.borrow()
    }

    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Waits until the cache has applied `revision` (upstream waits up to 3 s, then 504).
    pub async fn wait_for(&self, revision: i64) -> Result<(), ApiError> {
        let mut rx = self.revision.subscribe();
        let reached =
            tokio::time::timeout(Duration::from_secs(3), rx.wait_for(|r| *r >= revision)).await;
        match reached {
            Ok(Ok(_)) => Ok(()),
            _ => Err(ApiError::timeout(format!(
                "Too large resource version: {revision}, current: {}",
                self.revision()
            ))),
        }
    }

    /// Waits until the cache has caught up with the store's current revision: what a
    /// consistent read needs.
    pub async fn sync(&self) -> Result<i64, ApiError> {
        let current = self
            .store
            .current_revision()
            .await
            .map_err(crate::storage::store_error)?;
        self.wait_for(current).await?;
        Ok(current)
    }

    /// Feeds the caches forever: list everything at one revision, then follow one watch.
    /// Starts over (re-list) if the watch fails or history was compacted under it.
    pub async fn run(self: Arc<Self>) {
        loop {
            match self.list_and_watch().await {
                Ok(()) => return,
                Err(err) => {
                    tracing::warn!(%err, "watch cache lost its store watch; re-listing");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    async fn list_and_watch(&self) -> Result<(), skiff_store::StoreError> {
        let revision = self.store.current_revision().await?;
        let mut fresh: HashMap<String, BTreeMap<String, Arc<CachedObject>>> = HashMap::new();
        let mut start = b"/registry/".to_vec();
        let end = skiff_store::keys::prefix_end(b"/registry/");
        loop {
            let mut req = RangeRequest::prefix("/registry/")
                .at_revision(revision)
                .limit(10_000);
            req.key = start.clone();
            req.range_end = end.clone();
            let page = self.store.range(req).await?;
            for kv in &page.kvs {
                let key = String::from_utf8_lossy(&kv.key).into_owned();
                if let Some(cache) = self.cache_for(&key) {
                    if let Ok(value) = decode(kv) {
                        let obj = Arc::new(CachedObject::new(
                            cache.def,
                            key.clone(),
                            &value,
                            kv.mod_revision,
                        ));
                        fresh
                            .entry(cache.prefix.clone())
                            .or_default()
                            .insert(key, obj);
                    }
                }
            }
            match (page.more, page.kvs.last()) {
                (true, Some(last)) => start = skiff_store::keys::key_after(&last.key),
                _ => break,
            }
        }
        for cache in self.all_caches() {
            cache.reset(fresh.remove(&cache.prefix).unwrap_or_default(), revision);
        }
        self.revision.send_replace(revision);
        self.ready.send_replace(true);
        let mut events = self
            .store
            .watch(b"/registry/", revision)
            .await?
            .ready_chunks(512);
        while let Some(batch) = events.next().await {
            let mut last = None;
            for event in batch {
                let event = event?;
                let key = String::from_utf8_lossy(&event.kv.key).into_owned();
                let rv = event.kv.mod_revision;
                last = Some(rv);
                let Some(cache) = self.cache_for(&key) else {
                    continue;
                };
                let value = match event.kind {
                    EventKind::Put => match decode(&event.kv) {
                        Ok(v) => Some(v),
                        Err(err) => {
                            tracing::error!(%key, %err, "undecodable object in the store; skipped");
                            continue;
                        }
                    },
                    EventKind::Delete => None,
                };
                cache.apply(key, event.kind, value, rv);
            }
            // Advance only after the whole batch: a transaction's events arrive together.
            if let Some(rv) = last {
                for cache in self.all_caches() {
                    cache.advance(rv);
                }
                self.revision.send_replace(rv);
            }
        }
        Err(skiff_store::StoreError::Unavailable(
            "store watch ended".into(),
        ))
    }

    fn cache_for(&self, key: &str) -> Option<Arc<ResourceCache>> {
        let rest = key.strip_prefix("/registry/")?;
        let mut parts = rest.split('/');
        let first = parts.next()?;
        if let Some(cache) = self.caches.get(first) {
            return Some(cache.clone());
        }
        let second = parts.next()?;
        // `<group>/<plural>/[<namespace>/]<name>`: at least one segment after the plural.
        parts.next()?;
        self.custom_cache(&format!("{first}/{second}"))
    }
}
