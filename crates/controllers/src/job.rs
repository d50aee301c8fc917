//! The Job controller (upstream's job controller plus ttl-after-finished): runs pods
//! until enough succeed (`completions`, `parallelism`, Indexed mode), fails the Job on
//! `backoffLimit`, `activeDeadlineSeconds` or a FailJob rule of `podFailurePolicy`,
//! honours `suspend`, and deletes finished Jobs after `ttlSecondsAfterFinished`.
//!
//! Pods are tracked with the `batch.kubernetes.io/job-tracking` finalizer: a finished
//! pod is first recorded in `status.uncountedTerminatedPods`, then released, then
//! counted, so no success or failure is lost or counted twice across restarts.

mod decide;
mod failure_policy;
mod indexes;
mod ttl;

pub use decide::{decide, flush, track, Plan, Tracking, TRACKING_FINALIZER};
pub use failure_policy::{evaluate as evaluate_failure_policy, Action as FailureAction};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::Api;
use skiff_runtime::events::Recorder;
use skiff_runtime::{Informer, ObjectKey, WorkQueue};

use crate::util::expectations::Expectations;
use crate::util::{owner, podcontrol};
use crate::{Ctx, Loop};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing status of job {key}: {source}")]
    Status {
        key: ObjectKey,
        #[source]
        source: kube::Error,
    },
    #[error("{verb} pod {pod} of job {key}: {source}")]
    Pod {
        verb: &'static str,
        pod: String,
        key: ObjectKey,
        #[source]
        source: kube::Error,
    },
    #[error("deleting expired job {key}: {source}")]
    Expire {
        key: ObjectKey,
        #[source]
        source: kube::Error,
    },
}

/// The `spec.managedBy` value that means this controller (also the default).
const MANAGED_BY: &str = "kubernetes.io/job-controller";

/// The Job controlling `pod`, if one does.
fn owner_key(pod: &Pod) -> Option<ObjectKey> {
    owner::controller_key(&pod.metadata, "batch", "Job")
}

struct State {
    client: kube::Client,
    jobs: Informer<Job>,
    pods: Informer<Pod>,
    queue: WorkQueue<ObjectKey>,
    expectations: Expectations<ObjectKey>,
    recorder: Recorder,
}

pub fn controller(ctx: &Ctx) -> Loop {
    let jobs = ctx.informers.informer::<Job>();
    let pods = ctx.informers.informer::<Pod>();
    owner::index_by_controller(&pods);
    let queue = WorkQueue::new("job", ctx.settings.max_retry_delay);
    let state = Arc::new(State {
        client: ctx.client.clone(),
        jobs: jobs.clone(),
        pods: pods.clone(),
        queue: queue.clone(),
        expectations: Expectations::default(),
        recorder: ctx.recorder("job-controller"),
    });
    let q = queue.clone();
    jobs.on_change(move |c| q.add(ObjectKey::of(c.object().as_ref())));
    let s = state.clone();
    pods.on_change(move |c| {
        let pod = c.object();
        let Some(key) = owner_key(pod) else { return };
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
        s.queue.add(key);
    });
    ctx.run_workers(queue, ctx.settings.workers, state, |s, key| async move {
        s.reconcile(key).await
    })
}

