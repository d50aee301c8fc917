//! Pods on this node: turning a Pod into CRI calls ([`spec`]), its status from what the
//! runtime shows ([`status`]), QoS ([`qos`]), restart back-off ([`backoff`]) and the
//! per-pod sync that ties them together ([`sync`]).

pub mod backoff;
pub mod qos;
pub mod spec;
pub mod status;
pub mod sync;
