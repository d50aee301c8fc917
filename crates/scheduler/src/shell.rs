//! The IO shell around [`crate::core::Core`]: informer changes go in through one
//! channel (handlers only send), one task owns the core and makes decisions, and
//! spawned tasks carry them out — binds (bounded), status writes, evictions, events —
//! reporting bind results back through the same channel.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{
    Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod, ReplicationController, Service,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::Api;
use serde_json::json;
use skiff_runtime::events::Recorder;
use skiff_runtime::{Change, Informer, InformerFactory, ObjectKey};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::cache::PodInfo;
use crate::core::{Core, CoreConfig, Failure, Outcome};
use crate::{Error, Settings};

/// How long the decision loop runs before yielding to other tasks.
const YIELD_EVERY: Duration = Duration::from_millis(5);

type Pair<K> = (Option<Arc<K>>, Option<Arc<K>>);

enum Input {
    Pod(Pair<Pod>),
    Node(Pair<Node>),
    Namespace(Pair<Namespace>),
    Claim(Pair<PersistentVolumeClaim>),
    Volume(Pair<PersistentVolume>),
    Budget(Pair<PodDisruptionBudget>),
    Service {
        namespace: String,
        name: String,
        selector: Option<BTreeMap<String, String>>,
    },
    Controller {
        kind: &'static str,
        namespace: String,
        name: String,
        selector: Option<LabelSelector>,
    },
    BindFailed {
        pod: Arc<PodInfo>,
        attempts: u32,
        still_pending: bool,
    },
}

fn feed<K: skiff_runtime::informer::Object>(
    informer: &Informer<K>,
    tx: &mpsc::UnboundedSender<Input>,
    wrap: fn(Pair<K>) -> Input,
) {
    let tx = tx.clone();
    informer.on_change(move |c: &Change<K>| {
        let _ = tx.send(wrap((c.old.clone(), c.new.clone())));
    });
}

fn feed_controller<K: skiff_runtime::informer::Object>(
    factory: &InformerFactory,
    tx: &mpsc::UnboundedSender<Input>,
    kind: &'static str,
    selector: fn(&K) -> Option<LabelSelector>,
) {
    let tx = tx.clone();
    factory.informer::<K>().on_change(move |c: &Change<K>| {
        let o = c.object();
        let _ = tx.send(Input::Controller {
            kind,
            namespace: o.meta().namespace.clone().unwrap_or_default(),
            name: o.meta().name.clone().unwrap_or_default(),
            selector: c.new.as_deref().and_then(selector),
        });
    });
}

/// Everything the IO tasks share.
#[derive(Clone)]
struct Io {
    client: kube::Client,
    pods: Informer<Pod>,
    recorder: Recorder,
    binds: Arc<Semaphore>,
    writes: Arc<Semaphore>,
    tx: mpsc::UnboundedSender<Input>,
    scheduler_name: String,
}

pub async fn run(client: kube::Client, settings: Settings, shutdown: CancellationToken) {
    let factory = InformerFactory::new(client.clone());
    let (tx, mut rx) = mpsc::unbounded_channel::<Input>();
    let pods = factory.informer::<Pod>();
    feed(&pods, &tx, Input::Pod);
    feed(&factory.informer::<Node>(), &tx, Input::Node);
    feed(&factory.informer::<Namespace>(), &tx, Input::Namespace);
    feed(
        &factory.informer::<PersistentVolumeClaim>(),
        &tx,
        Input::Claim,
    );
    feed(&factory.informer::<PersistentVolume>(), &tx, Input::Volume);
    feed(
        &factory.informer::<PodDisruptionBudget>(),
        &tx,
        Input::Budget,
    );
    let services_tx = tx.clone();
    factory
        .informer::<Service>()
        .on_change(move |c: &Change<Service>| {
            let o = c.object();
            let _ = services_tx.send(Input::Service {
                namespace: o.metadata.namespace.clone().unwrap_or_default(),
                name: o.metadata.name.clone().unwrap_or_default(),
                selector: c
                    .new
                    .as_ref()
                    .and_then(|n| n.spec.as_ref()?.selector.clone()),
            });
        });
    feed_controller::<ReplicaSet>(&factory, &tx, "ReplicaSet", |o| {
        o.spec.as_ref().map(|s| s.selector.clone())
    });
    feed_controller::<StatefulSet>(&factory, &tx, "StatefulSet", |o| {
        o.spec.as_ref().map(|s| s.selector.clone())
    });
    feed_controller::<ReplicationController>(&factory, &tx, "ReplicationController", |o| {
        let labels = o.spec.as_ref()?.selector.clone()?;
        Some(LabelSelector {
            match_labels: Some(labels),
            match_expressions: None,
        })
    });
    factory.start(shutdown.clone());
    tokio::select! {
        _ = shutdown.cancelled() => return,
        _ = factory.wait_synced() => {}
    }
    tracing::info!(scheduler = %settings.scheduler_name, "scheduler caches synced");
    let io = Io {
        client: client.clone(),
        pods,
        recorder: Recorder::new(client, settings.scheduler_name.clone()),
        binds: Arc::new(Semaphore::new(settings.bind_concurrency.max(1))),
        writes: Arc::new(Semaphore::new(settings.bind_concurrency.max(1))),
        tx,
        scheduler_name: settings.scheduler_name.clone(),
    };
    let mut core = Core::new(CoreConfig {
        scheduler_name: settings.scheduler_name.clone(),
        initial_backoff: settings.pod_initial_backoff,
        max_backoff: settings.pod_max_backoff,
        max_unschedulable: settings.pod_max_in_unschedulable,
        percentage_of_nodes_to_score: settings.percentage_of_nodes_to_score,
        seed: rand_seed(),
    });
    let mut last_yield = Instant::now();
    loop {
        loop {
            match rx.try_recv() {
                Ok(input) => handle(&mut core, input),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => return,
            }
        }
        if shutdown.is_cancelled() {
            return;
        }
        if let Some((outcome, attempts)) = core.schedule_one(Instant::now()) {
            act(&io, outcome, attempts);
            // Decisions are CPU work: hand the thread back now and then so binds and
            // informers run, but not after every decision (a full trip round the
            // runtime's queue per pod would cap throughput).
            if last_yield.elapsed() >= YIELD_EVERY {
                tokio::task::yield_now().await;
                last_yield = Instant::now();
            }
            continue;
        }
        let now = Instant::now();
        let wake = core
            .queue
            .next_backoff()
            .unwrap_or(now + Duration::from_secs(1))
            .min(now + Duration::from_secs(1));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            input = rx.recv() => match input {
                Some(input) => handle(&mut core, input),
                None => return,
            },
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {}
        }
        last_yield = Instant::now();
    }
}

