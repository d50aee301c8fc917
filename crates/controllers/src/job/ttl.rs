//! Upstream's ttl-after-finished controller, as a pure question: when may a finished
//! Job with `ttlSecondsAfterFinished` be deleted?

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::Timestamp;

use super::decide::{condition, is_finished};

/// The moment the job expires, if it is finished and has a TTL.
pub fn expires_at(job: &Job) -> Option<Timestamp> {
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    let status = job.status.as_ref()?;
    if !is_finished(status) {
        return None;
    }
    // The finish time: completionTime, else the terminal condition's transition.
    let finished = status.completion_time.as_ref().map(|t| t.0).or_else(|| {
        condition(status, "Complete")
            .or_else(|| condition(status, "Failed"))
            .and_then(|c| c.last_transition_time.as_ref())
            .map(|t| t.0)
    })?;
    Timestamp::from_second(finished.as_second().saturating_add(i64::from(ttl))).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{JobCondition, JobSpec, JobStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn job(ttl: Option<i32>, cond: Option<&str>, at: i64) -> Job {
        Job {
            spec: Some(JobSpec {
                ttl_seconds_after_finished: ttl,
                ..Default::default()
            }),
            status: Some(JobStatus {
                conditions: cond.map(|c| {
                    vec![JobCondition {
                        type_: c.into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(Timestamp::from_second(at).unwrap())),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn expiry() {
        let t = |s| Timestamp::from_second(s).ok();
        for (name, j, want) in [
            (
                "no ttl never expires",
                job(None, Some("Complete"), 100),
                None,
            ),
            ("running job never expires", job(Some(0), None, 100), None),
            (
                "only a target condition",
                job(Some(0), Some("FailureTarget"), 100),
                None,
            ),
            (
                "complete plus ttl",
                job(Some(30), Some("Complete"), 100),
                t(130),
            ),
            (
                "failed plus zero",
                job(Some(0), Some("Failed"), 100),
                t(100),
            ),
        ] {
            assert_eq!(expires_at(&j), want, "{name}");
        }
    }
}
