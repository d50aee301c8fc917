//! The node agent end to end: `skiff server` with its local agent (real containerd,
//! runc and CNI, as root) registers a Ready node with a pod subnet and a Lease, and runs
//! pods as containers with the status upstream's kubelet reports: the RC example's
//! replicas Running with IPs, restarts after a kill, exit codes and termination
//! messages under restartPolicy Never, CrashLoopBackOff, graceful deletion,
//! ConfigMap/Secret environment, OOMKilled, and static pods with their mirror pods.
//!
//! One server for the whole file (CI has 2 cores): the pods of every case are created
//! first, then each case is checked.

mod agent_support;
mod support;

use std::time::{Duration, Instant};

use agent_support::{AgentServer, IMAGE, NODE};
use serde_json::Value;

const T: Duration = Duration::from_secs(60);

fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["status"]["containerStatuses"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == name))
        .unwrap_or(&Value::Null)
}

fn phase(pod: &Value) -> &str {
    pod["status"]["phase"].as_str().unwrap_or("")
}

fn pod_yaml(name: &str, restart: &str, containers: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: {restart}\n  terminationGracePeriodSeconds: 30\n  containers:\n{containers}"
    )
}

fn ctr(name: &str, script: &str) -> String {
    format!("  - name: {name}\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", {script:?}]\n")
}

