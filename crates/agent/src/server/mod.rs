//! The agent's HTTPS server, shaped like the kubelet's: the API server reaches it for
//! container logs, exec, attach and port-forward.
//!
//! - `GET /containerLogs/{ns}/{pod}/{container}?follow&previous&tailLines&sinceSeconds&
//!   sinceTime&timestamps&limitBytes`: the CRI log file, streamed (see [`logs`]).
//! - `GET|POST /exec/{ns}/{pod}/{container}?command=..&stdin&stdout&stderr&tty`,
//!   `/attach/{ns}/{pod}/{container}?..`, `/portForward/{ns}/{pod}`: asks the runtime for
//!   a streaming URL and relays the client's upgrade (SPDY or WebSocket) to it, as the
//!   kubelet does (see [`stream`]).
//!
//! Client certificates are required and must chain to the cluster CA; only the API
//! server's kubelet-client identity (or `system:masters`) is let in, everyone else gets 403.

mod logfile;
mod logs;
mod lookup;
mod stream;
mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub use logfile::LogOptions;
pub use tls::{Peer, APISERVER_KUBELET_CLIENT};

/// What the server needs.
#[derive(Clone)]
pub struct ServerConfig {
    /// The cluster CA (PEM) that client certificates must chain to.
    pub ca_pem: String,
    /// The container runtime.
    pub cri: skiff_cri::Cri,
    /// Names and addresses for the self-signed serving certificate (the node's name and
    /// addresses).
    pub serving_names: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("agent server TLS: {0}")]
    Tls(String),
}

pub type Body = BoxBody<Bytes, std::io::Error>;

/// An error answer: status code and a plain-text message, as the kubelet answers; the API
/// server turns it into a `Status` for its client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: StatusCode,
    pub message: String,
}

impl Failure {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            code: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            code: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            code: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
        }
    }
    fn into_response(self) -> Response<Body> {
        text(self.code, self.message)
    }
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

fn text(code: StatusCode, message: String) -> Response<Body> {
    let mut resp = Response::new(full(message));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Serves on `listener` until the task is dropped or aborted.
pub async fn serve(listener: TcpListener, config: ServerConfig) -> Result<(), ServeError> {
    // rustls needs one process-wide crypto provider; a second install is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut names = config.serving_names.clone();
    if names.is_empty() {
        names.push("localhost".into());
    }
    let tls = tls::server_config(&config.ca_pem, &names)?;
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let config = Arc::new(config);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(err) => {
                tracing::warn!(%err, "agent server: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(connection(acceptor.clone(), tcp, peer, config.clone()));
    }
}

async fn connection(
    acceptor: TlsAcceptor,
    tcp: tokio::net::TcpStream,
    addr: SocketAddr,
    config: Arc<ServerConfig>,
) {
    let handshake =
        tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp)).await;
    let tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err(err)) => {
            tracing::debug!(%addr, %err, "agent server: TLS handshake failed");
            return;
        }
        Err(_) => return,
    };
    let peer = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|leaf| Peer::from_cert(leaf.as_ref()));
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let config = config.clone();
        let peer = peer.clone();
        async move { Ok::<_, Infallible>(handle(config, peer, req).await) }
    });
    let builder = hyper::server::conn::http1::Builder::new();
    if let Err(err) = builder
        .serve_connection(TokioIo::new(tls), service)
        .with_upgrades()
        .await
    {
        tracing::debug!(%addr, %err, "agent server: connection ended with an error");
    }
}

/// The request path split into segments, each percent-decoded.
fn segments(path: &str) -> Vec<String> {
    path.trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect()
}

async fn handle(
    config: Arc<ServerConfig>,
    peer: Option<Peer>,
    req: Request<Incoming>,
) -> Response<Body> {
    let segs = segments(req.uri().path());
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    match &peer {
        Some(p) if p.allowed() => {}
        Some(p) => {
            // The kubelet's wording when its authorizer says no.
            let message = format!(
                "Forbidden (user={}, verb={}, resource=nodes, subresource=proxy)",
                p.user,
                req.method().as_str().to_ascii_lowercase()
            );
            return text(StatusCode::FORBIDDEN, message);
        }
        None => return text(StatusCode::UNAUTHORIZED, "Unauthorized".into()),
    }
    if segs == ["healthz"] {
        return text(StatusCode::OK, "ok".into());
    }
    let result = match segs.as_slice() {
        ["containerLogs", ns, pod, container] if req.method() == http::Method::GET => {
            logs::serve(&config, ns, pod, container, req.uri().query().unwrap_or("")).await
        }
        ["exec", ns, pod, container] => {
            let target = stream::Target::exec(ns, pod, container);
            stream::serve(&config, target, req).await
        }
        ["attach", ns, pod, container] => {
            let target = stream::Target::attach(ns, pod, container);
            stream::serve(&config, target, req).await
        }
        ["portForward", ns, pod] => {
            let target = stream::Target::port_forward(ns, pod);
            stream::serve(&config, target, req).await
        }
        _ => Err(Failure::not_found("404 page not found")),
    };
    result.unwrap_or_else(Failure::into_response)
}
