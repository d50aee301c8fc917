//! A `skiff server` with its local node agent for end-to-end tests: its own containerd
//! (under the test's data dir), a bridge and pod subnet no other test uses, the busybox
//! test image imported at start. Dropped (also when a test fails), it kills the agent
//! and server, removes every pod sandbox through the containerd they leave behind, kills
//! that containerd and any process left under the data dir by pid, and deletes the
//! bridge.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::support::{eventually, Server};

pub const IMAGE: &str = skiff_cri::image::BUSYBOX_TEST_IMAGE;
pub const NODE: &str = "agent-node";

static SEQ: AtomicU32 = AtomicU32::new(0);

pub struct AgentServer {
    pub server: Server,
    pub bridge: String,
    pub subnet: String,
    /// `skiff agent` flags, when the agent runs as its own process.
    agent_args: Vec<String>,
    agent: Option<std::process::Child>,
}

impl std::ops::Deref for AgentServer {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.server
    }
}

impl std::ops::DerefMut for AgentServer {
    fn deref_mut(&mut self) -> &mut Server {
        &mut self.server
    }
}

impl AgentServer {
    /// Starts the server with its in-process agent; waits until the node is Ready.
    pub fn start() -> Self {
        Self::start_inner(false)
    }

    /// Starts a server without an agent and `skiff agent` as its own process beside it
    /// (same data dir); waits until the node is Ready.
    pub fn start_separate() -> Self {
        Self::start_inner(true)
    }

    fn start_inner(separate: bool) -> Self {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let tag = format!("{}{}", pid % 100_000, n);
        // 10.214.0.0/16 is the agent tests' range (skiff-cri's tests use 10.213/16): one
        // /24 per server, the third octet from pid and sequence.
        let octet = (pid.wrapping_mul(11).wrapping_add(n)) % 250 + 1;
        let subnet = format!("10.214.{octet}.0/24");
        let bridge = format!("ska{tag}");
        let port = skiff_testkit::free_port().to_string();
        let node_args: Vec<String> = [
            "--node-name",
            NODE,
            "--node-ip",
            "127.0.0.1",
            "--cni-bridge",
            &bridge,
            "--kubelet-port",
            &port,
            // Several of these servers share the host's network namespace (one nftables
            // table, one port 53): Services are tested in namespaces (netns_support).
            "--disable-kube-proxy",
            "--disable-dns",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        let prepare = |dir: &Path| {
            let images = dir.join("agent").join("images");
            std::fs::create_dir_all(&images).expect("images dir");
            skiff_cri::image::build_busybox_image(&images.join("busybox.tar"), IMAGE)
                .expect("building the busybox test image");
        };
        let mut server_args: Vec<&str> = vec!["--cluster-cidr", &subnet];
        let server = if separate {
            let s = Server::start_with(&server_args);
            prepare(s.data_dir.path());
            s
        } else {
            server_args.extend(node_args.iter().map(String::as_str));
            Server::start_with_agent(&server_args, prepare)
        };
        let mut s = AgentServer {
            server,
            bridge,
            subnet,
            agent_args: if separate { node_args } else { Vec::new() },
            agent: None,
        };
        if separate {
            s.start_agent();
        }
        s.wait_node_ready(Duration::from_secs(60));
        s
    }

    /// Starts the separate `skiff agent` process.
    pub fn start_agent(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.server.data_dir.path().join("agent.log"))
            .expect("agent log");
        let err = log.try_clone().expect("agent log");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_skiff"))
            .arg("agent")
            .arg("--kubeconfig")
            .arg(&self.server.kubeconfig)
            .arg("--data-dir")
            .arg(self.server.data_dir.path())
            .args(&self.agent_args)
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("starting skiff agent");
        self.agent = Some(child);
    }

