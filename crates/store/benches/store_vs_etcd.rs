//! The embedded store against a real etcd, on the same workloads, side by side in one run.
//!
//! Both backends are durable: etcd with its normal fsync per commit, the embedded store with
//! its fsync before it answers. Both keep their data on the same filesystem (the system temp
//! dir). The program prints a Markdown table; with `--write <file>` (relative to the
//! workspace root) it also replaces the section between the `store-bench` markers there.
//!
//! ```text
//! cargo bench -p skiff-store --bench store_vs_etcd                       # print only
//! cargo bench -p skiff-store --bench store_vs_etcd -- --quick            # smoke run
//! cargo bench -p skiff-store --bench store_vs_etcd -- --write docs/benchmarks.md
//! ```

use std::error::Error;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::StreamExt;
use skiff_store::{
    EmbeddedOptions, EmbeddedStore, EtcdOptions, EtcdStore, EventKind, RangeRequest, Store, Txn,
    TxnOp,
};
use skiff_testkit::report::{
    etcd_version, git_revision, load_average, machine, mib, ms, proc_kib, ratio_of, thousands,
};
use skiff_testkit::EtcdCluster;
use tokio::sync::oneshot;
use tokio::time::MissedTickBehavior;

type BenchResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

const RERUN: &str =
    "cargo bench -p skiff-store --bench store_vs_etcd -- --write docs/benchmarks.md";
const BEGIN_MARKER: &str = "<!-- store-bench:begin -->";
const END_MARKER: &str = "<!-- store-bench:end -->";

/// The goal this benchmark exists to check: group commit should make the embedded store
/// at least this many times faster than etcd on concurrent durable puts...
const GOAL_THROUGHPUT_RATIO: f64 = 3.0;
/// ...while keeping the tail latency of those puts under this.
const GOAL_P99: Duration = Duration::from_millis(5);

/// Sizes of the workloads; `--quick` shrinks them for a smoke run.
#[derive(Clone, Copy, Debug)]
struct Sizes {
    sequential_puts: usize,
    clients: usize,
    concurrent_puts: usize,
    put_value_bytes: usize,
    range_keys: usize,
    range_value_bytes: usize,
    range_reads: usize,
    watchers: usize,
    watch_puts: usize,
    watch_interval: Duration,
}

impl Sizes {
    fn full() -> Self {
        Self {
            sequential_puts: 2_000,
            clients: 64,
            concurrent_puts: 20_000,
            put_value_bytes: 256,
            range_keys: 1_000,
            range_value_bytes: 1024,
            range_reads: 200,
            watchers: 100,
            watch_puts: 1_000,
            watch_interval: Duration::from_millis(2),
        }
    }

    fn quick() -> Self {
        Self {
            sequential_puts: 200,
            concurrent_puts: 2_000,
            range_reads: 20,
            watch_puts: 100,
            ..Self::full()
        }
    }
}

/// Latencies of one workload. Percentiles are exact (sorted samples, nearest rank), which
/// is all an HDR histogram would approximate at these sample counts.
struct Samples(Vec<Duration>);

impl Samples {
    fn merge(parts: impl IntoIterator<Item = Vec<Duration>>) -> Self {
        let mut all: Vec<Duration> = parts.into_iter().flatten().collect();
        all.sort_unstable();
        Samples(all)
    }

    fn percentile(&self, p: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * self.0.len() as f64).ceil() as usize;
        self.0[rank.clamp(1, self.0.len()) - 1]
    }
}

/// Throughput and latency of one workload.
struct Measured {
    ops_per_sec: f64,
    p50: Duration,
    p99: Duration,
}

impl Measured {
    fn new(ops: usize, elapsed: Duration, samples: Samples) -> Self {
        Self {
            ops_per_sec: ops as f64 / elapsed.as_secs_f64(),
            p50: samples.percentile(50.0),
            p99: samples.percentile(99.0),
        }
    }
}

/// Everything measured on one backend.
struct Report {
    puts_1: Measured,
    puts_n: Measured,
    range: Measured,
    watch: Measured,
    rss_bytes: u64,
}

