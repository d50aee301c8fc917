//! A private containerd (own root, state, socket and streaming server on loopback) with a
//! busybox image built from Debian's busybox-static, for tests that need real containers.
//! Everything it starts is stopped on drop: pods through CRI, then containerd.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const IMAGE: &str = "skiff.test/busybox:1";

pub struct Containerd {
    pub dir: PathBuf,
    pub socket: PathBuf,
    child: Child,
    pub cri: Option<skiff_cri::Cri>,
    pub sandboxes: Vec<String>,
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A docker-archive tarball of a busybox rootfs (`/bin/<applet>` links to busybox) whose
/// default command sleeps, so it also serves as the sandbox image.
pub fn build_busybox_image(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox"))
        .expect("/bin/busybox (Debian busybox-static) is required");
    let applets = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&applets.stdout).lines() {
        if applet != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
        }
    }
    let archive = dir.join("archive");
    std::fs::create_dir_all(&archive).unwrap();
    run(Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(archive.join("layer.tar"))
        .arg("."));
    let layer = std::fs::read(archive.join("layer.tar")).unwrap();
    let digest = ring::digest::digest(&ring::digest::SHA256, &layer);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let config = serde_json::json!({
        "architecture": arch, "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sleep", "2147483647"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{hex}")]},
    });
    std::fs::write(archive.join("config.json"), config.to_string()).unwrap();
    let manifest = serde_json::json!([{"Config": "config.json", "RepoTags": [IMAGE], "Layers": ["layer.tar"]}]);
    std::fs::write(archive.join("manifest.json"), manifest.to_string()).unwrap();
    let tarball = dir.join("busybox.tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(&archive)
        .arg("-cf")
        .arg(&tarball)
        .args(["manifest.json", "config.json", "layer.tar"]));
    tarball
}

impl Containerd {
    /// Starts containerd in `dir` and imports the busybox image.
    pub async fn start(dir: &Path) -> Self {
        std::fs::create_dir_all(dir.join("cni")).unwrap();
        let socket = dir.join("containerd.sock");
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{IMAGE}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
"#,
            root = dir.join("root").display(),
            state = dir.join("state").display(),
            sock = socket.display(),
            cni = dir.join("cni").display(),
        );
        std::fs::write(dir.join("config.toml"), config).unwrap();
        let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("containerd is required");
        let mut me = Self {
            dir: dir.to_path_buf(),
            socket: socket.clone(),
            child,
            cri: None,
            sandboxes: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let cri = loop {
            if socket.exists() {
                if let Ok(cri) = skiff_cri::connect(socket.to_str().unwrap()).await {
                    let mut rt = cri.runtime.clone();
                    if rt
                        .version(skiff_cri::api::VersionRequest::default())
                        .await
                        .is_ok()
                    {
                        break cri;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "containerd did not start: {}",
                me.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        me.cri = Some(cri);
        let tarball = build_busybox_image(&dir.join("image"));
        run(Command::new("ctr")
            .arg("--address")
            .arg(&socket)
            .args(["-n", "k8s.io", "images", "import"])
            .arg(&tarball));
        me
    }

    pub fn cri(&self) -> skiff_cri::Cri {
        self.cri.clone().expect("connected")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    /// Stops and removes the sandboxes made by the test, then containerd.
    pub async fn shutdown(mut self) {
        if let Some(cri) = &self.cri {
            let mut rt = cri.runtime.clone();
            for id in std::mem::take(&mut self.sandboxes) {
                let _ = rt
                    .stop_pod_sandbox(skiff_cri::api::StopPodSandboxRequest {
                        pod_sandbox_id: id.clone(),
                    })
                    .await;
                let _ = rt
                    .remove_pod_sandbox(skiff_cri::api::RemovePodSandboxRequest {
                        pod_sandbox_id: id,
                    })
                    .await;
            }
        }
        self.cri = None;
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Shims outlive containerd; a test that failed before `shutdown` leaves them (and
        // their containers) running, so end those started for this socket.
        for shim in shims_of(&self.socket) {
            for pid in descendants(shim).into_iter().chain([shim]) {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
        // Unmount whatever the snapshotter left, so the temp dir can be removed.
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "grep -o ' {0}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l",
                self.dir.display()
            ))
            .status();
    }
}

/// Processes whose command line names `socket` (containerd's shims for it).
fn shims_of(socket: &Path) -> Vec<u32> {
    let needle = socket.display().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&needle))
                .unwrap_or(false)
        })
        .collect()
}

/// Children of `pid`, their children, and so on.
fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut queue = vec![pid];
    while let Some(p) = queue.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for child in children
                .split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok())
            {
                out.push(child);
                queue.push(child);
            }
        }
    }
    out
}
