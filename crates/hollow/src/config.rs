//! What a set of hollow nodes looks like, with the kubelet's defaults, and the parsers
//! for the flag spellings the kubelet uses (`--node-labels`, `--register-with-taints`).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Taint;

use crate::addr;
use crate::HollowError;

/// A set of hollow nodes run by one process. Node `k` (0-based, `k < count`) is named
/// `{name_prefix}{start_index + k}`; two processes with disjoint index ranges run
/// disjoint node sets against one cluster.
#[derive(Clone, Debug)]
pub struct Config {
    /// How many nodes (`--node-count`).
    pub count: u32,
    /// Node name prefix (`--node-name-prefix`, default `hollow-node-`).
    pub name_prefix: String,
    /// Index of the first node (`--node-start-index`, default 0). Also picks the node's
    /// addresses, so it must be below 8,192 - `count`.
    pub start_index: u32,
    /// `status.capacity.cpu` (`--node-cpu`, default `4`).
    pub cpu: String,
    /// `status.capacity.memory` (`--node-memory`, default `16Gi`).
    pub memory: String,
    /// `status.capacity.ephemeral-storage` (`--node-ephemeral-storage`, default `100Gi`).
    pub ephemeral_storage: String,
    /// `status.capacity.pods` (`--max-pods`, as the kubelet; default 110, at most 509).
    pub pods: u32,
    /// Extra node labels (`--node-labels k=v,k2=v2`, as the kubelet; see [`parse_labels`]).
    pub labels: BTreeMap<String, String>,
    /// Taints the nodes register with (`--register-with-taints k=v:Effect,...`, as the
    /// kubelet; see [`parse_taints`]). Only set when a Node is created, as the kubelet.
    pub taints: Vec<Taint>,
    /// How often each node renews its Lease (`--node-heartbeat-interval`, default 10 s:
    /// the kubelet renews every quarter of the 40 s lease duration and has no flag for
    /// it). Renewals of all nodes are spread evenly over the interval.
    pub heartbeat_interval: Duration,
    /// `spec.leaseDurationSeconds` of node Leases (`--node-lease-duration-seconds`, 40).
    pub lease_duration_seconds: i32,
    /// How often each node re-posts its status although nothing changed
    /// (`--node-status-report-frequency`, after the kubelet's configuration field
    /// nodeStatusReportFrequency, whose default is 5 min; here 60 s). Spread like
    /// renewals. A changed condition is re-posted at once regardless.
    pub status_update_interval: Duration,
    /// Bound on concurrent pod writes (`--max-in-flight`, default 48). Lease and node
    /// status writes have a pool of the same size of their own, so heartbeats never
    /// queue behind a burst of pod starts.
    pub max_in_flight: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            count: 1,
            name_prefix: "hollow-node-".into(),
            start_index: 0,
            cpu: "4".into(),
            memory: "16Gi".into(),
            ephemeral_storage: "100Gi".into(),
            pods: 110,
            labels: BTreeMap::new(),
            taints: Vec::new(),
            heartbeat_interval: Duration::from_secs(10),
            lease_duration_seconds: 40,
            status_update_interval: Duration::from_secs(60),
            max_in_flight: 48,
        }
    }
}

impl Config {
    /// Name of the node with local index `k`.
    pub fn node_name(&self, k: u32) -> String {
        format!("{}{}", self.name_prefix, self.start_index + k)
    }

    /// Local index of `name`, if it is one of this set's nodes.
    pub fn node_index(&self, name: &str) -> Option<u32> {
        let digits = name.strip_prefix(self.name_prefix.as_str())?;
        // "hollow-node-007" is not node 7: only the canonical spelling is ours.
        if digits.is_empty() || (digits.len() > 1 && digits.starts_with('0')) {
            return None;
        }
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let global: u32 = digits.parse().ok()?;
        let k = global.checked_sub(self.start_index)?;
        (k < self.count).then_some(k)
    }

    /// Global index (what addresses are derived from) of local node `k`.
    pub fn global_index(&self, k: u32) -> u32 {
        self.start_index + k
    }

