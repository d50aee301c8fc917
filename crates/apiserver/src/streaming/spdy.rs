//! The client side of SPDY/3.1 framing, as much as the remote-command protocol needs
//! toward a kubelet (which relays it to the runtime's streaming server): open streams
//! with headers, send data (with FIN to half-close), and read the server's frames.
//!
//! Header blocks must be zlib streams (one per connection). The ones sent here use
//! stored (uncompressed) deflate blocks, each followed by a sync-flush marker, which
//! every inflater reads and which need no dictionary; the server's header blocks (its SYN_REPLYs) are skipped unread, since a
//! client needs nothing from them.

const VERSION: u16 = 3;
pub const FLAG_FIN: u8 = 0x01;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;

/// A frame from the server, reduced to what a client acts on.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    Data {
        stream: u32,
        fin: bool,
        data: Vec<u8>,
    },
    /// The server accepted a stream (headers skipped); `fin` closes its side.
    Reply {
        stream: u32,
        fin: bool,
    },
    Reset {
        stream: u32,
    },
    Ping(u32),
    GoAway,
    /// Settings, window updates, headers: nothing to do.
    Other,
}

/// Writes frames; holds the connection's header compression state.
#[derive(Default)]
pub struct Encoder {
    started: bool,
}

impl Encoder {
    /// A header block: the pairs, as the continuation of this connection's zlib stream.
    fn header_block(&mut self, headers: &[(&str, &str)]) -> Vec<u8> {
        let mut raw = Vec::new();
        raw.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        for (name, value) in headers {
            // SPDY/3 header names are lower case.
            let name = name.to_ascii_lowercase();
            raw.extend_from_slice(&(name.len() as u32).to_be_bytes());
            raw.extend_from_slice(name.as_bytes());
            raw.extend_from_slice(&(value.len() as u32).to_be_bytes());
            raw.extend_from_slice(value.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() + 16);
        if !self.started {
            // zlib header: deflate, 32 KiB window, no preset dictionary used.
            out.extend_from_slice(&[0x78, 0x01]);
            self.started = true;
        }
        for chunk in raw.chunks(usize::from(u16::MAX)) {
            // A non-final stored block: header bits 000, padded to the byte; LEN, NLEN.
            let len = chunk.len() as u16;
            out.push(0x00);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&(!len).to_le_bytes());
            out.extend_from_slice(chunk);
        }
        // The sync-flush marker (an empty stored block), as zlib's Z_SYNC_FLUSH writes:
        // inflaters hand out a stored block's bytes only when the next block begins, so
        // without it the server would wait for the next frame to read this one.
        out.extend_from_slice(&[0x00, 0x00, 0x00, 0xff, 0xff]);
        out
    }

    pub fn syn_stream(&mut self, stream: u32, headers: &[(&str, &str)]) -> Vec<u8> {
        let block = self.header_block(headers);
        let mut body = Vec::with_capacity(block.len() + 10);
        body.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
        body.extend_from_slice(&0u32.to_be_bytes()); // associated-to stream
        body.extend_from_slice(&[0, 0]); // priority, slot
        body.extend_from_slice(&block);
        control(SYN_STREAM, 0, &body)
    }
}

fn control(kind: u16, flags: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.push(flags);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(body);
    out
}

/// Data frames for `data` on `stream` (split at the 24-bit length limit); `fin` marks the
/// last one. Empty data with `fin` half-closes the stream.
pub fn data(stream: u32, data: &[u8], fin: bool) -> Vec<u8> {
    const MAX: usize = 0xff_ffff;
    let mut out = Vec::with_capacity(data.len() + 8);
    let chunks: Vec<&[u8]> = if data.is_empty() {
        vec![&[]]
    } else {
        data.chunks(MAX).collect()
    };
    let last = chunks.len() - 1;
    for (i, chunk) in chunks.into_iter().enumerate() {
        out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
        out.push(if fin && i == last { FLAG_FIN } else { 0 });
        out.extend_from_slice(&(chunk.len() as u32).to_be_bytes()[1..]);
        out.extend_from_slice(chunk);
    }
    out
}