#[tokio::main]
async fn main() -> BenchResult<()> {
    let args = Args::parse()?;
    let sizes = if args.quick {
        Sizes::quick()
    } else {
        Sizes::full()
    };

    // Other work on the machine skews every figure, so the table says how busy it was.
    let load = load_average();

    // Embedded first, before any etcd client exists in this process, so the RSS growth it
    // is charged with is its own and the benchmark's, not gRPC's.
    let rss_before = own_rss_bytes()?;
    let dir = tempfile::Builder::new().prefix("skiff-bench-").tempdir()?;
    let path = dir.path().join("store.redb");
    let opened = path.clone();
    let embedded = Arc::new(
        tokio::task::spawn_blocking(move || {
            EmbeddedStore::open(opened, EmbeddedOptions::default())
        })
        .await??,
    );
    let mut embedded_report = run_workloads("embedded", embedded.clone(), sizes).await?;
    embedded_report.rss_bytes = own_rss_bytes()?.saturating_sub(rss_before);
    if let Ok(store) = Arc::try_unwrap(embedded) {
        store.close().await?;
    }

    let cluster = tokio::task::spawn_blocking(EtcdCluster::start).await?;
    let member = &cluster.members[0];
    ensure_same_filesystem(dir.path(), member.data_dir())?;
    let etcd: Arc<dyn Store> =
        Arc::new(EtcdStore::connect(EtcdOptions::new(cluster.endpoints())).await?);
    let mut etcd_report = run_workloads("etcd", etcd, sizes).await?;
    let pid = member.pid().ok_or("etcd is not running")?;
    etcd_report.rss_bytes = rss_bytes(&format!("/proc/{pid}/status"))?;
    drop(cluster);

    let section = render(&sizes, &embedded_report, &etcd_report, &load, args.quick)?;
    println!("{section}");
    if let Some(target) = args.write {
        let file = workspace_root().join(target);
        replace_section(&file, &section)?;
        eprintln!("wrote the table to {}", file.display());
    }
    Ok(())
}

struct Args {
    quick: bool,
    write: Option<PathBuf>,
}

impl Args {
    fn parse() -> BenchResult<Self> {
        let mut args = Args {
            quick: false,
            write: None,
        };
        let mut iter = std::env::args().skip(1);
        while let Some(arg) = iter.next() {
            match arg.as_str() {
                // `cargo bench` passes `--bench` to every bench binary.
                "--bench" => {}
                "--quick" => args.quick = true,
                "--write" => {
                    let file = iter
                        .next()
                        .ok_or("--write needs a file, e.g. docs/benchmarks.md")?;
                    args.write = Some(PathBuf::from(file));
                }
                other => {
                    return Err(format!(
                        "unknown argument {other:?}; usage: [--quick] [--write FILE]"
                    )
                    .into())
                }
            }
        }
        if args.quick && args.write.is_some() {
            // The docs only ever get figures from full-size runs.
            return Err("--quick is a smoke run; it cannot --write".into());
        }
        Ok(args)
    }
}

/// Runs every workload on one backend, each under its own key prefix.
async fn run_workloads(name: &str, store: Arc<dyn Store>, sizes: Sizes) -> BenchResult<Report> {
    eprintln!("{name}: puts x1 ({} sequential) ...", sizes.sequential_puts);
    let puts_1 = durable_puts(
        &store,
        "seq",
        1,
        sizes.sequential_puts,
        sizes.put_value_bytes,
    )
    .await?;
    eprintln!(
        "{name}: puts x{} ({} in total) ...",
        sizes.clients, sizes.concurrent_puts
    );
    let puts_n = durable_puts(
        &store,
        "conc",
        sizes.clients,
        sizes.concurrent_puts,
        sizes.put_value_bytes,
    )
    .await?;
    eprintln!(
        "{name}: range of {} keys x{} ...",
        sizes.range_keys, sizes.range_reads
    );
    let range = range_reads(&store, sizes).await?;
    eprintln!(
        "{name}: watch, {} watchers x{} puts ...",
        sizes.watchers, sizes.watch_puts
    );
    let watch = watch_delivery(&store, sizes).await?;
    Ok(Report {
        puts_1,
        puts_n,
        range,
        watch,
        rss_bytes: 0,
    })
}

/// A plain put, as the API server writes: one transaction, no compares.
async fn put(store: &dyn Store, key: String, value: Bytes) -> BenchResult<()> {
    store
        .txn(Txn::new().and_then(TxnOp::put(key, value, 0)))
        .await?;
    Ok(())
}