impl State {
    async fn reconcile(&self, key: ObjectKey) -> Result<Option<Duration>, Error> {
        let pods = owner::controlled_by(&self.pods, "batch", "Job", &key);
        let Some(job) = self.jobs.get(&key) else {
            // The job is gone: its pods must not stay blocked by our finalizer.
            self.expectations.forget(&key);
            for pod in pods.iter().filter(|p| decide::has_finalizer(p)) {
                self.release(&key, pod).await?;
            }
            return Ok(None);
        };
        // Jobs managed by another controller (spec.managedBy) are not ours to sync.
        let managed_by = job.spec.as_ref().and_then(|s| s.managed_by.as_deref());
        if managed_by.is_some_and(|m| m != MANAGED_BY) {
            return Ok(None);
        }
        let uid = job.metadata.uid.clone().unwrap_or_default();
        let (pods, strays): (Vec<Arc<Pod>>, Vec<Arc<Pod>>) = pods
            .into_iter()
            .partition(|p| owner::is_controlled_by(&p.metadata, &uid));
        // Pods of an earlier Job of the same name must not stay blocked either.
        for pod in strays.iter().filter(|p| decide::has_finalizer(p)) {
            self.release(&key, pod).await?;
        }
        let now = Timestamp::now();

        // Finished with a TTL: the ttl-after-finished controller's part.
        if let Some(at) = ttl::expires_at(&job) {
            if job.metadata.deletion_timestamp.is_none() {
                let wait = at.as_second() - now.as_second();
                if wait > 0 {
                    return Ok(Some(Duration::from_secs(wait as u64)));
                }
                return self.expire(&key, &job).await.map(|_| None);
            }
        }

        // 1. Record newly finished pods, release them, count them.
        let tracking = track(&job, &pods);
        let mut job = job;
        if tracking.changed {
            job = Arc::new(
                self.write_status(&key, &job, tracking.status.clone())
                    .await?,
            );
        }
        let mut held: BTreeSet<String> = pods
            .iter()
            .filter(|p| decide::has_finalizer(p))
            .filter_map(|p| p.metadata.uid.clone())
            .collect();
        for &i in &tracking.release {
            self.release(&key, &pods[i]).await?;
            if let Some(u) = &pods[i].metadata.uid {
                held.remove(u);
            }
        }
        let mut status = tracking.status;
        flush(&mut status, &held);

        // 2. Decide and act.
        let settled = self.expectations.satisfied(&key);
        let plan = decide(&job, status, &pods, tracking.fail_job, settled, now);
        for e in &plan.events {
            if e.warning {
                self.recorder
                    .warning(job.as_ref(), e.reason, e.message.clone());
            } else {
                self.recorder
                    .normal(job.as_ref(), e.reason, e.message.clone());
            }
        }
        if !plan.create.is_empty() || !plan.delete.is_empty() {
            self.expectations
                .expect(&key, plan.create.len(), plan.delete.len());
        }
        let mut first_error = None;
        for &i in &plan.delete {
            let pod = &pods[i];
            let name = pod.metadata.name.clone().unwrap_or_default();
            match podcontrol::delete(
                &self.client,
                key.namespace(),
                &name,
                pod.metadata.uid.as_deref(),
            )
            .await
            {
                Ok(()) => self.recorder.normal(
                    job.as_ref(),
                    "SuccessfulDelete",
                    format!("Deleted pod: {name}"),
                ),
                Err(source) => {
                    self.expectations.deletion_observed(&key);
                    first_error.get_or_insert(Error::Pod {
                        verb: "deleting",
                        pod: name,
                        key: key.clone(),
                        source,
                    });
                }
            }
        }
        let creates = plan
            .create
            .iter()
            .map(|index| self.create_pod(&key, &job, *index));
        for result in futures::future::join_all(creates).await {
            if let Err(e) = result {
                self.expectations.creation_observed(&key);
                first_error.get_or_insert(e);
            }
        }
        if job.status.as_ref() != Some(&plan.status) {
            let written = self.write_status(&key, &job, plan.status).await?;
            if let Some(at) = ttl::expires_at(&written) {
                let wait = (at.as_second() - Timestamp::now().as_second()).max(0);
                return Ok(Some(Duration::from_secs(wait as u64)));
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(plan.requeue),
        }
    }

    async fn write_status(
        &self,
        key: &ObjectKey,
        job: &Job,
        status: k8s_openapi::api::batch::v1::JobStatus,
    ) -> Result<Job, Error> {
        let api: Api<Job> = Api::namespaced(self.client.clone(), key.namespace());
        let mut next = job.clone();
        next.status = Some(status);
        api.replace_status(&key.name, &PostParams::default(), &next)
            .await
            .map_err(|source| Error::Status {
                key: key.clone(),
                source,
            })
    }

    /// Removes the tracking finalizer (resourceVersion-guarded: a concurrent change
    /// conflicts and the pass retries).
    async fn release(&self, key: &ObjectKey, pod: &Pod) -> Result<(), Error> {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let rest: Vec<&String> = pod
            .metadata
            .finalizers
            .iter()
            .flatten()
            .filter(|f| *f != TRACKING_FINALIZER)
            .collect();
        let patch = serde_json::json!({"metadata": {
            "finalizers": rest,
            "resourceVersion": pod.metadata.resource_version,
        }});
        let api: Api<Pod> = Api::namespaced(self.client.clone(), key.namespace());
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(source) => Err(Error::Pod {
                verb: "releasing",
                pod: name,
                key: key.clone(),
                source,
            }),
        }
    }

