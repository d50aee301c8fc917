//! The rules of every Service, kept per Service, so that a change rebuilds and diffs only
//! the Services it touches instead of the whole table (kube-proxy's partial sync).
//!
//! Chains, endpoint maps and affinity sets belong to one Service each (their names carry
//! its id). Map
//! elements are keyed by address and port, and two Services may claim the same key (the
//! same external IP and port, say): every claim is remembered and the Service sorting last
//! by namespace and name wins, as [`Ruleset::build`] over all Services decides it, so the
//! kernel holds the same rules whichever way they were computed.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::model::ServicePort;
use crate::rules::Ruleset;

/// A Service: (namespace, name).
pub type ServiceKey = (String, String);

#[derive(Default)]
pub struct Table {
    cluster_cidr: Option<String>,
    services: HashMap<ServiceKey, Ruleset>,
    /// (map, element key) → claiming Service → verdict.
    claims: HashMap<(String, String), BTreeMap<ServiceKey, String>>,
}

/// What one sync changes: the touched part of the table before and after. Its script is
/// what `Ruleset::diff_script` would give for the whole table, computed from this part.
#[derive(Default)]
pub struct Delta {
    before: Ruleset,
    after: Ruleset,
    /// Element keys already touched: their state before this delta is recorded (an
    /// absent key in `before` was absent from the kernel).
    seen: HashSet<(String, String)>,
}

impl Delta {
    /// The `nft` script that applies the change.
    pub fn script(&self) -> String {
        self.before.diff_script(&self.after)
    }
}

impl Table {
    pub fn new(cluster_cidr: Option<&str>) -> Self {
        Self {
            cluster_cidr: cluster_cidr.map(str::to_string),
            ..Self::default()
        }
    }

    pub fn cluster_cidr(&self) -> Option<&str> {
        self.cluster_cidr.as_deref()
    }

    pub fn services(&self) -> usize {
        self.services.len()
    }

    /// How many chains and map elements the table holds.
    pub fn size(&self) -> (usize, usize) {
        let chains = self.services.values().map(|s| s.chains.len()).sum();
        (chains, self.claims.len())
    }

    /// Sets one Service's ports (none: the Service is gone or proxies nothing), recording
    /// in `delta` what that changes. Give each Service at most once per delta.
    pub fn update(&mut self, key: ServiceKey, ports: &[ServicePort], delta: &mut Delta) {
        self.set(key, ports, Some(delta));
    }

    /// Sets one Service's ports without recording a change (filling the table for a
    /// whole-table install).
    pub fn insert(&mut self, key: ServiceKey, ports: &[ServicePort]) {
        self.set(key, ports, None);
    }

    fn set(&mut self, key: ServiceKey, ports: &[ServicePort], mut delta: Option<&mut Delta>) {
        let new = Ruleset::build(ports, self.cluster_cidr.as_deref());
        let empty = Ruleset::default();
        let old = self.services.get(&key).unwrap_or(&empty);
        if new == *old {
            return;
        }
        if let Some(delta) = delta.as_deref_mut() {
            for (name, rules) in &old.chains {
                delta
                    .before
                    .chains
                    .entry(name.clone())
                    .or_insert_with(|| rules.clone());
            }
            for (name, rules) in &new.chains {
                delta.after.chains.insert(name.clone(), rules.clone());
            }
            for (name, timeout) in &old.sets {
                delta.before.sets.entry(name.clone()).or_insert(*timeout);
            }
            for (name, timeout) in &new.sets {
                delta.after.sets.insert(name.clone(), *timeout);
            }
            delta
                .before
                .endpoint_maps
                .extend(old.endpoint_maps.iter().cloned());
            delta
                .after
                .endpoint_maps
                .extend(new.endpoint_maps.iter().cloned());
        }
        // Every element key either version claims: its winner before and after.
        let mut touched: Vec<(String, String)> = Vec::new();
        for rs in [old, &new] {
            for (map, elements) in &rs.maps {
                touched.extend(elements.keys().map(|k| (map.clone(), k.clone())));
            }
        }
        touched.sort();
        touched.dedup();
        for item in touched {
            let winner = |claims: &HashMap<_, BTreeMap<ServiceKey, String>>| {
                claims
                    .get(&item)
                    .and_then(|c: &BTreeMap<ServiceKey, String>| c.values().next_back().cloned())
            };
            if let Some(delta) = delta.as_deref_mut() {
                if delta.seen.insert(item.clone()) {
                    if let Some(v) = winner(&self.claims) {
                        delta
                            .before
                            .maps
                            .entry(item.0.clone())
                            .or_default()
                            .insert(item.1.clone(), v);
                    }
                }
            }
            let claim = self.claims.entry(item.clone()).or_default();
            match new.maps.get(&item.0).and_then(|m| m.get(&item.1)) {
                Some(verdict) => {
                    claim.insert(key.clone(), verdict.clone());
                }
                None => {
                    claim.remove(&key);
                }
            }
            if claim.is_empty() {
                self.claims.remove(&item);
            }
            if let Some(delta) = delta.as_deref_mut() {
                let after = delta.after.maps.entry(item.0.clone()).or_default();
                match winner(&self.claims) {
                    Some(v) => {
                        after.insert(item.1.clone(), v);
                    }
                    None => {
                        after.remove(&item.1);
                    }
                }
            }
        }
        if ports.is_empty() {
            self.services.remove(&key);
        } else {
            self.services.insert(key, new);
        }
    }

