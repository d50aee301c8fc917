//! Shared by the containerd tests: a containerd of the test's own (temp dir, own socket, own
//! CNI bridge and subnet) with the sandbox image and the busybox test image imported, and
//! helpers that run a pod through CRI the way the agent does.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use skiff_cri::api::{
    ContainerConfig, ContainerMetadata, CreateContainerRequest, ImageSpec, LinuxContainerConfig,
    LinuxContainerSecurityContext, LinuxPodSandboxConfig, LinuxSandboxSecurityContext,
    NamespaceMode, NamespaceOption, PodSandboxConfig, PodSandboxMetadata, RemovePodSandboxRequest,
    RunPodSandboxRequest, StartContainerRequest, StopPodSandboxRequest,
};
use skiff_cri::cni::{write_conflist, BridgeNetwork};
use skiff_cri::image::{build_busybox_image, BUSYBOX_TEST_IMAGE};
use skiff_cri::{Containerd, ContainerdOptions, Cri};

/// One test's node: its directories and network.
pub struct Node {
    pub dir: tempfile::TempDir,
    pub agent_dir: PathBuf,
    pub net: BridgeNetwork,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

impl Node {
    /// Directories, a CNI conflist with a bridge and /24 no other test (of this process or
    /// another helper's, which pick other ranges) uses, and the busybox image in `images/`.
    pub fn new() -> Node {
        init_tracing();
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let dir = tempfile::Builder::new()
            .prefix("skiff-cri-")
            .tempdir()
            .unwrap();
        let agent_dir = dir.path().join("agent");
        let tag = format!("{}{}", pid % 100_000, n);
        // 10.213.0.0/16 is this crate's test range; the third octet from pid and sequence.
        let octet = (pid.wrapping_mul(7).wrapping_add(n)) % 250 + 1;
        let mut net = BridgeNetwork::new(
            &format!("skiffcri-{tag}"),
            &format!("skc{tag}"),
            &format!("10.213.{octet}.0/24"),
        );
        net.ipam_data_dir = Some(agent_dir.join("cni/ipam"));
        write_conflist(&agent_dir.join("cni/net.d"), &net).unwrap();
        let info =
            build_busybox_image(&agent_dir.join("images/busybox.tar"), BUSYBOX_TEST_IMAGE).unwrap();
        eprintln!(
            "busybox image: archive {} bytes, layer {} bytes",
            info.archive_bytes, info.layer_bytes
        );
        Node {
            dir,
            agent_dir,
            net,
        }
    }

    pub fn options(&self) -> ContainerdOptions {
        let mut o = ContainerdOptions::new(&self.agent_dir, self.agent_dir.join("cni/net.d"));
        o.ready_timeout = Duration::from_secs(60);
        o
    }

    pub async fn start(&self) -> Running {
        let t = Instant::now();
        let c = Containerd::start(self.options()).await.unwrap();
        eprintln!("containerd start (ready + imports): {:?}", t.elapsed());
        Running {
            containerd: Some(c),
        }
    }
}

/// A test's containerd. Dropped (also when the test fails), it removes every pod first: its
/// containers would otherwise outlive containerd, as they are meant to.
pub struct Running {
    containerd: Option<Containerd>,
}

impl Running {
    pub fn cri(&self) -> &Cri {
        self.containerd().cri()
    }

    pub fn containerd(&self) -> &Containerd {
        self.containerd.as_ref().expect("containerd is running")
    }

    /// Stops containerd and leaves the pods running.
    pub async fn stop_keeping_pods(mut self) {
        if let Some(c) = self.containerd.take() {
            c.stop().await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let Some(c) = self.containerd.take() else {
            return;
        };
        let socket = c.socket().to_string_lossy().into_owned();
        // The test's runtime may be mid-panic or single-threaded: use a runtime of our own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(remove_all_pods(&socket));
        })
        .join();
        drop(c);
    }
}

