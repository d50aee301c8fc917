//! Moving bytes between a client's upgraded connection and an agent's, in three shapes:
//!
//! - [`remote_command`]: the client speaks WebSocket `v5.channel.k8s.io` (kubectl's first
//!   choice for exec and attach), the agent SPDY `v4.channel.k8s.io` (what runtimes
//!   serve). Upstream's API server translates the same way: SPDY streams can be
//!   half-closed, which v5's close message (stdin EOF) needs.
//! - [`tunnel`]: the client sends SPDY frames inside WebSocket binary messages
//!   (`SPDY/3.1+portforward.k8s.io`); the agent gets the SPDY bytes as they are.
//! - [`splice`]: same protocol on both sides (plain SPDY, or a WebSocket protocol the
//!   runtime speaks itself): bytes copied both ways.

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::spdy::{self, Frame};
use super::ws::{self, Incoming, Outgoing};

/// The WebSocket channel numbers of the remote-command protocol.
const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
/// v5: `[255, channel]` closes the client's side of a channel.
const CLOSE: u8 = 255;

/// Which streams the exec or attach asked for.
#[derive(Clone, Copy, Debug, Default)]
pub struct Streams {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// The SPDY streams opened toward the agent, by WebSocket channel: (channel, stream id,
/// SPDY stream type). The error stream is always there; stderr goes with a TTY.
fn plan(s: Streams) -> Vec<(u8, u32, &'static str)> {
    let mut out = vec![(ERROR, 1, "error")];
    let mut next = 3;
    let mut add = |want: bool, channel: u8, kind: &'static str| {
        if want {
            out.push((channel, next, kind));
            next += 2;
        }
    };
    add(s.stdin, STDIN, "stdin");
    add(s.stdout, STDOUT, "stdout");
    add(s.stderr && !s.tty, STDERR, "stderr");
    add(s.tty, RESIZE, "resize");
    out
}

/// One task writes each side, fed by a channel, so both directions can answer pings.
fn ws_writer(
    mut w: tokio::io::WriteHalf<TokioIo<Upgraded>>,
) -> (mpsc::Sender<Outgoing>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Outgoing>(64);
    let task = tokio::spawn(async move {
        while let Some(out) = rx.recv().await {
            let last = matches!(out, Outgoing::Close);
            if ws::write(&mut w, &out).await.is_err() || last {
                break;
            }
        }
        let _ = w.shutdown().await;
    });
    (tx, task)
}

fn byte_writer(
    mut w: tokio::io::WriteHalf<TokioIo<Upgraded>>,
) -> (mpsc::Sender<Vec<u8>>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(64);
    let task = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if w.write_all(&bytes).await.is_err() || w.flush().await.is_err() {
                break;
            }
        }
        let _ = w.shutdown().await;
    });
    (tx, task)
}

