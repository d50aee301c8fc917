//! Forwarding names outside the cluster to the host's resolvers (UDP, then TCP when the
//! answer is truncated), each answer cached.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::cache::{Cache, Key};

const TIMEOUT: Duration = Duration::from_secs(2);

/// The `nameserver` lines of a resolv.conf, port 53. Missing file: none.
pub fn upstreams_from_resolv_conf(path: &Path) -> Vec<SocketAddr> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            (parts.next() == Some("nameserver"))
                .then(|| parts.next())
                .flatten()
                .and_then(|ip| ip.parse::<IpAddr>().ok())
                .map(|ip| SocketAddr::new(ip, 53))
        })
        .collect()
}

pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    cache: Cache,
}

impl Forwarder {
    pub fn new(upstreams: Vec<SocketAddr>) -> Self {
        Self {
            upstreams,
            cache: Cache::new(10_000),
        }
    }

    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// The cached answer to `request` (id and question as asked), if there is one.
    pub fn from_cache(&self, request: &Message) -> Option<Message> {
        let mut hit = self.cache.get(&Key::of(request)?)?;
        hit.set_id(request.id());
        Some(hit)
    }

    /// The upstream answer to `request` (id and question as asked), or SERVFAIL.
    pub async fn resolve(&self, request: &Message) -> Message {
        if let Some(hit) = self.from_cache(request) {
            return hit;
        }
        let key = Key::of(request);
        for upstream in &self.upstreams {
            match exchange(*upstream, request).await {
                Ok(resp) => {
                    if let Some(k) = key {
                        self.cache.put(k, &resp);
                    }
                    return resp;
                }
                Err(err) => tracing::debug!(%upstream, %err, "upstream DNS query failed"),
            }
        }
        failure(request, ResponseCode::ServFail)
    }
}

/// An empty answer to `request` with `code`.
pub fn failure(request: &Message, code: ResponseCode) -> Message {
    let mut resp = Message::new();
    resp.set_id(request.id())
        .set_message_type(MessageType::Response)
        .set_op_code(request.op_code())
        .set_recursion_desired(request.recursion_desired())
        .set_recursion_available(true)
        .set_response_code(code);
    resp.add_queries(request.queries().to_vec());
    resp
}

async fn exchange(upstream: SocketAddr, request: &Message) -> std::io::Result<Message> {
    let mut query = request.clone();
    // Our own id: a reply is matched to this query, not trusted by address alone.
    let id: u16 = rand_id();
    query.set_id(id);
    let bytes = query.to_vec().map_err(std::io::Error::other)?;
    let bind: SocketAddr = if upstream.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(upstream).await?;
    socket.send(&bytes).await?;
    let mut buf = vec![0u8; 4096];
    let resp = loop {
        let n = tokio::time::timeout(TIMEOUT, socket.recv(&mut buf))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer"))??;
        match Message::from_vec(&buf[..n]) {
            Ok(m) if m.id() == id => break m,
            _ => continue,
        }
    };
    let mut resp = if resp.truncated() {
        exchange_tcp(upstream, &bytes, id).await?
    } else {
        resp
    };
    resp.set_id(request.id());
    Ok(resp)
}

async fn exchange_tcp(upstream: SocketAddr, bytes: &[u8], id: u16) -> std::io::Result<Message> {
    let mut stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(upstream))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect"))??;
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).await?;
    let read = async {
        let len = stream.read_u16().await? as usize;
        let mut buf = vec![0u8; len];
        stream.read_exact(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let buf = tokio::time::timeout(TIMEOUT, read)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer"))??;
    let msg = Message::from_vec(&buf).map_err(std::io::Error::other)?;
    if msg.id() != id {
        return Err(std::io::Error::other("answer for another query"));
    }
    Ok(msg)
}

fn rand_id() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish() as u16
}
