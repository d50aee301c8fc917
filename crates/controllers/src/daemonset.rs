//! The DaemonSet controller: one pod on every eligible node (nodeSelector, required node
//! affinity, taints against tolerations plus the daemon defaults), each pinned to its
//! node by a required `metadata.name` affinity term for the scheduler to honour; pods on
//! nodes that stop being eligible are removed; template changes roll out with
//! maxUnavailable / maxSurge (RollingUpdate) or wait for deletion (OnDelete). Template
//! history is kept in ControllerRevisions.

mod decide;
pub mod eligibility;

pub use decide::{decide, pod_for, Input, Plan, TEMPLATE_GENERATION_LABEL};

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::Api;
use skiff_runtime::events::Recorder;
use skiff_runtime::selector::Selector;
use skiff_runtime::{Informer, ObjectKey, WorkQueue};

use crate::statefulset::revision;
use crate::util::expectations::Expectations;
use crate::util::{owner, podcontrol};
use crate::{Ctx, Loop};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{verb} {what} of daemonset {key}: {source}")]
    Api {
        verb: &'static str,
        what: String,
        key: ObjectKey,
        #[source]
        source: kube::Error,
    },
    #[error("daemonset {key}: revision {name} exists with other data; collision count raised")]
    Collision { key: ObjectKey, name: String },
}

/// The DaemonSet controlling an object (pod or revision), if one does.
fn owner_key(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<ObjectKey> {
    owner::controller_key(meta, "apps", "DaemonSet")
}

struct State {
    client: kube::Client,
    sets: Informer<DaemonSet>,
    nodes: Informer<Node>,
    pods: Informer<Pod>,
    revisions: Informer<ControllerRevision>,
    expectations: Expectations<ObjectKey>,
    recorder: Recorder,
}

pub fn controller(ctx: &Ctx) -> Loop {
    let sets = ctx.informers.informer::<DaemonSet>();
    let nodes = ctx.informers.informer::<Node>();
    let pods = ctx.informers.informer::<Pod>();
    let revisions = ctx.informers.informer::<ControllerRevision>();
    owner::index_by_controller(&pods);
    owner::index_by_controller(&revisions);
    let queue = WorkQueue::new("daemonset", ctx.settings.max_retry_delay);
    let state = Arc::new(State {
        client: ctx.client.clone(),
        sets: sets.clone(),
        nodes: nodes.clone(),
        pods: pods.clone(),
        revisions: revisions.clone(),
        expectations: Expectations::default(),
        recorder: ctx.recorder("daemonset-controller"),
    });
    let q = queue.clone();
    sets.on_change(move |c| q.add(ObjectKey::of(c.object().as_ref())));
    // A node change can make any DaemonSet want (or not want) a pod there.
    let q = queue.clone();
    let all = sets.clone();
    nodes.on_change(move |c| {
        let relevant = match (&c.old, &c.new) {
            (Some(o), Some(n)) => o.metadata.labels != n.metadata.labels || o.spec != n.spec,
            _ => true,
        };
        if relevant {
            for ds in all.list() {
                q.add(ObjectKey::of(ds.as_ref()));
            }
        }
    });
    let s = state.clone();
    let q = queue.clone();
    pods.on_change(move |c| {
        let Some(key) = owner_key(&c.object().metadata) else {
            return;
        };
        let was_deleting = c
            .old
            .as_ref()
            .is_some_and(|p| p.metadata.deletion_timestamp.is_some());
        match (&c.old, &c.new) {
            (None, Some(_)) => s.expectations.creation_observed(&key),
            (Some(_), Some(p)) if p.metadata.deletion_timestamp.is_some() && !was_deleting => {
                s.expectations.deletion_observed(&key)
            }
            (Some(_), None) if !was_deleting => s.expectations.deletion_observed(&key),
            _ => {}
        }
        q.add(key);
    });
    let q = queue.clone();
    revisions.on_change(move |c| {
        if let Some(k) = owner_key(&c.object().metadata) {
            q.add(k);
        }
    });
    ctx.run_workers(queue, ctx.settings.workers, state, |s, key| async move {
        s.reconcile(key).await
    })
}

fn api_err(
    verb: &'static str,
    what: impl Into<String>,
    key: &ObjectKey,
) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    let key = key.clone();
    move |source| Error::Api {
        verb,
        what,
        key,
        source,
    }
}

