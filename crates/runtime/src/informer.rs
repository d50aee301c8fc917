//! Shared informers: one list+watch per resource type feeding an in-memory cache that
//! every control loop in the process reads, plus change handlers and indexes.
//!
//! Guarantees:
//! - the cache is updated before handlers run, so a handler (or a worker it wakes) that
//!   reads the cache sees at least the change it was told about;
//! - after a re-list (a 410 `Expired` watch, a lost connection) the cache is replaced at
//!   once and handlers get a change for every object that differs, including deletions
//!   of objects that vanished meanwhile, so level-triggered loops miss nothing;
//! - handlers run on the informer's task: they must be quick (queue a key, nothing more).

use std::any::{Any, TypeId};
use std::collections::{HashMap, HashSet};
use std::fmt::{self, Debug, Display};
use std::sync::{Arc, Mutex, RwLock};

use futures::StreamExt;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Namespace (for namespaced objects) and name: what work queues carry.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: Option<&str>, name: &str) -> Self {
        Self {
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
        }
    }

    pub fn of<K: Resource>(obj: &K) -> Self {
        Self {
            namespace: obj.meta().namespace.clone(),
            name: obj.meta().name.clone().unwrap_or_default(),
        }
    }

    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or("")
    }
}

impl Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{ns}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// One change seen by an informer. `new` is `None` when the object was deleted (then
/// `old` is its last state); `old` is `None` when it was added.
pub struct Change<K> {
    pub old: Option<Arc<K>>,
    pub new: Option<Arc<K>>,
}

impl<K> Change<K> {
    /// The object as it is now, or as it was when deleted.
    pub fn object(&self) -> &Arc<K> {
        self.new
            .as_ref()
            .or(self.old.as_ref())
            .expect("a change has an old or a new object")
    }

    pub fn is_delete(&self) -> bool {
        self.new.is_none()
    }
}

/// What a cached type must be.
pub trait Object:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
}
impl<K> Object for K where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
}

type Handler<K> = Box<dyn Fn(&Change<K>) + Send + Sync>;
type IndexFn<K> = Box<dyn Fn(&K) -> Vec<String> + Send + Sync>;

/// A watch-fed cache of one resource type. Cheap to clone.
pub struct Informer<K> {
    inner: Arc<Inner<K>>,
}

impl<K> Clone for Informer<K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<K> {
    api: Api<K>,
    config: watcher::Config,
    data: RwLock<Data<K>>,
    handlers: RwLock<Vec<Handler<K>>>,
    synced: watch::Sender<bool>,
}

struct Data<K> {
    items: HashMap<ObjectKey, Arc<K>>,
    index_fns: Vec<(&'static str, IndexFn<K>)>,
    indexes: HashMap<&'static str, HashMap<String, HashSet<ObjectKey>>>,
}

impl<K> Data<K> {
    fn unindex(&mut self, key: &ObjectKey, obj: &K) {
        for (name, f) in &self.index_fns {
            let index = self.indexes.entry(name).or_default();
            for value in f(obj) {
                if let Some(set) = index.get_mut(&value) {
                    set.remove(key);
                    if set.is_empty() {
                        index.remove(&value);
                    }
                }
            }
        }
    }

    fn index(&mut self, key: &ObjectKey, obj: &K) {
        for (name, f) in &self.index_fns {
            let index = self.indexes.entry(name).or_default();
            for value in f(obj) {
                index.entry(value).or_default().insert(key.clone());
            }
        }
    }

    fn upsert(&mut self, key: ObjectKey, obj: Arc<K>) -> Option<Arc<K>> {
        let old = self.items.insert(key.clone(), obj.clone());
        if let Some(old) = &old {
            self.unindex(&key, old);
        }
        self.index(&key, &obj);
        old
    }

