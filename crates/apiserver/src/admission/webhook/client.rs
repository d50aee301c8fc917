//! Calling a webhook over HTTPS: where it is (a URL, or a Service resolved to one of its
//! ready EndpointSlice endpoints, as upstream's endpoint-routing option does — a Service
//! IP needs the proxy, which a bare API server machine may not run), TLS verified
//! against the webhook's `caBundle` with the name `<service>.<namespace>.svc` (or the
//! URL's host), and HTTP/1.1 connections kept for reuse.
//!
//! TLS client settings are built once per caBundle; connections are pooled per address,
//! server name and caBundle. Timeouts are the caller's (the webhook's timeoutSeconds).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, Mutex};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::App;

/// Largest response body read from a webhook.
const MAX_RESPONSE: usize = 3 * 1024 * 1024;
/// Idle connections kept per destination.
const IDLE_PER_KEY: usize = 16;

/// Where to send one webhook's requests.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    /// The name the serving certificate must carry (also the SNI).
    pub server_name: String,
    /// Path (with its leading `/`), before the `?timeout=` query.
    pub path: String,
    /// The URL as error messages show it.
    pub display: String,
}

fn service_port(service: &Value, port: i64) -> Option<(String, Value)> {
    service
        .pointer("/spec/ports")
        .and_then(Value::as_array)?
        .iter()
        .find(|p| p.get("port").and_then(Value::as_i64) == Some(port))
        .map(|p| {
            (
                p.get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                p.get("targetPort").cloned().unwrap_or(Value::Null),
            )
        })
}

/// A ready endpoint address and port of the Service's EndpointSlices for its port named
/// `port_name`.
fn endpoint(slices: &[Value], port_name: &str) -> Option<SocketAddr> {
    for slice in slices {
        let port = slice
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|p| p.get("name").and_then(Value::as_str).unwrap_or("") == port_name)
            .and_then(|p| p.get("port").and_then(Value::as_u64))
            .and_then(|p| u16::try_from(p).ok());
        let Some(port) = port else { continue };
        for ep in slice
            .get("endpoints")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if ep.pointer("/conditions/ready").and_then(Value::as_bool) == Some(false) {
                continue;
            }
            let ip = ep
                .get("addresses")
                .and_then(Value::as_array)
                .and_then(|a| a.first())
                .and_then(Value::as_str)
                .and_then(|a| a.parse::<std::net::IpAddr>().ok());
            if let Some(ip) = ip {
                return Some(SocketAddr::new(ip, port));
            }
        }
    }
    None
}

/// Resolves a webhook's `clientConfig` to a target.
pub async fn resolve(app: &App, client_config: &Value) -> Result<Target, String> {
    if let Some(url) = client_config.get("url").and_then(Value::as_str) {
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| format!("webhook URL {url:?} is not https"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].to_string()),
            None => (rest, "/".to_string()),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("bad port in {url:?}"))?,
            ),
            _ => (authority, 443),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addr = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("Post {url:?}: dial tcp: lookup {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("Post {url:?}: dial tcp: lookup {host}: no such host"))?;
        return Ok(Target {
            addr,
            server_name: host.to_string(),
            path,
            display: url.to_string(),
        });
    }
    let svc = client_config
        .get("service")
        .ok_or("the webhook has neither url nor service")?;
    let ns = svc.get("namespace").and_then(Value::as_str).unwrap_or("");
    let name = svc.get("name").and_then(Value::as_str).unwrap_or("");
    let port = svc.get("port").and_then(Value::as_i64).unwrap_or(443);
    let path = svc
        .get("path")
        .and_then(Value::as_str)
        .unwrap_or("/")
        .to_string();
    let server_name = format!("{name}.{ns}.svc");
    let display = format!("https://{server_name}:{port}{path}");
    let service = crate::admission::cached(app, ("", "v1", "services"), Some(ns), name)
        .ok_or_else(|| format!("service \"{ns}/{name}\" not found"))?;
    let (port_name, _) = service_port(&service, port)
        .ok_or_else(|| format!("service \"{ns}/{name}\" has no port {port}"))?;
    let slices: Vec<Value> =
        crate::admission::cached_list(app, ("discovery.k8s.io", "v1", "endpointslices"), Some(ns))
            .into_iter()
            .filter(|s| {
                s.pointer("/metadata/labels/kubernetes.io~1service-name")
                    .and_then(Value::as_str)
                    == Some(name)
            })
            .collect();
    let addr = endpoint(&slices, &port_name)
        .ok_or_else(|| format!("no endpoints available for service \"{name}\""))?;
    Ok(Target {
        addr,
        server_name,
        path,
        display,
    })
}

/// TLS client settings per caBundle (base64 PEM as in the object).
static TLS: LazyLock<Mutex<HashMap<String, Arc<rustls::ClientConfig>>>> =
    LazyLock::new(Default::default);

