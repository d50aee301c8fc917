//! `skiff-servicebench`: Services and cluster DNS against a real `skiff server`, in one run
//! (as root: it builds network namespaces and programs nftables in them).
//!
//! 1. **Rule sync.** 1,000 Services, each with an EndpointSlice of 10 ready endpoints, in
//!    10 namespaces. The service proxy (`skiff_proxy::run`, in this process, default 50 ms
//!    batch window) programs a fresh "node" network namespace. Measured: proxy start →
//!    whole table committed; then single-endpoint changes (an endpoint turning not-ready,
//!    or an endpoint replaced by a new IP), each from the API write returning to (a) the
//!    proxy's `nft` transaction having returned (its sync observer) and (b) the kernel's
//!    notification of the changed endpoint chain read from `nft monitor` in that
//!    namespace; and each incremental transaction's size against the full table's.
//! 2. **Throughput.** A client namespace and a backend namespace (one TCP server owning
//!    the Service's 10 endpoint addresses) on the node's bridge; the same client measures
//!    bulk TCP throughput and short-connection rate through the Service's ClusterIP and
//!    straight to the pod IPs, in alternating rounds.
//! 3. **DNS.** `skiff_dns::serve` with an `InformerView` of the same cluster on loopback,
//!    driven by a separate load process (several UDP sockets, each one query in flight)
//!    with A queries for the 1,000 Service names, and for one forwarded name answered from
//!    the cache.
//!
//! ```text
//! cargo build --release -p skiff -p skiff-loadgen
//! sudo target/release/skiff-servicebench [--quick] [--write docs/benchmarks.md]
//! ```
//!
//! The namespaces (and with them the nftables table and the servers in them) are removed
//! at the end, on error and on Ctrl-C; namespaces left by a killed run are removed by the
//! next one.

use skiff_loadgen::args::BenchArgs;
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::{stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use skiff_loadgen::server::{skiff_binary, Server};
use skiff_proxy::{Nft, SyncReport};
use skiff_runtime::{CancellationToken, InformerFactory};
use skiff_testkit::report::{load_average, thousands};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

const BEGIN: &str = "<!-- service-bench:begin -->";
const END: &str = "<!-- service-bench:end -->";
const RERUN: &str = "cargo build --release -p skiff -p skiff-loadgen && sudo target/release/skiff-servicebench --write docs/benchmarks.md";
const DESCRIPTION: &str = "## Services and DNS

`skiff-servicebench` (in `crates/loadgen`, run as root) measures the service proxy and the
cluster DNS against a real `skiff server` (embedded store; scheduler and controller manager
off, so nothing but the benchmark writes Services and EndpointSlices), in one run:

- **Rule sync.** 1,000 Services in 10 namespaces, each with an EndpointSlice of 10 ready
  endpoints. `skiff_proxy::run` (in the benchmark's process, with its default 50 ms batch
  window) programs a fresh network namespace. *First sync* is proxy start (informer lists
  of all Services and EndpointSlices included) to its one `nft -f` transaction having
  returned. Then single-endpoint changes are written one at a time, alternating an
  endpoint turning not-ready and an endpoint replaced by a new IP (a merge patch of the
  slice's endpoints); each latency runs from the API write returning to (a) the proxy's
  `nft -f` transaction for it having returned (reported by an observer on
  `skiff_proxy::Settings`: the kernel has committed it), and (b) the benchmark reading the
  kernel's notification of the changed endpoint chain from `nft monitor` running in that
  namespace — an independent check that the rule really is in the kernel, and an upper
  bound (it includes `nft monitor` printing it). The batch window is inside both.
- **Throughput.** A client network namespace and a backend namespace hang off the node
  namespace's bridge, as pods do (with `br_netfilter`, so pod-to-pod traffic crosses the
  node's netfilter hooks too, as in a real node). One TCP server in the backend owns all 10
  endpoint addresses of an extra Service. The same client process measures, in alternating
  rounds, bulk TCP throughput on one connection (server writing, client reading) and
  short connections (connect, read 3 bytes, close; several workers) through the ClusterIP
  and straight to the pod IPs. The server takes each path's short connections on a port of
  its own, so one path's TIME_WAIT entries never meet the other's SYNs (the client's TCP
  timestamps differ per destination address, and a SYN that looks older than a TIME_WAIT
  entry costs a 1 s retransmission: in an early version the path measured second lost
  three quarters of its rate to that).
- **DNS.** `skiff_dns::serve` with an `InformerView` over the same 1,000 Services answers on
  127.0.0.1; a separate load process keeps one query in flight on each of several UDP
  sockets (closed loop), A queries for `svc-N.sb-M.svc.cluster.local` spread over all
  Services, then for one name outside the cluster that is forwarded once to a stub
  upstream and then answered from the cache. As a floor, the same questions also go to a
  bare responder (one thread answering each with a fixed record, without parsing it):
  the loopback round trip and the wake-ups it costs on this machine.
";

const POD_CIDR: &str = "10.244.0.0/16";
const BRIDGE_IP: &str = "10.244.9.1";
const CLIENT_IP: &str = "10.244.9.50";
const BACKEND_BASE: u8 = 11;
const ENDPOINTS: usize = 10;
const TARGET_PORT: u16 = 8080;
const BULK_PORT: u16 = 8080;
/// Short connections straight to the pod IPs.
const SHORT_PORT: u16 = 8081;
/// Short connections through the ClusterIP: an identical listener on its own port, so the
/// server's TIME_WAIT entries left by one path never meet the other path's SYNs (the
/// client's TCP timestamps carry a different offset per destination address, and a SYN
/// that looks older than a TIME_WAIT entry's is answered with an ACK, costing the client a
/// 1 s SYN retransmission).
const SHORT_VIA_PORT: u16 = 8082;
const NAMESPACES: usize = 10;
const CACHED_NAME: &str = "cached.bench.test";

struct Sizes {
    services: usize,
    changes: usize,
    rounds: usize,
    tcp_secs: f64,
    short_workers: usize,
    dns_secs: f64,
    dns_sockets: usize,
}

// ---------------------------------------------------------------------------------------
// Helper processes: this program run again inside a network namespace.

/// `--serve-tcp`: in the backend namespace. Port 8080 streams bytes to whoever connects
/// until they go; ports 8081 and 8082 write "ok\n" and close.
fn serve_tcp() -> Result<()> {
    let bulk = TcpListener::bind(("0.0.0.0", BULK_PORT))?;
    for port in [SHORT_PORT, SHORT_VIA_PORT] {
        let short = TcpListener::bind(("0.0.0.0", port))?;
        for _ in 0..2 {
            let short = short.try_clone()?;
            std::thread::spawn(move || {
                for mut c in short.incoming().flatten() {
                    let _ = c.write_all(b"ok\n");
                }
            });
        }
    }
    for conn in bulk.incoming() {
        let Ok(mut c) = conn else { continue };
        std::thread::spawn(move || {
            let buf = vec![0x5au8; 128 * 1024];
            while c.write_all(&buf).is_ok() {}
        });
    }
    Ok(())
}

/// `--tcp-client bulk ADDR SECS`: one connection read for SECS; bytes after the first
/// quarter second (slow start) count.
fn tcp_bulk(addr: SocketAddr, secs: f64) -> Result<serde_json::Value> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut buf = vec![0u8; 256 * 1024];
    let start = Instant::now();
    let warm = Duration::from_millis(250);
    let end = Duration::from_secs_f64(secs);
    let mut counted = 0u64;
    let mut from: Option<Instant> = None;
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            bail!("{addr} closed the stream");
        }
        let now = Instant::now();
        let t = now - start;
        if t >= warm {
            match from {
                None => from = Some(now),
                Some(_) => counted += n as u64,
            }
        }
        if t >= end {
            break;
        }
    }
    let secs = from.map_or(0.0, |f| f.elapsed().as_secs_f64());
    Ok(json!({"bytes": counted, "secs": secs}))
}

