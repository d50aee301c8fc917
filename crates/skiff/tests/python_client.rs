//! The official Kubernetes Python client (`pip install kubernetes`), unmodified, against
//! the real `skiff server`: CRUD on a ConfigMap and a Namespace, lists, and a watch
//! (tests/python/client_smoke.py). A missing `kubernetes` package is a failure, never a
//! skip.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::Server;

fn python() -> Command {
    let mut cmd = Command::new("python3");
    cmd.env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null());
    cmd
}

/// Runs client_smoke.py in `mode` against a fresh server; fails with its output.
fn run_script(mode: &str) {
    let probe = python()
        .args(["-c", "import kubernetes"])
        .output()
        .expect("python3 runs");
    assert!(
        probe.status.success(),
        "the official Kubernetes Python client is missing: pip install kubernetes\n{}",
        String::from_utf8_lossy(&probe.stderr)
    );

    let server = Server::start();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/client_smoke.py");
    let mut child = python()
        .arg(script)
        .arg(&server.kubeconfig)
        .arg(mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the python client script");
    // Bounded: the script's own watch times out after 20 s.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut timed_out = false;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            timed_out = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("script output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !timed_out && out.status.success() && stdout.contains(&format!("python client {mode}: ok")),
        "client_smoke.py {mode} failed ({}{}):\n{stdout}\n{stderr}",
        out.status,
        if timed_out { ", killed after 90 s" } else { "" }
    );
}

#[test]
fn python_client_crud_and_watch() {
    run_script("smoke");
}

#[test]
fn python_client_objects_without_kind_are_created() {
    run_script("kindless");
}