/// `total` puts of fresh keys from `clients` concurrent clients, each waiting for its
/// previous put to be acknowledged (durable) before sending the next.
async fn durable_puts(
    store: &Arc<dyn Store>,
    label: &str,
    clients: usize,
    total: usize,
    value_bytes: usize,
) -> BenchResult<Measured> {
    let value = Bytes::from(vec![b'v'; value_bytes]);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let store = store.clone();
            let value = value.clone();
            // Spread the remainder so exactly `total` puts are made.
            let count = total / clients + usize::from(client < total % clients);
            let prefix = format!("/registry/configmaps/bench/{label}-{client:02}-");
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(count);
                for i in 0..count {
                    let sent = Instant::now();
                    put(store.as_ref(), format!("{prefix}{i:06}"), value.clone()).await?;
                    latencies.push(sent.elapsed());
                }
                BenchResult::Ok(latencies)
            })
        })
        .collect();
    let mut parts = Vec::with_capacity(clients);
    for task in tasks {
        parts.push(task.await??);
    }
    let elapsed = started.elapsed();
    Ok(Measured::new(total, elapsed, Samples::merge(parts)))
}

/// Reads a whole prefix of `range_keys` values, `range_reads` times in a row.
async fn range_reads(store: &Arc<dyn Store>, sizes: Sizes) -> BenchResult<Measured> {
    let prefix = "/registry/configmaps/range/";
    let value = Bytes::from(vec![b'r'; sizes.range_value_bytes]);
    // etcd refuses transactions of more than 128 operations (its --max-txn-ops).
    let keys: Vec<String> = (0..sizes.range_keys)
        .map(|i| format!("{prefix}{i:06}"))
        .collect();
    for chunk in keys.chunks(100) {
        let txn = chunk.iter().fold(Txn::new(), |txn, key| {
            txn.and_then(TxnOp::put(key, value.clone(), 0))
        });
        store.txn(txn).await?;
    }

    let mut latencies = Vec::with_capacity(sizes.range_reads);
    let started = Instant::now();
    for _ in 0..sizes.range_reads {
        let sent = Instant::now();
        let resp = store.range(RangeRequest::prefix(prefix)).await?;
        latencies.push(sent.elapsed());
        if resp.kvs.len() != sizes.range_keys {
            return Err(format!(
                "range returned {} keys, wanted {}",
                resp.kvs.len(),
                sizes.range_keys
            )
            .into());
        }
    }
    let elapsed = started.elapsed();
    Ok(Measured::new(
        sizes.range_reads,
        elapsed,
        Samples::merge([latencies]),
    ))
}

/// `watchers` watches on one prefix and one writer putting every `watch_interval`. Each
/// value carries the writer's clock (nanoseconds since `epoch`) taken just before the put
/// call, so a watcher's latency covers the whole path: commit, fan-out, delivery.
/// Throughput here is deliveries per second of the paced run, not a capacity figure.
async fn watch_delivery(store: &Arc<dyn Store>, sizes: Sizes) -> BenchResult<Measured> {
    let prefix = "/registry/configmaps/watch/";
    let ready_key = format!("{prefix}ready");
    let epoch = Instant::now();
    // Watching from the revision before the warm-up put means no event can be missed, even
    // if a backend registers the watch after `watch` returns.
    let from = store.current_revision().await?;

    let mut ready = Vec::with_capacity(sizes.watchers);
    let mut tasks = Vec::with_capacity(sizes.watchers);
    for _ in 0..sizes.watchers {
        let mut stream = store.watch(prefix.as_bytes(), from).await?;
        let (ready_tx, ready_rx) = oneshot::channel();
        ready.push(ready_rx);
        let ready_key = ready_key.clone();
        let wanted = sizes.watch_puts;
        tasks.push(tokio::spawn(async move {
            let mut ready_tx = Some(ready_tx);
            let mut latencies = Vec::with_capacity(wanted);
            while latencies.len() < wanted {
                let event = stream.next().await.ok_or("watch ended early")??;
                let received = epoch.elapsed();
                if event.kind != EventKind::Put {
                    continue;
                }
                if event.kv.key.as_ref() == ready_key.as_bytes() {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(());
                    }
                    continue;
                }
                latencies.push(received.saturating_sub(sent_at(&event.kv.value)?));
            }
            BenchResult::Ok(latencies)
        }));
    }

    // Warm up: every watcher has seen one event before the timed puts start.
    put(store.as_ref(), ready_key, Bytes::from_static(b"ready")).await?;
    for rx in ready {
        tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .map_err(|_| "a watcher did not see the warm-up event within 30 s")??;
    }

    let started = Instant::now();
    let mut ticker = tokio::time::interval(sizes.watch_interval);
    // A put slower than the interval delays the next one rather than causing a burst.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    for i in 0..sizes.watch_puts {
        ticker.tick().await;
        let mut value = vec![b'w'; sizes.put_value_bytes.max(8)];
        value[..8].copy_from_slice(&(epoch.elapsed().as_nanos() as u64).to_le_bytes());
        put(
            store.as_ref(),
            format!("{prefix}{i:06}"),
            Bytes::from(value),
        )
        .await?;
    }

    let mut parts = Vec::with_capacity(sizes.watchers);
    for task in tasks {
        let latencies = tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .map_err(|_| "a watcher did not receive every event within 60 s")???;
        parts.push(latencies);
    }
    let elapsed = started.elapsed();
    let deliveries = sizes.watchers * sizes.watch_puts;
    Ok(Measured::new(deliveries, elapsed, Samples::merge(parts)))
}

