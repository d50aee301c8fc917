//! The legacy core/v1 Endpoints of a service (pure): addresses of ready pods, not-ready
//! addresses of the rest, grouped into subsets by identical port sets (upstream's
//! RepackSubsets), truncated at [`MAX_ADDRESSES`] with the over-capacity annotation.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Pod, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::desired::{
    find_port, hostname_for, is_headless, pod_counts, pod_ip, publish_not_ready, target_ref,
    HEADLESS_LABEL,
};
use crate::util::pods;

pub const MAX_ADDRESSES: usize = 1000;
pub const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";
pub const TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";
pub const SKIP_MIRROR: &str = "endpointslice.kubernetes.io/skip-mirror";

/// The subsets `svc` should have for `pods` (already filtered by its selector), and
/// whether they were truncated.
pub fn subsets(svc: &Service, pods: &[&Pod]) -> (Vec<EndpointSubset>, bool) {
    let tolerate = publish_not_ready(svc);
    let svc_ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    // Address (by IP and pod) -> (address, ready, its ports).
    let mut by_addr: BTreeMap<(String, String), (EndpointAddress, bool, Vec<EndpointPort>)> =
        BTreeMap::new();
    for pod in pods.iter().filter(|p| pod_counts(p, tolerate)) {
        let Some(ip) = pod_ip(pod) else { continue };
        let addr = EndpointAddress {
            ip: ip.to_string(),
            hostname: hostname_for(pod, svc),
            node_name: pods::node_name(pod).map(str::to_string),
            target_ref: Some(target_ref(pod)),
        };
        let ready = tolerate || pods::is_ready(pod);
        let ports: Vec<EndpointPort> = svc_ports
            .iter()
            .filter_map(|sp| {
                Some(EndpointPort {
                    name: sp.name.clone().filter(|n| !n.is_empty()),
                    port: find_port(pod, sp)?,
                    protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: sp.app_protocol.clone(),
                })
            })
            .collect();
        // A pod none of whose ports resolve has no place in any subset, unless the
        // service is headless without ports.
        if ports.is_empty() && !(is_headless(svc) && svc_ports.is_empty()) {
            continue;
        }
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        by_addr.insert((ip.to_string(), uid), (addr, ready, ports));
    }
    let mut groups: BTreeMap<String, EndpointSubset> = BTreeMap::new();
    for (_, (addr, ready, mut ports)) in by_addr {
        ports.sort_by(|a, b| (&a.name, a.port, &a.protocol).cmp(&(&b.name, b.port, &b.protocol)));
        let key = ports
            .iter()
            .map(|p| {
                format!(
                    "{:?}/{}/{:?}/{:?}",
                    p.name, p.port, p.protocol, p.app_protocol
                )
            })
            .collect::<Vec<_>>()
            .join(",");
        let subset = groups.entry(key).or_insert_with(|| EndpointSubset {
            ports: (!ports.is_empty()).then_some(ports),
            ..Default::default()
        });
        let list = if ready {
            &mut subset.addresses
        } else {
            &mut subset.not_ready_addresses
        };
        list.get_or_insert_with(Vec::new).push(addr);
    }
    let mut out: Vec<EndpointSubset> = groups.into_values().collect();
    let truncated = truncate(&mut out, MAX_ADDRESSES);
    (out, truncated)
}

/// Keeps at most `max` addresses, ready ones first. Returns whether any were dropped.
fn truncate(subsets: &mut [EndpointSubset], max: usize) -> bool {
    let count = |l: &Option<Vec<EndpointAddress>>| l.as_ref().map_or(0, Vec::len);
    let total: usize = subsets
        .iter()
        .map(|s| count(&s.addresses) + count(&s.not_ready_addresses))
        .sum();
    if total <= max {
        return false;
    }
    let mut room = max;
    for s in subsets.iter_mut() {
        if let Some(a) = s.addresses.as_mut() {
            a.truncate(room);
            room -= a.len();
        }
    }
    for s in subsets.iter_mut() {
        if let Some(a) = s.not_ready_addresses.as_mut() {
            a.truncate(room);
            room -= a.len();
        }
    }
    true
}

/// Labels of the Endpoints: the service's, plus the mirroring opt-out and headless marker.
pub fn labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    labels.insert(SKIP_MIRROR.into(), "true".into());
    if is_headless(svc) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    labels
}