/// `--tcp-client short ADDR[,ADDR...] SECS WORKERS`: each worker connects (to the next
/// address in turn), reads to EOF, closes, again until SECS; latencies in µs.
fn tcp_short(addrs: Vec<SocketAddr>, secs: f64, workers: usize) -> Result<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let addrs = addrs.clone();
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut errors = 0u64;
                let mut i = w;
                let mut buf = [0u8; 16];
                while Instant::now() < deadline {
                    let addr = addrs[i % addrs.len()];
                    i += 1;
                    let t = Instant::now();
                    let ok = (|| -> std::io::Result<bool> {
                        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
                        s.set_read_timeout(Some(Duration::from_secs(2)))?;
                        let mut got = 0;
                        loop {
                            let n = s.read(&mut buf[got..])?;
                            if n == 0 {
                                break;
                            }
                            got += n;
                        }
                        Ok(&buf[..got] == b"ok\n")
                    })();
                    match ok {
                        Ok(true) => lat.push(t.elapsed().as_micros() as u64),
                        _ => errors += 1,
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let mut lat = Vec::new();
    let mut errors = 0;
    for h in handles {
        let (l, e) = h.join().map_err(|_| anyhow::anyhow!("worker panicked"))?;
        lat.extend(l);
        errors += e;
    }
    Ok(json!({"lat_us": lat, "errors": errors, "secs": start.elapsed().as_secs_f64()}))
}

/// A DNS question for `name`, type A, class IN, recursion desired.
fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(12 + name.len() + 6);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// The address of a one-A-record answer to query `id`, if it is one.
fn dns_answer_a(resp: &[u8], id: u16) -> Option<Ipv4Addr> {
    if resp.len() < 12 + 16 || resp[..2] != id.to_be_bytes() || resp[2] & 0x80 == 0 {
        return None;
    }
    let rcode = resp[3] & 0x0f;
    let answers = u16::from_be_bytes([resp[6], resp[7]]);
    if rcode != 0 || answers != 1 {
        return None;
    }
    let n = resp.len();
    // The answer is the last record (no authority or additional section here); its data
    // is the last 4 bytes, preceded by type A and a length of 4.
    if resp[n - 6..n - 4] != [0, 4] {
        return None;
    }
    Some(Ipv4Addr::new(
        resp[n - 4],
        resp[n - 3],
        resp[n - 2],
        resp[n - 1],
    ))
}

/// `--dns-load SERVER SECS SOCKETS NAMESFILE`: SOCKETS closed loops of A queries over the
/// names (one per line), for SECS after half a second of warm-up; latencies in µs.
fn dns_load(
    server: SocketAddr,
    secs: f64,
    sockets: usize,
    names: &Path,
) -> Result<serde_json::Value> {
    let names: Vec<String> = std::fs::read_to_string(names)?
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if names.is_empty() {
        bail!("no names to ask");
    }
    let names = Arc::new(names);
    let warm = Instant::now() + Duration::from_millis(500);
    let deadline = warm + Duration::from_secs_f64(secs);
    let handles: Vec<_> = (0..sockets)
        .map(|w| {
            let names = names.clone();
            std::thread::spawn(move || -> std::io::Result<(Vec<u32>, u64, u64)> {
                let sock = UdpSocket::bind("127.0.0.1:0")?;
                sock.connect(server)?;
                sock.set_read_timeout(Some(Duration::from_secs(1)))?;
                let mut lat = Vec::new();
                let (mut errors, mut timeouts) = (0u64, 0u64);
                let mut buf = [0u8; 1500];
                let mut i = w * 7919;
                let mut id = (w as u16).wrapping_mul(4099);
                loop {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    id = id.wrapping_add(1);
                    let q = dns_query(id, &names[i % names.len()]);
                    i += 1;
                    let t = Instant::now();
                    sock.send(&q)?;
                    let ok = loop {
                        match sock.recv(&mut buf) {
                            Ok(n) if buf[..2] == id.to_be_bytes() => {
                                break Some(dns_answer_a(&buf[..n], id).is_some())
                            }
                            Ok(_) => continue, // a late answer to an earlier query
                            Err(_) => break None,
                        }
                    };
                    if t < warm {
                        continue;
                    }
                    match ok {
                        Some(true) => lat.push(t.elapsed().as_micros() as u32),
                        Some(false) => errors += 1,
                        None => timeouts += 1,
                    }
                }
                Ok((lat, errors, timeouts))
            })
        })
        .collect();
    let (mut lat, mut errors, mut timeouts) = (Vec::new(), 0, 0);
    for h in handles {
        let (l, e, t) = h.join().map_err(|_| anyhow::anyhow!("worker panicked"))??;
        lat.extend(l);
        errors += e;
        timeouts += t;
    }
    Ok(json!({"lat_us": lat, "errors": errors, "timeouts": timeouts, "secs": secs}))
}

/// Runs a helper mode if the arguments name one; Some(result) then.
fn helper_mode(args: &[String]) -> Option<Result<()>> {
    let mode = args.first()?.as_str();
    let parse_addrs = |s: &str| -> Result<Vec<SocketAddr>> {
        s.split(',')
            .map(|a| a.parse().with_context(|| format!("bad address {a}")))
            .collect()
    };
    let arg = |i: usize| -> Result<&str> {
        args.get(i)
            .map(String::as_str)
            .with_context(|| format!("{mode}: missing argument {i}"))
    };
    let out = match mode {
        "--serve-tcp" => return Some(serve_tcp()),
        "--tcp-client" => (|| match arg(1)? {
            "bulk" => tcp_bulk(parse_addrs(arg(2)?)?[0], arg(3)?.parse()?),
            "short" => tcp_short(parse_addrs(arg(2)?)?, arg(3)?.parse()?, arg(4)?.parse()?),
            other => bail!("unknown client mode {other}"),
        })(),
        "--dns-load" => (|| {
            dns_load(
                arg(1)?.parse()?,
                arg(2)?.parse()?,
                arg(3)?.parse()?,
                Path::new(arg(4)?),
            )
        })(),
        _ => return None,
    };
    Some(out.map(|v| println!("{v}")))
}

// ---------------------------------------------------------------------------------------
// Network namespaces.

fn run_cmd(args: &[&str]) -> Result<String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("running {args:?}"))?;
    if !out.status.success() {
        bail!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A node namespace with a bridge, a backend namespace and a client namespace on it, and
/// the server in the backend. Everything goes when this drops.
struct Topology {
    prefix: String,
    made: Vec<String>,
    children: Vec<Child>,
}

const NS_PREFIX: &str = "skiff-svcbench-";

impl Topology {
    fn name(&self, n: &str) -> String {
        format!("{}-{n}", self.prefix)
    }

    /// Removes namespaces a killed earlier run left (their process is gone).
    fn remove_stale() {
        let Ok(list) = run_cmd(&["ip", "netns", "list"]) else {
            return;
        };
        for line in list.lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            let Some(rest) = name.strip_prefix(NS_PREFIX) else {
                continue;
            };
            let pid = rest.split('-').next().unwrap_or("");
            if !Path::new(&format!("/proc/{pid}")).exists() {
                println!("  removing network namespace {name} left by an earlier run");
                let _ = run_cmd(&["ip", "netns", "del", name]);
            }
        }
    }

    fn exec(&self, ns: &str, args: &[&str]) -> Result<String> {
        let ns = self.name(ns);
        let mut full = vec!["ip", "netns", "exec", ns.as_str()];
        full.extend_from_slice(args);
        run_cmd(&full)
    }

    fn setup(me_exe: &Path) -> Result<Self> {
        Self::remove_stale();
        let mut t = Topology {
            prefix: format!("{NS_PREFIX}{}", std::process::id()),
            made: Vec::new(),
            children: Vec::new(),
        };
        for n in ["node", "backend", "client"] {
            run_cmd(&["ip", "netns", "add", &t.name(n)])
                .context("creating a network namespace (run as root, with iproute2)")?;
            t.made.push(t.name(n));
            t.exec(n, &["ip", "link", "set", "lo", "up"])?;
        }
        t.exec("node", &["ip", "link", "add", "br0", "type", "bridge"])?;
        t.exec(
            "node",
            &[
                "ip",
                "addr",
                "add",
                &format!("{BRIDGE_IP}/24"),
                "dev",
                "br0",
            ],
        )?;
        t.exec("node", &["ip", "link", "set", "br0", "up"])?;
        t.exec("node", &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        t.exec(
            "node",
            &["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"],
        )
        .context("net.bridge.bridge-nf-call-iptables (is the br_netfilter module loaded?)")?;
        for (veth, ns) in [("vb", "backend"), ("vc", "client")] {
            let target = t.name(ns);
            t.exec(
                "node",
                &[
                    "ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns",
                    &target,
                ],
            )?;
            t.exec("node", &["ip", "link", "set", veth, "master", "br0", "up"])?;
            t.exec(ns, &["ip", "link", "set", "eth0", "up"])?;
        }
        for ip in backend_ips() {
            t.exec(
                "backend",
                &["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"],
            )?;
        }
        t.exec(
            "client",
            &[
                "ip",
                "addr",
                "add",
                &format!("{CLIENT_IP}/24"),
                "dev",
                "eth0",
            ],
        )?;
        for ns in ["backend", "client"] {
            t.exec(ns, &["ip", "route", "add", "default", "via", BRIDGE_IP])?;
        }
        let server = Command::new("ip")
            .args(["netns", "exec", &t.name("backend")])
            .arg(me_exe)
            .arg("--serve-tcp")
            .stdin(Stdio::null())
            .spawn()
            .context("starting the backend server")?;
        t.children.push(server);
        Ok(t)
    }

    /// This program, run in namespace `ns` with `args`; its JSON line.
    async fn helper(
        &self,
        me_exe: &Path,
        ns: Option<&str>,
        args: &[String],
    ) -> Result<serde_json::Value> {
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = tokio::process::Command::new("ip");
                c.args(["netns", "exec", &self.name(ns)]).arg(me_exe);
                c
            }
            None => tokio::process::Command::new(me_exe),
        };
        let out = cmd
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .context("running a helper")?;
        if !out.status.success() {
            bail!(
                "helper {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        // The table lives in the node namespace; delete it explicitly anyway, so nothing
        // lingers if the namespace is still held open by a stray process.
        let _ = run_cmd(&[
            "ip",
            "netns",
            "exec",
            &self.name("node"),
            "nft",
            "delete",
            "table",
            "ip",
            skiff_proxy::TABLE,
        ]);
        for ns in &self.made {
            let _ = run_cmd(&["ip", "netns", "del", ns]);
        }
    }
}

fn backend_ips() -> Vec<Ipv4Addr> {
    (0..ENDPOINTS as u8)
        .map(|i| Ipv4Addr::new(10, 244, 9, BACKEND_BASE + i))
        .collect()
}

// ---------------------------------------------------------------------------------------
// The cluster's objects.

fn namespace_of(i: usize) -> String {
    format!("sb-{}", i % NAMESPACES)
}

fn endpoint_ip(svc: usize, j: usize) -> Ipv4Addr {
    Ipv4Addr::new(
        10,
        200,
        (svc / 25) as u8,
        ((svc % 25) * ENDPOINTS + j + 1) as u8,
    )
}

fn fresh_ip(k: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 201, (k / 250) as u8, (k % 250 + 1) as u8)
}