    /// Kills the separate agent with SIGKILL (a crash: its containerd is left behind).
    pub fn kill_agent(&mut self) {
        if let Some(mut c) = self.agent.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the separate agent with SIGTERM and waits for it to exit.
    pub fn stop_agent(&mut self) {
        if let Some(mut c) = self.agent.take() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(self.server.data_dir.path().join("agent.log")).unwrap_or_default()
    }

    pub fn agent_dir(&self) -> PathBuf {
        self.server.data_dir.path().join("agent")
    }

    pub fn socket(&self) -> PathBuf {
        self.agent_dir().join("containerd").join("containerd.sock")
    }

    pub fn wait_node_ready(&self, timeout: Duration) {
        eventually(timeout, "the node is Ready", || {
            let out = self.server.kubectl(&[
                "get",
                "node",
                NODE,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ]);
            String::from_utf8_lossy(&out.stdout).trim() == "True"
        });
    }

    /// A pod's status (as kubectl prints it in JSON), or Null when absent.
    pub fn pod(&self, name: &str) -> serde_json::Value {
        let out = self.server.kubectl(&["get", "pod", name, "-o", "json"]);
        if !out.status.success() {
            return serde_json::Value::Null;
        }
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }

    /// Waits until `check` holds for pod `name`'s JSON; returns that JSON.
    pub fn wait_pod(
        &self,
        name: &str,
        timeout: Duration,
        what: &str,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let mut last = serde_json::Value::Null;
        let start = std::time::Instant::now();
        while start.elapsed() < timeout {
            last = self.pod(name);
            if check(&last) {
                return last;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "pod {name}: {what} not seen within {timeout:?}; last:\n{}\nserver log tail:\n{}",
            serde_json::to_string_pretty(&last["status"]).unwrap_or_default(),
            tail(&self.server.log(), 40)
        );
    }

    /// Runs `f` with a CRI client of this node's containerd.
    pub fn with_cri<T>(&self, f: impl AsyncFnOnce(skiff_cri::Cri) -> T) -> T {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let socket = self.socket().display().to_string();
        rt.block_on(async move {
            let cri = skiff_cri::connect(&socket)
                .await
                .expect("connecting to CRI");
            f(cri).await
        })
    }

    /// Ids of the runtime's containers that are running.
    pub fn running_container_ids(&self) -> Vec<String> {
        self.with_cri(async |mut cri| {
            let list = cri
                .runtime
                .list_containers(skiff_cri::api::ListContainersRequest { filter: None })
                .await
                .expect("listing containers")
                .into_inner()
                .containers;
            let mut ids: Vec<String> = list
                .into_iter()
                .filter(|c| c.state == skiff_cri::api::ContainerState::ContainerRunning as i32)
                .map(|c| c.id)
                .collect();
            ids.sort();
            ids
        })
    }
}

/// Pids of processes whose command line mentions `dir` (container shims of this test's
/// containerd, or containerd itself).
fn processes_under(dir: &Path) -> Vec<u32> {
    let needle = dir.display().to_string();
    let mut pids = Vec::new();
    let me = std::process::id();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmd).contains(&needle) {
            pids.push(pid);
        }
    }
    pids
}

impl Drop for AgentServer {
    fn drop(&mut self) {
        // Agent and server go first, with SIGKILL: a live agent recreates the sandboxes
        // removed under it, and those would outlive the test (network namespaces, veths).
        // Their containerd runs in its own process group and stays up for the removal.
        self.kill_agent();
        self.server.kill();
        crate::support::remove_all_pods(&self.socket());
        let dir = self.server.data_dir.path().to_path_buf();
        for pid in processes_under(&dir) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        // Mounts left by killed containers would keep the temp dir from being removed.
        if let Ok(mounts) = std::fs::read_to_string("/proc/mounts") {
            let prefix = dir.display().to_string();
            let mut targets: Vec<&str> = mounts
                .lines()
                .filter_map(|l| l.split_whitespace().nth(1))
                .filter(|t| t.starts_with(&prefix))
                .collect();
            targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
            for t in targets {
                let _ = std::process::Command::new("umount")
                    .args(["-l", t])
                    .status();
            }
        }
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
    }
}

pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
