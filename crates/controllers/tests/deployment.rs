//! The Deployment loop (with the ReplicaSet loop under it) against a real API server and
//! a fake kubelet, driven partly by the real kubectl: rollout, rolling-update bounds
//! observed while rolling, rollout status/history/undo/pause/resume/restart, Recreate,
//! the progress deadline, and history cleanup.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::{json, Value};
use support::{eventually, Cluster};

const WAIT: Duration = Duration::from_secs(60);
const REVISION: &str = "deployment.kubernetes.io/revision";
const HOLD: &str = "test.skiff.dev/hold";

async fn start() -> Cluster {
    let cluster = Cluster::start(&["deployment", "replicaset"]).await;
    cluster.fake_kubelet(&["node-a", "node-b"]).await;
    cluster
}

fn deployment(name: &str, replicas: i32, image: &str, strategy: Value) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": strategy,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": image}]},
            },
        },
    }))
    .unwrap()
}

async fn kubectl(cluster: &Cluster, args: &[&str]) -> std::process::Output {
    let kubeconfig = cluster.running.kubeconfig.clone();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(&args)
            .output()
            .expect("run kubectl")
    })
    .await
    .unwrap()
}

async fn kubectl_ok(cluster: &Cluster, args: &[&str]) -> String {
    let out = kubectl(cluster, args).await;
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The Deployment once its rollout is complete (what `kubectl rollout status` waits for).
async fn complete(api: &Api<Deployment>, name: &str) -> Deployment {
    eventually(&format!("deployment {name} rolled out"), WAIT, || async {
        let d = api.get(name).await.ok()?;
        let want = d.spec.as_ref()?.replicas?;
        let s = d.status.as_ref()?;
        let done = s.observed_generation >= d.metadata.generation
            && s.updated_replicas.unwrap_or(0) == want
            && s.replicas.unwrap_or(0) == want
            && s.available_replicas.unwrap_or(0) == want;
        done.then_some(d)
    })
    .await
}

async fn owned_rss(api: &Api<ReplicaSet>, d: &Deployment) -> Vec<ReplicaSet> {
    let uid = d.metadata.uid.clone().unwrap_or_default();
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|rs| {
            rs.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|r| r.uid == uid && r.controller == Some(true))
        })
        .collect()
}

fn image(rs: &ReplicaSet) -> String {
    rs.spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.spec.as_ref())
        .map(|s| s.containers[0].image.clone().unwrap_or_default())
        .unwrap_or_default()
}

fn annotation(rs: &ReplicaSet, key: &str) -> Option<String> {
    rs.metadata.annotations.as_ref()?.get(key).cloned()
}

fn condition(d: &Deployment, type_: &str) -> Option<(String, String, String)> {
    let c = d
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)?;
    Some((
        c.status.clone(),
        c.reason.clone().unwrap_or_default(),
        c.message.clone().unwrap_or_default(),
    ))
}

fn live(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && !matches!(
            p.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        )
}

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Polls pods and ReplicaSets until stopped, calling `check` on every snapshot and
/// keeping the first violation it reports.
struct Observer {
    stop: Arc<AtomicBool>,
    violation: Arc<Mutex<Option<String>>>,
    snapshots: Arc<Mutex<usize>>,
    task: tokio::task::JoinHandle<()>,
}

