//! Services and cluster DNS end to end, on two nodes in their own network namespaces
//! (see `netns_support`), each agent running the service proxy (nftables) and the DNS:
//! a Deployment of 3 busybox httpd replicas spread over both nodes behind a Service is
//! reached by name from a pod (`web.<ns>.svc.cluster.local` and the short `web`) and
//! every backend answers, on both nodes; a backend reaches itself through the Service
//! (hairpin); a backend failing readiness drops out within
//! 2 s; scaling to 1 leaves 1; the NodePort and the LoadBalancer address answer from
//! outside the nodes, and stop when the Service stops being a LoadBalancer; a headless
//! Service gives one A record per pod; SRV, ExternalName
//! and names outside the cluster (forwarded to the node's resolver, here a stand-in
//! answering from the test) resolve.

mod netns_support;
mod support;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use netns_support::{Cluster, Options, IMAGE};
use support::eventually;

const NS: &str = "shop";
const T: Duration = Duration::from_secs(90);
/// What the stand-in upstream resolver answers for every A question.
const UPSTREAM_ANSWER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);

/// A stand-in for the host's resolver: answers every A question with
/// [`UPSTREAM_ANSWER`] (and other types with no records), until dropped.
struct Upstream {
    stop: Arc<AtomicBool>,
    queries: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Upstream {
    fn start(addr: SocketAddr) -> Upstream {
        let socket = UdpSocket::bind(addr).unwrap_or_else(|e| panic!("binding {addr}: {e}"));
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("read timeout");
        let stop = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (s, q) = (stop.clone(), queries.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !s.load(Ordering::Relaxed) {
                let Ok((n, peer)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                if let Some((name, reply)) = dns_reply(&buf[..n]) {
                    q.lock().unwrap().push(name);
                    let _ = socket.send_to(&reply, peer);
                }
            }
        });
        Upstream { stop, queries }
    }

    fn asked(&self, name: &str) -> bool {
        self.queries
            .lock()
            .unwrap()
            .iter()
            .any(|q| q.eq_ignore_ascii_case(name))
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The name asked and a reply to one DNS question (RFC 1035 wire format).
fn dns_reply(query: &[u8]) -> Option<(String, Vec<u8>)> {
    if query.len() < 12 || u16::from_be_bytes([query[4], query[5]]) != 1 {
        return None;
    }
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = *query.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(i..i + len)?).into_owned());
        i += len;
    }
    let question = query.get(12..i + 4)?;
    let qtype = u16::from_be_bytes([query[i], query[i + 1]]);
    let answers: u16 = if qtype == 1 { 1 } else { 0 };
    let mut out = Vec::new();
    out.extend_from_slice(&query[0..2]);
    // QR, opcode 0, RD copied, RA; NOERROR.
    out.extend_from_slice(&[0x81 | (query[2] & 0x01), 0x80]);
    out.extend_from_slice(&[0, 1]);
    out.extend_from_slice(&answers.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(question);
    if answers == 1 {
        out.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        out.extend_from_slice(&UPSTREAM_ANSWER.octets());
    }
    Some((labels.join("."), out))
}

fn manifests() -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: {NS}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {NS}}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      topologySpreadConstraints:
      - maxSkew: 1
        topologyKey: kubernetes.io/hostname
        whenUnsatisfiable: DoNotSchedule
        labelSelector: {{matchLabels: {{app: web}}}}
      containers:
      - name: httpd
        image: {IMAGE}
        command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && touch /tmp/ready && exec httpd -f -p 80 -h /www"]
        ports: [{{name: http, containerPort: 80}}]
        readinessProbe:
          exec: {{command: ["cat", "/tmp/ready"]}}
          periodSeconds: 1
          failureThreshold: 1
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {NS}}}
spec:
  type: LoadBalancer
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: http}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web-headless, namespace: {NS}}}
spec:
  clusterIP: None
  selector: {{app: web}}
  ports: [{{name: http, port: 80}}]
---
apiVersion: v1
kind: Service
metadata: {{name: ext, namespace: {NS}}}
spec:
  type: ExternalName
  externalName: outside.example.test
---
apiVersion: v1
kind: Pod
metadata: {{name: client, namespace: {NS}}}
spec:
  nodeSelector: {{kubernetes.io/hostname: node-0}}
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: {IMAGE}
    command: ["sleep", "3600"]
"#
    )
}

/// Runs `script` with sh in the client pod; its stdout.
fn in_client(c: &Cluster, script: &str) -> String {
    c.ok(&["-n", NS, "exec", "client", "--", "sh", "-c", script])
}

