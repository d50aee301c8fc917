//! Real peers for Skiff's tests and benchmarks. Not a mock: it starts the real `etcd`
//! binary (Debian's `etcd-server`) on free loopback ports with a temporary data directory
//! and stops it when dropped, and runs a real HTTPS admission webhook server
//! ([`webhook`]).
//!
//! A missing `etcd` binary is a failure with a message saying what to install, never a
//! silent skip.

mod etcd;
mod ports;
pub mod report;
pub mod webhook;

pub use etcd::{EtcdCluster, EtcdMember, TlsFiles};
pub use ports::free_port;
