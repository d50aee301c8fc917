//! `skiff`: one binary that runs a Kubernetes-compatible cluster.
//!
//! `skiff server` starts the control plane: the API server over the embedded store or
//! etcd, and beside it the scheduler and controller manager as clients of it, each behind
//! leader election. Flag names follow k3s (or the upstream component) where one exists.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use skiff_runtime::CancellationToken;

mod addons;
mod agent;
mod components;
mod images;
mod node_services;
mod tokens;

#[derive(Parser)]
#[command(
    name = "skiff",
    version,
    about = "A Kubernetes-compatible cluster in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane of a cluster: API server, scheduler, controller manager.
    Server(Box<ServerArgs>),
    /// Run only the controller manager, against an API server named by a kubeconfig.
    ControllerManager(ControllerManagerArgs),
    /// Run only the scheduler, against an API server named by a kubeconfig.
    Scheduler(SchedulerArgs),
    /// Run a node agent (Skiff's kubelet) against an API server named by a kubeconfig.
    Agent(Box<AgentArgs>),
    /// Run simulated ("hollow") nodes, like kubemark/kwok: each registers a Node,
    /// heartbeats its Lease and runs the pods bound to it without containers.
    HollowNodes(HollowArgs),
    /// Build images without downloading anything (for nodes with no registry access).
    Images(images::ImagesArgs),
    /// Manage join tokens (bootstrap tokens) of a cluster: create, list, delete.
    Token(tokens::TokenArgs),
}

#[derive(Args)]
struct SchedulerArgs {
    /// Kubeconfig of the cluster to schedule for.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: PathBuf,
}

async fn scheduler(args: SchedulerArgs) -> Result<()> {
    let client = skiff_runtime::client::from_kubeconfig_file(&args.kubeconfig).await?;
    run_until_signal(|shutdown| {
        components::scheduler(client, skiff_scheduler::Settings::default(), shutdown)
    })
    .await
}

#[derive(Args)]
struct HollowArgs {
    /// Kubeconfig of the cluster to join.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: PathBuf,
    /// How many nodes to simulate.
    #[arg(long, default_value_t = 1)]
    count: u32,
    /// Nodes are named <prefix><index>.
    #[arg(long, default_value = "hollow-node-")]
    name_prefix: String,
    /// Index of the first node (so several processes can run disjoint sets).
    #[arg(long, default_value_t = 0)]
    start_index: u32,
    /// CPU capacity of each node.
    #[arg(long, default_value = "4")]
    cpu: String,
    /// Memory capacity of each node.
    #[arg(long, default_value = "16Gi")]
    memory: String,
    /// Ephemeral storage capacity of each node.
    #[arg(long, default_value = "100Gi")]
    ephemeral_storage: String,
    /// Pods each node can run.
    #[arg(long, default_value_t = 110)]
    max_pods: u32,
    /// Extra node labels: key=value,...
    #[arg(long, default_value = "")]
    node_labels: String,
    /// Taints the nodes register with: key=value:Effect,...
    #[arg(long, default_value = "")]
    register_with_taints: String,
    /// Seconds between Lease renewals.
    #[arg(long, default_value_t = 10)]
    node_heartbeat_interval: u64,
    /// leaseDurationSeconds of the node Leases.
    #[arg(long, default_value_t = 40)]
    node_lease_duration_seconds: i32,
    /// Seconds between node status re-posts when nothing changed.
    #[arg(long, default_value_t = 60)]
    node_status_report_frequency: u64,
    /// Writes in flight to the API server at most.
    #[arg(long, default_value_t = 48)]
    max_in_flight: usize,
}

