//! The service proxy (kube-proxy's nftables mode, in every node agent). Services and
//! their EndpointSlices become one nftables table that Skiff owns and nothing else
//! touches: cluster IPs and node ports are matched by verdict maps and spread evenly over
//! ready endpoints with `numgen`; a Service without endpoints rejects at once.
//! Changes are batched and applied as one `nft -f` transaction holding only the chains
//! and map elements that changed.

mod model;
mod nft;
mod rules;
mod sync;
mod table;

pub use model::{Endpoint, Protocol, ServicePort, TrafficPolicy};
pub use nft::{Nft, NftError};
pub use rules::{Ruleset, TABLE};
pub use sync::{run, Settings, SyncReport};
