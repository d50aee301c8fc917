//! Two nodes on one machine, each `skiff agent` in its own network namespace (see
//! `netns_support`): pods on different nodes reach each other by pod IP (each node has
//! its own pod subnet; the agents route the other node's subnet through its address),
//! and when one agent stops, its node turns NotReady and its pods come back on the other
//! node (node lifecycle timings shortened to seconds).
//!
//! Needs root, containerd, runc, the CNI plugins, iproute2, nftables, util-linux's
//! nsenter, curl and busybox-static (all installed by `.ci/run`).

mod netns_support;
mod support;

use std::net::Ipv4Addr;
use std::time::Duration;

use netns_support::{Cluster, Options, IMAGE};
use serde_json::Value;

const T: Duration = Duration::from_secs(60);

/// Whether `ip` lies in `cidr` (a.b.c.d/n).
fn in_cidr(ip: &str, cidr: &str) -> bool {
    let (net, bits) = cidr.split_once('/').expect("CIDR");
    let (Ok(ip), Ok(net), Ok(bits)) = (
        ip.parse::<Ipv4Addr>(),
        net.parse::<Ipv4Addr>(),
        bits.parse::<u32>(),
    ) else {
        return false;
    };
    let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

/// A pod pinned to `node` (by its hostname label, through the scheduler) serving
/// `web <pod> on <node>` on port 80.
fn web_pod(name: &str, node: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: {name}}}
spec:
  nodeSelector:
    kubernetes.io/hostname: {node}
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: {IMAGE}
    env:
    - name: NODE
      valueFrom: {{fieldRef: {{fieldPath: spec.nodeName}}}}
    command: ["sh", "-c", "mkdir -p /www && echo \"web $(hostname) on $NODE\" > /www/index.html && exec httpd -f -p 80 -h /www"]
"#
    )
}

/// What `pod` gets from `http://<ip>/` (busybox's nc: its wget crashes), retried until
/// it answers with a page or `T` passes.
fn fetch_from_pod(c: &Cluster, pod: &str, ip: &str) -> String {
    let script = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {ip} 80");
    let mut last = String::new();
    netns_support::wait_for(T, || {
        let out = c.kubectl(&["exec", pod, "--", "sh", "-c", &script]);
        last = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out.status.success() && last.contains("200 OK")
    });
    last
}

/// What `curl http://<ip>/` run in node `i`'s namespace gets, retried as above.
fn fetch_from_node(c: &Cluster, i: usize, ip: &str) -> String {
    let url = format!("http://{ip}/");
    let mut last = String::new();
    netns_support::wait_for(T, || {
        let out = c.exec_in_node(i, &["curl", "-sS", "--max-time", "5", &url]);
        last = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out.status.success()
    });
    last
}

#[test]
fn pods_reach_each_other_by_ip_on_one_node_and_across_nodes() {
    let c = Cluster::start(2);

    // Each node has its own pod subnet out of the cluster's range.
    let cidrs = [c.pod_cidr(0), c.pod_cidr(1)];
    for cidr in &cidrs {
        assert!(cidr.ends_with("/24"), "{cidrs:?}");
        let net = cidr.split('/').next().unwrap();
        assert!(in_cidr(net, &c.options.cluster_cidr), "{cidrs:?}");
    }
    assert_ne!(cidrs[0], cidrs[1]);
    for i in 0..2 {
        let node = c.node(i);
        let internal = node["status"]["addresses"]
            .as_array()
            .and_then(|a| a.iter().find(|a| a["type"] == "InternalIP"))
            .map(|a| a["address"].clone())
            .unwrap_or(Value::Null);
        assert_eq!(internal, c.node_ip(i), "node-{i}'s InternalIP");
    }

    // A web server on each node and a client beside web-0.
    c.ok_stdin(&["create", "-f", "-"], &web_pod("web-0", "node-0"));
    c.ok_stdin(&["create", "-f", "-"], &web_pod("web-1", "node-1"));
    c.ok_stdin(&["create", "-f", "-"], &web_pod("client-0", "node-0"));
    let mut ips = Vec::new();
    for (name, node) in [("web-0", 0), ("web-1", 1), ("client-0", 0)] {
        let pod = c.wait_pod_running("default", name, T);
        assert_eq!(pod["spec"]["nodeName"], c.node_name(node), "{name}");
        let ip = pod["status"]["podIP"].as_str().unwrap().to_string();
        assert!(
            in_cidr(&ip, &cidrs[node]),
            "{name} has {ip}, outside node-{node}'s {}",
            cidrs[node]
        );
        ips.push(ip);
    }
    let (ip0, ip1) = (&ips[0], &ips[1]);

    // Same node: client-0 → web-0.
    let got = fetch_from_pod(&c, "client-0", ip0);
    assert!(
        got.contains("web web-0 on node-0"),
        "client-0 → web-0: {got}"
    );
    // Across nodes, both ways.
    let got = fetch_from_pod(&c, "client-0", ip1);
    assert!(
        got.contains("web web-1 on node-1"),
        "client-0 → web-1: {got}"
    );
    let got = fetch_from_pod(&c, "web-1", ip0);
    assert!(got.contains("web web-0 on node-0"), "web-1 → web-0: {got}");
    // The nodes themselves reach the other node's pods through the routes the agents
    // programmed.
    let got = fetch_from_node(&c, 0, ip1);
    assert_eq!(got.trim(), "web web-1 on node-1", "node-0 → web-1");
    let got = fetch_from_node(&c, 1, ip0);
    assert_eq!(got.trim(), "web web-0 on node-0", "node-1 → web-0");
    let routes = c.exec_in_node(0, &["ip", "-4", "route", "show", &cidrs[1]]);
    let routes = String::from_utf8_lossy(&routes.stdout);
    assert!(
        routes.contains(&format!("via {}", c.node_ip(1))),
        "node-0's route to node-1's pods: {routes}"
    );
}