/// WebSocket v5 (client) to SPDY v4 (agent) for exec and attach. Ends when the agent
/// closes (after it sent the exit status) or the client goes away.
pub async fn remote_command(client: Upgraded, agent: Upgraded, streams: Streams) {
    let (client_r, client_w) = tokio::io::split(TokioIo::new(client));
    let (mut agent_r, agent_w) = tokio::io::split(TokioIo::new(agent));
    let (to_client, client_task) = ws_writer(client_w);
    let (to_agent, agent_task) = byte_writer(agent_w);
    let plan = plan(streams);
    let mut encoder = spdy::Encoder::default();
    // As client-go does: one stream at a time, each after the previous one's reply.
    for (_, id, kind) in &plan {
        if to_agent
            .send(encoder.syn_stream(*id, &[("streamType", kind)]))
            .await
            .is_err()
        {
            return;
        }
        loop {
            match spdy::read_frame(&mut agent_r).await {
                Ok(Some(Frame::Reply { stream, .. })) if stream == *id => break,
                Ok(Some(Frame::Ping(ping))) => {
                    let _ = to_agent.send(spdy::ping(ping)).await;
                }
                Ok(Some(Frame::Reset { stream })) if stream == *id => {
                    tracing::debug!(stream, kind, "the agent refused a stream");
                    let _ = to_client.send(Outgoing::Close).await;
                    return;
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    let _ = to_client.send(Outgoing::Close).await;
                    return;
                }
            }
        }
    }
    let stream_of = |channel: u8| plan.iter().find(|p| p.0 == channel).map(|p| p.1);
    let channel_of = |stream: u32| plan.iter().find(|p| p.1 == stream).map(|p| p.0);

    let upstream = {
        let to_agent = to_agent.clone();
        let to_client = to_client.clone();
        let stdin = stream_of(STDIN);
        let resize = stream_of(RESIZE);
        async move {
            let mut reader = ws::Reader::new(client_r);
            loop {
                let msg = match reader.next().await {
                    Ok(Incoming::Message(m)) => m,
                    Ok(Incoming::Ping(p)) => {
                        let _ = to_client.send(Outgoing::Pong(p)).await;
                        continue;
                    }
                    Ok(Incoming::Close) | Err(_) => return,
                };
                let Some((&channel, data)) = msg.split_first() else {
                    continue;
                };
                let frame = match (channel, stdin, resize) {
                    (STDIN, Some(id), _) => spdy::data(id, data, false),
                    (RESIZE, _, Some(id)) => spdy::data(id, data, false),
                    (CLOSE, Some(id), _) if data.first() == Some(&STDIN) => {
                        spdy::data(id, &[], true)
                    }
                    _ => continue,
                };
                if to_agent.send(frame).await.is_err() {
                    return;
                }
            }
        }
    };
    let downstream = {
        let to_client = to_client.clone();
        let to_agent = to_agent.clone();
        async move {
            loop {
                let frame = spdy::read_frame(&mut agent_r).await;
                tracing::trace!(?frame, "remote command: frame from the agent");
                match frame {
                    Ok(Some(Frame::Data { stream, data, .. })) => {
                        let Some(channel) = channel_of(stream) else {
                            continue;
                        };
                        if data.is_empty() {
                            continue;
                        }
                        let mut msg = Vec::with_capacity(data.len() + 1);
                        msg.push(channel);
                        msg.extend_from_slice(&data);
                        if to_client.send(Outgoing::Binary(msg)).await.is_err() {
                            return;
                        }
                    }
                    Ok(Some(Frame::Ping(id))) => {
                        let _ = to_agent.send(spdy::ping(id)).await;
                    }
                    Ok(Some(Frame::GoAway)) | Ok(None) | Err(_) => return,
                    Ok(Some(_)) => {}
                }
            }
        }
    };
    // Whichever side ends first ends the session; the agent's end is the normal one.
    tokio::select! {
        _ = downstream => {}
        _ = upstream => {}
    }
    let _ = to_client.send(Outgoing::Close).await;
    drop(to_client);
    drop(to_agent);
    let _ = client_task.await;
    let _ = agent_task.await;
}

/// WebSocket binary messages (client) carrying a byte stream to and from the agent.
pub async fn tunnel(client: Upgraded, agent: Upgraded) {
    let (client_r, client_w) = tokio::io::split(TokioIo::new(client));
    let (mut agent_r, agent_w) = tokio::io::split(TokioIo::new(agent));
    let (to_client, client_task) = ws_writer(client_w);
    let (to_agent, agent_task) = byte_writer(agent_w);
    let upstream = {
        let to_client = to_client.clone();
        let to_agent = to_agent.clone();
        async move {
            let mut reader = ws::Reader::new(client_r);
            loop {
                match reader.next().await {
                    Ok(Incoming::Message(m)) => {
                        if to_agent.send(m).await.is_err() {
                            return;
                        }
                    }
                    Ok(Incoming::Ping(p)) => {
                        let _ = to_client.send(Outgoing::Pong(p)).await;
                    }
                    Ok(Incoming::Close) | Err(_) => return,
                }
            }
        }
    };
    let downstream = {
        let to_client = to_client.clone();
        async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match agent_r.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if to_client
                            .send(Outgoing::Binary(buf[..n].to_vec()))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            }
        }
    };
    tokio::select! {
        _ = downstream => {}
        _ = upstream => {}
    }
    let _ = to_client.send(Outgoing::Close).await;
    drop(to_client);
    drop(to_agent);
    let _ = client_task.await;
    let _ = agent_task.await;
}

/// The same protocol on both sides: copy bytes until either side ends.
pub async fn splice(client: Upgraded, agent: Upgraded) {
    let mut client = TokioIo::new(client);
    let mut agent = TokioIo::new(agent);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut agent).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_planned_as_the_spdy_client_opens_them() {
        let all = Streams {
            stdin: true,
            stdout: true,
            stderr: true,
            tty: false,
        };
        assert_eq!(
            plan(all),
            [
                (ERROR, 1, "error"),
                (STDIN, 3, "stdin"),
                (STDOUT, 5, "stdout"),
                (STDERR, 7, "stderr")
            ]
        );
        // A terminal merges stderr into stdout and adds the resize stream.
        let tty = Streams { tty: true, ..all };
        assert_eq!(
            plan(tty),
            [
                (ERROR, 1, "error"),
                (STDIN, 3, "stdin"),
                (STDOUT, 5, "stdout"),
                (RESIZE, 7, "resize")
            ]
        );
    }
}
