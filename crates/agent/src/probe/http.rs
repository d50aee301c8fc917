//! httpGet probes, as upstream's HTTP prober: one GET per probe on a fresh connection
//! (HTTPS without certificate verification), 200–399 is success, redirects on the same
//! host are followed (at most 10), a redirect to another host ends the probe as a
//! success with a warning, and at most 10 KiB of the body is read.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::tcp::join_host_port;
use super::{dial_error, Outcome, USER_AGENT};

const MAX_BODY: usize = 10 * 1024;
const MAX_REDIRECTS: usize = 10;

/// Where an HTTP probe goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Url {
    pub fn new(https: bool, host: &str, port: u16, path: &str) -> Self {
        let path = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        Url {
            https,
            host: host.to_owned(),
            port,
            path,
        }
    }

    fn authority(&self) -> String {
        join_host_port(&self.host, self.port)
    }

    /// Where a `Location` header leads from here.
    fn join(&self, location: &str) -> Result<Url, String> {
        if location.starts_with("http://") || location.starts_with("https://") {
            let uri: http::Uri = location
                .parse()
                .map_err(|e| format!("failed to parse Location header {location:?}: {e}"))?;
            let https = uri.scheme_str() == Some("https");
            let host = uri
                .host()
                .ok_or_else(|| format!("Location header {location:?} has no host"))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
            let path = uri.path_and_query().map_or("/", |p| p.as_str());
            Ok(Url::new(https, &host, port, path))
        } else if location.starts_with('/') {
            Ok(Url::new(self.https, &self.host, self.port, location))
        } else {
            let dir = self.path.split('?').next().unwrap_or("/");
            let dir = &dir[..dir.rfind('/').map_or(0, |i| i + 1)];
            Ok(Url::new(
                self.https,
                &self.host,
                self.port,
                &format!("{dir}{location}"),
            ))
        }
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority(), self.path)
    }
}

