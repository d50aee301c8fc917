//! Harness for integration tests: starts the real `skiff server` binary on a free
//! loopback port with a temporary data dir, waits for `/readyz`, and runs the real
//! `kubectl` against it. The server is killed when the handle drops.
//!
//! A missing `kubectl` is a failure naming the package to install, never a skip.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    pub port: u16,
    pub data_dir: tempfile::TempDir,
    /// kubectl and kube-rs with the admin kubeconfig (`server.ok(..)` etc. through Deref).
    pub admin: Admin,
    child: Option<Child>,
    log: PathBuf,
    extra_args: Vec<String>,
    /// Run the local node agent (off unless asked for: it needs containerd and root).
    agent: bool,
}

impl Server {
    /// A server on the embedded store.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// A server with extra `skiff server` flags (e.g. `--datastore-endpoint`), without
    /// a local node agent.
    pub fn start_with(args: &[&str]) -> Self {
        Self::start_inner(args, false, |_| {})
    }

    /// A server that also runs its local node agent (containerd, CNI); `prepare` runs on
    /// the data dir before the server starts (e.g. to put images in `agent/images/`).
    pub fn start_with_agent(args: &[&str], prepare: impl FnOnce(&Path)) -> Self {
        Self::start_inner(args, true, prepare)
    }