/// The send time a watch-benchmark value carries in its first 8 bytes.
fn sent_at(value: &[u8]) -> BenchResult<Duration> {
    let nanos: [u8; 8] = value
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or("watch event value shorter than its timestamp")?;
    Ok(Duration::from_nanos(u64::from_le_bytes(nanos)))
}

/// Refuses to compare a disk against, say, a tmpfs: the fsync cost must be the same.
fn ensure_same_filesystem(a: &Path, b: &Path) -> BenchResult<()> {
    use std::os::unix::fs::MetadataExt;
    // etcd creates its data dir itself; its parent is the cluster's temp dir.
    let b = if b.exists() {
        b
    } else {
        b.parent().unwrap_or(b)
    };
    if std::fs::metadata(a)?.dev() != std::fs::metadata(b)?.dev() {
        return Err(format!(
            "embedded data ({}) and etcd data ({}) are on different filesystems",
            a.display(),
            b.display()
        )
        .into());
    }
    Ok(())
}

fn own_rss_bytes() -> BenchResult<u64> {
    rss_bytes("/proc/self/status")
}

/// VmRSS from a `/proc/<pid>/status` file.
fn rss_bytes(status: &str) -> BenchResult<u64> {
    let text = std::fs::read_to_string(status)?;
    proc_kib(&text, "VmRSS:")
        .map(|kib| kib * 1024)
        .ok_or_else(|| format!("no VmRSS in {status}").into())
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Replaces what lies between the markers in `file`, keeping the markers.
fn replace_section(file: &Path, section: &str) -> BenchResult<()> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let missing = || {
        format!(
            "{} lacks the {BEGIN_MARKER} ... {END_MARKER} markers",
            file.display()
        )
    };
    let begin = text.find(BEGIN_MARKER).ok_or_else(missing)? + BEGIN_MARKER.len();
    let end = text[begin..].find(END_MARKER).ok_or_else(missing)? + begin;
    let updated = format!(
        "{}\n{}\n{}",
        &text[..begin],
        section.trim_end(),
        &text[end..]
    );
    std::fs::write(file, updated)?;
    Ok(())
}