    async fn create_pod(
        &self,
        key: &ObjectKey,
        job: &Job,
        index: Option<i32>,
    ) -> Result<(), Error> {
        let pod = pod_for(job, index);
        match podcontrol::create(&self.client, &pod).await {
            Ok(Some(p)) => {
                let name = p.metadata.name.unwrap_or_default();
                self.recorder
                    .normal(job, "SuccessfulCreate", format!("Created pod: {name}"));
                Ok(())
            }
            Ok(None) => {
                self.expectations.creation_observed(key);
                Ok(())
            }
            Err(source) => {
                self.recorder
                    .warning(job, "FailedCreate", format!("Error creating: {source}"));
                Err(Error::Pod {
                    verb: "creating",
                    pod: pod.metadata.generate_name.unwrap_or_default(),
                    key: key.clone(),
                    source,
                })
            }
        }
    }

    /// Upstream's ttl-after-finished controller deletes in the foreground, so the
    /// Job disappears after its pods.
    async fn expire(&self, key: &ObjectKey, job: &Job) -> Result<(), Error> {
        let api: Api<Job> = Api::namespaced(self.client.clone(), key.namespace());
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Foreground),
            preconditions: Some(kube::api::Preconditions {
                uid: job.metadata.uid.clone(),
                resource_version: job.metadata.resource_version.clone(),
            }),
            ..Default::default()
        };
        match api.delete(&key.name, &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(source) => Err(Error::Expire {
                key: key.clone(),
                source,
            }),
        }
    }
}

/// A pod of `job`: its template plus the job labels, the tracking finalizer and, for
/// Indexed jobs, the completion index (annotation, label, hostname, env).
pub fn pod_for(job: &Job, index: Option<i32>) -> Pod {
    let name = job.metadata.name.clone().unwrap_or_default();
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let template = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let mut labels = BTreeMap::from([
        (
            "batch.kubernetes.io/controller-uid".to_string(),
            uid.clone(),
        ),
        ("batch.kubernetes.io/job-name".to_string(), name.clone()),
        ("controller-uid".to_string(), uid),
        ("job-name".to_string(), name.clone()),
    ]);
    let prefix = match index {
        Some(i) => {
            labels.insert(indexes::INDEX_KEY.into(), i.to_string());
            format!("{name}-{i}-")
        }
        None => format!("{name}-"),
    };
    let mut pod = podcontrol::pod_from_template(
        &template,
        job.metadata.namespace.as_deref().unwrap_or("default"),
        owner::controller_ref(job),
        &prefix,
        None,
        &labels,
    );
    pod.metadata
        .finalizers
        .get_or_insert_with(Vec::new)
        .push(TRACKING_FINALIZER.into());
    if let Some(i) = index {
        pod.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(indexes::INDEX_KEY.into(), i.to_string());
        if let Some(spec) = pod.spec.as_mut() {
            if spec.hostname.as_deref().unwrap_or("").is_empty() {
                spec.hostname = Some(format!("{name}-{i}"));
            }
            let env = EnvVar {
                name: "JOB_COMPLETION_INDEX".into(),
                value: None,
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        api_version: None,
                        field_path: format!("metadata.annotations['{}']", indexes::INDEX_KEY),
                    }),
                    ..Default::default()
                }),
            };
            for c in spec
                .init_containers
                .iter_mut()
                .flatten()
                .chain(spec.containers.iter_mut())
            {
                let envs = c.env.get_or_insert_with(Vec::new);
                if !envs.iter().any(|e| e.name == env.name) {
                    envs.push(env.clone());
                }
            }
        }
    }
    pod
}