/// The page each of `n` requests to `url` returned (busybox wget; never `-T`, which
/// crashes Debian's static build).
fn fetch_many(c: &Cluster, url: &str, n: usize) -> Vec<String> {
    let script = format!("for i in $(seq {n}); do wget -q -O - {url} || echo FAILED; done");
    in_client(c, &script)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Ready backends: (pod name, pod IP, node).
fn backends(c: &Cluster) -> Vec<(String, String, String)> {
    let pods = c.get_json(&["-n", NS, "get", "pods", "-l", "app=web"]);
    pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter(|p| {
            p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
        .map(|p| {
            (
                p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                p["status"]["podIP"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                p["spec"]["nodeName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

/// The addresses busybox's nslookup printed for the answer (not the server's).
fn nslookup_addresses(out: &str) -> BTreeSet<String> {
    out.split("\n\n")
        .skip(1)
        .flat_map(|block| block.lines())
        .filter_map(|l| l.trim().strip_prefix("Address:"))
        .map(|a| a.trim().to_string())
        .collect()
}

/// Seconds since boot from /proc/uptime's first field.
fn uptime(text: &str) -> f64 {
    text.split_whitespace()
        .next()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("not /proc/uptime: {text:?}"))
}

fn curl(url: &str) -> Option<String> {
    let out = std::process::Command::new("curl")
        .args(["-s", "--max-time", "3", url])
        .output()
        .expect("curl");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn services_and_dns_across_two_nodes() {
    let options = Options {
        resolv_conf: Some("nameserver {bridge}\n".into()),
        ..Options::default()
    };
    let c = Cluster::start_with(2, options);
    let upstream = Upstream::start(SocketAddr::new(
        c.bridge_ip().parse().expect("bridge address"),
        53,
    ));
    c.ok_stdin(&["apply", "-f", "-"], &manifests());
    c.ok(&[
        "-n",
        NS,
        "rollout",
        "status",
        "deployment/web",
        "--timeout=90s",
    ]);
    c.ok(&[
        "-n",
        NS,
        "wait",
        "--for=condition=Ready",
        "pod/client",
        "--timeout=90s",
    ]);
    let all = backends(&c);
    assert_eq!(all.len(), 3, "three ready backends: {all:?}");
    let names: BTreeSet<String> = all.iter().map(|b| b.0.clone()).collect();
    let nodes: BTreeSet<String> = all.iter().map(|b| b.2.clone()).collect();
    assert_eq!(nodes.len(), 2, "backends spread over both nodes: {all:?}");

    // By full name and by the short name (search path + ndots:5): every backend answers,
    // those on the client's node and those on the other.
    for url in [
        format!("http://web.{NS}.svc.cluster.local/"),
        "http://web/".into(),
    ] {
        let mut seen = BTreeSet::new();
        eventually(
            T,
            &format!("30 requests to {url} reach all 3 backends"),
            || {
                let pages = fetch_many(&c, &url, 30);
                seen = pages.into_iter().collect();
                seen == names
            },
        );
    }

    // Hairpin: a backend reaches itself through its own Service.
    let me = all[0].0.clone();
    let script = "for i in $(seq 30); do wget -q -O - http://web/; done";
    let pages = c.ok(&["-n", NS, "exec", &me, "--", "sh", "-c", script]);
    assert!(
        pages.lines().any(|l| l.trim() == me),
        "{me} reaches itself through the Service in 30 tries:\n{pages}"
    );

    // DNS: headless → one A record per ready pod; SRV for the named port; ExternalName
    // as a CNAME chased through the upstream; other names forwarded upstream.
    let pod_ips: BTreeSet<String> = all.iter().map(|b| b.1.clone()).collect();
    let out = in_client(&c, &format!("nslookup web-headless.{NS}.svc.cluster.local"));
    assert_eq!(
        nslookup_addresses(&out),
        pod_ips,
        "headless A records:\n{out}"
    );
    let out = in_client(
        &c,
        &format!("nslookup -type=SRV _http._tcp.web.{NS}.svc.cluster.local"),
    );
    assert!(
        out.contains(&format!("80 web.{NS}.svc.cluster.local")),
        "SRV answer names port 80 and the Service:\n{out}"
    );
    let out = in_client(&c, &format!("nslookup ext.{NS}.svc.cluster.local"));
    assert!(
        out.contains("outside.example.test") && out.contains(&UPSTREAM_ANSWER.to_string()),
        "ExternalName gives a CNAME to outside.example.test, resolved upstream:\n{out}"
    );
    let out = in_client(&c, "nslookup www.elsewhere.test");
    assert!(
        nslookup_addresses(&out).contains(&UPSTREAM_ANSWER.to_string()),
        "a name outside the cluster is forwarded:\n{out}"
    );
    assert!(upstream.asked("www.elsewhere.test"));

    // From outside the nodes (the host): the node port on either node, and the
    // load-balancer addresses (every node's) on the Service's own port.
    let svc = c.get_json(&["-n", NS, "get", "service", "web"]);
    let node_port = svc["spec"]["ports"][0]["nodePort"]
        .as_i64()
        .expect("a node port");
    for i in 0..2 {
        let url = format!("http://{}:{node_port}/", c.node_ip(i));
        let page = curl(&url);
        assert!(
            page.as_ref().is_some_and(|p| names.contains(p)),
            "{url} answers with a backend's name: {page:?}"
        );
    }
    let mut ingress = BTreeSet::new();
    eventually(
        T,
        "the LoadBalancer Service gets both nodes' addresses",
        || {
            let svc = c.get_json(&["-n", NS, "get", "service", "web"]);
            ingress = svc["status"]["loadBalancer"]["ingress"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| i["ip"].as_str().map(str::to_string))
                .collect();
            ingress.len() == 2
        },
    );
    let node_ips: BTreeSet<String> = (0..2).map(|i| c.node_ip(i).to_string()).collect();
    assert_eq!(ingress, node_ips);
    for ip in &ingress {
        let page = curl(&format!("http://{ip}/"));
        assert!(
            page.as_ref().is_some_and(|p| names.contains(p)),
            "the load-balancer address {ip}:80 answers: {page:?}"
        );
    }

    // A backend failing readiness stops getting traffic within 2 s. The client requests
    // without pause for 7 s, stamping each answer with /proc/uptime (one clock for every
    // pod); 2 s in, the victim's readiness file goes. The last answer from the victim
    // bounds how long it kept getting traffic.
    let victim = all[0].0.clone();
    let script = "end=$(( $(cut -d. -f1 /proc/uptime) + 7 )); \
                  while [ $(cut -d. -f1 /proc/uptime) -lt $end ]; do \
                    echo \"$(wget -q -O - http://web/) $(cut -d' ' -f1 /proc/uptime)\"; \
                  done";
    let answers = std::thread::scope(|scope| {
        let client = scope.spawn(|| in_client(&c, script));
        std::thread::sleep(Duration::from_secs(2));
        let removed = uptime(&c.ok(&[
            "-n",
            NS,
            "exec",
            &victim,
            "--",
            "sh",
            "-c",
            "rm /tmp/ready && cat /proc/uptime",
        ]));
        (removed, client.join().expect("client loop"))
    });
    let (removed, log) = answers;
    let stamped: Vec<(String, f64)> = log
        .lines()
        .filter_map(|l| {
            let (page, t) = l.trim().rsplit_once(' ')?;
            Some((page.to_string(), t.parse().ok()?))
        })
        .collect();
    let last_hit = stamped
        .iter()
        .filter(|(page, _)| *page == victim)
        .map(|(_, t)| *t)
        .fold(f64::MIN, f64::max);
    assert!(
        last_hit > f64::MIN,
        "the victim answered before it turned unready:\n{log}"
    );
    let elapsed = (last_hit - removed).max(0.0);
    println!("unready backend got traffic for {elapsed:.2} s after its readiness failed");
    assert!(
        elapsed <= 2.0,
        "the unready backend kept getting traffic for {elapsed:.2} s (limit 2 s):\n{log}"
    );
    assert!(
        stamped.iter().any(|(_, t)| *t > removed + 2.5),
        "the client kept asking after the victim dropped out:\n{log}"
    );
    let pages = fetch_many(&c, "http://web/", 30);
    assert!(
        !pages.contains(&victim) && pages.len() == 30,
        "no request reaches the unready backend: {pages:?}"
    );

    // Scaling to 1 leaves 1.
    c.ok(&["-n", NS, "scale", "deployment/web", "--replicas=1"]);
    eventually(T, "only one backend answers after scaling to 1", || {
        let left = backends(&c);
        let pages: BTreeSet<String> = fetch_many(&c, "http://web/", 20).into_iter().collect();
        left.len() == 1 && pages.len() == 1 && pages.contains(&left[0].0)
    });

    // No longer a LoadBalancer: the addresses leave its status and stop forwarding.
    c.ok(&[
        "-n",
        NS,
        "patch",
        "service",
        "web",
        "-p",
        r#"{"spec":{"type":"NodePort"}}"#,
    ]);
    eventually(T, "the load-balancer status is cleared", || {
        let svc = c.get_json(&["-n", NS, "get", "service", "web"]);
        svc["status"]["loadBalancer"]["ingress"].is_null()
    });
    for ip in &ingress {
        eventually(T, "the load-balancer port stops answering", || {
            curl(&format!("http://{ip}/")).is_none()
        });
    }
    drop(upstream);
}