async fn hollow_nodes(args: HollowArgs) -> Result<()> {
    let config = skiff_hollow::Config {
        count: args.count,
        name_prefix: args.name_prefix,
        start_index: args.start_index,
        cpu: args.cpu,
        memory: args.memory,
        ephemeral_storage: args.ephemeral_storage,
        pods: args.max_pods,
        labels: skiff_hollow::parse_labels(&args.node_labels).context("--node-labels")?,
        taints: skiff_hollow::parse_taints(&args.register_with_taints)
            .context("--register-with-taints")?,
        heartbeat_interval: Duration::from_secs(args.node_heartbeat_interval.max(1)),
        lease_duration_seconds: args.node_lease_duration_seconds,
        status_update_interval: Duration::from_secs(args.node_status_report_frequency.max(1)),
        max_in_flight: args.max_in_flight.max(1),
    };
    let client = skiff_runtime::client::from_kubeconfig_file(&args.kubeconfig).await?;
    let shutdown = CancellationToken::new();
    let mut task = tokio::spawn(skiff_hollow::run(client, config, shutdown.clone()));
    tokio::select! {
        signal = wait_for_signal() => {
            signal?;
            shutdown.cancel();
            task.await.context("hollow nodes task")??;
        }
        // run() ends by itself only on a bad configuration.
        ended = &mut task => ended.context("hollow nodes task")??,
    }
    Ok(())
}

#[derive(Args)]
struct ControllerManagerArgs {
    /// Kubeconfig of the cluster to manage.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: PathBuf,
    /// Loops to run (upstream names, e.g. replicaset,deployment; `*` for all, `-name`
    /// to leave one out); all when not given.
    #[arg(long, value_delimiter = ',')]
    controllers: Vec<String>,
    #[command(flatten)]
    loops: LoopArgs,
}

/// Settings of the control loops (upstream kube-controller-manager flag names).
#[derive(Args, Clone)]
struct LoopArgs {
    /// How long a node may go without a heartbeat before it is marked unhealthy
    /// (seconds).
    #[arg(long, value_name = "SECONDS", default_value_t = 40)]
    node_monitor_grace_period: u64,
    /// Terminated pods kept before the oldest are deleted.
    #[arg(long, default_value_t = 12500)]
    terminated_pod_gc_threshold: usize,
    /// Range each node's pod subnet (spec.podCIDR) is allocated from.
    #[arg(long, default_value = "10.42.0.0/16")]
    cluster_cidr: String,
    /// Prefix length of each node's pod subnet.
    #[arg(long, default_value_t = 24)]
    node_cidr_mask_size: u8,
    /// CA certificate the CSR signer signs with [server default: its own CA].
    #[arg(long)]
    cluster_signing_cert_file: Option<PathBuf>,
    /// CA key the CSR signer signs with [server default: its own CA's key].
    #[arg(long)]
    cluster_signing_key_file: Option<PathBuf>,
    /// Longest validity of signed certificates (e.g. 8760h).
    #[arg(long, default_value = "8760h")]
    cluster_signing_duration: String,
    /// CA published as the kube-root-ca.crt ConfigMap in every namespace [server
    /// default: its own CA].
    #[arg(long)]
    root_ca_file: Option<PathBuf>,
}

impl LoopArgs {
    fn settings(&self) -> Result<skiff_controllers::Settings> {
        let cluster_cidr: skiff_controllers::nodeipam::Ipv4Cidr = self
            .cluster_cidr
            .parse()
            .map_err(|e: String| anyhow::anyhow!("--cluster-cidr: {e}"))?;
        if self.node_cidr_mask_size < cluster_cidr.prefix || self.node_cidr_mask_size > 30 {
            bail!(
                "--node-cidr-mask-size {} must be between the --cluster-cidr prefix ({}) and 30",
                self.node_cidr_mask_size,
                cluster_cidr.prefix
            );
        }
        let defaults = skiff_controllers::Settings::default();
        Ok(skiff_controllers::Settings {
            node_monitor_grace_period: Duration::from_secs(self.node_monitor_grace_period.max(1)),
            terminated_pod_gc_threshold: self.terminated_pod_gc_threshold,
            cluster_cidr,
            node_cidr_mask_size: self.node_cidr_mask_size,
            cluster_signing_cert_file: self.cluster_signing_cert_file.clone(),
            cluster_signing_key_file: self.cluster_signing_key_file.clone(),
            cluster_signing_duration: tokens::parse_duration(&self.cluster_signing_duration)
                .context("--cluster-signing-duration")?
                .unwrap_or(defaults.cluster_signing_duration),
            root_ca_file: self.root_ca_file.clone(),
            ..defaults
        })
    }
}

