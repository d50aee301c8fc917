//! The workloads, one function each. They reach the server only through kube-rs clients
//! over HTTPS, as any other program would, so the figures include TLS, HTTP, JSON,
//! authentication, admission, the store's durable commit and the watch cache.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::Sizes;

/// Size of the one value every benchmark ConfigMap carries.
pub const CONFIGMAP_VALUE_BYTES: usize = 256;
/// Progress lines on stderr during long fills, one per this many objects.
const PROGRESS_EVERY: usize = 10_000;
/// Watches opened at once while setting up the fan-out (each is a TLS handshake).
const WATCH_OPEN_CONCURRENCY: usize = 32;
/// How long a watcher may take to see an event before the run is declared broken.
const WATCH_DEADLINE: Duration = Duration::from_secs(60);

/// Latencies of one workload. Percentiles are exact (all samples sorted, nearest rank).
pub struct Samples(Vec<Duration>);

impl Samples {
    fn merge(parts: impl IntoIterator<Item = Vec<Duration>>) -> Self {
        let mut all: Vec<Duration> = parts.into_iter().flatten().collect();
        all.sort_unstable();
        Samples(all)
    }

    fn percentile(&self, p: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * self.0.len() as f64).ceil() as usize;
        self.0[rank.clamp(1, self.0.len()) - 1]
    }
}

/// Count, rate and latency of one workload.
pub struct Measured {
    pub ops: usize,
    pub ops_per_sec: f64,
    pub p50: Duration,
    pub p99: Duration,
}

impl Measured {
    fn new(ops: usize, elapsed: Duration, samples: Samples) -> Self {
        Self {
            ops,
            ops_per_sec: ops as f64 / elapsed.as_secs_f64(),
            p50: samples.percentile(50.0),
            p99: samples.percentile(99.0),
        }
    }
}

/// One request on each client, concurrently, so each opens its connection.
pub async fn warm_up(clients: &[Client]) -> Result<()> {
    futures::future::try_join_all(clients.iter().map(Client::apiserver_version))
        .await
        .context("warming up the clients")?;
    Ok(())
}

pub async fn create_namespace(client: &Client, name: &str) -> Result<()> {
    let ns: Namespace = serde_json::from_value(json!({ "metadata": { "name": name } }))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .with_context(|| format!("creating namespace {name}"))?;
    Ok(())
}

/// A ConfigMap with one value of `CONFIGMAP_VALUE_BYTES`.
fn configmap(name: &str) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.to_string());
    cm.data = Some([("payload".to_string(), "x".repeat(CONFIGMAP_VALUE_BYTES))].into());
    cm
}

/// A typical one-container pod; the server defaults the rest, as it would for kubectl.
fn pod(name: &str) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": { "name": name, "labels": { "app": "bench", "tier": "web" } },
        "spec": { "containers": [{
            "name": "web",
            "image": "nginx:1.27",
            "ports": [{ "containerPort": 80, "name": "http" }],
            "resources": { "requests": { "cpu": "10m", "memory": "16Mi" } },
        }] },
    }))?)
}

/// Closed loop: one task per client, each sending its next operation once the previous
/// one has been answered, until `total` operations are done. With `progress`, prints a
/// line to stderr every `PROGRESS_EVERY` operations.
async fn closed_loop<F, Fut>(
    clients: &[Client],
    total: usize,
    progress: Option<&'static str>,
    op: F,
) -> Result<Measured>
where
    F: Fn(Client, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks = clients
        .iter()
        .map(|client| {
            let (client, op, next) = (client.clone(), op.clone(), next.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return Ok(latencies);
                    }
                    let sent = Instant::now();
                    op(client.clone(), i).await?;
                    latencies.push(sent.elapsed());
                    if let Some(what) = progress.filter(|_| (i + 1) % PROGRESS_EVERY == 0) {
                        eprintln!(
                            "    {} of {} {what} ({:.0}/s)",
                            i + 1,
                            total,
                            (i + 1) as f64 / started.elapsed().as_secs_f64()
                        );
                    }
                }
            })
        })
        .collect();
    let parts = join_all(tasks).await?;
    Ok(Measured::new(
        total,
        started.elapsed(),
        Samples::merge(parts),
    ))
}

