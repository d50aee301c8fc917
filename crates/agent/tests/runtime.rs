//! Probes and volume mounts against a real containerd (a child of the test, own temp
//! dir and socket; the pod uses the host network so no CNI range is needed): exec probes
//! go through CRI ExecSync into a busybox container, and the mounts the volume manager
//! computes are bind-mounted by runc and read from inside the container.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};
use skiff_agent::probe::{CriExec, ProbeManager, RealProber};
use skiff_agent::volumes::VolumeManager;
use skiff_cri::api::{
    ContainerConfig, ContainerMetadata, CreateContainerRequest, ExecSyncRequest, ImageSpec,
    LinuxContainerConfig, LinuxContainerSecurityContext, LinuxPodSandboxConfig,
    LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption, PodSandboxConfig,
    PodSandboxMetadata, RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest,
    StopPodSandboxRequest,
};
use skiff_cri::image::{build_busybox_image, BUSYBOX_TEST_IMAGE};
use skiff_cri::{Containerd, ContainerdOptions, Cri};

fn namespaces() -> NamespaceOption {
    NamespaceOption {
        network: NamespaceMode::Node as i32,
        pid: NamespaceMode::Container as i32,
        ipc: NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

/// A pod sandbox with one busybox container running `sleep`, mounting `mounts`.
async fn run_container(
    cri: &Cri,
    pod: &Pod,
    mounts: Vec<skiff_cri::api::Mount>,
    log_dir: &std::path::Path,
) -> (String, String) {
    let mut rt = cri.runtime.clone();
    let meta = &pod.metadata;
    let sandbox_config = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: meta.name.clone().unwrap(),
            uid: meta.uid.clone().unwrap(),
            namespace: "default".into(),
            attempt: 0,
        }),
        log_directory: log_dir.to_string_lossy().into_owned(),
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(namespaces()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let sandbox = rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(sandbox_config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let config = ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: "main".into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: BUSYBOX_TEST_IMAGE.into(),
            ..Default::default()
        }),
        command: vec!["sleep".into(), "3600".into()],
        log_path: "main/0.log".into(),
        mounts,
        linux: Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: Some(namespaces()),
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

async fn exec(cri: &Cri, id: &str, cmd: &[&str]) -> (i32, String) {
    let resp = cri
        .runtime
        .clone()
        .exec_sync(ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: 10,
        })
        .await
        .unwrap()
        .into_inner();
    let mut out = String::from_utf8_lossy(&resp.stdout).into_owned();
    out.push_str(&String::from_utf8_lossy(&resp.stderr));
    (resp.exit_code, out)
}

/// Removes every pod sandbox of the test's containerd when dropped (also on a failed
/// assertion), so no container outlives the test.
struct RemovePods(String);

impl Drop for RemovePods {
    fn drop(&mut self) {
        let socket = self.0.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                let Ok(cri) = skiff_cri::connect(&socket).await else {
                    return;
                };
                let mut rt = cri.runtime.clone();
                let Ok(list) = rt
                    .list_pod_sandbox(skiff_cri::api::ListPodSandboxRequest::default())
                    .await
                else {
                    return;
                };
                for sandbox in list.into_inner().items {
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
            });
        })
        .join();
    }
}

async fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_probes_and_volume_mounts_in_a_real_container() {
    let dir = tempfile::Builder::new()
        .prefix("skiff-agentvol-")
        .tempdir()
        .unwrap();
    let agent_dir = dir.path().join("agent");
    build_busybox_image(&agent_dir.join("images/busybox.tar"), BUSYBOX_TEST_IMAGE).unwrap();
    let cni = agent_dir.join("cni/net.d");
    std::fs::create_dir_all(&cni).unwrap();
    let mut options = ContainerdOptions::new(&agent_dir, &cni);
    options.ready_timeout = Duration::from_secs(60);
    let containerd = Containerd::start(options).await.unwrap();
    let cri = containerd.cri().clone();
    let _cleanup = RemovePods(cri.socket.to_string_lossy().into_owned());

    // Volumes: a downwardAPI volume (no API calls needed) and an emptyDir with subPath.
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "probed", "namespace": "default",
                     "uid": format!("probed-{}", std::process::id()),
                     "labels": {"app": "probed"}},
        "spec": {"containers": [{"name": "main", "image": BUSYBOX_TEST_IMAGE}],
                 "volumes": [
                    {"name": "info", "downwardAPI": {"items": [
                        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
                    {"name": "scratch", "emptyDir": {}}
                 ]}
    }))
    .unwrap();
    let container: Container = serde_json::from_value(serde_json::json!({
        "name": "main", "image": BUSYBOX_TEST_IMAGE,
        "volumeMounts": [
            {"name": "info", "mountPath": "/etc/podinfo"},
            {"name": "scratch", "mountPath": "/work", "subPath": "main"}
        ],
        "livenessProbe": {"exec": {"command": ["cat", "/tmp/healthy"]},
                          "periodSeconds": 1, "failureThreshold": 1000},
        "readinessProbe": {"exec": {"command": ["sleep", "5"]},
                           "periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 1}
    }))
    .unwrap();
    // No API server: nothing here reads one.
    let client =
        kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap();
    let volumes = VolumeManager::new(agent_dir.clone(), client);
    let ready = volumes.setup(&pod).await.unwrap();
    let mounts = ready.mounts(&container).unwrap();
    let log_dir = agent_dir.join("logs/pods/probed");
    std::fs::create_dir_all(&log_dir).unwrap();
    let (sandbox, id) = run_container(&cri, &pod, mounts, &log_dir).await;

    let (code, labels) = exec(&cri, &id, &["cat", "/etc/podinfo/labels"]).await;
    assert_eq!((code, labels.as_str()), (0, "app=\"probed\""));
    let (code, _) = exec(&cri, &id, &["touch", "/etc/podinfo/x"]).await;
    assert_ne!(code, 0, "downwardAPI volumes are read-only");
    let (code, _) = exec(&cri, &id, &["sh", "-c", "echo hi > /work/f"]).await;
    assert_eq!(code, 0);
    let on_host = ready.get("scratch").unwrap().host_path.join("main/f");
    assert_eq!(std::fs::read_to_string(on_host).unwrap(), "hi\n");

    // Exec probes through CRI.
    let (tx, _wake) = tokio::sync::mpsc::unbounded_channel();
    let probes = ProbeManager::new(cri.clone(), tx);
    probes.add(&pod, &container, &id, None);
    wait_for("a failed liveness run", Duration::from_secs(10), || {
        probes
            .last_failure(&id)
            .is_some_and(|m| m.starts_with("Liveness"))
    })
    .await;
    assert_eq!(
        probes.last_failure(&id).unwrap(),
        "Liveness probe failed: cat: can't open '/tmp/healthy': No such file or directory\n"
    );
    wait_for("readiness timing out", Duration::from_secs(15), || {
        probes.readiness(&id) == Some(false)
    })
    .await;
    let (code, _) = exec(&cri, &id, &["touch", "/tmp/healthy"]).await;
    assert_eq!(code, 0);
    // Exec timeouts read as upstream's.
    let prober = RealProber::new(Arc::new(CriExec(cri.clone())));
    let probe = container.readiness_probe.clone().unwrap();
    let target = skiff_agent::probe::Target {
        container_id: id.clone(),
        pod_ip: None,
        container: container.clone(),
    };
    use skiff_agent::probe::Prober;
    assert_eq!(
        prober.run(&probe, &target).await,
        skiff_agent::probe::Outcome::Failure("command \"sleep 5\" timed out".into())
    );
    let live = container.liveness_probe.clone().unwrap();
    assert_eq!(
        prober.run(&live, &target).await,
        skiff_agent::probe::Outcome::Success
    );
    assert!(!probes.liveness_failed(&id));
    probes.remove_pod(pod.metadata.uid.as_deref().unwrap());

    let mut rt = cri.runtime.clone();
    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: sandbox.clone(),
    })
    .await
    .unwrap();
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: sandbox,
    })
    .await
    .unwrap();
    drop(_cleanup);
    volumes
        .teardown(pod.metadata.uid.as_deref().unwrap())
        .await
        .unwrap();
    containerd.stop().await;
}