fn rand_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn handle(core: &mut Core, input: Input) {
    let now = Instant::now();
    match input {
        Input::Pod((old, new)) => core.pod_changed(old.as_ref(), new.as_ref(), now),
        Input::Node((old, new)) => core.node_changed(old.as_ref(), new.as_ref(), now),
        Input::Namespace((old, new)) => core.namespace_changed(old.as_ref(), new.as_ref(), now),
        Input::Claim((old, new)) => core.claim_changed(old.as_ref(), new.as_ref(), now),
        Input::Volume((old, new)) => core.volume_changed(old.as_ref(), new.as_ref(), now),
        Input::Budget((old, new)) => core.budget_changed(old.as_ref(), new.as_ref()),
        Input::Service {
            namespace,
            name,
            selector,
        } => core.service_changed(&namespace, &name, selector),
        Input::Controller {
            kind,
            namespace,
            name,
            selector,
        } => core.controller_changed(kind, &namespace, &name, selector),
        Input::BindFailed {
            pod,
            attempts,
            still_pending,
        } => core.bind_failed(&pod, attempts, still_pending, now),
    }
}

fn act(io: &Io, outcome: Outcome, attempts: u32) {
    match outcome {
        Outcome::Bind { pod, node } => {
            let io = io.clone();
            tokio::spawn(async move {
                let Ok(_permit) = io.binds.clone().acquire_owned().await else {
                    return;
                };
                match bind(&io.client, &pod, &node).await {
                    Ok(()) => io.recorder.normal(
                        pod.pod.as_ref(),
                        "Scheduled",
                        format!("Successfully assigned {} to {node}", pod.key),
                    ),
                    Err(e) => {
                        tracing::info!("{e}");
                        let still_pending = io.pods.get(&pod.key).is_some_and(|p| {
                            p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_none()
                        });
                        let _ = io.tx.send(Input::BindFailed {
                            pod,
                            attempts,
                            still_pending,
                        });
                    }
                }
            });
        }
        Outcome::Unschedulable(failure) => {
            let io = io.clone();
            tokio::spawn(async move {
                let Ok(_permit) = io.writes.clone().acquire_owned().await else {
                    return;
                };
                if let Err(e) = record_failure(&io, &failure).await {
                    tracing::info!("{e}");
                }
            });
        }
    }
}

async fn bind(client: &kube::Client, pod: &PodInfo, node: &str) -> Result<(), Error> {
    let body = json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {
            "name": pod.key.name,
            "namespace": pod.namespace(),
            "uid": pod.pod.metadata.uid,
        },
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    let api: Api<Pod> = Api::namespaced(client.clone(), pod.namespace());
    api.create_subresource::<_, serde_json::Value>(
        "binding",
        &pod.key.name,
        &PostParams::default(),
        &body,
    )
    .await
    .map(|_| ())
    .map_err(|source| Error::Bind {
        pod: pod.key.to_string(),
        node: node.to_string(),
        source,
    })
}