    fn start_inner(args: &[&str], agent: bool, prepare: impl FnOnce(&Path)) -> Self {
        let data_dir = tempfile::Builder::new()
            .prefix("skiff-test-")
            .tempdir()
            .expect("temp dir");
        let port = skiff_testkit::free_port();
        let kubeconfig = data_dir.path().join("kubeconfig.yaml");
        let log = data_dir.path().join("server.log");
        let mut server = Server {
            port,
            admin: Admin { kubeconfig },
            child: None,
            log,
            extra_args: args.iter().map(|a| a.to_string()).collect(),
            agent,
            data_dir,
        };
        prepare(server.data_dir.path());
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log");
        let err = out.try_clone().expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .arg("server")
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .arg("--bind-address")
            .arg("127.0.0.1")
            .arg("--https-listen-port")
            .arg(self.port.to_string())
            .args(&self.extra_args)
            .args((!self.agent).then_some("--disable-agent"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start skiff server");
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(30));
    }

    /// Kills the server with SIGKILL (as a crash would), keeping its data.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server as a service manager would (SIGTERM, SIGKILL after 30 s),
    /// keeping its data.
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_child(child, Duration::from_secs(30));
        }
    }

    /// Stops the server gracefully and starts it again on the same port and data dir.
    pub fn restart_gracefully(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Starts the server again on the same port and data dir.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `/readyz` answers ok (over TLS, checked with curl-free raw probing:
    /// kubectl's `get --raw`).
    pub fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() && self.kubeconfig.exists() {
                let out = self.kubectl(&["get", "--raw", "/readyz"]);
                if out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok" {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "skiff server not ready within {timeout:?}; its log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// kubectl and kube-rs as the cluster's admin: what every test harness offers.
pub struct Admin {
    pub kubeconfig: PathBuf,
}

impl Admin {
    /// Runs kubectl with the admin kubeconfig.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_stdin(args, None)
    }

    /// Runs kubectl with `stdin` piped in (for `-f -`).
    pub fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        kubectl_with(&self.kubeconfig, args, stdin)
    }

    /// Runs kubectl and returns stdout, failing the test with stderr if it failed.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {} failed:\n{}\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl expecting failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            !out.status.success(),
            "kubectl {} unexpectedly succeeded:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `kubectl apply/create -f -` with a manifest.
    pub fn ok_stdin(&self, args: &[&str], manifest: &str) -> String {
        let out = self.kubectl_stdin(args, Some(manifest));
        assert!(
            out.status.success(),
            "kubectl {} failed:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl get ... -o json` parsed.
    pub fn get_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&all)).expect("kubectl -o json output is JSON")
    }

    /// Pods in `ns` matching `selector` (all when empty) as JSON items.
    pub fn pods(&self, ns: &str, selector: &str) -> Vec<serde_json::Value> {
        let mut args = vec!["get", "pods", "-n", ns];
        if !selector.is_empty() {
            args.extend(["-l", selector]);
        }
        self.get_json(&args)["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// A kube-rs client with the admin kubeconfig.
    pub async fn kube(&self) -> kube::Client {
        kube_client(&self.kubeconfig).await
    }
}

impl std::ops::Deref for Server {
    type Target = Admin;
    fn deref(&self) -> &Admin {
        &self.admin
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn kubectl_binary() -> &'static str {
    if Path::new("/usr/bin/kubectl").exists() {
        "/usr/bin/kubectl"
    } else {
        panic!("kubectl not found: install Debian's kubectl package (apt-get install -y kubectl)")
    }
}

pub fn kubectl_with(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(kubectl_binary());
    cmd.args(args)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run kubectl");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(input.as_bytes()).expect("write stdin");
    }
    let out = child.wait_with_output().expect("kubectl output");
    let _ = std::io::empty().read(&mut []);
    out
}

/// Polls `check` until it returns true or `timeout` passes (no fixed sleeps in tests).
pub fn eventually(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Server {
    /// The join token file's contents (`K10<CA hash>::<id>.<secret>`). The server writes
    /// it just after it turns ready, so a test that starts right away may wait a moment.
    pub fn join_token_file(&self) -> String {
        let path = self.data_dir.path().join("server").join("token");
        eventually(Duration::from_secs(30), "the join token file", || {
            path.exists()
        });
        std::fs::read_to_string(&path).expect("reading the join token file")
    }

    /// Runs kubectl with extra environment variables (e.g. `EDITOR` for `kubectl edit`).
    pub fn kubectl_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(kubectl_binary());
        cmd.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.output().expect("run kubectl")
    }

    /// Writes `contents` to a file named `name` in the server's temp dir; returns its path.
    pub fn write_file(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.data_dir.path().join(name);
        std::fs::write(&path, contents).expect("write test file");
        path
    }

    /// Starts a long-running kubectl (e.g. `get --watch`) in the background, its stdout and
    /// stderr going to files; the process is killed when the handle drops.
    pub fn kubectl_background(&self, args: &[&str]) -> Background {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stdout = self.data_dir.path().join(format!("bg-{n}.out"));
        let stderr = self.data_dir.path().join(format!("bg-{n}.err"));
        let child = Command::new(kubectl_binary())
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("bg stdout"))
            .stderr(std::fs::File::create(&stderr).expect("bg stderr"))
            .spawn()
            .expect("run kubectl in the background");
        Background {
            child,
            stdout,
            stderr,
        }
    }
}

/// A kubectl running in the background; killed on drop.
pub struct Background {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Background {
    /// What it has printed to stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Whether it has exited (and with what status).
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A kube-rs client built from a kubeconfig file, as an unmodified kube-rs program would.
pub async fn kube_client(kubeconfig: &Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig parses");
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .expect("kube-rs accepts the kubeconfig");
    kube::Client::try_from(config).expect("kube-rs client")
}

/// A kube-rs watcher backoff for tests: retry every 200 ms (the default grows to 30 s,
/// which would only slow a test that restarts the server down).
pub struct QuickBackoff;

impl Iterator for QuickBackoff {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        Some(Duration::from_millis(200))
    }
}

impl kube::runtime::utils::Backoff for QuickBackoff {
    fn reset(&mut self) {}
}

impl Server {
    /// Runs kubectl with `stdin` expecting failure; returns stderr.
    pub fn fails_stdin(&self, args: &[&str], stdin: &str) -> String {
        let out = self.kubectl_stdin(args, Some(stdin));
        assert!(
            !out.status.success(),
            "kubectl {} unexpectedly succeeded:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

/// The ReplicationController example from the user's notes, as shipped in `examples/`.
pub fn nginx_rc_path() -> String {
    format!(
        "{}/../../examples/nginx-rc.yaml",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// A `skiff hollow-nodes` process (simulated nodes) against a test server; killed
/// (SIGKILL, so its heartbeats just stop, as a lost machine's would) when dropped.
pub struct HollowNodes {
    child: Child,
    pub log: PathBuf,
}

impl HollowNodes {
    /// `count` nodes named `<prefix><index>` from `start_index`, with extra `args`.
    pub fn start(
        server: &Server,
        count: usize,
        prefix: &str,
        start_index: usize,
        args: &[&str],
    ) -> Self {
        let log = server
            .data_dir
            .path()
            .join(format!("hollow-{prefix}{start_index}.log"));
        let out = std::fs::File::create(&log).expect("log");
        let err = out.try_clone().expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(["hollow-nodes", "--kubeconfig"])
            .arg(&server.kubeconfig)
            .args(["--count", &count.to_string(), "--name-prefix", prefix])
            .args(["--start-index", &start_index.to_string()])
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start skiff hollow-nodes");
        Self { child, log }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for HollowNodes {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Server {
    /// Waits until `n` nodes report Ready.
    pub fn wait_nodes_ready(&self, n: usize, timeout: Duration) {
        eventually(timeout, &format!("{n} nodes Ready"), || {
            let nodes = self.get_json(&["get", "nodes", "-o", "json"]);
            let ready = nodes["items"]
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .filter(|n| {
                            n["status"]["conditions"].as_array().is_some_and(|cs| {
                                cs.iter()
                                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
                            })
                        })
                        .count()
                })
                .unwrap_or(0);
            ready >= n
        });
    }

    /// Names of the pods in `ns` matching `selector` that are Running and not being
    /// deleted.
    pub fn running_pods(&self, ns: &str, selector: &str) -> Vec<String> {
        self.pods(ns, selector)
            .into_iter()
            .filter(|p| {
                p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null()
            })
            .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
            .collect()
    }
}

/// Removes every pod sandbox of the containerd at `socket` (which stops their
/// containers and tears their network down), if it answers within a few seconds.
pub fn remove_all_pods(socket: &Path) {
    if !socket.exists() {
        return;
    }
    let socket = socket.display().to_string();
    let _ = std::panic::catch_unwind(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let work = async {
                let Ok(mut cri) = skiff_cri::connect(&socket).await else {
                    return;
                };
                let Ok(list) = cri
                    .runtime
                    .list_pod_sandbox(skiff_cri::api::ListPodSandboxRequest { filter: None })
                    .await
                else {
                    return;
                };
                for sb in list.into_inner().items {
                    let _ = cri
                        .runtime
                        .stop_pod_sandbox(skiff_cri::api::StopPodSandboxRequest {
                            pod_sandbox_id: sb.id.clone(),
                        })
                        .await;
                    let _ = cri
                        .runtime
                        .remove_pod_sandbox(skiff_cri::api::RemovePodSandboxRequest {
                            pod_sandbox_id: sb.id,
                        })
                        .await;
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(30), work).await;
        })
    });
}

/// SIGTERM, then SIGKILL after `grace`; waits for the process.
pub fn stop_child(mut c: Child, grace: Duration) {
    if let Ok(Some(_)) = c.try_wait() {
        return;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &c.id().to_string()])
        .status();
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = c.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = c.kill();
    let _ = c.wait();
}
