//! What a hollow node registers and reports: the Node object and its status, shaped as
//! a v1.33 kubelet's (labels, conditions with upstream reasons and messages, addresses,
//! nodeInfo, daemon endpoint). Pure: no IO, the clock is a parameter.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use crate::addr;
use crate::config::Config;

/// Label every hollow node carries, so they can be told apart (kwok uses `type=kwok`).
pub const TYPE_LABEL: (&str, &str) = ("type", "hollow");
pub const KUBELET_VERSION: &str = "v1.33.0-skiff-hollow";
pub const RUNTIME_VERSION: &str = "hollow://1.0";
pub const KUBELET_PORT: i32 = 10250;

/// The node conditions a healthy kubelet posts, in its order: (type, status, reason,
/// message).
const CONDITIONS: [(&str, &str, &str, &str); 4] = [
    (
        "MemoryPressure",
        "False",
        "KubeletHasSufficientMemory",
        "kubelet has sufficient memory available",
    ),
    (
        "DiskPressure",
        "False",
        "KubeletHasNoDiskPressure",
        "kubelet has no disk pressure",
    ),
    (
        "PIDPressure",
        "False",
        "KubeletHasSufficientPID",
        "kubelet has sufficient PID available",
    ),
    (
        "Ready",
        "True",
        "KubeletReady",
        "kubelet is posting ready status",
    ),
];

/// The labels node `k` registers with: the kubelet's well-known ones, [`TYPE_LABEL`],
/// then the configured extras (which may override none of the well-known ones).
pub fn labels(config: &Config, name: &str) -> BTreeMap<String, String> {
    let mut labels = config.labels.clone();
    for (k, v) in [
        ("kubernetes.io/hostname", name),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", "amd64"),
        ("beta.kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/arch", "amd64"),
        TYPE_LABEL,
    ] {
        labels.insert(k.to_string(), v.to_string());
    }
    labels
}

/// The Node to create for local node `k` (status is written separately, through the
/// status subresource, as the kubelet does).
pub fn node_object(config: &Config, k: u32) -> Node {
    let name = config.node_name(k);
    Node {
        metadata: ObjectMeta {
            labels: Some(labels(config, &name)),
            annotations: Some(
                [(
                    "volumes.kubernetes.io/controller-managed-attach-detach".to_string(),
                    "true".to_string(),
                )]
                .into(),
            ),
            name: Some(name),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: (!config.taints.is_empty()).then(|| config.taints.clone()),
            ..Default::default()
        }),
        status: None,
    }
}

