//! The node agent inside `skiff server` (a local node, on by default) and as `skiff
//! agent` on its own: the node flags (k3s/kubelet names), the runtime (our own
//! containerd under `<data-dir>/agent/containerd`, or one named with
//! `--container-runtime-endpoint`), and the agent's client identity.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use skiff_runtime::CancellationToken;

/// Flags every node agent takes.
#[derive(Args, Clone, Debug)]
pub struct NodeArgs {
    /// The Node's name [default: the host name].
    #[arg(long)]
    pub node_name: Option<String>,
    /// The node's address other nodes reach it at [default: the first non-loopback IPv4].
    #[arg(long)]
    pub node_ip: Option<IpAddr>,
    /// CRI socket of a runtime to use instead of starting our own containerd.
    #[arg(long)]
    pub container_runtime_endpoint: Option<String>,
    /// DNS server pods with dnsPolicy ClusterFirst use [default: the 10th address of the
    /// server's --service-cidr, 10.43.0.10].
    #[arg(long, value_delimiter = ',')]
    pub cluster_dns: Vec<IpAddr>,
    /// Port of the agent's streaming server (logs, exec, port-forward).
    #[arg(long, default_value_t = 10250)]
    pub kubelet_port: u16,
    /// Pods this node runs at most.
    #[arg(long, default_value_t = 110)]
    pub max_pods: u32,
    /// Name of the Linux bridge pods attach to.
    #[arg(long, default_value = "skiff0")]
    pub cni_bridge: String,
    /// Extra node labels: key=value,...
    #[arg(long, value_delimiter = ',')]
    pub node_labels: Vec<String>,
    /// Run no service proxy on this node (cluster IPs, node ports and load-balancer
    /// addresses then do not work here).
    #[arg(long)]
    pub disable_kube_proxy: bool,
    /// Serve no cluster DNS on this node (the kube-dns Service then uses other nodes').
    #[arg(long)]
    pub disable_dns: bool,
    /// Resolver configuration for pods with dnsPolicy Default; the cluster DNS forwards
    /// names outside the cluster to its nameservers.
    #[arg(long, default_value = "/etc/resolv.conf")]
    pub resolv_conf: PathBuf,
    /// The node Lease's duration (the kubelet's nodeLeaseDurationSeconds); the agent
    /// renews it every quarter of that. Shorter leases let the control plane notice a
    /// lost node sooner (with a matching --node-monitor-grace-period on the server).
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(i32).range(4..=3600))]
    pub node_lease_duration_seconds: i32,
}

impl NodeArgs {
    pub fn node_name(&self) -> String {
        self.node_name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(skiff_agent::config::hostname)
            .to_lowercase()
    }

    /// The agent's configuration; `agent_dir` is `<data-dir>/agent`.
    pub fn config(
        &self,
        agent_dir: PathBuf,
        cluster_domain: &str,
        cri_endpoint: &str,
    ) -> Result<skiff_agent::Config> {
        let node_ip = match self.node_ip {
            Some(ip) => ip,
            None => skiff_agent::config::first_ipv4()
                .context("no non-loopback IPv4 address found: give --node-ip")?,
        };
        let mut config =
            skiff_agent::Config::new(&self.node_name(), node_ip, agent_dir, cri_endpoint);
        if !self.cluster_dns.is_empty() {
            config.cluster_dns = self.cluster_dns.clone();
        }
        config.cluster_domain = cluster_domain.to_string();
        config.kubelet_port = self.kubelet_port;
        config.max_pods = self.max_pods;
        config.cni_bridge = self.cni_bridge.clone();
        config.resolv_conf = self.resolv_conf.clone();
        config.lease_duration_seconds = self.node_lease_duration_seconds;
        for kv in &self.node_labels {
            let (k, v) = kv
                .split_once('=')
                .with_context(|| format!("--node-labels: {kv:?} is not key=value"))?;
            config.node_labels.insert(k.trim().into(), v.trim().into());
        }
        Ok(config)
    }
}