#[derive(Args)]
struct ServerArgs {
    /// Where state, certificates and the admin kubeconfig live
    /// [default: /var/lib/skiff as root, else ~/.skiff]
    #[arg(long, env = "SKIFF_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: IpAddr,
    /// HTTPS port of the API server.
    #[arg(long, default_value_t = 6443)]
    https_listen_port: u16,
    /// etcd client URLs (comma-separated, e.g. https://10.0.0.1:2379); the embedded store
    /// when not given.
    #[arg(long, env = "SKIFF_DATASTORE_ENDPOINT", value_delimiter = ',')]
    datastore_endpoint: Vec<String>,
    /// CA file to verify etcd members.
    #[arg(long)]
    datastore_cafile: Option<PathBuf>,
    /// Client certificate for etcd.
    #[arg(long)]
    datastore_certfile: Option<PathBuf>,
    /// Client key for etcd.
    #[arg(long)]
    datastore_keyfile: Option<PathBuf>,
    /// Range Service cluster IPs are allocated from.
    #[arg(long, default_value = "10.43.0.0/16")]
    service_cidr: String,
    /// The cluster's DNS domain.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// Run no local node agent (a control-plane-only server).
    #[arg(long)]
    disable_agent: bool,
    /// Packaged components not to deploy (comma-separated, k3s's names): coredns (the
    /// kube-dns Service and the DNS the node agents serve), servicelb (addresses for
    /// LoadBalancer Services).
    #[arg(long, value_delimiter = ',')]
    disable: Vec<String>,
    #[command(flatten)]
    node: agent::NodeArgs,
    /// Do not run the controller manager in this process.
    #[arg(long)]
    disable_controller_manager: bool,
    /// Do not run the scheduler in this process.
    #[arg(long)]
    disable_scheduler: bool,
    /// Seconds pods tolerate a node's not-ready taint before eviction (added to pods
    /// that do not say otherwise).
    #[arg(long, default_value_t = 300)]
    default_not_ready_toleration_seconds: i64,
    /// Seconds pods tolerate a node's unreachable taint before eviction.
    #[arg(long, default_value_t = 300)]
    default_unreachable_toleration_seconds: i64,
    #[command(flatten)]
    loops: LoopArgs,
    /// Static bearer tokens: CSV lines `token,user,uid,"group1,group2"`.
    #[arg(long)]
    token_auth_file: Option<PathBuf>,
    /// Extra names or addresses for the serving certificate (repeatable).
    #[arg(long)]
    tls_san: Vec<String>,
    /// EncryptionConfiguration file: which resources are encrypted at rest, and how.
    #[arg(long)]
    encryption_provider_config: Option<PathBuf>,
    /// Audit policy file (audit.k8s.io/v1 Policy); needs --audit-log-path.
    #[arg(long)]
    audit_policy_file: Option<PathBuf>,
    /// Where audit events go as JSON lines (`-`: standard output).
    #[arg(long)]
    audit_log_path: Option<PathBuf>,
    /// Megabytes of audit log before it is rotated (0: never).
    #[arg(long, default_value_t = 100)]
    audit_log_maxsize: u64,
    /// Rotated audit log files kept (0: all).
    #[arg(long, default_value_t = 10)]
    audit_log_maxbackup: usize,
    /// Days rotated audit log files are kept (0: no limit).
    #[arg(long, default_value_t = 0)]
    audit_log_maxage: u64,
    /// Authorizers asked in order (kube-apiserver's flag): Node, RBAC, AlwaysAllow,
    /// AlwaysDeny. `system:masters` is always allowed.
    #[arg(long, default_value = "Node,RBAC")]
    authorization_mode: String,
    /// Join token nodes present (`<id>.<secret>` or `K10<CA hash>::<id>.<secret>`); one
    /// is generated on first start when not given. Kept in <data-dir>/server/token.
    #[arg(long, env = "SKIFF_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// `iss` of service account tokens [default: https://kubernetes.default.svc.<domain>].
    #[arg(long)]
    service_account_issuer: Option<String>,
    /// Audiences API tokens must name (comma-separated) [default: the issuer].
    #[arg(long, value_delimiter = ',')]
    api_audiences: Vec<String>,
}

