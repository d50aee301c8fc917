//! The CronJob controller against a real API server: one real minute tick. The rest of
//! the semantics (missed starts, Forbid/Replace, deadlines, history, time zones) are
//! table-tested in `cronjob::decide` with an injected "now".

mod support;

use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::api::{ListParams, PostParams};
use support::{eventually, Cluster, EXIT_CODE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_minute_starts_a_job_that_completes() {
    let cluster = Cluster::start(&["cronjob", "job"]).await;
    cluster.fake_kubelet(&["node-a"]).await;
    let cronjobs = cluster.api::<CronJob>("default");
    let cj: CronJob = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "tick"},
        "spec": {
            "schedule": "* * * * *",
            "timeZone": "Etc/UTC",
            "jobTemplate": {"spec": {"template": {
                "metadata": {"annotations": {EXIT_CODE: "0"}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}
            }}}
        }
    }))
    .unwrap();
    cronjobs.create(&PostParams::default(), &cj).await.unwrap();
    let jobs = cluster.api::<Job>("default");
    let job = eventually("a job from the tick", Duration::from_secs(75), || async {
        jobs.list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .next()
    })
    .await;
    let name = job.metadata.name.clone().unwrap();
    let scheduled = cronjobs
        .get("tick")
        .await
        .ok()
        .and_then(|c| c.status?.last_schedule_time)
        .map(|t| t.0);
    if let Some(at) = scheduled {
        assert_eq!(name, format!("tick-{}", at.as_second() / 60));
    }
    assert!(name.starts_with("tick-"), "{name}");
    let annotation = job
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("batch.kubernetes.io/cronjob-scheduled-timestamp"))
        .cloned();
    assert!(
        annotation.is_some_and(|a| a.ends_with("+00:00")),
        "scheduled-timestamp in UTC"
    );
    let status = eventually("job seen completed", Duration::from_secs(30), || async {
        let s = cronjobs.get("tick").await.ok()?.status?;
        (s.last_successful_time.is_some() && s.active.as_ref().is_none_or(Vec::is_empty))
            .then_some(s)
    })
    .await;
    assert!(status.last_schedule_time.is_some());
}
