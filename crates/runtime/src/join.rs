//! Joining a cluster with a bootstrap token (the client side of kubelet TLS bootstrap):
//! fetch the cluster CA from the server's public `/cacerts` and pin it to the hash in the
//! join token (k3s's `K10<sha256>::<id>.<secret>`), generate a key, ask for a kubelet
//! client certificate (CN `system:node:<name>`, O `system:nodes`) with a
//! CertificateSigningRequest sent as the bootstrap token user, wait for it to be
//! approved and signed, and write `ca.crt`, `client.crt`, `client.key` and `kubeconfig`.
//! A later start reuses those files while the certificate is still valid.
//!
//! Guarantees: the token is sent only to a server whose certificate chains to the pinned
//! CA; nothing is written until a certificate is in hand.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::PostParams;
use kube::Api;
use skiff_api::jointoken::{hex, JoinToken};

/// Files of a joined node, all inside the directory given to [`join`].
#[derive(Clone, Debug)]
pub struct JoinedCredentials {
    pub kubeconfig: PathBuf,
    pub ca_cert: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// Whether valid credentials from an earlier join were reused (no request was made).
    pub reused: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("join token: {0}")]
    Token(String),
    #[error("the server URL {0:?} is not https://host[:port]")]
    ServerUrl(String),
    #[error("fetching the cluster CA from {url}: {reason}")]
    FetchCa { url: String, reason: String },
    #[error("the CA served by {server} has hash {got}, but the join token expects {want}: wrong server, or someone in between")]
    CaMismatch {
        server: String,
        want: String,
        got: String,
    },
    #[error("the join token carries no CA hash and {0} has no ca.crt: use the full token (K10<hash>::<id>.<secret>) from the server's <data-dir>/server/token or `skiff token create`")]
    NoCaHash(PathBuf),
    #[error("making the key and certificate request: {0}")]
    Key(String),
    #[error("connecting to the API server with the bootstrap token: {0}")]
    Client(String),
    #[error("submitting CertificateSigningRequest {name}: {source} (is the bootstrap token valid and unexpired?)")]
    Submit {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("watching CertificateSigningRequest {name}: {source}")]
    Watch {
        name: String,
        #[source]
        source: kube::runtime::wait::Error,
    },
    #[error("CertificateSigningRequest {name} was denied: {message}")]
    Denied { name: String, message: String },
    #[error("CertificateSigningRequest {name} failed: {message}")]
    Failed { name: String, message: String },
    #[error("CertificateSigningRequest {name} was not approved and signed within {waited:?}: approve it on the server with `kubectl certificate approve {name}` (is the controller manager running?), then start again")]
    Timeout { name: String, waited: Duration },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How long [`join`] waits for approval and signing.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// Joins with the default timeout. See the module docs.
pub async fn join(
    server: &str,
    token: &str,
    node_name: &str,
    dir: &Path,
) -> Result<JoinedCredentials, JoinError> {
    join_with_timeout(server, token, node_name, dir, DEFAULT_TIMEOUT).await
}

fn files(dir: &Path, reused: bool) -> JoinedCredentials {
    JoinedCredentials {
        kubeconfig: dir.join("kubeconfig"),
        ca_cert: dir.join("ca.crt"),
        client_cert: dir.join("client.crt"),
        client_key: dir.join("client.key"),
        reused,
    }
}

pub async fn join_with_timeout(
    server: &str,
    token: &str,
    node_name: &str,
    dir: &Path,
    timeout: Duration,
) -> Result<JoinedCredentials, JoinError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let user = format!("system:node:{node_name}");
    let creds = files(dir, true);
    if still_valid(&creds, &user) {
        tracing::info!(dir = %dir.display(), "reusing the node's client certificate");
        return Ok(creds);
    }
    let token = JoinToken::parse(token).map_err(JoinError::Token)?;
    let ca_pem = match &token.ca_hash {
        Some(want) => {
            let pem = fetch_ca(server).await?;
            let got = ca_hash(&pem);
            if &got != want {
                return Err(JoinError::CaMismatch {
                    server: server.to_string(),
                    want: want.clone(),
                    got,
                });
            }
            pem
        }
        None => std::fs::read_to_string(&creds.ca_cert)
            .map_err(|_| JoinError::NoCaHash(dir.to_path_buf()))?,
    };
    let (request_pem, key_pem) = certificate_request(&user)?;
    let bootstrap_kubeconfig =
        kubeconfig_yaml(server, &ca_pem, &format!("    token: {}\n", token.token));
    let client = crate::client::from_kubeconfig_yaml(&bootstrap_kubeconfig, "bootstrap token")
        .await
        .map_err(|e| JoinError::Client(e.to_string()))?;
    let api: Api<CertificateSigningRequest> = Api::all(client);
    let name = format!(
        "node-csr-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let csr = CertificateSigningRequest {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(request_pem.into_bytes()),
            signer_name: "kubernetes.io/kube-apiserver-client-kubelet".into(),
            usages: Some(vec!["digital signature".into(), "client auth".into()]),
            ..Default::default()
        },
        status: None,
    };
    api.create(&PostParams::default(), &csr)
        .await
        .map_err(|source| JoinError::Submit {
            name: name.clone(),
            source,
        })?;
    tracing::info!(csr = %name, node = node_name, "requested a client certificate; waiting for approval and signing");
    let cert_pem = wait_for_certificate(&api, &name, timeout).await?;
    write_credentials(dir, server, &ca_pem, &cert_pem, &key_pem, &user)?;
    Ok(files(dir, false))
}

