//! The Job controller's decisions, free of IO: which finished pods to count (and release
//! from the tracking finalizer), which pods to create or delete, and the status to write.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::failure_policy::{self, Action};
use super::indexes;
use crate::util::pods;

pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";

/// Upstream's pod failure backoff: 10 s doubled per failure, at most 10 minutes.
const BACKOFF_BASE: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(600);

pub fn has_finalizer(pod: &Pod) -> bool {
    pod.metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|x| x == TRACKING_FINALIZER))
}

fn uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or_default()
}

pub fn condition<'a>(status: &'a JobStatus, type_: &str) -> Option<&'a JobCondition> {
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

/// Finished: Complete or Failed.
pub fn is_finished(status: &JobStatus) -> bool {
    condition(status, "Complete").is_some() || condition(status, "Failed").is_some()
}

/// How a pod ended, as the job counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Succeeded,
    Failed,
}

/// Upstream counts a deleted, unfinished pod as failed unless pods are only replaced
/// once Failed (`podReplacementPolicy: Failed`, the default with a failure policy).
fn end_of(job: &Job, pod: &Pod) -> Option<End> {
    match pods::phase(pod) {
        "Succeeded" => Some(End::Succeeded),
        "Failed" => Some(End::Failed),
        _ if pods::is_terminating(pod) && !only_replace_failed(job) => Some(End::Failed),
        _ => None,
    }
}

fn only_replace_failed(job: &Job) -> bool {
    let spec = job.spec.as_ref();
    match spec.and_then(|s| s.pod_replacement_policy.as_deref()) {
        Some(p) => p == "Failed",
        None => spec.is_some_and(|s| s.pod_failure_policy.is_some()),
    }
}

fn indexed(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.completion_mode.as_deref()) == Some("Indexed")
}

/// The first step of a pass: finished pods still holding the tracking finalizer are
/// recorded in `uncountedTerminatedPods` (written before their finalizer goes, so a
/// crash never loses a count), then released.
#[derive(Debug, Default)]
pub struct Tracking {
    /// The status with newly finished pods added to the uncounted lists.
    pub status: JobStatus,
    /// Whether `status` differs from the job's.
    pub changed: bool,
    /// Pods (by position) whose finalizer can now be removed.
    pub release: Vec<usize>,
    /// A FailJob rule matched: the message for the job's failure.
    pub fail_job: Option<String>,
}

pub fn track(job: &Job, pods: &[Arc<Pod>]) -> Tracking {
    let mut status = job.status.clone().unwrap_or_default();
    let mut uncounted = status.uncounted_terminated_pods.take().unwrap_or_default();
    let mut succeeded: Vec<String> = uncounted.succeeded.take().unwrap_or_default();
    let mut failed: Vec<String> = uncounted.failed.take().unwrap_or_default();
    let mut completed = indexes::parse(status.completed_indexes.as_deref());
    let completions = job.spec.as_ref().and_then(|s| s.completions).unwrap_or(0);
    let policy = job
        .spec
        .as_ref()
        .and_then(|s| s.pod_failure_policy.as_ref());
    let finished = is_finished(&status);
    let mut out = Tracking::default();
    for (i, pod) in pods.iter().enumerate() {
        if !has_finalizer(pod) {
            continue;
        }
        let id = uid(pod).to_string();
        if succeeded.contains(&id) || failed.contains(&id) {
            out.release.push(i);
            continue;
        }
        if finished {
            // Counted already, or never will be: nothing keeps the finalizer useful.
            out.release.push(i);
            continue;
        }
        match end_of(job, pod) {
            None => {}
            Some(End::Succeeded) => {
                out.release.push(i);
                if indexed(job) {
                    // A second success of one index, or an index out of range, counts
                    // for nothing.
                    match indexes::of(pod) {
                        Some(x) if x < completions && completed.insert(x) => {
                            succeeded.push(id);
                        }
                        _ => {}
                    }
                } else {
                    succeeded.push(id);
                }
                out.changed = true;
            }
            Some(End::Failed) => {
                out.release.push(i);
                let action = if pods::phase(pod) == "Failed" {
                    failure_policy::evaluate(policy, pod)
                } else {
                    Action::Count
                };
                match action {
                    Action::Ignore => {}
                    Action::FailJob(msg) => {
                        out.fail_job.get_or_insert(msg);
                        failed.push(id);
                        out.changed = true;
                    }
                    Action::Count | Action::FailIndex => {
                        failed.push(id);
                        out.changed = true;
                    }
                }
            }
        }
    }
    if indexed(job) {
        let text = indexes::format(&completed);
        if status.completed_indexes.as_deref().unwrap_or("") != text {
            status.completed_indexes = Some(text);
            out.changed = true;
        }
    }
    status.uncounted_terminated_pods = Some(UncountedTerminatedPods {
        succeeded: Some(succeeded),
        failed: Some(failed),
    });
    out.status = status;
    out
}