pub fn ping(id: u32) -> Vec<u8> {
    control(PING, 0, &id.to_be_bytes())
}

fn word(b: &[u8]) -> u32 {
    b.get(..4)
        .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
        .unwrap_or(0)
}

/// Reads one frame; `Ok(None)` at a clean end of the connection.
pub async fn read_frame<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
) -> std::io::Result<Option<Frame>> {
    use tokio::io::AsyncReadExt;
    let mut head = [0u8; 8];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let flags = head[4];
    let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    if head[0] & 0x80 == 0 {
        return Ok(Some(Frame::Data {
            stream: word(&head) & 0x7fff_ffff,
            fin: flags & FLAG_FIN != 0,
            data: body,
        }));
    }
    let kind = u16::from_be_bytes([head[2], head[3]]);
    let stream = word(&body) & 0x7fff_ffff;
    Ok(Some(match kind {
        SYN_REPLY => Frame::Reply {
            stream,
            fin: flags & FLAG_FIN != 0,
        },
        RST_STREAM => Frame::Reset { stream },
        PING => Frame::Ping(word(&body)),
        GOAWAY => Frame::GoAway,
        _ => Frame::Other,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syn_stream_layout_and_stored_header_block() {
        let mut enc = Encoder::default();
        let f = enc.syn_stream(1, &[("streamType", "error")]);
        // Control bit + version 3, type 1, no flags.
        assert_eq!(&f[..5], &[0x80, 0x03, 0x00, 0x01, 0x00]);
        let len = u32::from_be_bytes([0, f[5], f[6], f[7]]) as usize;
        assert_eq!(len, f.len() - 8);
        assert_eq!(&f[8..12], &1u32.to_be_bytes());
        let block = &f[18..];
        // First block of the connection: zlib header, then a stored block.
        assert_eq!(&block[..3], &[0x78, 0x01, 0x00]);
        let stored_len = u16::from_le_bytes([block[3], block[4]]);
        assert_eq!(!stored_len, u16::from_le_bytes([block[5], block[6]]));
        let raw = &block[7..7 + stored_len as usize];
        assert_eq!(&block[7 + stored_len as usize..], &[0, 0, 0, 0xff, 0xff]);
        let mut want = 1u32.to_be_bytes().to_vec();
        want.extend_from_slice(&10u32.to_be_bytes());
        want.extend_from_slice(b"streamtype");
        want.extend_from_slice(&5u32.to_be_bytes());
        want.extend_from_slice(b"error");
        assert_eq!(raw, &want[..]);
        // Later blocks continue the same zlib stream: no second header.
        let g = enc.syn_stream(3, &[("a", "b")]);
        assert_eq!(g[18], 0x00);
    }

    #[tokio::test]
    async fn reads_data_reply_reset_and_ping_frames() {
        let mut wire = data(3, b"hi", true);
        wire.extend(control(SYN_REPLY, FLAG_FIN, &[0, 0, 0, 5, 0x78, 0x01]));
        wire.extend(control(RST_STREAM, 0, &[0, 0, 0, 7, 0, 0, 0, 5]));
        wire.extend(ping(2));
        wire.extend(control(4, 0, &[0, 0, 0, 0]));
        let mut r = &wire[..];
        let want = [
            Frame::Data {
                stream: 3,
                fin: true,
                data: b"hi".to_vec(),
            },
            Frame::Reply {
                stream: 5,
                fin: true,
            },
            Frame::Reset { stream: 7 },
            Frame::Ping(2),
            Frame::Other,
        ];
        for w in want {
            assert_eq!(read_frame(&mut r).await.unwrap(), Some(w));
        }
        assert_eq!(read_frame(&mut r).await.unwrap(), None);
    }

    #[test]
    fn empty_fin_frame_half_closes() {
        assert_eq!(data(1, b"", true), [0, 0, 0, 1, FLAG_FIN, 0, 0, 0]);
    }
}