fn endpoints_json(eps: &[(Ipv4Addr, bool)]) -> serde_json::Value {
    eps.iter()
        .map(|(ip, ready)| json!({"addresses": [ip.to_string()], "conditions": {"ready": ready}, "nodeName": "bench-node"}))
        .collect()
}

async fn create<K>(api: &Api<K>, obj: serde_json::Value) -> Result<K>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(obj)?;
    Ok(api.create(&PostParams::default(), &obj).await?)
}

/// Creates the Services and their slices; returns each Service's cluster IP.
async fn populate(client: &Client, n: usize) -> Result<Vec<Ipv4Addr>> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for i in 0..NAMESPACES.min(n) {
        create(&namespaces, json!({"metadata": {"name": namespace_of(i)}})).await?;
    }
    let created: Vec<Result<(usize, Ipv4Addr)>> = stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            async move {
                let ns = namespace_of(i);
                let services: Api<Service> = Api::namespaced(client.clone(), &ns);
                let slices: Api<EndpointSlice> = Api::namespaced(client, &ns);
                let name = format!("svc-{i}");
                let svc = create(&services, json!({
                    "metadata": {"name": name},
                    "spec": {"ports": [{"name": "http", "port": 80, "targetPort": TARGET_PORT}]}
                }))
                .await?;
                let eps: Vec<(Ipv4Addr, bool)> =
                    (0..ENDPOINTS).map(|j| (endpoint_ip(i, j), true)).collect();
                create(&slices, json!({
                    "metadata": {"name": format!("{name}-1"), "labels": {"kubernetes.io/service-name": name}},
                    "addressType": "IPv4",
                    "ports": [{"name": "http", "port": TARGET_PORT, "protocol": "TCP"}],
                    "endpoints": endpoints_json(&eps),
                }))
                .await?;
                let ip = svc
                    .spec
                    .and_then(|s| s.cluster_ip)
                    .context("no cluster IP")?
                    .parse()?;
                Ok((i, ip))
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let mut ips = vec![Ipv4Addr::UNSPECIFIED; n];
    for r in created {
        let (i, ip) = r?;
        ips[i] = ip;
    }
    Ok(ips)
}