/// SHA-256 (hex) of the CA certificate's PEM text, as the full join token carries it.
pub fn ca_hash(pem: &str) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, pem.as_bytes()).as_ref())
}

/// Whether the files from an earlier join exist, name `user`, and stay valid for at
/// least another hour.
fn still_valid(creds: &JoinedCredentials, user: &str) -> bool {
    let (Ok(cert), true, true, true) = (
        std::fs::read(&creds.client_cert),
        creds.client_key.exists(),
        creds.ca_cert.exists(),
        creds.kubeconfig.exists(),
    ) else {
        return false;
    };
    let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(&cert) else {
        return false;
    };
    let Ok(cert) = pem.parse_x509() else {
        return false;
    };
    let cn_ok = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        == Some(user);
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    cn_ok && cert.validity().not_after.timestamp() > now + 3600
}

fn certificate_request(user: &str) -> Result<(String, String), JoinError> {
    let key = rcgen::KeyPair::generate().map_err(|e| JoinError::Key(e.to_string()))?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, user);
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:nodes");
    let csr = params
        .serialize_request(&key)
        .map_err(|e| JoinError::Key(e.to_string()))?;
    let pem = csr.pem().map_err(|e| JoinError::Key(e.to_string()))?;
    Ok((pem, key.serialize_pem()))
}

/// Follows the request until it is issued, denied or failed, logging while it waits.
async fn wait_for_certificate(
    api: &Api<CertificateSigningRequest>,
    name: &str,
    timeout: Duration,
) -> Result<String, JoinError> {
    let started = std::time::Instant::now();
    let progress_every = Duration::from_secs(15);
    loop {
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(JoinError::Timeout {
                name: name.to_string(),
                waited: timeout,
            });
        }
        let wait = kube::runtime::wait::await_condition(
            api.clone(),
            name,
            |csr: Option<&CertificateSigningRequest>| csr.is_some_and(|c| decided(c).is_some()),
        );
        match tokio::time::timeout(left.min(progress_every), wait).await {
            Ok(Ok(Some(csr))) => match decided(&csr) {
                Some(Outcome::Issued(cert)) => return Ok(cert),
                Some(Outcome::Denied(message)) => {
                    return Err(JoinError::Denied {
                        name: name.to_string(),
                        message,
                    })
                }
                Some(Outcome::Failed(message)) => {
                    return Err(JoinError::Failed {
                        name: name.to_string(),
                        message,
                    })
                }
                None => {}
            },
            Ok(Ok(None)) => {}
            Ok(Err(source)) => {
                return Err(JoinError::Watch {
                    name: name.to_string(),
                    source,
                })
            }
            Err(_) => tracing::info!(
                csr = name,
                waited_s = started.elapsed().as_secs(),
                "still waiting for the certificate; if nothing approves it automatically, run `kubectl certificate approve {name}` on the server"
            ),
        }
    }
}

enum Outcome {
    Issued(String),
    Denied(String),
    Failed(String),
}

fn decided(csr: &CertificateSigningRequest) -> Option<Outcome> {
    let status = csr.status.as_ref()?;
    let cond = |t: &str| {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == t)
            .map(|c| c.message.clone().unwrap_or_default())
    };
    if let Some(m) = cond("Denied") {
        return Some(Outcome::Denied(m));
    }
    if let Some(m) = cond("Failed") {
        return Some(Outcome::Failed(m));
    }
    let cert = status.certificate.as_ref().filter(|c| !c.0.is_empty())?;
    Some(Outcome::Issued(
        String::from_utf8_lossy(&cert.0).to_string(),
    ))
}

