//! The Deployment loop (upstream v1.33 semantics): each Deployment owns one ReplicaSet
//! per pod template, told apart by the pod-template-hash label. A pass claims the
//! ReplicaSets the selector matches, finds or creates the one for the current template
//! (raising its revision: a rollback reuses the old ReplicaSet under a new revision),
//! then either follows a resize proportionally (also while paused), or rolls out:
//! RollingUpdate within maxSurge/maxUnavailable, or Recreate (old to zero, wait for
//! their pods to be gone, then the new one). Status carries the counts, Available and
//! Progressing (with the progress deadline), and observedGeneration; old zero-sized
//! ReplicaSets beyond revisionHistoryLimit are deleted.
//!
//! The decisions live in pure modules ([`util`], [`rollout`], [`status`], [`hash`]);
//! this file is the IO around them.

pub mod hash;
pub mod rollout;
pub mod status;
pub mod util;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::Api;
use serde_json::{json, Value};
use skiff_runtime::events::Recorder;
use skiff_runtime::selector::Selector;
use skiff_runtime::{Change, Informer, ObjectKey, WorkQueue};

use crate::replicaset::error_message;
use crate::util::{owner, pods};
use crate::{Ctx, Loop};
use rollout::Step;
use util::{name, spec_replicas, Params};

const COMPONENT: &str = "deployment-controller";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action} for deployment {deployment}: {source}")]
    Api {
        deployment: ObjectKey,
        action: String,
        #[source]
        source: kube::Error,
    },
    #[error("deployment {deployment}: {message}")]
    State {
        deployment: ObjectKey,
        message: String,
    },
}

struct State {
    client: kube::Client,
    deployments: Informer<Deployment>,
    replicasets: Informer<ReplicaSet>,
    pods: Informer<Pod>,
    queue: WorkQueue<ObjectKey>,
    recorder: Recorder,
}

pub fn controller(ctx: &Ctx) -> Loop {
    let deployments = ctx.informers.informer::<Deployment>();
    let replicasets = ctx.informers.informer::<ReplicaSet>();
    let pods = ctx.informers.informer::<Pod>();
    let queue = WorkQueue::new(COMPONENT, ctx.settings.max_retry_delay);
    let state = Arc::new(State {
        client: ctx.client.clone(),
        deployments: deployments.clone(),
        replicasets: replicasets.clone(),
        pods: pods.clone(),
        queue: queue.clone(),
        recorder: ctx.recorder(COMPONENT),
    });
    {
        let q = queue.clone();
        deployments
            .on_change(move |c: &Change<Deployment>| q.add(ObjectKey::of(c.object().as_ref())));
    }
    {
        let s = state.clone();
        replicasets.on_change(move |c: &Change<ReplicaSet>| s.replicaset_changed(c));
    }
    {
        let s = state.clone();
        pods.on_change(move |c: &Change<Pod>| {
            // A pod gone may unblock Recreate (it waits for old pods to disappear).
            if c.is_delete() {
                s.pod_deleted(c.object());
            }
        });
    }
    ctx.run_workers(queue, ctx.settings.workers, state, |s, key| async move {
        s.reconcile(key).await
    })
}

fn selector_of(d: &Deployment) -> Result<Selector, String> {
    Selector::new(d.spec.as_ref().map(|s| &s.selector))
}

impl State {
    fn owner_key(&self, meta: &ObjectMeta) -> Option<ObjectKey> {
        let r = owner::controller_of(meta)?;
        (r.kind == "Deployment").then(|| ObjectKey::new(meta.namespace.as_deref(), &r.name))
    }

    fn replicaset_changed(&self, c: &Change<ReplicaSet>) {
        let mut keys = HashSet::new();
        for rs in c.old.iter().chain(c.new.iter()) {
            keys.extend(self.owner_key(&rs.metadata));
        }
        if let Some(new) = &c.new {
            if owner::controller_of(&new.metadata).is_none() {
                // An orphan: any Deployment that selects it may adopt it.
                let ns = new.metadata.namespace.as_deref().unwrap_or("");
                for d in self.deployments.list_namespace(ns) {
                    if selector_of(&d).is_ok_and(|s| s.matches(new.metadata.labels.as_ref())) {
                        keys.insert(ObjectKey::of(d.as_ref()));
                    }
                }
            }
        }
        for k in keys {
            self.queue.add(k);
        }
    }