/// The Service the throughput client uses: two ports, the backend's 10 addresses.
async fn echo_service(client: &Client) -> Result<Ipv4Addr> {
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let svc = create(
        &services,
        json!({
            "metadata": {"name": "echo"},
            "spec": {"ports": [
                {"name": "bulk", "port": 80, "targetPort": BULK_PORT},
                {"name": "short", "port": 81, "targetPort": SHORT_VIA_PORT}
            ]}
        }),
    )
    .await?;
    let eps: Vec<(Ipv4Addr, bool)> = backend_ips().into_iter().map(|ip| (ip, true)).collect();
    create(
        &slices,
        json!({
            "metadata": {"name": "echo-1", "labels": {"kubernetes.io/service-name": "echo"}},
            "addressType": "IPv4",
            "ports": [
                {"name": "bulk", "port": BULK_PORT, "protocol": "TCP"},
                {"name": "short", "port": SHORT_VIA_PORT, "protocol": "TCP"}
            ],
            "endpoints": endpoints_json(&eps),
        }),
    )
    .await?;
    Ok(svc
        .spec
        .and_then(|s| s.cluster_ip)
        .context("echo has no cluster IP")?
        .parse()?)
}

// ---------------------------------------------------------------------------------------
// Figures.

fn percentile<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    // Nearest rank.
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn fmt_ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms >= 100.0 {
        format!("{} ms", thousands(ms))
    } else {
        format!("{ms:.1} ms")
    }
}

fn fmt_us(us: u64) -> String {
    if us >= 1000 {
        format!("{:.2} ms", us as f64 / 1e3)
    } else {
        format!("{us} µs")
    }
}

fn kib(bytes: usize) -> String {
    if bytes >= 1024 * 1024 {
        format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
    } else if bytes >= 1024 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{bytes} B")
    }
}

struct SyncFigures {
    services: usize,
    first_sync: Duration,
    first: SyncReport,
    table_listed: (usize, usize),
    /// Per change: observer latency, monitor latency, informer delay, build, apply,
    /// script lines and bytes.
    changes: Vec<ChangeSample>,
    batch_window: Duration,
}

struct ChangeSample {
    kind: &'static str,
    observed: Duration,
    kernel: Duration,
    seen: Duration,
    report: SyncReport,
}

struct TcpFigures {
    rounds: usize,
    secs: f64,
    workers: usize,
    bulk_cluster: (u64, f64),
    bulk_direct: (u64, f64),
    short_cluster: (Vec<u64>, u64, f64),
    short_direct: (Vec<u64>, u64, f64),
    /// Each round's rate: (test, via ClusterIP) → per round.
    rounds_seen: std::collections::BTreeMap<(&'static str, bool), Vec<f64>>,
}

struct DnsRow {
    label: String,
    sockets: usize,
    lat: Vec<u64>,
    errors: u64,
    timeouts: u64,
    secs: f64,
}

// ---------------------------------------------------------------------------------------
// The phases.

/// `nft monitor` in the node namespace: each line with when it was read.
struct Monitor {
    _child: tokio::process::Child,
    lines: mpsc::UnboundedReceiver<(Instant, String)>,
    backlog: VecDeque<(Instant, String)>,
}

impl Monitor {
    async fn start(ns: &str) -> Result<Self> {
        let mut child = tokio::process::Command::new("ip")
            .args(["netns", "exec", ns, "nft", "monitor", "chains"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting nft monitor")?;
        let stdout = child.stdout.take().context("nft monitor's output")?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send((Instant::now(), line)).is_err() {
                    return;
                }
            }
        });
        // Let it subscribe before anything it must see happens.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut me = Self {
            _child: child,
            lines: rx,
            backlog: VecDeque::new(),
        };
        me.drain();
        Ok(me)
    }

    fn drain(&mut self) {
        while self.lines.try_recv().is_ok() {}
        self.backlog.clear();
    }

    /// When a line containing `needle` was read (waiting up to `timeout`).
    async fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<Instant> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            while let Some((t, line)) = self.backlog.pop_front() {
                if line.contains(needle) {
                    return Ok(t);
                }
            }
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(item)) => self.backlog.push_back(item),
                Ok(None) => bail!("nft monitor stopped"),
                Err(_) => bail!("the kernel never announced a chain matching {needle:?}"),
            }
        }
    }
}

