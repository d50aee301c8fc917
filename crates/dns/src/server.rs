//! The DNS listeners: UDP and TCP on each address. Over UDP, questions answered from the
//! cluster or the cache are answered by the receiving task itself; each question for the
//! upstream gets a task of its own, so a slow upstream never holds up cluster names. Over
//! TCP each connection has its task.

use std::net::SocketAddr;
use std::sync::Arc;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

use crate::answer::{answer, soa, Answer, ClusterView};
use crate::forward::{failure, Forwarder};

#[derive(Clone, Debug)]
pub struct Settings {
    /// Addresses to answer on (UDP and TCP each).
    pub listen: Vec<SocketAddr>,
    /// The cluster domain (`cluster.local`).
    pub domain: String,
    /// Where other names go (the host's resolv.conf nameservers).
    pub upstreams: Vec<SocketAddr>,
}

struct Resolver {
    domain: String,
    view: Arc<dyn ClusterView + Send + Sync>,
    forwarder: Forwarder,
}

/// Binds every listener and serves until `shutdown`; returns the bound addresses (port 0
/// in `listen` picks a free one: the UDP and TCP ports are then the same).
pub async fn serve(
    settings: Settings,
    view: Arc<dyn ClusterView + Send + Sync>,
    shutdown: CancellationToken,
) -> std::io::Result<Vec<SocketAddr>> {
    let resolver = Arc::new(Resolver {
        domain: settings.domain.trim_end_matches('.').to_ascii_lowercase(),
        view,
        forwarder: Forwarder::new(settings.upstreams.clone()),
    });
    let mut bound = Vec::new();
    for addr in &settings.listen {
        let udp = Arc::new(UdpSocket::bind(addr).await.map_err(|e| {
            std::io::Error::new(e.kind(), format!("binding DNS on {addr}/udp: {e}"))
        })?);
        let local = udp.local_addr()?;
        let tcp = TcpListener::bind(local).await.map_err(|e| {
            std::io::Error::new(e.kind(), format!("binding DNS on {local}/tcp: {e}"))
        })?;
        bound.push(local);
        tokio::spawn(serve_udp(udp, resolver.clone(), shutdown.clone()));
        tokio::spawn(serve_tcp(tcp, resolver.clone(), shutdown.clone()));
    }
    tracing::info!(addresses = ?bound, domain = %settings.domain, upstreams = ?settings.upstreams, "cluster DNS listening");
    Ok(bound)
}

async fn serve_udp(socket: Arc<UdpSocket>, resolver: Arc<Resolver>, shutdown: CancellationToken) {
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(err) => {
                    tracing::debug!(%err, "DNS recv failed");
                    continue;
                }
            },
        };
        // Cluster names and cached answers need no I/O: answered here, without handing
        // the question to another task (and maybe another thread). Only questions for
        // the upstream get a task of their own, so a slow upstream holds up nothing else.
        let resp = match resolver.handle_now(&buf[..n], true) {
            Ok(Some(resp)) => resp,
            Ok(None) => continue,
            Err(request) => {
                let socket = socket.clone();
                let resolver = resolver.clone();
                tokio::spawn(async move {
                    let resp = resolver.upstream(&request).await;
                    if let Some(resp) = resolver.finish(&request, resp, true) {
                        let _ = socket.send_to(&resp, peer).await;
                    }
                });
                continue;
            }
        };
        match socket.try_send_to(&resp, peer) {
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                let socket = socket.clone();
                tokio::spawn(async move {
                    let _ = socket.send_to(&resp, peer).await;
                });
            }
            _ => {}
        }
    }
}

async fn serve_tcp(listener: TcpListener, resolver: Arc<Resolver>, shutdown: CancellationToken) {
    loop {
        let (mut stream, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(_) => continue,
            },
        };
        let resolver = resolver.clone();
        tokio::spawn(async move {
            // Several length-prefixed questions may come on one connection (RFC 7766).
            loop {
                let read = tokio::time::timeout(std::time::Duration::from_secs(10), async {
                    let len = stream.read_u16().await? as usize;
                    let mut buf = vec![0u8; len];
                    stream.read_exact(&mut buf).await?;
                    Ok::<_, std::io::Error>(buf)
                })
                .await;
                let Ok(Ok(packet)) = read else { return };
                let Some(resp) = resolver.handle(&packet, false).await else {
                    return;
                };
                let mut framed = (resp.len() as u16).to_be_bytes().to_vec();
                framed.extend_from_slice(&resp);
                if stream.write_all(&framed).await.is_err() {
                    return;
                }
            }
        });
    }
}

impl Resolver {
    async fn handle(&self, packet: &[u8], udp: bool) -> Option<Vec<u8>> {
        match self.handle_now(packet, udp) {
            Ok(resp) => resp,
            Err(request) => {
                let resp = self.upstream(&request).await;
                self.finish(&request, resp, udp)
            }
        }
    }

