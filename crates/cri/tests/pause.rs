//! Skiff's pause program in a real sandbox: it stops on SIGTERM with status 0 and, as the
//! init of a pod that shares one PID namespace, reaps orphaned processes.

mod support;

use std::time::{Duration, Instant};

use skiff_cri::api::{ContainerStatusRequest, ExecSyncRequest, StopContainerRequest};
use skiff_cri::image::PAUSE_IMAGE;
use support::{eventually, remove_pod, run_pod, Node, PodSpec};

#[tokio::test(flavor = "multi_thread")]
async fn pause_exits_zero_on_sigterm_at_once() {
    let node = Node::new();
    let containerd = node.start().await;
    let cri = containerd.cri().clone();
    // The pause image as an ordinary container: its entrypoint is /pause.
    let mut pod = PodSpec::new("pause-term");
    pod.image = PAUSE_IMAGE.into();
    let (sandbox, container) = run_pod(&cri, &node, &pod, &[]).await;

    let started = Instant::now();
    cri.runtime
        .clone()
        .stop_container(StopContainerRequest {
            container_id: container.clone(),
            timeout: 20,
        })
        .await
        .unwrap();
    let took = started.elapsed();
    let status = cri
        .runtime
        .clone()
        .container_status(ContainerStatusRequest {
            container_id: container,
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    // Ignoring SIGTERM would mean SIGKILL after the 20 s timeout and exit code 137.
    assert_eq!(status.exit_code, 0, "{status:?}");
    assert!(took < Duration::from_secs(5), "stop took {took:?}");
    remove_pod(&cri, &sandbox).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pause_reaps_orphans_in_a_shared_pid_namespace() {
    let node = Node::new();
    let containerd = node.start().await;
    let cri = containerd.cri().clone();
    let mut pod = PodSpec::new("reaper");
    pod.share_pid = true;
    // The subshell exits at once, so its `sleep 1` is orphaned to the namespace's init.
    let (sandbox, container) = run_pod(
        &cri,
        &node,
        &pod,
        &["sh", "-c", "(sleep 1 &); exec sleep 3600"],
    )
    .await;

    let exec = |cmd: &'static str| {
        let mut rt = cri.runtime.clone();
        let container = container.clone();
        async move {
            let r = rt
                .exec_sync(ExecSyncRequest {
                    container_id: container,
                    cmd: vec!["sh".into(), "-c".into(), cmd.into()],
                    timeout: 10,
                })
                .await
                .unwrap()
                .into_inner();
            String::from_utf8_lossy(&r.stdout).into_owned()
        }
    };
    assert_eq!(exec("cat /proc/1/comm").await.trim(), "pause");
    // Once `sleep 1` has exited, no process of the pod is left a zombie.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    eventually(Duration::from_secs(10), "no zombies in the pod", || async {
        let states = exec("cat /proc/[0-9]*/stat").await;
        let zombies: Vec<&str> = states.lines().filter(|l| l.contains(") Z ")).collect();
        zombies.is_empty().then_some(())
    })
    .await;
    remove_pod(&cri, &sandbox).await;
}