fn chain_token(ip: Ipv4Addr) -> String {
    // Endpoint chains are named `ep-<hash>-<ip with _>-<port>`.
    format!("-{}-{TARGET_PORT}", ip.to_string().replace('.', "_"))
}

async fn next_report(
    rx: &mut mpsc::UnboundedReceiver<SyncReport>,
    timeout: Duration,
) -> Result<SyncReport> {
    match tokio::time::timeout(timeout, rx.recv()).await {
        Ok(Some(r)) => Ok(r),
        Ok(None) => bail!("the proxy stopped"),
        Err(_) => bail!("the proxy applied nothing within {timeout:?}"),
    }
}

async fn rule_sync(
    server: &Server,
    topo: &Topology,
    sizes: &Sizes,
    shutdown: &CancellationToken,
    proxy_task: &mut Option<tokio::task::JoinHandle<Result<(), skiff_proxy::NftError>>>,
) -> Result<SyncFigures> {
    let client = server.client().await?;
    let node = topo.name("node");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut settings = skiff_proxy::Settings::new("bench-node");
    settings.cluster_cidr = Some(POD_CIDR.into());
    settings.nft = Nft::in_netns(&node);
    settings.observer = Some(tx);
    let batch_window = settings.batch_window;
    println!(
        "rule sync: starting the proxy on {} Services …",
        sizes.services
    );
    let started = Instant::now();
    *proxy_task = Some(tokio::spawn(skiff_proxy::run(
        server.client().await?,
        settings,
        shutdown.clone(),
    )));
    let first = next_report(&mut rx, Duration::from_secs(120)).await?;
    let first_sync = first.applied - started;
    println!(
        "  whole table committed {} after start ({} lines, {}; nft {}), {} chains, {} map elements",
        fmt_ms(first_sync),
        thousands(first.script_lines as f64),
        kib(first.script_bytes),
        fmt_ms(first.apply),
        thousands(first.chains as f64),
        thousands(first.map_elements as f64)
    );
    // The kernel's own view: every Service's cluster IP in the dispatch map.
    let map = topo.exec(
        "node",
        &[
            "nft",
            "list",
            "map",
            "ip",
            skiff_proxy::TABLE,
            "service-ips",
        ],
    )?;
    let chains = topo.exec("node", &["nft", "list", "chains", "ip"])?;
    let chain_count = chains
        .lines()
        .filter(|l| l.trim_start().starts_with("chain "))
        .count();
    let listed = (map.matches(" : goto ").count(), chain_count);
    println!(
        "  kernel: {} service-ips elements, {} chains",
        listed.0, listed.1
    );
    if listed.0 < sizes.services {
        bail!(
            "the kernel's service-ips map holds {} elements, expected at least {}",
            listed.0,
            sizes.services
        );
    }

    let mut monitor = Monitor::start(&node).await?;
    // Anything the start-up left (the initial no-op wake) is settled by now.
    tokio::time::sleep(batch_window * 2).await;
    while rx.try_recv().is_ok() {}
    let mut state: Vec<Vec<(Ipv4Addr, bool)>> = (0..sizes.services)
        .map(|i| (0..ENDPOINTS).map(|j| (endpoint_ip(i, j), true)).collect())
        .collect();
    let mut changes = Vec::new();
    let mut fresh = 0;
    println!(
        "rule sync: {} single-endpoint changes, one at a time …",
        sizes.changes
    );
    for c in 0..sizes.changes {
        let svc = (c * 389 + 7) % sizes.services;
        let j = (c / 2) % ENDPOINTS;
        let (kind, needle) = if c % 2 == 0 {
            // An endpoint turns not-ready: its chain goes.
            let ip = state[svc][j].0;
            state[svc][j].1 = false;
            ("not-ready", chain_token(ip))
        } else {
            // An endpoint is replaced by a new pod IP: a new chain comes.
            let ip = fresh_ip(fresh);
            fresh += 1;
            state[svc][j] = (ip, true);
            ("new IP", chain_token(ip))
        };
        let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), &namespace_of(svc));
        monitor.drain();
        while rx.try_recv().is_ok() {}
        slices
            .patch(
                &format!("svc-{svc}-1"),
                &PatchParams::default(),
                &Patch::Merge(json!({"endpoints": endpoints_json(&state[svc])})),
            )
            .await?;
        let written = Instant::now();
        let report = next_report(&mut rx, Duration::from_secs(10)).await?;
        let kernel = monitor.wait_for(&needle, Duration::from_secs(10)).await?;
        if report.full {
            bail!("change {c}: the proxy rewrote the whole table");
        }
        let seen = report
            .first_change
            .map_or(Duration::ZERO, |t| t.saturating_duration_since(written));
        changes.push(ChangeSample {
            kind,
            observed: report.applied.saturating_duration_since(written),
            kernel: kernel.saturating_duration_since(written),
            seen,
            report,
        });
        // A pause, so the next write starts a batch of its own.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut obs: Vec<Duration> = changes.iter().map(|c| c.observed).collect();
    obs.sort();
    let mut ker: Vec<Duration> = changes.iter().map(|c| c.kernel).collect();
    ker.sort();
    println!(
        "  write → applied p50 {} p99 {}; → seen in the kernel p50 {} p99 {}",
        fmt_ms(percentile(&obs, 0.5)),
        fmt_ms(percentile(&obs, 0.99)),
        fmt_ms(percentile(&ker, 0.5)),
        fmt_ms(percentile(&ker, 0.99)),
    );
    Ok(SyncFigures {
        services: sizes.services,
        first_sync,
        first,
        table_listed: listed,
        changes,
        batch_window,
    })
}