impl Observer {
    fn start(
        pods: Api<Pod>,
        rss: Api<ReplicaSet>,
        check: impl Fn(&[Pod], &[ReplicaSet]) -> Option<String> + Send + 'static,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let violation = Arc::new(Mutex::new(None));
        let snapshots = Arc::new(Mutex::new(0));
        let (s, v, n) = (stop.clone(), violation.clone(), snapshots.clone());
        let task = tokio::spawn(async move {
            while !s.load(Ordering::SeqCst) {
                if let (Ok(p), Ok(r)) = (
                    pods.list(&ListParams::default()).await,
                    rss.list(&ListParams::default()).await,
                ) {
                    *n.lock().unwrap() += 1;
                    if let Some(msg) = check(&p.items, &r.items) {
                        v.lock().unwrap().get_or_insert(msg);
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        Self {
            stop,
            violation,
            snapshots,
            task,
        }
    }

    async fn finish(self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap();
        if let Some(v) = self.violation.lock().unwrap().clone() {
            panic!("{v}");
        }
        let n = *self.snapshots.lock().unwrap();
        n
    }
}

async fn set_image(api: &Api<Deployment>, name: &str, image: &str, cause: &str) {
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({
            "metadata": {"annotations": {"kubernetes.io/change-cause": cause}},
            "spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}},
        })),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_stays_within_bounds_and_rolls_back() {
    let cluster = start().await;
    let deployments: Api<Deployment> = cluster.api("default");
    let rss: Api<ReplicaSet> = cluster.api("default");
    let pods: Api<Pod> = cluster.api("default");
    let strategy =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}});
    let mut d = deployment("web", 4, "nginx:1", strategy);
    d.metadata.annotations = Some(BTreeMap::from([(
        "kubernetes.io/change-cause".to_string(),
        "create".to_string(),
    )]));
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();

    // Created: one ReplicaSet, revision 1, all pods available.
    let d = complete(&deployments, "web").await;
    let sets = owned_rss(&rss, &d).await;
    assert_eq!(sets.len(), 1);
    let first = &sets[0];
    assert_eq!(annotation(first, REVISION).as_deref(), Some("1"));
    assert_eq!(
        annotation(first, "deployment.kubernetes.io/desired-replicas").as_deref(),
        Some("4")
    );
    assert_eq!(
        annotation(first, "deployment.kubernetes.io/max-replicas").as_deref(),
        Some("5")
    );
    assert_eq!(
        annotation(first, "kubernetes.io/change-cause").as_deref(),
        Some("create")
    );
    let hash = first.metadata.labels.as_ref().unwrap()["pod-template-hash"].clone();
    assert_eq!(
        first.metadata.name.as_deref(),
        Some(format!("web-{hash}").as_str())
    );
    assert_eq!(
        first
            .spec
            .as_ref()
            .unwrap()
            .selector
            .match_labels
            .as_ref()
            .unwrap()["pod-template-hash"],
        hash
    );
    let d = eventually(
        "revision and conditions on the deployment",
        WAIT,
        || async {
            let d = deployments.get("web").await.ok()?;
            let ok = d
                .metadata
                .annotations
                .as_ref()?
                .get(REVISION)
                .map(String::as_str)
                == Some("1")
                && condition(&d, "Progressing").is_some_and(|c| c.1 == "NewReplicaSetAvailable");
            ok.then_some(d)
        },
    )
    .await;
    assert_eq!(
        condition(&d, "Available").unwrap(),
        (
            "True".into(),
            "MinimumReplicasAvailable".into(),
            "Deployment has minimum availability.".into()
        )
    );
    assert_eq!(
        condition(&d, "Progressing").unwrap().2,
        format!("ReplicaSet \"web-{hash}\" has successfully progressed.")
    );
    for p in pods.list(&ListParams::default()).await.unwrap().items {
        assert_eq!(
            p.metadata.labels.as_ref().unwrap()["pod-template-hash"],
            hash
        );
    }

    // Image change: watch the bounds while it rolls.
    let observer = Observer::start(pods.clone(), rss.clone(), |pods, sets| {
        let web: Vec<&Pod> = pods
            .iter()
            .filter(|p| {
                p.metadata
                    .labels
                    .as_ref()
                    .is_some_and(|l| l.get("app").map(String::as_str) == Some("web"))
            })
            .collect();
        let live_pods = web.iter().filter(|p| live(p)).count();
        let available = web.iter().filter(|p| live(p) && ready(p)).count();
        let spec_total: i32 = sets
            .iter()
            .map(|rs| rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0))
            .sum();
        if spec_total > 5 {
            return Some(format!(
                "ReplicaSets want {spec_total} pods, more than replicas+maxSurge = 5"
            ));
        }
        if live_pods > 5 {
            return Some(format!(
                "{live_pods} live pods, more than replicas+maxSurge = 5"
            ));
        }
        if available < 3 {
            return Some(format!(
                "{available} available pods, fewer than replicas-maxUnavailable = 3"
            ));
        }
        None
    });
    set_image(&deployments, "web", "nginx:2", "image 2").await;
    let status = kubectl_ok(
        &cluster,
        &["rollout", "status", "deployment/web", "--timeout=60s"],
    )
    .await;
    assert!(status.contains("successfully rolled out"), "{status}");
    let d = complete(&deployments, "web").await;
    let snapshots = observer.finish().await;
    assert!(snapshots > 0);
    let sets = owned_rss(&rss, &d).await;
    assert_eq!(sets.len(), 2);
    let new = sets.iter().find(|rs| image(rs) == "nginx:2").unwrap();
    assert_eq!(annotation(new, REVISION).as_deref(), Some("2"));
    assert_eq!(new.spec.as_ref().unwrap().replicas, Some(4));
    let old = sets.iter().find(|rs| image(rs) == "nginx:1").unwrap();
    assert_eq!(old.spec.as_ref().unwrap().replicas, Some(0));

    // History lists both revisions with their change-cause.
    let history = kubectl_ok(&cluster, &["rollout", "history", "deployment/web"]).await;
    assert!(
        history.contains("create") && history.contains("image 2"),
        "{history}"
    );

    // Undo: back to nginx:1, reusing the first ReplicaSet under revision 3.
    kubectl_ok(&cluster, &["rollout", "undo", "deployment/web"]).await;
    let d = eventually("template back to nginx:1", WAIT, || async {
        let d = deployments.get("web").await.ok()?;
        (d.spec.as_ref()?.template.spec.as_ref()?.containers[0]
            .image
            .as_deref()
            == Some("nginx:1"))
        .then_some(d)
    })
    .await;
    let _ = d;
    kubectl_ok(
        &cluster,
        &["rollout", "status", "deployment/web", "--timeout=60s"],
    )
    .await;
    let d = complete(&deployments, "web").await;
    let sets = owned_rss(&rss, &d).await;
    assert_eq!(
        sets.len(),
        2,
        "the old ReplicaSet is reused, not a third made"
    );
    let reused = sets.iter().find(|rs| image(rs) == "nginx:1").unwrap();
    assert_eq!(reused.metadata.name, first.metadata.name);
    assert_eq!(annotation(reused, REVISION).as_deref(), Some("3"));
    assert_eq!(
        annotation(reused, "deployment.kubernetes.io/revision-history").as_deref(),
        Some("1")
    );
    assert_eq!(reused.spec.as_ref().unwrap().replicas, Some(4));
    eventually("deployment revision 3", WAIT, || async {
        let d = deployments.get("web").await.ok()?;
        (d.metadata
            .annotations
            .as_ref()?
            .get(REVISION)
            .map(String::as_str)
            == Some("3"))
        .then_some(())
    })
    .await;

    // Undo to a named revision: 2 (nginx:2) comes back as revision 4.
    kubectl_ok(
        &cluster,
        &["rollout", "undo", "deployment/web", "--to-revision=2"],
    )
    .await;
    kubectl_ok(
        &cluster,
        &["rollout", "status", "deployment/web", "--timeout=60s"],
    )
    .await;
    let d = complete(&deployments, "web").await;
    let sets = owned_rss(&rss, &d).await;
    let current = sets.iter().find(|rs| image(rs) == "nginx:2").unwrap();
    assert_eq!(annotation(current, REVISION).as_deref(), Some("4"));
    assert_eq!(current.spec.as_ref().unwrap().replicas, Some(4));

    // Settled: no loop keeps rewriting the Deployment or its ReplicaSets.
    let versions = |d: &Deployment, sets: &[ReplicaSet]| {
        let mut v: Vec<Option<String>> = sets
            .iter()
            .map(|rs| rs.metadata.resource_version.clone())
            .collect();
        v.push(d.metadata.resource_version.clone());
        v
    };
    let d = eventually("status settled", WAIT, || async {
        let d = deployments.get("web").await.ok()?;
        (condition(&d, "Progressing")?.1 == "NewReplicaSetAvailable").then_some(d)
    })
    .await;
    let before = versions(&d, &owned_rss(&rss, &d).await);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let d = deployments.get("web").await.unwrap();
    assert_eq!(versions(&d, &owned_rss(&rss, &d).await), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_holds_the_rollout_but_not_scaling_and_restart_rolls() {
    let cluster = start().await;
    let deployments: Api<Deployment> = cluster.api("default");
    let rss: Api<ReplicaSet> = cluster.api("default");
    deployments
        .create(
            &PostParams::default(),
            &deployment("app", 2, "busybox:1", json!({"type": "RollingUpdate"})),
        )
        .await
        .unwrap();
    complete(&deployments, "app").await;
    kubectl_ok(&cluster, &["rollout", "pause", "deployment/app"]).await;
    set_image(&deployments, "app", "busybox:2", "image 2").await;
    let d = eventually("paused condition on the new generation", WAIT, || async {
        let d = deployments.get("app").await.ok()?;
        let s = d.status.as_ref()?;
        let paused = condition(&d, "Progressing").is_some_and(|c| {
            c == (
                "Unknown".into(),
                "DeploymentPaused".into(),
                "Deployment is paused".into(),
            )
        });
        (paused && s.observed_generation >= d.metadata.generation).then_some(d)
    })
    .await;
    let sets = owned_rss(&rss, &d).await;
    assert_eq!(sets.len(), 1, "no new ReplicaSet while paused");
    assert_eq!(image(&sets[0]), "busybox:1");

    // Scaling still works while paused.
    kubectl_ok(&cluster, &["scale", "deployment/app", "--replicas=3"]).await;
    eventually("paused deployment scaled", WAIT, || async {
        let d = deployments.get("app").await.ok()?;
        let sets = owned_rss(&rss, &d).await;
        (sets.len() == 1
            && sets[0].spec.as_ref()?.replicas == Some(3)
            && d.status?.available_replicas == Some(3))
        .then_some(())
    })
    .await;

    kubectl_ok(&cluster, &["rollout", "resume", "deployment/app"]).await;
    kubectl_ok(
        &cluster,
        &["rollout", "status", "deployment/app", "--timeout=60s"],
    )
    .await;
    let d = complete(&deployments, "app").await;
    let sets = owned_rss(&rss, &d).await;
    let new = sets
        .iter()
        .find(|rs| image(rs) == "busybox:2")
        .expect("rolled out after resume");
    assert_eq!(new.spec.as_ref().unwrap().replicas, Some(3));

    // Restart: a template annotation makes a new ReplicaSet with the same image.
    kubectl_ok(&cluster, &["rollout", "restart", "deployment/app"]).await;
    kubectl_ok(
        &cluster,
        &["rollout", "status", "deployment/app", "--timeout=60s"],
    )
    .await;
    let d = complete(&deployments, "app").await;
    let sets = owned_rss(&rss, &d).await;
    assert_eq!(sets.len(), 3);
    let restarted = sets
        .iter()
        .find(|rs| annotation(rs, REVISION).as_deref() == Some("3"))
        .unwrap();
    let tpl_annotations = restarted
        .spec
        .as_ref()
        .unwrap()
        .template
        .as_ref()
        .unwrap()
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .clone()
        .unwrap();
    assert!(tpl_annotations.contains_key("kubectl.kubernetes.io/restartedAt"));
    assert_eq!(restarted.spec.as_ref().unwrap().replicas, Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_never_runs_old_and_new_together_and_history_is_trimmed() {
    let cluster = start().await;
    let deployments: Api<Deployment> = cluster.api("default");
    let rss: Api<ReplicaSet> = cluster.api("default");
    let pods: Api<Pod> = cluster.api("default");
    let mut d = deployment("batch", 3, "busybox:1", json!({"type": "Recreate"}));
    let spec = d.spec.as_mut().unwrap();
    spec.revision_history_limit = Some(1);
    // A finalizer keeps deleted pods terminating until the test lets them go, so
    // Recreate's wait for old pods to be gone is visible.
    spec.template.metadata.as_mut().unwrap().finalizers = Some(vec![HOLD.to_string()]);
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    complete(&deployments, "batch").await;

    let observer = Observer::start(pods.clone(), rss.clone(), |pods, _| {
        let hashes: std::collections::BTreeSet<&str> = pods
            .iter()
            .filter(|p| {
                !matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
            })
            .filter_map(|p| {
                p.metadata
                    .labels
                    .as_ref()?
                    .get("pod-template-hash")
                    .map(String::as_str)
            })
            .collect();
        (hashes.len() > 1).then(|| format!("pods of several templates at once: {hashes:?}"))
    });
    for (i, img) in ["busybox:2", "busybox:3"].iter().enumerate() {
        set_image(&deployments, "batch", img, &format!("step {i}")).await;
        let held = eventually("old pods terminating", WAIT, || async {
            let list = pods.list(&ListParams::default()).await.ok()?.items;
            let held: Vec<String> = list
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_some())
                .filter_map(|p| p.metadata.name.clone())
                .collect();
            (held.len() == 3 && list.len() == 3).then_some(held)
        })
        .await;
        // While the old pods are still there, no new pod may appear.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(
            pods.list(&ListParams::default()).await.unwrap().items.len(),
            3,
            "new pods while old ones terminate"
        );
        for name in held {
            pods.patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": null}})),
            )
            .await
            .unwrap();
        }
        kubectl_ok(
            &cluster,
            &["rollout", "status", "deployment/batch", "--timeout=60s"],
        )
        .await;
        complete(&deployments, "batch").await;
    }
    observer.finish().await;
    // revisionHistoryLimit 1: the newest plus one old ReplicaSet remain.
    let d = deployments.get("batch").await.unwrap();
    let sets = eventually("history trimmed to one old ReplicaSet", WAIT, || async {
        let sets = owned_rss(&rss, &d).await;
        (sets.len() == 2).then_some(sets)
    })
    .await;
    let mut images: Vec<String> = sets.iter().map(image).collect();
    images.sort();
    assert_eq!(images, ["busybox:2", "busybox:3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_deadline_is_reported_when_pods_never_become_ready() {
    let cluster = start().await;
    let deployments: Api<Deployment> = cluster.api("default");
    let mut d = deployment("stuck", 1, "busybox:1", json!({"type": "RollingUpdate"}));
    let spec = d.spec.as_mut().unwrap();
    spec.progress_deadline_seconds = Some(2);
    // Pinned to a node that does not exist: the fake kubelet never binds it.
    spec.template.spec.as_mut().unwrap().affinity = Some(
        serde_json::from_value(json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["nowhere"]}]}]
        }}}))
        .unwrap(),
    );
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    let d = eventually("ProgressDeadlineExceeded", WAIT, || async {
        let d = deployments.get("stuck").await.ok()?;
        let c = condition(&d, "Progressing")?;
        (c.0 == "False" && c.1 == "ProgressDeadlineExceeded").then_some(d)
    })
    .await;
    let rs_name = format!(
        "stuck-{}",
        owned_rss(&cluster.api("default"), &d).await[0]
            .metadata
            .labels
            .as_ref()
            .unwrap()["pod-template-hash"]
    );
    assert_eq!(
        condition(&d, "Progressing").unwrap().2,
        format!("ReplicaSet \"{rs_name}\" has timed out progressing.")
    );
    assert_eq!(
        condition(&d, "Available").unwrap(),
        (
            "False".into(),
            "MinimumReplicasUnavailable".into(),
            "Deployment does not have minimum availability.".into()
        )
    );
    assert_eq!(d.status.as_ref().unwrap().unavailable_replicas, Some(1));
    let out = kubectl(
        &cluster,
        &["rollout", "status", "deployment/stuck", "--timeout=30s"],
    )
    .await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exceeded its progress deadline"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_mid_rollout_is_shared_proportionally() {
    let cluster = start().await;
    let deployments: Api<Deployment> = cluster.api("default");
    let rss: Api<ReplicaSet> = cluster.api("default");
    let strategy =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}});
    deployments
        .create(
            &PostParams::default(),
            &deployment("prop", 4, "busybox:1", strategy),
        )
        .await
        .unwrap();
    complete(&deployments, "prop").await;
    // A new template whose pods never run: the rollout stops at old 3 + new 2
    // (5 = replicas + maxSurge; 3 available = replicas - maxUnavailable).
    deployments
        .patch(
            "prop",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": {"spec": {
                "containers": [{"name": "c", "image": "busybox:2"}],
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["nowhere"]}]}]
                }}},
            }}}})),
        )
        .await
        .unwrap();
    let sizes = |sets: &[ReplicaSet]| -> Option<(i32, i32)> {
        let old = sets.iter().find(|rs| image(rs) == "busybox:1")?;
        let new = sets.iter().find(|rs| image(rs) == "busybox:2")?;
        Some((old.spec.as_ref()?.replicas?, new.spec.as_ref()?.replicas?))
    };
    let d = deployments.get("prop").await.unwrap();
    eventually("rollout stuck at old 3 + new 2", WAIT, || async {
        let sets = owned_rss(&rss, &d).await;
        let old_available = sets
            .iter()
            .find(|rs| image(rs) == "busybox:1")?
            .status
            .as_ref()?
            .available_replicas;
        (sizes(&sets) == Some((3, 2)) && old_available == Some(3)).then_some(())
    })
    .await;
    // Scaled to 8 (9 with surge): the 4 extra are shared 3:2, rounded: old +2, new +2.
    kubectl_ok(&cluster, &["scale", "deployment/prop", "--replicas=8"]).await;
    eventually("proportional scale-up", WAIT, || async {
        let sets = owned_rss(&rss, &d).await;
        let annotated = sets.iter().all(|rs| {
            annotation(rs, "deployment.kubernetes.io/desired-replicas").as_deref() == Some("8")
        });
        (sizes(&sets) == Some((5, 4)) && annotated).then_some(())
    })
    .await;
    // It stays there: nothing more may go while the new pods are unavailable.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(sizes(&owned_rss(&rss, &d).await), Some((5, 4)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_ready_seconds_holds_availability_back() {
    let cluster = start().await;
    let deployments: Api<Deployment> = cluster.api("default");
    let rss: Api<ReplicaSet> = cluster.api("default");
    let mut d = deployment("warm", 2, "busybox:1", json!({"type": "RollingUpdate"}));
    d.spec.as_mut().unwrap().min_ready_seconds = Some(2);
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    // Ready first, available only after minReadySeconds.
    eventually("ready but not yet available", WAIT, || async {
        let s = deployments.get("warm").await.ok()?.status?;
        (s.ready_replicas == Some(2) && s.available_replicas.unwrap_or(0) == 0).then_some(())
    })
    .await;
    let d = complete(&deployments, "warm").await;
    let sets = owned_rss(&rss, &d).await;
    assert_eq!(sets[0].spec.as_ref().unwrap().min_ready_seconds, Some(2));
    assert_eq!(
        condition(&d, "Available").unwrap().1,
        "MinimumReplicasAvailable"
    );
}
