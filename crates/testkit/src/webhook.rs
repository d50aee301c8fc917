//! A real HTTPS admission webhook server for tests and benchmarks: its own CA and
//! serving certificate (rcgen), AdmissionReview v1 in and out, on a loopback port, run
//! on its own thread so synchronous tests can use it.
//!
//! What it answers, by path:
//! - `/add-label/<key>/<value>`: allows, with a JSON patch adding the label;
//! - `/deny-label/<key>/<value>`: denies (403) objects carrying the label, allows others;
//! - `/slow/<millis>`: allows after sleeping that long;
//! - `/allow`: allows.
//!
//! Every review received is kept (path and request), for assertions.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

/// A running webhook server; stopped when dropped.
pub struct WebhookServer {
    pub addr: SocketAddr,
    /// The CA certificate, PEM.
    pub ca_pem: String,
    received: Arc<Mutex<Vec<(String, Value)>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WebhookServer {
    /// Starts a server whose certificate names `dns_names` and 127.0.0.1.
    pub fn start(dns_names: &[&str]) -> Self {
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca_params = rcgen::CertificateParams::default();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "skiff test webhook CA");
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let mut names: Vec<String> = dns_names.iter().map(|s| s.to_string()).collect();
        names.push("127.0.0.1".into());
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(names).expect("names");
        let cert = params.signed_by(&key, &issuer).expect("cert");

        let certs = vec![cert.der().clone()];
        let key_der =
            rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key der");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(certs, key_der)
            .expect("TLS config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));

        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let seen = received.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                loop {
                    let (tcp, _) = tokio::select! {
                        _ = &mut stopped => return,
                        accepted = listener.accept() => match accepted {
                            Ok(a) => a,
                            Err(_) => continue,
                        },
                    };
                    let _ = tcp.set_nodelay(true);
                    let acceptor = acceptor.clone();
                    let seen = seen.clone();
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let service = hyper::service::service_fn(move |req| {
                            let seen = seen.clone();
                            async move { Ok::<_, Infallible>(handle(req, seen).await) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tls), service)
                            .await;
                    });
                }
            });
        });
        WebhookServer {
            addr,
            ca_pem: ca_cert.pem(),
            received,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The CA as a webhook's `caBundle` wants it (base64 of the PEM).
    pub fn ca_bundle(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.ca_pem)
    }

    /// `https://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.addr.port())
    }

    /// Reviews received so far on paths starting with `prefix`: (path, request).
    pub fn received(&self, prefix: &str) -> Vec<(String, Value)> {
        self.received
            .lock()
            .map(|r| {
                r.iter()
                    .filter(|(p, _)| p.starts_with(prefix))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for WebhookServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// JSON pointer escaping of one path segment.
fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

fn labels(obj: &Value) -> Option<&serde_json::Map<String, Value>> {
    obj.pointer("/metadata/labels").and_then(Value::as_object)
}

async fn handle(
    req: http::Request<hyper::body::Incoming>,
    seen: Arc<Mutex<Vec<(String, Value)>>>,
) -> http::Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let review: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let request = review.get("request").cloned().unwrap_or(Value::Null);
    if let Ok(mut s) = seen.lock() {
        s.push((path.clone(), request.clone()));
    }
    let uid = request.get("uid").cloned().unwrap_or(json!(""));
    let obj = request.get("object").cloned().unwrap_or(Value::Null);
    let old = request.get("oldObject").cloned().unwrap_or(Value::Null);
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut response = json!({"uid": uid, "allowed": true});
    match parts.as_slice() {
        ["add-label", key, value] => {
            let patch = if labels(&obj).is_some() {
                json!([{"op": "add", "path": format!("/metadata/labels/{}", escape(key)), "value": value}])
            } else {
                json!([{"op": "add", "path": "/metadata/labels", "value": {*key: value}}])
            };
            response["patchType"] = json!("JSONPatch");
            response["patch"] =
                json!(base64::engine::general_purpose::STANDARD.encode(patch.to_string()));
        }
        ["deny-label", key, value] => {
            let has = |o: &Value| {
                labels(o).and_then(|l| l.get(*key)).and_then(Value::as_str) == Some(*value)
            };
            if has(&obj) || has(&old) {
                response["allowed"] = json!(false);
                response["status"] = json!({"code": 403, "reason": "Forbidden",
                    "message": format!("objects labelled {key}={value} are not allowed here")});
            } else {
                response["warnings"] = json!([format!("checked by deny-label {key}={value}")]);
            }
        }
        ["slow", millis] => {
            let ms = millis.parse().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        _ => {}
    }
    let out = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response});
    http::Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(out.to_string())))
        .unwrap_or_default()
}