async fn join_all<T>(tasks: Vec<JoinHandle<Result<T>>>) -> Result<Vec<T>> {
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await??);
    }
    Ok(out)
}

/// Durable creates of `count` ConfigMaps in `namespace`, one closed-loop client per entry
/// of `clients`.
pub async fn create_configmaps(
    clients: &[Client],
    namespace: &str,
    count: usize,
    progress: bool,
) -> Result<Measured> {
    let namespace = namespace.to_string();
    closed_loop(
        clients,
        count,
        progress.then_some("ConfigMaps"),
        move |client, i| {
            let api = Api::<ConfigMap>::namespaced(client, &namespace);
            async move {
                api.create(&PostParams::default(), &configmap(&format!("cm-{i:06}")))
                    .await
                    .context("creating a ConfigMap")?;
                Ok(())
            }
        },
    )
    .await
}

/// Durable creates of `count` Pods in `namespace`.
pub async fn create_pods(clients: &[Client], namespace: &str, count: usize) -> Result<Measured> {
    let namespace = namespace.to_string();
    closed_loop(clients, count, None, move |client, i| {
        let api = Api::<Pod>::namespaced(client, &namespace);
        async move {
            api.create(&PostParams::default(), &pod(&format!("pod-{i:06}"))?)
                .await
                .context("creating a Pod")?;
            Ok(())
        }
    })
    .await
}

/// `lists` full lists (no `limit`) of the `expected` pods in `namespace`, one after the
/// other. Latency runs until the whole body has arrived. Returns the response size too.
pub async fn list_pods(
    client: &Client,
    namespace: &str,
    lists: usize,
    expected: usize,
) -> Result<(Measured, usize)> {
    let path = format!("/api/v1/namespaces/{namespace}/pods");
    let mut latencies = Vec::with_capacity(lists);
    let mut bytes = 0;
    let started = Instant::now();
    for i in 0..lists {
        let req = http::Request::get(&path).body(Vec::new())?;
        let sent = Instant::now();
        let body = client.request_text(req).await.context("listing pods")?;
        latencies.push(sent.elapsed());
        if i == 0 {
            let list: serde_json::Value = serde_json::from_str(&body)?;
            let items = list["items"].as_array().map_or(0, Vec::len);
            if items != expected {
                bail!("the pod list returned {items} items, wanted {expected}");
            }
        }
        bytes = body.len();
    }
    let measured = Measured::new(lists, started.elapsed(), Samples::merge([latencies]));
    Ok((measured, bytes))
}

/// Open-loop creates at `rate` per second for `duration`: request `i` is due at
/// `start + i / rate`, the requests spread round-robin over one task per client. Latency
/// is counted from when a request was due, not from when it went out, so a request held
/// up behind a slow predecessor on its client counts its wait (no coordinated omission).
/// The rate returned is the achieved one: requests / (first due → last answered).
pub async fn paced_creates(
    clients: &[Client],
    namespace: &str,
    rate: u32,
    duration: Duration,
) -> Result<Measured> {
    let total = (f64::from(rate) * duration.as_secs_f64()).round() as usize;
    let interval = Duration::from_secs(1) / rate;
    let workers = clients.len();
    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    let tasks = clients
        .iter()
        .enumerate()
        .map(|(worker, client)| {
            let api = Api::<ConfigMap>::namespaced(client.clone(), namespace);
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(total / workers + 1);
                for i in (worker..total).step_by(workers) {
                    let due = start + interval * i as u32;
                    tokio::time::sleep_until(due).await;
                    api.create(&PostParams::default(), &configmap(&format!("paced-{i:06}")))
                        .await
                        .context("creating a ConfigMap")?;
                    latencies.push(due.elapsed());
                }
                Ok(latencies)
            })
        })
        .collect();
    let parts = join_all(tasks).await?;
    Ok(Measured::new(total, start.elapsed(), Samples::merge(parts)))
}