fn kubeconfig_yaml(server: &str, ca_pem: &str, user_fields: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: skiff\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\ncontexts:\n- name: skiff\n  context:\n    cluster: skiff\n    user: node\ncurrent-context: skiff\nusers:\n- name: node\n  user:\n{user_fields}",
        ca = b64(ca_pem),
    )
}

fn write_credentials(
    dir: &Path,
    server: &str,
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
    _user: &str,
) -> Result<(), JoinError> {
    std::fs::create_dir_all(dir).map_err(|source| JoinError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let kubeconfig = kubeconfig_yaml(
        server,
        ca_pem,
        &format!(
            "    client-certificate-data: {}\n    client-key-data: {}\n",
            b64(cert_pem),
            b64(key_pem)
        ),
    );
    let f = files(dir, false);
    // The kubeconfig last: its presence says the rest is complete.
    for (path, contents) in [
        (&f.ca_cert, ca_pem),
        (&f.client_key, key_pem),
        (&f.client_cert, cert_pem),
        (&f.kubeconfig, kubeconfig.as_str()),
    ] {
        write_private(path, contents)?;
    }
    Ok(())
}

fn write_private(path: &Path, contents: &str) -> Result<(), JoinError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| JoinError::Write {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(contents.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// `https://host[:port][/...]` → (host, port).
fn host_port(server: &str) -> Option<(String, u16)> {
    let rest = server.strip_prefix("https://")?;
    let authority = rest.split('/').next()?;
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, tail) = v6.split_once(']')?;
        let port = match tail.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => 443,
        };
        return Some((host.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Some((h.to_string(), p.parse().ok()?)),
        None => Some((authority.to_string(), 443)),
    }
    .filter(|(h, _)| !h.is_empty())
}

/// GET `/cacerts` without checking the server's certificate: what comes back is trusted
/// only once its hash matches the token's.
async fn fetch_ca(server: &str) -> Result<String, JoinError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let url = format!("{}/cacerts", server.trim_end_matches('/'));
    let fail = |reason: String| JoinError::FetchCa {
        url: url.clone(),
        reason,
    };
    let (host, port) = host_port(server).ok_or_else(|| JoinError::ServerUrl(server.into()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(crate::tls::AcceptAnyServerCert(provider)))
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.clone())
        .map_err(|e| fail(format!("server name {host}: {e}")))?;
    let io = async {
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await?;
        let req = format!("GET /cacerts HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        tls.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        // A server may close without TLS close_notify; what was read still counts.
        if let Err(e) = tls.read_to_end(&mut buf).await {
            if buf.is_empty() {
                return Err(e);
            }
        }
        Ok::<_, std::io::Error>(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(30), io)
        .await
        .map_err(|_| fail("timed out".into()))?
        .map_err(|e| fail(e.to_string()))?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| fail("not an HTTP response".into()))?;
    let status = head.lines().next().unwrap_or("");
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(fail(format!("the server answered {status:?}")));
    }
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().replace(' ', "") == "transfer-encoding:chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    if !body.contains("-----BEGIN CERTIFICATE-----") {
        return Err(fail("the answer holds no PEM certificate".into()));
    }
    Ok(body)
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].strip_prefix("\r\n").unwrap_or(&tail[n..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls() {
        assert_eq!(
            host_port("https://127.0.0.1:6443"),
            Some(("127.0.0.1".into(), 6443))
        );
        assert_eq!(
            host_port("https://example.com"),
            Some(("example.com".into(), 443))
        );
        assert_eq!(host_port("https://[::1]:6443/"), Some(("::1".into(), 6443)));
        assert_eq!(host_port("http://example.com"), None);
        assert_eq!(host_port("https://:6443"), None);
    }

    #[test]
    fn chunked_bodies() {
        assert_eq!(
            dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            "hello world"
        );
    }

    #[test]
    fn request_names_the_node() {
        let (pem, key) = certificate_request("system:node:n1").unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
        assert!(key.contains("PRIVATE KEY"));
        let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        use x509_parser::prelude::FromDer;
        let (_, csr) =
            x509_parser::certification_request::X509CertificationRequest::from_der(&p.contents)
                .unwrap();
        let subject = &csr.certification_request_info.subject;
        assert_eq!(
            subject.iter_common_name().next().unwrap().as_str().unwrap(),
            "system:node:n1"
        );
        assert_eq!(
            subject
                .iter_organization()
                .next()
                .unwrap()
                .as_str()
                .unwrap(),
            "system:nodes"
        );
    }
}