/// Runs an HTTP probe with `headers` (name, value) within `timeout`.
pub async fn probe(url: &Url, headers: &[(String, String)], timeout: Duration) -> Outcome {
    let result = tokio::time::timeout(timeout, get_following_redirects(url, headers)).await;
    let (status, body) = match result {
        Err(_) => {
            return Outcome::Failure(format!(
                "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            ))
        }
        Ok(Err(msg)) => return Outcome::Failure(msg),
        Ok(Ok(r)) => r,
    };
    match status {
        200..=299 => Outcome::Success,
        300..=399 => Outcome::Warning(format!("Probe terminated redirects, Response body: {body}")),
        code => Outcome::Failure(format!("HTTP probe failed with statuscode: {code}")),
    }
}

/// The final status and (truncated) body; errors read `Get "<url>": <cause>`.
async fn get_following_redirects(
    url: &Url,
    headers: &[(String, String)],
) -> Result<(u16, String), String> {
    let mut current = url.clone();
    let mut followed = 0;
    loop {
        let (status, location, body) = get_once(&current, headers)
            .await
            .map_err(|e| format!("Get \"{current}\": {e}"))?;
        let redirect = matches!(status, 301 | 302 | 303 | 307 | 308);
        let Some(location) = location.filter(|_| redirect) else {
            return Ok((status, body));
        };
        let next = current.join(&location)?;
        if next.host != url.host {
            // Off-host redirects are not followed: the 3xx itself is the answer.
            return Ok((status, body));
        }
        followed += 1;
        if followed >= MAX_REDIRECTS {
            return Err(format!("Get \"{next}\": stopped after 10 redirects"));
        }
        current = next;
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

async fn get_once(
    url: &Url,
    headers: &[(String, String)],
) -> Result<(u16, Option<String>, String), String> {
    let addr = url.authority();
    let tcp = TcpStream::connect(&addr)
        .await
        .map_err(|e| format!("dial tcp {addr}: {}", dial_error(&e)))?;
    let io: Box<dyn Io> = if url.https {
        Box::new(tls_connect(tcp, &url.host).await?)
    } else {
        Box::new(tcp)
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    let conn = tokio::spawn(conn);

    let mut req = http::Request::get(url.path.as_str());
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    if !has("host") {
        req = req.header(http::header::HOST, url.authority());
    }
    if !has("user-agent") {
        req = req.header(http::header::USER_AGENT, USER_AGENT);
    }
    if !has("accept") {
        req = req.header(http::header::ACCEPT, "*/*");
    }
    for (name, value) in headers {
        // An empty Accept means "send none", as upstream.
        if name.eq_ignore_ascii_case("accept") && value.is_empty() {
            continue;
        }
        req = req.header(name.as_str(), value.as_str());
    }
    req = req.header(http::header::CONNECTION, "close");
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("invalid request: {e}"))?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get(http::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut body = resp.into_body();
    let mut bytes = Vec::new();
    while bytes.len() < MAX_BODY {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    bytes.extend_from_slice(&data);
                }
            }
            Some(Err(e)) => return Err(e.to_string()),
            None => break,
        }
    }
    bytes.truncate(MAX_BODY);
    conn.abort();
    Ok((
        status,
        location,
        String::from_utf8_lossy(&bytes).into_owned(),
    ))
}

async fn tls_connect(
    tcp: TcpStream,
    host: &str,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(skiff_runtime::tls::AcceptAnyServerCert(
            provider,
        )))
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| format!("invalid host {host:?}: {e}"))?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("tls: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A tiny HTTP/1.1 server with fixed routes; it answers one request per connection.
    async fn serve<S>(stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut stream = stream;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let req = String::from_utf8_lossy(&buf).to_string();
        let path = req.split(' ').nth(1).unwrap_or("/").to_owned();
        let header = |name: &str| {
            req.lines()
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                })
                .unwrap_or_default()
        };
        let (status, extra, body) = match path.as_str() {
            "/ok" => ("200 OK", String::new(), "fine".to_owned()),
            "/fail" => ("500 Internal Server Error", String::new(), "bad".into()),
            "/redirect" => ("302 Found", "Location: /ok\r\n".into(), String::new()),
            "/relative/a" => ("302 Found", "Location: b\r\n".into(), String::new()),
            "/relative/b" => ("503 Unavailable", String::new(), String::new()),
            "/offsite" => (
                "302 Found",
                "Location: http://elsewhere.invalid/\r\n".into(),
                "moved".into(),
            ),
            "/loop" => ("302 Found", "Location: /loop\r\n".into(), String::new()),
            "/echo" => (
                "200 OK",
                String::new(),
                format!(
                    "ua={} accept={} x={} host={}",
                    header("user-agent"),
                    header("accept"),
                    header("x-custom"),
                    header("host")
                ),
            ),
            "/needs-header" if header("x-custom") == "yes" => {
                ("200 OK", String::new(), String::new())
            }
            "/needs-header" => ("403 Forbidden", String::new(), String::new()),
            "/slow" => {
                tokio::time::sleep(Duration::from_secs(5)).await;
                ("200 OK", String::new(), String::new())
            }
            _ => ("404 Not Found", String::new(), String::new()),
        };
        let resp = format!(
            "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(resp.as_bytes()).await;
        let _ = stream.shutdown().await;
    }

    async fn http_server() -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(serve(s));
            }
        });
        port
    }

    async fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> Outcome {
        let headers: Vec<_> = headers
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        probe(
            &Url::new(false, "127.0.0.1", port, path),
            &headers,
            Duration::from_secs(1),
        )
        .await
    }

    #[tokio::test]
    async fn status_codes_redirects_and_timeouts() {
        let port = http_server().await;
        assert_eq!(get(port, "/ok", &[]).await, Outcome::Success);
        assert_eq!(get(port, "ok", &[]).await, Outcome::Success);
        assert_eq!(
            get(port, "/fail", &[]).await,
            Outcome::Failure("HTTP probe failed with statuscode: 500".into())
        );
        assert_eq!(get(port, "/redirect", &[]).await, Outcome::Success);
        assert_eq!(
            get(port, "/relative/a", &[]).await,
            Outcome::Failure("HTTP probe failed with statuscode: 503".into())
        );
        assert_eq!(
            get(port, "/offsite", &[]).await,
            Outcome::Warning("Probe terminated redirects, Response body: moved".into())
        );
        assert_eq!(
            get(port, "/loop", &[]).await,
            Outcome::Failure(format!(
                "Get \"http://127.0.0.1:{port}/loop\": stopped after 10 redirects"
            ))
        );
        assert_eq!(
            get(port, "/needs-header", &[]).await,
            Outcome::Failure("HTTP probe failed with statuscode: 403".into())
        );
        assert_eq!(
            get(port, "/needs-header", &[("X-Custom", "yes")]).await,
            Outcome::Success
        );
        assert_eq!(
            get(port, "/slow", &[]).await,
            Outcome::Failure(format!(
                "Get \"http://127.0.0.1:{port}/slow\": context deadline exceeded \
                 (Client.Timeout exceeded while awaiting headers)"
            ))
        );
    }

    #[tokio::test]
    async fn default_and_custom_headers() {
        let port = http_server().await;
        let (status, body) = get_following_redirects(
            &Url::new(false, "127.0.0.1", port, "/echo"),
            &[
                ("X-Custom".into(), "v".into()),
                ("Host".into(), "web.local".into()),
            ],
        )
        .await
        .unwrap();
        assert_eq!(status, 200);
        assert_eq!(
            body,
            format!("ua={USER_AGENT} accept=*/* x=v host=web.local")
        );
    }

    #[tokio::test]
    async fn refused_connections_read_as_upstream() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        assert_eq!(
            get(port, "/healthz", &[]).await,
            Outcome::Failure(format!(
                "Get \"http://127.0.0.1:{port}/healthz\": dial tcp 127.0.0.1:{port}: connect: connection refused"
            ))
        );
    }

    #[tokio::test]
    async fn https_without_verification() {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let key =
            rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(s).await {
                        serve(tls).await;
                    }
                });
            }
        });
        let url = Url::new(true, "127.0.0.1", port, "/ok");
        assert_eq!(
            probe(&url, &[], Duration::from_secs(2)).await,
            Outcome::Success
        );
        let url = Url::new(true, "127.0.0.1", port, "/fail");
        assert_eq!(
            probe(&url, &[], Duration::from_secs(2)).await,
            Outcome::Failure("HTTP probe failed with statuscode: 500".into())
        );
    }

    #[test]
    fn locations_resolve_against_the_current_url() {
        let base = Url::new(false, "10.0.0.5", 8080, "/a/b?x=1");
        assert_eq!(
            base.join("/c").unwrap().to_string(),
            "http://10.0.0.5:8080/c"
        );
        assert_eq!(
            base.join("d").unwrap().to_string(),
            "http://10.0.0.5:8080/a/d"
        );
        assert_eq!(
            base.join("https://10.0.0.5/e").unwrap().to_string(),
            "https://10.0.0.5:443/e"
        );
        assert_eq!(
            Url::new(false, "fd00::5", 80, "/").to_string(),
            "http://[fd00::5]:80/"
        );
    }
}
