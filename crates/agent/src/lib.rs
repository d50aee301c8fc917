//! The node agent, Skiff's kubelet: it registers its Node and keeps its Lease, runs the
//! pods bound to it as real containers through CRI, probes them, mounts their volumes,
//! reports their status as upstream does, and serves logs, exec, attach and
//! port-forward to the API server.

pub mod server;
