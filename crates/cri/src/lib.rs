//! The container runtime side of a node. Skiff's agent speaks CRI v1 (gRPC over a unix
//! socket) to containerd, as the kubelet does; this crate holds the client and (later)
//! what starts containerd and builds the images Skiff needs without any download.

mod connect;

pub use connect::{connect, Cri, CriError};
/// CRI v1 messages and service clients, generated from upstream's `api.proto`.
pub use k8s_cri::v1 as api;
