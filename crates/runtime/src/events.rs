//! Records core/v1 Events about objects, as upstream's event recorder does: what
//! `kubectl describe` and `kubectl get events` show. Repeats of the same event (same
//! object, type, reason and message) within ten minutes bump `count` and
//! `lastTimestamp` on the existing Event instead of creating another.
//!
//! Recording never blocks or fails the caller: the write happens on a spawned task and
//! a failure is logged. Writes are bounded (16 at once per recorder) and, as upstream's
//! broadcaster drops events when its queue is full, events beyond 1,000 waiting are
//! dropped rather than piling onto a busy API server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Resource, ResourceExt};

/// `type` of an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "Normal",
            Self::Warning => "Warning",
        }
    }
}

const AGGREGATE_WINDOW: Duration = Duration::from_secs(600);
const MAX_REMEMBERED: usize = 4096;
const CONCURRENT_WRITES: usize = 16;
const MAX_WAITING: usize = 1000;

#[derive(Clone)]
pub struct Recorder {
    client: kube::Client,
    component: String,
    host: Option<String>,
    seen: Arc<Mutex<HashMap<String, Seen>>>,
    writes: Arc<tokio::sync::Semaphore>,
    waiting: Arc<std::sync::atomic::AtomicUsize>,
}

struct Seen {
    namespace: String,
    name: String,
    count: i32,
    at: std::time::Instant,
}

/// A reference to `obj` for an event's `involvedObject`.
pub fn reference<K: Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        namespace: obj.meta().namespace.clone(),
        name: obj.meta().name.clone(),
        uid: obj.meta().uid.clone(),
        resource_version: obj.meta().resource_version.clone(),
        field_path: None,
    }
}

impl Recorder {
    /// A recorder whose events name `component` (e.g. `default-scheduler`) as source.
    pub fn new(client: kube::Client, component: impl Into<String>) -> Self {
        Self {
            client,
            component: component.into(),
            host: None,
            seen: Arc::new(Mutex::new(HashMap::new())),
            writes: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_WRITES)),
            waiting: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        }
    }

    /// Sets `source.host` (node agents name their node).
    pub fn with_host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    pub fn normal<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        reason: &str,
        message: impl Into<String>,
    ) {
        self.record(reference(obj), EventType::Normal, reason, message.into());
    }

    pub fn warning<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        reason: &str,
        message: impl Into<String>,
    ) {
        self.record(reference(obj), EventType::Warning, reason, message.into());
    }

    /// Records an event about `object` (spawned; never blocks the caller).
    pub fn record(&self, object: ObjectReference, kind: EventType, reason: &str, message: String) {
        use std::sync::atomic::Ordering;
        if self.waiting.fetch_add(1, Ordering::Relaxed) >= MAX_WAITING {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            tracing::debug!(component = %self.component, %reason, "event dropped: too many waiting");
            return;
        }
        let this = self.clone();
        let reason = reason.to_string();
        tokio::spawn(async move {
            let permit = this.writes.clone().acquire_owned().await;
            this.waiting.fetch_sub(1, Ordering::Relaxed);
            let Ok(_permit) = permit else { return };
            if let Err(e) = this.write(object, kind, &reason, message).await {
                tracing::debug!(component = %this.component, %reason, "recording an event failed: {e}");
            }
        });
    }

    async fn write(
        &self,
        object: ObjectReference,
        kind: EventType,
        reason: &str,
        message: String,
    ) -> Result<(), kube::Error> {
        // Cluster-scoped objects' events live in "default", as upstream's recorder puts them.
        let namespace = object
            .namespace
            .clone()
            .filter(|ns| !ns.is_empty())
            .unwrap_or_else(|| "default".to_string());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let now = k8s_openapi::jiff::Timestamp::now();
        let key = format!(
            "{}/{}/{}/{}/{}/{}",
            object.uid.as_deref().unwrap_or(""),
            object.name.as_deref().unwrap_or(""),
            object.field_path.as_deref().unwrap_or(""),
            kind.as_str(),
            reason,
            message
        );
        let repeat = {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            match seen.get_mut(&key) {
                Some(s) if s.at.elapsed() < AGGREGATE_WINDOW => {
                    s.count += 1;
                    s.at = std::time::Instant::now();
                    Some((s.namespace.clone(), s.name.clone(), s.count))
                }
                _ => None,
            }
        };
        if let Some((ns, name, count)) = repeat {
            let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
            let patch = serde_json::json!({
                "count": count,
                "lastTimestamp": now.to_string(),
            });
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(()),
                // The event expired or was deleted: write a new one below.
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let name = format!(
            "{}.{:x}",
            object.name.as_deref().unwrap_or("unknown"),
            now.as_nanosecond()
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: object,
            reason: Some(reason.to_string()),
            message: Some(message),
            type_: Some(kind.as_str().to_string()),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: self.host.clone(),
            }),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            count: Some(1),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.host.clone().unwrap_or_else(|| self.component.clone())),
            ..Default::default()
        };
        let created = api.create(&PostParams::default(), &event).await?;
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= MAX_REMEMBERED {
            seen.retain(|_, s| s.at.elapsed() < AGGREGATE_WINDOW);
            if seen.len() >= MAX_REMEMBERED {
                seen.clear();
            }
        }
        seen.insert(
            key,
            Seen {
                namespace,
                name: created.name_any(),
                count: 1,
                at: std::time::Instant::now(),
            },
        );
        Ok(())
    }
}