/// Nanoseconds on this process's monotonic clock, shared by the writer and the watchers.
fn now_nanos() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// `sizes.watchers` watches on `namespace`, spread over `watch_clients`, while `writer`
/// merge-patches one ConfigMap `sizes.watch_updates` times, one per `watch_interval`.
/// Each update carries the writer's clock taken just before the call; the delay of a
/// delivery is the watcher's clock when kube-rs hands it the decoded event, minus that.
pub async fn watch_fanout(
    writer: &Client,
    watch_clients: &[Client],
    namespace: &str,
    sizes: Sizes,
) -> Result<Measured> {
    let api = Api::<ConfigMap>::namespaced(writer.clone(), namespace);
    let watched = api
        .create(&PostParams::default(), &configmap("watched"))
        .await?;
    let from = watched
        .resource_version()
        .context("the created ConfigMap has no resourceVersion")?;
    let name = watched.name_any();
    let patch_sent = |sent: String| {
        let (api, name) = (api.clone(), name.clone());
        async move {
            let patch = Patch::Merge(json!({ "data": { "sent": sent } }));
            api.patch(&name, &PatchParams::default(), &patch)
                .await
                .context("updating the watched ConfigMap")
        }
    };

    // Watching from the creation's resourceVersion: no watcher can miss an update, however
    // late the server registers it.
    let streams: Vec<_> = futures::stream::iter(0..sizes.watchers)
        .map(|k| {
            let api = Api::<ConfigMap>::namespaced(
                watch_clients[k % watch_clients.len()].clone(),
                namespace,
            );
            let from = from.clone();
            async move {
                let stream = api.watch(&WatchParams::default(), &from).await?;
                anyhow::Ok(stream.boxed())
            }
        })
        .buffer_unordered(WATCH_OPEN_CONCURRENCY)
        .try_collect()
        .await
        .context("opening the watches")?;

    let mut ready = Vec::with_capacity(sizes.watchers);
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            let (ready_tx, ready_rx) = oneshot::channel();
            ready.push(ready_rx);
            let wanted = sizes.watch_updates;
            tokio::spawn(async move {
                let mut ready_tx = Some(ready_tx);
                let mut delays = Vec::with_capacity(wanted);
                while delays.len() < wanted {
                    let event = stream.try_next().await?.context("a watch ended early")?;
                    let received = now_nanos();
                    let cm = match event {
                        WatchEvent::Modified(cm) => cm,
                        WatchEvent::Error(e) => bail!("watch error: {e:?}"),
                        _ => continue,
                    };
                    let sent = cm
                        .data
                        .as_ref()
                        .and_then(|d| d.get("sent"))
                        .context("an update without its send time")?;
                    if sent == "ready" {
                        if let Some(tx) = ready_tx.take() {
                            let _ = tx.send(());
                        }
                        continue;
                    }
                    let sent: u64 = sent.parse()?;
                    delays.push(Duration::from_nanos(received.saturating_sub(sent)));
                }
                Ok(delays)
            })
        })
        .collect();

    // Warm up: every watcher has seen one update before the timed ones start.
    patch_sent("ready".into()).await?;
    for rx in ready {
        tokio::time::timeout(WATCH_DEADLINE, rx)
            .await
            .context("a watcher did not see the warm-up update in time")??;
    }

    let started = Instant::now();
    let mut ticker = tokio::time::interval(sizes.watch_interval);
    // An update slower than the interval delays the next one rather than causing a burst.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    for _ in 0..sizes.watch_updates {
        ticker.tick().await;
        patch_sent(now_nanos().to_string()).await?;
    }
    let parts = tokio::time::timeout(WATCH_DEADLINE, join_all(tasks))
        .await
        .context("a watcher did not receive every update in time")??;
    Ok(Measured::new(
        sizes.watchers * sizes.watch_updates,
        started.elapsed(),
        Samples::merge(parts),
    ))
}
