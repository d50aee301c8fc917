//! containerd as the agent's child process.
//!
//! Guarantees:
//! - Everything containerd keeps lives under `<agent-dir>/containerd/` (config.toml, root,
//!   state, containerd.sock, containerd.log), so several agents (or tests) run side by side.
//! - [`Containerd::start`] returns only once the socket answers CRI `Version`, with the
//!   sandbox image and `<agent-dir>/images/*.tar` imported (unless told not to).
//! - Stopping (or dropping) stops containerd only: SIGTERM, then SIGKILL after a grace.
//!   Containers keep running: each one's shim is its own session, outside containerd's
//!   process group, and a restarted containerd on the same directories finds them again.
//! - A containerd left behind by an agent that died (recorded in `containerd.pid`) is
//!   stopped before a new one starts on the same directories.

mod config;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::connect::{connect, Cri};
use crate::error::RuntimeError;
use crate::image::{ensure_pause_image, import_dir, PAUSE_IMAGE};

pub use config::{render as render_config, ConfigPaths};

/// Debian's containerd.
pub const CONTAINERD_BINARY: &str = "/usr/bin/containerd";
/// Debian's containernetworking-plugins install their binaries here.
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";

/// How to start containerd. [`ContainerdOptions::new`] fills in the defaults.
#[derive(Clone, Debug)]
pub struct ContainerdOptions {
    /// The agent's data dir (`<data-dir>/agent`); containerd's files go to `containerd/` under it.
    pub agent_dir: PathBuf,
    /// Where the CNI conflist is (the agent writes it: see [`crate::cni`]).
    pub cni_conf_dir: PathBuf,
    pub cni_bin_dir: PathBuf,
    pub binary: PathBuf,
    /// The image every sandbox runs; Skiff's own by default.
    pub sandbox_image: String,
    /// How long containerd may take to answer CRI `Version`.
    pub ready_timeout: Duration,
    /// Between SIGTERM and SIGKILL when stopping.
    pub stop_grace: Duration,
    /// Import the sandbox image and every `<agent-dir>/images/*.tar` once containerd is up.
    pub import_images: bool,
}

impl ContainerdOptions {
    pub fn new(agent_dir: impl Into<PathBuf>, cni_conf_dir: impl Into<PathBuf>) -> Self {
        ContainerdOptions {
            agent_dir: agent_dir.into(),
            cni_conf_dir: cni_conf_dir.into(),
            cni_bin_dir: CNI_BIN_DIR.into(),
            binary: CONTAINERD_BINARY.into(),
            sandbox_image: PAUSE_IMAGE.into(),
            ready_timeout: Duration::from_secs(30),
            stop_grace: Duration::from_secs(10),
            import_images: true,
        }
    }

    /// `<agent-dir>/containerd`.
    pub fn containerd_dir(&self) -> PathBuf {
        self.agent_dir.join("containerd")
    }

    /// `<agent-dir>/containerd/containerd.sock`.
    pub fn socket(&self) -> PathBuf {
        self.containerd_dir().join("containerd.sock")
    }

    /// `<agent-dir>/images`: tarballs imported at start.
    pub fn images_dir(&self) -> PathBuf {
        self.agent_dir.join("images")
    }
}

/// A running containerd (ours, or one given with `--container-runtime-endpoint`) and a CRI
/// connection to it.
pub struct Containerd {
    cri: Cri,
    child: Option<Owned>,
}

/// The parts that exist only when Skiff started containerd itself.
struct Owned {
    child: Child,
    pid_file: PathBuf,
    log: PathBuf,
    stop_grace: Duration,
}

