//! The StatefulSet controller: pods with stable identities `<set>-<ordinal>`, each with
//! its own PersistentVolumeClaims from `volumeClaimTemplates` (created before the pod),
//! started in order one at a time (OrderedReady) or all at once (Parallel), removed from
//! the highest ordinal down, and updated from the highest ordinal down to the partition
//! (RollingUpdate) or only when deleted (OnDelete). Template history is kept in
//! ControllerRevisions.

mod decide;
pub mod revision;

pub use decide::{
    claim_name, claims_for, decide, ordinal_of, pod_for, Input, Plan, Rev, POD_INDEX_LABEL,
    POD_NAME_LABEL,
};

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, PostParams};
use kube::Api;
use skiff_runtime::events::Recorder;
use skiff_runtime::selector::Selector;
use skiff_runtime::{Informer, ObjectKey, WorkQueue};

use crate::util::{owner, podcontrol};
use crate::{Ctx, Loop};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{verb} {what} of statefulset {key}: {source}")]
    Api {
        verb: &'static str,
        what: String,
        key: ObjectKey,
        #[source]
        source: kube::Error,
    },
    #[error("statefulset {key}: revision {name} exists with other data; collision count raised")]
    Collision { key: ObjectKey, name: String },
}

struct State {
    client: kube::Client,
    sets: Informer<StatefulSet>,
    pods: Informer<Pod>,
    revisions: Informer<ControllerRevision>,
    claims: Informer<PersistentVolumeClaim>,
    recorder: Recorder,
}

