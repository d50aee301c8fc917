//! What a Service's endpoints should be, from its pods (pure): which pods count, the
//! ports each pod serves (named target ports resolve per pod), and each pod's endpoint
//! with upstream's ready/serving/terminating conditions.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service, ServicePort};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::util::pods;

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// Whether a pod belongs in a Service's endpoints (upstream's ShouldPodBeInEndpoints):
/// it has an IP, is not finished, and (unless `include_terminating`) is not being deleted.
pub fn pod_counts(pod: &Pod, include_terminating: bool) -> bool {
    if pod_ip(pod).is_none() || pods::is_terminal(pod) {
        return false;
    }
    include_terminating || !pods::is_terminating(pod)
}

/// The pod's IPv4 address, if it has one.
pub fn pod_ip(pod: &Pod) -> Option<&str> {
    let status = pod.status.as_ref()?;
    let ips = status.pod_ips.iter().flatten().map(|p| p.ip.as_str());
    status
        .pod_ip
        .as_deref()
        .into_iter()
        .chain(ips)
        .find(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok())
}

/// The container port a service port targets on `pod` (upstream's FindPort): a number
/// as is, a name looked up among the pod's containers (and sidecar init containers)
/// with the same protocol. `None` when the name is not found.
pub fn find_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    let name = match &port.target_port {
        None => return Some(port.port),
        Some(IntOrString::Int(n)) => return Some(*n),
        Some(IntOrString::String(s)) => match s.parse::<i32>() {
            Ok(n) => return Some(n),
            Err(_) => s,
        },
    };
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    let spec = pod.spec.as_ref()?;
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| {
            p.name.as_deref() == Some(name.as_str())
                && p.protocol.as_deref().unwrap_or("TCP") == protocol
        })
        .map(|p| p.container_port)
}

/// The endpoint ports `pod` serves for `svc`: ports that do not resolve are left out.
pub fn endpoint_ports(svc: &Service, pod: &Pod) -> Vec<EndpointPort> {
    service_ports(svc)
        .iter()
        .filter_map(|sp| {
            Some(EndpointPort {
                name: Some(sp.name.clone().unwrap_or_default()),
                port: Some(find_port(pod, sp)?),
                protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: sp.app_protocol.clone(),
            })
        })
        .collect()
}

fn service_ports(svc: &Service) -> &[ServicePort] {
    svc.spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or(&[])
}