impl Containerd {
    /// Writes the config, starts containerd and waits until it serves CRI. See the module
    /// docs for what is guaranteed.
    ///
    /// Errors: containerd missing or exiting early, or not ready within
    /// `opts.ready_timeout` (both with the tail of containerd.log), or an image import failing
    /// for the sandbox image (a failing `images/*.tar` is only logged).
    pub async fn start(opts: ContainerdOptions) -> Result<Containerd, RuntimeError> {
        let started = Instant::now();
        let dir = absolute(&opts.containerd_dir())?;
        let paths = ConfigPaths {
            root: dir.join("root"),
            state: dir.join("state"),
            socket: dir.join("containerd.sock"),
            runc_root: dir.join("state").join("runc"),
            cni_bin_dir: absolute(&opts.cni_bin_dir)?,
            cni_conf_dir: absolute(&opts.cni_conf_dir)?,
            sandbox_image: opts.sandbox_image.clone(),
        };
        for d in [&dir, &paths.root, &paths.state, &paths.cni_conf_dir] {
            std::fs::create_dir_all(d).map_err(io("creating", d))?;
        }
        let config_path = dir.join("config.toml");
        write_file(&config_path, render_config(&paths).as_bytes())?;
        let pid_file = dir.join("containerd.pid");
        let log = dir.join("containerd.log");
        stop_leftover(&pid_file, &config_path, opts.stop_grace).await;
        // A stale socket file from a killed containerd would make connects fail oddly.
        let _ = std::fs::remove_file(&paths.socket);

        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(io("opening", &log))?;
        let log_err = log_file.try_clone().map_err(io("opening", &log))?;
        let child = {
            use std::os::unix::process::CommandExt;
            Command::new(&opts.binary)
                .arg("--config")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log_file)
                .stderr(log_err)
                // Its own process group: a Ctrl-C meant for the agent must not reach
                // containerd before the agent has stopped it in order.
                .process_group(0)
                .spawn()
                .map_err(|source| RuntimeError::Spawn {
                    binary: opts.binary.clone(),
                    source,
                })?
        };
        let mut owned = Owned {
            child,
            pid_file,
            log,
            stop_grace: opts.stop_grace,
        };
        write_file(&owned.pid_file, owned.child.id().to_string().as_bytes())?;

        let cri = wait_ready(&mut owned, &paths.socket, opts.ready_timeout).await?;
        tracing::info!(
            socket = %paths.socket.display(),
            pid = owned.child.id(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "containerd is serving CRI"
        );
        let containerd = Containerd {
            cri,
            child: Some(owned),
        };
        if opts.import_images {
            ensure_pause_image(&containerd.cri, &dir).await?;
            import_dir(&paths.socket, &opts.images_dir()).await?;
        }
        Ok(containerd)
    }

    /// Connects to a runtime someone else runs (`--container-runtime-endpoint`); stopping
    /// this value leaves that runtime alone.
    pub async fn existing(endpoint: &str) -> Result<Containerd, RuntimeError> {
        let cri = connect(endpoint).await?;
        Ok(Containerd { cri, child: None })
    }

    /// The CRI connection (clones share it).
    pub fn cri(&self) -> &Cri {
        &self.cri
    }

    /// The CRI socket.
    pub fn socket(&self) -> &Path {
        &self.cri.socket
    }

    /// containerd's pid when Skiff started it.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|o| o.child.id())
    }

    /// containerd's log file when Skiff started it.
    pub fn log_path(&self) -> Option<&Path> {
        self.child.as_ref().map(|o| o.log.as_path())
    }

    /// Stops containerd if Skiff started it (SIGTERM, SIGKILL after the grace); containers
    /// keep running.
    pub async fn stop(mut self) {
        if let Some(owned) = self.child.take() {
            let _ = tokio::task::spawn_blocking(move || drop(owned)).await;
        }
    }
}

/// Dropping the handle (also on a failed start) stops the containerd it started.
impl Drop for Owned {
    fn drop(&mut self) {
        self.terminate();
    }
}

