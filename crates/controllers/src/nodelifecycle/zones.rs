//! Zones and eviction rate limits (pure), as upstream: nodes are grouped by region and
//! zone; a zone where every node is not ready is in full disruption, one where more
//! than two nodes and at least 55 % are not ready is in partial disruption. When every
//! zone is in full disruption the controller assumes the problem is its own view (a
//! partitioned control plane) and stops NoExecute tainting altogether.
//!
//! New NoExecute taints are rate limited per zone (upstream's `--node-eviction-rate`
//! 0.1 node/s, `--secondary-node-eviction-rate` 0.01 node/s for partially disrupted
//! zones larger than 50 nodes, none for smaller ones), with a burst of one.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;

pub const EVICTION_RATE: f64 = 0.1;
pub const SECONDARY_EVICTION_RATE: f64 = 0.01;
pub const LARGE_CLUSTER_THRESHOLD: usize = 50;
pub const UNHEALTHY_ZONE_THRESHOLD: f64 = 0.55;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZoneState {
    Normal,
    PartialDisruption,
    FullDisruption,
}

/// A node's zone key (region and zone labels; empty for nodes without them).
pub fn zone_of(node: &Node) -> String {
    let labels = node.metadata.labels.as_ref();
    let get = |k: &str| labels.and_then(|l| l.get(k)).cloned().unwrap_or_default();
    format!(
        "{}:\u{0}:{}",
        get("topology.kubernetes.io/region"),
        get("topology.kubernetes.io/zone")
    )
}

pub fn zone_state(ready: usize, not_ready: usize) -> ZoneState {
    if ready == 0 && not_ready > 0 {
        ZoneState::FullDisruption
    } else if not_ready > 2
        && not_ready as f64 / (ready + not_ready) as f64 >= UNHEALTHY_ZONE_THRESHOLD
    {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    }
}

/// The rate at which a zone's nodes may get new NoExecute taints.
pub fn eviction_rate(state: ZoneState, zone_size: usize) -> f64 {
    match state {
        ZoneState::Normal | ZoneState::FullDisruption => EVICTION_RATE,
        ZoneState::PartialDisruption if zone_size > LARGE_CLUSTER_THRESHOLD => {
            SECONDARY_EVICTION_RATE
        }
        ZoneState::PartialDisruption => 0.0,
    }
}

/// States (and sizes) of every zone, from each node's zone and whether it is Ready.
pub fn zone_states(
    nodes: impl IntoIterator<Item = (String, bool)>,
) -> BTreeMap<String, (ZoneState, usize)> {
    let mut counts: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (zone, ready) in nodes {
        let c = counts.entry(zone).or_default();
        if ready {
            c.0 += 1;
        } else {
            c.1 += 1;
        }
    }
    counts
        .into_iter()
        .map(|(z, (r, n))| (z, (zone_state(r, n), r + n)))
        .collect()
}

/// Whether every zone is fully disrupted (and there is at least one).
pub fn all_fully_disrupted(states: &BTreeMap<String, (ZoneState, usize)>) -> bool {
    !states.is_empty()
        && states
            .values()
            .all(|(s, _)| *s == ZoneState::FullDisruption)
}

/// A token bucket with a burst of one.
#[derive(Debug)]
pub struct Bucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    pub fn new(rate: f64, now: Instant) -> Self {
        Self {
            rate,
            tokens: 1.0,
            at: now,
        }
    }

    pub fn set_rate(&mut self, rate: f64, now: Instant) {
        self.refill(now);
        self.rate = rate;
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(1.0);
        self.at = now;
    }

    /// Takes a token, or says how long until one is due (`None`: never, rate zero).
    pub fn take(&mut self, now: Instant) -> Result<(), Option<Duration>> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        if self.rate <= 0.0 {
            return Err(None);
        }
        Err(Some(Duration::from_secs_f64(
            (1.0 - self.tokens) / self.rate,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_states_as_upstream() {
        let cases = [
            ("all ready", 3, 0, ZoneState::Normal),
            ("one of two down", 1, 1, ZoneState::Normal),
            ("all down", 0, 2, ZoneState::FullDisruption),
            (
                "two of three down is too few nodes",
                1,
                2,
                ZoneState::Normal,
            ),
            ("three of five down", 2, 3, ZoneState::PartialDisruption),
            ("three of ten down", 7, 3, ZoneState::Normal),
        ];
        for (name, ready, not_ready, want) in cases {
            assert_eq!(zone_state(ready, not_ready), want, "{name}");
        }
        assert_eq!(eviction_rate(ZoneState::PartialDisruption, 10), 0.0);
        assert_eq!(
            eviction_rate(ZoneState::PartialDisruption, 60),
            SECONDARY_EVICTION_RATE
        );
        let states = zone_states([("a".to_string(), false), ("b".to_string(), false)]);
        assert!(all_fully_disrupted(&states));
        let states = zone_states([("a".to_string(), false), ("b".to_string(), true)]);
        assert!(!all_fully_disrupted(&states));
    }

    #[test]
    fn bucket_bursts_one_then_paces() {
        let t0 = Instant::now();
        let mut b = Bucket::new(0.1, t0);
        assert!(b.take(t0).is_ok());
        let wait = b.take(t0).unwrap_err().unwrap();
        assert_eq!(wait.as_secs(), 10);
        assert!(b.take(t0 + Duration::from_secs(10)).is_ok());
        let mut zero = Bucket::new(0.0, t0);
        assert!(zero.take(t0).is_ok());
        assert_eq!(zero.take(t0 + Duration::from_secs(100)), Err(None));
    }
}