async fn remove_all_pods(socket: &str) {
    let Ok(cri) = skiff_cri::connect(socket).await else {
        return;
    };
    let Ok(list) = cri
        .runtime
        .clone()
        .list_pod_sandbox(skiff_cri::api::ListPodSandboxRequest::default())
        .await
    else {
        return;
    };
    for sandbox in list.into_inner().items {
        let mut rt = cri.runtime.clone();
        let _ = rt
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: sandbox.id.clone(),
            })
            .await;
        let _ = rt
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: sandbox.id,
            })
            .await;
    }
}

impl Drop for Node {
    /// The bridge outlives its pods (CNI DEL leaves it): remove it so tests leave no trace.
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.net.bridge])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "skiff_cri=info".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A pod as the agent would describe it to CRI.
pub struct PodSpec {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// `shareProcessNamespace`: one PID namespace for the pod, the pause process its init.
    pub share_pid: bool,
    pub image: String,
}

impl PodSpec {
    pub fn new(name: &str) -> Self {
        PodSpec {
            namespace: "default".into(),
            name: name.into(),
            uid: format!(
                "{name}-{}-{}",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::SeqCst)
            ),
            share_pid: false,
            image: BUSYBOX_TEST_IMAGE.into(),
        }
    }

    pub fn log_dir(&self, node: &Node) -> PathBuf {
        node.agent_dir
            .join("logs/pods")
            .join(format!("{}_{}_{}", self.namespace, self.name, self.uid))
    }

    pub fn sandbox_config(&self, node: &Node) -> PodSandboxConfig {
        let labels = HashMap::from([
            ("io.kubernetes.pod.name".to_string(), self.name.clone()),
            (
                "io.kubernetes.pod.namespace".to_string(),
                self.namespace.clone(),
            ),
            ("io.kubernetes.pod.uid".to_string(), self.uid.clone()),
        ]);
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: self.name.clone(),
                uid: self.uid.clone(),
                namespace: self.namespace.clone(),
                attempt: 0,
            }),
            hostname: self.name.clone(),
            log_directory: self.log_dir(node).to_string_lossy().into_owned(),
            labels,
            linux: Some(LinuxPodSandboxConfig {
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(self.namespaces()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Network and IPC shared by the pod; PID per container unless `share_pid` (as the
    /// kubelet does).
    fn namespaces(&self) -> NamespaceOption {
        NamespaceOption {
            network: NamespaceMode::Pod as i32,
            pid: if self.share_pid {
                NamespaceMode::Pod as i32
            } else {
                NamespaceMode::Container as i32
            },
            ipc: NamespaceMode::Pod as i32,
            ..Default::default()
        }
    }
}

/// RunPodSandbox + CreateContainer + StartContainer of one busybox container running
/// `command`; returns (sandbox id, container id).
pub async fn run_pod(cri: &Cri, node: &Node, pod: &PodSpec, command: &[&str]) -> (String, String) {
    let mut rt = cri.runtime.clone();
    std::fs::create_dir_all(pod.log_dir(node)).unwrap();
    let sandbox_config = pod.sandbox_config(node);
    let sandbox = rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(sandbox_config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let mut labels = sandbox_config.labels.clone();
    labels.insert("io.kubernetes.container.name".into(), "main".into());
    let config = ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: "main".into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: pod.image.clone(),
            ..Default::default()
        }),
        command: command.iter().map(|s| s.to_string()).collect(),
        log_path: "main/0.log".into(),
        labels,
        linux: Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: Some(pod.namespaces()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let container = rt
        .create_container(CreateContainerRequest {
            pod_sandbox_id: sandbox.clone(),
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        })
        .await
        .unwrap()
        .into_inner()
        .container_id;
    rt.start_container(StartContainerRequest {
        container_id: container.clone(),
    })
    .await
    .unwrap();
    (sandbox, container)
}

pub async fn remove_pod(cri: &Cri, sandbox: &str) {
    let mut rt = cri.runtime.clone();
    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: sandbox.into(),
    })
    .await
    .unwrap();
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: sandbox.into(),
    })
    .await
    .unwrap();
}

/// Polls `check` every 50ms until it returns Some, for at most `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}
