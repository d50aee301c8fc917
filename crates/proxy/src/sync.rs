//! The proxy loop: shared informers on Services and EndpointSlices; every change wakes
//! one sync, which waits a moment to batch what else arrives, rebuilds the wanted rules
//! (cheap: pure data) and applies only the difference. The first sync of a run replaces
//! the whole table, which removes anything stale from an earlier run.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use skiff_runtime::{CancellationToken, Informer, InformerFactory};
use tokio::sync::Notify;

use crate::model::{Endpoint, Protocol, ServicePort, TrafficPolicy};
use crate::nft::{Nft, NftError};
use crate::rules::Ruleset;

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
}

impl Settings {
    pub fn new(node_name: &str) -> Self {
        Self {
            node_name: node_name.into(),
            cluster_cidr: None,
            nft: Nft::default(),
            batch_window: Duration::from_millis(50),
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
        let ns = s.metadata.namespace.clone().unwrap_or_default();
        s.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
            .map(|svc| vec![format!("{ns}/{svc}")])
            .unwrap_or_default()
    });
    let wake = Arc::new(Notify::new());
    {
        let wake = wake.clone();
        services.on_change(move |_| wake.notify_one());
    }
    {
        let wake = wake.clone();
        slices.on_change(move |_| wake.notify_one());
    }
    factory.start(shutdown.clone());
    tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        _ = async { services.wait_synced().await; slices.wait_synced().await } => {}
    }
    let cidr = settings.cluster_cidr.as_deref();
    let mut applied = Ruleset::build(
        &service_ports(&services, &slices, &settings.node_name),
        cidr,
    );
    let started = Instant::now();
    settings.nft.apply(&applied.full_script(cidr)).await?;
    tracing::info!(
        services = services.len(),
        chains = applied.chains.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "service proxy rules installed"
    );
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = wake.notified() => {}
        }
        tokio::time::sleep(settings.batch_window).await;
        let started = Instant::now();
        let want = Ruleset::build(
            &service_ports(&services, &slices, &settings.node_name),
            cidr,
        );
        if want == applied {
            continue;
        }
        let script = applied.diff_script(&want);
        if let Err(err) = settings.nft.apply(&script).await {
            // The kernel is not what we think (someone flushed it?): start over.
            tracing::warn!(%err, "incremental rule update refused; reinstalling the table");
            settings.nft.apply(&want.full_script(cidr)).await?;
        }
        applied = want;
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            lines = script.lines().count(),
            "service proxy rules synced"
        );
    }
}

/// Every proxied Service port with its ready endpoints, sorted (so equal inputs give
/// equal rules).
pub fn service_ports(
    services: &Informer<Service>,
    slices: &Informer<EndpointSlice>,
    node_name: &str,
) -> Vec<ServicePort> {
    let mut out = Vec::new();
    for svc in services.list() {
        let Some(spec) = svc.spec.as_ref() else {
            continue;
        };
        if spec.type_.as_deref() == Some("ExternalName") {
            continue;
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
            continue;
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
    }
    out.sort_by(|a, b| {
        (&a.namespace, &a.name, &a.port_name).cmp(&(&b.namespace, &b.name, &b.port_name))
    });
    out
}