fn default_data_dir() -> PathBuf {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    if root {
        PathBuf::from("/var/lib/skiff")
    } else {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."))
            .join(".skiff")
    }
}

async fn server(mut args: ServerArgs) -> Result<()> {
    let data_dir = args.data_dir.unwrap_or_else(default_data_dir);
    let mut config = skiff_apiserver::Config::new(&data_dir);
    config.bind_address = args.bind_address;
    config.https_port = args.https_listen_port;
    config.datastore_endpoints = args.datastore_endpoint;
    config.service_cidr = args
        .service_cidr
        .parse()
        .map_err(|e: String| anyhow::anyhow!("--service-cidr: {e}"))?;
    // k3s's default: the Service range's 10th address (10.43.0.10 for the default range).
    if args.node.cluster_dns.is_empty() {
        args.node.cluster_dns = vec![IpAddr::V4(config.service_cidr.nth(10))];
    }
    let config_domain = args.cluster_domain.clone();
    config.cluster_domain = args.cluster_domain;
    config.token_auth_file = args.token_auth_file;
    config.tls_sans = args.tls_san;
    config.encryption_provider_config = args.encryption_provider_config;
    match (&args.audit_policy_file, args.audit_log_path) {
        (Some(_), Some(path)) => {
            config.audit_policy_file = args.audit_policy_file.clone();
            config.audit_log = Some(skiff_apiserver::audit::LogOptions {
                path,
                max_size_mb: args.audit_log_maxsize,
                max_backups: args.audit_log_maxbackup,
                max_age_days: args.audit_log_maxage,
            });
        }
        (Some(_), None) => anyhow::bail!(
            "--audit-policy-file needs --audit-log-path (a file, or - for standard output)"
        ),
        (None, Some(_)) => anyhow::bail!(
            "--audit-log-path needs --audit-policy-file: without a policy nothing is logged"
        ),
        (None, None) => {}
    }
    config.authorization_modes =
        skiff_apiserver::auth::chain::parse_modes(&args.authorization_mode)
            .map_err(|e| anyhow::anyhow!("--authorization-mode: {e}"))?;
    config.service_account_issuer = args.service_account_issuer.clone();
    config.api_audiences = args.api_audiences.clone();
    if let Some(ca_file) = args.datastore_cafile {
        config.datastore_tls = Some(skiff_store::EtcdTls {
            ca_file,
            cert_file: args.datastore_certfile,
            key_file: args.datastore_keyfile,
        });
    } else if args.datastore_certfile.is_some() || args.datastore_keyfile.is_some() {
        bail!("--datastore-certfile/--datastore-keyfile need --datastore-cafile too");
    }
    config.default_toleration_seconds = skiff_apiserver::admission::DefaultTolerationSeconds {
        not_ready: args.default_not_ready_toleration_seconds,
        unreachable: args.default_unreachable_toleration_seconds,
    };
    // Checked before anything starts; the CA paths are filled in once the PKI exists.
    let mut loop_settings = args.loops.settings()?;
    addons::check_disabled(&args.disable)?;
    let disabled = |name: &str| args.disable.iter().any(|d| d == name);
    let started = Instant::now();
    let running = skiff_apiserver::start(config)
        .await
        .with_context(|| format!("starting the API server (data dir {})", data_dir.display()))?;
    while !running.app.is_ready() {
        if started.elapsed() > Duration::from_secs(60) {
            bail!("the API server did not become ready within 60 s; see the log above");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tracing::info!(
        "Skiff is ready in {} ms on https://{}: run `export KUBECONFIG={}` then `kubectl get namespaces`",
        started.elapsed().as_millis(),
        running.address,
        running.kubeconfig.display()
    );
    let admin = skiff_runtime::client::from_kubeconfig_file(&running.kubeconfig).await?;
    let token_file = tokens::ensure_server_token(
        &admin,
        &data_dir,
        &running.pki.ca_cert_pem,
        args.token.as_deref(),
    )
    .await
    .context("setting up the join token")?;
    tracing::info!(
        "Node join token is in {} (use it with `skiff agent --server https://<this host>:{} --token <token>`)",
        token_file.display(),
        running.address.port()
    );
    let tls_dir = data_dir.join("server").join("tls");
    loop_settings
        .cluster_signing_cert_file
        .get_or_insert_with(|| tls_dir.join("ca.crt"));
    loop_settings
        .cluster_signing_key_file
        .get_or_insert_with(|| tls_dir.join("ca.key"));
    loop_settings
        .root_ca_file
        .get_or_insert_with(|| tls_dir.join("ca.crt"));
    if !disabled(addons::COREDNS) {
        addons::ensure_kube_dns(&admin, args.node.cluster_dns[0]).await?;
    }
    let shutdown = CancellationToken::new();
    let mut loops = Vec::new();
    if !args.disable_scheduler {
        let path = components::component_kubeconfig(
            &running,
            &data_dir,
            "scheduler.kubeconfig",
            "system:kube-scheduler",
        )?;
        let client = skiff_runtime::client::from_kubeconfig_file(&path).await?;
        loops.push(tokio::spawn(components::scheduler(
            client,
            skiff_scheduler::Settings::default(),
            shutdown.clone(),
        )));
    }
    if !args.disable_controller_manager {
        let path = components::component_kubeconfig(
            &running,
            &data_dir,
            "controller-manager.kubeconfig",
            "system:kube-controller-manager",
        )?;
        let client = skiff_runtime::client::from_kubeconfig_file(&path).await?;
        // The packaged components' loops run only when the component does.
        let mut controllers = Vec::new();
        if disabled(addons::COREDNS) {
            controllers.push("-clusterdns".to_string());
        }
        if disabled(addons::SERVICELB) {
            controllers.push("-servicelb".to_string());
        }
        loops.push(tokio::spawn(components::controller_manager(
            client,
            loop_settings,
            controllers,
            shutdown.clone(),
        )));
    }
    let mut agent_task = None;
    if !args.disable_agent {
        let agent_dir = data_dir.join("agent");
        let path = agent::node_kubeconfig(&running, &agent_dir, &args.node.node_name())?;
        let client = skiff_runtime::client::from_kubeconfig_file(&path).await?;
        let mut node = args.node.clone();
        node.disable_dns |= disabled(addons::COREDNS);
        let domain = config_domain.clone();
        let cidr = Some(args.loops.cluster_cidr.clone());
        let ca_pem = running.pki.ca_cert_pem.clone();
        let stop = shutdown.clone();
        agent_task = Some(tokio::spawn(async move {
            if let Err(e) = agent::run(client, ca_pem, &agent_dir, &domain, cidr, &node, stop).await
            {
                tracing::error!("the node agent stopped: {e:#}");
            }
        }));
    }
    wait_for_signal().await?;
    tracing::info!("shutting down");
    shutdown.cancel();
    if let Some(task) = agent_task {
        // The agent stops its containerd (pods keep running for the next start).
        let _ = tokio::time::timeout(Duration::from_secs(20), task).await;
    }
    // Loops hand their leases over on the way out; do not wait on a stuck one for long.
    let _ = tokio::time::timeout(Duration::from_secs(5), futures::future::join_all(loops)).await;
    Ok(())
}

/// Waits for Ctrl-C (SIGINT) or SIGTERM.
async fn wait_for_signal() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C"),
        _ = term.recv() => Ok(()),
    }
}

