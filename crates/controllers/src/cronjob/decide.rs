//! The CronJob controller's decisions, free of IO and of the clock: given the CronJob,
//! the Jobs it owns and "now", what to create, delete, record and write, and when to
//! look again.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job, JobTemplateSpec};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use super::schedule::{Missed, Schedule, MANY_MISSED};
use crate::util::owner;

pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// Upstream wakes a little after the start time so the clock has surely passed it.
const NEXT_SLACK: Duration = Duration::from_millis(100);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

/// A Job to delete: name and uid (the uid guards against a same-named newcomer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delete {
    pub name: String,
    pub uid: Option<String>,
}

#[derive(Debug, Default)]
pub struct Plan {
    /// The status to write (the created Job's reference is added by the caller, which
    /// learns its uid).
    pub status: CronJobStatus,
    pub create: Option<Job>,
    pub delete: Vec<Delete>,
    pub events: Vec<Event>,
    pub requeue: Option<Duration>,
}

/// `<cronjob>-<scheduled time in minutes since the epoch>`, as upstream names Jobs.
pub fn job_name(cronjob: &str, at: Timestamp) -> String {
    format!("{cronjob}-{}", at.as_second().div_euclid(60))
}

fn finished(job: &Job) -> Option<&'static str> {
    let conds = job.status.as_ref()?.conditions.as_ref()?;
    conds
        .iter()
        .filter(|c| c.status == "True")
        .find_map(|c| match c.type_.as_str() {
            "Complete" => Some("Complete"),
            "Failed" => Some("Failed"),
            _ => None,
        })
}

fn event(warning: bool, reason: &'static str, message: String) -> Event {
    Event {
        warning,
        reason,
        message,
    }
}

fn reference(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        field_path: None,
    }
}

