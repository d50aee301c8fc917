//! The CNI network skiff-cri's conflist describes, end to end: the node reaches a pod's IP,
//! pods reach each other over the bridge, and a `hostPort` is published by portmap.

mod support;

use std::time::Duration;

use skiff_cri::api::{ExecSyncRequest, PortMapping, Protocol};
use support::{eventually, pod_ip, remove_pod, run_pod, Node, PodSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SERVE: &[&str] = &[
    "sh",
    "-c",
    "mkdir -p /tmp/www && echo hello-from-pod > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www",
];

/// One HTTP/1.0 GET with a plain socket; the response body, or None while not served.
async fn http_get(addr: &str) -> Option<String> {
    let mut s = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")
        .await
        .ok()?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(2), s.read_to_string(&mut out))
        .await
        .ok()?
        .ok()?;
    out.split("\r\n\r\n").nth(1).map(str::to_string)
}

#[tokio::test(flavor = "multi_thread")]
async fn node_and_pods_reach_a_pod_and_its_host_port() {
    let node = Node::new();
    let containerd = node.start().await;
    let cri = containerd.cri().clone();

    let host_port = skiff_testkit::free_port();
    let mut server = PodSpec::new("server");
    server.port_mappings = vec![PortMapping {
        protocol: Protocol::Tcp as i32,
        container_port: 8080,
        host_port: host_port as i32,
        host_ip: String::new(),
    }];
    let (server_sandbox, _) = run_pod(&cri, &node, &server, SERVE).await;
    let ip = pod_ip(&cri, &server_sandbox).await;

    // The node itself, over the bridge.
    let body = eventually(Duration::from_secs(10), "httpd on the pod IP", || {
        let addr = format!("{ip}:8080");
        async move { http_get(&addr).await }
    })
    .await;
    assert_eq!(body.trim(), "hello-from-pod");

    // Another pod, through the bridge.
    let client = PodSpec::new("client");
    let (client_sandbox, client_container) =
        run_pod(&cri, &node, &client, &["sleep", "3600"]).await;
    let r = cri
        .runtime
        .clone()
        .exec_sync(ExecSyncRequest {
            container_id: client_container,
            cmd: vec![
                "wget".into(),
                "-qO-".into(),
                format!("http://{ip}:8080/index.html"),
            ],
            timeout: 10,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.exit_code, String::from_utf8_lossy(&r.stdout).trim()),
        (0, "hello-from-pod"),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );

    // The hostPort, on the node's own address on the bridge (the pods' gateway).
    let gateway = format!("{}1", node.net.subnet.trim_end_matches("0/24"));
    let body = eventually(Duration::from_secs(10), "the host port", || {
        let addr = format!("{gateway}:{host_port}");
        async move { http_get(&addr).await }
    })
    .await;
    assert_eq!(body.trim(), "hello-from-pod");

    remove_pod(&cri, &client_sandbox).await;
    remove_pod(&cri, &server_sandbox).await;
    // portmap removed its rule with the sandbox.
    assert_eq!(http_get(&format!("{gateway}:{host_port}")).await, None);
}