/// The Markdown section: the table, the goal verdict, the machine and the rerun command.
fn render(
    sizes: &Sizes,
    embedded: &Report,
    etcd: &Report,
    load: &str,
    quick: bool,
) -> BenchResult<String> {
    let mut out = String::new();
    if quick {
        writeln!(
            out,
            "**Quick smoke run: sizes reduced, figures not representative.**\n"
        )?;
    }
    writeln!(
        out,
        "| Workload | Metric | Embedded | etcd | Embedded / etcd |"
    )?;
    writeln!(out, "|---|---|---:|---:|---:|")?;
    let workloads = [
        (
            format!(
                "Durable puts, 1 client ({} × {} B)",
                thousands(sizes.sequential_puts as f64),
                sizes.put_value_bytes
            ),
            (&embedded.puts_1, &etcd.puts_1),
            "puts/s",
        ),
        (
            format!(
                "Durable puts, {} clients ({} × {} B)",
                sizes.clients,
                thousands(sizes.concurrent_puts as f64),
                sizes.put_value_bytes
            ),
            (&embedded.puts_n, &etcd.puts_n),
            "puts/s",
        ),
        (
            format!(
                "Range of {} keys × {} B ({} reads)",
                thousands(sizes.range_keys as f64),
                sizes.range_value_bytes,
                sizes.range_reads
            ),
            (&embedded.range, &etcd.range),
            "reads/s",
        ),
    ];
    for (name, (e, d), unit) in &workloads {
        row(
            &mut out,
            name,
            &format!("throughput ({unit})"),
            &thousands(e.ops_per_sec),
            &thousands(d.ops_per_sec),
            e.ops_per_sec / d.ops_per_sec,
        )?;
        latency_rows(&mut out, e, d)?;
    }
    let watch_name = format!(
        "Watch delivery, {} watchers, 1 writer ({} puts, one per {} ms)",
        sizes.watchers,
        thousands(sizes.watch_puts as f64),
        sizes.watch_interval.as_millis()
    );
    row(
        &mut out,
        &watch_name,
        "p50 latency",
        &ms(embedded.watch.p50),
        &ms(etcd.watch.p50),
        ratio_of(embedded.watch.p50, etcd.watch.p50),
    )?;
    row(
        &mut out,
        "",
        "p99 latency",
        &ms(embedded.watch.p99),
        &ms(etcd.watch.p99),
        ratio_of(embedded.watch.p99, etcd.watch.p99),
    )?;
    row(
        &mut out,
        "Resident memory¹",
        "RSS (MiB)",
        &mib(embedded.rss_bytes),
        &mib(etcd.rss_bytes),
        embedded.rss_bytes as f64 / etcd.rss_bytes as f64,
    )?;

    writeln!(out)?;
    writeln!(
        out,
        "For throughput a ratio above 1 favours the embedded store; for latency and memory, a ratio below 1 does."
    )?;
    writeln!(out)?;
    writeln!(out, "{}", goal_verdict(sizes, embedded, etcd))?;
    writeln!(out)?;
    writeln!(
        out,
        "¹ etcd: VmRSS of the etcd process after all its workloads. Embedded: growth of the \
         benchmark process's VmRSS from before the store was opened to after its workloads, \
         so it also counts the benchmark's own buffers (latency samples, watcher tasks) and \
         memory the allocator has not returned; it is an upper bound for the store itself."
    )?;
    writeln!(out)?;
    writeln!(out, "Both backends durable (etcd fsyncs each commit; the embedded store appends each batch to its write-ahead log and fdatasyncs it before it answers), data on the same filesystem.")?;
    writeln!(
        out,
        "Machine: {}; 1-minute load average {load} when the run began (other work on the \
         machine adds noise). {}. Store code at {}. Run on {} (UTC).",
        machine(),
        etcd_version(),
        git_revision(&workspace_root(), &["crates/store", "crates/testkit"]),
        today()
    )?;
    writeln!(out)?;
    writeln!(out, "Rerun: `{RERUN}`")?;
    Ok(out)
}

fn latency_rows(out: &mut String, e: &Measured, d: &Measured) -> BenchResult<()> {
    row(
        out,
        "",
        "p50 latency",
        &ms(e.p50),
        &ms(d.p50),
        ratio_of(e.p50, d.p50),
    )?;
    row(
        out,
        "",
        "p99 latency",
        &ms(e.p99),
        &ms(d.p99),
        ratio_of(e.p99, d.p99),
    )
}

fn row(
    out: &mut String,
    workload: &str,
    metric: &str,
    embedded: &str,
    etcd: &str,
    ratio: f64,
) -> BenchResult<()> {
    writeln!(
        out,
        "| {workload} | {metric} | {embedded} | {etcd} | {ratio:.2}× |"
    )?;
    Ok(())
}

/// The stated goal, judged from the measured figures and never adjusted.
fn goal_verdict(sizes: &Sizes, embedded: &Report, etcd: &Report) -> String {
    let ratio = embedded.puts_n.ops_per_sec / etcd.puts_n.ops_per_sec;
    let p99 = embedded.puts_n.p99;
    let met = ratio >= GOAL_THROUGHPUT_RATIO && p99 < GOAL_P99;
    format!(
        "**Goal** (embedded ≥ {GOAL_THROUGHPUT_RATIO}× etcd on {}-client durable put throughput, with p99 < {} ms): \
         **{}** — measured {ratio:.2}× at p99 {}.",
        sizes.clients,
        GOAL_P99.as_millis(),
        if met { "met" } else { "not met" },
        ms(p99)
    )
}

/// Today's date, UTC, as YYYY-MM-DD, counted out from the Unix epoch (no date crate needed).
fn today() -> String {
    let mut days = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400);
    let leap = |y: u64| (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
    let mut year = 1970;
    while days >= if leap(year) { 366 } else { 365 } {
        days -= if leap(year) { 366 } else { 365 };
        year += 1;
    }
    let february = if leap(year) { 29 } else { 28 };
    let mut month = 1;
    for len in [31, february, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31] {
        if days < len {
            break;
        }
        days -= len;
        month += 1;
    }
    format!("{year:04}-{month:02}-{:02}", days + 1)
}
