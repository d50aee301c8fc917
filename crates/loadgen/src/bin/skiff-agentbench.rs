//! `skiff-agentbench`: the node agent on one real node (containerd + runc + CNI, as root).
//!
//! 1. Time from `skiff server` start (with its local agent) to its Node Ready.
//! 2. Pod startup latency, create → Running as seen by a watch, for 100 pods (busybox,
//!    image already present) created at `--qps` pods/s (default 5) in two batches of 50
//!    against `skiff agent` running as its own process; p50 and p99 (upstream's SLO:
//!    p99 ≤ 5 s).
//! 3. The agent's resident memory with 0 and with 50 pods (and its containerd's). The
//!    agent runs as by default: with its service proxy and cluster DNS.
//!
//! ```text
//! cargo build --release -p skiff -p skiff-loadgen
//! sudo target/release/skiff-agentbench [--qps 5] [--quick] [--write docs/benchmarks.md]
//! ```
//!
//! Everything it starts lives under one temp dir and is removed at the end (pods
//! deleted, agent and server stopped, the bridge deleted).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use skiff_loadgen::args::BenchArgs;
use skiff_loadgen::server::{rss_bytes, skiff_binary};
use skiff_testkit::report::{load_average, mib};

const NODE: &str = "bench-node";
const BRIDGE: &str = "skbench0";
const CIDR: &str = "10.215.0.0/24";
const IMAGE: &str = "busybox:skiff";
const RERUN: &str =
    "cargo build --release -p skiff -p skiff-loadgen && sudo target/release/skiff-agentbench --write docs/benchmarks.md";
const BEGIN: &str = "<!-- agent-bench:begin -->";
const END: &str = "<!-- agent-bench:end -->";
const DESCRIPTION: &str = "## Node agent (real containers)";

#[derive(clap::Parser)]
#[command(about = "The node agent on one real node: start to Ready, pod startup, memory")]
struct Args {
    #[command(flatten)]
    bench: BenchArgs,
    /// Pods created per second.
    #[arg(long, default_value_t = 5.0)]
    qps: f64,
}

/// What one run measured.
struct Figures {
    to_ready: Duration,
    /// Sorted.
    latencies: Vec<Duration>,
    qps: f64,
    batch: usize,
    rss0: u64,
    rss_batch: u64,
    containerd_batch: Option<u64>,
}
const TIMEOUT: Duration = Duration::from_secs(180);

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(skiff: &Path, args: &[String], log: &Path) -> Result<Proc> {
    let out = std::fs::File::create(log)?;
    let child = Command::new(skiff)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .with_context(|| format!("starting {}", skiff.display()))?;
    Ok(Proc(child))
}

