//! `skiff-loadgen`: the API server load benchmark.
//!
//! Starts a real `skiff server` process for each backend, the embedded store first and
//! then a real etcd (started by `skiff-testkit`), drives both with the same workloads
//! through kube-rs over HTTPS, and prints a Markdown table with the two side by side. With
//! `--write <file>` it also replaces the section between the `apiserver-bench` markers
//! there (appending an "API server" section when the markers are missing).
//!
//! ```text
//! cargo build --release -p skiff -p skiff-loadgen
//! target/release/skiff-loadgen                                 # print only
//! target/release/skiff-loadgen --quick                         # smoke run
//! target/release/skiff-loadgen --write docs/benchmarks.md
//! ```
//!
//! The `skiff` binary is found next to this program's executable, or at `SKIFF_BIN`.

mod report;
mod workloads;

use skiff_loadgen::args::BenchArgs;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Result};
use skiff_loadgen::server::{self, Backend, Contender, Memory};
use workloads::Measured;

/// Pause before a memory reading, so the server has finished the work just sent.
const SETTLE: Duration = Duration::from_secs(2);

const NS_CREATES: &str = "bench-creates";
const NS_PODS: &str = "bench-pods";
const NS_PACED: &str = "bench-paced";
const NS_WATCH: &str = "bench-watch";
const NS_FILL: &str = "bench-fill";

/// Sizes of the workloads; `--quick` shrinks them for a smoke run.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    /// Concurrent closed-loop clients for the create workloads and the paced load.
    pub clients: usize,
    /// ConfigMaps created by the create workload; the first memory reading is taken then.
    pub configmaps: usize,
    /// Pods created, then listed.
    pub pods: usize,
    pub lists: usize,
    pub paced_rate: u32,
    pub paced_duration: Duration,
    pub watchers: usize,
    /// kube clients the watchers are spread over.
    pub watch_clients: usize,
    pub watch_updates: usize,
    pub watch_interval: Duration,
    /// ConfigMaps in the server for the last memory reading.
    pub many_configmaps: usize,
}

impl Sizes {
    fn full() -> Self {
        Self {
            clients: 32,
            configmaps: 10_000,
            pods: 10_000,
            lists: 20,
            paced_rate: 1_000,
            paced_duration: Duration::from_secs(10),
            watchers: 1_000,
            watch_clients: 20,
            watch_updates: 100,
            watch_interval: Duration::from_millis(100),
            many_configmaps: 100_000,
        }
    }

    fn quick() -> Self {
        Self {
            configmaps: 1_000,
            pods: 1_000,
            lists: 5,
            paced_duration: Duration::from_secs(2),
            watchers: 100,
            watch_clients: 4,
            watch_updates: 10,
            many_configmaps: 5_000,
            ..Self::full()
        }
    }
}

/// Everything measured on one backend.
pub struct Report {
    pub cold_start: Duration,
    pub idle: Memory,
    pub create_configmaps: Measured,
    pub with_configmaps: Memory,
    pub create_pods: Measured,
    pub list: Measured,
    pub list_bytes: usize,
    pub paced: Measured,
    pub watch: Measured,
    pub with_many: Memory,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = BenchArgs::from_env("skiff-loadgen")?;
    // Interrupting drops the run, and with it every server and etcd it started.
    tokio::select! {
        result = run(args) => result,
        _ = tokio::signal::ctrl_c() => bail!("interrupted"),
    }
}

async fn run(args: BenchArgs) -> Result<()> {
    let skiff = server::skiff_binary()?;
    let sizes = if args.quick {
        Sizes::quick()
    } else {
        Sizes::full()
    };
    // Other work on the machine skews every figure, so the table says how busy it was.
    let load_before = report::load_average();
    let embedded = measure(Backend::Embedded, &skiff, sizes).await?;
    let etcd = measure(Backend::Etcd, &skiff, sizes).await?;
    let load_after = report::load_average();

    let section = report::render(
        &sizes,
        &embedded,
        &etcd,
        (&load_before, &load_after),
        args.quick,
    );
    println!("{section}");
    if let Some(file) = args.write {
        report::write_section(&file, &section)?;
        eprintln!("wrote the table to {}", file.display());
    }
    Ok(())
}

/// Starts a server on `backend` and runs every workload against it, in this order:
/// idle memory, ConfigMap creates (then memory), Pod creates, lists of those Pods, the
/// paced load, the watch fan-out, and a fill up to `many_configmaps` (then memory).
async fn measure(backend: Backend, skiff: &Path, sizes: Sizes) -> Result<Report> {
    let stage = |what: String| eprintln!("[{}] {what}", backend.name());
    stage("starting skiff server".into());
    let contender = Contender::start(
        backend,
        skiff,
        // The API server alone: no control loops adding their own load.
        &["--disable-scheduler", "--disable-controller-manager"],
    )
    .await?;
    stage(format!(
        "ready after {:.0} ms",
        contender.cold_start.as_secs_f64() * 1e3
    ));
    tokio::time::sleep(SETTLE).await;
    let idle = contender.memory()?;

    let clients = contender.server.clients(sizes.clients).await?;
    // One request each first, so TLS handshakes are not counted as create latency.
    workloads::warm_up(&clients).await?;
    for ns in [NS_CREATES, NS_PODS, NS_PACED, NS_WATCH, NS_FILL] {
        workloads::create_namespace(&clients[0], ns).await?;
    }

    stage(format!(
        "creating {} ConfigMaps with {} clients",
        sizes.configmaps, sizes.clients
    ));
    let create_configmaps =
        workloads::create_configmaps(&clients, NS_CREATES, sizes.configmaps, false).await?;
    tokio::time::sleep(SETTLE).await;
    let with_configmaps = contender.memory()?;

    stage(format!(
        "creating {} Pods with {} clients",
        sizes.pods, sizes.clients
    ));
    let create_pods = workloads::create_pods(&clients, NS_PODS, sizes.pods).await?;

    stage(format!("listing {} Pods {} times", sizes.pods, sizes.lists));
    let (list, list_bytes) =
        workloads::list_pods(&clients[0], NS_PODS, sizes.lists, sizes.pods).await?;

    stage(format!(
        "paced creates at {}/s for {} s",
        sizes.paced_rate,
        sizes.paced_duration.as_secs()
    ));
    let paced =
        workloads::paced_creates(&clients, NS_PACED, sizes.paced_rate, sizes.paced_duration)
            .await?;

    stage(format!(
        "watch fan-out: {} watchers over {} clients, {} updates",
        sizes.watchers, sizes.watch_clients, sizes.watch_updates
    ));
    let watch_clients = contender.server.clients(sizes.watch_clients).await?;
    let watch = workloads::watch_fanout(&clients[0], &watch_clients, NS_WATCH, sizes).await?;
    drop(watch_clients);

    // ConfigMaps so far: the create workload's, the paced load's and the watched one.
    let existing = sizes.configmaps + paced.ops + 1;
    let fill = sizes.many_configmaps.saturating_sub(existing);
    stage(format!(
        "creating {fill} more ConfigMaps, to {} in all",
        sizes.many_configmaps
    ));
    workloads::create_configmaps(&clients, NS_FILL, fill, true).await?;
    tokio::time::sleep(SETTLE).await;
    let with_many = contender.memory()?;

    Ok(Report {
        cold_start: contender.cold_start,
        idle,
        create_configmaps,
        with_configmaps,
        create_pods,
        list,
        list_bytes,
        paced,
        watch,
        with_many,
    })
}
