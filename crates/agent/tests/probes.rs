//! The probe manager through its public API with the real network probers: a
//! container's HTTP readiness and liveness probes against servers on 127.0.0.1, with
//! real clocks (periods of one second).

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};
use skiff_agent::probe::{ExecError, ExecOutput, ExecRunner, ProbeManager, RealProber};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// These tests have no exec probes; a call here is a bug.
struct NoExec;

#[async_trait::async_trait]
impl ExecRunner for NoExec {
    async fn exec_sync(&self, _: &str, _: &[String], _: Duration) -> Result<ExecOutput, ExecError> {
        Err(ExecError::Other("exec is not expected in this test".into()))
    }
}

/// Answers every request with `status`.
async fn serve_status(listener: TcpListener, status: &'static str) {
    while let Ok((mut s, _)) = listener.accept().await {
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            let mut seen = Vec::new();
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            let resp =
                format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = s.write_all(resp.as_bytes()).await;
        });
    }
}

fn pod_with(container: serde_json::Value) -> (Pod, Container) {
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "uid-web"},
        "spec": {"containers": [container.clone()]}
    }))
    .unwrap();
    (pod, serde_json::from_value(container).unwrap())
}

async fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn readiness_follows_the_server_and_wakes_the_pod() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener); // nothing listens yet
    let (tx, mut wake) = tokio::sync::mpsc::unbounded_channel();
    let manager = ProbeManager::with_prober(Arc::new(RealProber::new(Arc::new(NoExec))), tx);
    let mut events = manager.events();
    let (pod, c) = pod_with(serde_json::json!({
        "name": "web", "image": "busybox",
        "ports": [{"name": "http", "containerPort": port}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"},
                           "periodSeconds": 1, "failureThreshold": 1}
    }));
    manager.add(&pod, &c, "cid-1", Some("127.0.0.1".into()));

    wait_for("not ready", Duration::from_secs(5), || {
        manager.readiness("cid-1") == Some(false)
    })
    .await;
    assert_eq!(
        manager.last_failure("cid-1").unwrap(),
        format!(
            "Readiness probe failed: Get \"http://127.0.0.1:{port}/healthz\": \
             dial tcp 127.0.0.1:{port}: connect: connection refused"
        )
    );
    assert_eq!(wake.recv().await.unwrap(), "uid-web");
    let event = events.recv().await.unwrap();
    assert_eq!(event.reason(), "Unhealthy");
    assert_eq!(event.container_name, "web");

    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let server = tokio::spawn(serve_status(listener, "204 No Content"));
    wait_for("ready", Duration::from_secs(5), || {
        manager.readiness("cid-1") == Some(true)
    })
    .await;
    assert_eq!(wake.recv().await.unwrap(), "uid-web");
    assert!(!manager.liveness_failed("cid-1"));
    manager.remove_pod("uid-web");
    server.abort();
}

#[tokio::test]
async fn failing_liveness_asks_for_a_restart() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(serve_status(listener, "500 Internal Server Error"));
    let (tx, _wake) = tokio::sync::mpsc::unbounded_channel();
    let manager = ProbeManager::with_prober(Arc::new(RealProber::new(Arc::new(NoExec))), tx);
    let (pod, c) = pod_with(serde_json::json!({
        "name": "web", "image": "busybox",
        "livenessProbe": {"httpGet": {"path": "/", "port": port},
                          "periodSeconds": 1, "failureThreshold": 2}
    }));
    let started = Instant::now();
    manager.add(&pod, &c, "cid-2", Some("127.0.0.1".into()));
    wait_for("liveness failure", Duration::from_secs(5), || {
        manager.liveness_failed("cid-2")
    })
    .await;
    // Two failures one period apart.
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(
        manager.last_failure("cid-2").as_deref(),
        Some("Liveness probe failed: HTTP probe failed with statuscode: 500")
    );
    // The restarted container comes back under a new ID with a clean slate.
    manager.remove_container("cid-2");
    assert!(!manager.liveness_failed("cid-2"));
    server.abort();
}
