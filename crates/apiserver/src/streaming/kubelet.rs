//! The API server's connection to node agents (kubelets): HTTPS with the API server's own
//! kubelet-client certificate (CN `system:kube-apiserver-kubelet-client`, group
//! `system:masters`, issued from the cluster CA at start). As upstream without
//! `--kubelet-certificate-authority`, the agent's serving certificate is not verified:
//! agents make their own self-signed one.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::pki::Pki;
use crate::ServerError;

pub const CLIENT_CN: &str = "system:kube-apiserver-kubelet-client";

/// Accepts any serving certificate, but still checks the handshake signatures so the
/// connection is made with the key the certificate names.
#[derive(Debug)]
struct AnyServerCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Connections to node agents.
pub struct KubeletClient {
    tls: Arc<rustls::ClientConfig>,
}

/// Why the agent could not be reached.
#[derive(Debug, thiserror::Error)]
#[error("error dialing backend: {0}")]
pub struct DialError(pub String);

impl KubeletClient {
    /// Issues the client certificate from the cluster CA and builds the TLS settings.
    pub fn new(pki: &Pki) -> Result<Self, ServerError> {
        let (cert_pem, key_pem) = pki.issue_client(CLIENT_CN, &["system:masters"])?;
        let certs = rustls_pemfile::certs(&mut cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ServerError::Tls(format!("kubelet client certificate: {e}")))?;
        let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
            .map_err(|e| ServerError::Tls(format!("kubelet client key: {e}")))?
            .ok_or_else(|| ServerError::Tls("kubelet client key missing".into()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| ServerError::Tls(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider)))
            .with_client_auth_cert(certs, key)
            .map_err(|e| ServerError::Tls(format!("kubelet client certificate: {e}")))?;
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self { tls: Arc::new(tls) })
    }

    /// Sends `req` (path and headers; no body) to the agent at `host:port` on a new
    /// connection, which also carries any upgrade the answer grants.
    pub async fn send(
        &self,
        host: &str,
        port: u16,
        req: Request<Empty<Bytes>>,
    ) -> Result<Response<Incoming>, DialError> {
        let err = |e: &dyn std::fmt::Display| DialError(e.to_string());
        let tcp = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            tokio::net::TcpStream::connect((host, port)),
        )
        .await
        .map_err(|_| DialError(format!("dial tcp {host}:{port}: i/o timeout")))?
        .map_err(|e| DialError(format!("dial tcp {host}:{port}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(host.to_string()).map_err(|e| err(&e))?;
        let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
        let tls = connector.connect(name, tcp).await.map_err(|e| err(&e))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| err(&e))?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        sender.send_request(req).await.map_err(|e| err(&e))
    }
}
