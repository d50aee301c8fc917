//! The ReplicaSet and ReplicationController loops: one implementation over both kinds
//! (see [`kind::Replicated`]). Each pass claims the active pods the selector matches
//! (adopting orphans, releasing pods that no longer match), creates or deletes pods
//! to reach spec.replicas, and writes status with observedGeneration and the
//! ReplicaFailure condition.
//!
//! Guarantees: creates and deletes in flight are tracked as expectations, so a cache
//! that has not yet seen them never causes a second round; creates go in slow-start
//! batches (1, 2, 4, ...) so a failing template or quota fails once per pass.

pub mod batch;
pub mod kind;
pub mod plan;
pub mod status;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::Api;
use skiff_runtime::events::Recorder;
use skiff_runtime::selector::Selector;
use skiff_runtime::{Change, Informer, ObjectKey, WorkQueue};

use crate::util::expectations::Expectations;
use crate::util::{owner, podcontrol, pods};
use crate::{Ctx, Loop};
use kind::Replicated;
use plan::Claim;
use status::{ManageFailure, ReplicaStatus};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("claiming pod {pod} for {owner}: {source}")]
    Claim {
        owner: ObjectKey,
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error("{owner}: {message}")]
    Manage { owner: ObjectKey, message: String },
    #[error("writing status of {owner}: {source}")]
    Status {
        owner: ObjectKey,
        #[source]
        source: kube::Error,
    },
}

/// The ReplicaSet loop.
pub fn replicasets(ctx: &Ctx) -> Loop {
    build::<ReplicaSet>(ctx)
}

/// The ReplicationController loop.
pub fn replication_controllers(ctx: &Ctx) -> Loop {
    build::<ReplicationController>(ctx)
}

/// The message of an API error as upstream prints it (`err.Error()`), without kube's
/// wrapping.
pub fn error_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

struct State<K: Replicated> {
    client: kube::Client,
    owners: Informer<K>,
    pods: Informer<Pod>,
    queue: WorkQueue<ObjectKey>,
    expectations: Expectations<ObjectKey>,
    /// Uids of pods whose deletion this controller issued and has not yet seen, per
    /// owner, so one deletion is observed once (a pod is seen terminating, then gone).
    deleting: Mutex<HashMap<ObjectKey, HashSet<String>>>,
    recorder: Recorder,
}

fn build<K: Replicated>(ctx: &Ctx) -> Loop {
    let owners = ctx.informers.informer::<K>();
    let pods = ctx.informers.informer::<Pod>();
    let queue = WorkQueue::new(K::COMPONENT, ctx.settings.max_retry_delay);
    let state = Arc::new(State {
        client: ctx.client.clone(),
        owners: owners.clone(),
        pods: pods.clone(),
        queue: queue.clone(),
        expectations: Expectations::default(),
        deleting: Mutex::new(HashMap::new()),
        recorder: ctx.recorder(K::COMPONENT),
    });
    {
        let s = state.clone();
        owners.on_change(move |c: &Change<K>| {
            let key = ObjectKey::of(c.object().as_ref());
            if c.is_delete() {
                s.expectations.forget(&key);
                s.deleting_lock().remove(&key);
            }
            s.queue.add(key);
        });
    }
    {
        let s = state.clone();
        pods.on_change(move |c: &Change<Pod>| s.pod_changed(c));
    }
    ctx.run_workers(queue, ctx.settings.workers, state, |s, key| async move {
        s.reconcile(key).await
    })
}

