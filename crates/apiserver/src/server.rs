//! The HTTPS listener. TLS asks for a client certificate but does not require one (bearer
//! tokens are the other way in); a verified certificate's identity travels with every
//! request on that connection. HTTP/1.1 and HTTP/2 (ALPN), with upgrades for streaming.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::CertificateDer;
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::auth::{identity_from_cert, UserInfo};
use crate::pki::Pki;
use crate::ServerError;

/// The identity a connection's client certificate proved, if any.
#[derive(Clone, Default)]
pub struct ConnIdentity(pub Option<UserInfo>);

fn certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, ServerError> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServerError::Tls(format!("reading certificates: {e}")))
}

pub fn tls_config(pki: &Pki) -> Result<rustls::ServerConfig, ServerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in certs(&pki.ca_cert_pem)? {
        roots
            .add(ca)
            .map_err(|e| ServerError::Tls(format!("cluster CA: {e}")))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| ServerError::Tls(format!("client verifier: {e}")))?;
    let key = rustls_pemfile::private_key(&mut pki.serving_key_pem.as_bytes())
        .map_err(|e| ServerError::Tls(format!("serving key: {e}")))?
        .ok_or_else(|| ServerError::Tls("serving key file holds no key".into()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(&pki.serving_cert_pem)?, key)
        .map_err(|e| ServerError::Tls(format!("serving certificate: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Accepts connections forever, serving each with `router`.
pub async fn serve(listener: TcpListener, tls: rustls::ServerConfig, router: axum::Router) {
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(err) => {
                tracing::warn!(%err, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move { connection(acceptor, tcp, peer, router).await });
    }
}

async fn connection(
    acceptor: TlsAcceptor,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    router: axum::Router,
) {
    let tls = match tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp))
        .await
    {
        Ok(Ok(tls)) => tls,
        Ok(Err(err)) => {
            tracing::debug!(%peer, %err, "TLS handshake failed");
            return;
        }
        Err(_) => return,
    };
    let identity = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|leaf| identity_from_cert(leaf.as_ref()));
    let conn_identity = ConnIdentity(identity);
    let service =
        hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(conn_identity.clone());
            req.extensions_mut().insert(crate::audit::PeerAddr(peer));
            let router = router.clone();
            async move {
                use tower::ServiceExt;
                router.oneshot(req.map(axum::body::Body::new)).await
            }
        });
    let builder = auto::Builder::new(TokioExecutor::new());
    if let Err(err) = builder
        .serve_connection_with_upgrades(TokioIo::new(tls), service)
        .await
    {
        tracing::debug!(%peer, %err, "connection ended with an error");
    }
}