    /// The answer to `packet` if it needs no upstream (None: nothing to send back), or
    /// the parsed request when it does.
    fn handle_now(&self, packet: &[u8], udp: bool) -> Result<Option<Vec<u8>>, Box<Message>> {
        let request = match Message::from_vec(packet) {
            Ok(m) => m,
            Err(_) => {
                // A header we can read gets FORMERR; anything less is dropped.
                if packet.len() < 12 {
                    return Ok(None);
                }
                let mut resp = Message::new();
                resp.set_id(u16::from_be_bytes([packet[0], packet[1]]))
                    .set_message_type(MessageType::Response)
                    .set_response_code(ResponseCode::FormErr);
                return Ok(resp.to_vec().ok());
            }
        };
        if request.message_type() != MessageType::Query {
            return Ok(None);
        }
        let resp = if request.op_code() != OpCode::Query {
            failure(&request, ResponseCode::NotImp)
        } else if request.queries().len() != 1 {
            failure(&request, ResponseCode::FormErr)
        } else {
            match self.resolve_now(&request) {
                Some(resp) => resp,
                None => return Err(Box::new(request)),
            }
        };
        Ok(self.finish(&request, resp, udp))
    }

    /// The response's wire form: EDNS when asked, truncated when too big for UDP.
    fn finish(&self, request: &Message, resp: Message, udp: bool) -> Option<Vec<u8>> {
        let mut resp = resp;
        if request.extensions().is_some() {
            let mut edns = Edns::new();
            edns.set_max_payload(1232);
            resp.set_edns(edns);
        }
        let bytes = resp.to_vec().ok()?;
        let limit = if request.extensions().is_some() {
            request.max_payload().max(512) as usize
        } else {
            512
        };
        if udp && bytes.len() > limit {
            // Too big for this UDP client: say so, and it asks again over TCP.
            let mut truncated = failure(request, resp.response_code());
            truncated.set_truncated(true);
            truncated.set_authoritative(resp.authoritative());
            return truncated.to_vec().ok();
        }
        Some(bytes)
    }

    /// The answer from the cluster or the cache; None when the upstream must be asked.
    fn resolve_now(&self, request: &Message) -> Option<Message> {
        let q = &request.queries()[0];
        let mut resp = failure(request, ResponseCode::NoError);
        match answer(&self.domain, q.name(), q.query_type(), self.view.as_ref()) {
            Answer::Forward => return self.forwarder.from_cache(request),
            Answer::Records(records) => {
                resp.set_authoritative(true);
                resp.add_answers(records);
            }
            Answer::NoData => {
                resp.set_authoritative(true);
                resp.add_name_server(soa(&self.domain));
            }
            Answer::NxDomain => {
                resp.set_authoritative(true);
                resp.set_response_code(ResponseCode::NXDomain);
                resp.add_name_server(soa(&self.domain));
            }
            Answer::Cname(cname, target) => {
                resp.set_authoritative(true);
                resp.add_answer(*cname);
                if q.query_type() != RecordType::CNAME {
                    // Chase the target, as CoreDNS's kubernetes plugin does for
                    // ExternalName: clients get the addresses in one answer.
                    match answer(&self.domain, &target, q.query_type(), self.view.as_ref()) {
                        Answer::Records(more) => {
                            resp.add_answers(more);
                        }
                        Answer::Forward => return None,
                        _ => {}
                    }
                }
            }
        }
        Some(resp)
    }

    /// The answer when the upstream is needed: a name outside the cluster, or the target
    /// of an ExternalName Service.
    async fn upstream(&self, request: &Message) -> Message {
        let q = &request.queries()[0];
        match answer(&self.domain, q.name(), q.query_type(), self.view.as_ref()) {
            Answer::Forward => self.forwarder.resolve(request).await,
            Answer::Cname(cname, target) if q.query_type() != RecordType::CNAME => {
                let mut resp = failure(request, ResponseCode::NoError);
                resp.set_authoritative(true);
                resp.add_answer(*cname);
                match answer(&self.domain, &target, q.query_type(), self.view.as_ref()) {
                    Answer::Records(more) => {
                        resp.add_answers(more);
                    }
                    Answer::Forward => {
                        let mut chase = request.clone();
                        chase.take_queries();
                        chase.add_query(Query::query(target, q.query_type()));
                        let upstream = self.forwarder.resolve(&chase).await;
                        resp.add_answers(upstream.answers().to_vec());
                    }
                    _ => {}
                }
                resp
            }
            // The cluster changed since the question was looked at: answer from it.
            _ => self
                .resolve_now(request)
                .unwrap_or_else(|| failure(request, ResponseCode::ServFail)),
        }
    }
}