#[test]
fn pods_run_as_containers_with_upstream_status() {
    let s = AgentServer::start();

    // Pods of every case first, so their containers start side by side.
    let rc = std::fs::read_to_string(support::nginx_rc_path())
        .expect("examples/nginx-rc.yaml")
        .replace(
            "image: nginx",
            &format!("image: {IMAGE}\n        command: [\"httpd\", \"-f\", \"-p\", \"80\"]"),
        );
    s.ok_stdin(&["create", "-f", "-"], &rc);
    s.ok(&["create", "configmap", "cfg", "--from-literal=color=blue"]);
    s.ok(&[
        "create",
        "secret",
        "generic",
        "sec",
        "--from-literal=password=hunter2",
    ]);
    let manifests = [
        pod_yaml("victim", "Always", &ctr("c", "sleep 3600")),
        pod_yaml(
            "never",
            "Never",
            &(ctr("ok", "exit 0") + &ctr("bad", "echo boom > /dev/termination-log; exit 3")),
        ),
        pod_yaml("done", "Never", &ctr("c", "exit 0")),
        pod_yaml("crash", "Always", &ctr("c", "exit 1")),
        pod_yaml(
            "polite",
            "Always",
            &ctr("c", "trap 'exit 0' TERM; while true; do sleep 1; done"),
        ),
        pod_yaml("stubborn", "Always", &ctr("c", "sleep 3600")),
        format!(
            "{}    env:\n    - name: COLOR\n      valueFrom: {{configMapKeyRef: {{name: cfg, key: color}}}}\n    - name: PASSWORD\n      valueFrom: {{secretKeyRef: {{name: sec, key: password}}}}\n    - name: NODE\n      valueFrom: {{fieldRef: {{fieldPath: spec.nodeName}}}}\n    envFrom:\n    - configMapRef: {{name: cfg}}\n      prefix: CFG_\n    args: [\"$(COLOR)\"]\n",
            pod_yaml(
                "env",
                "Never",
                &ctr(
                    "c",
                    "echo \"$0 $PASSWORD $NODE $CFG_color $KUBERNETES_SERVICE_HOST $(grep -c env /etc/hosts)\" > /dev/termination-log",
                ),
            )
        ),
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: init\nspec:\n  initContainers:\n{}  containers:\n{}",
            ctr("first", "exit 0"),
            ctr("main", "sleep 3600")
        ),
        format!(
            "{}    lifecycle:\n      postStart:\n        exec: {{command: [\"sh\", \"-c\", \"echo hooked > /tmp/post\"]}}\n",
            pod_yaml(
                "hooks",
                "Never",
                &ctr("c", "sleep 2; cat /tmp/post > /dev/termination-log"),
            )
        ),
        pod_yaml("deadline", "Always", &ctr("c", "sleep 3600"))
            .replace("  restartPolicy:", "  activeDeadlineSeconds: 3\n  restartPolicy:"),
        // Nothing listens on 127.0.0.1:1: the pull fails at once, on loopback.
        pod_yaml(
            "nopull",
            "Always",
            "  - name: c\n    image: 127.0.0.1:1/nosuch:v1\n",
        ),
        format!(
            "{}    resources: {{limits: {{memory: 20Mi}}}}\n",
            pod_yaml(
                "hog",
                "Never",
                &ctr("c", "x=0123456789abcdef; while true; do x=$x$x; done"),
            )
        ),
    ];
    s.ok_stdin(&["create", "-f", "-"], &manifests.join("---\n"));
    std::fs::write(
        s.agent_dir().join("manifests").join("static-web.yaml"),
        format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: static-web\n  namespace: kube-system\nspec:\n  containers:\n  - name: web\n    image: {IMAGE}\n    command: [\"sleep\", \"3600\"]\n"),
    )
    .expect("writing a static pod manifest");

    // The node: Ready, with its runtime, version, subnet, endpoint and Lease.
    let node = s.get_json(&["get", "node", NODE]);
    let info = &node["status"]["nodeInfo"];
    assert!(
        info["containerRuntimeVersion"]
            .as_str()
            .unwrap_or("")
            .starts_with("containerd://"),
        "{info}"
    );
    assert!(info["kubeletVersion"]
        .as_str()
        .unwrap_or("")
        .starts_with("v1.33."));
    assert_eq!(node["spec"]["podCIDR"], s.subnet.as_str());
    assert!(node["status"]["capacity"]["cpu"].as_str().is_some());
    assert_eq!(node["status"]["capacity"]["pods"], "110");
    for t in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
        assert!(
            node["status"]["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["type"] == t),
            "condition {t}"
        );
    }
    let lease = s.get_json(&["get", "lease", "-n", "kube-node-lease", NODE]);
    assert_eq!(lease["spec"]["holderIdentity"], NODE);

    // The RC example: 3 Running replicas, each with its own IP in the node's subnet.
    let prefix = s.subnet.trim_end_matches("0/24").to_string();
    support::eventually(T, "3 RC replicas Running with IPs", || {
        let pods = s.get_json(&["get", "pods", "-l", "app=nginx"]);
        let items = pods["items"].as_array().cloned().unwrap_or_default();
        let mut ips: Vec<String> = items
            .iter()
            .filter(|p| phase(p) == "Running")
            .filter_map(|p| p["status"]["podIP"].as_str().map(str::to_string))
            .filter(|ip| ip.starts_with(&prefix))
            .collect();
        ips.sort();
        ips.dedup();
        ips.len() == 3
    });
    let pods = s.get_json(&["get", "pods", "-l", "app=nginx"]);
    let ip = pods["items"][0]["status"]["podIP"]
        .as_str()
        .unwrap()
        .to_string();
    // The pod network works: the node reaches httpd in the pod.
    std::net::TcpStream::connect_timeout(&format!("{ip}:80").parse().unwrap(), T)
        .expect("connecting to a pod's httpd from the node");

    // A killed container is restarted: restartCount 1, lastState shows the kill.
    let victim = s.wait_pod("victim", T, "Running", |p| {
        container(p, "c")["ready"] == true
    });
    let victim_uid = victim["metadata"]["uid"].as_str().unwrap().to_string();
    let id = container(&victim, "c")["containerID"]
        .as_str()
        .unwrap()
        .trim_start_matches("containerd://")
        .to_string();
    s.with_cri(async |mut cri| {
        cri.runtime
            .stop_container(skiff_cri::api::StopContainerRequest {
                container_id: id,
                timeout: 0,
            })
            .await
            .expect("killing the container");
    });
    let victim = s.wait_pod("victim", T, "restarted once and running", |p| {
        let c = container(p, "c");
        c["restartCount"] == 1 && c["state"]["running"].is_object()
    });
    assert_eq!(
        container(&victim, "c")["lastState"]["terminated"]["exitCode"],
        137
    );

    // restartPolicy Never: exit codes, reasons and the termination message.
    let never = s.wait_pod("never", T, "Failed", |p| phase(p) == "Failed");
    let ok = &container(&never, "ok")["state"]["terminated"];
    assert_eq!(
        (ok["exitCode"].as_i64(), ok["reason"].as_str()),
        (Some(0), Some("Completed"))
    );
    let bad = &container(&never, "bad")["state"]["terminated"];
    assert_eq!(
        (bad["exitCode"].as_i64(), bad["reason"].as_str()),
        (Some(3), Some("Error"))
    );
    assert_eq!(bad["message"].as_str().map(str::trim), Some("boom"));
    let done = s.wait_pod("done", T, "Succeeded", |p| phase(p) == "Succeeded");
    assert_eq!(
        container(&done, "c")["state"]["terminated"]["reason"],
        "Completed"
    );
    let ready = done["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .cloned()
        .unwrap();
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("False"), Some("PodCompleted"))
    );

    // A container that keeps failing backs off: CrashLoopBackOff with upstream's message.
    let crash = s.wait_pod("crash", T, "CrashLoopBackOff", |p| {
        container(p, "c")["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    });
    let c = container(&crash, "c");
    let msg = c["state"]["waiting"]["message"].as_str().unwrap_or("");
    assert!(
        msg.starts_with("back-off 10s restarting failed container=c pod=crash_default("),
        "{msg}"
    );
    assert!(c["restartCount"].as_i64().unwrap() >= 1);
    assert_eq!(c["lastState"]["terminated"]["exitCode"], 1);
    assert_eq!(phase(&crash), "Running");

    // Environment from a ConfigMap, a Secret, the pod's fields, envFrom and $(VAR).
    let env = s.wait_pod("env", T, "Succeeded", |p| phase(p) == "Succeeded");
    assert_eq!(
        container(&env, "c")["state"]["terminated"]["message"]
            .as_str()
            .map(str::trim),
        Some(format!("blue hunter2 {NODE} blue 10.43.0.1 1").as_str())
    );

    // Init containers run first and to completion.
    let init = s.wait_pod("init", T, "Running", |p| phase(p) == "Running");
    let first = &init["status"]["initContainerStatuses"][0];
    assert_eq!(first["state"]["terminated"]["reason"], "Completed");
    let initialized = init["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["type"] == "Initialized" && c["status"] == "True");
    assert!(initialized);

    // postStart runs in the container right after it starts.
    let hooks = s.wait_pod("hooks", T, "Succeeded", |p| phase(p) == "Succeeded");
    assert_eq!(
        container(&hooks, "c")["state"]["terminated"]["message"]
            .as_str()
            .map(str::trim),
        Some("hooked")
    );

    // An image that cannot be pulled: ErrImagePull, then ImagePullBackOff, with the
    // runtime's message.
    let nopull = s.wait_pod("nopull", T, "ImagePullBackOff", |p| {
        container(p, "c")["state"]["waiting"]["reason"] == "ImagePullBackOff"
    });
    let msg = container(&nopull, "c")["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        msg.contains("Back-off pulling image \"127.0.0.1:1/nosuch:v1\""),
        "{msg}"
    );
    assert_eq!(phase(&nopull), "Pending");

    // Past activeDeadlineSeconds the pod is stopped and Failed.
    let deadline = s.wait_pod("deadline", T, "Failed", |p| phase(p) == "Failed");
    assert_eq!(deadline["status"]["reason"], "DeadlineExceeded");
    assert!(container(&deadline, "c")["state"]["terminated"].is_object());

    // Over its memory limit: killed by the kernel, reported OOMKilled.
    let hog = s.wait_pod("hog", T, "Failed", |p| phase(p) == "Failed");
    let t = &container(&hog, "c")["state"]["terminated"];
    assert_eq!(
        (t["reason"].as_str(), t["exitCode"].as_i64()),
        (Some("OOMKilled"), Some(137))
    );

    // Graceful deletion: a container that exits on SIGTERM goes at once; one that
    // ignores it is killed when its grace period (2 s, not 30) runs out.
    s.wait_pod("polite", T, "Running", |p| {
        container(p, "c")["ready"] == true
    });
    s.wait_pod("stubborn", T, "Running", |p| {
        container(p, "c")["ready"] == true
    });
    let started = Instant::now();
    s.ok(&["delete", "pod", "polite", "--wait=true"]);
    let polite = started.elapsed();
    assert!(
        polite < Duration::from_secs(10),
        "polite pod took {polite:?}"
    );
    let started = Instant::now();
    s.ok(&[
        "delete",
        "pod",
        "stubborn",
        "--grace-period=2",
        "--wait=true",
    ]);
    let stubborn = started.elapsed();
    assert!(
        stubborn >= Duration::from_millis(1500) && stubborn < Duration::from_secs(15),
        "stubborn pod took {stubborn:?}"
    );

    // The static pod runs without being created through the API and shows as a mirror.
    let mirror = format!("static-web-{NODE}");
    let deadline = Instant::now() + T;
    let m = loop {
        let out = s.kubectl(&["get", "pod", "-n", "kube-system", &mirror, "-o", "json"]);
        if out.status.success() {
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            if phase(&v) == "Running" {
                break v;
            }
        }
        assert!(Instant::now() < deadline, "mirror pod {mirror} not Running");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(m["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_string());
    assert_eq!(m["metadata"]["ownerReferences"][0]["kind"], "Node");

    // Deleting everything stops every container.
    s.ok(&["delete", "rc", "nginx"]);
    s.ok(&["delete", "pods", "--all", "--wait=true"]);
    support::eventually(T, "only the static pod's container runs", || {
        s.running_container_ids().len() == 1
    });
    // Their cgroups go with them.
    let cgroup = format!("/sys/fs/cgroup/memory/kubepods/besteffort/pod{victim_uid}");
    support::eventually(T, "the deleted pod's cgroup removed", || {
        !std::path::Path::new(&cgroup).exists()
    });
}
