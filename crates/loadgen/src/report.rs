//! The Markdown section: the table, the goal verdicts, the footnotes, the machine and the
//! rerun command; and writing it between the markers of `docs/benchmarks.md`.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use crate::workloads::{Measured, CONFIGMAP_VALUE_BYTES};
use crate::{Report, Sizes};
use skiff_loadgen::server::Memory;
pub use skiff_testkit::report::load_average;
use skiff_testkit::report::{etcd_version, git_revision, machine, mib, ms, ratio_of, thousands};

const RERUN: &str = "cargo build --release -p skiff -p skiff-loadgen && target/release/skiff-loadgen --write docs/benchmarks.md";
const BEGIN_MARKER: &str = "<!-- apiserver-bench:begin -->";
const END_MARKER: &str = "<!-- apiserver-bench:end -->";

/// Written once, above the markers, when the file has no API server section yet.
const DESCRIPTION: &str = "## API server

`crates/loadgen` (`skiff-loadgen`) is a load program that runs as its own process against a
real `skiff server`, started once on the embedded store and once on a real etcd (the same
`skiff-testkit` etcd as above), and gives both the same workloads through kube-rs over HTTPS:
durable creates from 32 concurrent clients (ConfigMaps, then Pods), full lists of 10,000
Pods, a paced load of 1,000 creates/s, a watch fan-out to 1,000 watchers, the cold start to
`/readyz`, and the server's resident memory idle and holding 10,000 and 100,000 ConfigMaps.
The goals are the API server issue's: idle under 50 MiB, and p99 mutating latency under
20 ms at 1,000 writes/s on this 2-CPU machine (upstream's SLO for mutating calls is 1 s).
";

/// The goals, for `skiff server` on its default (embedded) store.
const GOAL_IDLE_BYTES: u64 = 50 * 1024 * 1024;
const GOAL_PACED_P99: Duration = Duration::from_millis(20);
/// The paced load counts as "at" its rate only if it achieved at least this share of it.
const GOAL_RATE_SHARE: f64 = 0.99;
const GOAL_READY: Duration = Duration::from_secs(1);

pub fn render(
    sizes: &Sizes,
    embedded: &Report,
    etcd: &Report,
    (load_before, load_after): (&str, &str),
    quick: bool,
) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_table(
        &mut out,
        sizes,
        embedded,
        etcd,
        load_before,
        load_after,
        quick,
    );
    out
}

fn write_table(
    out: &mut String,
    sizes: &Sizes,
    e: &Report,
    d: &Report,
    load_before: &str,
    load_after: &str,
    quick: bool,
) -> std::fmt::Result {
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
    row(
        out,
        "Cold start, empty data dir (spawn → `/readyz` ok)",
        "time",
        &ms(e.cold_start),
        &ms(d.cold_start),
        ratio_of(e.cold_start, d.cold_start),
    )?;
    memory_rows(out, "Resident memory, idle¹", &e.idle, &d.idle)?;
    let creates = [
        (
            format!(
                "Durable creates, {} clients ({} ConfigMaps of {CONFIGMAP_VALUE_BYTES} B)",
                sizes.clients,
                thousands(sizes.configmaps as f64)
            ),
            &e.create_configmaps,
            &d.create_configmaps,
        ),
        (
            format!(
                "Durable creates, {} clients ({} one-container Pods)",
                sizes.clients,
                thousands(sizes.pods as f64)
            ),
            &e.create_pods,
            &d.create_pods,
        ),
        (
            format!(
                "Paced creates, {}/s for {} s over {} clients²",
                thousands(f64::from(sizes.paced_rate)),
                sizes.paced_duration.as_secs(),
                sizes.clients
            ),
            &e.paced,
            &d.paced,
        ),
    ];
    for (i, (name, em, dm)) in creates.iter().enumerate() {
        let metric = if i == 2 {
            "achieved rate (writes/s)"
        } else {
            "throughput (creates/s)"
        };
        row(
            out,
            name,
            metric,
            &thousands(em.ops_per_sec),
            &thousands(dm.ops_per_sec),
            em.ops_per_sec / dm.ops_per_sec,
        )?;
        latency_rows(out, "latency", em, dm)?;
    }
    row(
        out,
        &format!(
            "List of {} Pods ({} full lists, no `limit`)",
            thousands(sizes.pods as f64),
            sizes.lists
        ),
        "response size (MiB)",
        &mib(e.list_bytes as u64),
        &mib(d.list_bytes as u64),
        e.list_bytes as f64 / d.list_bytes as f64,
    )?;
    latency_rows(out, "latency", &e.list, &d.list)?;
    writeln!(
        out,
        "| Watch fan-out, {} watchers, 1 writer ({} updates, one per {} ms)³ | deliveries | {} | {} | |",
        thousands(sizes.watchers as f64),
        sizes.watch_updates,
        sizes.watch_interval.as_millis(),
        thousands(e.watch.ops as f64),
        thousands(d.watch.ops as f64),
    )?;
    latency_rows(out, "delay", &e.watch, &d.watch)?;
    memory_rows(
        out,
        &format!(
            "Resident memory, {} ConfigMaps¹",
            thousands(sizes.configmaps as f64)
        ),
        &e.with_configmaps,
        &d.with_configmaps,
    )?;
    memory_rows(
        out,
        &format!(
            "Resident memory, {} ConfigMaps + {} Pods¹",
            thousands(sizes.many_configmaps as f64),
            thousands(sizes.pods as f64)
        ),
        &e.with_many,
        &d.with_many,
    )?;

    writeln!(out)?;
    writeln!(
        out,
        "For throughput a ratio above 1 favours the embedded store; for time, latency and memory, a ratio below 1 does."
    )?;
    writeln!(out)?;
    goal_verdicts(out, sizes, e)?;
    writeln!(out)?;
    writeln!(
        out,
        "¹ VmRSS of the `skiff server` process, and for the etcd backend of the etcd process \
         too, from `/proc/<pid>/status`, read {} s after the server was ready (idle) or after \
         the last write before it; memory the allocator keeps after freeing counts. The {} \
         ConfigMap reading follows the ConfigMap creates; the last one comes after every \
         workload, with the Pods and the paced load's ConfigMaps still stored and the \
         ConfigMaps topped up to {}.",
        crate::SETTLE.as_secs(),
        thousands(sizes.configmaps as f64),
        thousands(sizes.many_configmaps as f64),
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "² Open loop: request *i* is due at start + *i* / rate, the requests spread round-robin \
         over the clients, each creating a new ConfigMap. Latency counts from when a request \
         was due, not from when it went out, so a request held up behind a slow predecessor \
         counts its wait (no coordinated omission). The achieved rate is requests / (first due \
         → last answered)."
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "³ Each update is a merge patch of one ConfigMap carrying the writer's clock, read just \
         before the call; a delivery's delay is the watcher's clock when kube-rs hands it the \
         decoded event, minus that. kube-rs speaks HTTP/1.1, so every watch is its own TLS \
         connection (spread over {} clients). The load program decodes all {} copies of each \
         update on the same CPUs, and that work is inside the delay.",
        sizes.watch_clients,
        thousands(sizes.watchers as f64),
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "Every request goes through kube-rs 5 over HTTPS (client-certificate auth) from this \
         separate process on the same machine, which shares its CPUs with the server and etcd. \
         Creates are durable on both backends (the embedded store fdatasyncs its write-ahead \
         log before it answers; etcd fsyncs each commit), data on the same filesystem. \
         Percentiles are exact (all samples sorted, nearest rank)."
    )?;
    writeln!(
        out,
        "Machine: {}; 1-minute load average {load_before} when the run began and {load_after} \
         when it ended (other work on the machine adds noise). {}. Code at {}. Run on {} (UTC).",
        machine(),
        etcd_version(),
        git_revision(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")),
            &[":/crates/*/src"]
        ),
        jiff::Timestamp::now().strftime("%Y-%m-%d"),
    )?;
    writeln!(out)?;
    writeln!(out, "Rerun: `{RERUN}`")
}

