//! The proxy loop: shared informers on Services and EndpointSlices; every change marks
//! its Service and wakes one sync, which waits a moment to batch what else arrives,
//! rebuilds the rules of the marked Services only and applies the difference to the
//! kernel. The first sync of a run replaces the whole table, which removes anything stale
//! from an earlier run.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use skiff_runtime::{CancellationToken, Informer, InformerFactory};
use tokio::sync::Notify;

use crate::model::{Endpoint, Protocol, ServicePort, TrafficPolicy};
use crate::nft::{Nft, NftError};
use crate::table::{Delta, ServiceKey, Table};

const BY_SERVICE: &str = "service";
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

#[derive(Clone, Debug)]
pub struct Settings {
    /// This node's name: endpoints on it are "local" for the Local traffic policies.
    pub node_name: String,
    /// The pod network; traffic to a cluster IP from outside it is masqueraded.
    pub cluster_cidr: Option<String>,
    pub nft: Nft,
    /// How long a sync waits after a change for more changes to batch with it.
    pub batch_window: Duration,
    /// Told of every transaction applied (benchmarks, diagnostics); none by default.
    pub observer: Option<tokio::sync::mpsc::UnboundedSender<SyncReport>>,
}

/// One rule transaction the proxy applied.
#[derive(Clone, Debug)]
pub struct SyncReport {
    /// The whole table was (re)installed rather than patched.
    pub full: bool,
    /// When the first informer change of this batch arrived (None for the first sync,
    /// which follows the initial list).
    pub first_change: Option<Instant>,
    /// When `nft` returned: the kernel has committed the transaction.
    pub applied: Instant,
    /// Rebuilding the wanted rules from the informers' caches and computing the script.
    pub build: Duration,
    /// Running the `nft -f` transaction.
    pub apply: Duration,
    /// The script sent to `nft`.
    pub script_bytes: usize,
    pub script_lines: usize,
    /// Size of the whole dynamic ruleset after this sync.
    pub services: usize,
    pub chains: usize,
    pub map_elements: usize,
}

impl Settings {
    pub fn new(node_name: &str) -> Self {
        Self {
            node_name: node_name.into(),
            cluster_cidr: None,
            nft: Nft::default(),
            batch_window: Duration::from_millis(50),
            observer: None,
        }
    }
}

/// Runs the proxy until `shutdown`. Rules stay in place when it stops, so traffic keeps
/// flowing while the agent restarts (as kube-proxy).
pub async fn run(
    client: kube::Client,
    settings: Settings,
    shutdown: CancellationToken,
) -> Result<(), NftError> {
    let factory = InformerFactory::new(client);
    let services = factory.informer::<Service>();
    let slices = factory.informer::<EndpointSlice>();
    slices.add_index(BY_SERVICE, |s: &EndpointSlice| {
        owner(s)
            .map(|(ns, svc)| vec![format!("{ns}/{svc}")])
            .unwrap_or_default()
    });
    let wake = Arc::new(Notify::new());
    let pending: Arc<Mutex<Pending>> = Arc::default();
    {
        let (wake, pending) = (wake.clone(), pending.clone());
        services.on_change(move |c| {
            let svc = c.object();
            let key = (
                svc.metadata.namespace.clone().unwrap_or_default(),
                svc.metadata.name.clone().unwrap_or_default(),
            );
            lock(&pending).mark([Some(key)]);
            wake.notify_one();
        });
    }
    {
        let (wake, pending) = (wake.clone(), pending.clone());
        slices.on_change(move |c| {
            // A slice that moved to another Service (or was deleted) touches both.
            lock(&pending).mark([
                c.old.as_deref().and_then(owner),
                c.new.as_deref().and_then(owner),
            ]);
            wake.notify_one();
        });
    }
    factory.start(shutdown.clone());
    tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        _ = async { services.wait_synced().await; slices.wait_synced().await } => {}
    }
    let node = settings.node_name.as_str();
    let started = Instant::now();
    // Changes from here on are applied by the loop; the first sync covers the rest.
    *lock(&pending) = Pending::default();
    let mut table = Table::new(settings.cluster_cidr.as_deref());
    for svc in services.list() {
        let key = (
            svc.metadata.namespace.clone().unwrap_or_default(),
            svc.metadata.name.clone().unwrap_or_default(),
        );
        let ports = ports_of(&svc, &slices, node);
        table.insert(key, &ports);
    }
    let full = table.ruleset();
    let script = full.full_script(table.cluster_cidr());
    let built = started.elapsed();
    settings.nft.apply(&script).await?;
    report(&settings, &table, &script, true, None, started, built);
    tracing::info!(
        services = table.services(),
        chains = full.chains.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "service proxy rules installed"
    );
    drop(full);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = wake.notified() => {}
        }
        tokio::time::sleep(settings.batch_window).await;
        let started = Instant::now();
        let Pending { dirty, since } = std::mem::take(&mut *lock(&pending));
        // Only the Services something happened to are rebuilt and compared.
        let mut delta = Delta::default();
        for key in dirty {
            let ports = services
                .get_named(Some(&key.0), &key.1)
                .map(|svc| ports_of(&svc, &slices, node))
                .unwrap_or_default();
            table.update(key, &ports, &mut delta);
        }
        let mut script = delta.script();
        if script.is_empty() {
            continue;
        }
        let mut built = started.elapsed();
        let mut full = false;
        if let Err(err) = settings.nft.apply(&script).await {
            // The kernel is not what we think (someone flushed it?): start over.
            tracing::warn!(%err, "incremental rule update refused; reinstalling the table");
            let restart = Instant::now();
            script = table.ruleset().full_script(table.cluster_cidr());
            built += restart.elapsed();
            full = true;
            settings.nft.apply(&script).await?;
        }
        report(&settings, &table, &script, full, since, started, built);
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            lines = script.lines().count(),
            "service proxy rules synced"
        );
    }
}