/// Starts (or connects to) the runtime, runs the agent until `shutdown`, then stops the
/// containerd it started. Pods keep running across agent restarts.
pub async fn run(
    client: kube::Client,
    ca_pem: String,
    agent_dir: &Path,
    cluster_domain: &str,
    cluster_cidr: Option<String>,
    args: &NodeArgs,
    shutdown: CancellationToken,
) -> Result<()> {
    let cni_conf_dir = agent_dir.join("cni").join("net.d");
    let containerd = match &args.container_runtime_endpoint {
        Some(endpoint) => skiff_cri::Containerd::existing(endpoint)
            .await
            .with_context(|| format!("connecting to the container runtime at {endpoint}"))?,
        None => {
            let opts = skiff_cri::ContainerdOptions::new(agent_dir, &cni_conf_dir);
            skiff_cri::Containerd::start(opts)
                .await
                .context("starting containerd")?
        }
    };
    let endpoint = containerd.socket().display().to_string();
    let mut config = args.config(agent_dir.to_path_buf(), cluster_domain, &endpoint)?;
    config.cni_conf_dir = cni_conf_dir;
    let services = crate::node_services::Options {
        node_name: config.node_name.clone(),
        node_ip: config.node_ip,
        cluster_domain: cluster_domain.to_string(),
        cluster_cidr,
        cluster_dns: config.cluster_dns.clone(),
        resolv_conf: config.resolv_conf.clone(),
        proxy: !args.disable_kube_proxy,
        dns: !args.disable_dns,
    };
    match crate::node_services::start(client.clone(), &services, shutdown.clone()).await {
        Ok(annotations) => config.node_annotations.extend(annotations),
        Err(err) => {
            containerd.stop().await;
            return Err(err);
        }
    }
    tracing::info!(node = %config.node_name, ip = %config.node_ip, runtime = %endpoint, "starting the node agent");
    // The API server reaches logs, exec, attach and port-forward here.
    let listener = tokio::net::TcpListener::bind((IpAddr::from([0, 0, 0, 0]), config.kubelet_port))
        .await
        .with_context(|| {
            format!(
                "binding the agent's port {} (in use? give --kubelet-port)",
                config.kubelet_port
            )
        })?;
    let server = skiff_agent::server::ServerConfig {
        ca_pem,
        cri: containerd.cri().clone(),
        serving_names: vec![config.node_name.clone(), config.node_ip.to_string()],
    };
    let serving = tokio::spawn(skiff_agent::server::serve(listener, server));
    let plugins = skiff_agent::Plugins::standard(config.agent_dir.clone(), client.clone());
    let result = skiff_agent::run(client, config, plugins, shutdown).await;
    serving.abort();
    containerd.stop().await;
    result.context("node agent")
}

/// The agent's kubeconfig: a client certificate for `system:node:<name>` in
/// `system:nodes`, written to `<data-dir>/agent/cred/kubelet.kubeconfig`.
pub fn node_kubeconfig(
    running: &skiff_apiserver::Running,
    agent_dir: &Path,
    node: &str,
) -> Result<PathBuf> {
    let user = format!("system:node:{node}");
    let (cert, key) = running
        .pki
        .issue_client(&user, &["system:nodes"])
        .with_context(|| format!("issuing a client certificate for {user}"))?;
    let server = format!("https://{}", running.app.server_address);
    let yaml = running.pki.kubeconfig(&server, &user, &cert, &key);
    let dir = agent_dir.join("cred");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("kubelet.kubeconfig");
    crate::components::write_private(&path, &yaml)?;
    Ok(path)
}

/// The cluster CA a kubeconfig trusts (PEM): client certificates the agent's server
/// accepts must chain to it.
pub fn ca_from_kubeconfig(path: &Path) -> Result<String> {
    use base64::Engine;
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("reading {}", path.display()))?;
    let cluster = kubeconfig
        .clusters
        .first()
        .and_then(|c| c.cluster.as_ref())
        .with_context(|| format!("{} names no cluster", path.display()))?;
    if let Some(data) = &cluster.certificate_authority_data {
        let pem = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .with_context(|| {
                format!(
                    "{}: certificate-authority-data is not base64",
                    path.display()
                )
            })?;
        return String::from_utf8(pem).context("the cluster CA is not PEM text");
    }
    if let Some(file) = &cluster.certificate_authority {
        return std::fs::read_to_string(file).with_context(|| format!("reading {file}"));
    }
    anyhow::bail!(
        "{} has no cluster CA (certificate-authority-data)",
        path.display()
    )
}