    fn pod_deleted(&self, pod: &Pod) {
        let Some(r) = owner::controller_of(&pod.metadata) else {
            return;
        };
        if r.kind != "ReplicaSet" {
            return;
        }
        if let Some(rs) = self
            .replicasets
            .get_named(pod.metadata.namespace.as_deref(), &r.name)
        {
            if let Some(k) = self.owner_key(&rs.metadata) {
                self.queue.add(k);
            }
        }
    }

    async fn reconcile(self: Arc<Self>, key: ObjectKey) -> Result<Option<Duration>, Error> {
        let Some(d) = self.deployments.get(&key) else {
            return Ok(None);
        };
        let d = (*d).clone();
        let selector = match selector_of(&d) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%key, "invalid selector: {e}");
                return Ok(None);
            }
        };
        let mut sync = Sync {
            state: &self,
            key: key.clone(),
            p: Params::of(&d).map_err(|message| Error::State {
                deployment: key.clone(),
                message,
            })?,
            d,
            rss: Vec::new(),
            now: Timestamp::now(),
        };
        if selector.selects_everything() {
            self.recorder.warning(
                &sync.d,
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.",
            );
            let observed = sync.d.status.as_ref().and_then(|s| s.observed_generation);
            if observed < sync.d.metadata.generation {
                let mut s = sync.d.status.clone().unwrap_or_default();
                s.observed_generation = sync.d.metadata.generation;
                sync.write_status(s).await?;
            }
            return Ok(None);
        }
        sync.rss = self.claim(&sync.d, &key, &selector).await?;
        sync.run().await
    }

    /// The ReplicaSets this Deployment controls after adopting matching orphans and
    /// releasing owned ones that no longer match (upstream's ClaimReplicaSets).
    async fn claim(
        &self,
        d: &Deployment,
        key: &ObjectKey,
        selector: &Selector,
    ) -> Result<Vec<ReplicaSet>, Error> {
        let uid = d.metadata.uid.clone().unwrap_or_default();
        let deleting = d.metadata.deletion_timestamp.is_some();
        let mut owned = Vec::new();
        let mut can_adopt: Option<bool> = None;
        for rs in self.replicasets.list_namespace(key.namespace()) {
            let matches = selector.matches(rs.metadata.labels.as_ref());
            match owner::controller_of(&rs.metadata) {
                Some(r) if r.uid != uid => {}
                Some(_) if matches => owned.push((*rs).clone()),
                Some(_) if deleting => {}
                Some(_) => {
                    let mut refs = rs.metadata.owner_references.clone().unwrap_or_default();
                    refs.retain(|r| r.uid != uid);
                    self.patch_owners(key, &rs, refs).await?;
                }
                None if deleting || !matches || rs.metadata.deletion_timestamp.is_some() => {}
                None => {
                    if can_adopt.is_none() {
                        let api: Api<Deployment> =
                            Api::namespaced(self.client.clone(), key.namespace());
                        can_adopt = Some(api.get(&key.name).await.is_ok_and(|fresh| {
                            fresh.metadata.uid.as_deref() == Some(uid.as_str())
                                && fresh.metadata.deletion_timestamp.is_none()
                        }));
                    }
                    if can_adopt != Some(true) {
                        continue;
                    }
                    let mut refs = rs.metadata.owner_references.clone().unwrap_or_default();
                    refs.push(owner::controller_ref(d));
                    if let Some(adopted) = self.patch_owners(key, &rs, refs).await? {
                        owned.push(adopted);
                    }
                }
            }
        }
        Ok(owned)
    }

    async fn patch_owners(
        &self,
        key: &ObjectKey,
        rs: &ReplicaSet,
        refs: Vec<OwnerReference>,
    ) -> Result<Option<ReplicaSet>, Error> {
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), key.namespace());
        let patch = json!({"metadata": {
            "resourceVersion": rs.metadata.resource_version,
            "ownerReferences": if refs.is_empty() { Value::Null } else { json!(refs) },
        }});
        match api
            .patch(name(rs), &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(r) => Ok(Some(r)),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
            Err(source) => Err(Error::Api {
                deployment: key.clone(),
                action: format!("claiming replica set {}", name(rs)),
                source,
            }),
        }
    }
}

