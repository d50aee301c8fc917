//! What every node runs beside its pods so Services work: the service proxy (nftables
//! rules for cluster IPs, node ports and load-balancer addresses) and the cluster DNS,
//! answering on the node's address. The node advertises both with annotations: the
//! controller manager points the `kube-dns` Service at the nodes that serve DNS and
//! gives LoadBalancer Services the addresses of the nodes that proxy.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use skiff_runtime::{CancellationToken, InformerFactory};

/// The node's annotation naming the address its cluster DNS answers on (port 53).
pub const DNS_ANNOTATION: &str = skiff_controllers::clusterdns::NODE_DNS_ANNOTATION;
/// The node's annotation saying its service proxy runs (and which mode).
pub const PROXY_ANNOTATION: &str = skiff_controllers::servicelb::NODE_PROXY_ANNOTATION;

pub struct Options {
    pub node_name: String,
    pub node_ip: IpAddr,
    pub cluster_domain: String,
    pub cluster_cidr: Option<String>,
    /// The cluster DNS addresses pods are told to use: never forwarded to.
    pub cluster_dns: Vec<IpAddr>,
    /// Where names outside the cluster go: this file's nameservers.
    pub resolv_conf: PathBuf,
    pub proxy: bool,
    pub dns: bool,
}

/// Starts what is enabled; returns the Node annotations advertising it. The DNS port is
/// bound before this returns, so a busy port is an error now rather than a silent gap.
pub async fn start(
    client: kube::Client,
    opts: &Options,
    shutdown: CancellationToken,
) -> Result<BTreeMap<String, String>> {
    let mut annotations = BTreeMap::new();
    if opts.proxy {
        bridged_traffic_through_netfilter().await;
        let mut settings = skiff_proxy::Settings::new(&opts.node_name);
        settings.cluster_cidr = opts.cluster_cidr.clone();
        let client = client.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            // Rules stay in the kernel if the proxy stops, so Services keep working; a
            // failure is logged with what to check and retried.
            loop {
                match skiff_proxy::run(client.clone(), settings.clone(), stop.clone()).await {
                    Ok(()) => return,
                    Err(err) => tracing::error!(
                        "the service proxy failed: {err} (is nftables installed and the \
                         kernel's nf_tables available?); retrying in 5 s"
                    ),
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
            }
        });
        annotations.insert(PROXY_ANNOTATION.to_string(), "nftables".to_string());
    }
    if opts.dns {
        let upstreams: Vec<SocketAddr> = skiff_dns::upstreams_from_resolv_conf(&opts.resolv_conf)
            .into_iter()
            .filter(|u| u.ip() != opts.node_ip && !opts.cluster_dns.contains(&u.ip()))
            .collect();
        let factory = InformerFactory::new(client);
        let view = Arc::new(skiff_dns::InformerView::new(&factory));
        factory.start(shutdown.clone());
        let settings = skiff_dns::Settings {
            listen: vec![SocketAddr::new(opts.node_ip, 53)],
            domain: opts.cluster_domain.clone(),
            upstreams,
        };
        skiff_dns::serve(settings, view, shutdown)
            .await
            .with_context(|| {
                format!(
                    "starting the cluster DNS on {}:53 (another DNS server there? stop it or \
                     give --disable-dns)",
                    opts.node_ip
                )
            })?;
        annotations.insert(DNS_ANNOTATION.to_string(), opts.node_ip.to_string());
    }
    Ok(annotations)
}

/// Pods on one bridge talk to each other below IP, so a reply from a Service's backend to
/// a client on the same node would skip the conntrack entry that un-NATs it (the client
/// would see the pod's address, not the cluster IP). kube-proxy needs the same:
/// `br_netfilter` loaded and `net.bridge.bridge-nf-call-iptables=1` (per namespace).
async fn bridged_traffic_through_netfilter() {
    let knob = Path::new("/proc/sys/net/bridge/bridge-nf-call-iptables");
    if !knob.exists() {
        let _ = tokio::process::Command::new("modprobe")
            .arg("br_netfilter")
            .status()
            .await;
    }
    if let Err(err) = std::fs::write(knob, "1") {
        tracing::warn!(
            "cannot set net.bridge.bridge-nf-call-iptables=1 ({err}): a pod reaching a Service \
             whose backend is on the same node may get no answer; load br_netfilter \
             (modprobe br_netfilter) and restart"
        );
    }
}
