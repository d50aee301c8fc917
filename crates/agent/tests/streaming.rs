//! End to end: the real kubectl talks to a real API server, which reaches the agent's
//! server, which reads CRI log files and relays streams to a real containerd.
//! `kubectl logs` (and its options), `exec` (plain, stdin, exit codes), `attach`, `cp`
//! both ways and `port-forward` to busybox httpd in a container.
//!
//! The pod is made directly through CRI with the kubelet's labels (the agent's pod
//! lifecycle is not part of this test); the Node and Pod objects are written by the test.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use skiff_cri::api::{
    ContainerConfig, ContainerMetadata, CreateContainerRequest, ImageSpec, LinuxContainerConfig,
    LinuxContainerSecurityContext, LinuxPodSandboxConfig, LinuxSandboxSecurityContext,
    NamespaceMode, NamespaceOption, PodSandboxConfig, PodSandboxMetadata, RunPodSandboxRequest,
    StartContainerRequest,
};
use support::{Containerd, IMAGE};

const NS: &str = "default";
const POD: &str = "streampod";
const NODE: &str = "node-a";

fn kubectl(kubeconfig: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl is required");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn ok(kubeconfig: &Path, args: &[&str]) -> String {
    let out = kubectl(kubeconfig, args, None);
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn labels(uid: &str, container: Option<&str>) -> std::collections::HashMap<String, String> {
    let mut l: std::collections::HashMap<String, String> = [
        ("io.kubernetes.pod.namespace", NS),
        ("io.kubernetes.pod.name", POD),
        ("io.kubernetes.pod.uid", uid),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if let Some(c) = container {
        l.insert("io.kubernetes.container.name".into(), c.into());
    }
    l
}

fn host_network() -> Option<NamespaceOption> {
    Some(NamespaceOption {
        network: NamespaceMode::Node as i32,
        ..Default::default()
    })
}

/// Creates and starts instance `restart` of container `c1` running `script`.
async fn start_container(
    cri: &skiff_cri::Cri,
    sandbox: &str,
    sandbox_config: &PodSandboxConfig,
    uid: &str,
    restart: u32,
    script: &str,
) -> String {
    let mut rt = cri.runtime.clone();
    let config = ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: "c1".into(),
            attempt: restart,
        }),
        image: Some(ImageSpec {
            image: IMAGE.into(),
            ..Default::default()
        }),
        command: vec!["/bin/sh".into(), "-c".into(), script.into()],
        log_path: format!("c1/{restart}.log"),
        labels: labels(uid, Some("c1")),
        annotations: [(
            "io.kubernetes.container.restartCount".to_string(),
            restart.to_string(),
        )]
        .into(),
        linux: Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: host_network(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let id = rt
        .create_container(CreateContainerRequest {
            pod_sandbox_id: sandbox.into(),
            config: Some(config),
            sandbox_config: Some(sandbox_config.clone()),
        })
        .await
        .expect("create container")
        .into_inner()
        .container_id;
    rt.start_container(StartContainerRequest {
        container_id: id.clone(),
    })
    .await
    .expect("start container");
    id
}

fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kubectl_logs_exec_attach_cp_and_port_forward_reach_containers_through_the_agent() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let tmp = tempfile::tempdir().unwrap();
    let containerd = Containerd::start(&tmp.path().join("containerd")).await;
    let cri = containerd.cri();
    let api = skiff_apiserver::start_local(&tmp.path().join("server"))
        .await
        .unwrap();
    let kc = api.kubeconfig.clone();

    // The agent's server, as the agent starts it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let agent_port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(skiff_agent::server::serve(
        listener,
        skiff_agent::server::ServerConfig {
            ca_pem: api.pki.ca_cert_pem.clone(),
            cri: cri.clone(),
            serving_names: vec!["127.0.0.1".into(), NODE.into()],
        },
    ));

    // A pod with host networking (no CNI needed) and its container's first, finished life.
    let uid = uuid_like();
    let log_dir = tmp.path().join(format!("logs/pods/{NS}_{POD}_{uid}"));
    std::fs::create_dir_all(&log_dir).unwrap();
    let sandbox_config = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: POD.into(),
            uid: uid.clone(),
            namespace: NS.into(),
            attempt: 0,
        }),
        log_directory: log_dir.display().to_string(),
        labels: labels(&uid, None),
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: host_network(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut rt = cri.runtime.clone();
    let sandbox = rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(sandbox_config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_or_else(|e| panic!("run sandbox: {e}\n{}", containerd.log()))
        .into_inner()
        .pod_sandbox_id;
    let mut containerd = containerd;
    containerd.sandboxes.push(sandbox.clone());
    start_container(&cri, &sandbox, &sandbox_config, &uid, 0, "echo first life").await;
    let http_port = skiff_testkit::free_port();
    let script = format!(
        "mkdir -p /tmp/www; echo pf-ok > /tmp/www/index.html; \
         httpd -p 127.0.0.1:{http_port} -h /tmp/www; \
         echo hello; echo oops >&2; printf 'no newline yet'; sleep 0.2; echo ' and done'; \
         i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.5; done"
    );
    // The second life starts once the first has ended, as a restart would.
    std::thread::sleep(Duration::from_millis(500));
    start_container(&cri, &sandbox, &sandbox_config, &uid, 1, &script).await;

    // The Node (with the agent's address and port) and the Pod bound to it.
    let node = format!("apiVersion: v1\nkind: Node\nmetadata:\n  name: {NODE}\n");
    let out = kubectl(&kc, &["apply", "-f", "-"], Some(node.as_bytes()));
    assert!(out.status.success(), "{}", stderr(&out));
    let status = format!(
        r#"{{"status":{{"addresses":[{{"type":"InternalIP","address":"127.0.0.1"}}],"daemonEndpoints":{{"kubeletEndpoint":{{"Port":{agent_port}}}}}}}}}"#
    );
    ok(
        &kc,
        &[
            "patch",
            "node",
            NODE,
            "--subresource=status",
            "--type=merge",
            "-p",
            &status,
        ],
    );
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {POD}\n  namespace: {NS}\nspec:\n  nodeName: {NODE}\n  containers:\n  - name: c1\n    image: {IMAGE}\n"
    );
    let out = kubectl(&kc, &["apply", "-f", "-"], Some(pod.as_bytes()));
    assert!(out.status.success(), "{}", stderr(&out));
    ok(
        &kc,
        &[
            "patch",
            "pod",
            POD,
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Running"}}"#,
        ],
    );

    // Logs: whole file, partial lines joined, both streams.
    wait_for("the first ticks", Duration::from_secs(30), || {
        ok(&kc, &["logs", POD]).contains("tick 1")
    });
    let all = ok(&kc, &["logs", POD]);
    // stdout and stderr are copied to the file apart, so only each stream keeps its order.
    let stdout: Vec<&str> = all.lines().filter(|l| *l != "oops").collect();
    assert_eq!(
        stdout[..4],
        ["hello", "no newline yet and done", "tick 0", "tick 1"],
        "{all}"
    );
    assert!(all.lines().any(|l| l == "oops"), "{all}");
    assert_eq!(ok(&kc, &["logs", POD, "--previous"]), "first life\n");
    assert_eq!(
        ok(&kc, &["logs", POD, "-c", "c1", "--tail=1"])
            .lines()
            .count(),
        1
    );
    assert!(ok(&kc, &["logs", POD, "--tail=1"]).starts_with("tick "));
    // Which stream's first line lands first is up to the runtime; the cut is not.
    assert_eq!(ok(&kc, &["logs", POD, "--limit-bytes=8"]), all[..8]);
    assert!(ok(&kc, &["logs", POD, "--since=1h"]).starts_with(&all[..6]));
    assert_eq!(
        ok(&kc, &["logs", POD, "--since-time=2999-01-01T00:00:00Z"]),
        ""
    );
    let stamped = ok(&kc, &["logs", POD, "--timestamps", "--tail=2"]);
    for line in stamped.lines() {
        let (time, text) = line.split_once(' ').unwrap();
        assert!(time.ends_with('Z') && time.len() == 30, "{line}");
        assert!(text.starts_with("tick "), "{line}");
    }
    let out = kubectl(&kc, &["logs", POD, "-c", "nope"], None);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("container nope is not valid for pod streampod"),
        "{}",
        stderr(&out)
    );

    // Follow: new lines arrive while the command runs.
    let mut follow = Command::new("kubectl")
        .args(["logs", "-f", "--tail=1", POD])
        .env("KUBECONFIG", &kc)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let n: u64 = first.trim_start_matches("tick ").parse().unwrap();
    for want in n + 1..n + 4 {
        assert_eq!(lines.next().unwrap().unwrap(), format!("tick {want}"));
    }
    follow.kill().unwrap();
    follow.wait().unwrap();

    // Exec: output, stderr and exit codes, stdin to EOF.
    assert_eq!(
        ok(&kc, &["exec", POD, "--", "cat", "/tmp/www/index.html"]),
        "pf-ok\n"
    );
    // kubectl's fallback, plain SPDY, is relayed as it is.
    let spdy = Command::new("kubectl")
        .args(["exec", POD, "--", "cat", "/tmp/www/index.html"])
        .env("KUBECONFIG", &kc)
        .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&spdy.stdout),
        "pf-ok\n",
        "{}",
        stderr(&spdy)
    );
    let out = kubectl(
        &kc,
        &[
            "exec",
            POD,
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert!(stderr(&out).contains("err"), "{}", stderr(&out));
    let out = kubectl(
        &kc,
        &[
            "exec",
            "-i",
            POD,
            "--",
            "sh",
            "-c",
            "cat > /tmp/in; wc -c < /tmp/in",
        ],
        Some(b"twelve bytes"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "12");
    let out = kubectl(&kc, &["exec", POD, "-c", "nope", "--", "true"], None);
    assert!(!out.status.success());

    // cp: into the container and back (exec with tar both ways).
    let local = tmp.path().join("payload.bin");
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&local, &payload).unwrap();
    ok(
        &kc,
        &[
            "cp",
            local.to_str().unwrap(),
            &format!("{POD}:/tmp/payload.bin"),
        ],
    );
    assert_eq!(
        ok(&kc, &["exec", POD, "--", "wc", "-c", "/tmp/payload.bin"])
            .split_whitespace()
            .next(),
        Some("200000")
    );
    let back = tmp.path().join("back.bin");
    ok(
        &kc,
        &[
            "cp",
            &format!("{POD}:/tmp/payload.bin"),
            back.to_str().unwrap(),
        ],
    );
    assert_eq!(std::fs::read(&back).unwrap(), payload);

    // Attach: the container's own output.
    let mut attach = Command::new("kubectl")
        .args(["attach", POD, "-c", "c1"])
        .env("KUBECONFIG", &kc)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut attached = BufReader::new(attach.stdout.take().unwrap()).lines();
    let line = attached.next().unwrap().unwrap();
    assert!(line.starts_with("tick "), "{line}");
    attach.kill().unwrap();
    attach.wait().unwrap();

    // Port-forward to httpd in the pod.
    let local_port = skiff_testkit::free_port();
    let mut forward = Command::new("kubectl")
        .args([
            "port-forward",
            &format!("pod/{POD}"),
            &format!("{local_port}:{http_port}"),
        ])
        .env("KUBECONFIG", &kc)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut fwd_out = BufReader::new(forward.stdout.take().unwrap());
    let mut first = String::new();
    fwd_out.read_line(&mut first).unwrap();
    assert!(first.contains("Forwarding from"), "{first}");
    for _ in 0..2 {
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", local_port)).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        conn.write_all(b"GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).unwrap();
        assert!(
            answer.starts_with("HTTP/1.") && answer.ends_with("pf-ok\n"),
            "{answer}"
        );
    }
    forward.kill().unwrap();
    forward.wait().unwrap();

    // A pod without a node has nowhere to exec.
    let unbound = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: unbound\nspec:\n  containers:\n  - name: c\n    image: x\n";
    let out = kubectl(&kc, &["apply", "-f", "-"], Some(unbound.as_bytes()));
    assert!(out.status.success(), "{}", stderr(&out));
    ok(
        &kc,
        &[
            "patch",
            "pod",
            "unbound",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Running"}}"#,
        ],
    );
    let out = kubectl(&kc, &["exec", "unbound", "--", "true"], None);
    assert!(
        stderr(&out).contains("pod unbound does not have a host assigned"),
        "{}",
        stderr(&out)
    );

    server.abort();
    containerd.shutdown().await;
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{:08x}-0000-4000-8000-{:012x}",
        std::process::id(),
        nanos & 0xffff_ffff_ffff
    )
}