async fn throughput(
    me: &Path,
    topo: &Topology,
    sizes: &Sizes,
    cluster_ip: Ipv4Addr,
) -> Result<TcpFigures> {
    let direct: Vec<SocketAddr> = backend_ips()
        .into_iter()
        .map(|ip| SocketAddr::new(ip.into(), BULK_PORT))
        .collect();
    let direct_short: Vec<String> = backend_ips()
        .into_iter()
        .map(|ip| SocketAddr::new(ip.into(), SHORT_PORT).to_string())
        .collect();
    let via_bulk = SocketAddr::new(cluster_ip.into(), 80).to_string();
    let via_short = SocketAddr::new(cluster_ip.into(), 81).to_string();
    let secs = sizes.tcp_secs.to_string();
    let workers = sizes.short_workers.to_string();
    // The path works at all, both ways, before anything is timed.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let a = topo
            .helper(
                me,
                Some("client"),
                &[
                    "--tcp-client".into(),
                    "short".into(),
                    via_short.clone(),
                    "0.2".into(),
                    "1".into(),
                ],
            )
            .await;
        let b = topo
            .helper(
                me,
                Some("client"),
                &[
                    "--tcp-client".into(),
                    "short".into(),
                    direct_short[0].clone(),
                    "0.2".into(),
                    "1".into(),
                ],
            )
            .await;
        let ok = |v: &Result<serde_json::Value>| {
            v.as_ref().is_ok_and(|v| {
                v["errors"] == 0 && v["lat_us"].as_array().is_some_and(|a| !a.is_empty())
            })
        };
        if ok(&a) && ok(&b) {
            break;
        }
        if Instant::now() > deadline {
            bail!("the client cannot reach the backend: via ClusterIP {a:?}, direct {b:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut f = TcpFigures {
        rounds: sizes.rounds,
        secs: sizes.tcp_secs,
        workers: sizes.short_workers,
        bulk_cluster: (0, 0.0),
        bulk_direct: (0, 0.0),
        short_cluster: (Vec::new(), 0, 0.0),
        short_direct: (Vec::new(), 0, 0.0),
        rounds_seen: Default::default(),
    };
    for round in 0..sizes.rounds {
        for turn in 0..2 {
            // Alternate which path goes first.
            let via = (turn == 0) == (round % 2 == 0);
            let target = if via {
                via_bulk.clone()
            } else {
                direct[round % direct.len()].to_string()
            };
            let v = topo
                .helper(
                    me,
                    Some("client"),
                    &["--tcp-client".into(), "bulk".into(), target, secs.clone()],
                )
                .await?;
            let bytes = v["bytes"].as_u64().unwrap_or(0);
            let s = v["secs"].as_f64().unwrap_or(0.0);
            let slot = if via {
                &mut f.bulk_cluster
            } else {
                &mut f.bulk_direct
            };
            slot.0 += bytes;
            slot.1 += s;
            f.rounds_seen
                .entry(("bulk", via))
                .or_default()
                .push(bytes as f64 / s.max(1e-9) / 1e6);
            println!(
                "  round {} bulk {:<10} {:>8.1} MB/s",
                round + 1,
                if via { "ClusterIP" } else { "direct" },
                bytes as f64 / s / 1e6
            );
        }
        for turn in 0..2 {
            let via = (turn == 0) == (round % 2 == 0);
            let target = if via {
                via_short.clone()
            } else {
                direct_short.join(",")
            };
            let v = topo
                .helper(
                    me,
                    Some("client"),
                    &[
                        "--tcp-client".into(),
                        "short".into(),
                        target,
                        secs.clone(),
                        workers.clone(),
                    ],
                )
                .await?;
            let lat: Vec<u64> = v["lat_us"]
                .as_array()
                .map(|a| a.iter().filter_map(|x| x.as_u64()).collect())
                .unwrap_or_default();
            let s = v["secs"].as_f64().unwrap_or(0.0);
            f.rounds_seen
                .entry(("short", via))
                .or_default()
                .push(lat.len() as f64 / s.max(1e-9));
            println!(
                "  round {} short {:<10} {:>8.0} conn/s ({} errors)",
                round + 1,
                if via { "ClusterIP" } else { "direct" },
                lat.len() as f64 / s,
                v["errors"]
            );
            let slot = if via {
                &mut f.short_cluster
            } else {
                &mut f.short_direct
            };
            slot.0.extend(lat);
            slot.1 += v["errors"].as_u64().unwrap_or(0);
            slot.2 += s;
        }
    }
    f.short_cluster.0.sort_unstable();
    f.short_direct.0.sort_unstable();
    Ok(f)
}

/// A stub upstream resolver: every A question gets 192.0.2.7 with a 300 s TTL.
fn stub_upstream(asked: Arc<AtomicU64>) -> Result<SocketAddr> {
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    let addr = sock.local_addr()?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        loop {
            let Ok((n, peer)) = sock.recv_from(&mut buf) else {
                return;
            };
            if n < 12 {
                continue;
            }
            asked.fetch_add(1, Ordering::Relaxed);
            let mut resp = Vec::with_capacity(n + 16);
            resp.extend_from_slice(&buf[..2]);
            resp.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
            // The question as asked (this stub ignores any EDNS record after it).
            let mut end = 12;
            while end < n && buf[end] != 0 {
                end += buf[end] as usize + 1;
            }
            end = (end + 5).min(n);
            resp.extend_from_slice(&buf[12..end]);
            resp.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x01, 0x2c, 0, 4, 192, 0, 2, 7]);
            let _ = sock.send_to(&resp, peer);
        }
    });
    Ok(addr)
}