/// What changed since the last sync.
#[derive(Default)]
struct Pending {
    dirty: HashSet<ServiceKey>,
    /// When the first of these changes arrived.
    since: Option<Instant>,
}

impl Pending {
    fn mark(&mut self, keys: impl IntoIterator<Item = Option<ServiceKey>>) {
        self.dirty.extend(keys.into_iter().flatten());
        self.since.get_or_insert_with(Instant::now);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The Service an EndpointSlice belongs to (its `kubernetes.io/service-name` label).
fn owner(s: &EndpointSlice) -> Option<ServiceKey> {
    let svc = s.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    Some((
        s.metadata.namespace.clone().unwrap_or_default(),
        svc.clone(),
    ))
}

/// Tells the observer, if any, what was just applied.
fn report(
    settings: &Settings,
    table: &Table,
    script: &str,
    full: bool,
    first_change: Option<Instant>,
    started: Instant,
    build: Duration,
) {
    let Some(observer) = &settings.observer else {
        return;
    };
    let applied = Instant::now();
    let (chains, map_elements) = table.size();
    let _ = observer.send(SyncReport {
        full,
        first_change,
        applied,
        build,
        apply: applied.duration_since(started).saturating_sub(build),
        script_bytes: script.len(),
        script_lines: script.lines().count(),
        services: table.services(),
        chains,
        map_elements,
    });
}

/// Every proxied port of one Service with its ready endpoints, sorted (so equal inputs
/// give equal rules).
fn ports_of(svc: &Service, slices: &Informer<EndpointSlice>, node_name: &str) -> Vec<ServicePort> {
    let mut out = Vec::new();
    let Some(spec) = svc.spec.as_ref() else {
        return out;
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return out;
    }
    let cluster_ips: Vec<Ipv4Addr> = spec
        .cluster_ips
        .clone()
        .or_else(|| spec.cluster_ip.clone().map(|ip| vec![ip]))
        .unwrap_or_default()
        .iter()
        .filter_map(|ip| ip.parse().ok())
        .collect();
    // Headless Services have no proxy rules: DNS names their endpoints directly.
    if cluster_ips.is_empty() {
        return out;
    }
    let ns = svc.metadata.namespace.clone().unwrap_or_default();
    let name = svc.metadata.name.clone().unwrap_or_default();
    let affinity_seconds = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .unwrap_or(10800) as u32
    });
    let policy = |p: Option<&String>| match p.map(String::as_str) {
        Some("Local") => TrafficPolicy::Local,
        _ => TrafficPolicy::Cluster,
    };
    let mut external_ips: Vec<Ipv4Addr> = spec
        .external_ips
        .iter()
        .flatten()
        .filter_map(|ip| ip.parse().ok())
        .collect();
    if spec.type_.as_deref() == Some("LoadBalancer") {
        for ing in svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .into_iter()
            .flatten()
        {
            if let Some(ip) = ing.ip.as_ref().and_then(|ip| ip.parse().ok()) {
                external_ips.push(ip);
            }
        }
    }
    let node_ports = matches!(
        spec.type_.as_deref(),
        Some("NodePort") | Some("LoadBalancer")
    );
    let svc_slices = slices.by_index(BY_SERVICE, &format!("{ns}/{name}"));
    for p in spec.ports.iter().flatten() {
        let Some(protocol) = Protocol::parse(p.protocol.as_deref()) else {
            continue;
        };
        let port_name = p.name.clone().unwrap_or_default();
        let mut endpoints = Vec::new();
        for slice in &svc_slices {
            if slice.address_type != "IPv4" {
                continue;
            }
            let Some(target) = slice.ports.iter().flatten().find(|sp| {
                sp.name.clone().unwrap_or_default() == port_name
                    && Protocol::parse(sp.protocol.as_deref()) == Some(protocol)
            }) else {
                continue;
            };
            let Some(target_port) = target.port else {
                continue;
            };
            for e in &slice.endpoints {
                let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
                if !ready {
                    continue;
                }
                let Some(ip) = e.addresses.first().and_then(|a| a.parse().ok()) else {
                    continue;
                };
                let ep = Endpoint {
                    ip,
                    port: target_port as u16,
                    local: e.node_name.as_deref() == Some(node_name),
                };
                if !endpoints.contains(&ep) {
                    endpoints.push(ep);
                }
            }
        }
        endpoints.sort();
        out.push(ServicePort {
            namespace: ns.clone(),
            name: name.clone(),
            port_name,
            protocol,
            cluster_ips: cluster_ips.clone(),
            port: p.port as u16,
            node_port: if node_ports {
                p.node_port.map(|n| n as u16)
            } else {
                None
            },
            external_ips: external_ips.clone(),
            affinity_seconds,
            internal_policy: policy(spec.internal_traffic_policy.as_ref()),
            external_policy: policy(spec.external_traffic_policy.as_ref()),
            endpoints,
        });
    }
    out.sort_by(|a, b| {
        (&a.namespace, &a.name, &a.port_name).cmp(&(&b.namespace, &b.name, &b.port_name))
    });
    out
}