/// The Endpoints to write, or `None` when `current` is already right. `trigger` is the
/// time of the change that caused this sync (RFC 3339).
pub fn desired_endpoints(
    svc: &Service,
    pods: &[&Pod],
    current: Option<&Endpoints>,
    trigger: &str,
) -> Option<Endpoints> {
    let (subsets, truncated) = subsets(svc, pods);
    let subsets = (!subsets.is_empty()).then_some(subsets);
    let labels = labels(svc);
    if let Some(cur) = current {
        let cur_subsets = cur.subsets.clone().filter(|s| !s.is_empty());
        let over = cur
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(OVER_CAPACITY))
            .is_some();
        if cur_subsets == subsets
            && cur.metadata.labels.as_ref() == Some(&labels)
            && over == truncated
        {
            return None;
        }
    }
    let mut meta = current
        .map(|c| c.metadata.clone())
        .unwrap_or_else(|| ObjectMeta {
            name: svc.metadata.name.clone(),
            namespace: svc.metadata.namespace.clone(),
            ..Default::default()
        });
    let mut annotations = meta.annotations.take().unwrap_or_default();
    annotations.insert(TRIGGER_TIME.into(), trigger.to_string());
    if truncated {
        annotations.insert(OVER_CAPACITY.into(), "truncated".into());
    } else {
        annotations.remove(OVER_CAPACITY);
    }
    meta.annotations = Some(annotations);
    meta.labels = Some(labels);
    Some(Endpoints {
        metadata: meta,
        subsets,
    })
}

#[cfg(test)]
mod tests {
    use super::super::desired::tests::{pod, svc};
    use super::*;

    #[test]
    fn ready_and_not_ready_addresses_share_a_subset() {
        let s = svc(serde_json::json!({}));
        let a = pod("a", "10.0.0.1", true, serde_json::json!({}));
        let b = pod("b", "10.0.0.2", false, serde_json::json!({}));
        let (subsets, truncated) = subsets(&s, &[&a, &b]);
        assert!(!truncated);
        assert_eq!(subsets.len(), 1);
        assert_eq!(subsets[0].addresses.as_ref().unwrap()[0].ip, "10.0.0.1");
        assert_eq!(
            subsets[0].not_ready_addresses.as_ref().unwrap()[0].ip,
            "10.0.0.2"
        );
        assert_eq!(subsets[0].ports.as_ref().unwrap()[0].port, 8080);
    }

    #[test]
    fn terminating_pods_leave_unless_not_ready_addresses_are_published() {
        let deleting =
            serde_json::json!({"metadata": {"deletionTimestamp": "2025-01-01T00:00:00Z"}});
        let p = pod("a", "10.0.0.1", true, deleting);
        assert!(subsets(&svc(serde_json::json!({})), &[&p]).0.is_empty());
        let publish = svc(serde_json::json!({"spec": {"publishNotReadyAddresses": true}}));
        assert_eq!(
            subsets(&publish, &[&p]).0[0]
                .addresses
                .as_ref()
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn pods_with_different_resolved_ports_get_different_subsets() {
        let s = svc(
            serde_json::json!({"spec": {"ports": [{"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP"}]}}),
        );
        let a = pod("a", "10.0.0.1", true, serde_json::json!({}));
        let b = pod(
            "b",
            "10.0.0.2",
            true,
            serde_json::json!({"spec": {"containers": [{"name": "c", "image": "i", "ports": [{"name": "web", "containerPort": 9090}]}]}}),
        );
        assert_eq!(subsets(&s, &[&a, &b]).0.len(), 2);
    }

    #[test]
    fn over_capacity_truncates_ready_first_and_annotates() {
        let s = svc(serde_json::json!({}));
        let pods: Vec<Pod> = (0..1005)
            .map(|i| {
                pod(
                    &format!("p{i}"),
                    &format!("10.1.{}.{}", i / 250, i % 250 + 1),
                    i % 2 == 0,
                    serde_json::json!({}),
                )
            })
            .collect();
        let refs: Vec<&Pod> = pods.iter().collect();
        let ep = desired_endpoints(&s, &refs, None, "t").unwrap();
        let subset = &ep.subsets.as_ref().unwrap()[0];
        assert_eq!(
            subset.addresses.as_ref().unwrap().len(),
            503,
            "every ready address is kept"
        );
        assert_eq!(subset.not_ready_addresses.as_ref().unwrap().len(), 497);
        assert_eq!(
            ep.metadata.annotations.as_ref().unwrap()[OVER_CAPACITY],
            "truncated"
        );
    }

    #[test]
    fn unchanged_endpoints_are_not_rewritten() {
        let s = svc(serde_json::json!({}));
        let a = pod("a", "10.0.0.1", true, serde_json::json!({}));
        let ep = desired_endpoints(&s, &[&a], None, "t1").unwrap();
        assert_eq!(ep.metadata.labels.as_ref().unwrap()[SKIP_MIRROR], "true");
        assert!(desired_endpoints(&s, &[&a], Some(&ep), "t2").is_none());
        let b = pod("a", "10.0.0.1", false, serde_json::json!({}));
        let changed = desired_endpoints(&s, &[&b], Some(&ep), "t2").unwrap();
        assert_eq!(
            changed.metadata.annotations.as_ref().unwrap()[TRIGGER_TIME],
            "t2"
        );
    }
}