impl<K: Replicated> State<K> {
    fn deleting_lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectKey, HashSet<String>>> {
        self.deleting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The owner of kind K that `pod`'s controller reference names, if cached with
    /// that uid.
    fn owner_of(&self, pod: &Pod) -> Option<ObjectKey> {
        let r = owner::controller_of(&pod.metadata)?;
        if r.kind != K::kind(&()) {
            return None;
        }
        let o = self
            .owners
            .get_named(pod.metadata.namespace.as_deref(), &r.name)?;
        (o.meta().uid.as_deref() == Some(r.uid.as_str())).then(|| ObjectKey::of(o.as_ref()))
    }

    /// Every owner whose selector matches an orphan pod (one may adopt it).
    fn enqueue_matching(&self, pod: &Pod) {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("");
        for o in self.owners.list_namespace(ns) {
            if o.selector()
                .is_ok_and(|s| s.matches(pod.metadata.labels.as_ref()))
            {
                self.queue.add(ObjectKey::of(o.as_ref()));
            }
        }
    }

    fn deletion_seen(&self, key: &ObjectKey, pod: &Pod) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let was_ours = self
            .deleting_lock()
            .get_mut(key)
            .is_some_and(|set| set.remove(&uid));
        if was_ours {
            self.expectations.deletion_observed(key);
        }
    }

    /// Upstream's addPod/updatePod/deletePod: observe expectations, wake the owner (or
    /// the owners that might adopt an orphan).
    fn pod_changed(&self, c: &Change<Pod>) {
        let pod = c.object();
        let old_owner = c.old.as_deref().and_then(|p| self.owner_of(p));
        let new_owner = c.new.as_deref().and_then(|p| self.owner_of(p));
        match (&c.old, &c.new) {
            (_, None) => {
                if let Some(k) = old_owner {
                    self.deletion_seen(&k, pod);
                    self.queue.add(k);
                }
            }
            (None, Some(new)) => match new_owner {
                Some(k) => {
                    if pods::is_terminating(new) {
                        self.deletion_seen(&k, new);
                    } else {
                        self.expectations.creation_observed(&k);
                    }
                    self.queue.add(k);
                }
                None if !pods::is_terminating(new) => self.enqueue_matching(new),
                None => {}
            },
            (Some(old), Some(new)) => {
                if old.metadata.resource_version == new.metadata.resource_version {
                    return;
                }
                if let Some(k) = &new_owner {
                    if pods::is_terminating(new) {
                        self.deletion_seen(k, new);
                    }
                }
                if old_owner != new_owner {
                    if let Some(k) = old_owner {
                        self.queue.add(k);
                    }
                }
                match new_owner {
                    Some(k) => self.queue.add(k),
                    None => {
                        let relabeled = old.metadata.labels != new.metadata.labels;
                        let unowned = owner::controller_of(&old.metadata).is_some();
                        if (relabeled || unowned) && !pods::is_terminating(new) {
                            self.enqueue_matching(new);
                        }
                    }
                }
            }
        }
    }

