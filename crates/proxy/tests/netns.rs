//! The proxy programming a real kernel: a "node" network namespace with a bridge and two
//! backend namespaces serving HTTP (busybox httpd), Services and EndpointSlices from a
//! real API server, requests made with curl from the node and from a backend.
//! Needs root, nftables, iproute2, curl and busybox-static (installed by .ci/run).

use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams, PostParams};
use skiff_proxy::{run, Nft, Settings};
use skiff_runtime::CancellationToken;

struct Netns {
    prefix: String,
    servers: Vec<std::process::Child>,
    _dirs: Vec<tempfile::TempDir>,
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    fn name(&self, n: &str) -> String {
        format!("{}-{n}", self.prefix)
    }

    fn exec(&self, ns: &str, args: &[&str]) {
        let ns = self.name(ns);
        let mut full = vec!["ip", "netns", "exec", ns.as_str()];
        full.extend_from_slice(args);
        sh(&full);
    }

    /// node: bridge 10.244.7.1/24 plus a "host" address 10.99.0.1; b1, b2 at .11, .12.
    fn setup() -> Self {
        let prefix = format!("skp{}", std::process::id() % 100000);
        let mut me = Netns {
            prefix,
            servers: Vec::new(),
            _dirs: Vec::new(),
        };
        for n in ["node", "b1", "b2"] {
            sh(&["ip", "netns", "add", &me.name(n)]);
            me.exec(n, &["ip", "link", "set", "lo", "up"]);
        }
        me.exec("node", &["ip", "link", "add", "br0", "type", "bridge"]);
        me.exec(
            "node",
            &["ip", "addr", "add", "10.244.7.1/24", "dev", "br0"],
        );
        me.exec("node", &["ip", "link", "set", "br0", "up"]);
        me.exec("node", &["ip", "addr", "add", "10.99.0.1/32", "dev", "lo"]);
        // A default route, as any real host has: a locally sent packet to a cluster IP
        // needs a route before the NAT hook rewrites it.
        me.exec(
            "node",
            &[
                "ip", "link", "add", "up0", "type", "veth", "peer", "name", "up1",
            ],
        );
        me.exec("node", &["ip", "addr", "add", "10.98.0.1/24", "dev", "up0"]);
        me.exec("node", &["ip", "link", "set", "up0", "up"]);
        me.exec("node", &["ip", "link", "set", "up1", "up"]);
        me.exec(
            "node",
            &["ip", "route", "add", "default", "via", "10.98.0.2"],
        );
        me.exec("node", &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        me.exec(
            "node",
            &["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"],
        );
        for (i, b) in ["b1", "b2"].iter().enumerate() {
            let veth = format!("v{}", i + 1);
            let target = me.name(b);
            me.exec(
                "node",
                &[
                    "ip", "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns",
                    &target,
                ],
            );
            me.exec("node", &["ip", "link", "set", &veth, "master", "br0", "up"]);
            me.exec(
                "node",
                &[
                    "ip",
                    "link",
                    "set",
                    &veth,
                    "type",
                    "bridge_slave",
                    "hairpin",
                    "on",
                ],
            );
            let addr = format!("10.244.7.1{}/24", i + 1);
            me.exec(b, &["ip", "addr", "add", &addr, "dev", "eth0"]);
            me.exec(b, &["ip", "link", "set", "eth0", "up"]);
            me.exec(b, &["ip", "route", "add", "default", "via", "10.244.7.1"]);
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("index.html"), format!("{b}\n")).unwrap();
            let child = Command::new("ip")
                .args([
                    "netns", "exec", &target, "busybox", "httpd", "-f", "-p", "8080", "-h",
                ])
                .arg(dir.path())
                .spawn()
                .expect("busybox httpd (package busybox-static)");
            me.servers.push(child);
            me._dirs.push(dir);
        }
        me
    }

    /// GET from namespace `ns`: the body, or the error curl printed.
    fn get(&self, ns: &str, url: &str) -> Result<String, String> {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.name(ns),
                "curl",
                "-sS",
                "-m",
                "3",
                url,
            ])
            .output()
            .unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for c in &mut self.servers {
            let _ = c.kill();
            let _ = c.wait();
        }
        for n in ["node", "b1", "b2"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.name(n)])
                .status();
        }
    }
}

fn json<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).unwrap()
}

fn slice(name: &str, svc: &str, ips: &[&str]) -> EndpointSlice {
    let endpoints: Vec<serde_json::Value> = ips
        .iter()
        .map(|ip| serde_json::json!({"addresses": [ip], "conditions": {"ready": true}, "nodeName": "node-a"}))
        .collect();
    json(serde_json::json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints,
    }))
}

fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what}: not within {timeout:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_ips_node_ports_affinity_and_no_endpoints_in_a_real_kernel() {
    let net = Netns::setup();
    let nft = Nft::in_netns(&net.name("node"));
    // A stale table from an earlier run, with something in it: the proxy replaces it.
    nft.apply("add table ip skiff\nadd chain ip skiff leftover\n")
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let running = skiff_apiserver::start_local(dir.path()).await.unwrap();
    let client = skiff_runtime::client::from_kubeconfig_file(&running.kubeconfig)
        .await
        .unwrap();
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();
    let web = services
        .create(&pp, &json(serde_json::json!({
            "metadata": {"name": "web"},
            "spec": {"type": "NodePort", "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
        })))
        .await
        .unwrap();
    let web_spec = web.spec.unwrap();
    let web_ip = web_spec.cluster_ip.unwrap();
    let node_port = web_spec.ports.unwrap()[0].node_port.unwrap();
    slices
        .create(&pp, &slice("web-1", "web", &["10.244.7.11", "10.244.7.12"]))
        .await
        .unwrap();
    let sticky = services
        .create(&pp, &json(serde_json::json!({
            "metadata": {"name": "sticky"},
            "spec": {"sessionAffinity": "ClientIP", "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
        })))
        .await
        .unwrap();
    let sticky_ip = sticky.spec.unwrap().cluster_ip.unwrap();
    slices
        .create(
            &pp,
            &slice("sticky-1", "sticky", &["10.244.7.11", "10.244.7.12"]),
        )
        .await
        .unwrap();
    let empty = services
        .create(
            &pp,
            &json(serde_json::json!({
                "metadata": {"name": "empty"},
                "spec": {"ports": [{"name": "http", "port": 80}]}
            })),
        )
        .await
        .unwrap();
    let empty_ip = empty.spec.unwrap().cluster_ip.unwrap();

    let shutdown = CancellationToken::new();
    let mut settings = Settings::new("node-a");
    settings.cluster_cidr = Some("10.244.0.0/16".into());
    settings.nft = nft.clone();
    let proxy = tokio::spawn(run(client.clone(), settings, shutdown.clone()));

    let url = format!("http://{web_ip}/");
    let net_ref = &net;
    tokio::time::sleep(Duration::from_millis(500)).await;
    if proxy.is_finished() {
        panic!("the proxy stopped: {:?}", proxy.await);
    }

    tokio::task::block_in_place(|| {
        eventually("the cluster IP answers", Duration::from_secs(10), || {
            net_ref.get("node", &url).is_ok()
        });
        // Both backends answer through the cluster IP, from the node and from a pod.
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..30 {
            seen.insert(net_ref.get("node", &url).unwrap());
        }
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["b1", "b2"]);
        let mut from_pod = std::collections::BTreeSet::new();
        for _ in 0..30 {
            // b1 sometimes reaches itself through the Service: hairpin.
            from_pod.insert(net_ref.get("b1", &url).expect("pod to cluster IP"));
        }
        assert_eq!(from_pod.into_iter().collect::<Vec<_>>(), ["b1", "b2"]);
        // The node port on the node's address.
        let np = format!("http://10.99.0.1:{node_port}/");
        assert!(net_ref.get("node", &np).is_ok(), "node port");
        // ClientIP affinity: one client keeps one backend.
        let sticky_url = format!("http://{sticky_ip}/");
        let first = net_ref.get("node", &sticky_url).unwrap();
        for _ in 0..10 {
            assert_eq!(net_ref.get("node", &sticky_url).unwrap(), first);
        }
        // No endpoints: refused at once, not a hang.
        let t = Instant::now();
        let err = net_ref
            .get("node", &format!("http://{empty_ip}/"))
            .unwrap_err();
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "rejected quickly: {err}"
        );
    });
    let table = nft.list_table("skiff").await.unwrap();
    assert!(!table.contains("leftover"), "stale chain removed:\n{table}");

    // An endpoint leaves: within a second only the other answers.
    slices
        .patch("web-1", &PatchParams::default(), &Patch::Merge(serde_json::json!({
            "endpoints": [{"addresses": ["10.244.7.11"], "conditions": {"ready": true}, "nodeName": "node-a"}]
        })))
        .await
        .unwrap();
    tokio::task::block_in_place(|| {
        let took = eventually("only b1 left", Duration::from_secs(5), || {
            (0..8).all(|_| net_ref.get("node", &url).as_deref() == Ok("b1"))
        });
        assert!(took < Duration::from_secs(3), "rules followed in {took:?}");
    });
    // The Service goes: its address stops being handled.
    services.delete("web", &Default::default()).await.unwrap();
    tokio::task::block_in_place(|| {
        eventually("web's rules removed", Duration::from_secs(5), || {
            let out = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &net_ref.name("node"),
                    "nft",
                    "list",
                    "map",
                    "ip",
                    "skiff",
                    "service-ips",
                ])
                .output()
                .unwrap();
            !String::from_utf8_lossy(&out.stdout).contains(&web_ip)
        });
    });
    shutdown.cancel();
    proxy.await.unwrap().unwrap();
}