/// Moves uncounted pods whose finalizer is gone (`still_held` lists the uids that keep
/// it) into the `succeeded` / `failed` counters.
pub fn flush(status: &mut JobStatus, still_held: &BTreeSet<String>) {
    let mut uncounted = status.uncounted_terminated_pods.take().unwrap_or_default();
    let move_out = |list: Option<Vec<String>>, counter: &mut Option<i32>| {
        let (keep, done): (Vec<String>, Vec<String>) = list
            .unwrap_or_default()
            .into_iter()
            .partition(|u| still_held.contains(u));
        *counter = Some(counter.unwrap_or(0) + done.len() as i32);
        keep
    };
    let s = move_out(uncounted.succeeded.take(), &mut status.succeeded);
    let f = move_out(uncounted.failed.take(), &mut status.failed);
    status.uncounted_terminated_pods = Some(UncountedTerminatedPods {
        succeeded: Some(s),
        failed: Some(f),
    });
}

/// An Event to record about the job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

/// What one pass does after tracking.
#[derive(Debug, Default)]
pub struct Plan {
    pub status: JobStatus,
    /// Pods to create: `Some(index)` for Indexed jobs.
    pub create: Vec<Option<i32>>,
    /// Pods (by position) to delete.
    pub delete: Vec<usize>,
    pub events: Vec<Event>,
    pub requeue: Option<Duration>,
}

