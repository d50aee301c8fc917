//! The ResourceQuota controller: keeps each quota's `status.hard` (a copy of
//! `spec.hard`) and `status.used` (what the namespace's objects use, see [`usage`])
//! current. It recalculates a namespace's quotas when an object there that quotas
//! count changes, and every five minutes regardless (upstream's full resync).
//!
//! What it is not: admission. Refusing a create that would exceed a quota is the API
//! server's job; this loop only reports usage.

pub mod scopes;
pub mod usage;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Pod, ReplicationController, ResourceQuota,
    ResourceQuotaStatus, Secret, Service,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::Api;
use skiff_api::quantity::Quantity;
use skiff_runtime::informer::Object;
use skiff_runtime::{Informer, ObjectKey, WorkQueue};

use crate::util::pods as podutil;
use crate::{Ctx, Loop};

/// Upstream's `--resource-quota-sync-period`.
pub const RESYNC: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("update status of ResourceQuota {key}: {source}")]
    UpdateStatus {
        key: ObjectKey,
        #[source]
        source: kube::Error,
    },
}

type Counter = Box<dyn Fn(&str) -> usize + Send + Sync>;

struct State {
    client: kube::Client,
    quotas: Informer<ResourceQuota>,
    pods: Informer<Pod>,
    services: Informer<Service>,
    claims: Informer<PersistentVolumeClaim>,
    /// Object counters by quota resource name (`configmaps`, `count/jobs.batch`, ...).
    counters: Vec<(&'static str, Counter)>,
}

fn enqueue_namespace(
    quotas: &Informer<ResourceQuota>,
    queue: &WorkQueue<ObjectKey>,
    ns: Option<&str>,
) {
    if let Some(ns) = ns {
        for q in quotas.list_namespace(ns) {
            queue.add(ObjectKey::of(q.as_ref()));
        }
    }
}

/// Counts `K` objects per namespace under `names`; deletions requeue the namespace's
/// quotas. Creations do not: ResourceQuota admission charged them already, and a recount
/// racing creates in flight would erase charges of objects not stored yet, letting more
/// through than the quota allows (upstream replenishes on deletions too, not creations).
fn counted<K: Object>(
    ctx: &Ctx,
    quotas: &Informer<ResourceQuota>,
    queue: &WorkQueue<ObjectKey>,
    names: &[&'static str],
    out: &mut Vec<(&'static str, Counter)>,
) {
    let informer = ctx.informers.informer::<K>();
    let (q, qs) = (queue.clone(), quotas.clone());
    informer.on_change(move |c| {
        if c.new.is_none() {
            enqueue_namespace(&qs, &q, c.object().meta().namespace.as_deref());
        }
    });
    for name in names {
        let inf = informer.clone();
        out.push((name, Box::new(move |ns: &str| inf.list_namespace(ns).len())));
    }
}

/// Whether a pod change can change quota usage beyond what admission charged (a new
/// pod was charged when it was created; see `counted`).
fn pod_change_matters(old: Option<&Pod>, new: Option<&Pod>) -> bool {
    match (old, new) {
        (None, Some(_)) => false,
        (Some(o), Some(n)) => {
            podutil::is_terminal(o) != podutil::is_terminal(n)
                || o.metadata.deletion_timestamp != n.metadata.deletion_timestamp
                || o.spec != n.spec
        }
        _ => true,
    }
}

pub fn controller(ctx: &Ctx) -> Loop {
    let quotas = ctx.informers.informer::<ResourceQuota>();
    let pods = ctx.informers.informer::<Pod>();
    let services = ctx.informers.informer::<Service>();
    let claims = ctx.informers.informer::<PersistentVolumeClaim>();
    let queue = WorkQueue::new("resourcequota", ctx.settings.max_retry_delay);
    let q = queue.clone();
    quotas.on_change(move |c| {
        // Status-only changes are this loop's own writes.
        let spec_changed = match (&c.old, &c.new) {
            (Some(o), Some(n)) => o.spec != n.spec,
            _ => true,
        };
        if spec_changed && c.new.is_some() {
            q.add(ObjectKey::of(c.object().as_ref()));
        }
    });
    let (q, qs) = (queue.clone(), quotas.clone());
    pods.on_change(move |c| {
        if pod_change_matters(c.old.as_deref(), c.new.as_deref()) {
            enqueue_namespace(&qs, &q, c.object().metadata.namespace.as_deref());
        }
    });
    let (q, qs) = (queue.clone(), quotas.clone());
    services.on_change(move |c| {
        let changed = match (&c.old, &c.new) {
            (Some(o), Some(n)) => o.spec != n.spec,
            (None, Some(_)) => false, // charged by admission
            _ => true,
        };
        if changed {
            enqueue_namespace(&qs, &q, c.object().metadata.namespace.as_deref());
        }
    });
    let (q, qs) = (queue.clone(), quotas.clone());
    claims.on_change(move |c| {
        let changed = match (&c.old, &c.new) {
            (Some(o), Some(n)) => o.spec != n.spec,
            (None, Some(_)) => false, // charged by admission
            _ => true,
        };
        if changed {
            enqueue_namespace(&qs, &q, c.object().metadata.namespace.as_deref());
        }
    });
    let mut counters = Vec::new();
    counted::<ConfigMap>(
        ctx,
        &quotas,
        &queue,
        &["configmaps", "count/configmaps"],
        &mut counters,
    );
    counted::<Secret>(
        ctx,
        &quotas,
        &queue,
        &["secrets", "count/secrets"],
        &mut counters,
    );
    counted::<ReplicationController>(
        ctx,
        &quotas,
        &queue,
        &["replicationcontrollers", "count/replicationcontrollers"],
        &mut counters,
    );
    counted::<ResourceQuota>(
        ctx,
        &quotas,
        &queue,
        &["resourcequotas", "count/resourcequotas"],
        &mut counters,
    );
    counted::<Deployment>(
        ctx,
        &quotas,
        &queue,
        &["count/deployments.apps"],
        &mut counters,
    );
    counted::<ReplicaSet>(
        ctx,
        &quotas,
        &queue,
        &["count/replicasets.apps"],
        &mut counters,
    );
    counted::<StatefulSet>(
        ctx,
        &quotas,
        &queue,
        &["count/statefulsets.apps"],
        &mut counters,
    );
    counted::<DaemonSet>(
        ctx,
        &quotas,
        &queue,
        &["count/daemonsets.apps"],
        &mut counters,
    );
    counted::<Job>(ctx, &quotas, &queue, &["count/jobs.batch"], &mut counters);
    counted::<CronJob>(
        ctx,
        &quotas,
        &queue,
        &["count/cronjobs.batch"],
        &mut counters,
    );
    counted::<HorizontalPodAutoscaler>(
        ctx,
        &quotas,
        &queue,
        &["count/horizontalpodautoscalers.autoscaling"],
        &mut counters,
    );
    counted::<PodDisruptionBudget>(
        ctx,
        &quotas,
        &queue,
        &["count/poddisruptionbudgets.policy"],
        &mut counters,
    );
    let state = Arc::new(State {
        client: ctx.client.clone(),
        quotas,
        pods,
        services,
        claims,
        counters,
    });
    ctx.run_workers(queue, ctx.settings.workers, state, |s, key| async move {
        s.reconcile(key).await
    })
}

/// Whether two quantity maps hold the same values (whatever their spelling).
fn same_quantities(
    a: Option<&BTreeMap<String, K8sQuantity>>,
    b: &BTreeMap<String, K8sQuantity>,
) -> bool {
    let Some(a) = a else {
        return b.is_empty();
    };
    a.len() == b.len()
        && a.iter().all(|(k, v)| {
            let parse = |q: &K8sQuantity| q.0.parse::<Quantity>().ok();
            b.get(k)
                .is_some_and(|w| parse(v).is_some() && parse(v) == parse(w))
        })
}

impl State {
    async fn reconcile(&self, key: ObjectKey) -> Result<Option<Duration>, Error> {
        let Some(quota) = self.quotas.get(&key) else {
            return Ok(None);
        };
        let ns = key.namespace();
        let hard = quota
            .spec
            .as_ref()
            .and_then(|s| s.hard.clone())
            .unwrap_or_default();
        let pods = self.pods.list_namespace(ns);
        let services = self.services.list_namespace(ns);
        let claims = self.claims.list_namespace(ns);
        let data = usage::Namespace {
            pods: pods.iter().map(Arc::as_ref).collect(),
            services: services.iter().map(Arc::as_ref).collect(),
            claims: claims.iter().map(Arc::as_ref).collect(),
            counts: self
                .counters
                .iter()
                .filter(|(name, _)| hard.contains_key(*name))
                .map(|(name, count)| (name.to_string(), count(ns)))
                .collect(),
        };
        let used: BTreeMap<String, K8sQuantity> = usage::used(&quota, &data, Timestamp::now())
            .into_iter()
            .map(|(k, v)| (k, K8sQuantity(v.to_string())))
            .collect();
        let status = quota.status.as_ref();
        if same_quantities(status.and_then(|s| s.hard.as_ref()), &hard)
            && same_quantities(status.and_then(|s| s.used.as_ref()), &used)
        {
            return Ok(Some(RESYNC));
        }
        let mut q = (*quota).clone();
        q.status = Some(ResourceQuotaStatus {
            hard: Some(hard),
            used: Some(used),
        });
        let api: Api<ResourceQuota> = Api::namespaced(self.client.clone(), ns);
        api.replace_status(&key.name, &PostParams::default(), &q)
            .await
            .map_err(|source| Error::UpdateStatus {
                key: key.clone(),
                source,
            })?;
        Ok(Some(RESYNC))
    }
}