    fn remove(&mut self, key: &ObjectKey) -> Option<Arc<K>> {
        let old = self.items.remove(key);
        if let Some(old) = &old {
            self.unindex(key, old);
        }
        old
    }
}

/// The index every informer keeps: objects by namespace.
const NAMESPACE_INDEX: &str = "namespace";

impl<K: Object> Informer<K> {
    fn new(api: Api<K>, config: watcher::Config) -> Self {
        let namespace_fn: IndexFn<K> = Box::new(|o: &K| o.namespace().into_iter().collect());
        Self {
            inner: Arc::new(Inner {
                api,
                config,
                data: RwLock::new(Data {
                    items: HashMap::new(),
                    index_fns: vec![(NAMESPACE_INDEX, namespace_fn)],
                    indexes: HashMap::new(),
                }),
                handlers: RwLock::new(Vec::new()),
                synced: watch::channel(false).0,
            }),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Data<K>> {
        self.inner.data.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Data<K>> {
        self.inner.data.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps an index of objects by the values `f` returns (e.g. pods by node name).
    /// Objects already cached are indexed at once.
    pub fn add_index(
        &self,
        name: &'static str,
        f: impl Fn(&K) -> Vec<String> + Send + Sync + 'static,
    ) {
        let mut data = self.write();
        let items: Vec<(ObjectKey, Arc<K>)> = data
            .items
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        data.index_fns.retain(|(n, _)| *n != name);
        data.indexes.remove(name);
        let mut index: HashMap<String, HashSet<ObjectKey>> = HashMap::new();
        for (key, obj) in &items {
            for value in f(obj) {
                index.entry(value).or_default().insert(key.clone());
            }
        }
        data.indexes.insert(name, index);
        data.index_fns.push((name, Box::new(f)));
    }

    /// Calls `f` for every change from now on. Register before the factory starts to
    /// see the initial objects as additions.
    pub fn on_change(&self, f: impl Fn(&Change<K>) + Send + Sync + 'static) {
        self.inner
            .handlers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(Box::new(f));
    }

    pub fn get(&self, key: &ObjectKey) -> Option<Arc<K>> {
        self.read().items.get(key).cloned()
    }

    pub fn get_named(&self, namespace: Option<&str>, name: &str) -> Option<Arc<K>> {
        self.get(&ObjectKey::new(namespace, name))
    }

    pub fn list(&self) -> Vec<Arc<K>> {
        self.read().items.values().cloned().collect()
    }

    pub fn list_namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        self.by_index(NAMESPACE_INDEX, namespace)
    }

    /// Objects whose index `name` holds `value`.
    pub fn by_index(&self, name: &str, value: &str) -> Vec<Arc<K>> {
        let data = self.read();
        data.indexes
            .get(name)
            .and_then(|index| index.get(value))
            .map(|keys| {
                keys.iter()
                    .filter_map(|k| data.items.get(k).cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.read().items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_synced(&self) -> bool {
        *self.inner.synced.borrow()
    }

    /// Waits until the first full list is in the cache.
    pub async fn wait_synced(&self) {
        let mut rx = self.inner.synced.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// An API handle for the informer's resource (all namespaces).
    pub fn api(&self) -> &Api<K> {
        &self.inner.api
    }

    fn notify(&self, changes: &[Change<K>]) {
        let handlers = self
            .inner
            .handlers
            .read()
            .unwrap_or_else(|e| e.into_inner());
        for change in changes {
            for h in handlers.iter() {
                h(change);
            }
        }
    }

    fn apply(&self, obj: K) {
        let key = ObjectKey::of(&obj);
        let new = Arc::new(obj);
        let old = self.write().upsert(key, new.clone());
        self.notify(&[Change {
            old,
            new: Some(new),
        }]);
    }

    fn delete(&self, obj: K) {
        let key = ObjectKey::of(&obj);
        self.write().remove(&key);
        self.notify(&[Change {
            old: Some(Arc::new(obj)),
            new: None,
        }]);
    }

    /// Replaces the cache with a fresh list; reports what differs.
    fn replace(&self, fresh: HashMap<ObjectKey, Arc<K>>) {
        let mut changes = Vec::new();
        {
            let mut data = self.write();
            let gone: Vec<ObjectKey> = data
                .items
                .keys()
                .filter(|k| !fresh.contains_key(*k))
                .cloned()
                .collect();
            for key in gone {
                if let Some(old) = data.remove(&key) {
                    changes.push(Change {
                        old: Some(old),
                        new: None,
                    });
                }
            }
            for (key, obj) in fresh {
                let unchanged = data.items.get(&key).is_some_and(|old| {
                    old.meta().resource_version.is_some()
                        && old.meta().resource_version == obj.meta().resource_version
                });
                if unchanged {
                    continue;
                }
                let old = data.upsert(key, obj.clone());
                changes.push(Change {
                    old,
                    new: Some(obj),
                });
            }
        }
        self.notify(&changes);
        self.inner.synced.send_replace(true);
    }

    /// Lists and watches until `shutdown`, re-listing as the watcher requires.
    async fn run(self, shutdown: CancellationToken) {
        let stream =
            watcher::watcher(self.inner.api.clone(), self.inner.config.clone()).default_backoff();
        futures::pin_mut!(stream);
        let mut pending: Option<HashMap<ObjectKey, Arc<K>>> = None;
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => return,
                e = stream.next() => e,
            };
            let Some(event) = event else { return };
            match event {
                Ok(Event::Init) => pending = Some(HashMap::new()),
                Ok(Event::InitApply(obj)) => {
                    pending
                        .get_or_insert_with(HashMap::new)
                        .insert(ObjectKey::of(&obj), Arc::new(obj));
                }
                Ok(Event::InitDone) => self.replace(pending.take().unwrap_or_default()),
                Ok(Event::Apply(obj)) => self.apply(obj),
                Ok(Event::Delete(obj)) => self.delete(obj),
                Err(e) => {
                    tracing::warn!(resource = %K::plural(&()), "watch failed (retrying): {e}")
                }
            }
        }
    }
}

/// Creates and starts informers, one per (type, configuration), shared by all loops.
#[derive(Clone)]
pub struct InformerFactory {
    client: kube::Client,
    state: Arc<Mutex<FactoryState>>,
}

type Starter = Box<dyn FnOnce(CancellationToken) + Send>;

#[derive(Default)]
struct FactoryState {
    informers: HashMap<(TypeId, String), Box<dyn Any + Send + Sync>>,
    unstarted: Vec<Starter>,
    synced: Vec<watch::Receiver<bool>>,
    running: Option<CancellationToken>,
}

impl InformerFactory {
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            state: Arc::new(Mutex::new(FactoryState::default())),
        }
    }

    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// The informer of every `K` in all namespaces.
    pub fn informer<K: Object>(&self) -> Informer<K> {
        self.informer_with("", watcher::Config::default())
    }

    /// An informer with its own list/watch options (e.g. a field selector); `name` tells
    /// differently configured informers of one type apart.
    pub fn informer_with<K: Object>(&self, name: &str, config: watcher::Config) -> Informer<K> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let id = (TypeId::of::<K>(), name.to_string());
        if let Some(existing) = state.informers.get(&id) {
            if let Some(inf) = existing.downcast_ref::<Informer<K>>() {
                return inf.clone();
            }
        }
        let informer = Informer::new(Api::<K>::all(self.client.clone()), config);
        state.informers.insert(id, Box::new(informer.clone()));
        state.synced.push(informer.inner.synced.subscribe());
        let runner = informer.clone();
        let starter: Starter = Box::new(move |token| {
            tokio::spawn(runner.run(token));
        });
        match &state.running {
            Some(token) => starter(token.clone()),
            None => state.unstarted.push(starter),
        }
        informer
    }

    /// Starts every informer made so far (later ones start when made) until `shutdown`.
    pub fn start(&self, shutdown: CancellationToken) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for starter in state.unstarted.drain(..) {
            starter(shutdown.clone());
        }
        state.running = Some(shutdown);
    }

    /// Waits until every informer made so far has its first full list.
    pub async fn wait_synced(&self) {
        let receivers = self
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .synced
            .clone();
        for mut rx in receivers {
            let _ = rx.wait_for(|s| *s).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn pod(ns: &str, name: &str, rv: &str, node: &str) -> Pod {
        let mut p = Pod::default();
        p.metadata.namespace = Some(ns.into());
        p.metadata.name = Some(name.into());
        p.metadata.resource_version = Some(rv.into());
        p.spec = Some(k8s_openapi::api::core::v1::PodSpec {
            node_name: Some(node.into()),
            ..Default::default()
        });
        p
    }

    fn informer() -> Informer<Pod> {
        // The API handle is never used by these tests: no requests are made.
        let client = kube::Client::new(
            tower::service_fn(|_req: http::Request<kube::client::Body>| async {
                Err::<http::Response<kube::client::Body>, std::io::Error>(std::io::Error::other(
                    "no server in unit tests",
                ))
            }),
            "default",
        );
        Informer::new(Api::all(client), watcher::Config::default())
    }

    fn node_of(p: &Pod) -> Vec<String> {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .into_iter()
            .collect()
    }

    #[tokio::test]
    async fn indexes_follow_updates_and_deletes() {
        let inf = informer();
        inf.add_index("node", node_of);
        inf.apply(pod("a", "p1", "1", "n1"));
        inf.apply(pod("b", "p2", "2", "n1"));
        assert_eq!(inf.by_index("node", "n1").len(), 2);
        assert_eq!(inf.list_namespace("a").len(), 1);
        inf.apply(pod("a", "p1", "3", "n2"));
        assert_eq!(inf.by_index("node", "n1").len(), 1);
        assert_eq!(inf.by_index("node", "n2").len(), 1);
        inf.delete(pod("b", "p2", "4", "n1"));
        assert!(inf.by_index("node", "n1").is_empty());
        assert!(inf.list_namespace("b").is_empty());
        assert_eq!(inf.len(), 1);
    }

    #[tokio::test]
    async fn relist_reports_vanished_objects_as_deletions_and_skips_unchanged_ones() {
        let inf = informer();
        let deletes = Arc::new(AtomicUsize::new(0));
        let updates = Arc::new(AtomicUsize::new(0));
        let (d, u) = (deletes.clone(), updates.clone());
        inf.on_change(move |c| {
            if c.is_delete() {
                d.fetch_add(1, Ordering::SeqCst);
            } else {
                u.fetch_add(1, Ordering::SeqCst);
            }
        });
        inf.apply(pod("a", "keep", "1", "n"));
        inf.apply(pod("a", "gone", "2", "n"));
        inf.apply(pod("a", "changed", "3", "n"));
        updates.store(0, Ordering::SeqCst);
        let fresh: HashMap<_, _> = [pod("a", "keep", "1", "n"), pod("a", "changed", "9", "n")]
            .into_iter()
            .map(|p| (ObjectKey::of(&p), Arc::new(p)))
            .collect();
        inf.replace(fresh);
        assert_eq!(deletes.load(Ordering::SeqCst), 1);
        assert_eq!(updates.load(Ordering::SeqCst), 1);
        assert!(inf.is_synced());
        assert!(inf.get_named(Some("a"), "gone").is_none());
    }
}
