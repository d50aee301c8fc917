//! The agent's TLS: a self-signed serving certificate made at start (the API server does
//! not verify the kubelet's serving certificate unless told to, as upstream), and client
//! certificates required and verified against the cluster CA. Only the API server's
//! kubelet-client identity (or a cluster admin) may use the endpoints.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;

use super::ServeError;

/// The identity the API server presents to kubelets (upstream's default client cert CN).
pub const APISERVER_KUBELET_CLIENT: &str = "system:kube-apiserver-kubelet-client";
const MASTERS: &str = "system:masters";

/// Who a client certificate names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub user: String,
    pub groups: Vec<String>,
}

impl Peer {
    /// Whether this identity may read logs and open streams.
    pub fn allowed(&self) -> bool {
        self.user == APISERVER_KUBELET_CLIENT || self.groups.iter().any(|g| g == MASTERS)
    }

    pub fn from_cert(der: &[u8]) -> Option<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let subject = cert.subject();
        let user = subject
            .iter_common_name()
            .next()?
            .as_str()
            .ok()?
            .to_string();
        let groups = subject
            .iter_organization()
            .filter_map(|o| o.as_str().ok().map(str::to_string))
            .collect();
        Some(Self { user, groups })
    }
}

/// Server TLS settings: a fresh self-signed certificate for `names`, client certificates
/// required and chained to `ca_pem`.
pub fn server_config(ca_pem: &str, names: &[String]) -> Result<rustls::ServerConfig, ServeError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        let ca = ca.map_err(|e| ServeError::Tls(format!("cluster CA: {e}")))?;
        roots
            .add(ca)
            .map_err(|e| ServeError::Tls(format!("cluster CA: {e}")))?;
    }
    if roots.is_empty() {
        return Err(ServeError::Tls(
            "the cluster CA holds no certificate".into(),
        ));
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| ServeError::Tls(format!("client verifier: {e}")))?;
    let certified = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|e| ServeError::Tls(format!("serving certificate: {e}")))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let cert = CertificateDer::from(certified.cert.der().to_vec());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert], key)
        .map_err(|e| ServeError::Tls(format!("serving certificate: {e}")))?;
    // HTTP/1.1 only: the streaming endpoints are HTTP/1.1 upgrades.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(cn: &str, orgs: &[&str]) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        for o in orgs {
            params
                .distinguished_name
                .push(rcgen::DnType::OrganizationName, *o);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn only_the_api_servers_kubelet_client_and_masters_are_let_in() {
        let apiserver = Peer::from_cert(&cert(APISERVER_KUBELET_CLIENT, &[])).unwrap();
        assert!(apiserver.allowed());
        let admin = Peer::from_cert(&cert("admin", &["system:masters"])).unwrap();
        assert_eq!(admin.groups, ["system:masters"]);
        assert!(admin.allowed());
        let node = Peer::from_cert(&cert("system:node:n1", &["system:nodes"])).unwrap();
        assert!(!node.allowed());
        assert_eq!(Peer::from_cert(b"not a certificate"), None);
    }

    #[test]
    fn a_cluster_ca_is_required() {
        assert!(server_config("", &["localhost".into()]).is_err());
    }
}
