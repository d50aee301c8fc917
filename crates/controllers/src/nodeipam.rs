//! Node IPAM controller (upstream's `node-ipam-controller` with the range allocator):
//! every Node gets one pod subnet (`spec.podCIDR`/`spec.podCIDRs`) carved from the
//! cluster CIDR (`--cluster-cidr`, default 10.42.0.0/16, one /24 per node), which its
//! agent hands to CNI. A subnet is never moved once set (the field is immutable); a
//! deleted Node's subnet becomes free again.
//!
//! One worker allocates, so two nodes never get the same subnet; allocations not yet
//! seen in the cache are remembered until they are.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::Api;
use skiff_runtime::events::{EventType, Recorder};
use skiff_runtime::{Informer, ObjectKey, WorkQueue};

use crate::{Ctx, Loop};

/// An IPv4 CIDR such as 10.42.0.0/16 (the address is masked to the prefix).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Cidr {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl std::str::FromStr for Ipv4Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a CIDR (want address/prefix)"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("{s:?}: {addr:?} is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("{s:?}: prefix must be 0..32"))?;
        Ok(Self {
            network: Ipv4Addr::from(u32::from(addr) & mask(prefix)),
            prefix,
        })
    }
}

impl std::fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl Ipv4Cidr {
    /// How many node subnets of `/node_prefix` fit (0 when the node prefix is not longer).
    pub fn subnets(&self, node_prefix: u8) -> u64 {
        if node_prefix < self.prefix || node_prefix > 32 {
            return 0;
        }
        1u64 << (node_prefix - self.prefix)
    }

    /// The `i`th subnet of `/node_prefix` inside this range.
    pub fn subnet(&self, node_prefix: u8, i: u64) -> Ipv4Cidr {
        let step = 1u64 << (32 - u32::from(node_prefix));
        let base = u64::from(u32::from(self.network)) + i * step;
        Ipv4Cidr {
            network: Ipv4Addr::from(base as u32),
            prefix: node_prefix,
        }
    }

    /// Index of `other` as a `/node_prefix` subnet of this range, if it is one.
    pub fn index_of(&self, node_prefix: u8, other: &Ipv4Cidr) -> Option<u64> {
        if other.prefix != node_prefix
            || u32::from(other.network) & mask(self.prefix) != u32::from(self.network)
        {
            return None;
        }
        let offset = u64::from(u32::from(other.network) - u32::from(self.network));
        Some(offset >> (32 - u32::from(node_prefix)))
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.network)
    }
}

/// The lowest free subnet index, given the taken ones; `None` when the range is full.
pub fn first_free(total: u64, taken: &BTreeSet<u64>) -> Option<u64> {
    (0..total).find(|i| !taken.contains(i))
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("setting the pod CIDR of node {node}: {source}")]
    Patch {
        node: String,
        #[source]
        source: kube::Error,
    },
}

struct State {
    client: kube::Client,
    nodes: Informer<Node>,
    range: Ipv4Cidr,
    node_prefix: u8,
    /// Node name -> subnet index this controller assigned and the cache may not show yet.
    assigned: Mutex<BTreeMap<String, u64>>,
    recorder: Recorder,
    /// Nodes already told that the range is full.
    reported_full: Mutex<BTreeSet<String>>,
}

/// How often a node waiting for a subnet in a full range looks again.
const FULL_RETRY: Duration = Duration::from_secs(60);

fn pod_cidr(node: &Node) -> Option<&str> {
    node.spec
        .as_ref()?
        .pod_cidr
        .as_deref()
        .filter(|c| !c.is_empty())
}

impl State {
    fn taken(&self) -> BTreeSet<u64> {
        let mut taken: BTreeSet<u64> = self
            .nodes
            .list()
            .iter()
            .filter_map(|n| pod_cidr(n)?.parse::<Ipv4Cidr>().ok())
            .filter_map(|c| self.range.index_of(self.node_prefix, &c))
            .collect();
        let assigned = self.assigned.lock().unwrap_or_else(|e| e.into_inner());
        taken.extend(assigned.values().copied());
        taken
    }