impl State {
    async fn reconcile(&self, key: ObjectKey) -> Result<Option<Duration>, Error> {
        let Some(ds) = self.sets.get(&key) else {
            self.expectations.forget(&key);
            return Ok(None);
        };
        if ds.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let uid = ds.metadata.uid.clone().unwrap_or_default();
        let spec = ds.spec.clone().unwrap_or_default();
        let Ok(selector) = Selector::new(Some(&spec.selector)) else {
            return Ok(None);
        };
        let pods: Vec<Arc<Pod>> = owner::controlled_by(&self.pods, "apps", "DaemonSet", &key)
            .into_iter()
            .filter(|p| owner::is_controlled_by(&p.metadata, &uid))
            .filter(|p| selector.matches(p.metadata.labels.as_ref()))
            .collect();
        let revisions: Vec<Arc<ControllerRevision>> =
            owner::controlled_by(&self.revisions, "apps", "DaemonSet", &key)
                .into_iter()
                .filter(|r| owner::is_controlled_by(&r.metadata, &uid))
                .collect();
        let rev = self.current_revision(&key, &ds, &revisions).await?;
        let hash = revision::hash_of(&rev);
        let nodes = self.nodes.list();
        let settled = self.expectations.satisfied(&key);
        let plan = decide(&Input {
            ds: &ds,
            nodes: &nodes,
            pods: &pods,
            hash: &hash,
            settled,
            now: Timestamp::now(),
        });
        for e in &plan.events {
            if e.warning {
                self.recorder
                    .warning(ds.as_ref(), e.reason, e.message.clone());
            } else {
                self.recorder
                    .normal(ds.as_ref(), e.reason, e.message.clone());
            }
        }
        if !plan.create.is_empty() || !plan.delete.is_empty() {
            self.expectations
                .expect(&key, plan.create.len(), plan.delete.len());
        }
        let mut first_error = None;
        for (name, pod_uid) in &plan.delete {
            match podcontrol::delete(&self.client, key.namespace(), name, pod_uid.as_deref()).await
            {
                Ok(()) => self.recorder.normal(
                    ds.as_ref(),
                    "SuccessfulDelete",
                    format!("Deleted pod: {name}"),
                ),
                Err(e) => {
                    self.expectations.deletion_observed(&key);
                    first_error.get_or_insert(api_err("deleting pod", name.clone(), &key)(e));
                }
            }
        }
        let creates = plan.create.iter().map(|node| {
            let pod = pod_for(&ds, &hash, node);
            async move { (node, podcontrol::create(&self.client, &pod).await) }
        });
        for (node, result) in futures::future::join_all(creates).await {
            match result {
                Ok(Some(p)) => self.recorder.normal(
                    ds.as_ref(),
                    "SuccessfulCreate",
                    format!("Created pod: {}", p.metadata.name.unwrap_or_default()),
                ),
                Ok(None) => self.expectations.creation_observed(&key),
                Err(e) => {
                    self.expectations.creation_observed(&key);
                    self.recorder.warning(
                        ds.as_ref(),
                        "FailedCreate",
                        format!("Error creating: {e}"),
                    );
                    first_error
                        .get_or_insert(api_err("creating pod for node", node.clone(), &key)(e));
                }
            }
        }
        if ds.status.as_ref() != Some(&plan.status) {
            let mut next = (*ds).clone();
            next.status = Some(plan.status.clone());
            let api: Api<DaemonSet> = Api::namespaced(self.client.clone(), key.namespace());
            api.replace_status(&key.name, &PostParams::default(), &next)
                .await
                .map_err(api_err("writing status", "", &key))?;
        }
        self.prune(&key, &ds, &revisions, &pods, &hash).await?;
        match first_error {
            Some(e) => Err(e),
            None => Ok(plan.requeue),
        }
    }

    async fn current_revision(
        &self,
        key: &ObjectKey,
        ds: &DaemonSet,
        revisions: &[Arc<ControllerRevision>],
    ) -> Result<ControllerRevision, Error> {
        let spec = ds.spec.clone().unwrap_or_default();
        let collisions = ds
            .status
            .as_ref()
            .and_then(|s| s.collision_count)
            .unwrap_or(0);
        let new = match revision::find_or_build(
            &key.name,
            key.namespace(),
            owner::controller_ref(ds),
            &spec.selector.match_labels.clone().unwrap_or_default(),
            &spec.template,
            revisions,
            collisions,
        ) {
            revision::Found::Existing(r) => return Ok((*r).clone()),
            revision::Found::New(r) => r,
        };
        let name = match revision::create(&self.client, key.namespace(), &new)
            .await
            .map_err(|(verb, what, e)| api_err(verb, what, key)(e))?
        {
            revision::Created::Revision(r) => return Ok(*r),
            revision::Created::Collision(name) => name,
        };
        // A hash collision: count it so the next name differs.
        let mut next = ds.clone();
        next.status
            .get_or_insert_with(Default::default)
            .collision_count = Some(collisions + 1);
        let api: Api<DaemonSet> = Api::namespaced(self.client.clone(), key.namespace());
        api.replace_status(&key.name, &PostParams::default(), &next)
            .await
            .map_err(api_err("writing status", "", key))?;
        Err(Error::Collision {
            key: key.clone(),
            name,
        })
    }

    /// Keeps at most `revisionHistoryLimit` (default 10) revisions no pod uses.
    async fn prune(
        &self,
        key: &ObjectKey,
        ds: &DaemonSet,
        revisions: &[Arc<ControllerRevision>],
        pods: &[Arc<Pod>],
        hash: &str,
    ) -> Result<(), Error> {
        let limit = ds
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(10)
            .max(0) as usize;
        let mut live = revision::pod_hashes(pods);
        live.push(hash.to_string());
        revision::prune(&self.client, key.namespace(), revisions, &live, limit)
            .await
            .map_err(|(verb, what, e)| api_err(verb, what, key)(e))
    }
}
