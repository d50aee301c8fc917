//! Harness for the hollow nodes' integration tests: a real Skiff API server in this
//! process (embedded store in a temp dir) and hollow node processes as its clients.
//! (The start-up part follows crates/controllers/tests/support/mod.rs.)

#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

use skiff_hollow::{CancellationToken, Config};

pub struct Server {
    pub client: kube::Client,
    pub running: skiff_apiserver::Running,
    _dir: tempfile::TempDir,
}

impl Server {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let running = skiff_apiserver::start_local(dir.path())
            .await
            .expect("API server starts");
        let client = skiff_runtime::client::from_kubeconfig_file(&running.kubeconfig)
            .await
            .expect("client");
        Self {
            client,
            running,
            _dir: dir,
        }
    }

    /// Starts a hollow node process; it runs until the returned handle is stopped or
    /// dropped.
    pub fn hollow(&self, config: Config) -> Hollow {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(skiff_hollow::run(
            self.client.clone(),
            config,
            shutdown.clone(),
        ));
        Hollow {
            shutdown,
            task: Some(task),
        }
    }
}

pub struct Hollow {
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<(), skiff_hollow::HollowError>>>,
}

impl Hollow {
    /// Stops the process and waits until it returned.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("hollow task").expect("hollow run");
        }
    }
}

impl Drop for Hollow {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Polls `f` until it returns `Some`, failing the test with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