/// What the PodScheduled condition and nominatedNodeName should be, or `None` when
/// the pod already says so (no write needed).
pub fn status_patch(
    pod: &Pod,
    failure_message: &str,
    nominated: Option<&str>,
    now: Timestamp,
) -> Option<serde_json::Value> {
    let status = pod.status.as_ref();
    let current = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"));
    let current_nominated = status
        .and_then(|s| s.nominated_node_name.as_deref())
        .filter(|n| !n.is_empty());
    let same_condition = current.is_some_and(|c| {
        c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
            && c.message.as_deref() == Some(failure_message)
    });
    if same_condition && current_nominated == nominated {
        return None;
    }
    let transition = current
        .filter(|c| c.status == "False")
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    Some(json!({
        "status": {
            "conditions": [{
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": failure_message,
                "lastProbeTime": null,
                "lastTransitionTime": transition,
            }],
            "nominatedNodeName": nominated,
        }
    }))
}

async fn record_failure(io: &Io, f: &Failure) -> Result<(), Error> {
    let pod = f.pod.as_ref();
    let key = ObjectKey::of(pod);
    if let Some(node) = f.nominated_node.as_deref() {
        for victim in &f.victims {
            preempt(io, victim, pod, node).await?;
        }
    }
    for other in &f.cleared {
        clear_nomination(io, other).await;
    }
    // The informer may hold a newer copy (e.g. a previous write); compare against it.
    let latest = io.pods.get(&key).unwrap_or_else(|| f.pod.clone());
    if latest
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .is_some()
    {
        return Ok(());
    }
    if let Some(patch) = status_patch(
        &latest,
        &f.message,
        f.nominated_node.as_deref(),
        Timestamp::now(),
    ) {
        let api: Api<Pod> = Api::namespaced(io.client.clone(), key.namespace());
        api.patch_status(&key.name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
            .map_err(|source| Error::Status {
                pod: key.to_string(),
                source,
            })?;
    }
    io.recorder
        .warning(pod, "FailedScheduling", f.message.clone());
    Ok(())
}

/// Ends another pod's nomination (`status.nominatedNodeName`); failures are logged.
async fn clear_nomination(io: &Io, pod: &Pod) {
    let key = ObjectKey::of(pod);
    let api: Api<Pod> = Api::namespaced(io.client.clone(), key.namespace());
    let patch = json!({"status": {"nominatedNodeName": null}});
    if let Err(e) = api
        .patch_status(&key.name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        tracing::info!("clearing the nominated node of pod {key}: {e}");
    }
}

/// Evicts one victim as upstream's preemption does: a DisruptionTarget condition, a
/// `Preempted` event, then deletion (guarded by the victim's UID).
async fn preempt(io: &Io, victim: &PodInfo, preemptor: &Pod, node: &str) -> Result<(), Error> {
    let api: Api<Pod> = Api::namespaced(io.client.clone(), victim.namespace());
    let name = &victim.key.name;
    let err = |source| Error::Preempt {
        pod: victim.key.to_string(),
        source,
    };
    let has_condition = victim
        .pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.type_ == "DisruptionTarget" && c.status == "True")
        });
    if !has_condition {
        let patch = json!({"status": {"conditions": [{
            "type": "DisruptionTarget",
            "status": "True",
            "reason": "PreemptionByScheduler",
            "message": format!("{}: preempting to accommodate a higher priority pod", io.scheduler_name),
            "lastTransitionTime": Time(Timestamp::now()),
        }]}});
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
            Err(e) => return Err(err(e)),
        }
    }
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: victim.pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => return Ok(()),
        Err(e) => return Err(err(e)),
    }
    io.recorder.normal(
        victim.pod.as_ref(),
        "Preempted",
        format!(
            "Preempted by pod {} on node {node}",
            preemptor.metadata.uid.as_deref().unwrap_or("")
        ),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "p"}, "spec": {"containers": []}, "status": status}),
        )
        .unwrap()
    }

    #[test]
    fn status_patch_cases() {
        struct Case {
            name: &'static str,
            status: serde_json::Value,
            nominated: Option<&'static str>,
            write: bool,
        }
        let cond = |msg: &str| json!({"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg, "lastTransitionTime": "2025-01-01T00:00:00Z"}]});
        let mut with_nominated = cond("m");
        with_nominated["nominatedNodeName"] = json!("n1");
        let cases = [
            Case {
                name: "no condition yet",
                status: json!({}),
                nominated: None,
                write: true,
            },
            Case {
                name: "same message",
                status: cond("m"),
                nominated: None,
                write: false,
            },
            Case {
                name: "new message",
                status: cond("other"),
                nominated: None,
                write: true,
            },
            Case {
                name: "nomination added",
                status: cond("m"),
                nominated: Some("n1"),
                write: true,
            },
            Case {
                name: "nomination kept",
                status: with_nominated.clone(),
                nominated: Some("n1"),
                write: false,
            },
            Case {
                name: "nomination cleared",
                status: with_nominated,
                nominated: None,
                write: true,
            },
        ];
        for c in cases {
            let got = status_patch(&pod(c.status), "m", c.nominated, Timestamp::now());
            assert_eq!(got.is_some(), c.write, "{}", c.name);
        }
        // The transition time is kept while the condition stays False.
        let p = status_patch(&pod(cond("other")), "m", None, Timestamp::now()).unwrap();
        assert_eq!(
            p["status"]["conditions"][0]["lastTransitionTime"],
            "2025-01-01T00:00:00Z"
        );
    }
}
