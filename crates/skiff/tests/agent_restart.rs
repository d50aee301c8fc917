//! Restarting the node agent never kills running pods: `skiff agent` as its own process,
//! stopped gracefully and then killed outright, each time comes back, adopts the pods'
//! sandboxes and containers from the runtime (same container IDs, no restarts) and goes
//! on running new pods.

mod agent_support;
mod support;

use std::time::Duration;

use agent_support::{AgentServer, IMAGE};
use serde_json::Value;

const T: Duration = Duration::from_secs(60);

fn ids(s: &AgentServer) -> Vec<(String, String, i64)> {
    let pods = s.get_json(&["get", "pods", "-l", "app=keep"]);
    let mut out: Vec<(String, String, i64)> = pods["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|p: &Value| {
            let c = &p["status"]["containerStatuses"][0];
            (
                p["metadata"]["name"].as_str().unwrap_or("").to_string(),
                c["containerID"].as_str().unwrap_or("").to_string(),
                c["restartCount"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    out.sort();
    out
}

fn all_running(s: &AgentServer, n: usize) -> bool {
    let pods = s.get_json(&["get", "pods", "-l", "app=keep"]);
    let items = pods["items"].as_array().cloned().unwrap_or_default();
    items.len() == n
        && items.iter().all(|p| {
            p["status"]["phase"] == "Running"
                && p["status"]["containerStatuses"][0]["ready"] == true
        })
}

#[test]
fn restarting_the_agent_keeps_pods_running() {
    let mut s = AgentServer::start_separate();
    s.ok(&[
        "create",
        "deployment",
        "keep",
        &format!("--image={IMAGE}"),
        "--replicas=2",
        "--",
        "sleep",
        "3600",
    ]);
    support::eventually(T, "2 pods Running", || all_running(&s, 2));
    let before = ids(&s);
    let running = s.running_container_ids();
    assert_eq!(running.len(), 2, "{running:?}");

    // A graceful stop (SIGTERM): the agent stops its containerd, the pods keep running.
    s.stop_agent();
    assert!(before.iter().all(|(_, id, _)| !id.is_empty()), "{before:?}");
    s.start_agent();
    s.wait_node_ready(T);
    support::eventually(T, "pods Running again", || all_running(&s, 2));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(ids(&s), before, "same containers, no restarts");
    assert_eq!(s.running_container_ids(), running);

    // A crash (SIGKILL): the next agent stops the containerd left behind and adopts.
    s.kill_agent();
    s.start_agent();
    s.wait_node_ready(T);
    std::thread::sleep(Duration::from_secs(3));
    support::eventually(T, "pods Running after the crash", || all_running(&s, 2));
    assert_eq!(
        ids(&s),
        before,
        "same containers, no restarts:\n{}",
        agent_support::tail(&s.agent_log(), 30)
    );
    assert_eq!(s.running_container_ids(), running);

    // And it still runs new pods.
    s.ok(&["scale", "deployment", "keep", "--replicas=3"]);
    support::eventually(T, "3 pods Running", || all_running(&s, 3));
}
