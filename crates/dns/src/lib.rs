//! Cluster DNS. Names in the cluster domain are answered from Services and
//! EndpointSlices as CoreDNS's kubernetes plugin does (`<svc>.<ns>.svc.<domain>`, headless
//! endpoints, `_port._proto` SRV, `<a-b-c-d>.<ns>.pod.<domain>`, PTR, ExternalName as
//! CNAME); every other name goes to the host's resolvers, with a cache.

mod answer;
mod cache;
mod forward;
mod server;
mod view;

pub use answer::{answer, Answer, ClusterView, Endpoint, ServiceInfo, ServicePort};
pub use forward::{upstreams_from_resolv_conf, Forwarder};
pub use server::{serve, Settings};
pub use view::InformerView;