    /// The whole table (for the first sync, and to start over).
    pub fn ruleset(&self) -> Ruleset {
        let mut rs = Ruleset::build(&[], self.cluster_cidr.as_deref());
        for part in self.services.values() {
            rs.chains
                .extend(part.chains.iter().map(|(k, v)| (k.clone(), v.clone())));
            rs.sets
                .extend(part.sets.iter().map(|(k, v)| (k.clone(), *v)));
            rs.endpoint_maps.extend(part.endpoint_maps.iter().cloned());
        }
        for ((map, element), claim) in &self.claims {
            if let Some(v) = claim.values().next_back() {
                rs.maps
                    .entry(map.clone())
                    .or_default()
                    .insert(element.clone(), v.clone());
            }
        }
        rs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Endpoint, Protocol, TrafficPolicy};

    fn port(ns: &str, name: &str, ip: &str, node_port: Option<u16>, eps: &[&str]) -> ServicePort {
        ServicePort {
            namespace: ns.into(),
            name: name.into(),
            port_name: "http".into(),
            protocol: Protocol::Tcp,
            cluster_ips: vec![ip.parse().unwrap()],
            port: 80,
            node_port,
            external_ips: vec!["192.0.2.10".parse().unwrap()],
            affinity_seconds: None,
            internal_policy: TrafficPolicy::Cluster,
            external_policy: TrafficPolicy::Cluster,
            endpoints: eps
                .iter()
                .map(|e| Endpoint {
                    ip: e.parse().unwrap(),
                    port: 8080,
                    local: false,
                })
                .collect(),
        }
    }

    /// Applies `ports` per Service both ways: the incremental delta against the table so
    /// far, and the whole-table diff; they must agree line for line.
    fn step(
        table: &mut Table,
        all: &mut BTreeMap<ServiceKey, Vec<ServicePort>>,
        changes: Vec<(ServiceKey, Vec<ServicePort>)>,
    ) {
        let cidr = Some("10.244.0.0/16");
        let flat = |all: &BTreeMap<ServiceKey, Vec<ServicePort>>| {
            let v: Vec<ServicePort> = all.values().flatten().cloned().collect();
            Ruleset::build(&v, cidr)
        };
        let before = flat(all);
        assert_eq!(table.ruleset(), before);
        let mut delta = Delta::default();
        for (key, ports) in changes {
            table.update(key.clone(), &ports, &mut delta);
            if ports.is_empty() {
                all.remove(&key);
            } else {
                all.insert(key, ports);
            }
        }
        let after = flat(all);
        assert_eq!(table.ruleset(), after);
        let elements = after.maps.values().map(|m| m.len()).sum();
        assert_eq!(table.size(), (after.chains.len(), elements));
        assert_eq!(delta.script(), before.diff_script(&after));
        // Filled from scratch (as the first sync does), the table is the same.
        let mut fresh = Table::new(cidr);
        for (key, ports) in all.iter() {
            fresh.insert(key.clone(), ports);
        }
        assert_eq!(fresh.ruleset(), after);
    }

    #[test]
    fn incremental_updates_give_the_same_script_as_a_whole_table_diff() {
        let mut table = Table::new(Some("10.244.0.0/16"));
        let mut all = BTreeMap::new();
        let key = |ns: &str, n: &str| (ns.to_string(), n.to_string());
        // Both claim the external IP 192.0.2.10:80; "b/web" sorts last and wins.
        step(
            &mut table,
            &mut all,
            vec![
                (
                    key("a", "web"),
                    vec![port(
                        "a",
                        "web",
                        "10.43.0.1",
                        Some(30001),
                        &["10.42.0.1", "10.42.0.2"],
                    )],
                ),
                (
                    key("b", "web"),
                    vec![port("b", "web", "10.43.0.2", None, &["10.42.1.1"])],
                ),
                (
                    key("c", "empty"),
                    vec![port("c", "empty", "10.43.0.3", None, &[])],
                ),
            ],
        );
        // One endpoint goes, one comes.
        step(
            &mut table,
            &mut all,
            vec![(
                key("a", "web"),
                vec![port(
                    "a",
                    "web",
                    "10.43.0.1",
                    Some(30001),
                    &["10.42.0.2", "10.42.0.3"],
                )],
            )],
        );
        // The winner of the shared key goes: the other takes it over.
        step(&mut table, &mut all, vec![(key("b", "web"), vec![])]);
        // A Service without endpoints gets one; an unchanged update changes nothing.
        step(
            &mut table,
            &mut all,
            vec![
                (
                    key("c", "empty"),
                    vec![port("c", "empty", "10.43.0.3", None, &["10.42.2.1"])],
                ),
                (
                    key("a", "web"),
                    vec![port(
                        "a",
                        "web",
                        "10.43.0.1",
                        Some(30001),
                        &["10.42.0.2", "10.42.0.3"],
                    )],
                ),
            ],
        );
        step(&mut table, &mut all, vec![]);
        // Down to one endpoint (its endpoint maps go), then back to three.
        for eps in [&["10.42.0.3"][..], &["10.42.0.3", "10.42.0.4", "10.42.0.5"]] {
            step(
                &mut table,
                &mut all,
                vec![(
                    key("a", "web"),
                    vec![port("a", "web", "10.43.0.1", Some(30001), eps)],
                )],
            );
        }
        // Everything goes.
        step(
            &mut table,
            &mut all,
            vec![(key("a", "web"), vec![]), (key("c", "empty"), vec![])],
        );
        assert!(table.claims.is_empty());
        assert!(table.ruleset().endpoint_maps.is_empty());
        assert_eq!(table.services(), 0);
    }
}