/// One pass. `jobs` are the Jobs the CronJob controls (from the cache); `missing`
/// names active Jobs confirmed gone from the API server.
pub fn decide(cj: &CronJob, jobs: &[Arc<Job>], missing: &[String], now: Timestamp) -> Plan {
    let mut plan = Plan::default();
    let mut status = cj.status.clone().unwrap_or_default();
    let spec = cj.spec.clone().unwrap_or_default();
    let mut active = status.active.take().unwrap_or_default();

    // 1. The active list follows the Jobs: finished ones leave it, unlisted running
    //    ones (a crash between create and status write) join it.
    for job in jobs {
        let uid = job.metadata.uid.as_deref();
        let name = job.metadata.name.clone().unwrap_or_default();
        let listed = active.iter().any(|r| r.uid.as_deref() == uid);
        match (listed, finished(job)) {
            (false, None) if job.metadata.deletion_timestamp.is_none() => {
                active.push(reference(job))
            }
            (true, Some(how)) => {
                active.retain(|r| r.uid.as_deref() != uid);
                plan.events.push(event(
                    false,
                    "SawCompletedJob",
                    format!("Saw completed job: {name}, condition: {how}"),
                ));
                if how == "Complete" {
                    let done = job.status.as_ref().and_then(|s| s.completion_time.clone());
                    if let Some(done) = done {
                        if status
                            .last_successful_time
                            .as_ref()
                            .is_none_or(|t| t.0 < done.0)
                        {
                            status.last_successful_time = Some(done);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    active.retain(|r| {
        let gone = r.name.as_ref().is_some_and(|n| missing.contains(n));
        if gone {
            plan.events.push(event(
                true,
                "MissingJob",
                format!(
                    "Active job went missing: {}",
                    r.name.as_deref().unwrap_or("")
                ),
            ));
        }
        !gone
    });

    // 2. History limits: the oldest finished Jobs beyond each limit go.
    for (how, limit) in [
        ("Complete", spec.successful_jobs_history_limit),
        ("Failed", spec.failed_jobs_history_limit),
    ] {
        let Some(limit) = limit else { continue };
        let mut done: Vec<&Arc<Job>> = jobs
            .iter()
            .filter(|j| finished(j) == Some(how) && j.metadata.deletion_timestamp.is_none())
            .collect();
        done.sort_by_key(|j| {
            let start = j
                .status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .map(|t| t.0);
            (start, j.metadata.creation_timestamp.as_ref().map(|t| t.0))
        });
        let extra = done.len().saturating_sub(limit.max(0) as usize);
        for j in done.into_iter().take(extra) {
            let name = j.metadata.name.clone().unwrap_or_default();
            plan.events.push(event(
                false,
                "SuccessfulDelete",
                format!("Deleted job {name}"),
            ));
            plan.delete.push(Delete {
                name,
                uid: j.metadata.uid.clone(),
            });
        }
    }

    status.active = Some(active);
    plan.status = status;
    if cj.metadata.deletion_timestamp.is_some() {
        return plan;
    }

    // 3. The schedule: invalid ones are reported and not retried until changed.
    let sched = match Schedule::parse(&spec.schedule, spec.time_zone.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            let reason = match e {
                super::schedule::ScheduleError::Unparseable { .. } => "UnparseableSchedule",
                super::schedule::ScheduleError::UnknownTimeZone { .. } => "UnknownTimeZone",
            };
            plan.events.push(event(true, reason, e.to_string()));
            return plan;
        }
    };
    if spec.suspend == Some(true) {
        return plan;
    }
    let next = |plan: &mut Plan| {
        plan.requeue = sched.next_after(now).map(|t| {
            Duration::from_secs((t.as_second() - now.as_second()).max(0) as u64) + NEXT_SLACK
        });
    };

    // 4. The latest start due, counting from the last one (or creation), but not from
    //    further back than startingDeadlineSeconds.
    let mut earliest = plan
        .status
        .last_schedule_time
        .as_ref()
        .or(cj.metadata.creation_timestamp.as_ref())
        .map_or(now, |t| t.0);
    if let Some(sds) = spec.starting_deadline_seconds {
        if let Ok(d) = Timestamp::from_second(now.as_second().saturating_sub(sds)) {
            earliest = earliest.max(d);
        }
    }
    let (at, missed) = match sched.most_recent(earliest, now) {
        Missed::None => {
            next(&mut plan);
            return plan;
        }
        Missed::Due { at, missed } => (at, missed),
    };
    if missed > MANY_MISSED as u64 {
        plan.events.push(event(
            true,
            "TooManyMissedTimes",
            format!(
                "too many missed start times: {missed}. Set or decrease .spec.startingDeadlineSeconds or check clock skew"
            ),
        ));
    }
    if spec
        .starting_deadline_seconds
        .is_some_and(|sds| at.as_second().saturating_add(sds) < now.as_second())
    {
        plan.events.push(event(
            true,
            "MissSchedule",
            format!(
                "Missed scheduled time to start a job: {}",
                at.strftime("%a, %d %b %Y %H:%M:%S %z")
            ),
        ));
        next(&mut plan);
        return plan;
    }
    let name = job_name(cj.metadata.name.as_deref().unwrap_or_default(), at);
    let active = plan.status.active.get_or_insert_with(Vec::new);
    let handled = active.iter().any(|r| r.name.as_deref() == Some(&name))
        || plan
            .status
            .last_schedule_time
            .as_ref()
            .is_some_and(|t| t.0 == at);
    if handled {
        next(&mut plan);
        return plan;
    }

    // 5. Concurrency policy.
    match spec.concurrency_policy.as_deref().unwrap_or("Allow") {
        "Forbid" if !active.is_empty() => {
            plan.events.push(event(
                false,
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid".into(),
            ));
            next(&mut plan);
            return plan;
        }
        "Replace" => {
            for r in active.drain(..) {
                let n = r.name.clone().unwrap_or_default();
                if plan.delete.iter().any(|d| d.name == n) {
                    continue;
                }
                plan.events
                    .push(event(false, "SuccessfulDelete", format!("Deleted job {n}")));
                plan.delete.push(Delete {
                    name: n,
                    uid: r.uid,
                });
            }
        }
        _ => {}
    }

    // 6. Start the Job for `at`.
    plan.create = Some(job_for(cj, &spec.job_template, &name, &sched.rfc3339(at)));
    plan.status.last_schedule_time = Some(Time(at));
    next(&mut plan);
    plan
}

/// The Job for one start: the template's labels, annotations and spec, owned by the
/// CronJob, annotated with its scheduled time.
fn job_for(cj: &CronJob, template: &JobTemplateSpec, name: &str, scheduled: &str) -> Job {
    let tmeta = template.metadata.clone().unwrap_or_default();
    let mut annotations = tmeta.annotations.unwrap_or_default();
    annotations.insert(SCHEDULED_TIMESTAMP.into(), scheduled.into());
    Job {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: cj.metadata.namespace.clone(),
            labels: tmeta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![owner::controller_ref(cj)]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    /// A CronJob created at midnight 2026-01-01 UTC with `spec` merged in.
    fn cronjob(spec: serde_json::Value, status: serde_json::Value) -> CronJob {
        let mut s = json!({
            "schedule": "* * * * *",
            "timeZone": "UTC",
            "concurrencyPolicy": "Allow",
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 1,
            "jobTemplate": {"metadata": {"labels": {"app": "x"}}, "spec": {"template": {"spec": {"containers": []}}}}
        });
        if let (Some(a), Some(b)) = (s.as_object_mut(), spec.as_object()) {
            a.extend(b.clone());
        }
        serde_json::from_value(json!({
            "metadata": {"name": "cj", "namespace": "ns", "uid": "cj-uid", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": s,
            "status": status,
        }))
        .unwrap()
    }

    fn job(name: &str, condition: Option<&str>, start: &str) -> Arc<Job> {
        let conditions = condition.map(|c| vec![json!({"type": c, "status": "True"})]);
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "ns", "uid": format!("{name}-uid")},
                "status": {"conditions": conditions, "startTime": start, "completionTime": start},
            }))
            .unwrap(),
        )
    }

    fn active(names: &[&str]) -> serde_json::Value {
        json!({"active": names.iter().map(|n| json!({"name": n, "uid": format!("{n}-uid")})).collect::<Vec<_>>()})
    }

    fn reasons(plan: &Plan) -> Vec<&'static str> {
        plan.events.iter().map(|e| e.reason).collect()
    }

    fn created(plan: &Plan) -> Option<String> {
        plan.create.as_ref().and_then(|j| j.metadata.name.clone())
    }

    fn deleted(plan: &Plan) -> Vec<String> {
        plan.delete.iter().map(|d| d.name.clone()).collect()
    }

    // 2026-01-01T00:01:00Z is minute 29453761 since the epoch.
    const TICK1: &str = "cj-29453761";

    #[test]
    fn schedule_and_concurrency() {
        struct Case {
            name: &'static str,
            cj: CronJob,
            jobs: Vec<Arc<Job>>,
            now: &'static str,
            create: Option<&'static str>,
            delete: Vec<&'static str>,
            events: Vec<&'static str>,
            requeue: Option<Duration>,
        }
        let running = || vec![job("old", None, "2026-01-01T00:00:00Z")];
        let cases = vec![
            Case {
                name: "first tick starts a job named after its minute",
                cj: cronjob(json!({}), json!({})),
                jobs: vec![],
                now: "2026-01-01T00:01:05Z",
                create: Some(TICK1),
                delete: vec![],
                events: vec![],
                requeue: Some(Duration::from_millis(55_100)),
            },
            Case {
                name: "nothing due sleeps until the next tick",
                cj: cronjob(json!({}), json!({})),
                jobs: vec![],
                now: "2026-01-01T00:00:20Z",
                create: None,
                delete: vec![],
                events: vec![],
                requeue: Some(Duration::from_millis(40_100)),
            },
            Case {
                name: "a tick already started is not started again",
                cj: cronjob(
                    json!({}),
                    json!({"lastScheduleTime": "2026-01-01T00:01:00Z"}),
                ),
                jobs: vec![],
                now: "2026-01-01T00:01:30Z",
                create: None,
                delete: vec![],
                events: vec![],
                requeue: Some(Duration::from_millis(30_100)),
            },
            Case {
                name: "Allow runs beside an active job",
                cj: cronjob(json!({}), active(&["old"])),
                jobs: running(),
                now: "2026-01-01T00:01:05Z",
                create: Some(TICK1),
                delete: vec![],
                events: vec![],
                requeue: Some(Duration::from_millis(55_100)),
            },
            Case {
                name: "Forbid skips while a job is active",
                cj: cronjob(json!({"concurrencyPolicy": "Forbid"}), active(&["old"])),
                jobs: running(),
                now: "2026-01-01T00:01:05Z",
                create: None,
                delete: vec![],
                events: vec!["JobAlreadyActive"],
                requeue: Some(Duration::from_millis(55_100)),
            },
            Case {
                name: "Forbid starts once the active job finished",
                cj: cronjob(json!({"concurrencyPolicy": "Forbid"}), active(&["old"])),
                jobs: vec![job("old", Some("Complete"), "2026-01-01T00:00:30Z")],
                now: "2026-01-01T00:01:05Z",
                create: Some(TICK1),
                delete: vec![],
                events: vec!["SawCompletedJob"],
                requeue: Some(Duration::from_millis(55_100)),
            },
            Case {
                name: "Replace deletes the active job and starts another",
                cj: cronjob(json!({"concurrencyPolicy": "Replace"}), active(&["old"])),
                jobs: running(),
                now: "2026-01-01T00:01:05Z",
                create: Some(TICK1),
                delete: vec!["old"],
                events: vec!["SuccessfulDelete"],
                requeue: Some(Duration::from_millis(55_100)),
            },
            Case {
                name: "startingDeadlineSeconds: a start still in the window runs",
                cj: cronjob(json!({"startingDeadlineSeconds": 30}), json!({})),
                jobs: vec![],
                now: "2026-01-01T00:01:20Z",
                create: Some(TICK1),
                delete: vec![],
                events: vec![],
                requeue: Some(Duration::from_millis(40_100)),
            },
            Case {
                name: "startingDeadlineSeconds: a start past the window is skipped",
                cj: cronjob(json!({"startingDeadlineSeconds": 30}), json!({})),
                jobs: vec![],
                now: "2026-01-01T00:01:40Z",
                create: None,
                delete: vec![],
                events: vec![],
                requeue: Some(Duration::from_millis(20_100)),
            },
            Case {
                name: "many missed starts: warn, start only the latest",
                cj: cronjob(json!({}), json!({})),
                jobs: vec![],
                now: "2026-01-01T03:00:10Z",
                create: Some("cj-29453940"),
                delete: vec![],
                events: vec!["TooManyMissedTimes"],
                requeue: Some(Duration::from_millis(50_100)),
            },
            Case {
                name: "a deadline bounds how far back missed starts are counted",
                cj: cronjob(json!({"startingDeadlineSeconds": 200}), json!({})),
                jobs: vec![],
                now: "2026-01-01T03:00:10Z",
                create: Some("cj-29453940"),
                delete: vec![],
                events: vec![],
                requeue: Some(Duration::from_millis(50_100)),
            },
            Case {
                name: "time zone: 09:00 in New York is 14:00 UTC",
                cj: cronjob(
                    json!({"schedule": "0 9 * * *", "timeZone": "America/New_York"}),
                    json!({}),
                ),
                jobs: vec![],
                now: "2026-01-01T14:00:30Z",
                create: Some("cj-29454600"),
                delete: vec![],
                events: vec![],
                requeue: Some(Duration::from_millis(86_370_100)),
            },
            Case {
                name: "suspended: nothing starts, nothing to wake for",
                cj: cronjob(json!({"suspend": true}), json!({})),
                jobs: vec![],
                now: "2026-01-01T00:01:05Z",
                create: None,
                delete: vec![],
                events: vec![],
                requeue: None,
            },
            Case {
                name: "unparseable schedule is reported once and not retried",
                cj: cronjob(json!({"schedule": "61 * * * *"}), json!({})),
                jobs: vec![],
                now: "2026-01-01T00:01:05Z",
                create: None,
                delete: vec![],
                events: vec!["UnparseableSchedule"],
                requeue: None,
            },
            Case {
                name: "unknown time zone",
                cj: cronjob(json!({"timeZone": "Mars/Olympus"}), json!({})),
                jobs: vec![],
                now: "2026-01-01T00:01:05Z",
                create: None,
                delete: vec![],
                events: vec!["UnknownTimeZone"],
                requeue: None,
            },
            Case {
                name: "history limits delete the oldest finished jobs",
                cj: cronjob(json!({"suspend": true}), json!({})),
                jobs: vec![
                    job("s1", Some("Complete"), "2026-01-01T00:01:00Z"),
                    job("s2", Some("Complete"), "2026-01-01T00:02:00Z"),
                    job("s3", Some("Complete"), "2026-01-01T00:03:00Z"),
                    job("s4", Some("Complete"), "2026-01-01T00:04:00Z"),
                    job("s5", Some("Complete"), "2026-01-01T00:05:00Z"),
                    job("f1", Some("Failed"), "2026-01-01T00:01:30Z"),
                    job("f2", Some("Failed"), "2026-01-01T00:02:30Z"),
                ],
                now: "2026-01-01T00:06:05Z",
                create: None,
                delete: vec!["s1", "s2", "f1"],
                events: vec!["SuccessfulDelete", "SuccessfulDelete", "SuccessfulDelete"],
                requeue: None,
            },
        ];
        for c in cases {
            let plan = decide(&c.cj, &c.jobs, &[], ts(c.now));
            assert_eq!(created(&plan).as_deref(), c.create, "{}: create", c.name);
            assert_eq!(deleted(&plan), c.delete, "{}: delete", c.name);
            assert_eq!(reasons(&plan), c.events, "{}: events", c.name);
            assert_eq!(plan.requeue, c.requeue, "{}: requeue", c.name);
        }
    }

    #[test]
    fn created_job_and_status() {
        let cj = cronjob(
            json!({"schedule": "0 9 * * *", "timeZone": "America/New_York"}),
            json!({}),
        );
        let plan = decide(&cj, &[], &[], ts("2026-01-01T14:00:30Z"));
        let job = plan.create.expect("a job");
        let annotations = job.metadata.annotations.unwrap_or_default();
        assert_eq!(
            annotations.get(SCHEDULED_TIMESTAMP).map(String::as_str),
            Some("2026-01-01T09:00:00-05:00")
        );
        assert_eq!(
            job.metadata
                .labels
                .unwrap_or_default()
                .get("app")
                .map(String::as_str),
            Some("x")
        );
        let owner = &job.metadata.owner_references.unwrap_or_default()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("CronJob", "cj-uid", Some(true))
        );
        assert_eq!(
            plan.status.last_schedule_time.map(|t| t.0),
            Some(ts("2026-01-01T14:00:00Z"))
        );
    }

    #[test]
    fn active_list_follows_jobs() {
        let cj = cronjob(json!({"suspend": true}), active(&["done", "gone"]));
        let jobs = vec![
            job("done", Some("Complete"), "2026-01-01T00:01:00Z"),
            job("orphan", None, "2026-01-01T00:02:00Z"),
        ];
        let plan = decide(
            &cj,
            &jobs,
            &["gone".to_string()],
            ts("2026-01-01T00:03:00Z"),
        );
        let names: Vec<String> = plan
            .status
            .active
            .iter()
            .flatten()
            .filter_map(|r| r.name.clone())
            .collect();
        assert_eq!(names, vec!["orphan"]);
        assert_eq!(reasons(&plan), vec!["SawCompletedJob", "MissingJob"]);
        assert_eq!(
            plan.events[0].message,
            "Saw completed job: done, condition: Complete"
        );
        assert_eq!(
            plan.status.last_successful_time.map(|t| t.0),
            Some(ts("2026-01-01T00:01:00Z"))
        );
    }
}
