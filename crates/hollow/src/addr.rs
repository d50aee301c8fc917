//! Addresses for hollow nodes and their pods, from blocks that are never routed so a
//! stray packet to one can reach nothing real:
//!
//! - node `i` (its global index, `start_index + k`) has InternalIP `198.18.0.0 + i + 1`
//!   (198.18.0.0/15, RFC 2544's benchmarking block): indexes 0..=131_069;
//! - node `i` owns the pod range `100.64.0.0 + i * 512` as a /23 (100.64.0.0/10, RFC
//!   6598's shared address space): indexes 0..=8_191. Inside it, offset 0 is the network,
//!   1 the gateway and 511 the broadcast address, as host-local IPAM would leave them;
//!   pods get offsets 2..=510 (509 addresses, more than the kubelet's 110 pods).

use std::net::Ipv4Addr;

/// How many node indexes the pod ranges cover (100.64.0.0/10 split into /23s).
pub const MAX_NODES: u32 = 1 << 13;
const NODE_BASE: u32 = u32::from_be_bytes([198, 18, 0, 0]);
const POD_BASE: u32 = u32::from_be_bytes([100, 64, 0, 0]);
const POD_RANGE: u32 = 512;
const FIRST_POD_OFFSET: u16 = 2;
const LAST_POD_OFFSET: u16 = 510;
/// Pod addresses a node can hand out.
pub const PODS_PER_NODE: u32 = (LAST_POD_OFFSET - FIRST_POD_OFFSET + 1) as u32;

/// InternalIP of the node with global index `index` (< [`MAX_NODES`]).
pub fn node_ip(index: u32) -> Ipv4Addr {
    Ipv4Addr::from(NODE_BASE + index + 1)
}

/// The pod address at `offset` in node `index`'s range.
pub fn pod_ip(index: u32, offset: u16) -> Ipv4Addr {
    Ipv4Addr::from(POD_BASE + index * POD_RANGE + u32::from(offset))
}

/// The node's pod range in CIDR notation (for docs and logs).
pub fn pod_cidr(index: u32) -> String {
    format!("{}/23", Ipv4Addr::from(POD_BASE + index * POD_RANGE))
}

/// Which offset `ip` is in node `index`'s range, if it is a pod address there.
pub fn pod_offset(index: u32, ip: &str) -> Option<u16> {
    let ip: Ipv4Addr = ip.parse().ok()?;
    let start = POD_BASE + index * POD_RANGE;
    let off = u32::from(ip).checked_sub(start)?;
    let off = u16::try_from(off).ok()?;
    (FIRST_POD_OFFSET..=LAST_POD_OFFSET)
        .contains(&off)
        .then_some(off)
}

/// Which pod offsets of one node are in use: a 512-bit map, 64 bytes a node.
#[derive(Clone, Default)]
pub struct PodIps {
    used: [u64; 8],
}

impl PodIps {
    /// The lowest free offset, now taken; `None` when the range is full.
    pub fn allocate(&mut self) -> Option<u16> {
        (FIRST_POD_OFFSET..=LAST_POD_OFFSET).find(|&off| {
            let (w, b) = (usize::from(off / 64), off % 64);
            if self.used[w] & (1 << b) == 0 {
                self.used[w] |= 1 << b;
                true
            } else {
                false
            }
        })
    }

    /// Marks `offset` used (a pod already running with it, seen after a restart).
    pub fn mark(&mut self, offset: u16) {
        if offset <= LAST_POD_OFFSET {
            self.used[usize::from(offset / 64)] |= 1 << (offset % 64);
        }
    }

    pub fn release(&mut self, offset: u16) {
        if offset <= LAST_POD_OFFSET {
            self.used[usize::from(offset / 64)] &= !(1 << (offset % 64));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_and_pod_addresses_follow_the_documented_scheme() {
        assert_eq!(node_ip(0).to_string(), "198.18.0.1");
        assert_eq!(node_ip(255).to_string(), "198.18.1.0");
        assert_eq!(node_ip(MAX_NODES - 1).to_string(), "198.18.32.0");
        assert_eq!(pod_ip(0, 2).to_string(), "100.64.0.2");
        assert_eq!(pod_ip(1, 2).to_string(), "100.64.2.2");
        assert_eq!(pod_cidr(3), "100.64.6.0/23");
        // The last node's range ends at the top of 100.64.0.0/10.
        assert_eq!(pod_ip(MAX_NODES - 1, 511).to_string(), "100.127.255.255");
    }

    #[test]
    fn offsets_are_recognised_only_inside_the_nodes_usable_range() {
        let cases = [
            ("first usable", 1, "100.64.2.2", Some(2)),
            ("last usable", 1, "100.64.3.254", Some(510)),
            ("gateway", 1, "100.64.2.1", None),
            ("broadcast", 1, "100.64.3.255", None),
            ("other node", 1, "100.64.4.2", None),
            ("below", 1, "100.64.0.9", None),
            ("not an address", 1, "x", None),
        ];
        for (name, node, ip, want) in cases {
            assert_eq!(pod_offset(node, ip), want, "{name}");
        }
    }

    #[test]
    fn allocation_takes_the_lowest_free_offset_and_reuses_released_ones() {
        let mut ips = PodIps::default();
        assert_eq!(ips.allocate(), Some(2));
        ips.mark(3);
        assert_eq!(ips.allocate(), Some(4));
        ips.release(2);
        assert_eq!(ips.allocate(), Some(2));
        let mut n = 3;
        while ips.allocate().is_some() {
            n += 1;
        }
        assert_eq!(n, PODS_PER_NODE);
    }
}
