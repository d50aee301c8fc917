//! Servers under test. The contenders: a real `skiff server` process, on the embedded store or on a real etcd
//! started by `skiff-testkit`. Both processes are killed (SIGKILL) when their handles drop,
//! which also happens when the benchmark fails, panics or is interrupted.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use skiff_testkit::EtcdCluster;

/// How often the cold-start probe asks `/readyz`.
const READY_POLL: Duration = Duration::from_millis(2);
/// A server not ready after this is broken, not slow.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Which store the server runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Etcd,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Embedded => "embedded",
            Backend::Etcd => "etcd",
        }
    }
}

/// A running server and, for the etcd backend, the etcd it stores into.
pub struct Contender {
    /// Declared before `etcd` so the server stops before its store does.
    pub server: Server,
    pub etcd: Option<EtcdCluster>,
    /// Spawn to first `/readyz` ok.
    pub cold_start: Duration,
}

impl Contender {
    /// `extra` are more `skiff server` flags.
    pub async fn start(backend: Backend, skiff: &Path, extra: &[&str]) -> Result<Self> {
        let etcd = match backend {
            Backend::Embedded => None,
            Backend::Etcd => Some(tokio::task::spawn_blocking(EtcdCluster::start).await?),
        };
        let endpoints = etcd.as_ref().map(EtcdCluster::endpoints);
        let (server, cold_start) = Server::start(skiff, endpoints.as_deref(), extra).await?;
        Ok(Self {
            server,
            etcd,
            cold_start,
        })
    }

    /// Resident memory of the server and of etcd (if any), now.
    pub fn memory(&self) -> Result<Memory> {
        let etcd = match &self.etcd {
            Some(cluster) => {
                let pid = cluster.members[0].pid().context("etcd is not running")?;
                Some(rss_bytes(pid)?)
            }
            None => None,
        };
        Ok(Memory {
            server: rss_bytes(self.server.pid())?,
            etcd,
        })
    }
}

/// VmRSS of the server and of etcd, in bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    pub server: u64,
    pub etcd: Option<u64>,
}

impl Memory {
    pub fn total(&self) -> u64 {
        self.server + self.etcd.unwrap_or(0)
    }
}

/// One `skiff server` process with a temporary data dir on a free loopback port.
pub struct Server {
    child: Child,
    pub kubeconfig: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Spawns the server and polls `/readyz` every few milliseconds; returns it with the
    /// time from spawn to the first "ok".
    pub async fn start(
        skiff: &Path,
        datastore: Option<&[String]>,
        extra: &[&str],
    ) -> Result<(Self, Duration)> {
        let dir = tempfile::Builder::new()
            .prefix("skiff-loadgen-")
            .tempdir()?;
        let log = dir.path().join("server.log");
        let out = std::fs::File::create(&log)?;
        let port = skiff_testkit::free_port();
        let mut cmd = Command::new(skiff);
        cmd.arg("server")
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--bind-address", "127.0.0.1", "--https-listen-port"])
            .arg(port.to_string())
            // Control-plane benchmarks: no local node (hollow nodes stand in for nodes).
            .arg("--disable-agent")
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        if let Some(endpoints) = datastore {
            cmd.arg("--datastore-endpoint").arg(endpoints.join(","));
        }
        let spawned = Instant::now();
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", skiff.display()))?;
        let mut server = Server {
            child,
            kubeconfig: dir.path().join("kubeconfig.yaml"),
            log,
            _dir: dir,
        };
        let mut probe: Option<Client> = None;
        loop {
            if let Some(status) = server.child.try_wait()? {
                bail!("skiff server exited ({status}); its log:\n{}", server.log());
            }
            if probe.is_none() {
                // The server writes its kubeconfig (atomically) shortly before it listens.
                probe = server.client().await.ok();
            }
            if let Some(client) = &probe {
                let req = http::Request::get("/readyz").body(Vec::new())?;
                if matches!(client.request_text(req).await, Ok(body) if body.trim() == "ok") {
                    return Ok((server, spawned.elapsed()));
                }
            }
            if spawned.elapsed() > READY_TIMEOUT {
                bail!(
                    "skiff server not ready within {READY_TIMEOUT:?}; its log:\n{}",
                    server.log()
                );
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A new kube client (its own connection pool) with the admin kubeconfig.
    pub async fn client(&self) -> Result<Client> {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig)?;
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
        Ok(Client::try_from(config)?)
    }

    /// `n` independent clients, as `n` separate programs would have.
    pub async fn clients(&self, n: usize) -> Result<Vec<Client>> {
        let mut clients = Vec::with_capacity(n);
        for _ in 0..n {
            clients.push(self.client().await?);
        }
        Ok(clients)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `skiff` binary: `SKIFF_BIN`, else next to this program's own executable.
pub fn skiff_binary() -> Result<PathBuf> {
    let path = match std::env::var_os("SKIFF_BIN") {
        Some(bin) => PathBuf::from(bin),
        None => std::env::current_exe()?
            .parent()
            .context("the benchmark's executable has no directory")?
            .join("skiff"),
    };
    if !path.is_file() {
        bail!(
            "no skiff binary at {}: build it first: cargo build --release -p skiff -p skiff-loadgen \
             (or point SKIFF_BIN at one)",
            path.display()
        );
    }
    Ok(path)
}

/// VmRSS of a process, from `/proc/<pid>/status`.
pub fn rss_bytes(pid: u32) -> Result<u64> {
    let status = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&status).with_context(|| format!("reading {status}"))?;
    skiff_testkit::report::proc_kib(&text, "VmRSS:")
        .map(|kib| kib * 1024)
        .with_context(|| format!("no VmRSS in {status}"))
}