pub fn controller(ctx: &Ctx) -> Loop {
    let sets = ctx.informers.informer::<StatefulSet>();
    let pods = ctx.informers.informer::<Pod>();
    let revisions = ctx.informers.informer::<ControllerRevision>();
    let claims = ctx.informers.informer::<PersistentVolumeClaim>();
    owner::index_by_controller(&pods);
    owner::index_by_controller(&revisions);
    let queue = WorkQueue::new("statefulset", ctx.settings.max_retry_delay);
    let q = queue.clone();
    sets.on_change(move |c| q.add(ObjectKey::of(c.object().as_ref())));
    let q = queue.clone();
    pods.on_change(move |c| {
        if let Some(k) = owner::controller_key(&c.object().metadata, "apps", "StatefulSet") {
            q.add(k);
        }
    });
    let q = queue.clone();
    revisions.on_change(move |c| {
        if let Some(k) = owner::controller_key(&c.object().metadata, "apps", "StatefulSet") {
            q.add(k);
        }
    });
    let state = Arc::new(State {
        client: ctx.client.clone(),
        sets,
        pods,
        revisions,
        claims,
        recorder: ctx.recorder("statefulset-controller"),
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
        let Some(set) = self.sets.get(&key) else {
            return Ok(None);
        };
        if set.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let uid = set.metadata.uid.clone().unwrap_or_default();
        let spec = set.spec.clone().unwrap_or_default();
        let Ok(selector) = Selector::new(Some(&spec.selector)) else {
            return Ok(None);
        };
        let pods: Vec<Arc<Pod>> = owner::controlled_by(&self.pods, "apps", "StatefulSet", &key)
            .into_iter()
            .filter(|p| owner::is_controlled_by(&p.metadata, &uid))
            .filter(|p| selector.matches(p.metadata.labels.as_ref()))
            .collect();
        let revisions: Vec<Arc<ControllerRevision>> =
            owner::controlled_by(&self.revisions, "apps", "StatefulSet", &key)
                .into_iter()
                .filter(|r| owner::is_controlled_by(&r.metadata, &uid))
                .collect();

        let update_rev = self.update_revision(&key, &set, &revisions).await?;
        let update = Rev {
            hash: update_rev.metadata.name.clone().unwrap_or_default(),
            template: spec.template.clone(),
        };
        let current = set
            .status
            .as_ref()
            .and_then(|s| s.current_revision.as_deref())
            .and_then(|name| {
                revisions
                    .iter()
                    .find(|r| r.metadata.name.as_deref() == Some(name))
                    .and_then(|r| revision::template_of(r))
                    .map(|template| Rev {
                        hash: name.to_string(),
                        template,
                    })
            })
            .unwrap_or_else(|| update.clone());
        let claims: BTreeSet<String> = self
            .claims
            .list_namespace(key.namespace())
            .iter()
            .filter_map(|c| c.metadata.name.clone())
            .collect();
        let plan = decide(&Input {
            set: &set,
            pods: &pods,
            current: &current,
            update: &update,
            claims: &claims,
            now: Timestamp::now(),
        });

        let set_name = key.name.clone();
        let claim_api: Api<PersistentVolumeClaim> =
            Api::namespaced(self.client.clone(), key.namespace());
        for c in &plan.create_claims {
            let name = c.metadata.name.clone().unwrap_or_default();
            let pod = plan
                .create_pods
                .iter()
                .filter_map(|p| p.metadata.name.clone())
                .find(|p| name.ends_with(&format!("-{p}")))
                .unwrap_or_default();
            match claim_api.create(&PostParams::default(), c).await {
                Ok(_) => self.recorder.normal(
                    set.as_ref(),
                    "SuccessfulCreate",
                    format!("create Claim {name} Pod {pod} in StatefulSet {set_name} success"),
                ),
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => {
                    self.recorder.warning(
                        set.as_ref(),
                        "FailedCreate",
                        format!("create Claim {name} for Pod {pod} in StatefulSet {set_name} failed error: {e}"),
                    );
                    return Err(api_err("creating claim", name, &key)(e));
                }
            }
        }
        for p in &plan.create_pods {
            let name = p.metadata.name.clone().unwrap_or_default();
            match podcontrol::create(&self.client, p).await {
                Ok(_) => self.recorder.normal(
                    set.as_ref(),
                    "SuccessfulCreate",
                    format!("create Pod {name} in StatefulSet {set_name} successful"),
                ),
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => {
                    self.recorder.warning(
                        set.as_ref(),
                        "FailedCreate",
                        format!("create Pod {name} in StatefulSet {set_name} failed error: {e}"),
                    );
                    return Err(api_err("creating pod", name, &key)(e));
                }
            }
        }
        for (name, uid) in &plan.delete_pods {
            match podcontrol::delete(&self.client, key.namespace(), name, uid.as_deref()).await {
                Ok(()) => self.recorder.normal(
                    set.as_ref(),
                    "SuccessfulDelete",
                    format!("delete Pod {name} in StatefulSet {set_name} successful"),
                ),
                Err(e) => {
                    self.recorder.warning(
                        set.as_ref(),
                        "FailedDelete",
                        format!("delete Pod {name} in StatefulSet {set_name} failed error: {e}"),
                    );
                    return Err(api_err("deleting pod", name.clone(), &key)(e));
                }
            }
        }
        for name in &plan.delete_claims {
            match claim_api.delete(name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(api_err("deleting claim", name.clone(), &key)(e)),
            }
        }

        if set.status.as_ref() != Some(&plan.status) {
            let mut next = (*set).clone();
            next.status = Some(plan.status.clone());
            let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), key.namespace());
            api.replace_status(&key.name, &PostParams::default(), &next)
                .await
                .map_err(api_err("writing status", "", &key))?;
        }
        self.prune(&key, &set, &revisions, &pods, &plan).await?;
        Ok(plan.requeue)
    }

    /// The revision of the current template, created if new.
    async fn update_revision(
        &self,
        key: &ObjectKey,
        set: &StatefulSet,
        revisions: &[Arc<ControllerRevision>],
    ) -> Result<ControllerRevision, Error> {
        let spec = set.spec.clone().unwrap_or_default();
        let collisions = set
            .status
            .as_ref()
            .and_then(|s| s.collision_count)
            .unwrap_or(0);
        let found = revision::find_or_build(
            &key.name,
            key.namespace(),
            owner::controller_ref(set),
            &spec.selector.match_labels.clone().unwrap_or_default(),
            &spec.template,
            revisions,
            collisions,
        );
        let new = match found {
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
        let mut next = set.clone();
        next.status
            .get_or_insert_with(Default::default)
            .collision_count = Some(collisions + 1);
        let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), key.namespace());
        api.replace_status(&key.name, &PostParams::default(), &next)
            .await
            .map_err(api_err("writing status", "", key))?;
        Err(Error::Collision {
            key: key.clone(),
            name,
        })
    }

    /// Keeps at most `revisionHistoryLimit` (default 10) revisions nothing uses.
    async fn prune(
        &self,
        key: &ObjectKey,
        set: &StatefulSet,
        revisions: &[Arc<ControllerRevision>],
        pods: &[Arc<Pod>],
        plan: &Plan,
    ) -> Result<(), Error> {
        let limit = set
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(10)
            .max(0) as usize;
        let mut live = revision::pod_hashes(pods);
        live.extend(plan.status.current_revision.clone());
        live.extend(plan.status.update_revision.clone());
        revision::prune(&self.client, key.namespace(), revisions, &live, limit)
            .await
            .map_err(|(verb, what, e)| api_err(verb, what, key)(e))
    }
}
