//! The control loops end to end: the real `skiff server` (API server, scheduler,
//! controller manager), `skiff hollow-nodes` processes as the nodes, and the real kubectl.

mod support;

use std::time::Duration;

use support::{eventually, HollowNodes, Server};

const T: Duration = Duration::from_secs(60);

fn cluster(nodes: usize, server_args: &[&str]) -> (Server, HollowNodes) {
    let server = Server::start_with(server_args);
    let hollow = HollowNodes::start(&server, nodes, "node-", 0, &[]);
    server.wait_nodes_ready(nodes, T);
    (server, hollow)
}

fn json_path(server: &Server, args: &[&str], path: &str) -> String {
    let mut all = args.to_vec();
    let expr = format!("jsonpath={path}");
    all.extend(["-o", &expr]);
    server.ok(&all)
}

#[test]
fn the_rc_example_runs_three_pods_heals_and_scales() {
    let (server, _nodes) = cluster(3, &[]);
    server.ok(&["create", "-f", &support::nginx_rc_path()]);
    eventually(T, "3 nginx pods Running", || {
        server.running_pods("default", "app=nginx").len() == 3
    });
    let ready = json_path(&server, &["get", "rc", "nginx"], "{.status.readyReplicas}");
    eventually(T, "rc status readyReplicas 3", || {
        json_path(&server, &["get", "rc", "nginx"], "{.status.readyReplicas}") == "3"
    });
    let _ = ready;
    let victim = server.running_pods("default", "app=nginx")[0].clone();
    server.ok(&["delete", "pod", &victim, "--wait=false"]);
    eventually(T, "a replacement for the deleted pod", || {
        let pods = server.running_pods("default", "app=nginx");
        pods.len() == 3 && !pods.contains(&victim)
    });
    server.ok(&["scale", "rc", "nginx", "--replicas=5"]);
    eventually(T, "5 pods after scaling up", || {
        server.running_pods("default", "app=nginx").len() == 5
    });
    server.ok(&["scale", "rc", "nginx", "--replicas=1"]);
    eventually(T, "1 pod after scaling down", || {
        server.running_pods("default", "app=nginx").len() == 1
    });
    // The scheduler spread the pods: every pod is bound to one of the hollow nodes.
    for pod in server.pods("default", "app=nginx") {
        let node = pod["spec"]["nodeName"].as_str().unwrap_or("");
        assert!(node.starts_with("node-"), "pod bound to {node:?}");
    }
}

#[test]
fn a_deployment_rolls_out_and_rolls_back_with_kubectl() {
    let (server, _nodes) = cluster(3, &[]);
    server.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1.0",
        "--replicas=4",
    ]);
    server.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    server.ok(&["set", "image", "deployment/web", "nginx=nginx:2.0"]);
    server.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    let history = server.ok(&["rollout", "history", "deployment/web"]);
    assert!(history.contains('1') && history.contains('2'), "{history}");
    let rs = server.ok(&["get", "rs", "-l", "app=web", "-o", "name"]);
    assert_eq!(rs.lines().count(), 2, "one ReplicaSet per revision: {rs}");
    server.ok(&["rollout", "undo", "deployment/web"]);
    server.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    let image = json_path(
        &server,
        &["get", "deployment", "web"],
        "{.spec.template.spec.containers[0].image}",
    );
    assert_eq!(image, "nginx:1.0");
    let revision = json_path(
        &server,
        &["get", "deployment", "web"],
        "{.metadata.annotations.deployment\\.kubernetes\\.io/revision}",
    );
    assert_eq!(revision, "3");
    eventually(T, "4 pods of the rolled-back template", || {
        let pods = server.pods("default", "app=web");
        let running: Vec<_> = pods
            .iter()
            .filter(|p| {
                p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null()
            })
            .collect();
        running.len() == 4
            && running
                .iter()
                .all(|p| p["spec"]["containers"][0]["image"] == "nginx:1.0")
    });
}

#[test]
fn statefulsets_daemonsets_and_jobs_run_on_hollow_nodes() {
    let (server, _nodes) = cluster(3, &[]);
    server.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 3
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: db, image: postgres}]}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec: {containers: [{name: agent, image: agent}]}
---
apiVersion: batch/v1
kind: Job
metadata: {name: batch}
spec:
  completions: 3
  parallelism: 2
  template:
    spec:
      restartPolicy: Never
      containers: [{name: work, image: busybox}]
