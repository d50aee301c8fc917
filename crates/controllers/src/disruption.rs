//! The disruption controller: keeps each PodDisruptionBudget's status current (see
//! [`status`]) so the API server's eviction subresource can decide from
//! `status.disruptionsAllowed` whether a pod may be evicted now.
//!
//! The expected pod count, when the budget needs it, is the summed scale of the
//! distinct controllers of the selected pods: ReplicationControllers, ReplicaSets (or
//! their Deployment), StatefulSets from the caches, anything else through its `scale`
//! subresource. Pods without a controller are reported (event UnmanagedPods) and left
//! out, as upstream.

pub mod status;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::Api;
use skiff_runtime::events::Recorder;
use skiff_runtime::selector::Selector;
use skiff_runtime::{Informer, ObjectKey, WorkQueue};

use crate::podautoscaler::target;
use crate::util::owner;
use crate::{Ctx, Loop};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("update status of PodDisruptionBudget {key}: {source}")]
    UpdateStatus {
        key: ObjectKey,
        #[source]
        source: kube::Error,
    },
}

struct State {
    client: kube::Client,
    pdbs: Informer<PodDisruptionBudget>,
    pods: Informer<Pod>,
    rcs: Informer<ReplicationController>,
    replicasets: Informer<ReplicaSet>,
    deployments: Informer<Deployment>,
    statefulsets: Informer<StatefulSet>,
    recorder: Recorder,
}

fn selector_of(pdb: &PodDisruptionBudget) -> Result<Selector, String> {
    Selector::new(pdb.spec.as_ref().and_then(|s| s.selector.as_ref()))
}

fn enqueue_namespace(
    pdbs: &Informer<PodDisruptionBudget>,
    queue: &WorkQueue<ObjectKey>,
    ns: Option<&str>,
) {
    for pdb in pdbs.list_namespace(ns.unwrap_or_default()) {
        queue.add(ObjectKey::of(pdb.as_ref()));
    }
}

fn watch_controllers<K: skiff_runtime::informer::Object>(
    informer: &Informer<K>,
    pdbs: &Informer<PodDisruptionBudget>,
    queue: &WorkQueue<ObjectKey>,
) {
    let (q, p) = (queue.clone(), pdbs.clone());
    informer.on_change(move |c| {
        // Only a scale change matters; generation moves with spec changes.
        let changed = match (&c.old, &c.new) {
            (Some(o), Some(n)) => o.meta().generation != n.meta().generation,
            _ => true,
        };
        if changed {
            enqueue_namespace(&p, &q, c.object().meta().namespace.as_deref());
        }
    });
}

pub fn controller(ctx: &Ctx) -> Loop {
    let pdbs = ctx.informers.informer::<PodDisruptionBudget>();
    let pods = ctx.informers.informer::<Pod>();
    let state = Arc::new(State {
        client: ctx.client.clone(),
        pdbs: pdbs.clone(),
        pods: pods.clone(),
        rcs: ctx.informers.informer(),
        replicasets: ctx.informers.informer(),
        deployments: ctx.informers.informer(),
        statefulsets: ctx.informers.informer(),
        recorder: ctx.recorder("controllermanager"),
    });
    let queue = WorkQueue::new("disruption", ctx.settings.max_retry_delay);
    let q = queue.clone();
    pdbs.on_change(move |c| {
        let spec_changed = match (&c.old, &c.new) {
            (Some(o), Some(n)) => {
                o.spec != n.spec || o.metadata.generation != n.metadata.generation
            }
            _ => true,
        };
        // Status changes by the eviction subresource (disruptedPods) matter too.
        let status_changed = match (&c.old, &c.new) {
            (Some(o), Some(n)) => {
                o.status.as_ref().map(|s| &s.disrupted_pods)
                    != n.status.as_ref().map(|s| &s.disrupted_pods)
            }
            _ => false,
        };
        if c.new.is_some() && (spec_changed || status_changed) {
            q.add(ObjectKey::of(c.object().as_ref()));
        }
    });
    let (q, p) = (queue.clone(), pdbs.clone());
    pods.on_change(move |c| {
        let ns = c.object().metadata.namespace.clone().unwrap_or_default();
        for pdb in p.list_namespace(&ns) {
            let Ok(sel) = selector_of(&pdb) else { continue };
            let hit = [c.old.as_deref(), c.new.as_deref()]
                .into_iter()
                .flatten()
                .any(|pod| sel.matches(pod.metadata.labels.as_ref()));
            if hit {
                q.add(ObjectKey::of(pdb.as_ref()));
            }
        }
    });
    watch_controllers(&state.rcs, &pdbs, &queue);
    watch_controllers(&state.replicasets, &pdbs, &queue);
    watch_controllers(&state.deployments, &pdbs, &queue);
    watch_controllers(&state.statefulsets, &pdbs, &queue);
    ctx.run_workers(queue, ctx.settings.workers, state, |s, key| async move {
        s.reconcile(key).await
    })
}

impl State {
    async fn reconcile(&self, key: ObjectKey) -> Result<Option<Duration>, Error> {
        let Some(pdb) = self.pdbs.get(&key) else {
            return Ok(None);
        };
        let now = Timestamp::now();
        let now_t = Time(now);
        let (new, recheck) = match self.compute(&pdb, now, &now_t).await {
            Ok(v) => v,
            Err(e) => {
                self.recorder.warning(
                    pdb.as_ref(),
                    "CalculateExpectedPodCountFailed",
                    format!("Failed to calculate the number of expected pods: {e}"),
                );
                (status::fail_safe(&pdb, &e, &now_t), None)
            }
        };
        self.write(&key, &pdb, new).await?;
        Ok(recheck.map(|at| {
            at.duration_since(now)
                .unsigned_abs()
                .max(Duration::from_millis(10))
        }))
    }