/// One pass over one Deployment: its working copy and its ReplicaSets, updated as
/// writes succeed so later steps of the pass see them.
struct Sync<'a> {
    state: &'a State,
    key: ObjectKey,
    d: Deployment,
    p: Params,
    rss: Vec<ReplicaSet>,
    now: Timestamp,
}

/// Indexes into `Sync::rss`: the new ReplicaSet (if any) and the old ones.
struct Split {
    new: Option<usize>,
    old: Vec<usize>,
}

/// Every status key, so a merge patch clears the ones now absent.
const STATUS_KEYS: &[&str] = &[
    "observedGeneration",
    "replicas",
    "updatedReplicas",
    "readyReplicas",
    "availableReplicas",
    "unavailableReplicas",
    "terminatingReplicas",
    "conditions",
    "collisionCount",
];

impl Sync<'_> {
    fn api_err(&self, action: String) -> impl FnOnce(kube::Error) -> Error + '_ {
        move |source| Error::Api {
            deployment: self.key.clone(),
            action,
            source,
        }
    }

    fn paused(&self) -> bool {
        self.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false)
    }

    fn refs(&self, idx: &[usize]) -> Vec<&ReplicaSet> {
        idx.iter().map(|i| &self.rss[*i]).collect()
    }

    fn all(&self, split: &Split) -> Vec<&ReplicaSet> {
        let mut all = self.refs(&split.old);
        all.extend(split.new.map(|i| &self.rss[i]));
        all
    }

    async fn run(&mut self) -> Result<Option<Duration>, Error> {
        if self.d.metadata.deletion_timestamp.is_some() {
            let split = self.get_all(false).await?;
            self.sync_status(&split).await?;
            return Ok(None);
        }
        if let Some(s) = status::paused_condition(&self.d, self.now) {
            self.write_status(s).await?;
        }
        if self.paused() || self.is_scaling_event().await? {
            return self.sync_scale().await;
        }
        if self.p.rolling {
            self.rolling().await
        } else {
            self.recreate().await
        }
    }

    /// A resize rather than a template change: some active ReplicaSet was sized for
    /// another spec.replicas.
    async fn is_scaling_event(&mut self) -> Result<bool, Error> {
        let split = self.get_all(false).await?;
        let all = self.all(&split);
        Ok(util::active(&all)
            .iter()
            .any(|rs| util::desired_replicas_annotation(rs).is_some_and(|n| n != self.p.replicas)))
    }

    /// Upstream's sync(): follow a resize; while paused also clean up history.
    async fn sync_scale(&mut self) -> Result<Option<Duration>, Error> {
        let split = self.get_all(false).await?;
        let status_replicas = self.d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let steps = rollout::scale(
            &self.p,
            status_replicas,
            split.new.map(|i| &self.rss[i]),
            &self.refs(&split.old),
        );
        self.apply(&steps).await?;
        if self.paused() {
            self.cleanup(&split).await?;
        }
        self.sync_status(&split).await?;
        Ok(None)
    }

    async fn rolling(&mut self) -> Result<Option<Duration>, Error> {
        let split = self.get_all(true).await?;
        let Some(new) = split.new else {
            return self.rollout_status(&split).await;
        };
        let all = self.all(&split);
        if let Some(step) = rollout::reconcile_new(&self.p, &all, &self.rss[new]) {
            self.apply(&[step]).await?;
            return self.rollout_status(&split).await;
        }
        let old = self.refs(&split.old);
        let steps = rollout::reconcile_old(&self.p, &all, &util::active(&old), &self.rss[new]);
        if !steps.is_empty() {
            self.apply(&steps).await?;
            return self.rollout_status(&split).await;
        }
        if self
            .d
            .status
            .as_ref()
            .is_some_and(|s| status::complete(&self.d, s))
        {
            self.cleanup(&split).await?;
        }
        self.rollout_status(&split).await
    }

    async fn recreate(&mut self) -> Result<Option<Duration>, Error> {
        let mut split = self.get_all(false).await?;
        let old = self.refs(&split.old);
        let steps = rollout::recreate_scale_down(&util::active(&old));
        if !steps.is_empty() {
            self.apply(&steps).await?;
            return self.rollout_status(&split).await;
        }
        if self.old_pods_running(&split) {
            return self.rollout_status(&split).await;
        }
        if split.new.is_none() {
            split = self.get_all(true).await?;
        }
        if let Some(new) = split.new {
            let step = Step {
                name: name(&self.rss[new]).to_string(),
                to: self.p.replicas,
                op: None,
            };
            self.apply(&[step]).await?;
        }
        if self
            .d
            .status
            .as_ref()
            .is_some_and(|s| status::complete(&self.d, s))
        {
            self.cleanup(&split).await?;
        }
        self.rollout_status(&split).await
    }

    /// Recreate waits until no pod of an old ReplicaSet is left running (terminating
    /// pods count: they may still serve).
    fn old_pods_running(&self, split: &Split) -> bool {
        let old = self.refs(&split.old);
        if util::sum(&old, util::status_replicas) > 0 {
            return true;
        }
        let uids: HashSet<&str> = old
            .iter()
            .filter_map(|rs| rs.metadata.uid.as_deref())
            .collect();
        self.state
            .pods
            .list_namespace(self.key.namespace())
            .iter()
            .filter(|p| {
                owner::controller_of(&p.metadata).is_some_and(|r| uids.contains(r.uid.as_str()))
            })
            .any(|p| !pods::is_terminal(p))
    }

    /// Finds the new ReplicaSet (syncing its revision and annotations) or, when asked,
    /// creates it (upstream's getAllReplicaSetsAndSyncRevision).
    async fn get_all(&mut self, create: bool) -> Result<Split, Error> {
        let template = self
            .d
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        let refs: Vec<&ReplicaSet> = self.rss.iter().collect();
        let new_name = util::find_new(&template, &refs).map(|rs| name(rs).to_string());
        let new = new_name.and_then(|n| self.rss.iter().position(|rs| name(rs) == n));
        let old: Vec<usize> = (0..self.rss.len()).filter(|i| Some(*i) != new).collect();
        let max_old = old
            .iter()
            .map(|i| util::revision(&self.rss[*i]))
            .max()
            .unwrap_or(0);
        let new_revision = max_old + 1;
        let min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds);
        if let Some(i) = new {
            let mut rs = self.rss[i].clone();
            let changed =
                util::set_new_rs_annotations(&self.d, &mut rs, &self.p, new_revision, true);
            let spec = rs.spec.get_or_insert_with(Default::default);
            let min_ready_changed = spec.min_ready_seconds.unwrap_or(0) != min_ready.unwrap_or(0);
            if changed || min_ready_changed {
                spec.min_ready_seconds = min_ready;
                self.rss[i] = self.replace_rs(&rs).await?;
            }
            let revision = util::annotation(&self.rss[i], util::REVISION).map(str::to_string);
            if let Some(r) = revision {
                self.sync_deployment_revision(&r).await?;
            }
            let s = self.d.status.clone().unwrap_or_default();
            if status::progress_deadline(&self.d).is_some()
                && status::get(&s, status::PROGRESSING).is_none()
            {
                let mut s = s;
                let msg = format!("Found new replica set \"{}\"", name(&self.rss[i]));
                status::set(
                    &mut s,
                    status::condition(
                        status::PROGRESSING,
                        "True",
                        status::FOUND_NEW_RS,
                        msg,
                        self.now,
                    ),
                );
                self.write_status(s).await?;
            }
            return Ok(Split { new: Some(i), old });
        }
        if !create {
            return Ok(Split { new: None, old });
        }
        let i = self.create_new(&template, &old, new_revision).await?;
        Ok(Split { new: Some(i), old })
    }

    async fn create_new(
        &mut self,
        template: &k8s_openapi::api::core::v1::PodTemplateSpec,
        old: &[usize],
        new_revision: i64,
    ) -> Result<usize, Error> {
        let collision = self.d.status.as_ref().and_then(|s| s.collision_count);
        let hash = hash::compute(template, collision);
        let mut tpl = template.clone();
        tpl.metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(Default::default)
            .insert(util::HASH_LABEL.into(), hash.clone());
        let mut selector = self
            .d
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        selector
            .match_labels
            .get_or_insert_with(Default::default)
            .insert(util::HASH_LABEL.into(), hash.clone());
        let rs_name = format!("{}-{}", self.key.name, hash);
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(rs_name.clone()),
                namespace: Some(self.key.namespace().to_string()),
                owner_references: Some(vec![owner::controller_ref(&self.d)]),
                labels: tpl.metadata.as_ref().and_then(|m| m.labels.clone()),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: self.d.spec.as_ref().and_then(|s| s.min_ready_seconds),
                selector,
                template: Some(tpl),
            }),
            status: None,
        };
        let mut all = self.refs(old);
        all.push(&rs);
        let replicas = rollout::new_rs_new_replicas(&self.p, &all, &rs);
        if let Some(spec) = rs.spec.as_mut() {
            spec.replicas = Some(replicas);
        }
        util::set_new_rs_annotations(&self.d, &mut rs, &self.p, new_revision, false);
        let api: Api<ReplicaSet> = Api::namespaced(self.state.client.clone(), self.key.namespace());
        let (created, already) = match api.create(&PostParams::default(), &rs).await {
            Ok(c) => (c, false),
            Err(kube::Error::Api(s)) if s.reason == "AlreadyExists" => {
                let existing = api
                    .get(&rs_name)
                    .await
                    .map_err(self.api_err(format!("reading replica set {rs_name}")))?;
                let ours = owner::is_controlled_by(
                    &existing.metadata,
                    self.d.metadata.uid.as_deref().unwrap_or(""),
                );
                let same = existing
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .is_some_and(|t| util::equal_ignore_hash(t, template));
                if !(ours && same) {
                    // A hash collision: another template owns the name. Count it so the
                    // next hash differs.
                    let mut s = self.d.status.clone().unwrap_or_default();
                    s.collision_count = Some(s.collision_count.unwrap_or(0) + 1);
                    self.write_status(s).await?;
                    return Err(Error::State {
                        deployment: self.key.clone(),
                        message: format!("hash collision on replica set {rs_name}"),
                    });
                }
                (existing, true)
            }
            Err(e) => {
                if status::progress_deadline(&self.d).is_some() {
                    let mut s = self.d.status.clone().unwrap_or_default();
                    let msg = format!(
                        "Failed to create new replica set \"{rs_name}\": {}",
                        error_message(&e)
                    );
                    status::set(
                        &mut s,
                        status::condition(
                            status::PROGRESSING,
                            "False",
                            status::FAILED_RS_CREATE,
                            msg,
                            self.now,
                        ),
                    );
                    self.write_status(s).await?;
                }
                return Err(self.api_err(format!("creating replica set {rs_name}"))(e));
            }
        };
        if !already && replicas > 0 {
            self.state.recorder.normal(
                &self.d,
                "ScalingReplicaSet",
                format!("Scaled up replica set {rs_name} from 0 to {replicas}"),
            );
        }
        self.rss.push(created);
        let i = self.rss.len() - 1;
        self.sync_deployment_revision(&new_revision.to_string())
            .await?;
        if !already && status::progress_deadline(&self.d).is_some() {
            let mut s = self.d.status.clone().unwrap_or_default();
            let msg = format!("Created new replica set \"{rs_name}\"");
            status::set(
                &mut s,
                status::condition(
                    status::PROGRESSING,
                    "True",
                    status::NEW_RS_CREATED,
                    msg,
                    self.now,
                ),
            );
            self.write_status(s).await?;
        }
        Ok(i)
    }

    /// The Deployment's revision annotation follows its new ReplicaSet's (what
    /// `kubectl rollout history` and `rollout undo` read).
    async fn sync_deployment_revision(&mut self, revision: &str) -> Result<(), Error> {
        let current = self
            .d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(util::REVISION));
        if current.map(String::as_str) == Some(revision) {
            return Ok(());
        }
        let api: Api<Deployment> = Api::namespaced(self.state.client.clone(), self.key.namespace());
        let patch = json!({"metadata": {"annotations": {util::REVISION: revision}}});
        let updated = api
            .patch(
                &self.key.name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map_err(self.api_err("writing the revision annotation".into()))?;
        self.d.metadata.annotations = updated.metadata.annotations;
        Ok(())
    }

    async fn replace_rs(&self, rs: &ReplicaSet) -> Result<ReplicaSet, Error> {
        let api: Api<ReplicaSet> = Api::namespaced(self.state.client.clone(), self.key.namespace());
        api.replace(name(rs), &PostParams::default(), rs)
            .await
            .map_err(self.api_err(format!("updating replica set {}", name(rs))))
    }

    /// Applies resizes in order (upstream's scaleReplicaSet): size and replica
    /// annotations in one write, and a ScalingReplicaSet event when the size changes.
    async fn apply(&mut self, steps: &[Step]) -> Result<(), Error> {
        for step in steps {
            let Some(i) = self.rss.iter().position(|rs| name(rs) == step.name) else {
                continue;
            };
            let from = spec_replicas(&self.rss[i]);
            let max = self.p.replicas + self.p.max_surge();
            let size_changes = from != step.to;
            let annotations_change =
                util::replicas_annotations_need_update(&self.rss[i], self.p.replicas, max);
            if !size_changes && (step.op.is_none() || !annotations_change) {
                continue;
            }
            let mut rs = self.rss[i].clone();
            if let Some(spec) = rs.spec.as_mut() {
                spec.replicas = Some(step.to);
            }
            util::set_replicas_annotations(&mut rs, self.p.replicas, max);
            self.rss[i] = self.replace_rs(&rs).await?;
            if size_changes {
                let op = step
                    .op
                    .unwrap_or(if from < step.to { "up" } else { "down" });
                self.state.recorder.normal(
                    &self.d,
                    "ScalingReplicaSet",
                    format!(
                        "Scaled {op} replica set {} from {from} to {}",
                        step.name, step.to
                    ),
                );
            }
        }
        Ok(())
    }

    /// Deletes old ReplicaSets beyond revisionHistoryLimit.
    async fn cleanup(&mut self, split: &Split) -> Result<(), Error> {
        let limit = self.d.spec.as_ref().and_then(|s| s.revision_history_limit);
        let doomed = rollout::cleanup(&self.refs(&split.old), limit);
        let api: Api<ReplicaSet> = Api::namespaced(self.state.client.clone(), self.key.namespace());
        for n in doomed {
            let uid = self
                .rss
                .iter()
                .find(|rs| name(rs) == n)
                .and_then(|rs| rs.metadata.uid.clone());
            let params = DeleteParams {
                preconditions: uid.map(|u| Preconditions {
                    uid: Some(u),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match api.delete(&n, &params).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(self.api_err(format!("deleting old replica set {n}"))(e)),
            }
        }
        Ok(())
    }

    /// Counts and Available only (resizes, paused, being deleted).
    async fn sync_status(&mut self, split: &Split) -> Result<(), Error> {
        let s = status::calculate(
            &self.d,
            &self.p,
            &self.all(split),
            split.new.map(|i| &self.rss[i]),
            self.now,
        );
        if !self
            .d
            .status
            .as_ref()
            .is_some_and(|cur| status::same(cur, &s))
        {
            self.write_status(s).await?;
        }
        Ok(())
    }

    /// Counts and conditions after a rollout step, and when to look again for the
    /// progress deadline.
    async fn rollout_status(&mut self, split: &Split) -> Result<Option<Duration>, Error> {
        let s = status::rollout(
            &self.d,
            &self.p,
            &self.all(split),
            split.new.map(|i| &self.rss[i]),
            self.now,
        );
        let requeue = status::requeue_stuck(&self.d, &s, self.now);
        if !self
            .d
            .status
            .as_ref()
            .is_some_and(|cur| status::same(cur, &s))
        {
            self.write_status(s).await?;
        }
        Ok(requeue)
    }

    async fn write_status(&mut self, s: DeploymentStatus) -> Result<(), Error> {
        let mut v = serde_json::to_value(&s).unwrap_or_else(|_| json!({}));
        if let Some(m) = v.as_object_mut() {
            for k in STATUS_KEYS {
                m.entry(k.to_string()).or_insert(Value::Null);
            }
        }
        let api: Api<Deployment> = Api::namespaced(self.state.client.clone(), self.key.namespace());
        api.patch_status(
            &self.key.name,
            &PatchParams::default(),
            &Patch::Merge(&json!({ "status": v })),
        )
        .await
        .map_err(self.api_err("writing status".into()))?;
        self.d.status = Some(s);
        Ok(())
    }
}
