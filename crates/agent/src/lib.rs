//! The node agent, Skiff's kubelet: it registers its Node and keeps its Lease, runs the
//! pods bound to it as real containers through CRI, probes them, mounts their volumes,
//! reports their status as upstream does, and serves logs, exec, attach and
//! port-forward to the API server.
//!
//! Parts: [`heartbeat`] (Node + Lease), [`network`] (CNI config for the node's pod
//! subnet, routes to other nodes), [`manager`] (which pods run here, the per-pod work
//! queue, the runtime relist), [`pod`] (CRI configs, status, back-off, the per-pod
//! sync), [`env`] (container environments), [`staticpods`] (manifests and mirror pods).
//!
//! What it is not: it does not start containerd (the caller does, or names an existing
//! runtime) and does not allocate pod subnets (the node IPAM controller does).

pub mod cgroups;
pub mod config;
pub mod env;
pub mod heartbeat;
pub mod hooks;
pub mod manager;
pub mod network;
pub mod node;
pub mod plugins;
pub mod pod;
pub mod probe;
pub mod runtime;
pub mod server;
pub mod staticpods;
pub mod sysinfo;
pub mod volumes;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::runtime::watcher;
use skiff_runtime::{CancellationToken, InformerFactory};

pub use config::Config;
pub use plugins::Plugins;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("creating {path}: {source}")]
    Dir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the container runtime at {endpoint} did not answer within {waited:?}: {last}")]
    Runtime {
        endpoint: String,
        waited: Duration,
        last: String,
    },
}

/// How many pods are synced at once (each pod by one worker at a time).
const POD_WORKERS: usize = 16;

/// Connects to the runtime, waiting up to `wait` for it to come up.
pub async fn connect_runtime(
    endpoint: &str,
    wait: Duration,
) -> Result<runtime::Runtime, AgentError> {
    let started = std::time::Instant::now();
    loop {
        let last = match skiff_cri::connect(endpoint).await {
            Ok(cri) => {
                let rt = runtime::Runtime::new(cri);
                match rt.version().await {
                    Ok(_) => return Ok(rt),
                    Err(e) => e.to_string(),
                }
            }
            Err(e) => e.to_string(),
        };
        if started.elapsed() >= wait {
            return Err(AgentError::Runtime {
                endpoint: endpoint.into(),
                waited: wait,
                last,
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs the agent until `shutdown`. Pods keep running when it stops: a later agent
/// adopts them.
pub async fn run(
    client: kube::Client,
    config: Config,
    plugins: Plugins,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    for dir in [
        config.agent_dir.clone(),
        config.manifests_dir(),
        config.agent_dir.join("pods"),
        config.agent_dir.join("logs").join("pods"),
        config.cni_conf_dir.clone(),
    ] {
        std::fs::create_dir_all(&dir).map_err(|source| AgentError::Dir {
            path: dir.display().to_string(),
            source,
        })?;
    }
    let config = Arc::new(config);
    let runtime = connect_runtime(&config.cri_endpoint, Duration::from_secs(60)).await?;
    let runtime_version = runtime
        .version()
        .await
        .unwrap_or_else(|_| "containerd://unknown".into());
    let machine = sysinfo::machine(&config.agent_dir);
    let (health_tx, health_rx) = tokio::sync::watch::channel(node::Health {
        network_not_ready: Some("cni config uninitialized".into()),
    });
    let informers = InformerFactory::new(client.clone());
    let nodes = informers.informer::<Node>();
    let pods = informers.informer_with::<Pod>(
        "agent-pods",
        watcher::Config::default().fields(&format!("spec.nodeName={}", config.node_name)),
    );
    let services = informers.informer::<Service>();
    let (wake_tx, mut wake_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let probes = plugins
        .probes
        .as_ref()
        .map(|f| f(runtime.cri.clone(), wake_tx.clone()));
    let probe_events = probes.as_ref().and_then(|p| p.events());
    let manager = manager::Manager::new(
        config.clone(),
        client.clone(),
        runtime.clone(),
        machine.clone(),
        plugins.volumes.clone(),
        probes,
        services,
    );
    manager.watch_api(&pods);
    informers.start(shutdown.clone());

    let mut tasks = Vec::new();
    if let Some(events) = probe_events {
        tasks.push(tokio::spawn(record_probe_events(
            events,
            pods.clone(),
            manager.recorder.clone(),
            shutdown.clone(),
        )));
    }
    let hb = heartbeat::Heartbeat::new(client.clone(), config.clone(), machine, runtime_version);
    tasks.push(tokio::spawn(hb.run(health_rx, shutdown.clone())));
    tasks.push(tokio::spawn(network::run(
        config.clone(),
        nodes.clone(),
        health_tx,
        shutdown.clone(),
    )));
    let (scanned_tx, scanned_rx) = tokio::sync::oneshot::channel();
    tasks.push(tokio::spawn(staticpods::run(
        manager.clone(),
        pods.clone(),
        nodes,
        Duration::from_secs(5),
        scanned_tx,
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(manager.clone().relist(shutdown.clone())));
    {
        let m = manager.clone();
        let pods = pods.clone();
        tasks.push(tokio::spawn(async move {
            pods.wait_synced().await;
            let _ = scanned_rx.await;
            m.synced.store(true, std::sync::atomic::Ordering::Release);
        }));
    }
    {
        let m = manager.clone();
        let stop = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    uid = wake_rx.recv() => match uid {
                        Some(uid) => m.queue.add(uid),
                        None => return,
                    },
                }
            }
        }));
    }
    let m = manager.clone();
    skiff_runtime::worker::run(
        manager.queue.clone(),
        POD_WORKERS,
        shutdown.clone(),
        move |uid| {
            let m = m.clone();
            async move { m.sync(uid).await }
        },
    )
    .await;
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

/// Failed probes become the kubelet's `Unhealthy` (or `ProbeWarning`) events on the pod,
/// pointing at the container.
async fn record_probe_events(
    mut events: tokio::sync::mpsc::UnboundedReceiver<probe::ProbeEvent>,
    pods: skiff_runtime::Informer<Pod>,
    recorder: skiff_runtime::events::Recorder,
    shutdown: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            e = events.recv() => match e {
                Some(e) => e,
                None => return,
            },
        };
        let Some(pod) = pods
            .list()
            .into_iter()
            .find(|p| p.metadata.uid.as_deref() == Some(event.pod_uid.as_str()))
        else {
            continue;
        };
        let mut object = skiff_runtime::events::reference(pod.as_ref());
        object.field_path = Some(format!("spec.containers{{{}}}", event.container_name));
        recorder.record(
            object,
            skiff_runtime::events::EventType::Warning,
            event.reason(),
            event.message.clone(),
        );
    }
}
