//! The CronJob controller (upstream's cronjob controller v2): starts a Job at each time
//! of the schedule (in `timeZone`), honours `concurrencyPolicy`, `suspend` and
//! `startingDeadlineSeconds`, keeps `status.active` in step with its Jobs, prunes
//! finished Jobs past the history limits, and sleeps until the next start time instead
//! of polling.

mod decide;
mod schedule;

pub use decide::{decide, job_name, Delete, Event, Plan, SCHEDULED_TIMESTAMP};
pub use schedule::{Missed, Schedule, ScheduleError, MANY_MISSED};

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, PostParams, Preconditions, PropagationPolicy};
use kube::Api;
use skiff_runtime::events::Recorder;
use skiff_runtime::{Informer, ObjectKey, WorkQueue};

use crate::util::owner;
use crate::{Ctx, Loop};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{verb} job {job} of cronjob {key}: {source}")]
    Job {
        verb: &'static str,
        job: String,
        key: ObjectKey,
        #[source]
        source: kube::Error,
    },
    #[error("writing status of cronjob {key}: {source}")]
    Status {
        key: ObjectKey,
        #[source]
        source: kube::Error,
    },
}

fn owner_key(job: &Job) -> Option<ObjectKey> {
    owner::controller_key(&job.metadata, "batch", "CronJob")
}

struct State {
    client: kube::Client,
    cronjobs: Informer<CronJob>,
    jobs: Informer<Job>,
    recorder: Recorder,
}

pub fn controller(ctx: &Ctx) -> Loop {
    let cronjobs = ctx.informers.informer::<CronJob>();
    let jobs = ctx.informers.informer::<Job>();
    owner::index_by_controller(&jobs);
    let queue = WorkQueue::new("cronjob", ctx.settings.max_retry_delay);
    let q = queue.clone();
    cronjobs.on_change(move |c| q.add(ObjectKey::of(c.object().as_ref())));
    let q = queue.clone();
    jobs.on_change(move |c| {
        if let Some(key) = owner_key(c.object()) {
            q.add(key);
        }
    });
    let state = Arc::new(State {
        client: ctx.client.clone(),
        cronjobs,
        jobs,
        recorder: ctx.recorder("cronjob-controller"),
    });
    ctx.run_workers(queue, ctx.settings.workers, state, |s, key| async move {
        s.reconcile(key).await
    })
}

impl State {
    async fn reconcile(&self, key: ObjectKey) -> Result<Option<Duration>, Error> {
        let Some(cj) = self.cronjobs.get(&key) else {
            return Ok(None);
        };
        let uid = cj.metadata.uid.clone().unwrap_or_default();
        let jobs: Vec<Arc<Job>> = owner::controlled_by(&self.jobs, "batch", "CronJob", &key)
            .into_iter()
            .filter(|j| owner::is_controlled_by(&j.metadata, &uid))
            .collect();
        let missing = self.missing_active(&key, &cj, &jobs).await?;
        let mut plan = decide(&cj, &jobs, &missing, Timestamp::now());
        for e in &plan.events {
            if e.warning {
                self.recorder
                    .warning(cj.as_ref(), e.reason, e.message.clone());
            } else {
                self.recorder
                    .normal(cj.as_ref(), e.reason, e.message.clone());
            }
        }
        let api: Api<Job> = Api::namespaced(self.client.clone(), key.namespace());
        for d in &plan.delete {
            let params = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                preconditions: d.uid.clone().map(|uid| Preconditions {
                    uid: Some(uid),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match api.delete(&d.name, &params).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(source) => {
                    return Err(Error::Job {
                        verb: "deleting",
                        job: d.name.clone(),
                        key,
                        source,
                    })
                }
            }
        }
        if let Some(job) = plan.create.take() {
            let name = job.metadata.name.clone().unwrap_or_default();
            let created = match api.create(&PostParams::default(), &job).await {
                Ok(j) => {
                    self.recorder.normal(
                        cj.as_ref(),
                        "SuccessfulCreate",
                        format!("Created job {name}"),
                    );
                    Some(j)
                }
                // Made by an earlier pass whose status write was lost: adopt it if ours.
                Err(kube::Error::Api(s)) if s.code == 409 => api
                    .get(&name)
                    .await
                    .ok()
                    .filter(|j| owner::is_controlled_by(&j.metadata, &uid)),
                Err(source) => {
                    self.recorder.warning(
                        cj.as_ref(),
                        "FailedCreate",
                        format!("Error creating job: {source}"),
                    );
                    return Err(Error::Job {
                        verb: "creating",
                        job: name,
                        key,
                        source,
                    });
                }
            };
            if let Some(j) = created {
                let active = plan.status.active.get_or_insert_with(Vec::new);
                if !active.iter().any(|r| r.uid == j.metadata.uid) {
                    active.push(ObjectReference {
                        api_version: Some("batch/v1".into()),
                        kind: Some("Job".into()),
                        name: j.metadata.name.clone(),
                        namespace: j.metadata.namespace.clone(),
                        uid: j.metadata.uid.clone(),
                        resource_version: j.metadata.resource_version.clone(),
                        field_path: None,
                    });
                }
            }
        }
        if !same_status(cj.status.as_ref(), &plan.status) {
            let mut next = (*cj).clone();
            next.status = Some(plan.status);
            let api: Api<CronJob> = Api::namespaced(self.client.clone(), key.namespace());
            api.replace_status(&key.name, &PostParams::default(), &next)
                .await
                .map_err(|source| Error::Status {
                    key: key.clone(),
                    source,
                })?;
        }
        Ok(plan.requeue)
    }

    /// Active Jobs absent from the cache that the API server confirms are gone (the
    /// cache may simply not have seen a Job this loop just created).
    async fn missing_active(
        &self,
        key: &ObjectKey,
        cj: &CronJob,
        jobs: &[Arc<Job>],
    ) -> Result<Vec<String>, Error> {
        let api: Api<Job> = Api::namespaced(self.client.clone(), key.namespace());
        let mut missing = Vec::new();
        let active = cj.status.as_ref().and_then(|s| s.active.as_ref());
        for r in active.into_iter().flatten() {
            if jobs.iter().any(|j| j.metadata.uid == r.uid) {
                continue;
            }
            let Some(name) = &r.name else { continue };
            match api.get_opt(name).await {
                Ok(Some(j)) if j.metadata.uid == r.uid => {}
                Ok(_) => missing.push(name.clone()),
                Err(source) => {
                    return Err(Error::Job {
                        verb: "reading",
                        job: name.clone(),
                        key: key.clone(),
                        source,
                    })
                }
            }
        }
        Ok(missing)
    }
}

/// Status equality ignoring the resourceVersions inside active references.
fn same_status(old: Option<&CronJobStatus>, new: &CronJobStatus) -> bool {
    let strip = |s: &CronJobStatus| {
        let mut s = s.clone();
        for r in s.active.iter_mut().flatten() {
            r.resource_version = None;
        }
        if s.active.as_ref().is_some_and(Vec::is_empty) {
            s.active = None;
        }
        s
    };
    old.map(strip) == Some(strip(new)) || (old.is_none() && strip(new) == CronJobStatus::default())
}