fn resources(config: &Config) -> BTreeMap<String, Quantity> {
    [
        ("cpu", config.cpu.as_str()),
        ("memory", config.memory.as_str()),
        ("ephemeral-storage", config.ephemeral_storage.as_str()),
        ("pods", &config.pods.to_string()),
        ("hugepages-1Gi", "0"),
        ("hugepages-2Mi", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
    .collect()
}

/// The status node `k` posts at `now`; `since` is when its conditions last changed
/// (their lastTransitionTime).
pub fn node_status(config: &Config, k: u32, since: Timestamp, now: Timestamp) -> NodeStatus {
    let name = config.node_name(k);
    let index = config.global_index(k);
    // Stable per node, so a restarted process reports the same machine.
    let id = format!("{:032x}", 0x5eed_0000_0000_u128 + u128::from(index));
    NodeStatus {
        capacity: Some(resources(config)),
        // No system or kube reservations: everything is allocatable.
        allocatable: Some(resources(config)),
        conditions: Some(
            CONDITIONS
                .iter()
                .map(|(t, s, r, m)| NodeCondition {
                    type_: t.to_string(),
                    status: s.to_string(),
                    reason: Some(r.to_string()),
                    message: Some(m.to_string()),
                    last_heartbeat_time: Some(Time(now)),
                    last_transition_time: Some(Time(since)),
                })
                .collect(),
        ),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: addr::node_ip(index).to_string(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: name,
            },
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint { port: KUBELET_PORT }),
        }),
        node_info: Some(NodeSystemInfo {
            machine_id: id.clone(),
            system_uuid: id.clone(),
            boot_id: id,
            kernel_version: "6.1.0-hollow".into(),
            os_image: "Skiff Hollow Node".into(),
            container_runtime_version: RUNTIME_VERSION.into(),
            kubelet_version: KUBELET_VERSION.into(),
            kube_proxy_version: String::new(),
            operating_system: "linux".into(),
            architecture: "amd64".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Whether `node` shows every condition as a healthy kubelet posts it. When not (the
/// node lifecycle controller marked it Unknown while this process was down, or someone
/// edited it), the node re-posts its status at once with a fresh transition time.
pub fn conditions_asserted(node: &Node) -> bool {
    let conds = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    CONDITIONS
        .iter()
        .all(|(t, s, _, _)| conds.iter().any(|c| c.type_ == *t && c.status == *s))
}

/// When the conditions of an existing node last changed, as far as we keep them: the
/// Ready condition's lastTransitionTime if every condition is as we post it, else now.
pub fn transition_time(node: &Node, now: Timestamp) -> Timestamp {
    if !conditions_asserted(node) {
        return now;
    }
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default()
        .iter()
        .find(|c| c.type_ == "Ready")
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0)
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config {
            count: 2,
            start_index: 5,
            labels: [("zone".to_string(), "z1".to_string())].into(),
            taints: crate::config::parse_taints("dedicated=x:NoSchedule").unwrap(),
            ..Config::default()
        }
    }

    #[test]
    fn node_registers_with_well_known_labels_extras_and_taints() {
        let n = node_object(&config(), 1);
        assert_eq!(n.metadata.name.as_deref(), Some("hollow-node-6"));
        let l = n.metadata.labels.unwrap();
        assert_eq!(l["kubernetes.io/hostname"], "hollow-node-6");
        assert_eq!(l["kubernetes.io/os"], "linux");
        assert_eq!(l["beta.kubernetes.io/arch"], "amd64");
        assert_eq!(l["type"], "hollow");
        assert_eq!(l["zone"], "z1");
        let taints = n.spec.unwrap().taints.unwrap();
        assert_eq!(taints[0].key, "dedicated");
        assert!(node_object(&Config::default(), 0)
            .spec
            .unwrap()
            .taints
            .is_none());
    }

    #[test]
    fn configured_labels_cannot_override_the_well_known_ones() {
        let c = Config {
            labels: [("kubernetes.io/hostname".to_string(), "evil".to_string())].into(),
            ..Config::default()
        };
        assert_eq!(labels(&c, "n")["kubernetes.io/hostname"], "n");
    }

    #[test]
    fn status_reports_capacity_conditions_addresses_and_node_info() {
        let since: Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
        let now: Timestamp = "2025-01-01T00:05:00Z".parse().unwrap();
        let s = node_status(&config(), 0, since, now);
        let cap = s.capacity.unwrap();
        assert_eq!(cap["cpu"].0, "4");
        assert_eq!(cap["memory"].0, "16Gi");
        assert_eq!(cap["pods"].0, "110");
        assert_eq!(cap["ephemeral-storage"].0, "100Gi");
        assert_eq!(s.allocatable.unwrap()["cpu"].0, "4");
        let conds = s.conditions.unwrap();
        let ready = conds.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "True");
        assert_eq!(ready.reason.as_deref(), Some("KubeletReady"));
        assert_eq!(ready.last_heartbeat_time.as_ref().unwrap().0, now);
        assert_eq!(ready.last_transition_time.as_ref().unwrap().0, since);
        let mem = conds.iter().find(|c| c.type_ == "MemoryPressure").unwrap();
        assert_eq!(mem.status, "False");
        assert_eq!(mem.reason.as_deref(), Some("KubeletHasSufficientMemory"));
        let addrs = s.addresses.unwrap();
        assert_eq!(addrs[0].type_, "InternalIP");
        assert_eq!(addrs[0].address, "198.18.0.6");
        assert_eq!(addrs[1].address, "hollow-node-5");
        let info = s.node_info.unwrap();
        assert_eq!(info.kubelet_version, KUBELET_VERSION);
        assert_eq!(info.container_runtime_version, "hollow://1.0");
        assert_eq!(info.operating_system, "linux");
        assert_eq!(
            s.daemon_endpoints.unwrap().kubelet_endpoint.unwrap().port,
            10250
        );
    }

    #[test]
    fn conditions_are_reasserted_when_changed_and_keep_their_transition_time_when_not() {
        let since: Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
        let now: Timestamp = "2025-01-02T00:00:00Z".parse().unwrap();
        let healthy = Node {
            status: Some(node_status(&config(), 0, since, since)),
            ..Default::default()
        };
        assert!(conditions_asserted(&healthy));
        assert_eq!(transition_time(&healthy, now), since);

        let mut unknown = healthy.clone();
        if let Some(c) = unknown
            .status
            .as_mut()
            .and_then(|s| s.conditions.as_mut())
            .and_then(|c| c.iter_mut().find(|c| c.type_ == "Ready"))
        {
            c.status = "Unknown".into();
        }
        assert!(!conditions_asserted(&unknown));
        assert_eq!(transition_time(&unknown, now), now);

        let fresh = Node::default();
        assert!(!conditions_asserted(&fresh));
        assert_eq!(transition_time(&fresh, now), now);
    }
}
