//! The container runtime side of a node. Skiff's agent speaks CRI v1 (gRPC over a unix
//! socket) to containerd, as the kubelet does. This crate holds:
//! - the CRI client ([`connect`], [`Cri`]);
//! - containerd as the agent's child process ([`containerd::Containerd`]);
//! - images without any download: a docker-archive writer, Skiff's own sandbox ("pause")
//!   image, a busybox test image, and importing archives ([`image`]);
//! - the node's CNI bridge network ([`cni`]).
//!
//! It is not the agent: pods, volumes and probes live in skiff-agent.

pub mod cni;
mod connect;
pub mod containerd;
mod error;
pub mod image;

pub use connect::{connect, Cri, CriError};
pub use containerd::{Containerd, ContainerdOptions};
pub use error::RuntimeError;
pub use image::{image_present, PAUSE_IMAGE};
/// CRI v1 messages and service clients, generated from upstream's `api.proto`.
pub use k8s_cri::v1 as api;
