//! The Job controller against a real API server and the fake kubelet.

mod support;

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, PostParams};
use support::{eventually, Cluster, EXIT_CODE};

fn job(name: &str, extra: serde_json::Value, exit_code: Option<i32>) -> Job {
    let mut spec = serde_json::json!({
        "template": {
            "metadata": {"annotations": {}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}
        }
    });
    if let Some(code) = exit_code {
        spec["template"]["metadata"]["annotations"][EXIT_CODE] =
            serde_json::json!(code.to_string());
    }
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    serde_json::from_value(serde_json::json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

fn condition(job: &Job, type_: &str) -> Option<(String, String)> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
        .map(|c| {
            (
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
}

async fn pods_of(cluster: &Cluster, name: &str) -> Vec<Pod> {
    cluster
        .api::<Pod>("default")
        .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={name}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_with_parallelism_complete() {
    let cluster = Cluster::start(&["job"]).await;
    cluster.fake_kubelet(&["node-a", "node-b"]).await;
    let jobs = cluster.api::<Job>("default");
    let j = job(
        "pi",
        serde_json::json!({"completions": 3, "parallelism": 2}),
        Some(0),
    );
    jobs.create(&PostParams::default(), &j).await.unwrap();
    let done = eventually("job pi Complete", Duration::from_secs(30), || async {
        let j = jobs.get("pi").await.ok()?;
        condition(&j, "Complete").map(|_| j)
    })
    .await;
    let status = done.status.clone().unwrap();
    assert_eq!(status.succeeded, Some(3));
    assert_eq!(status.active.unwrap_or(0), 0);
    assert!(status.completion_time.is_some());
    assert!(status.start_time.is_some());
    assert_eq!(
        condition(&done, "SuccessCriteriaMet").map(|c| c.0),
        Some("CompletionsReached".into())
    );
    let pods = pods_of(&cluster, "pi").await;
    assert_eq!(pods.len(), 3, "exactly three pods ran");
    let events = cluster.api::<k8s_openapi::api::core::v1::Event>("default");
    eventually("Completed event", Duration::from_secs(10), || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        let created = list
            .items
            .iter()
            .filter(|e| e.reason.as_deref() == Some("SuccessfulCreate"))
            .count();
        let completed = list.items.iter().any(|e| {
            e.reason.as_deref() == Some("Completed")
                && e.message.as_deref() == Some("Job completed")
        });
        (created == 3 && completed).then_some(())
    })
    .await;
    for p in &pods {
        let fin = p.metadata.finalizers.clone().unwrap_or_default();
        assert!(
            !fin.iter().any(|f| f == "batch.kubernetes.io/job-tracking"),
            "finalizer released"
        );
        let labels = p.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get("job-name").map(String::as_str), Some("pi"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_pods_exceed_backoff_limit() {
    let cluster = Cluster::start(&["job"]).await;
    cluster.fake_kubelet(&["node-a"]).await;
    let jobs = cluster.api::<Job>("default");
    let j = job("fail", serde_json::json!({"backoffLimit": 1}), Some(1));
    jobs.create(&PostParams::default(), &j).await.unwrap();
    let done = eventually("job fail Failed", Duration::from_secs(60), || async {
        let j = jobs.get("fail").await.ok()?;
        condition(&j, "Failed").map(|_| j)
    })
    .await;
    assert_eq!(
        condition(&done, "Failed"),
        Some((
            "BackoffLimitExceeded".into(),
            "Job has reached the specified backoff limit".into()
        ))
    );
    assert_eq!(done.status.as_ref().and_then(|s| s.failed), Some(2));
    assert_eq!(
        pods_of(&cluster, "fail").await.len(),
        2,
        "one retry, then stop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexed_job_pods_carry_indexes() {
    let cluster = Cluster::start(&["job"]).await;
    cluster.fake_kubelet(&["node-a"]).await;
    let jobs = cluster.api::<Job>("default");
    let j = job(
        "idx",
        serde_json::json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed"}),
        Some(0),
    );
    jobs.create(&PostParams::default(), &j).await.unwrap();
    let done = eventually("indexed job Complete", Duration::from_secs(30), || async {
        let j = jobs.get("idx").await.ok()?;
        condition(&j, "Complete").map(|_| j)
    })
    .await;
    assert_eq!(
        done.status
            .as_ref()
            .and_then(|s| s.completed_indexes.clone()),
        Some("0-2".into())
    );
    let mut seen: Vec<(String, String)> = pods_of(&cluster, "idx")
        .await
        .iter()
        .map(|p| {
            let idx = p
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("batch.kubernetes.io/job-completion-index"))
                .cloned()
                .unwrap_or_default();
            let host = p
                .spec
                .as_ref()
                .and_then(|s| s.hostname.clone())
                .unwrap_or_default();
            (idx, host)
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("0".into(), "idx-0".into()),
            ("1".into(), "idx-1".into()),
            ("2".into(), "idx-2".into())
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_zero_deletes_finished_job() {
    let cluster = Cluster::start(&["job"]).await;
    cluster.fake_kubelet(&["node-a"]).await;
    let jobs = cluster.api::<Job>("default");
    let j = job(
        "ttl",
        serde_json::json!({"ttlSecondsAfterFinished": 0}),
        Some(0),
    );
    jobs.create(&PostParams::default(), &j).await.unwrap();
    // Foreground deletion: without the garbage collector running here the Job stays
    // with a deletionTimestamp; with it, it disappears.
    eventually("job ttl deleted", Duration::from_secs(30), || async {
        match jobs.get("ttl").await {
            Err(kube::Error::Api(s)) if s.code == 404 => Some(()),
            Ok(j) if j.metadata.deletion_timestamp.is_some() => {
                condition(&j, "Complete").map(|_| ())
            }
            _ => None,
        }
    })
    .await;
}