    async fn reconcile(&self, name: String) -> Result<Option<Duration>, Error> {
        let Some(node) = self.nodes.get_named(None, &name) else {
            // Deleted: its subnet is free once the cache no longer shows the node.
            self.assigned
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&name);
            self.reported_full
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&name);
            return Ok(None);
        };
        if pod_cidr(&node).is_some() {
            self.assigned
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&name);
            return Ok(None);
        }
        let existing = self
            .assigned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&name)
            .copied();
        let index = match existing {
            Some(i) => i,
            None => {
                let total = self.range.subnets(self.node_prefix);
                let Some(i) = first_free(total, &self.taken()) else {
                    // Not an error to retry fast: a subnet frees only when a node goes.
                    // Say so once per node, then look again now and then.
                    let first = self
                        .reported_full
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(name.clone());
                    if first {
                        tracing::warn!(node = %name, range = %self.range, "no pod CIDR left for the node");
                        self.recorder.record(
                            skiff_runtime::events::reference(node.as_ref()),
                            EventType::Normal,
                            "CIDRNotAvailable",
                            format!("Node {name} status is now: CIDRNotAvailable"),
                        );
                    }
                    return Ok(Some(FULL_RETRY));
                };
                i
            }
        };
        let cidr = self.range.subnet(self.node_prefix, index).to_string();
        self.assigned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.clone(), index);
        let patch = serde_json::json!({ "spec": { "podCIDR": cidr, "podCIDRs": [cidr] } });
        let api: Api<Node> = Api::all(self.client.clone());
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => {
                tracing::info!(node = %name, %cidr, "allocated the node's pod CIDR");
                Ok(None)
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {
                self.assigned
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&name);
                Ok(None)
            }
            Err(source) => Err(Error::Patch { node: name, source }),
        }
    }
}

pub fn controller(ctx: &Ctx) -> Loop {
    let queue: WorkQueue<String> = WorkQueue::new("nodeipam", ctx.settings.max_retry_delay);
    let nodes = ctx.informers.informer::<Node>();
    {
        let q = queue.clone();
        nodes.on_change(move |c| {
            let node = c.object();
            // New nodes, nodes whose CIDR was cleared, and deletions (to free a subnet).
            if c.is_delete() || pod_cidr(node).is_none() {
                q.add(ObjectKey::of(node.as_ref()).name);
            }
        });
    }
    let state = Arc::new(State {
        recorder: ctx.recorder("node-ipam-controller"),
        client: ctx.client.clone(),
        nodes,
        range: ctx.settings.cluster_cidr,
        node_prefix: ctx.settings.node_cidr_mask_size,
        assigned: Mutex::new(BTreeMap::new()),
        reported_full: Mutex::new(BTreeSet::new()),
    });
    // One worker: allocation reads and extends the set of taken subnets.
    ctx.run_workers(
        queue,
        1,
        state,
        |s, name| async move { s.reconcile(name).await },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_masked_and_split_into_node_subnets() {
        let c: Ipv4Cidr = "10.42.7.9/16".parse().unwrap();
        assert_eq!(c.to_string(), "10.42.0.0/16");
        assert_eq!(c.subnets(24), 256);
        assert_eq!(c.subnet(24, 0).to_string(), "10.42.0.0/24");
        assert_eq!(c.subnet(24, 255).to_string(), "10.42.255.0/24");
        let s: Ipv4Cidr = "10.42.3.0/24".parse().unwrap();
        assert_eq!(c.index_of(24, &s), Some(3));
        assert_eq!(c.index_of(24, &"10.43.3.0/24".parse().unwrap()), None);
        assert_eq!(c.index_of(24, &"10.42.3.0/25".parse().unwrap()), None);
        assert!(c.contains("10.42.200.1".parse().unwrap()));
        assert!(!c.contains("10.41.0.1".parse().unwrap()));
        assert_eq!(c.subnets(8), 0);
        for bad in ["10.42.0.0", "10.42.0.0/33", "x/8", "10.42.0/16"] {
            assert!(bad.parse::<Ipv4Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_lowest_free_subnet_is_taken_and_none_when_full() {
        let taken: BTreeSet<u64> = [0, 1, 3].into();
        assert_eq!(first_free(4, &taken), Some(2));
        let full: BTreeSet<u64> = [0, 1, 2, 3].into();
        assert_eq!(first_free(4, &full), None);
        assert_eq!(first_free(4, &BTreeSet::new()), Some(0));
    }
}