/// The goals, judged from the measured figures and never adjusted.
fn goal_verdicts(out: &mut String, sizes: &Sizes, e: &Report) -> std::fmt::Result {
    let verdict = |met: bool| if met { "met" } else { "not met" };
    writeln!(
        out,
        "**Goals** (the API server issue's, for `skiff server` on its default embedded store):"
    )?;
    writeln!(
        out,
        "- Idle resident memory under {} MiB: **{}** — measured {} MiB.",
        GOAL_IDLE_BYTES / (1024 * 1024),
        verdict(e.idle.server < GOAL_IDLE_BYTES),
        mib(e.idle.server)
    )?;
    let target = f64::from(sizes.paced_rate);
    let paced_met = e.paced.p99 < GOAL_PACED_P99 && e.paced.ops_per_sec >= GOAL_RATE_SHARE * target;
    writeln!(
        out,
        "- p99 mutating latency under {} ms at {} writes/s (achieving at least {:.0} % of that \
         rate): **{}** — measured p99 {} at {} writes/s.",
        GOAL_PACED_P99.as_millis(),
        thousands(target),
        GOAL_RATE_SHARE * 100.0,
        verdict(paced_met),
        ms(e.paced.p99),
        thousands(e.paced.ops_per_sec)
    )?;
    writeln!(
        out,
        "- Ready within {} s of start on an empty data dir: **{}** — measured {}.",
        GOAL_READY.as_secs(),
        verdict(e.cold_start < GOAL_READY),
        ms(e.cold_start)
    )
}

fn memory_rows(out: &mut String, name: &str, e: &Memory, d: &Memory) -> std::fmt::Result {
    row(
        out,
        name,
        "skiff server RSS (MiB)",
        &mib(e.server),
        &mib(d.server),
        e.server as f64 / d.server as f64,
    )?;
    writeln!(
        out,
        "|  | etcd RSS (MiB) | — | {} | |",
        d.etcd.map_or_else(|| "—".into(), mib)
    )?;
    row(
        out,
        "",
        "total RSS (MiB)",
        &mib(e.total()),
        &mib(d.total()),
        e.total() as f64 / d.total() as f64,
    )
}

fn latency_rows(out: &mut String, what: &str, e: &Measured, d: &Measured) -> std::fmt::Result {
    row(
        out,
        "",
        &format!("p50 {what}"),
        &ms(e.p50),
        &ms(d.p50),
        ratio_of(e.p50, d.p50),
    )?;
    row(
        out,
        "",
        &format!("p99 {what}"),
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
) -> std::fmt::Result {
    writeln!(
        out,
        "| {workload} | {metric} | {embedded} | {etcd} | {ratio:.2}× |"
    )
}

/// Replaces the API server section of `file` (appending it when missing).
pub fn write_section(file: &Path, section: &str) -> Result<()> {
    skiff_loadgen::sections::write(file, BEGIN_MARKER, END_MARKER, DESCRIPTION, section)
}