impl Owned {
    fn terminate(&mut self) {
        let pid = self.child.id();
        if !matches!(self.child.try_wait(), Ok(None)) {
            let _ = std::fs::remove_file(&self.pid_file);
            return;
        }
        signal(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + self.stop_grace;
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                let _ = std::fs::remove_file(&self.pid_file);
                tracing::info!(pid, "containerd stopped");
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::warn!(pid, grace = ?self.stop_grace, "containerd ignored SIGTERM; killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.pid_file);
    }
}

/// Polls until CRI `Version` answers, containerd exits, or the timeout passes.
async fn wait_ready(
    owned: &mut Owned,
    socket: &Path,
    timeout: Duration,
) -> Result<Cri, RuntimeError> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("socket not created yet");
    loop {
        if let Ok(Some(status)) = owned.child.try_wait() {
            let _ = std::fs::remove_file(&owned.pid_file);
            return Err(RuntimeError::Exited {
                status: status.to_string(),
                log: owned.log.clone(),
                tail: log_tail(&owned.log, 30),
            });
        }
        if socket.exists() {
            match connect(&socket.to_string_lossy()).await {
                Ok(mut cri) => {
                    let req = crate::api::VersionRequest::default();
                    match cri.runtime.version(req).await {
                        Ok(_) => return Ok(cri),
                        Err(status) => last = format!("CRI Version: {}", status.message()),
                    }
                }
                Err(e) => last = e.to_string(),
            }
        }
        if Instant::now() >= deadline {
            return Err(RuntimeError::NotReady {
                socket: socket.to_path_buf(),
                timeout,
                last,
                log: owned.log.clone(),
                tail: log_tail(&owned.log, 30),
            });
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Stops a containerd that an earlier agent started on these directories and never stopped
/// (the agent crashed): two on one root would corrupt each other's state.
async fn stop_leftover(pid_file: &Path, config: &Path, grace: Duration) {
    let Some(pid) = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
    else {
        return;
    };
    let ours = |pid: u32| {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| {
                let c = String::from_utf8_lossy(&c);
                c.contains("containerd") && c.contains(&*config.to_string_lossy())
            })
            .unwrap_or(false)
    };
    if !ours(pid) {
        let _ = std::fs::remove_file(pid_file);
        return;
    }
    tracing::warn!(
        pid,
        "stopping a containerd left behind on this agent's directories"
    );
    signal(pid, rustix::process::Signal::TERM);
    let deadline = Instant::now() + grace;
    while ours(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if ours(pid) {
        signal(pid, rustix::process::Signal::KILL);
        while ours(pid) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let _ = std::fs::remove_file(pid_file);
}

fn signal(pid: u32, sig: rustix::process::Signal) {
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

/// The last `n` lines of a log file (empty if it cannot be read).
pub(crate) fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn absolute(p: &Path) -> Result<PathBuf, RuntimeError> {
    std::path::absolute(p).map_err(io("resolving", p))
}

fn write_file(path: &Path, data: &[u8]) -> Result<(), RuntimeError> {
    std::fs::write(path, data).map_err(io("writing", path))
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError + use<> {
    let path = path.to_path_buf();
    move |source| RuntimeError::Io { op, path, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        std::fs::write(&p, "a\nb\nc\nd\n").unwrap();
        assert_eq!(log_tail(&p, 2), "c\nd");
        assert_eq!(log_tail(&p, 10), "a\nb\nc\nd");
        assert_eq!(log_tail(&dir.path().join("missing"), 3), "");
    }

    #[test]
    fn options_put_everything_under_the_agent_dir() {
        let o = ContainerdOptions::new("/var/lib/skiff/agent", "/var/lib/skiff/agent/cni/net.d");
        assert_eq!(
            o.socket(),
            Path::new("/var/lib/skiff/agent/containerd/containerd.sock")
        );
        assert_eq!(o.images_dir(), Path::new("/var/lib/skiff/agent/images"));
        assert_eq!(o.sandbox_image, PAUSE_IMAGE);
    }
}