    pub fn validate(&self) -> Result<(), HollowError> {
        let bad = |m: String| Err(HollowError::Config(m));
        if self.count == 0 {
            return bad("count must be at least 1".into());
        }
        match self.start_index.checked_add(self.count) {
            Some(end) if end <= addr::MAX_NODES => {}
            _ => {
                return bad(format!(
                    "start_index + count must be at most {} (each node has a /23 of 100.64.0.0/10)",
                    addr::MAX_NODES
                ))
            }
        }
        if self.pods == 0 || self.pods > addr::PODS_PER_NODE {
            return bad(format!(
                "pods must be between 1 and {} (the addresses in a node's /23)",
                addr::PODS_PER_NODE
            ));
        }
        if self.heartbeat_interval.is_zero() || self.status_update_interval.is_zero() {
            return bad("heartbeat and status update intervals must be positive".into());
        }
        if self.lease_duration_seconds <= 0 {
            return bad("lease_duration_seconds must be positive".into());
        }
        if self.max_in_flight == 0 {
            return bad("max_in_flight must be at least 1".into());
        }
        for (what, q) in [
            ("cpu", &self.cpu),
            ("memory", &self.memory),
            ("ephemeral_storage", &self.ephemeral_storage),
        ] {
            match skiff_api::quantity::parse(q) {
                Ok(v) if !v.is_negative() => {}
                Ok(_) => return bad(format!("{what} {q:?} is negative")),
                Err(e) => return bad(format!("{what} {q:?}: {e}")),
            }
        }
        Ok(())
    }
}

/// Parses the kubelet's `--node-labels` value: `key=value` pairs separated by commas.
pub fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, HollowError> {
    let mut labels = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| HollowError::Config(format!("label {part:?} is not key=value")))?;
        if k.is_empty() {
            return Err(HollowError::Config(format!("label {part:?} has no key")));
        }
        labels.insert(k.to_string(), v.to_string());
    }
    Ok(labels)
}

/// Parses the kubelet's `--register-with-taints` value: `key[=value]:Effect` items
/// separated by commas, Effect one of NoSchedule, PreferNoSchedule, NoExecute.
pub fn parse_taints(s: &str) -> Result<Vec<Taint>, HollowError> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|part| {
            let (kv, effect) = part.rsplit_once(':').ok_or_else(|| {
                HollowError::Config(format!("taint {part:?} is not key[=value]:Effect"))
            })?;
            if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
                return Err(HollowError::Config(format!(
                    "taint {part:?}: effect must be NoSchedule, PreferNoSchedule or NoExecute"
                )));
            }
            let (key, value) = match kv.split_once('=') {
                Some((k, v)) => (k, Some(v.to_string())),
                None => (kv, None),
            };
            if key.is_empty() {
                return Err(HollowError::Config(format!("taint {part:?} has no key")));
            }
            Ok(Taint {
                key: key.to_string(),
                value,
                effect: effect.to_string(),
                time_added: None,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_map_to_local_indexes_only_within_the_set() {
        let c = Config {
            count: 3,
            start_index: 10,
            ..Config::default()
        };
        assert_eq!(c.node_name(0), "hollow-node-10");
        let cases = [
            ("first", "hollow-node-10", Some(0)),
            ("last", "hollow-node-12", Some(2)),
            ("below the range", "hollow-node-9", None),
            ("above the range", "hollow-node-13", None),
            ("leading zero", "hollow-node-010", None),
            ("other prefix", "node-10", None),
            ("no number", "hollow-node-", None),
            ("suffix", "hollow-node-10a", None),
        ];
        for (name, node, want) in cases {
            assert_eq!(c.node_index(node), want, "{name}");
        }
    }

    #[test]
    fn validation_rejects_what_cannot_be_addressed() {
        let ok = Config::default();
        assert!(ok.validate().is_ok());
        let cases = [
            Config {
                count: 0,
                ..Config::default()
            },
            Config {
                start_index: 8_000,
                count: 500,
                ..Config::default()
            },
            Config {
                pods: 600,
                ..Config::default()
            },
            Config {
                heartbeat_interval: Duration::ZERO,
                ..Config::default()
            },
            Config {
                cpu: "".into(),
                ..Config::default()
            },
            Config {
                max_in_flight: 0,
                ..Config::default()
            },
            Config {
                memory: "16GiB".into(),
                ..Config::default()
            },
            Config {
                ephemeral_storage: "-1Gi".into(),
                ..Config::default()
            },
        ];
        for c in cases {
            assert!(c.validate().is_err(), "{c:?}");
        }
    }

    #[test]
    fn labels_and_taints_parse_like_the_kubelets_flags() {
        let l = parse_labels("a=1, zone=z1,empty=").unwrap();
        assert_eq!(l.get("a").map(String::as_str), Some("1"));
        assert_eq!(l.get("empty").map(String::as_str), Some(""));
        assert!(parse_labels("novalue").is_err());
        let t = parse_taints("dedicated=gpu:NoSchedule,node.kubernetes.io/x:NoExecute").unwrap();
        assert_eq!(t[0].key, "dedicated");
        assert_eq!(t[0].value.as_deref(), Some("gpu"));
        assert_eq!(t[0].effect, "NoSchedule");
        assert_eq!(t[1].key, "node.kubernetes.io/x");
        assert_eq!(t[1].value, None);
        assert!(parse_taints("k=v:Sometimes").is_err());
        assert!(parse_taints("k=v").is_err());
        assert!(parse_taints("").unwrap().is_empty());
    }
}