async fn dns(
    me: &Path,
    topo: &Topology,
    server: &Server,
    sizes: &Sizes,
    cluster_ips: &[Ipv4Addr],
    shutdown: &CancellationToken,
) -> Result<(Vec<DnsRow>, u64)> {
    let asked = Arc::new(AtomicU64::new(0));
    let upstream = stub_upstream(asked.clone())?;
    let factory = InformerFactory::new(server.client().await?);
    let view = skiff_dns::InformerView::new(&factory);
    factory.start(shutdown.clone());
    view.wait_synced().await;
    let addrs = skiff_dns::serve(
        skiff_dns::Settings {
            listen: vec!["127.0.0.1:0".parse()?],
            domain: "cluster.local".into(),
            upstreams: vec![upstream],
        },
        Arc::new(view),
        shutdown.clone(),
    )
    .await?;
    let dns = addrs[0];
    let name = |i: usize| format!("svc-{i}.{}.svc.cluster.local", namespace_of(i));
    // The answers are right before they are counted.
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    for i in (0..sizes.services).step_by((sizes.services / 20).max(1)) {
        sock.send_to(&dns_query(i as u16, &name(i)), dns).await?;
        let mut buf = [0u8; 1500];
        let (n, _) = tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf))
            .await
            .context("no DNS answer")??;
        let got = dns_answer_a(&buf[..n], i as u16);
        if got != Some(cluster_ips[i]) {
            bail!("{} answered {got:?}, expected {}", name(i), cluster_ips[i]);
        }
    }
    let dir = tempfile::tempdir()?;
    let service_names = dir.path().join("services.txt");
    std::fs::write(
        &service_names,
        (0..sizes.services)
            .map(|i| name(i) + "\n")
            .collect::<String>(),
    )?;
    let forwarded = dir.path().join("forwarded.txt");
    std::fs::write(&forwarded, format!("{CACHED_NAME}\n"))?;
    let mut rows = Vec::new();
    // The floor: a bare responder (one thread, fixed answer, no DNS parsing) given the
    // same questions, so the table shows what the loopback round trip itself costs here.
    let bare = stub_upstream(Arc::new(AtomicU64::new(0)))?;
    let names = format!("{} Service names (A)", thousands(sizes.services as f64));
    let floor = "… the same to a bare UDP responder (floor)".to_string();
    for (label, target, file, sockets) in [
        (names.clone(), dns, &service_names, 1),
        (floor.clone(), bare, &service_names, 1),
        (names, dns, &service_names, sizes.dns_sockets),
        (floor, bare, &service_names, sizes.dns_sockets),
        (
            "one forwarded name, from the cache (A)".to_string(),
            dns,
            &forwarded,
            sizes.dns_sockets,
        ),
    ] {
        println!("dns: {label}, {sockets} socket(s), {} s …", sizes.dns_secs);
        let v = topo
            .helper(
                me,
                None,
                &[
                    "--dns-load".into(),
                    target.to_string(),
                    sizes.dns_secs.to_string(),
                    sockets.to_string(),
                    file.display().to_string(),
                ],
            )
            .await?;
        let mut lat: Vec<u64> = v["lat_us"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x.as_u64()).collect())
            .unwrap_or_default();
        lat.sort_unstable();
        let row = DnsRow {
            label,
            sockets,
            errors: v["errors"].as_u64().unwrap_or(0),
            timeouts: v["timeouts"].as_u64().unwrap_or(0),
            secs: v["secs"].as_f64().unwrap_or(1.0),
            lat,
        };
        println!(
            "  {:.0} queries/s, p50 {} p99 {}, {} errors, {} timeouts",
            row.lat.len() as f64 / row.secs,
            fmt_us(percentile(&row.lat, 0.5)),
            fmt_us(percentile(&row.lat, 0.99)),
            row.errors,
            row.timeouts
        );
        rows.push(row);
    }
    Ok((rows, asked.load(Ordering::Relaxed)))
}

// ---------------------------------------------------------------------------------------
// The report.

fn render(
    sizes: &Sizes,
    sync: &SyncFigures,
    tcp: &TcpFigures,
    dns: &[DnsRow],
    upstream_asked: u64,
    load: (&str, &str),
    quick: bool,
) -> String {
    let mut out = String::new();
    let n = sync.changes.len();
    let sorted = |f: &dyn Fn(&ChangeSample) -> Duration| {
        let mut v: Vec<Duration> = sync.changes.iter().map(f).collect();
        v.sort();
        v
    };
    let observed = sorted(&|c| c.observed);
    let kernel = sorted(&|c| c.kernel);
    let seen = sorted(&|c| c.seen);
    let build = sorted(&|c| c.report.build);
    let apply = sorted(&|c| c.report.apply);
    let mut lines: Vec<usize> = sync.changes.iter().map(|c| c.report.script_lines).collect();
    lines.sort_unstable();
    let mut bytes: Vec<usize> = sync.changes.iter().map(|c| c.report.script_bytes).collect();
    bytes.sort_unstable();
    let p = |v: &[Duration]| {
        format!(
            "{} / {}",
            fmt_ms(percentile(v, 0.5)),
            fmt_ms(percentile(v, 0.99))
        )
    };
    let kinds = |k: &str| sync.changes.iter().filter(|c| c.kind == k).count();
    out.push_str(&format!(
        "**Rule sync**: {} Services × {} endpoints; the table holds {} chains and {} map elements ({} service-ips elements and {} chains listed back from the kernel).\n\n",
        thousands(sync.services as f64),
        ENDPOINTS,
        thousands(sync.first.chains as f64),
        thousands(sync.first.map_elements as f64),
        thousands(sync.table_listed.0 as f64),
        thousands(sync.table_listed.1 as f64),
    ));
    out.push_str("| Measure | Result |\n|---|---:|\n");
    out.push_str(&format!(
        "| First sync: proxy start → whole table committed (lists, build, one transaction) | {} |\n",
        fmt_ms(sync.first_sync)
    ));
    out.push_str(&format!(
        "| … of which building the rules and the script | {} |\n",
        fmt_ms(sync.first.build)
    ));
    out.push_str(&format!(
        "| … of which the `nft -f` transaction ({} lines, {}) | {} |\n",
        thousands(sync.first.script_lines as f64),
        kib(sync.first.script_bytes),
        fmt_ms(sync.first.apply)
    ));
    out.push_str(&format!(
        "| Endpoint change ({n}: {} not-ready, {} new IP): API write returned → proxy's transaction applied, p50 / p99 | {} |\n",
        kinds("not-ready"),
        kinds("new IP"),
        p(&observed)
    ));
    out.push_str(&format!(
        "| … → the kernel's notification read from `nft monitor`, p50 / p99 | {} |\n",
        p(&kernel)
    ));
    out.push_str(&format!(
        "| … of which write → proxy's informer has the change, p50 / p99 | {} |\n",
        p(&seen)
    ));
    out.push_str(&format!(
        "| … of which the batch window (default) | {} |\n",
        fmt_ms(sync.batch_window)
    ));
    out.push_str(&format!(
        "| … of which rebuilding the changed Service's rules and the script, p50 / p99 | {} |\n",
        p(&build)
    ));
    out.push_str(&format!(
        "| … of which the incremental `nft -f` transaction, p50 / p99 | {} |\n",
        p(&apply)
    ));
    out.push_str(&format!(
        "| Incremental transaction size, p50 / max | {} / {} lines, {} / {} |\n",
        percentile(&lines, 0.5),
        lines.last().copied().unwrap_or(0),
        kib(percentile(&bytes, 0.5)),
        kib(bytes.last().copied().unwrap_or(0)),
    ));
    out.push_str(&format!(
        "| Full rewrite of the table, for comparison | {} lines, {} ({:.0}× the median change) |\n\n",
        thousands(sync.first.script_lines as f64),
        kib(sync.first.script_bytes),
        sync.first.script_bytes as f64 / percentile(&bytes, 0.5).max(1) as f64,
    ));

    let mbps = |(b, s): (u64, f64)| b as f64 / s.max(1e-9) / 1e6;
    let rate = |(l, _, s): &(Vec<u64>, u64, f64)| l.len() as f64 / s.max(1e-9);
    let (bc, bd) = (mbps(tcp.bulk_cluster), mbps(tcp.bulk_direct));
    let (sc, sd) = (rate(&tcp.short_cluster), rate(&tcp.short_direct));
    out.push_str(&format!(
        "**Throughput**, client pod namespace → backend pod namespace over the node's bridge ({} rounds of {} s per path and test, alternating):\n\n",
        tcp.rounds, tcp.secs
    ));
    out.push_str("| Test | via ClusterIP | straight to pod IP | ClusterIP / direct |\n|---|---:|---:|---:|\n");
    out.push_str(&format!(
        "| Bulk TCP, one connection (MB/s) | {} | {} | {:.2}× |\n",
        thousands(bc),
        thousands(bd),
        bc / bd.max(1e-9)
    ));
    let range = |test: &'static str, via: bool| {
        let v = tcp
            .rounds_seen
            .get(&(test, via))
            .cloned()
            .unwrap_or_default();
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(0.0, f64::max);
        format!("{}–{}", thousands(lo), thousands(hi))
    };
    out.push_str(&format!(
        "| … slowest–fastest round | {} | {} | |\n",
        range("bulk", true),
        range("bulk", false)
    ));
    out.push_str(&format!(
        "| Short connections, {} workers (connections/s) | {} | {} | {:.2}× |\n",
        tcp.workers,
        thousands(sc),
        thousands(sd),
        sc / sd.max(1e-9)
    ));
    out.push_str(&format!(
        "| … slowest–fastest round | {} | {} | |\n",
        range("short", true),
        range("short", false)
    ));
    let lat = |v: &[u64], q: f64| fmt_us(percentile(v, q));
    out.push_str(&format!(
        "| … connect → response → close, p50 | {} | {} | |\n",
        lat(&tcp.short_cluster.0, 0.5),
        lat(&tcp.short_direct.0, 0.5)
    ));
    out.push_str(&format!(
        "| … p99 | {} | {} | |\n",
        lat(&tcp.short_cluster.0, 0.99),
        lat(&tcp.short_direct.0, 0.99)
    ));
    out.push_str(&format!(
        "| … failed connections | {} | {} | |\n\n",
        tcp.short_cluster.1, tcp.short_direct.1
    ));

    out.push_str(&format!(
        "**DNS** over UDP on loopback ({} s per row, closed loop: one query in flight per socket):\n\n",
        sizes.dns_secs
    ));
    out.push_str("| Queries | sockets | queries/s | p50 | p99 | errors / timeouts |\n|---|---:|---:|---:|---:|---:|\n");
    for r in dns {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} / {} |\n",
            r.label,
            r.sockets,
            thousands(r.lat.len() as f64 / r.secs),
            fmt_us(percentile(&r.lat, 0.5)),
            fmt_us(percentile(&r.lat, 0.99)),
            r.errors,
            r.timeouts
        ));
    }
    out.push_str(&format!(
        "\nThe stub upstream was asked {upstream_asked} time(s) for the forwarded name (questions that miss the cache together share one upstream exchange); every other answer came from the cache.\n"
    ));
    out.push_str("\nPercentiles are nearest-rank over all samples.\n");
    out.push_str(&skiff_loadgen::sections::provenance(
        load.0, load.1, quick, RERUN,
    ));
    out
}