    async fn compute(
        &self,
        pdb: &PodDisruptionBudget,
        now: Timestamp,
        now_t: &Time,
    ) -> Result<(PodDisruptionBudgetStatus, Option<Timestamp>), String> {
        let selector = selector_of(pdb)?;
        let ns = pdb.metadata.namespace.as_deref().unwrap_or_default();
        let pods: Vec<Arc<Pod>> = self
            .pods
            .list_namespace(ns)
            .into_iter()
            .filter(|p| selector.matches(p.metadata.labels.as_ref()))
            .collect();
        if pods.is_empty() {
            self.recorder
                .normal(pdb, "NoPods", "No matching pods found");
        }
        let refs: Vec<&Pod> = pods.iter().map(Arc::as_ref).collect();
        let scale = if status::needs_expected_scale(pdb) {
            Some(self.expected_scale(pdb, &refs).await?)
        } else {
            None
        };
        let (expected, desired) = status::expected_and_desired(pdb, refs.len(), scale)?;
        let (pending, recheck) = status::pending_disruptions(pdb, &refs, now);
        let healthy = status::count_healthy(&refs, &pending);
        Ok((
            status::new_status(pdb, healthy, desired, expected, pending, now_t),
            recheck,
        ))
    }

    /// The summed scale of the pods' distinct controllers.
    async fn expected_scale(
        &self,
        pdb: &PodDisruptionBudget,
        pods: &[&Pod],
    ) -> Result<i32, String> {
        let mut scales: HashMap<String, i32> = HashMap::new();
        let mut unmanaged = Vec::new();
        for pod in pods {
            let name = pod.metadata.name.clone().unwrap_or_default();
            let Some(cref) = owner::controller_of(&pod.metadata) else {
                unmanaged.push(name);
                continue;
            };
            if scales.contains_key(&cref.uid) {
                continue;
            }
            let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
            let (uid, scale) = self
                .controller_scale(ns, cref)
                .await
                .ok_or_else(|| format!("found no controllers for pod {name:?}"))?;
            scales.insert(uid, scale);
        }
        if !unmanaged.is_empty() {
            let selector = pdb
                .spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .map(|s| format!("{s:?}"))
                .unwrap_or_default();
            self.recorder.warning(
                pdb,
                "UnmanagedPods",
                format!(
                    "Pods selected by this PodDisruptionBudget (selector: {selector}) were found to be unmanaged. As a result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. To account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value."
                ),
            );
        }
        Ok(scales.values().sum())
    }

    /// The uid and scale of the controller `cref` names (a ReplicaSet owned by a
    /// Deployment stands for the Deployment).
    async fn controller_scale(&self, ns: &str, cref: &OwnerReference) -> Option<(String, i32)> {
        let matches = |uid: Option<&String>| uid.is_some_and(|u| *u == cref.uid);
        match (cref.api_version.as_str(), cref.kind.as_str()) {
            ("apps/v1", "ReplicaSet") => {
                let rs = self.replicasets.get_named(Some(ns), &cref.name)?;
                if !matches(rs.metadata.uid.as_ref()) {
                    return None;
                }
                if let Some(d) =
                    owner::controller_of(&rs.metadata).filter(|r| r.kind == "Deployment")
                {
                    let dep = self.deployments.get_named(Some(ns), &d.name)?;
                    if dep.metadata.uid.as_deref() != Some(d.uid.as_str()) {
                        return None;
                    }
                    let replicas = dep.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                    return Some((d.uid.clone(), replicas));
                }
                Some((
                    cref.uid.clone(),
                    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                ))
            }
            ("v1", "ReplicationController") => {
                let rc = self.rcs.get_named(Some(ns), &cref.name)?;
                matches(rc.metadata.uid.as_ref()).then(|| {
                    (
                        cref.uid.clone(),
                        rc.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                    )
                })
            }
            ("apps/v1", "StatefulSet") => {
                let ss = self.statefulsets.get_named(Some(ns), &cref.name)?;
                matches(ss.metadata.uid.as_ref()).then(|| {
                    (
                        cref.uid.clone(),
                        ss.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                    )
                })
            }
            (api_version, kind) => {
                let api = target::scale_api(self.client.clone(), ns, api_version, kind);
                let scale = api.get_scale(&cref.name).await.ok()?;
                (scale.metadata.uid.as_deref() == Some(cref.uid.as_str())).then(|| {
                    (
                        cref.uid.clone(),
                        scale.spec.and_then(|s| s.replicas).unwrap_or(0),
                    )
                })
            }
        }
    }

    async fn write(
        &self,
        key: &ObjectKey,
        pdb: &PodDisruptionBudget,
        new: PodDisruptionBudgetStatus,
    ) -> Result<(), Error> {
        if pdb.status.as_ref() == Some(&new) {
            return Ok(());
        }
        let mut p = pdb.clone();
        p.status = Some(new);
        let api: Api<PodDisruptionBudget> = Api::namespaced(self.client.clone(), key.namespace());
        match api
            .replace_status(&key.name, &PostParams::default(), &p)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(source) => Err(Error::UpdateStatus {
                key: key.clone(),
                source,
            }),
        }
    }
}