"#,
    );
    eventually(T, "db-0, db-1, db-2 Running", || {
        let mut pods = server.running_pods("default", "app=db");
        pods.sort();
        pods == ["db-0", "db-1", "db-2"]
    });
    eventually(T, "one agent pod per node", || {
        let pods = server.pods("default", "app=agent");
        let mut nodes: Vec<String> = pods
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .filter_map(|p| p["spec"]["nodeName"].as_str().map(str::to_string))
            .collect();
        nodes.sort();
        nodes == ["node-0", "node-1", "node-2"]
    });
    server.ok(&[
        "wait",
        "--for=condition=Complete",
        "job/batch",
        "--timeout=60s",
    ]);
    assert_eq!(
        json_path(&server, &["get", "job", "batch"], "{.status.succeeded}"),
        "3"
    );
}

#[test]
fn deletes_cascade_through_owners_and_namespaces() {
    let (server, _nodes) = cluster(2, &[]);
    server.ok(&["create", "namespace", "doomed"]);
    server.ok(&[
        "create",
        "deployment",
        "web",
        "-n",
        "doomed",
        "--image=nginx",
        "--replicas=2",
    ]);
    server.ok(&[
        "create",
        "configmap",
        "settings",
        "-n",
        "doomed",
        "--from-literal=a=b",
    ]);
    eventually(T, "2 pods in doomed", || {
        server.running_pods("doomed", "app=web").len() == 2
    });
    // Orphaning keeps the pods and drops their owner.
    let rs = server.ok(&["get", "rs", "-n", "doomed", "-o", "name"]);
    server.ok(&[
        "delete",
        "deployment",
        "web",
        "-n",
        "doomed",
        "--cascade=orphan",
    ]);
    server.ok(&["delete", rs.trim(), "-n", "doomed", "--cascade=orphan"]);
    eventually(T, "orphaned pods without ownerReferences", || {
        let pods = server.pods("doomed", "app=web");
        pods.len() == 2
            && pods
                .iter()
                .all(|p| p["metadata"]["ownerReferences"].is_null())
    });
    // A background cascade deletes what a deployment owns.
    server.ok(&[
        "create",
        "deployment",
        "api",
        "-n",
        "doomed",
        "--image=nginx",
        "--replicas=2",
    ]);
    eventually(T, "2 api pods", || {
        server.running_pods("doomed", "app=api").len() == 2
    });
    server.ok(&["delete", "deployment", "api", "-n", "doomed"]);
    eventually(T, "api ReplicaSet and pods gone", || {
        server.pods("doomed", "app=api").is_empty()
            && server
                .ok(&["get", "rs", "-n", "doomed", "-l", "app=api", "-o", "name"])
                .trim()
                .is_empty()
    });
    // Deleting the namespace deletes everything in it, then the namespace.
    server.ok(&["delete", "namespace", "doomed", "--timeout=60s"]);
    let out = server.kubectl(&["get", "namespace", "doomed"]);
    assert!(!out.status.success(), "the namespace is gone");
}

#[test]
fn an_unschedulable_pod_says_why_and_schedules_when_a_node_fits() {
    let (server, _nodes) = cluster(3, &[]);
    server.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata: {name: big}
spec:
  containers:
  - name: c
    image: busybox
    resources: {requests: {cpu: "64"}}
"#,
    );
    let want = "0/3 nodes are available: 3 Insufficient cpu.";
    eventually(T, "PodScheduled=False with the upstream message", || {
        let pod = server.get_json(&["get", "pod", "big", "-o", "json"]);
        pod["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter().any(|c| {
                c["type"] == "PodScheduled"
                    && c["status"] == "False"
                    && c["reason"] == "Unschedulable"
                    && c["message"].as_str().is_some_and(|m| m.starts_with(want))
            })
        })
    });
    eventually(T, "a FailedScheduling event", || {
        server
            .ok(&[
                "get",
                "events",
                "--field-selector",
                "involvedObject.name=big,reason=FailedScheduling",
                "-o",
                "name",
            ])
            .lines()
            .count()
            >= 1
    });
    let describe = server.ok(&["describe", "pod", "big"]);
    assert!(describe.contains("FailedScheduling"), "{describe}");
    let _big = HollowNodes::start(&server, 1, "big-", 0, &["--cpu", "96"]);
    eventually(T, "the pod scheduled onto the big node", || {
        json_path(&server, &["get", "pod", "big"], "{.spec.nodeName}") == "big-0"
    });
}