pub fn publish_not_ready(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

/// Whether the endpoint carries the pod's hostname: the pod sets hostname and a
/// subdomain naming this service (upstream's ShouldSetHostname).
pub fn hostname_for(pod: &Pod, svc: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    let same_ns = pod.metadata.namespace == svc.metadata.namespace;
    (same_ns && spec.subdomain.is_some() && spec.subdomain == svc.metadata.name)
        .then(|| hostname.to_string())
}

pub fn target_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

/// The endpoint for `pod` (which must have an IPv4 address). Ready means serving and
/// not terminating, unless the service publishes not-ready addresses.
pub fn pod_endpoint(svc: &Service, pod: &Pod, zone: Option<String>) -> Option<Endpoint> {
    let ip = pod_ip(pod)?;
    let publish = publish_not_ready(svc);
    let serving = publish || pods::is_ready(pod);
    let terminating = pods::is_terminating(pod);
    Some(Endpoint {
        addresses: vec![ip.to_string()],
        conditions: Some(EndpointConditions {
            ready: Some(publish || (serving && !terminating)),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname: hostname_for(pod, svc),
        node_name: pods::node_name(pod).map(str::to_string),
        zone,
        target_ref: Some(target_ref(pod)),
        ..Default::default()
    })
}

/// Endpoints that share one set of ports (named target ports can differ between
/// pods, so one service may need several groups, as upstream).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Group {
    pub ports: Vec<EndpointPort>,
    /// By [`endpoint_key`], so existing endpoints can be matched to desired ones.
    pub endpoints: BTreeMap<String, Endpoint>,
}

/// A key naming a port set, equal for equal sets in any order.
pub fn ports_key(ports: &[EndpointPort]) -> String {
    let mut parts: Vec<String> = ports
        .iter()
        .map(|p| {
            format!(
                "{}/{}/{}/{}",
                p.name.as_deref().unwrap_or(""),
                p.port.unwrap_or(0),
                p.protocol.as_deref().unwrap_or("TCP"),
                p.app_protocol.as_deref().unwrap_or("")
            )
        })
        .collect();
    parts.sort();
    parts.join(",")
}

/// What identifies an endpoint across syncs: the pod it points at, else its address.
pub fn endpoint_key(ep: &Endpoint) -> String {
    match ep.target_ref.as_ref() {
        Some(r) => format!(
            "{}/{}",
            r.namespace.as_deref().unwrap_or(""),
            r.name.as_deref().unwrap_or("")
        ),
        None => ep.addresses.first().cloned().unwrap_or_default(),
    }
}

/// The desired groups of a service, by [`ports_key`]. `zone_of` names a node's zone.
pub fn desired_groups(
    svc: &Service,
    pods: &[&Pod],
    zone_of: impl Fn(&str) -> Option<String>,
) -> BTreeMap<String, Group> {
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for pod in pods.iter().filter(|p| pod_counts(p, true)) {
        let zone = pods::node_name(pod).and_then(&zone_of);
        let Some(ep) = pod_endpoint(svc, pod, zone) else {
            continue;
        };
        let ports = endpoint_ports(svc, pod);
        let group = groups.entry(ports_key(&ports)).or_insert_with(|| Group {
            ports,
            ..Default::default()
        });
        group.endpoints.insert(endpoint_key(&ep), ep);
    }
    groups
}

/// Labels of a service's managed slices: the service's own labels (but not the
/// reserved ones), the service name, the manager, and the headless marker.
pub fn slice_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = svc
        .metadata
        .labels
        .iter()
        .flatten()
        .filter(|(k, _)| {
            k.as_str() != SERVICE_NAME_LABEL
                && k.as_str() != MANAGED_BY_LABEL
                && k.as_str() != HEADLESS_LABEL
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert(
        SERVICE_NAME_LABEL.into(),
        svc.metadata.name.clone().unwrap_or_default(),
    );
    labels.insert(MANAGED_BY_LABEL.into(), CONTROLLER_NAME.into());
    if is_headless(svc) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    labels
}

pub fn is_headless(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// Whether the controller manages endpoints for `svc` at all: it has a selector and
/// is not an ExternalName service.
pub fn wants_endpoints(svc: &Service) -> bool {
    let Some(spec) = svc.spec.as_ref() else {
        return false;
    };
    spec.selector.is_some() && spec.type_.as_deref() != Some("ExternalName")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn svc(json: serde_json::Value) -> Service {
        let mut base = serde_json::json!({"metadata": {"name": "web", "namespace": "ns", "uid": "svc-uid"},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}});
        merge(&mut base, json);
        serde_json::from_value(base).unwrap()
    }

    pub fn pod(name: &str, ip: &str, ready: bool, extra: serde_json::Value) -> Pod {
        let mut base = serde_json::json!({"metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "labels": {"app": "web"}},
            "spec": {"nodeName": "node-a", "containers": [{"name": "c", "image": "i", "ports": [{"name": "web", "containerPort": 8080}]}]},
            "status": {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}});
        merge(&mut base, extra);
        serde_json::from_value(base).unwrap()
    }

    fn merge(base: &mut serde_json::Value, patch: serde_json::Value) {
        match (base, patch) {
            (serde_json::Value::Object(b), serde_json::Value::Object(p)) => {
                for (k, v) in p {
                    merge(b.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (b, p) => *b = p,
        }
    }

    fn conditions(ep: &Endpoint) -> (bool, bool, bool) {
        let c = ep.conditions.clone().unwrap();
        (c.ready.unwrap(), c.serving.unwrap(), c.terminating.unwrap())
    }

    #[test]
    fn endpoint_conditions() {
        let s = svc(serde_json::json!({}));
        let deleting =
            serde_json::json!({"metadata": {"deletionTimestamp": "2025-01-01T00:00:00Z"}});
        let cases = [
            (
                "ready pod",
                pod("a", "10.0.0.1", true, serde_json::json!({})),
                &s,
                (true, true, false),
            ),
            (
                "not ready pod",
                pod("a", "10.0.0.1", false, serde_json::json!({})),
                &s,
                (false, false, false),
            ),
            (
                "terminating ready pod serves but is not ready",
                pod("a", "10.0.0.1", true, deleting.clone()),
                &s,
                (false, true, true),
            ),
        ];
        for (name, p, s, want) in cases {
            assert_eq!(
                conditions(&pod_endpoint(s, &p, None).unwrap()),
                want,
                "{name}"
            );
        }
        let publish = svc(serde_json::json!({"spec": {"publishNotReadyAddresses": true}}));
        let p = pod("a", "10.0.0.1", false, deleting);
        assert_eq!(
            conditions(&pod_endpoint(&publish, &p, None).unwrap()),
            (true, true, true),
            "publishNotReadyAddresses"
        );
    }

    #[test]
    fn which_pods_count() {
        let cases = [
            (
                "running with ip",
                pod("a", "10.0.0.1", true, serde_json::json!({})),
                true,
            ),
            ("no ip", pod("a", "", true, serde_json::json!({})), false),
            (
                "succeeded",
                pod(
                    "a",
                    "10.0.0.1",
                    false,
                    serde_json::json!({"status": {"phase": "Succeeded"}}),
                ),
                false,
            ),
            (
                "ipv6 only",
                pod("a", "fd00::1", true, serde_json::json!({})),
                false,
            ),
        ];
        for (name, p, want) in cases {
            assert_eq!(pod_counts(&p, true), want, "{name}");
        }
    }

    #[test]
    fn named_target_ports_resolve_per_pod() {
        let s = svc(serde_json::json!({"spec": {"ports": [
            {"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP"},
            {"name": "dns", "port": 53, "targetPort": "web", "protocol": "UDP"}]}}));
        let a = pod("a", "10.0.0.1", true, serde_json::json!({}));
        let b = pod(
            "b",
            "10.0.0.2",
            true,
            serde_json::json!({"spec": {"containers": [{"name": "c", "image": "i", "ports": [{"name": "web", "containerPort": 9090}]}]}}),
        );
        let ports_a = endpoint_ports(&s, &a);
        assert_eq!(
            ports_a.len(),
            1,
            "the UDP port has no UDP container port named web"
        );
        assert_eq!(ports_a[0].port, Some(8080));
        assert_eq!(endpoint_ports(&s, &b)[0].port, Some(9090));
        let groups = desired_groups(&s, &[&a, &b], |_| None);
        assert_eq!(
            groups.len(),
            2,
            "different resolved ports make different groups"
        );
    }

    #[test]
    fn hostname_only_with_matching_subdomain() {
        let s = svc(serde_json::json!({}));
        let with = pod(
            "a",
            "10.0.0.1",
            true,
            serde_json::json!({"spec": {"hostname": "h", "subdomain": "web"}}),
        );
        let other = pod(
            "a",
            "10.0.0.1",
            true,
            serde_json::json!({"spec": {"hostname": "h", "subdomain": "db"}}),
        );
        assert_eq!(hostname_for(&with, &s).as_deref(), Some("h"));
        assert_eq!(hostname_for(&other, &s), None);
    }

    #[test]
    fn labels_and_zone() {
        let s = svc(
            serde_json::json!({"metadata": {"labels": {"team": "x", SERVICE_NAME_LABEL: "spoof"}}, "spec": {"clusterIP": "None"}}),
        );
        let l = slice_labels(&s);
        assert_eq!(l[SERVICE_NAME_LABEL], "web");
        assert_eq!(l[MANAGED_BY_LABEL], CONTROLLER_NAME);
        assert_eq!(l["team"], "x");
        assert!(l.contains_key(HEADLESS_LABEL));
        let p = pod("a", "10.0.0.1", true, serde_json::json!({}));
        let g = desired_groups(&s, &[&p], |n| (n == "node-a").then(|| "z1".to_string()));
        let ep = g
            .values()
            .next()
            .unwrap()
            .endpoints
            .values()
            .next()
            .unwrap();
        assert_eq!(ep.zone.as_deref(), Some("z1"));
        assert_eq!(ep.node_name.as_deref(), Some("node-a"));
    }
}
