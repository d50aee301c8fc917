//! Streaming to and from node agents: the API server's kubelet client, and the protocols
//! the streaming subresources need (WebSocket server side, SPDY client side) with the
//! relays between them.

pub mod kubelet;
pub mod relay;
pub mod spdy;
pub mod ws;