fn server_args(dir: &Path, port: u16, agent: bool) -> Vec<String> {
    let mut a: Vec<String> = [
        "server",
        "--data-dir",
        &dir.display().to_string(),
        "--bind-address",
        "127.0.0.1",
        "--https-listen-port",
        &port.to_string(),
        "--cluster-cidr",
        CIDR,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if agent {
        a.extend(node_args());
    } else {
        a.push("--disable-agent".into());
    }
    a
}

fn node_args() -> Vec<String> {
    [
        "--node-name",
        NODE,
        "--node-ip",
        "127.0.0.1",
        "--cni-bridge",
        BRIDGE,
        "--kubelet-port",
        &skiff_testkit::free_port().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

async fn client(kubeconfig: &Path) -> Result<Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !kubeconfig.exists() {
        if Instant::now() > deadline {
            bail!("no kubeconfig at {}", kubeconfig.display());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await?;
    Ok(Client::try_from(config)?)
}

async fn node_ready(client: &Client) -> bool {
    let nodes: Api<Node> = Api::all(client.clone());
    let Ok(Some(n)) = nodes.get_opt(NODE).await else {
        return false;
    };
    n.status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

async fn wait_node_ready(client: &Client) -> Result<()> {
    let deadline = Instant::now() + TIMEOUT;
    while !node_ready(client).await {
        if Instant::now() > deadline {
            bail!("node {NODE} not Ready within {TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

fn prepare_images(dir: &Path) -> Result<()> {
    let images = dir.join("agent").join("images");
    std::fs::create_dir_all(&images)?;
    skiff_cri::image::build_busybox_image(&images.join("busybox.tar"), IMAGE)
        .context("building the busybox image")?;
    Ok(())
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"bench": "agent"}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "c", "image": IMAGE, "command": ["sleep", "3600"]}]
        }
    }))
    .expect("a valid pod")
}

/// Creates `names`, one every `1/qps` s (as upstream's density test paces creation),
/// and returns each pod's create→Running latency, as the watch in `running` sees it.
async fn start_batch(
    client: &Client,
    names: &[String],
    qps: f64,
    running: &Arc<Mutex<HashMap<String, Instant>>>,
) -> Result<Vec<Duration>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut created: HashMap<String, Instant> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / qps.max(0.01)));
    for name in names {
        tick.tick().await;
        let at = Instant::now();
        pods.create(&PostParams::default(), &pod(name)).await?;
        created.insert(name.clone(), at);
    }
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let seen = running.lock().unwrap().clone();
        if names.iter().all(|n| seen.contains_key(n)) {
            return Ok(names
                .iter()
                .map(|n| seen[n].saturating_duration_since(created[n]))
                .collect());
        }
        if Instant::now() > deadline {
            bail!("not every pod Running within {TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn containerd_pid(dir: &Path) -> Option<u32> {
    std::fs::read_to_string(dir.join("agent/containerd/containerd.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

async fn delete_all(client: &Client) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await?;
    let deadline = Instant::now() + TIMEOUT;
    while !pods.list(&ListParams::default()).await?.items.is_empty() {
        if Instant::now() > deadline {
            bail!("pods not deleted within {TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

async fn run(skiff: PathBuf, dir: &Path, qps: f64, batch: usize) -> Result<Figures> {
    // 1. Server start to node Ready, agent in-process.
    let ready_dir = dir.join("ready");
    prepare_images(&ready_dir)?;
    let port = skiff_testkit::free_port();
    let started = Instant::now();
    let server = spawn(
        &skiff,
        &server_args(&ready_dir, port, true),
        &dir.join("ready.log"),
    )?;
    let c = client(&ready_dir.join("kubeconfig.yaml")).await?;
    wait_node_ready(&c).await?;
    let to_ready = started.elapsed();
    drop(server);
    let _ = Command::new("ip").args(["link", "del", BRIDGE]).output();

    // 2 and 3. A server without an agent, and `skiff agent` as its own process.
    let run_dir = dir.join("run");
    prepare_images(&run_dir)?;
    let port = skiff_testkit::free_port();
    let _server = spawn(
        &skiff,
        &server_args(&run_dir, port, false),
        &dir.join("server.log"),
    )?;
    let kubeconfig = run_dir.join("kubeconfig.yaml");
    let c = client(&kubeconfig).await?;
    let mut agent_args: Vec<String> = vec![
        "agent".into(),
        "--kubeconfig".into(),
        kubeconfig.display().to_string(),
        "--data-dir".into(),
        run_dir.display().to_string(),
    ];
    agent_args.extend(node_args());
    let agent = spawn(&skiff, &agent_args, &dir.join("agent.log"))?;
    wait_node_ready(&c).await?;
    let running: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    {
        let running = running.clone();
        let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
        tokio::spawn(async move {
            let mut stream = watcher::watcher(pods, watcher::Config::default()).boxed();
            while let Some(Ok(ev)) = stream.next().await {
                if let watcher::Event::Apply(p) | watcher::Event::InitApply(p) = ev {
                    if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
                        running
                            .lock()
                            .unwrap()
                            .entry(p.name_any())
                            .or_insert_with(Instant::now);
                    }
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss0 = rss_bytes(agent.0.id())?;
    let names: Vec<String> = (0..2 * batch).map(|i| format!("bench-{i}")).collect();
    let mut latencies = start_batch(&c, &names[..batch], qps, &running).await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss_batch = rss_bytes(agent.0.id())?;
    let containerd_batch = containerd_pid(&run_dir).and_then(|p| rss_bytes(p).ok());
    latencies.extend(start_batch(&c, &names[batch..], qps, &running).await?);
    latencies.sort();
    delete_all(&c).await?;
    drop(agent);
    let _ = Command::new("ip").args(["link", "del", BRIDGE]).output();
    Ok(Figures {
        to_ready,
        latencies,
        qps,
        batch,
        rss0,
        rss_batch,
        containerd_batch,
    })
}

fn render(f: &Figures, load: (&str, &str), quick: bool) -> String {
    let p = |q: f64| percentile(&f.latencies, q).as_millis();
    let p99 = percentile(&f.latencies, 0.99);
    let aim = if p99 <= Duration::from_secs(1) {
        "met"
    } else {
        "not met"
    };
    let mut out = format!(
        "The agent runs as by default, with its service proxy and cluster DNS.\n\n\
         | measure | figure | reference |\n|---|---|---|\n\
         | `skiff server` start → its Node Ready | {} ms | k3s: several seconds |\n\
         | pod startup, create → Running seen by a watch, {n} pods at {qps} pods/s: p50 / p99 / max | {} ms / {} ms / {} ms | upstream SLO p99 ≤ 5 s; our aim p99 ≤ 1 s: {aim} |\n\
         | agent resident memory, 0 pods / {b} pods | {} MiB / {} MiB | k3s documents ~275 MB for its agent |\n",
        f.to_ready.as_millis(),
        p(0.50),
        p(0.99),
        f.latencies.last().copied().unwrap_or_default().as_millis(),
        mib(f.rss0),
        mib(f.rss_batch),
        n = f.latencies.len(),
        qps = f.qps,
        b = f.batch,
    );
    if let Some(c) = f.containerd_batch {
        out.push_str(&format!(
            "| its containerd, {} pods | {} MiB | |\n",
            f.batch,
            mib(c)
        ));
    }
    out.push_str(&skiff_loadgen::sections::provenance(
        load.0, load.1, quick, RERUN,
    ));
    out
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = <Args as clap::Parser>::parse();
    args.bench.check()?;
    if args.qps.is_nan() || args.qps <= 0.0 {
        bail!("--qps wants a positive number of pods per second");
    }
    let skiff = skiff_binary()?;
    let batch = if args.bench.quick { 10 } else { 50 };
    let dir = tempfile::Builder::new()
        .prefix("skiff-agentbench-")
        .tempdir()?;
    let before = load_average();
    let result = run(skiff, dir.path(), args.qps, batch).await;
    let after = load_average();
    let _ = Command::new("ip").args(["link", "del", BRIDGE]).output();
    // The agents' service proxy leaves its rules in place when it stops (as kube-proxy).
    let _ = Command::new("nft")
        .args(["delete", "table", "ip", "skiff"])
        .output();
    let figures = match result {
        Ok(f) => f,
        Err(e) => {
            eprintln!("agentbench failed: {e:#}; logs in {}", dir.path().display());
            // Keep the logs to look at.
            let _ = dir.keep();
            return Err(e);
        }
    };
    let section = render(&figures, (&before, &after), args.bench.quick);
    println!("{section}");
    if let Some(file) = args.bench.write {
        skiff_loadgen::sections::write(&file, BEGIN, END, DESCRIPTION, &section)?;
        eprintln!("wrote the node agent section of {}", file.display());
    }
    Ok(())
}
