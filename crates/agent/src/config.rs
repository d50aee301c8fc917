//! What one node agent is told: who it is, where it keeps its files, how pods reach DNS,
//! and which container runtime it talks to.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Config {
    /// The Node's name (the host name by default, lower-cased).
    pub node_name: String,
    /// The address other nodes and the API server reach this node at (InternalIP).
    pub node_ip: IpAddr,
    /// `<data-dir>/agent`: containerd state, images, manifests, pod dirs, logs, CNI.
    pub agent_dir: PathBuf,
    /// Nameservers pods with dnsPolicy ClusterFirst get (`--cluster-dns`).
    pub cluster_dns: Vec<IpAddr>,
    /// The cluster's DNS domain (`--cluster-domain`).
    pub cluster_domain: String,
    /// The CRI socket (containerd's, started by the caller or an existing one).
    pub cri_endpoint: String,
    /// Port the agent's streaming server listens on (daemonEndpoints.kubeletEndpoint).
    pub kubelet_port: u16,
    /// Name of the Linux bridge pods attach to (tests use a unique one each).
    pub cni_bridge: String,
    /// Where the CNI conflist is written; containerd's CRI plugin reads it from there.
    pub cni_conf_dir: PathBuf,
    /// leaseDurationSeconds of the node Lease (upstream: 40); it is renewed every quarter
    /// of that (see [`Config::lease_renew_interval`]).
    pub lease_duration_seconds: i32,
    /// Seconds between node status posts when nothing changed (upstream: 5 min; the
    /// conditions' heartbeat times move then).
    pub status_report_interval: Duration,
    /// Pods the node takes (`--max-pods`).
    pub max_pods: u32,
    /// How often the runtime is listed to notice containers that changed state (the
    /// kubelet's PLEG relist period, 1 s).
    pub relist_period: Duration,
    /// Program routes to other nodes' pod subnets through their InternalIP.
    pub program_routes: bool,
    /// Extra labels the node registers with.
    pub node_labels: std::collections::BTreeMap<String, String>,
    /// The resolver configuration pods with dnsPolicy Default get, and where the cluster
    /// DNS forwards other names (the kubelet's `--resolv-conf`).
    pub resolv_conf: PathBuf,
    /// Annotations the node registers with (what else runs on it: the service proxy,
    /// cluster DNS). On a restart, `skiff.dev/` annotations not listed here are removed.
    pub node_annotations: std::collections::BTreeMap<String, String>,
}

impl Config {
    /// How often the node Lease is renewed: a quarter of its duration, as the kubelet
    /// does (10 s for the default 40 s).
    pub fn lease_renew_interval(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.lease_duration_seconds).unwrap_or(0) * 250)
            .max(Duration::from_secs(1))
    }

    /// A configuration with upstream's defaults for everything but identity and paths.
    pub fn new(node_name: &str, node_ip: IpAddr, agent_dir: PathBuf, cri_endpoint: &str) -> Self {
        Self {
            node_name: node_name.to_lowercase(),
            node_ip,
            cni_conf_dir: agent_dir.join("cni").join("net.d"),
            agent_dir,
            cluster_dns: vec![IpAddr::V4(Ipv4Addr::new(10, 43, 0, 10))],
            cluster_domain: "cluster.local".into(),
            cri_endpoint: cri_endpoint.into(),
            kubelet_port: 10250,
            cni_bridge: "skiff0".into(),
            lease_duration_seconds: 40,
            status_report_interval: Duration::from_secs(60),
            max_pods: 110,
            relist_period: Duration::from_secs(1),
            program_routes: true,
            node_labels: Default::default(),
            node_annotations: Default::default(),
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
        }
    }

    pub fn manifests_dir(&self) -> PathBuf {
        self.agent_dir.join("manifests")
    }

    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.agent_dir.join("pods").join(uid)
    }

    /// The sandbox's CRI log directory: `logs/pods/<ns>_<name>_<uid>`.
    pub fn pod_log_dir(&self, namespace: &str, name: &str, uid: &str) -> PathBuf {
        self.agent_dir
            .join("logs")
            .join("pods")
            .join(format!("{namespace}_{name}_{uid}"))
    }
}

/// The host name as the kubelet takes it for a node name: lower-cased.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_lowercase())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The first non-loopback IPv4 address of this machine, if any.
pub fn first_ipv4() -> Option<IpAddr> {
    let ifaces = if_addrs::get_if_addrs().ok()?;
    // The address of the interface the default route leaves by, as the kubelet picks;
    // never a pod bridge's (which also holds a private address, and may sort first).
    let default_iface = default_route_interface();
    if let Some(ip) = ifaces
        .iter()
        .filter(|i| Some(&i.name) == default_iface.as_ref())
        .find_map(|i| match i.ip() {
            IpAddr::V4(ip) => Some(IpAddr::V4(ip)),
            _ => None,
        })
    {
        return Some(ip);
    }
    let mut v4: Vec<_> = ifaces
        .iter()
        .filter(|i| !i.is_loopback())
        .filter(|i| !is_pod_interface(&i.name))
        .filter_map(|i| match i.ip() {
            IpAddr::V4(ip) if !ip.is_link_local() => Some(ip),
            _ => None,
        })
        .collect();
    v4.sort();
    v4.first().copied().map(IpAddr::V4)
}

/// Bridges and veths made for pods (ours, CNI's, docker's) are never the node's address.
fn is_pod_interface(name: &str) -> bool {
    ["skiff", "cni", "veth", "docker", "flannel"]
        .iter()
        .any(|p| name.starts_with(p))
}

/// The interface of the IPv4 default route, from /proc/net/route.
fn default_route_interface() -> Option<String> {
    let table = std::fs::read_to_string("/proc/net/route").ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.len() > 2 && fields[1] == "00000000").then(|| fields[0].to_string())
    })
}
