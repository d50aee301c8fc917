//! containerd started by skiff-cri, driven through CRI as the agent drives it. Real
//! containerd, runc and CNI plugins; needs root (as CI runs).

mod support;

use std::time::{Duration, Instant};

use skiff_cri::api::{
    ContainerState, ContainerStatusRequest, ExecSyncRequest, ListContainersRequest,
    ListPodSandboxRequest, PodSandboxStatusRequest,
};
use skiff_cri::image::{image_present, BUSYBOX_TEST_IMAGE, PAUSE_IMAGE};
use skiff_cri::{Containerd, ContainerdOptions, Cri, RuntimeError};
use support::{eventually, pid_alive, remove_pod, run_pod, Node, PodSpec};

const POD_COMMAND: &[&str] = &["sh", "-c", "echo hi; sleep 3600"];

async fn container_state(cri: &Cri, id: &str) -> (i32, serde_json::Value) {
    let resp = cri
        .runtime
        .clone()
        .container_status(ContainerStatusRequest {
            container_id: id.into(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let info = resp
        .info
        .get("info")
        .and_then(|i| serde_json::from_str(i).ok())
        .unwrap_or_default();
    (resp.status.unwrap().state, info)
}

async fn exec(cri: &Cri, id: &str, cmd: &[&str]) -> (i32, String) {
    let r = cri
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
    (r.exit_code, String::from_utf8_lossy(&r.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn busybox_pod_runs_through_cri_and_is_cleaned_up() {
    let node = Node::new();
    let containerd = node.start().await;
    let cri = containerd.cri().clone();
    assert!(image_present(&cri, PAUSE_IMAGE).await.unwrap());
    assert!(image_present(&cri, BUSYBOX_TEST_IMAGE).await.unwrap());

    let pod = PodSpec::new("hello");
    let started = Instant::now();
    let (sandbox, container) = run_pod(&cri, &node, &pod, POD_COMMAND).await;
    eprintln!("sandbox+container start via CRI: {:?}", started.elapsed());

    let (state, _) = container_state(&cri, &container).await;
    assert_eq!(state, ContainerState::ContainerRunning as i32);

    let (code, hostname) = exec(&cri, &container, &["cat", "/etc/hostname"]).await;
    assert_eq!((code, hostname.trim()), (0, "hello"));
    let (code, _) = exec(&cri, &container, &["sh", "-c", "exit 3"]).await;
    assert_eq!(code, 3);

    let log = pod.log_dir(&node).join("main/0.log");
    eventually(
        Duration::from_secs(10),
        "\"hi\" in the container log",
        || async {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            // CRI log format: "<time> stdout F hi".
            text.lines()
                .any(|l| l.ends_with(" stdout F hi"))
                .then_some(())
        },
    )
    .await;

    let status = cri
        .runtime
        .clone()
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: sandbox.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    let ip = status.network.unwrap().ip;
    let prefix = node.net.subnet.trim_end_matches("0/24");
    assert!(
        ip.starts_with(prefix),
        "sandbox IP {ip} not in {}",
        node.net.subnet
    );

    remove_pod(&cri, &sandbox).await;
    let sandboxes = cri
        .runtime
        .clone()
        .list_pod_sandbox(ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items;
    assert!(sandboxes.is_empty(), "{sandboxes:?}");
    let containers = cri
        .runtime
        .clone()
        .list_containers(ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert!(containers.is_empty(), "{containers:?}");
    // host-local released the address.
    let leases = std::fs::read_dir(node.agent_dir.join("cni/ipam").join(&node.net.name))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("10."))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(leases, 0);

    // A few more pods for the start-time figures.
    for i in 0..3 {
        let pod = PodSpec::new(&format!("timing{i}"));
        let started = Instant::now();
        let (sandbox, _) = run_pod(&cri, &node, &pod, POD_COMMAND).await;
        eprintln!("sandbox+container start via CRI: {:?}", started.elapsed());
        remove_pod(&cri, &sandbox).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn containers_keep_running_across_a_containerd_restart() {
    let node = Node::new();
    let containerd = node.start().await;
    let cri = containerd.cri().clone();
    let pod = PodSpec::new("survivor");
    let (sandbox, container) = run_pod(&cri, &node, &pod, POD_COMMAND).await;
    let (state, info) = container_state(&cri, &container).await;
    assert_eq!(state, ContainerState::ContainerRunning as i32);
    let pid = info["pid"].as_u64().expect("verbose status has the pid") as u32;
    let containerd_pid = containerd.containerd().pid().unwrap();
    // The container's parent is its shim, in a process group of its own: a signal to
    // containerd's group (or the agent's: a Ctrl-C) does not reach it.
    let shim = stat_field(pid, PPID);
    let shim_group = stat_field(shim, PGRP);
    assert_ne!(
        shim_group,
        stat_field(containerd_pid, PGRP),
        "shim in containerd's group"
    );
    assert_ne!(
        shim_group,
        stat_field(std::process::id(), PGRP),
        "shim in the agent's group"
    );
    assert_ne!(
        stat_field(containerd_pid, PGRP),
        stat_field(std::process::id(), PGRP)
    );

    containerd.stop_keeping_pods().await;
    assert!(!pid_alive(containerd_pid), "containerd still running");
    assert!(pid_alive(pid), "the container died with containerd");

    let containerd = node.start().await;
    let cri = containerd.cri().clone();
    let (state, info) = container_state(&cri, &container).await;
    assert_eq!(state, ContainerState::ContainerRunning as i32);
    assert_eq!(info["pid"].as_u64(), Some(pid as u64));
    let (code, out) = exec(&cri, &container, &["echo", "still here"]).await;
    assert_eq!((code, out.trim()), (0, "still here"));

    remove_pod(&cri, &sandbox).await;
    assert!(!pid_alive(pid));
}

const PPID: usize = 4;
const PGRP: usize = 5;

/// Field `n` (1-based, as in proc(5)) of /proc/<pid>/stat, for the numeric fields after
/// the command name.
fn stat_field(pid: u32, n: usize) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    after_comm.split(' ').nth(n - 3).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_containerd_left_by_a_crashed_agent_is_replaced() {
    let node = Node::new();
    let mut opts = node.options();
    opts.import_images = false;
    let first = Containerd::start(opts.clone()).await.unwrap();
    let old_pid = first.pid().unwrap();
    // The agent "crashes": its handle never runs its cleanup.
    std::mem::forget(first);
    let second = Containerd::start(opts).await.unwrap();
    assert!(!pid_alive(old_pid), "the old containerd is still running");
    assert_ne!(second.pid(), Some(old_pid));
    second.stop().await;
}

#[tokio::test]
async fn a_containerd_that_exits_at_once_is_reported_with_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = ContainerdOptions::new(dir.path().join("agent"), dir.path().join("net.d"));
    // containerd refuses a config it cannot parse; corrupt the binary's view by pointing it
    // at `false`, which exits 1 at once.
    opts.binary = "/bin/false".into();
    let err = Containerd::start(opts.clone()).await.err().unwrap();
    assert!(matches!(err, RuntimeError::Exited { .. }), "{err}");
    assert!(err.to_string().contains("containerd.log"), "{err}");

    opts.binary = dir.path().join("no-such-containerd");
    let err = Containerd::start(opts).await.err().unwrap();
    assert!(err.to_string().contains("`containerd` package"), "{err}");
}
