//! The server side of WebSocket (RFC 6455), only as much as the streaming subresources
//! need: the handshake answer, and reading and writing binary messages on an upgraded
//! connection (clients mask, servers do not; fragments are joined; pings answered by
//! the caller through [`Incoming::Ping`]).

use base64::Engine;
use http::HeaderMap;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Larger messages end the connection (kubectl sends at most 32 KiB per message).
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

const OP_CONTINUATION: u8 = 0;
const OP_TEXT: u8 = 1;
const OP_BINARY: u8 = 2;
const OP_CLOSE: u8 = 8;
const OP_PING: u8 = 9;
const OP_PONG: u8 = 10;

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Whether the request asks for a WebSocket upgrade.
pub fn is_websocket(headers: &HeaderMap) -> bool {
    let upgrade = header(headers, "upgrade").unwrap_or("");
    let connection = header(headers, "connection").unwrap_or("");
    upgrade.eq_ignore_ascii_case("websocket")
        && connection
            .split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// The subprotocols the client offers, in its order.
pub fn offered_protocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// The `Sec-WebSocket-Accept` value for the client's key, or `None` when the request
/// lacks a key or speaks another version.
pub fn accept_key(headers: &HeaderMap) -> Option<String> {
    if header(headers, "sec-websocket-version") != Some("13") {
        return None;
    }
    let key = header(headers, "sec-websocket-key")?.trim();
    let digest = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{key}{GUID}").as_bytes(),
    );
    Some(base64::engine::general_purpose::STANDARD.encode(digest.as_ref()))
}

/// What arrives from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A binary message (text messages too, as bytes).
    Message(Vec<u8>),
    Ping(Vec<u8>),
    /// A close frame, or the connection ended.
    Close,
}

/// Reads messages from the client; fragments are kept across control frames.
pub struct Reader<R> {
    r: R,
    partial: Vec<u8>,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    pub fn new(r: R) -> Self {
        Self {
            r,
            partial: Vec::new(),
        }
    }

    /// The next message or control frame.
    pub async fn next(&mut self) -> std::io::Result<Incoming> {
        let r = &mut self.r;
        loop {
            let mut head = [0u8; 2];
            if let Err(e) = r.read_exact(&mut head).await {
                if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    return Ok(Incoming::Close);
                }
                return Err(e);
            }
            let fin = head[0] & 0x80 != 0;
            let opcode = head[0] & 0x0f;
            let masked = head[1] & 0x80 != 0;
            let len = match head[1] & 0x7f {
                126 => u64::from(r.read_u16().await?),
                127 => r.read_u64().await?,
                n => u64::from(n),
            };
            if len > MAX_MESSAGE as u64 || self.partial.len() + len as usize > MAX_MESSAGE {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "websocket message too large",
                ));
            }
            let mut mask = [0u8; 4];
            if masked {
                r.read_exact(&mut mask).await?;
            }
            let mut payload = vec![0u8; len as usize];
            r.read_exact(&mut payload).await?;
            if masked {
                for (i, b) in payload.iter_mut().enumerate() {
                    *b ^= mask[i % 4];
                }
            }
            match opcode {
                OP_CLOSE => return Ok(Incoming::Close),
                OP_PING => return Ok(Incoming::Ping(payload)),
                OP_PONG => continue,
                OP_TEXT | OP_BINARY | OP_CONTINUATION => {
                    self.partial.extend_from_slice(&payload);
                    if fin {
                        return Ok(Incoming::Message(std::mem::take(&mut self.partial)));
                    }
                }
                _ => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("unknown websocket opcode {opcode}"),
                    ))
                }
            }
        }
    }
}

fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

/// What the server sends.
#[derive(Debug)]
pub enum Outgoing {
    Binary(Vec<u8>),
    Pong(Vec<u8>),
    /// Normal closure (1000); the last frame.
    Close,
}

pub async fn write<W: AsyncWrite + Unpin>(w: &mut W, out: &Outgoing) -> std::io::Result<()> {
    let bytes = match out {
        Outgoing::Binary(b) => frame(OP_BINARY, b),
        Outgoing::Pong(b) => frame(OP_PONG, b),
        Outgoing::Close => frame(OP_CLOSE, &1000u16.to_be_bytes()),
    };
    w.write_all(&bytes).await?;
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_is_the_rfc_example() {
        let mut h = HeaderMap::new();
        h.insert(
            "sec-websocket-key",
            "dGhlIHNhbXBsZSBub25jZQ==".parse().unwrap(),
        );
        h.insert("sec-websocket-version", "13".parse().unwrap());
        assert_eq!(accept_key(&h).unwrap(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        h.insert("sec-websocket-version", "8".parse().unwrap());
        assert_eq!(accept_key(&h), None);
    }

    #[test]
    fn protocols_are_listed_in_order() {
        let mut h = HeaderMap::new();
        h.append(
            "sec-websocket-protocol",
            "v5.channel.k8s.io, v4.channel.k8s.io".parse().unwrap(),
        );
        h.append("sec-websocket-protocol", "channel.k8s.io".parse().unwrap());
        assert_eq!(
            offered_protocols(&h),
            ["v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io"]
        );
    }

    fn masked(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        assert!(payload.len() < 126);
        out.push(0x80 | payload.len() as u8);
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    #[tokio::test]
    async fn reads_masked_fragmented_messages_and_control_frames() {
        let mut wire = masked(OP_BINARY, false, b"\x00hel");
        wire.extend(masked(OP_PING, true, b"p"));
        wire.extend(masked(OP_CONTINUATION, true, b"lo"));
        wire.extend(masked(OP_CLOSE, true, b""));
        let mut r = Reader::new(&wire[..]);
        // A ping between fragments is answered first; the message comes whole after.
        assert_eq!(r.next().await.unwrap(), Incoming::Ping(b"p".to_vec()));
        assert_eq!(
            r.next().await.unwrap(),
            Incoming::Message(b"\x00hello".to_vec())
        );
        assert_eq!(r.next().await.unwrap(), Incoming::Close);
        assert_eq!(r.next().await.unwrap(), Incoming::Close);
    }

    #[tokio::test]
    async fn writes_unmasked_frames_with_extended_lengths() {
        let mut out = Vec::new();
        write(&mut out, &Outgoing::Binary(vec![7; 300]))
            .await
            .unwrap();
        assert_eq!(&out[..4], &[0x82, 126, 1, 44]);
        assert_eq!(out.len(), 304);
    }
}