type PoolKey = (SocketAddr, String, String);
type Conn = SendRequest<Full<Bytes>>;
static POOL: LazyLock<Mutex<HashMap<PoolKey, Vec<Conn>>>> = LazyLock::new(Default::default);

fn tls_config(ca_bundle: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    if let Some(c) = TLS.lock().ok().and_then(|m| m.get(ca_bundle).cloned()) {
        return Ok(c);
    }
    let pem = base64::engine::general_purpose::STANDARD
        .decode(ca_bundle.trim())
        .map_err(|e| format!("caBundle is not valid base64: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| format!("caBundle: {e}"))?;
        roots.add(cert).map_err(|e| format!("caBundle: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let config = Arc::new(config);
    if let Ok(mut m) = TLS.lock() {
        // Bundles change rarely; a bound keeps a churning cluster from growing this.
        if m.len() > 256 {
            m.clear();
        }
        m.insert(ca_bundle.to_string(), config.clone());
    }
    Ok(config)
}

async fn connect(target: &Target, ca_bundle: &str) -> Result<SendRequest<Full<Bytes>>, String> {
    let config = tls_config(ca_bundle)?;
    let name = rustls::pki_types::ServerName::try_from(target.server_name.clone())
        .map_err(|e| format!("bad server name {:?}: {e}", target.server_name))?;
    let tcp = tokio::net::TcpStream::connect(target.addr)
        .await
        .map_err(|e| format!("dial tcp {}: connect: {e}", target.addr))?;
    let _ = tcp.set_nodelay(true);
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("tls: {e}"))?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

fn take_idle(key: &PoolKey) -> Option<SendRequest<Full<Bytes>>> {
    let mut pool = POOL.lock().ok()?;
    let list = pool.get_mut(key)?;
    while let Some(conn) = list.pop() {
        if !conn.is_closed() {
            return Some(conn);
        }
    }
    None
}

fn put_idle(key: PoolKey, conn: SendRequest<Full<Bytes>>) {
    if let Ok(mut pool) = POOL.lock() {
        let list = pool.entry(key).or_default();
        if list.len() < IDLE_PER_KEY {
            list.push(conn);
        }
    }
}

/// POSTs `body` to the target and returns the response body. Errors read as upstream's
/// (`Post "URL": ...`).
pub async fn post(
    target: &Target,
    ca_bundle: &str,
    timeout_secs: u64,
    body: Bytes,
) -> Result<Vec<u8>, String> {
    let query = format!("timeout={timeout_secs}s");
    let uri = format!("{}?{query}", target.path);
    let shown = format!("Post \"{}?{query}\"", target.display);
    let key = (
        target.addr,
        target.server_name.clone(),
        ca_bundle.to_string(),
    );
    // A pooled connection the webhook closed meanwhile fails at once: retry that case
    // on a fresh connection.
    let mut pooled = take_idle(&key);
    let (resp, conn) = loop {
        let reused = pooled.is_some();
        let mut conn = match pooled.take() {
            Some(c) => c,
            None => connect(target, ca_bundle)
                .await
                .map_err(|e| format!("{shown}: {e}"))?,
        };
        let request = http::Request::post(uri.as_str())
            .header(http::header::HOST, target.server_name.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json")
            .body(Full::new(body.clone()))
            .map_err(|e| format!("{shown}: {e}"))?;
        let sent = match conn.ready().await {
            Ok(()) => conn.send_request(request).await,
            Err(e) => Err(e),
        };
        match sent {
            Ok(resp) => break (resp, conn),
            Err(e) if reused && (e.is_canceled() || e.is_closed() || e.is_incomplete_message()) => {
                continue
            }
            Err(e) => return Err(format!("{shown}: {e}")),
        }
    };
    let status = resp.status();
    let limited = http_body_util::Limited::new(resp.into_body(), MAX_RESPONSE);
    let bytes = limited
        .collect()
        .await
        .map_err(|e| format!("{shown}: reading the response: {e}"))?
        .to_bytes();
    put_idle(key, conn);
    if !status.is_success() {
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(256)]).into_owned();
        return Err(format!(
            "an error on the server ({text:?}) has prevented the request from succeeding (status {})",
            status.as_u16()
        ));
    }
    Ok(bytes.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn endpoint_routing_picks_a_ready_address_on_the_named_port() {
        let slices = vec![json!({
            "ports": [{"name": "https", "port": 8443}, {"name": "metrics", "port": 9000}],
            "endpoints": [
                {"addresses": ["10.0.0.1"], "conditions": {"ready": false}},
                {"addresses": ["10.0.0.2"], "conditions": {"ready": true}}]})];
        assert_eq!(
            endpoint(&slices, "https"),
            Some("10.0.0.2:8443".parse().unwrap())
        );
        assert_eq!(endpoint(&slices, "other"), None);
        let svc = json!({"spec": {"ports": [{"name": "https", "port": 443, "targetPort": 8443}]}});
        assert_eq!(service_port(&svc, 443).unwrap().0, "https");
        assert!(service_port(&svc, 80).is_none());
    }
}
