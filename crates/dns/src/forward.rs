//! Forwarding names outside the cluster to the host's resolvers (UDP, then TCP when the
//! answer is truncated), each answer cached. Questions that miss the cache together share
//! one upstream exchange: the first asks, the others wait for its answer.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::oneshot;

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

/// Questions being asked upstream, each with whoever waits for the same answer.
type InFlight = Mutex<HashMap<Key, Vec<oneshot::Sender<Message>>>>;

pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    cache: Cache,
    in_flight: InFlight,
}

/// Removes a question from the in-flight table however its asker ends (answered, or
/// cancelled: waiters then see their sender dropped and ask themselves).
struct Asking<'a> {
    table: &'a InFlight,
    key: Key,
}

impl Asking<'_> {
    fn waiters(&self) -> Vec<oneshot::Sender<Message>> {
        lock(self.table).remove(&self.key).unwrap_or_default()
    }
}

impl Drop for Asking<'_> {
    fn drop(&mut self) {
        lock(self.table).remove(&self.key);
    }
}

fn lock(
    table: &InFlight,
) -> std::sync::MutexGuard<'_, HashMap<Key, Vec<oneshot::Sender<Message>>>> {
    table.lock().unwrap_or_else(|e| e.into_inner())
}

impl Forwarder {
    pub fn new(upstreams: Vec<SocketAddr>) -> Self {
        Self {
            upstreams,
            cache: Cache::new(10_000),
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// The cached answer to `request` (id and question as asked), if there is one.
    pub fn from_cache(&self, request: &Message) -> Option<Message> {
        let hit = self.cache.get(&Key::of(request)?)?;
        Some(answer_to(hit, request))
    }

    /// The upstream answer to `request` (id and question as asked), or SERVFAIL.
    pub async fn resolve(&self, request: &Message) -> Message {
        if let Some(hit) = self.from_cache(request) {
            return hit;
        }
        let Some(key) = Key::of(request) else {
            return self.ask(request).await;
        };
        // Someone is already asking: wait for that answer instead of asking again.
        let wait = {
            let mut table = lock(&self.in_flight);
            match table.get_mut(&key) {
                Some(waiters) => {
                    let (tx, rx) = oneshot::channel();
                    waiters.push(tx);
                    Some(rx)
                }
                None => {
                    table.insert(key.clone(), Vec::new());
                    None
                }
            }
        };
        if let Some(rx) = wait {
            if let Ok(shared) = rx.await {
                return answer_to(shared, request);
            }
            // The asker went away before answering: ask directly.
            return self.ask(request).await;
        }
        let asking = Asking {
            table: &self.in_flight,
            key: key.clone(),
        };
        let resp = self.ask(request).await;
        // The cache keeps what may be kept (no failures).
        self.cache.put(key, &resp);
        for waiter in asking.waiters() {
            let _ = waiter.send(resp.clone());
        }
        resp
    }

    /// One exchange with the first upstream that answers, or SERVFAIL.
    async fn ask(&self, request: &Message) -> Message {
        for upstream in &self.upstreams {
            match exchange(*upstream, request).await {
                Ok(resp) => return resp,
                Err(err) => tracing::debug!(%upstream, %err, "upstream DNS query failed"),
            }
        }
        failure(request, ResponseCode::ServFail)
    }
}

/// `resp`, made for someone else's identical question, as the answer to `request`: its
/// id, and its question exactly as written (clients may check the letter case).
fn answer_to(mut resp: Message, request: &Message) -> Message {
    resp.set_id(request.id());
    resp.take_queries();
    resp.add_queries(request.queries().to_vec());
    resp
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

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{Name, RData, Record, RecordType};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// An upstream that answers every A question with 192.0.2.1 after `delay`, counting.
    async fn slow_upstream(delay: Duration, asked: Arc<AtomicUsize>) -> SocketAddr {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let addr = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            loop {
                let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                asked.fetch_add(1, Ordering::SeqCst);
                let request = Message::from_vec(&buf[..n]).unwrap();
                let socket = socket.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let mut resp = failure(&request, ResponseCode::NoError);
                    let name = request.queries()[0].name().clone();
                    resp.add_answer(Record::from_rdata(name, 60, RData::A(A::new(192, 0, 2, 1))));
                    let _ = socket.send_to(&resp.to_vec().unwrap(), peer).await;
                });
            }
        });
        addr
    }

    /// A question for example.org, its letter case varied by `id` (as 0x20 clients do).
    fn question(id: u16) -> Message {
        let mut m = Message::new();
        m.set_id(id).set_recursion_desired(true);
        let name = if id.is_multiple_of(2) {
            "EXAMPLE.org."
        } else {
            "example.ORG."
        };
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
        m
    }

    #[tokio::test]
    async fn questions_missing_the_cache_together_share_one_upstream_exchange() {
        let asked = Arc::new(AtomicUsize::new(0));
        let upstream = slow_upstream(Duration::from_millis(200), asked.clone()).await;
        let forwarder = Arc::new(Forwarder::new(vec![upstream]));
        let tasks: Vec<_> = (1..=20u16)
            .map(|id| {
                let f = forwarder.clone();
                tokio::spawn(async move { f.resolve(&question(id)).await })
            })
            .collect();
        for (i, task) in tasks.into_iter().enumerate() {
            let resp = task.await.unwrap();
            let id = i as u16 + 1;
            assert_eq!(resp.id(), id, "each asker gets its own id back");
            assert_eq!(
                resp.queries(),
                question(id).queries(),
                "and its question as written"
            );
            assert_eq!(resp.answers().len(), 1);
        }
        assert_eq!(
            asked.load(Ordering::SeqCst),
            1,
            "one upstream exchange for 20 askers"
        );
        // Then from the cache.
        forwarder.resolve(&question(99)).await;
        assert_eq!(asked.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_cancelled_asker_leaves_the_others_to_ask_themselves() {
        let asked = Arc::new(AtomicUsize::new(0));
        let upstream = slow_upstream(Duration::from_millis(300), asked.clone()).await;
        let forwarder = Arc::new(Forwarder::new(vec![upstream]));
        let first = {
            let f = forwarder.clone();
            tokio::spawn(async move { f.resolve(&question(1)).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let second = {
            let f = forwarder.clone();
            tokio::spawn(async move { f.resolve(&question(2)).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        first.abort();
        let resp = tokio::time::timeout(Duration::from_secs(3), second)
            .await
            .expect("the waiter is not stranded")
            .unwrap();
        assert_eq!(resp.id(), 2);
        assert_eq!(resp.answers().len(), 1);
        assert_eq!(
            asked.load(Ordering::SeqCst),
            2,
            "the waiter asked again itself"
        );
    }
}