    async fn reconcile(self: Arc<Self>, key: ObjectKey) -> Result<Option<Duration>, Error> {
        let Some(obj) = self.owners.get(&key) else {
            self.expectations.forget(&key);
            self.deleting_lock().remove(&key);
            return Ok(None);
        };
        let selector = match obj.selector() {
            Ok(s) => s,
            Err(e) => {
                // A selector the API server accepted but we cannot parse: nothing to do
                // until it changes (upstream logs and drops the key).
                tracing::warn!(%key, "invalid selector: {e}");
                return Ok(None);
            }
        };
        let uid = obj.meta().uid.clone().unwrap_or_default();
        let being_deleted = obj.meta().deletion_timestamp.is_some();
        // Read the expectations before the pods: a create observed in between must not
        // make a stale pod list look trustworthy.
        let needs_sync = self.expectations.satisfied(&key) && !being_deleted;
        let all: Vec<Arc<Pod>> = self.pods.list_namespace(key.namespace());
        let active: Vec<&Pod> = all
            .iter()
            .map(|p| p.as_ref())
            .filter(|p| pods::is_active(p))
            .collect();
        let owned = self
            .claim(&key, obj.as_ref(), &uid, &selector, being_deleted, &active)
            .await?;
        let now = Timestamp::now();
        let failure = if needs_sync {
            self.manage(&key, obj.as_ref(), &owned, &all, now).await
        } else {
            None
        };
        let owned_refs: Vec<&Pod> = owned.iter().collect();
        let current = obj.replica_status();
        let template_labels = obj
            .template()
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.labels.as_ref());
        let next = status::calculate(&status::Inputs {
            current: &current,
            generation: obj.meta().generation,
            template_labels,
            min_ready_seconds: obj.min_ready_seconds(),
            pods: &owned_refs,
            failure: failure.as_ref(),
            now,
        });
        if !status::same(&current, &next) {
            self.write_status(&key, &next).await?;
        }
        if let Some(f) = failure {
            return Err(Error::Manage {
                owner: key,
                message: f.message,
            });
        }
        // Look again when the first ready pod becomes available (minReadySeconds).
        let min_ready = obj.min_ready_seconds();
        let wake = owned
            .iter()
            .filter_map(|p| pods::available_in(p, min_ready, now))
            .min()
            .map(|d| d.max(Duration::from_secs(1)));
        Ok(wake)
    }

    /// Claims pods: returns the active pods this owner controls after adopting and
    /// releasing (the claimed copies carry the new owner references).
    async fn claim(
        &self,
        key: &ObjectKey,
        obj: &K,
        uid: &str,
        selector: &Selector,
        being_deleted: bool,
        active: &[&Pod],
    ) -> Result<Vec<Pod>, Error> {
        let mut owned = Vec::new();
        let mut can_adopt: Option<bool> = None;
        for pod in active {
            match plan::claim(pod, uid, selector, being_deleted) {
                Claim::Keep => owned.push((*pod).clone()),
                Claim::Ignore => {}
                Claim::Release => {
                    let mut refs = pod.metadata.owner_references.clone().unwrap_or_default();
                    refs.retain(|r| r.uid != uid);
                    self.patch_owners(key, pod, refs).await?;
                }
                Claim::Adopt => {
                    // Before the first adoption, make sure with a fresh read that the
                    // owner still exists and is not being deleted (upstream's
                    // RecheckDeletionTimestamp).
                    if can_adopt.is_none() {
                        can_adopt = Some(self.can_adopt(key, uid).await);
                    }
                    if can_adopt != Some(true) {
                        continue;
                    }
                    let mut refs = pod.metadata.owner_references.clone().unwrap_or_default();
                    refs.push(owner::controller_ref(obj));
                    if let Some(p) = self.patch_owners(key, pod, refs).await? {
                        owned.push(p);
                    }
                }
            }
        }
        Ok(owned)
    }

    async fn can_adopt(&self, key: &ObjectKey, uid: &str) -> bool {
        let api: Api<K> = Api::namespaced(self.client.clone(), key.namespace());
        match api.get(&key.name).await {
            Ok(fresh) => {
                fresh.meta().uid.as_deref() == Some(uid)
                    && fresh.meta().deletion_timestamp.is_none()
            }
            Err(_) => false,
        }
    }

    /// Writes a pod's owner references, pinned to the cached resourceVersion so a
    /// concurrent change makes this pass retry rather than clobber it.
    async fn patch_owners(
        &self,
        key: &ObjectKey,
        pod: &Pod,
        refs: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>,
    ) -> Result<Option<Pod>, Error> {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), key.namespace());
        let patch = serde_json::json!({
            "metadata": {
                "resourceVersion": pod.metadata.resource_version,
                "ownerReferences": if refs.is_empty() { serde_json::Value::Null } else { serde_json::json!(refs) },
            }
        });
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(p) => Ok(Some(p)),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
            Err(source) => Err(Error::Claim {
                owner: key.clone(),
                pod: name,
                source,
            }),
        }
    }

    /// Creates or deletes pods toward spec.replicas. Returns what failed, if anything.
    async fn manage(
        &self,
        key: &ObjectKey,
        obj: &K,
        owned: &[Pod],
        all: &[Arc<Pod>],
        now: Timestamp,
    ) -> Option<ManageFailure> {
        let d = plan::diff(owned.len(), obj.replicas());
        if d > 0 {
            self.create(key, obj, d as usize).await
        } else if d < 0 {
            let owned_refs: Vec<&Pod> = owned.iter().collect();
            let related = self.related_pods(obj, all);
            let related_refs: Vec<&Pod> = if related.is_empty() {
                owned_refs.clone()
            } else {
                related
            };
            let victims = plan::pods_to_delete(&owned_refs, &related_refs, (-d) as usize, now);
            self.delete(key, obj, &victims).await
        } else {
            None
        }
    }

    /// Active pods of every sibling controlled by the same owner as `obj` (for a
    /// Deployment: all its ReplicaSets), whose co-location ranks deletions.
    fn related_pods<'a>(&self, obj: &K, all: &'a [Arc<Pod>]) -> Vec<&'a Pod> {
        let Some(parent) = owner::controller_of(obj.meta()) else {
            return Vec::new();
        };
        let siblings: HashSet<String> = self
            .owners
            .list_namespace(obj.meta().namespace.as_deref().unwrap_or(""))
            .iter()
            .filter(|o| owner::is_controlled_by(o.meta(), &parent.uid))
            .filter_map(|o| o.meta().uid.clone())
            .collect();
        all.iter()
            .map(|p| p.as_ref())
            .filter(|p| pods::is_active(p))
            .filter(|p| {
                owner::controller_of(&p.metadata).is_some_and(|r| siblings.contains(&r.uid))
            })
            .collect()
    }

    async fn create(&self, key: &ObjectKey, obj: &K, count: usize) -> Option<ManageFailure> {
        let Some(template) = obj.template() else {
            return Some(ManageFailure {
                reason: "FailedCreate",
                message: "spec.template is missing".into(),
            });
        };
        let name = obj.meta().name.clone().unwrap_or_default();
        let pod = podcontrol::pod_from_template(
            template,
            key.namespace(),
            owner::controller_ref(obj),
            &format!("{name}-"),
            None,
            &Default::default(),
        );
        self.expectations.expect(key, count, 0);
        let out = batch::slow_start(&batch::ApiCreator(self.client.clone()), &pod, count).await;
        for _ in 0..out.unobserved {
            self.expectations.creation_observed(key);
        }
        for name in &out.created {
            self.recorder
                .normal(obj, "SuccessfulCreate", format!("Created pod: {name}"));
        }
        for message in &out.errors {
            self.recorder
                .warning(obj, "FailedCreate", format!("Error creating: {message}"));
        }
        out.errors.into_iter().next().map(|message| ManageFailure {
            reason: "FailedCreate",
            message,
        })
    }

    async fn delete(&self, key: &ObjectKey, obj: &K, victims: &[&Pod]) -> Option<ManageFailure> {
        self.expectations.expect(key, 0, victims.len());
        {
            let mut d = self.deleting_lock();
            let set = d.entry(key.clone()).or_default();
            set.clear();
            set.extend(victims.iter().filter_map(|p| p.metadata.uid.clone()));
        }
        let results = join_all(victims.iter().map(|p| async move {
            let name = p.metadata.name.clone().unwrap_or_default();
            let r = podcontrol::delete(
                &self.client,
                key.namespace(),
                &name,
                p.metadata.uid.as_deref(),
            )
            .await;
            (*p, name, r)
        }))
        .await;
        let mut failed = None;
        for (pod, name, r) in results {
            match r {
                Ok(()) => {
                    self.recorder
                        .normal(obj, "SuccessfulDelete", format!("Deleted pod: {name}"))
                }
                Err(e) => {
                    self.deletion_seen(key, pod);
                    let message = error_message(&e);
                    self.recorder.warning(
                        obj,
                        "FailedDelete",
                        format!("Error deleting: {message}"),
                    );
                    failed = Some(message);
                }
            }
        }
        failed.map(|message| ManageFailure {
            reason: "FailedDelete",
            message,
        })
    }

    async fn write_status(&self, key: &ObjectKey, next: &ReplicaStatus) -> Result<(), Error> {
        let api: Api<K> = Api::namespaced(self.client.clone(), key.namespace());
        let patch = serde_json::json!({ "status": next });
        api.patch_status(&key.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
            .map_err(|source| Error::Status {
                owner: key.clone(),
                source,
            })
    }
}
