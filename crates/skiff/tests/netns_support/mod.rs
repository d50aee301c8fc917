//! A multi-node cluster on one machine, each node in its own network namespace.
//!
//! [`Cluster::start`] builds:
//!
//! - on the host, a Linux bridge (`snb<tag>`, `<tag>` unique per process and cluster)
//!   holding `10.215.<k>.1/24` (`<k>` picked from 1..=250 among the /24s no host address
//!   uses), `net.ipv4.ip_forward=1`, and an nftables table of its own (`skiff_netns_<tag>`)
//!   that drops anything forwarded between the bridge and any other interface, so the
//!   nodes' traffic stays on the bridge;
//! - `skiff server --disable-agent` in the host namespace, listening only on the bridge
//!   address (kubectl and the nodes reach it there; its serving certificate names it),
//!   with its own `--cluster-cidr` (10.216.0.0/16 unless told otherwise: every node's pod
//!   network lives inside that node's namespace, so clusters never see each other's) and
//!   shortened node lifecycle timings (grace 15 s, pods tolerate not-ready/unreachable for
//!   2 s) so a lost node's pods come back elsewhere within seconds;
//! - per node `i`: a network namespace `skiff-<tag>-n<i>` joined to the bridge by a veth
//!   pair (host end `snv<tag>-<i>`, `eth0` inside with `10.215.<k>.<10+i>/24`, `lo` up,
//!   default route via the bridge address, IP forwarding on), and in it `skiff agent`
//!   named `node-<i>` that joins with the server's token (its own certificate through a
//!   CSR), starts its own containerd under `<dir>/node-<i>/agent`, imports the busybox test
//!   image ([`IMAGE`]), routes the other nodes' pod subnets through their addresses, and
//!   runs the service proxy (nftables rules in its namespace) and the cluster DNS on its
//!   address, as every node does (`--cluster-cidr` is passed to it too). Kubelet port
//!   `10250 + i`, pod bridge `snp<tag>-<i>`.
//!
//! Nothing the nodes send leaves the machine: the host's nameservers are out of reach
//! too, so the nodes' DNS resolves cluster names only (give `--resolv-conf` through
//! [`Options::agent_args`] for a resolver of your own).
//!
//! The agents enter their namespace with `nsenter --net` rather than `ip netns exec`:
//! the latter also remounts `/sys` privately, which hides the cgroup hierarchy runc needs.
//!
//! Pod IPs are reachable only from inside the nodes' namespaces (and the pods): use
//! [`Cluster::exec_in_node`] (e.g. with curl) to reach a pod or a Service from a node.
//! The API server reaches each agent's kubelet port, so `kubectl logs/exec/port-forward`
//! work as usual.
//!
//! Dropping the cluster (also after a failed assertion) removes every pod through CRI,
//! stops the agents (which stop their containerd) and the server, kills whatever is left
//! of the nodes' containers (processes descending from the nodes' shims, and every
//! process in the nodes' or their pods' namespaces), deletes those namespaces, the pods'
//! cgroups, mounts under the data dir, the veths, the bridge and the nftables table.

#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::support::{stop_child, Admin};

/// The image pods of these tests run (`busybox:skiff`, imported by every node).
pub const IMAGE: &str = skiff_cri::image::BUSYBOX_TEST_IMAGE;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// What a cluster is started with beyond the defaults.
#[derive(Clone, Debug)]
pub struct Options {
    /// `--cluster-cidr` of the server (each node gets a /24 of it).
    pub cluster_cidr: String,
    /// `--node-monitor-grace-period` in seconds. The agents renew their Lease every
    /// 10 s by default, so anything much shorter than 15 makes healthy nodes flap unless
    /// `agent_args` shortens `--node-lease-duration-seconds` (renewal at a quarter).
    pub node_monitor_grace_period: u64,
    /// `--default-not-ready-toleration-seconds` and
    /// `--default-unreachable-toleration-seconds`.
    pub toleration_seconds: u64,
    /// More `skiff server` flags.
    pub server_args: Vec<String>,
    /// More `skiff agent` flags, for every node.
    pub agent_args: Vec<String>,
    /// A resolv.conf for every node's agent (`--resolv-conf`: its DNS forwards names
    /// outside the cluster to these nameservers); `{bridge}` becomes the bridge address,
    /// where a test can answer.
    pub resolv_conf: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            cluster_cidr: "10.216.0.0/16".into(),
            node_monitor_grace_period: 15,
            toleration_seconds: 2,
            server_args: Vec::new(),
            agent_args: Vec::new(),
            resolv_conf: None,
        }
    }
}