#[test]
fn a_high_priority_pod_preempts_a_low_priority_one() {
    let server = Server::start();
    let _node = HollowNodes::start(&server, 1, "small-", 0, &["--cpu", "2"]);
    server.wait_nodes_ready(1, T);
    server.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: high}
value: 1000
---
apiVersion: v1
kind: Pod
metadata: {name: low-1}
spec:
  containers: [{name: c, image: busybox, resources: {requests: {cpu: "900m"}}}]
---
apiVersion: v1
kind: Pod
metadata: {name: low-2}
spec:
  containers: [{name: c, image: busybox, resources: {requests: {cpu: "900m"}}}]
"#,
    );
    eventually(T, "both low pods Running", || {
        server.running_pods("default", "").len() == 2
    });
    server.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata: {name: urgent}
spec:
  priorityClassName: high
  containers: [{name: c, image: busybox, resources: {requests: {cpu: "900m"}}}]
"#,
    );
    eventually(
        T,
        "urgent Running on small-0 after one low pod was preempted",
        || {
            let running = server.running_pods("default", "");
            running.contains(&"urgent".to_string()) && running.len() == 2
        },
    );
    assert_eq!(
        json_path(&server, &["get", "pod", "urgent"], "{.spec.priority}"),
        "1000"
    );
}

#[test]
fn pods_of_a_lost_node_are_replaced_on_other_nodes() {
    let server = Server::start_with(&[
        "--node-monitor-grace-period",
        "6",
        "--default-unreachable-toleration-seconds",
        "2",
        "--default-not-ready-toleration-seconds",
        "2",
    ]);
    let mut lost = HollowNodes::start(&server, 1, "lost-", 0, &[]);
    let _kept = HollowNodes::start(&server, 2, "kept-", 0, &[]);
    server.wait_nodes_ready(3, T);
    server.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx",
        "--replicas=6",
    ]);
    server.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    let on_lost = || {
        server
            .pods("default", "app=web")
            .iter()
            .filter(|p| {
                p["spec"]["nodeName"] == "lost-0" && p["metadata"]["deletionTimestamp"].is_null()
            })
            .count()
    };
    assert!(
        on_lost() > 0,
        "the scheduler spreads pods over all three nodes"
    );
    lost.kill();
    eventually(
        T,
        "lost-0 NotReady (Unknown) with the unreachable taint",
        || {
            let node = server.get_json(&["get", "node", "lost-0", "-o", "json"]);
            let unknown = node["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "Unknown")
            });
            let tainted = node["spec"]["taints"].as_array().is_some_and(|ts| {
                ts.iter().any(|t| {
                    t["key"] == "node.kubernetes.io/unreachable" && t["effect"] == "NoExecute"
                })
            });
            unknown && tainted
        },
    );
    eventually(T, "6 Running pods, all on the kept nodes", || {
        let pods = server.pods("default", "app=web");
        let live: Vec<_> = pods
            .iter()
            .filter(|p| {
                p["metadata"]["deletionTimestamp"].is_null() && p["status"]["phase"] == "Running"
            })
            .collect();
        live.len() == 6
            && live.iter().all(|p| {
                p["spec"]["nodeName"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("kept-"))
            })
    });
}

/// The loops as their own processes (`skiff scheduler`, `skiff controller-manager`)
/// against a server that runs neither: the same result as in one process.
#[test]
fn scheduler_and_controller_manager_run_as_separate_processes() {
    let server = Server::start_with(&["--disable-scheduler", "--disable-controller-manager"]);
    let spawn = |what: &str| {
        let log = std::fs::File::create(server.data_dir.path().join(format!("{what}.log")))
            .expect("log file");
        let err = log.try_clone().expect("log file");
        KillOnDrop(
            std::process::Command::new(env!("CARGO_BIN_EXE_skiff"))
                .args([what, "--kubeconfig"])
                .arg(&server.kubeconfig)
                .stdout(log)
                .stderr(err)
                .spawn()
                .expect("start a skiff component"),
        )
    };
    let _scheduler = spawn("scheduler");
    let _manager = spawn("controller-manager");
    let _nodes = HollowNodes::start(&server, 2, "node-", 0, &[]);
    server.wait_nodes_ready(2, T);
    server.ok(&["create", "-f", &support::nginx_rc_path()]);
    eventually(T, "3 nginx pods Running", || {
        server.running_pods("default", "app=nginx").len() == 3
    });
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