async fn bench(args: &BenchArgs, me: &Path) -> Result<String> {
    let sizes = if args.quick {
        Sizes {
            services: 100,
            changes: 10,
            rounds: 1,
            tcp_secs: 1.0,
            short_workers: 4,
            dns_secs: 1.0,
            dns_sockets: 8,
        }
    } else {
        Sizes {
            services: 1000,
            changes: 100,
            rounds: 3,
            tcp_secs: 3.0,
            short_workers: 4,
            dns_secs: 3.0,
            dns_sockets: 8,
        }
    };
    let before = load_average();
    println!("load average {before}; starting skiff server …");
    let skiff = skiff_binary()?;
    let (server, _) = Server::start(
        &skiff,
        None,
        &["--disable-scheduler", "--disable-controller-manager"],
    )
    .await?;
    let client = server.client().await?;
    let t = Instant::now();
    let cluster_ips = populate(&client, sizes.services).await?;
    let echo_ip = echo_service(&client).await?;
    println!(
        "created {} Services and EndpointSlices in {:.1} s",
        sizes.services,
        t.elapsed().as_secs_f64()
    );
    let topo = Topology::setup(me)?;
    let shutdown = CancellationToken::new();
    let mut proxy = None;
    let result = async {
        let sync = rule_sync(&server, &topo, &sizes, &shutdown, &mut proxy).await?;
        println!("throughput: ClusterIP {echo_ip} vs the pod IPs …");
        let tcp = throughput(me, &topo, &sizes, echo_ip).await?;
        let (dns_rows, asked) = dns(me, &topo, &server, &sizes, &cluster_ips, &shutdown).await?;
        Ok::<_, anyhow::Error>((sync, tcp, dns_rows, asked))
    }
    .await;
    shutdown.cancel();
    if let Some(p) = proxy {
        match p.await {
            Ok(Err(e)) => eprintln!("the proxy failed: {e}"),
            Err(e) => eprintln!("the proxy task: {e}"),
            Ok(Ok(())) => {}
        }
    }
    drop(topo);
    let (sync, tcp, dns_rows, asked) = result?;
    let after = load_average();
    Ok(render(
        &sizes,
        &sync,
        &tcp,
        &dns_rows,
        asked,
        (&before, &after),
        args.quick,
    ))
}

fn main() -> Result<()> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if let Some(r) = helper_mode(&argv) {
        return r;
    }
    let args = BenchArgs::parse_from_args("skiff-servicebench", argv)?;
    let me = std::env::current_exe()?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let section = rt.block_on(async {
        tokio::select! {
            r = bench(&args, &me) => r,
            _ = tokio::signal::ctrl_c() => bail!("interrupted"),
        }
    })?;
    println!("\n{section}");
    if let Some(file) = &args.write {
        skiff_loadgen::sections::write(file, BEGIN, END, DESCRIPTION, &section)?;
        println!("wrote the Services and DNS section of {}", file.display());
    }
    Ok(())
}