fn set_condition(
    status: &mut JobStatus,
    type_: &str,
    value: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> bool {
    let conds = status.conditions.get_or_insert_with(Vec::new);
    if let Some(c) = conds.iter_mut().find(|c| c.type_ == type_) {
        if c.status == value {
            return false;
        }
        c.status = value.into();
        c.reason = Some(reason.into());
        c.message = Some(message.into());
        c.last_probe_time = Some(Time(now));
        c.last_transition_time = Some(Time(now));
        return true;
    }
    conds.push(JobCondition {
        type_: type_.into(),
        status: value.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    });
    true
}

/// When the pod last failed (its containers' finish, else its start).
fn finished_at(pod: &Pod) -> Option<Timestamp> {
    let status = pod.status.as_ref()?;
    let finish = status
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max();
    finish.or_else(|| status.start_time.as_ref().map(|t| t.0))
}

/// Decides creates, deletes and status from the tracked `status` (already flushed).
/// `settled` is false while creates or deletes are still to be seen in the cache.
pub fn decide(
    job: &Job,
    mut status: JobStatus,
    pods: &[Arc<Pod>],
    fail_job: Option<String>,
    settled: bool,
    now: Timestamp,
) -> Plan {
    let mut plan = Plan::default();
    let spec = job.spec.clone().unwrap_or_default();
    let indexed = indexed(job);
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let backoff_limit = spec.backoff_limit.unwrap_or(6);
    let suspend = spec.suspend.unwrap_or(false);

    let active: Vec<usize> = (0..pods.len())
        .filter(|&i| pods::is_active(&pods[i]))
        .collect();
    let terminating = pods
        .iter()
        .filter(|p| pods::is_terminating(p) && !pods::is_terminal(p))
        .count() as i32;
    let uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
    let uncounted_n = uncounted.succeeded.as_ref().map_or(0, Vec::len)
        + uncounted.failed.as_ref().map_or(0, Vec::len);
    let succeeded =
        status.succeeded.unwrap_or(0) + uncounted.succeeded.as_ref().map_or(0, Vec::len) as i32;
    let failed = status.failed.unwrap_or(0) + uncounted.failed.as_ref().map_or(0, Vec::len) as i32;
    let completed = indexes::parse(status.completed_indexes.as_deref());

    status.active = Some(active.len() as i32);
    status.ready = Some(active.iter().filter(|&&i| pods::is_ready(&pods[i])).count() as i32);
    status.terminating = Some(terminating);
    status.succeeded = status.succeeded.or(Some(0));
    status.failed = status.failed.or(Some(0));

    if is_finished(&status) {
        plan.status = status;
        return plan;
    }

    // Suspension: pods go, the deadline stops, and resuming restarts the clock.
    let was_suspended = condition(&status, "Suspended").is_some();
    if suspend
        && condition(&status, "FailureTarget").is_none()
        && condition(&status, "SuccessCriteriaMet").is_none()
    {
        if set_condition(
            &mut status,
            "Suspended",
            "True",
            "JobSuspended",
            "Job suspended",
            now,
        ) {
            plan.events.push(Event {
                warning: false,
                reason: "Suspended",
                message: "Job suspended".into(),
            });
        }
        if settled {
            plan.delete = active;
        }
        plan.status = status;
        return plan;
    }
    if was_suspended {
        set_condition(
            &mut status,
            "Suspended",
            "False",
            "JobResumed",
            "Job resumed",
            now,
        );
        plan.events.push(Event {
            warning: false,
            reason: "Resumed",
            message: "Job resumed".into(),
        });
        status.start_time = Some(Time(now));
    }
    let start = status.start_time.get_or_insert(Time(now)).0;

    // A terminal outcome is first a target (FailureTarget / SuccessCriteriaMet); the
    // Failed / Complete condition follows once no pod is left running or uncounted.
    if condition(&status, "FailureTarget").is_none()
        && condition(&status, "SuccessCriteriaMet").is_none()
    {
        let deadline = spec
            .active_deadline_seconds
            .map(|s| start.as_second().saturating_add(s));
        let failure = if let Some(msg) = fail_job {
            Some(("PodFailurePolicy", msg))
        } else if failed > backoff_limit || past_backoff_on_failure(job, pods, backoff_limit) {
            Some((
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit".to_string(),
            ))
        } else if deadline.is_some_and(|d| now.as_second() >= d) {
            Some((
                "DeadlineExceeded",
                "Job was active longer than specified deadline".to_string(),
            ))
        } else {
            None
        };
        let success = match spec.completions {
            _ if failure.is_some() => false,
            Some(c) if indexed => completed.len() as i32 >= c,
            Some(c) => succeeded >= c,
            None => succeeded > 0 && active.is_empty(),
        };
        if let Some((reason, msg)) = failure {
            set_condition(&mut status, "FailureTarget", "True", reason, &msg, now);
            plan.events.push(Event {
                warning: true,
                reason,
                message: msg,
            });
        } else if success {
            set_condition(
                &mut status,
                "SuccessCriteriaMet",
                "True",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
                now,
            );
        } else if let Some(d) = deadline {
            plan.requeue = Some(Duration::from_secs((d - now.as_second()).max(1) as u64));
        }
    }
    let target = condition(&status, "FailureTarget")
        .map(|c| ("Failed", c.clone()))
        .or_else(|| condition(&status, "SuccessCriteriaMet").map(|c| ("Complete", c.clone())));
    if let Some((terminal, c)) = target {
        plan.requeue = None;
        if settled {
            plan.delete = active.clone();
        }
        if active.is_empty() && terminating == 0 && uncounted_n == 0 {
            let reason = c.reason.clone().unwrap_or_default();
            let message = c.message.clone().unwrap_or_default();
            set_condition(&mut status, terminal, "True", &reason, &message, now);
            if terminal == "Complete" {
                status.completion_time = Some(Time(now));
                plan.events.push(Event {
                    warning: false,
                    reason: "Completed",
                    message: "Job completed".into(),
                });
            }
        }
        plan.status = status;
        return plan;
    }

    if !settled {
        plan.status = status;
        return plan;
    }

    // How many pods should run now.
    let want = match spec.completions {
        Some(c) if indexed => (c - completed.len() as i32).min(parallelism),
        Some(c) => (c - succeeded).min(parallelism),
        None if succeeded > 0 => 0,
        None => parallelism,
    }
    .max(0) as usize;
    // With `podReplacementPolicy: Failed` a terminating pod still holds its place.
    let occupied = active.len()
        + if only_replace_failed(job) {
            terminating as usize
        } else {
            0
        };

    let mut keep = active.clone();
    if indexed {
        // Duplicates of one index and indexes already completed or out of range go.
        let mut seen = HashMap::new();
        let completions = spec.completions.unwrap_or(0);
        let mut sorted = active.clone();
        sorted.sort_by_key(|&i| (!pods::is_ready(&pods[i]), created(&pods[i])));
        keep.clear();
        for i in sorted {
            match indexes::of(&pods[i]) {
                Some(x)
                    if x < completions
                        && !completed.contains(&x)
                        && seen.insert(x, i).is_none() =>
                {
                    keep.push(i)
                }
                _ => plan.delete.push(i),
            }
        }
    }
    if keep.len() > want {
        // Scale down: unready before ready, newest first.
        keep.sort_by_key(|&i| {
            (
                pods::is_ready(&pods[i]),
                std::cmp::Reverse(created(&pods[i])),
            )
        });
        let extra = keep.len() - want;
        plan.delete.extend(keep.drain(..extra));
    }
    let occupied = occupied.saturating_sub(active.len() - keep.len());
    if occupied < want {
        let failure_delay = backoff_delay(failed, pods, now);
        match failure_delay {
            Some(wait) => plan.requeue = Some(plan.requeue.map_or(wait, |r| r.min(wait))),
            None => {
                let n = want - occupied;
                if indexed {
                    let running: BTreeSet<i32> =
                        keep.iter().filter_map(|&i| indexes::of(&pods[i])).collect();
                    let completions = spec.completions.unwrap_or(0);
                    plan.create = (0..completions)
                        .filter(|x| !completed.contains(x) && !running.contains(x))
                        .take(n)
                        .map(Some)
                        .collect();
                } else {
                    plan.create = vec![None; n];
                }
            }
        }
    }
    plan.status = status;
    plan
}

/// With `restartPolicy: OnFailure` failures are container restarts inside running pods;
/// upstream fails the job once their sum reaches the limit (any restart when it is 0).
fn past_backoff_on_failure(job: &Job, pods: &[Arc<Pod>], limit: i32) -> bool {
    let restart = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.restart_policy.as_deref());
    if restart != Some("OnFailure") {
        return false;
    }
    let restarts: i32 = pods
        .iter()
        .filter(|p| matches!(pods::phase(p), "Running" | "Pending"))
        .filter_map(|p| p.status.as_ref())
        .flat_map(|s| {
            s.init_container_statuses
                .iter()
                .flatten()
                .chain(s.container_statuses.iter().flatten())
        })
        .map(|c| c.restart_count)
        .sum();
    if limit == 0 {
        restarts > 0
    } else {
        restarts >= limit
    }
}