/// One node: its namespace, addresses and agent process.
struct NodeHandle {
    name: String,
    netns: String,
    /// Host end of the veth pair.
    veth: String,
    ip: String,
    dir: PathBuf,
    args: Vec<String>,
    agent: Option<Child>,
}

/// A server and `n` nodes in network namespaces; see the module doc.
pub struct Cluster {
    /// The cluster's temp dir: the server's data dir, `node-<i>/` per node, logs.
    pub dir: tempfile::TempDir,
    /// Unique part of every name this cluster creates.
    pub tag: String,
    /// The host bridge.
    pub bridge: String,
    /// The bridge's address: where the API server listens.
    pub server_ip: String,
    pub port: u16,
    /// Admin kubeconfig (server `https://<server_ip>:<port>`).
    /// kubectl and kube-rs as admin (`cluster.ok(..)` etc. through Deref).
    pub admin: Admin,
    /// The server's join token.
    pub token: String,
    pub options: Options,
    server: Option<Child>,
    nodes: Vec<NodeHandle>,
    nft_table: Option<String>,
}

/// Runs a command, failing the test with its output if it fails.
fn run(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "{} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a command, ignoring failure (cleanup).
fn run_quiet(args: &[&str]) {
    let _ = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A /24 third octet in 10.215.<k>.0 that no host address uses yet.
fn free_octet(seed: u32) -> u32 {
    let out = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .expect("ip addr (install iproute2)");
    let used = String::from_utf8_lossy(&out.stdout).into_owned();
    (0..250)
        .map(|i| (seed + i) % 250 + 1)
        .find(|k| !used.contains(&format!(" 10.215.{k}.")))
        .expect("a free 10.215.<k>.0/24 for the test bridge")
}

pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Cluster {
    /// A cluster of `nodes` nodes with the default [`Options`]; returns once every node
    /// is Ready.
    pub fn start(nodes: usize) -> Cluster {
        Self::start_with(nodes, Options::default())
    }

    pub fn start_with(nodes: usize, options: Options) -> Cluster {
        assert!((1..=100).contains(&nodes), "1 to 100 nodes, not {nodes}");
        let seq = SEQ.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let tag = format!("{pid:x}{seq}");
        let dir = tempfile::Builder::new()
            .prefix("skiff-netns-")
            .tempdir()
            .expect("temp dir");
        let octet = free_octet(pid.wrapping_mul(7).wrapping_add(seq * 31));
        let server_ip = format!("10.215.{octet}.1");
        let mut cluster = Cluster {
            admin: Admin {
                kubeconfig: dir.path().join("kubeconfig.yaml"),
            },
            dir,
            bridge: format!("snb{tag}"),
            tag: tag.clone(),
            server_ip,
            port: skiff_testkit::free_port(),
            token: String::new(),
            options,
            server: None,
            nodes: Vec::new(),
            nft_table: None,
        };
        // From here on Drop cleans up whatever was made, also when a step panics.
        cluster.make_bridge();
        for i in 0..nodes {
            cluster.make_node(i, octet);
        }
        cluster.start_server();
        let image = cluster.dir.path().join("busybox.tar");
        skiff_cri::image::build_busybox_image(&image, IMAGE)
            .expect("building the busybox test image (install busybox-static)");
        for i in 0..nodes {
            let images = cluster.nodes[i].dir.join("agent").join("images");
            std::fs::create_dir_all(&images).expect("images dir");
            let target = images.join("busybox.tar");
            if std::fs::hard_link(&image, &target).is_err() {
                std::fs::copy(&image, &target).expect("copying the test image");
            }
            cluster.start_agent(i);
        }
        cluster.wait_nodes_ready(Duration::from_secs(90));
        cluster
    }

    fn make_bridge(&mut self) {
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").expect("enabling ip_forward");
        run(&["ip", "link", "add", &self.bridge, "type", "bridge"]);
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", self.server_ip),
            "dev",
            &self.bridge,
        ]);
        run(&["ip", "link", "set", &self.bridge, "up"]);
        let table = format!("skiff_netns_{}", self.tag);
        let rules = format!(
            "table ip {table} {{\n  chain forward {{\n    type filter hook forward priority 0; policy accept;\n    iifname \"{b}\" oifname != \"{b}\" drop\n    oifname \"{b}\" iifname != \"{b}\" drop\n  }}\n}}\n",
            b = self.bridge
        );
        let rules_file = self.dir.path().join("host.nft");
        std::fs::write(&rules_file, rules).expect("writing nft rules");
        run(&["nft", "-f", &rules_file.display().to_string()]);
        self.nft_table = Some(table);
    }

    fn make_node(&mut self, i: usize, octet: u32) {
        let netns = format!("skiff-{}-n{i}", self.tag);
        let veth = format!("snv{}-{i}", self.tag);
        let ip = format!("10.215.{octet}.{}", 10 + i);
        let dir = self.dir.path().join(format!("node-{i}"));
        std::fs::create_dir_all(&dir).expect("node dir");
        run(&["ip", "netns", "add", &netns]);
        self.nodes.push(NodeHandle {
            name: format!("node-{i}"),
            netns: netns.clone(),
            veth: veth.clone(),
            ip: ip.clone(),
            dir,
            args: Vec::new(),
            agent: None,
        });
        run(&[
            "ip", "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &netns,
        ]);
        run(&["ip", "link", "set", &veth, "master", &self.bridge, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["ip", "netns", "exec", &netns];
            all.extend_from_slice(args);
            run(&all);
        };
        inside(&["ip", "link", "set", "lo", "up"]);
        inside(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
        inside(&["ip", "link", "set", "eth0", "up"]);
        inside(&["ip", "route", "add", "default", "via", &self.server_ip]);
        inside(&["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
    }

    fn start_server(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("server.log")).expect("log");
        let err = log.try_clone().expect("log");
        let o = &self.options;
        let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .arg("server")
            .arg("--data-dir")
            .arg(self.dir.path())
            .args(["--bind-address", &self.server_ip])
            .args(["--https-listen-port", &self.port.to_string()])
            .args(["--tls-san", &self.server_ip])
            .arg("--disable-agent")
            .args(["--cluster-cidr", &o.cluster_cidr])
            .args([
                "--node-monitor-grace-period",
                &o.node_monitor_grace_period.to_string(),
            ])
            .args([
                "--default-not-ready-toleration-seconds",
                &o.toleration_seconds.to_string(),
            ])
            .args([
                "--default-unreachable-toleration-seconds",
                &o.toleration_seconds.to_string(),
            ])
            .args(&o.server_args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("start skiff server");
        self.server = Some(child);
        let token_file = self.dir.path().join("server").join("token");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.kubeconfig.exists() && token_file.exists() {
                let out = self.kubectl(&["get", "--raw", "/readyz"]);
                if out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok" {
                    break;
                }
            }
            if let Some(Ok(Some(status))) = self.server.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "skiff server exited ({status}); its log:\n{}",
                    self.server_log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "skiff server not ready within 60 s; its log:\n{}",
                self.server_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        self.token = std::fs::read_to_string(&token_file)
            .expect("join token")
            .trim()
            .to_string();
    }

    /// Starts node `i`'s agent (again, after [`Cluster::stop_agent`]): it keeps its data
    /// dir, so it reuses its certificate and adopts the pods still running.
    pub fn start_agent(&mut self, i: usize) {
        assert!(self.nodes[i].agent.is_none(), "node-{i}'s agent runs");
        let n = &self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(n.dir.join("agent.log"))
            .expect("agent log");
        let err = log.try_clone().expect("agent log");
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", n.netns))
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_skiff"))
            .arg("agent")
            .args(["--server", &self.url()])
            .arg("--data-dir")
            .arg(&n.dir)
            .args(["--node-name", &n.name, "--node-ip", &n.ip])
            .args(["--kubelet-port", &(10250 + i).to_string()])
            .args(["--cni-bridge", &format!("snp{}-{i}", self.tag)])
            .args(["--cluster-cidr", &self.options.cluster_cidr])
            .args(&self.options.agent_args)
            .args(&n.args)
            .args(self.resolv_conf_args(i))
            .env("SKIFF_TOKEN", &self.token)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("starting skiff agent under nsenter (util-linux)");
        self.nodes[i].agent = Some(child);
    }

    /// Stops node `i`'s agent as a service manager would (SIGTERM, SIGKILL after 30 s)
    /// and waits for it: its containerd stops, its pods' containers keep running, its
    /// Lease is no longer renewed.
    pub fn stop_agent(&mut self, i: usize) {
        if let Some(c) = self.nodes[i].agent.take() {
            stop_child(c, Duration::from_secs(30));
        }
    }

    /// Kills node `i`'s agent with SIGKILL (a crash: its containerd is left running).
    pub fn kill_agent(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].agent.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `--resolv-conf <file>` for node `i` when [`Options::resolv_conf`] is set.
    fn resolv_conf_args(&self, i: usize) -> Vec<String> {
        let Some(text) = &self.options.resolv_conf else {
            return Vec::new();
        };
        let path = self.nodes[i].dir.join("resolv.conf");
        std::fs::write(&path, text.replace("{bridge}", self.bridge_ip()))
            .expect("writing the node's resolv.conf");
        vec!["--resolv-conf".into(), path.display().to_string()]
    }

    /// The bridge's address on the host: what the nodes' default routes point at, and
    /// where the API server listens (same as `server_ip`).
    pub fn bridge_ip(&self) -> &str {
        &self.server_ip
    }

    /// `https://<server_ip>:<port>`.
    pub fn url(&self) -> String {
        format!("https://{}:{}", self.server_ip, self.port)
    }

    pub fn nodes(&self) -> usize {
        self.nodes.len()
    }

    /// `node-<i>`.
    pub fn node_name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// Node `i`'s address (its InternalIP).
    pub fn node_ip(&self, i: usize) -> &str {
        &self.nodes[i].ip
    }

    /// Name of node `i`'s network namespace (`ip netns` lists it).
    pub fn netns(&self, i: usize) -> &str {
        &self.nodes[i].netns
    }

    /// Node `i`'s data dir (`agent/` under it: containerd, pods, logs, CNI config).
    pub fn node_dir(&self, i: usize) -> &Path {
        &self.nodes[i].dir
    }

    /// Node `i`'s containerd socket.
    pub fn socket(&self, i: usize) -> PathBuf {
        self.nodes[i]
            .dir
            .join("agent")
            .join("containerd")
            .join("containerd.sock")
    }

    /// Runs `cmd` inside node `i`'s network namespace (e.g. `curl` to a pod IP).
    pub fn exec_in_node(&self, i: usize, cmd: &[&str]) -> Output {
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.nodes[i].netns))
            .arg("--")
            .args(cmd)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("nsenter {}: {e}", cmd.join(" ")))
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    pub fn agent_log(&self, i: usize) -> String {
        std::fs::read_to_string(self.nodes[i].dir.join("agent.log")).unwrap_or_default()
    }

    /// The last `n` lines of the server's and every agent's log, for failure messages.
    pub fn logs(&self, n: usize) -> String {
        let mut out = format!("--- server log:\n{}\n", tail(&self.server_log(), n));
        for i in 0..self.nodes.len() {
            out += &format!("--- node-{i} agent log:\n{}\n", tail(&self.agent_log(i), n));
        }
        out
    }

    /// Node `i` as JSON.
    pub fn node(&self, i: usize) -> serde_json::Value {
        self.get_json(&["get", "node", &self.nodes[i].name])
    }

    /// Status of node `i`'s Ready condition ("True", "False", "Unknown"; "" if none).
    pub fn node_ready(&self, i: usize) -> String {
        let out = self.kubectl(&[
            "get",
            "node",
            &self.nodes[i].name,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Node `i`'s pod subnet (spec.podCIDR).
    pub fn pod_cidr(&self, i: usize) -> String {
        self.node(i)["spec"]["podCIDR"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Waits until every node reports Ready.
    pub fn wait_nodes_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let ready: Vec<bool> = (0..self.nodes.len())
                .map(|i| self.node_ready(i) == "True")
                .collect();
            if ready.iter().all(|r| *r) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nodes not all Ready within {timeout:?} ({ready:?});\n{}",
                self.logs(40)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A pod as JSON, or Null when it does not exist.
    pub fn pod(&self, ns: &str, name: &str) -> serde_json::Value {
        let out = self.kubectl(&["get", "pod", "-n", ns, name, "-o", "json"]);
        if !out.status.success() {
            return serde_json::Value::Null;
        }
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }

    /// Waits until pod `ns/name` is Running with an IP; returns its JSON.
    pub fn wait_pod_running(&self, ns: &str, name: &str, timeout: Duration) -> serde_json::Value {
        let mut last = serde_json::Value::Null;
        let found = wait_for(timeout, || {
            last = self.pod(ns, name);
            last["status"]["phase"] == "Running" && last["status"]["podIP"].is_string()
        });
        assert!(
            found,
            "pod {ns}/{name} not Running with an IP within {timeout:?}; its status:\n{}\n{}",
            serde_json::to_string_pretty(&last["status"]).unwrap_or_default(),
            self.logs(30)
        );
        last
    }

    /// Polls `check` until it holds or `timeout` passes (then fails the test with `what`
    /// and the logs' tails).
    pub fn eventually(&self, timeout: Duration, what: &str, check: impl FnMut() -> bool) {
        assert!(
            wait_for(timeout, check),
            "timed out after {timeout:?} waiting for {what};\n{}",
            self.logs(30)
        );
    }
}

/// Polls `check` every 200 ms until it holds (true) or `timeout` passes (false).
pub fn wait_for(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What one process is, for cleanup.
struct Proc {
    ppid: u32,
    netns: Option<u64>,
    cmdline: String,
}

fn processes() -> HashMap<u32, Proc> {
    let mut out = HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let path = entry.path();
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let netns = std::fs::metadata(path.join("ns").join("net"))
            .ok()
            .map(|m| m.ino());
        let cmdline = std::fs::read(path.join("cmdline"))
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .unwrap_or_default();
        out.insert(
            pid,
            Proc {
                ppid,
                netns,
                cmdline,
            },
        );
    }
    out
}

/// Network namespace inode of a `/run/netns/<name>` file.
fn netns_inode(name: &str) -> Option<u64> {
    std::fs::metadata(Path::new("/run/netns").join(name))
        .ok()
        .map(|m| m.ino())
}

impl Cluster {
    /// Kills every process left of the nodes (containerd, shims, containers in the
    /// node's or its pods' namespaces), deletes the pods' namespaces and cgroups.
    fn kill_leftovers(&self) {
        let own_netns = std::fs::metadata("/proc/self/ns/net").ok().map(|m| m.ino());
        let me = std::process::id();
        let procs = processes();
        let mut victims: BTreeSet<u32> = BTreeSet::new();
        let mut namespaces: HashSet<u64> = HashSet::new();
        let mut node_namespaces: HashSet<u64> = HashSet::new();
        for n in &self.nodes {
            let dir = n.dir.display().to_string();
            // The node's containerd and its shims name the node's data dir.
            victims.extend(
                procs
                    .iter()
                    .filter(|(_, p)| p.cmdline.contains(&dir))
                    .map(|(pid, _)| *pid),
            );
            if let Some(ino) = netns_inode(&n.netns) {
                node_namespaces.insert(ino);
                namespaces.insert(ino);
            }
        }
        // Their descendants (the containers) and the namespaces these live in.
        let mut changed = true;
        while changed {
            changed = false;
            for (pid, p) in &procs {
                if !victims.contains(pid) && victims.contains(&p.ppid) {
                    victims.insert(*pid);
                    changed = true;
                }
            }
        }
        namespaces.extend(victims.iter().filter_map(|pid| procs[pid].netns));
        if let Some(own) = own_netns {
            namespaces.remove(&own);
        }
        victims.extend(
            procs
                .iter()
                .filter(|(_, p)| p.netns.is_some_and(|ns| namespaces.contains(&ns)))
                .map(|(pid, _)| *pid),
        );
        victims.remove(&me);
        for pid in &victims {
            run_quiet(&["kill", "-KILL", &pid.to_string()]);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline
            && victims
                .iter()
                .any(|pid| Path::new(&format!("/proc/{pid}")).exists())
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        // Pod namespaces containerd pinned under /run/netns (cni-<uuid>).
        for entry in std::fs::read_dir("/run/netns")
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(ino) = netns_inode(&name) {
                if namespaces.contains(&ino) && !node_namespaces.contains(&ino) {
                    run_quiet(&["ip", "netns", "del", &name]);
                }
            }
        }
        // The pods' cgroups: runc removes a container's only through its shim, the agent
        // a pod's only when it sees the pod's containers gone. Every pod a node ran has
        // its dir under agent/pods/<uid>.
        for n in &self.nodes {
            let pods = n.dir.join("agent").join("pods");
            for entry in std::fs::read_dir(pods).into_iter().flatten().flatten() {
                remove_pod_cgroups(&entry.file_name().to_string_lossy());
            }
        }
    }
}

/// Removes pod `uid`'s cgroup directories (and its containers' inside them) under every
/// hierarchy, as runc and the kubelet lay them out: `kubepods[/<qos>]/pod<uid>`.
fn remove_pod_cgroups(uid: &str) {
    if uid.is_empty() || uid.contains('/') {
        return;
    }
    let roots = std::iter::once(PathBuf::from("/sys/fs/cgroup")).chain(
        std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path()),
    );
    for root in roots {
        for qos in ["", "burstable", "besteffort"] {
            let pod = root.join("kubepods").join(qos).join(format!("pod{uid}"));
            if !pod.is_dir() {
                continue;
            }
            for child in std::fs::read_dir(&pod).into_iter().flatten().flatten() {
                if child.path().is_dir() {
                    let _ = std::fs::remove_dir(child.path());
                }
            }
            let _ = std::fs::remove_dir(&pod);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].agent.is_some() {
                crate::support::remove_all_pods(&self.socket(i));
            }
        }
        // Each agent stops the containerd it started.
        for n in &mut self.nodes {
            if let Some(c) = n.agent.take() {
                stop_child(c, Duration::from_secs(20));
            }
        }
        if let Some(c) = self.server.take() {
            stop_child(c, Duration::from_secs(10));
        }
        self.kill_leftovers();
        // Mounts left by killed containers would keep the temp dir from being removed.
        if let Ok(mounts) = std::fs::read_to_string("/proc/mounts") {
            let prefix = format!("{}/", self.dir.path().display());
            let mut targets: Vec<&str> = mounts
                .lines()
                .filter_map(|l| l.split_whitespace().nth(1))
                .filter(|t| t.starts_with(&prefix))
                .collect();
            targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
            for t in targets {
                run_quiet(&["umount", "-l", t]);
            }
        }
        for n in &self.nodes {
            run_quiet(&["ip", "netns", "del", &n.netns]);
            // Gone with the namespace's end of the pair, unless that failed.
            run_quiet(&["ip", "link", "del", &n.veth]);
        }
        run_quiet(&["ip", "link", "del", &self.bridge]);
        if let Some(table) = &self.nft_table {
            run_quiet(&["nft", "delete", "table", "ip", table]);
        }
    }
}

impl std::ops::Deref for Cluster {
    type Target = Admin;
    fn deref(&self) -> &Admin {
        &self.admin
    }
}