#[derive(Args)]
struct AgentArgs {
    /// Server to join (with --token), e.g. https://10.0.0.5:6443.
    #[arg(long, env = "SKIFF_URL", requires = "token")]
    server: Option<String>,
    /// Join token the server printed (`<data-dir>/server/token` on the server, or `skiff
    /// token create`): the node gets its own certificate with it.
    #[arg(long, env = "SKIFF_TOKEN", hide_env_values = true, requires = "server")]
    token: Option<String>,
    /// Kubeconfig to use instead of joining with --server/--token.
    #[arg(long, env = "KUBECONFIG", conflicts_with = "token")]
    kubeconfig: Option<PathBuf>,
    /// Where the agent keeps its files (`<data-dir>/agent`)
    /// [default: /var/lib/skiff as root, else ~/.skiff]
    #[arg(long, env = "SKIFF_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The cluster's DNS domain.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// The cluster's pod network (the server's --cluster-cidr): the service proxy
    /// masquerades traffic to cluster IPs that comes from outside it.
    #[arg(long, default_value = "10.42.0.0/16")]
    cluster_cidr: String,
    #[command(flatten)]
    node: agent::NodeArgs,
}

async fn node_agent(args: AgentArgs) -> Result<()> {
    let agent_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(default_data_dir)
        .join("agent");
    let kubeconfig = match (&args.server, &args.token, &args.kubeconfig) {
        (Some(server), Some(token), _) => {
            let cred = agent_dir.join("cred");
            let joined = skiff_runtime::join::join(server, token, &args.node.node_name(), &cred)
                .await
                .context("joining the cluster")?;
            joined.kubeconfig
        }
        (_, _, Some(path)) => path.clone(),
        _ => bail!("give --server and --token to join a cluster (or --kubeconfig)"),
    };
    let client = skiff_runtime::client::from_kubeconfig_file(&kubeconfig).await?;
    let ca_pem = agent::ca_from_kubeconfig(&kubeconfig)?;
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let mut task = tokio::spawn(async move {
        agent::run(
            client,
            ca_pem,
            &agent_dir,
            &args.cluster_domain,
            Some(args.cluster_cidr.clone()),
            &args.node,
            stop,
        )
        .await
    });
    tokio::select! {
        signal = wait_for_signal() => {
            signal?;
            shutdown.cancel();
            task.await.context("node agent task")??;
        }
        ended = &mut task => ended.context("node agent task")??,
    }
    Ok(())
}

async fn controller_manager(args: ControllerManagerArgs) -> Result<()> {
    let client = skiff_runtime::client::from_kubeconfig_file(&args.kubeconfig).await?;
    let settings = args.loops.settings()?;
    run_until_signal(|shutdown| {
        components::controller_manager(client, settings, args.controllers, shutdown)
    })
    .await
}

/// Runs one component until SIGINT/SIGTERM, then gives it 5 s to hand its lease over.
async fn run_until_signal<F, Fut>(start: F) -> Result<()>
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(start(shutdown.clone()));
    wait_for_signal().await?;
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    Ok(())
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::Server(args) => runtime.block_on(server(*args)),
        Command::ControllerManager(args) => runtime.block_on(controller_manager(args)),
        Command::HollowNodes(args) => runtime.block_on(hollow_nodes(args)),
        Command::Agent(args) => runtime.block_on(node_agent(*args)),
        Command::Scheduler(args) => runtime.block_on(scheduler(args)),
        Command::Images(args) => images::run(args),
        Command::Token(args) => runtime.block_on(tokens::run(args, default_data_dir())),
    }
}