fn created(pod: &Pod) -> i64 {
    pod.metadata
        .creation_timestamp
        .as_ref()
        .map_or(0, |t| t.0.as_second())
}

/// How long to wait before replacing failed pods: upstream backs off 10 s × 2^(n-1)
/// after the n-th failure, counted from the latest failure still visible.
fn backoff_delay(failed: i32, pods: &[Arc<Pod>], now: Timestamp) -> Option<Duration> {
    if failed <= 0 {
        return None;
    }
    let last = pods
        .iter()
        .filter(|p| pods::phase(p) == "Failed")
        .filter_map(|p| finished_at(p))
        .max()?;
    let exp = (failed - 1).clamp(0, 16) as u32;
    let delay = BACKOFF_BASE.saturating_mul(1u32 << exp).min(BACKOFF_MAX);
    let ready_at = last.as_second() + delay.as_secs() as i64;
    let wait = ready_at - now.as_second();
    (wait > 0).then(|| Duration::from_secs(wait as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 10_000;

    fn at(s: i64) -> String {
        Timestamp::from_second(s).unwrap().to_string()
    }

    fn job(spec: serde_json::Value, status: serde_json::Value) -> Job {
        let mut s = json!({
            "parallelism": 2, "completions": 3, "backoffLimit": 6, "completionMode": "NonIndexed",
            "podReplacementPolicy": "TerminatingOrFailed",
            "template": {"spec": {"containers": [{"name": "c"}]}},
        });
        if let (Some(a), Some(b)) = (s.as_object_mut(), spec.as_object()) {
            a.extend(b.clone());
        }
        serde_json::from_value(json!({
            "metadata": {"name": "j", "namespace": "ns", "uid": "job-uid"},
            "spec": s, "status": status,
        }))
        .unwrap()
    }

    /// A pod of the job: `phase` Running (ready), Succeeded or Failed (exit `code`,
    /// finished at `done`), with the tracking finalizer unless `counted`.
    struct P {
        name: &'static str,
        phase: &'static str,
        code: i32,
        done: i64,
        index: Option<i32>,
        counted: bool,
        deleting: bool,
        restarts: i32,
    }

    fn p(name: &'static str, phase: &'static str) -> P {
        P {
            name,
            phase,
            code: if phase == "Failed" { 1 } else { 0 },
            done: NOW - 1000,
            index: None,
            counted: false,
            deleting: false,
            restarts: 0,
        }
    }

    fn build(p: &P) -> Arc<Pod> {
        let mut annotations = serde_json::Map::new();
        if let Some(i) = p.index {
            annotations.insert(indexes::INDEX_KEY.into(), json!(i.to_string()));
        }
        let finalizers: Vec<&str> = if p.counted {
            vec![]
        } else {
            vec![TRACKING_FINALIZER]
        };
        let terminated = (p.phase != "Running")
            .then(|| json!({"terminated": {"exitCode": p.code, "finishedAt": at(p.done)}}));
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {
                    "name": p.name, "namespace": "ns", "uid": p.name, "finalizers": finalizers,
                    "annotations": annotations, "creationTimestamp": at(1),
                    "deletionTimestamp": p.deleting.then(|| at(NOW - 1)),
                },
                "status": {
                    "phase": p.phase,
                    "conditions": [{"type": "Ready", "status": if p.phase == "Running" {"True"} else {"False"}}],
                    "containerStatuses": [{"name": "c", "image": "", "imageID": "", "ready": false, "restartCount": p.restarts, "state": terminated}],
                },
            }))
            .unwrap(),
        )
    }

    /// One pass as the controller runs it: track, release, flush, decide.
    fn pass(job: &Job, pods: &[P], settled: bool) -> (Tracking, Plan) {
        let pods: Vec<Arc<Pod>> = pods.iter().map(build).collect();
        let tracking = track(job, &pods);
        let mut held: BTreeSet<String> = pods
            .iter()
            .filter(|p| has_finalizer(p))
            .filter_map(|p| p.metadata.uid.clone())
            .collect();
        for &i in &tracking.release {
            held.remove(pods[i].metadata.uid.as_deref().unwrap_or_default());
        }
        let mut status = tracking.status.clone();
        flush(&mut status, &held);
        let plan = decide(
            job,
            status,
            &pods,
            tracking.fail_job.clone(),
            settled,
            Timestamp::from_second(NOW).unwrap(),
        );
        (tracking, plan)
    }

    fn cond(plan: &Plan, type_: &str) -> Option<String> {
        condition(&plan.status, type_).map(|c| c.reason.clone().unwrap_or_default())
    }

    struct Want {
        create: usize,
        delete: usize,
        succeeded: i32,
        failed: i32,
        conditions: Vec<(&'static str, &'static str)>,
        events: Vec<&'static str>,
        requeue: Option<u64>,
    }

    fn want(create: usize, delete: usize, succeeded: i32, failed: i32) -> Want {
        Want {
            create,
            delete,
            succeeded,
            failed,
            conditions: vec![],
            events: vec![],
            requeue: None,
        }
    }

    #[test]
    fn passes() {
        let old = NOW - 1000;
        let cases: Vec<(&str, Job, Vec<P>, bool, Want)> = vec![
            (
                "a new job starts parallelism pods",
                job(json!({}), json!({})),
                vec![],
                true,
                want(2, 0, 0, 0),
            ),
            (
                "a success is counted and replaced up to the remaining completions",
                job(json!({}), json!({})),
                vec![p("a", "Succeeded"), p("b", "Running")],
                true,
                want(1, 0, 1, 0),
            ),
            (
                "the last completion completes the job",
                job(json!({}), json!({"succeeded": 2})),
                vec![p("a", "Succeeded")],
                true,
                Want {
                    conditions: vec![
                        ("SuccessCriteriaMet", "CompletionsReached"),
                        ("Complete", "CompletionsReached"),
                    ],
                    events: vec!["Completed"],
                    ..want(0, 0, 3, 0)
                },
            ),
            (
                "completions reached with a pod still running: it goes first",
                job(json!({}), json!({"succeeded": 2})),
                vec![p("a", "Succeeded"), p("b", "Running")],
                true,
                Want {
                    conditions: vec![("SuccessCriteriaMet", "CompletionsReached")],
                    ..want(0, 1, 3, 0)
                },
            ),
            (
                "failures past backoffLimit fail the job",
                job(json!({"backoffLimit": 1}), json!({"failed": 1})),
                vec![p("a", "Failed")],
                true,
                Want {
                    conditions: vec![
                        ("FailureTarget", "BackoffLimitExceeded"),
                        ("Failed", "BackoffLimitExceeded"),
                    ],
                    events: vec!["BackoffLimitExceeded"],
                    ..want(0, 0, 0, 2)
                },
            ),
            (
                "OnFailure: container restarts count against backoffLimit",
                job(
                    json!({"parallelism": 1, "backoffLimit": 2, "template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "c"}]}}}),
                    json!({}),
                ),
                vec![P {
                    restarts: 2,
                    ..p("a", "Running")
                }],
                true,
                Want {
                    conditions: vec![("FailureTarget", "BackoffLimitExceeded")],
                    events: vec!["BackoffLimitExceeded"],
                    ..want(0, 1, 0, 0)
                },
            ),
            (
                "a fresh failure backs off 10 s before the replacement",
                job(json!({"parallelism": 1}), json!({})),
                vec![P {
                    done: NOW - 4,
                    ..p("a", "Failed")
                }],
                true,
                Want {
                    requeue: Some(6),
                    ..want(0, 0, 0, 1)
                },
            ),
            (
                "the backoff doubles with each failure",
                job(json!({"parallelism": 1}), json!({"failed": 2})),
                vec![P {
                    done: NOW - 4,
                    ..p("a", "Failed")
                }],
                true,
                Want {
                    requeue: Some(36),
                    ..want(0, 0, 0, 3)
                },
            ),
            (
                "an old failure is replaced at once",
                job(json!({"parallelism": 1}), json!({})),
                vec![P {
                    done: old,
                    ..p("a", "Failed")
                }],
                true,
                want(1, 0, 0, 1),
            ),
            (
                "past activeDeadlineSeconds the job fails and its pods go",
                job(
                    json!({"activeDeadlineSeconds": 10}),
                    json!({"startTime": at(NOW - 20)}),
                ),
                vec![p("a", "Running")],
                true,
                Want {
                    conditions: vec![("FailureTarget", "DeadlineExceeded")],
                    events: vec!["DeadlineExceeded"],
                    ..want(0, 1, 0, 0)
                },
            ),
            (
                "before the deadline the job wakes at it",
                job(
                    json!({"activeDeadlineSeconds": 30}),
                    json!({"startTime": at(NOW - 20)}),
                ),
                vec![p("a", "Running"), p("b", "Running")],
                true,
                Want {
                    requeue: Some(10),
                    ..want(0, 0, 0, 0)
                },
            ),
            (
                "suspending deletes running pods",
                job(json!({"suspend": true}), json!({"startTime": at(NOW - 20)})),
                vec![p("a", "Running")],
                true,
                Want {
                    conditions: vec![("Suspended", "JobSuspended")],
                    events: vec!["Suspended"],
                    ..want(0, 1, 0, 0)
                },
            ),
            (
                "resuming starts pods again",
                job(
                    json!({}),
                    json!({"conditions": [{"type": "Suspended", "status": "True", "reason": "JobSuspended"}]}),
                ),
                vec![],
                true,
                Want {
                    events: vec!["Resumed"],
                    ..want(2, 0, 0, 0)
                },
            ),
            (
                "Indexed: missing indexes are created",
                job(
                    json!({"completionMode": "Indexed", "parallelism": 3}),
                    json!({}),
                ),
                vec![
                    P {
                        index: Some(0),
                        ..p("a", "Succeeded")
                    },
                    P {
                        index: Some(1),
                        ..p("b", "Running")
                    },
                ],
                true,
                want(1, 0, 1, 0),
            ),
            (
                "Indexed: a second success of one index counts once",
                job(
                    json!({"completionMode": "Indexed", "parallelism": 3}),
                    json!({"succeeded": 1, "completedIndexes": "0"}),
                ),
                vec![P {
                    index: Some(0),
                    ..p("a", "Succeeded")
                }],
                true,
                want(2, 0, 1, 0),
            ),
            (
                "podFailurePolicy FailJob fails at once",
                job(
                    json!({"podReplacementPolicy": "Failed", "podFailurePolicy": {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]}}),
                    json!({}),
                ),
                vec![P {
                    code: 42,
                    ..p("a", "Failed")
                }],
                true,
                Want {
                    conditions: vec![
                        ("FailureTarget", "PodFailurePolicy"),
                        ("Failed", "PodFailurePolicy"),
                    ],
                    events: vec!["PodFailurePolicy"],
                    ..want(0, 0, 0, 1)
                },
            ),
            (
                "podFailurePolicy Ignore: not counted, replaced",
                job(
                    json!({"parallelism": 1, "podReplacementPolicy": "Failed", "podFailurePolicy": {"rules": [{"action": "Ignore", "onExitCodes": {"operator": "In", "values": [137]}}]}}),
                    json!({}),
                ),
                vec![P {
                    code: 137,
                    done: NOW - 1,
                    ..p("a", "Failed")
                }],
                true,
                want(1, 0, 0, 0),
            ),
            (
                "a deleted running pod counts as failed and is replaced",
                job(json!({"parallelism": 1}), json!({})),
                vec![P {
                    deleting: true,
                    ..p("a", "Running")
                }],
                true,
                want(1, 0, 0, 1),
            ),
            (
                "with podReplacementPolicy Failed a terminating pod holds its place",
                job(
                    json!({"parallelism": 1, "podReplacementPolicy": "Failed"}),
                    json!({}),
                ),
                vec![P {
                    deleting: true,
                    ..p("a", "Running")
                }],
                true,
                want(0, 0, 0, 0),
            ),
            (
                "unsettled expectations: no creates",
                job(json!({}), json!({})),
                vec![],
                false,
                want(0, 0, 0, 0),
            ),
            (
                "no completions: the first success ends the job once pods are done",
                job(json!({"completions": null, "parallelism": 2}), json!({})),
                vec![
                    p("a", "Succeeded"),
                    P {
                        counted: true,
                        ..p("b", "Succeeded")
                    },
                ],
                true,
                Want {
                    conditions: vec![
                        ("SuccessCriteriaMet", "CompletionsReached"),
                        ("Complete", "CompletionsReached"),
                    ],
                    events: vec!["Completed"],
                    ..want(0, 0, 1, 0)
                },
            ),
        ];
        for (name, j, pods, settled, w) in cases {
            let (_, plan) = pass(&j, &pods, settled);
            assert_eq!(plan.create.len(), w.create, "{name}: creates");
            assert_eq!(plan.delete.len(), w.delete, "{name}: deletes");
            assert_eq!(
                plan.status.succeeded,
                Some(w.succeeded),
                "{name}: succeeded"
            );
            assert_eq!(plan.status.failed, Some(w.failed), "{name}: failed");
            for (t, reason) in &w.conditions {
                assert_eq!(
                    cond(&plan, t).as_deref(),
                    Some(*reason),
                    "{name}: condition {t}"
                );
            }
            for t in [
                "Complete",
                "Failed",
                "SuccessCriteriaMet",
                "FailureTarget",
                "Suspended",
            ] {
                if !w.conditions.iter().any(|(c, _)| *c == t) {
                    assert_eq!(cond(&plan, t), None, "{name}: no {t}");
                }
            }
            let events: Vec<&str> = plan.events.iter().map(|e| e.reason).collect();
            assert_eq!(events, w.events, "{name}: events");
            assert_eq!(
                plan.requeue.map(|d| d.as_secs()),
                w.requeue,
                "{name}: requeue"
            );
        }
    }

    #[test]
    fn finished_pods_are_recorded_before_release() {
        let j = job(json!({}), json!({}));
        let pods: Vec<Arc<Pod>> = [p("a", "Succeeded"), p("b", "Failed"), p("c", "Running")]
            .iter()
            .map(build)
            .collect();
        let t = track(&j, &pods);
        assert!(t.changed);
        assert_eq!(t.release, vec![0, 1]);
        let u = t.status.uncounted_terminated_pods.clone().unwrap();
        assert_eq!(u.succeeded, Some(vec!["a".to_string()]));
        assert_eq!(u.failed, Some(vec!["b".to_string()]));
        // A pod still holding the finalizer stays uncounted.
        let mut status = t.status.clone();
        flush(&mut status, &BTreeSet::from(["b".to_string()]));
        assert_eq!((status.succeeded, status.failed), (Some(1), Some(0)));
        assert_eq!(
            status.uncounted_terminated_pods.unwrap().failed,
            Some(vec!["b".to_string()])
        );
    }
}