fn condition<'a>(obj: &'a Value, type_: &str) -> &'a Value {
    obj["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or(&Value::Null)
}

fn name(pod: &Value) -> String {
    pod["metadata"]["name"].as_str().unwrap_or("").to_string()
}

fn node_of(pod: &Value) -> String {
    pod["spec"]["nodeName"].as_str().unwrap_or("").to_string()
}

#[test]
fn pods_of_a_stopped_node_come_back_on_the_other_node() {
    // Short node leases (renewed every 3 s) and a matching grace period: the control
    // plane gives up on a silent node after 8 s instead of upstream's 40 s.
    let mut c = Cluster::start_with(
        2,
        Options {
            node_monitor_grace_period: 8,
            agent_args: vec!["--node-lease-duration-seconds".into(), "12".into()],
            ..Options::default()
        },
    );
    let lease = c.get_json(&["get", "lease", "node-1", "-n", "kube-node-lease"]);
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 12, "{lease}");
    let cidr0 = c.pod_cidr(0);
    // Two replicas, one per node: a hard spread over hostnames that leaves out nodes
    // whose taints the pods do not tolerate (so an unreachable node does not count).
    c.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      topologySpreadConstraints:
      - maxSkew: 1
        topologyKey: kubernetes.io/hostname
        whenUnsatisfiable: DoNotSchedule
        nodeTaintsPolicy: Honor
        labelSelector:
          matchLabels: {{app: web}}
      containers:
      - name: web
        image: {IMAGE}
        command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www"]
        readinessProbe:
          httpGet: {{path: /, port: 80}}
          periodSeconds: 1
"#
        ),
    );
    let mut before = Vec::new();
    c.eventually(T, "2 Running replicas, one on each node", || {
        before = c
            .pods("default", "app=web")
            .into_iter()
            .filter(|p| p["status"]["phase"] == "Running" && p["status"]["podIP"].is_string())
            .collect();
        let mut nodes: Vec<String> = before.iter().map(node_of).collect();
        nodes.sort();
        nodes == ["node-0", "node-1"]
    });
    let lost = before
        .iter()
        .find(|p| node_of(p) == "node-1")
        .map(name)
        .unwrap();
    let kept = before
        .iter()
        .find(|p| node_of(p) == "node-0")
        .map(name)
        .unwrap();
    // Pods got the shortened tolerations for a lost node.
    let tolerations = c.pod("default", &lost)["spec"]["tolerations"].to_string();
    assert!(
        tolerations.contains("node.kubernetes.io/unreachable")
            && tolerations.contains("\"tolerationSeconds\":2"),
        "{tolerations}"
    );

    let stopped = std::time::Instant::now();
    c.stop_agent(1);

    // The node controller notices the silence: Ready Unknown, unreachable taints.
    c.eventually(T, "node-1 Ready Unknown", || c.node_ready(1) == "Unknown");
    let node = c.node(1);
    let ready = condition(&node, "Ready");
    assert_eq!(ready["reason"], "NodeStatusUnknown", "{ready}");
    let taints = node["spec"]["taints"].to_string();
    assert!(
        taints.contains("node.kubernetes.io/unreachable"),
        "node-1's taints: {taints}"
    );
    assert_eq!(c.node_ready(0), "True", "node-0 stays Ready");
    let not_ready_after = stopped.elapsed();

    // Its pod is evicted and a replacement runs on node-0, with an IP of node-0's subnet.
    let mut replacements = Vec::new();
    c.eventually(T, "2 Running replicas on node-0", || {
        let pods = c.pods("default", "app=web");
        let evicted = pods
            .iter()
            .find(|p| name(p) == lost)
            .is_none_or(|p| p["metadata"]["deletionTimestamp"].is_string());
        replacements = pods
            .into_iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .filter(|p| p["status"]["phase"] == "Running" && node_of(p) == "node-0")
            .filter(|p| condition(p, "Ready")["status"] == "True")
            .collect();
        evicted && replacements.len() == 2
    });
    let back_after = stopped.elapsed();
    let names: Vec<String> = replacements.iter().map(name).collect();
    assert!(names.contains(&kept), "the pod on node-0 stays: {names:?}");
    assert!(!names.contains(&lost), "{names:?}");
    for p in &replacements {
        let ip = p["status"]["podIP"].as_str().unwrap();
        assert!(in_cidr(ip, &cidr0), "{} has {ip}, not in {cidr0}", name(p));
        // It serves, reached from node-0.
        let got = fetch_from_node(&c, 0, ip);
        assert_eq!(got.trim(), name(p));
    }
    // The lost pod was evicted as upstream's taint manager does it.
    let old = c.pod("default", &lost);
    if !old.is_null() {
        let target = condition(&old, "DisruptionTarget");
        assert_eq!(target["reason"], "DeletionByTaintManager", "{target}");
    }
    eprintln!(
        "node-1 NotReady {:.1} s after its agent stopped; replacement Running on node-0 after {:.1} s",
        not_ready_after.as_secs_f64(),
        back_after.as_secs_f64()
    );
}
