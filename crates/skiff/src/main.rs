//! `skiff`: one binary that runs a Kubernetes-compatible cluster.
//!
//! `skiff server` starts the control plane (today: the API server over the embedded store
//! or etcd). Flag names follow k3s where k3s has the flag.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

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
    /// Run the control plane (API server) of a cluster.
    Server(ServerArgs),
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
    /// Run no local node (no node agent exists yet, so none runs either way).
    #[arg(long)]
    disable_agent: bool,
    /// Static bearer tokens: CSV lines `token,user,uid,"group1,group2"`.
    #[arg(long)]
    token_auth_file: Option<PathBuf>,
    /// Extra names or addresses for the serving certificate (repeatable).
    #[arg(long)]
    tls_san: Vec<String>,
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

async fn server(args: ServerArgs) -> Result<()> {
    let data_dir = args.data_dir.unwrap_or_else(default_data_dir);
    let mut config = skiff_apiserver::Config::new(&data_dir);
    config.bind_address = args.bind_address;
    config.https_port = args.https_listen_port;
    config.datastore_endpoints = args.datastore_endpoint;
    config.service_cidr = args
        .service_cidr
        .parse()
        .map_err(|e: String| anyhow::anyhow!("--service-cidr: {e}"))?;
    config.cluster_domain = args.cluster_domain;
    config.token_auth_file = args.token_auth_file;
    config.tls_sans = args.tls_san;
    if let Some(ca_file) = args.datastore_cafile {
        config.datastore_tls = Some(skiff_store::EtcdTls {
            ca_file,
            cert_file: args.datastore_certfile,
            key_file: args.datastore_keyfile,
        });
    } else if args.datastore_certfile.is_some() || args.datastore_keyfile.is_some() {
        bail!("--datastore-certfile/--datastore-keyfile need --datastore-cafile too");
    }
    let _ = args.disable_agent;
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
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    tracing::info!("shutting down");
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
        Command::Server(args) => runtime.block_on(server(args)),
    }
}
