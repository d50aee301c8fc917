//! The DNS server against a real API server: Services and EndpointSlices created through
//! the API are answered over real UDP and TCP sockets; other names go to an upstream
//! resolver (a tiny one in this test), whose answers are cached.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, PostParams};
use skiff_dns::{serve, InformerView, Settings};
use skiff_runtime::{CancellationToken, InformerFactory};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;

fn request(name: &str, qtype: RecordType) -> Message {
    let mut m = Message::new();
    m.set_id(4242)
        .set_message_type(MessageType::Query)
        .set_recursion_desired(true);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m
}

async fn udp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(&request(name, qtype).to_vec().unwrap(), server)
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut buf))
        .await
        .expect("an answer within 5 s")
        .unwrap();
    let m = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(m.id(), 4242);
    m
}

async fn tcp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let mut s = tokio::net::TcpStream::connect(server).await.unwrap();
    let bytes = request(name, qtype).to_vec().unwrap();
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    s.write_all(&framed).await.unwrap();
    let len = s.read_u16().await.unwrap() as usize;
    let mut buf = vec![0u8; len];
    s.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
}

fn data(m: &Message) -> Vec<String> {
    let mut v: Vec<String> = m.answers().iter().map(|r| r.data().to_string()).collect();
    v.sort();
    v
}

/// An upstream resolver that knows one name and counts the questions it gets.
async fn fake_upstream(asked: Arc<AtomicUsize>) -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                return;
            };
            asked.fetch_add(1, Ordering::SeqCst);
            let req = Message::from_vec(&buf[..n]).unwrap();
            let q = req.queries()[0].clone();
            let mut resp = Message::new();
            resp.set_id(req.id())
                .set_message_type(MessageType::Response);
            resp.add_query(q.clone());
            if q.name().to_ascii() != "nothing.test." && q.query_type() == RecordType::A {
                resp.add_answer(Record::from_rdata(
                    q.name().clone(),
                    60,
                    RData::A(A([192, 0, 2, 7].into())),
                ));
            } else {
                resp.set_response_code(ResponseCode::NXDomain);
            }
            let _ = sock.send_to(&resp.to_vec().unwrap(), peer).await;
        }
    });
    addr
}

fn json<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_names_from_the_api_and_the_rest_forwarded() {
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
            "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}], "selector": {"app": "web"}}
        })))
        .await
        .unwrap();
    let web_ip = web.spec.unwrap().cluster_ip.unwrap();
    services
        .create(&pp, &json(serde_json::json!({
            "metadata": {"name": "db"},
            "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}], "selector": {"app": "db"}}
        })))
        .await
        .unwrap();
    services
        .create(
            &pp,
            &json(serde_json::json!({
                "metadata": {"name": "ext"},
                "spec": {"type": "ExternalName", "externalName": "example.test"}
            })),
        )
        .await
        .unwrap();
    slices
        .create(
            &pp,
            &json(serde_json::json!({
                "metadata": {"name": "db-abc", "labels": {"kubernetes.io/service-name": "db"}},
                "addressType": "IPv4",
                "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
                "endpoints": [
                    {"addresses": ["10.42.0.5"], "hostname": "db-0", "conditions": {"ready": true}},
                    {"addresses": ["10.42.1.6"], "conditions": {"ready": true}},
                    {"addresses": ["10.42.1.9"], "conditions": {"ready": false}}
                ]
            })),
        )
        .await
        .unwrap();

    let asked = Arc::new(AtomicUsize::new(0));
    let upstream = fake_upstream(asked.clone()).await;
    let factory = InformerFactory::new(client.clone());
    let view = InformerView::new(&factory);
    let shutdown = CancellationToken::new();
    factory.start(shutdown.clone());
    view.wait_synced().await;
    let addrs = serve(
        Settings {
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            domain: "cluster.local".into(),
            upstreams: vec![upstream],
        },
        Arc::new(view),
        shutdown.clone(),
    )
    .await
    .unwrap();
    let dns = addrs[0];

    let a = udp(dns, "web.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(a.response_code(), ResponseCode::NoError);
    assert!(a.authoritative());
    assert_eq!(data(&a), [web_ip.as_str()]);
    assert_eq!(
        data(&tcp(dns, "web.default.svc.cluster.local.", RecordType::A).await),
        [web_ip.as_str()]
    );
    // Headless: the ready endpoints only; one by hostname.
    assert_eq!(
        data(&udp(dns, "db.default.svc.cluster.local.", RecordType::A).await),
        ["10.42.0.5", "10.42.1.6"]
    );
    assert_eq!(
        data(&udp(dns, "db-0.db.default.svc.cluster.local.", RecordType::A).await),
        ["10.42.0.5"]
    );
    assert_eq!(
        data(
            &udp(
                dns,
                "_pg._tcp.db.default.svc.cluster.local.",
                RecordType::SRV
            )
            .await
        ),
        [
            "0 50 5432 10-42-1-6.db.default.svc.cluster.local.",
            "0 50 5432 db-0.db.default.svc.cluster.local."
        ]
    );
    assert_eq!(
        data(
            &udp(
                dns,
                "_http._tcp.web.default.svc.cluster.local.",
                RecordType::SRV
            )
            .await
        ),
        ["0 100 80 web.default.svc.cluster.local."]
    );
    let octets: Vec<&str> = web_ip.split('.').rev().collect();
    let ptr = udp(
        dns,
        &format!("{}.in-addr.arpa.", octets.join(".")),
        RecordType::PTR,
    )
    .await;
    assert_eq!(data(&ptr), ["web.default.svc.cluster.local."]);
    let nx = udp(dns, "missing.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(nx.response_code(), ResponseCode::NXDomain);
    assert_eq!(nx.name_servers()[0].record_type(), RecordType::SOA);
    // ExternalName: the CNAME, chased through the upstream.
    let ext = udp(dns, "ext.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(data(&ext), ["192.0.2.7", "example.test."]);
    // Other names: forwarded, then answered from the cache.
    let before = asked.load(Ordering::SeqCst);
    assert_eq!(
        data(&udp(dns, "cached.test.", RecordType::A).await),
        ["192.0.2.7"]
    );
    assert_eq!(
        data(&udp(dns, "cached.test.", RecordType::A).await),
        ["192.0.2.7"]
    );
    assert_eq!(
        asked.load(Ordering::SeqCst),
        before + 1,
        "the second answer came from the cache"
    );
    let unknown = udp(dns, "nothing.test.", RecordType::A).await;
    assert_eq!(unknown.response_code(), ResponseCode::NXDomain);

    // Changes through the API show in answers within a second or two.
    services.delete("web", &Default::default()).await.unwrap();
    let mut gone = false;
    for _ in 0..40 {
        let r = udp(dns, "web.default.svc.cluster.local.", RecordType::A).await;
        if r.response_code() == ResponseCode::NXDomain {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "a deleted Service stops resolving");
    shutdown.cancel();
}
