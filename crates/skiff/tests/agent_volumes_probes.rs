//! Volumes, probes and streaming through `skiff server`'s own node agent (real
//! containerd, as root): a sidecar reads what its neighbour writes to a shared emptyDir,
//! ConfigMap and Secret files appear in the container, a failing readiness probe keeps a
//! pod at 0/1 ready, a failing liveness probe restarts its container, and `kubectl logs`
//! and `kubectl exec` reach the containers through the API server; one pod fetches
//! another's page by pod IP.

mod agent_support;
mod support;

use std::time::Duration;

use agent_support::{AgentServer, IMAGE};
use serde_json::Value;

const T: Duration = Duration::from_secs(90);

fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["status"]["containerStatuses"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == name))
        .unwrap_or(&Value::Null)
}

fn running(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running"
}

#[test]
fn volumes_probes_logs_and_exec_through_the_agent() {
    let s = AgentServer::start();
    s.ok(&["create", "configmap", "cfg", "--from-literal=color=blue"]);
    s.ok(&[
        "create",
        "secret",
        "generic",
        "sec",
        "--from-literal=password=hunter2",
    ]);
    let manifests = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: sidecar}}
spec:
  volumes:
  - name: shared
    emptyDir: {{}}
  - name: cfg
    configMap: {{name: cfg}}
  - name: sec
    secret: {{secretName: sec}}
  containers:
  - name: writer
    image: {IMAGE}
    command: ["sh", "-c", "echo hello-logs; while true; do date > /data/now; sleep 1; done"]
    volumeMounts: [{{name: shared, mountPath: /data}}]
  - name: reader
    image: {IMAGE}
    command: ["sleep", "3600"]
    volumeMounts:
    - {{name: shared, mountPath: /shared, readOnly: true}}
    - {{name: cfg, mountPath: /etc/cfg}}
    - {{name: sec, mountPath: /etc/sec}}
---
apiVersion: v1
kind: Pod
metadata: {{name: web}}
spec:
  containers:
  - name: web
    image: {IMAGE}
    command: ["sh", "-c", "mkdir -p /www && echo web-page > /www/index.html && httpd -f -p 8080 -h /www"]
    readinessProbe:
      httpGet: {{path: /, port: 8080}}
      periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata: {{name: unready}}
spec:
  containers:
  - name: c
    image: {IMAGE}
    command: ["sleep", "3600"]
    readinessProbe:
      exec: {{command: ["false"]}}
      periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata: {{name: unhealthy}}
spec:
  containers:
  - name: c
    image: {IMAGE}
    command: ["sh", "-c", "touch /tmp/alive; sleep 2; rm /tmp/alive; sleep 3600"]
    livenessProbe:
      exec: {{command: ["test", "-e", "/tmp/alive"]}}
      periodSeconds: 1
      failureThreshold: 2
"#
    );
    s.ok_stdin(&["create", "-f", "-"], &manifests);

    // A sidecar reads what the main container writes to the shared emptyDir; ConfigMap
    // and Secret keys are files.
    s.wait_pod("sidecar", T, "Running", running);
    support::eventually(T, "the shared file", || {
        let out = s.kubectl(&[
            "exec",
            "sidecar",
            "-c",
            "reader",
            "--",
            "cat",
            "/shared/now",
        ]);
        out.status.success() && !out.stdout.is_empty()
    });
    assert_eq!(
        s.ok(&[
            "exec",
            "sidecar",
            "-c",
            "reader",
            "--",
            "cat",
            "/etc/cfg/color"
        ])
        .trim(),
        "blue"
    );
    assert_eq!(
        s.ok(&[
            "exec",
            "sidecar",
            "-c",
            "reader",
            "--",
            "cat",
            "/etc/sec/password"
        ])
        .trim(),
        "hunter2"
    );
    // Read-only mounts stay read-only.
    let denied = s.kubectl(&[
        "exec",
        "sidecar",
        "-c",
        "reader",
        "--",
        "touch",
        "/shared/x",
    ]);
    assert!(
        !denied.status.success(),
        "a readOnly mount refused the write"
    );
    // Logs through the API server and the agent.
    assert!(s
        .ok(&["logs", "sidecar", "-c", "writer"])
        .contains("hello-logs"));

    // Readiness: the web pod turns Ready once its page answers; one pod fetches it from
    // another by pod IP.
    let web = s.wait_pod("web", T, "Ready", |p| container(p, "web")["ready"] == true);
    let ip = web["status"]["podIP"].as_str().expect("pod IP").to_string();
    let page = s.ok(&[
        "exec",
        "sidecar",
        "-c",
        "reader",
        "--",
        "sh",
        "-c",
        &format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {ip} 8080"),
    ]);
    assert!(page.contains("web-page"), "{page}");

    // A failing readiness probe: Running, never ready.
    s.wait_pod("unready", T, "Running", running);
    std::thread::sleep(Duration::from_secs(3));
    let unready = s.pod("unready");
    assert_eq!(container(&unready, "c")["ready"], false, "{unready}");
    let ready = unready["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(ready["status"], "False");

    // A failing liveness probe restarts the container.
    s.wait_pod("unhealthy", T, "a restart after liveness failures", |p| {
        container(p, "c")["restartCount"].as_i64().unwrap_or(0) >= 1
    });
    // Each failure is the kubelet's Unhealthy event, naming the probe.
    support::eventually(T, "an Unhealthy event", || {
        let events = s.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=unhealthy",
            "-o",
            "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}",
        ]);
        events.contains("Unhealthy: Liveness probe failed")
    });
}
