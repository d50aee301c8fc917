//! The Node this agent registers and the status it posts, shaped as a v1.33 kubelet's:
//! well-known labels, capacity/allocatable, addresses, nodeInfo, the four conditions
//! with upstream reasons and messages, and the streaming server's port. Pure builders;
//! the loops that register, post and renew are in [`crate::heartbeat`].

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use crate::config::Config;
use crate::sysinfo::Machine;

/// The version the agent reports, matching the API server's minor version.
pub const KUBELET_VERSION: &str = "v1.33.0-skiff";

/// What changes in the node's health: whether pods can get a network yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// `None` when the pod network is ready, else why not.
    pub network_not_ready: Option<String>,
}

/// The labels the node registers with: configured extras, then the well-known ones.
pub fn labels(config: &Config, arch: &str) -> BTreeMap<String, String> {
    let mut labels = config.node_labels.clone();
    for (k, v) in [
        ("kubernetes.io/hostname", config.node_name.as_str()),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", arch),
        ("beta.kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/arch", arch),
    ] {
        labels.insert(k.to_string(), v.to_string());
    }
    labels
}

/// Prefix of the annotations Skiff's agent owns on its Node.
pub const SKIFF_ANNOTATION_PREFIX: &str = "skiff.dev/";

/// The annotations the node registers with: upstream's attach/detach marker and the
/// configured ones.
pub fn annotations(config: &Config) -> BTreeMap<String, String> {
    let mut a = config.node_annotations.clone();
    a.insert(
        "volumes.kubernetes.io/controller-managed-attach-detach".into(),
        "true".into(),
    );
    a
}

/// The Node to create (status is posted separately, through the status subresource).
pub fn node_object(config: &Config, machine: &Machine) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(config.node_name.clone()),
            labels: Some(labels(config, &machine.architecture)),
            annotations: Some(annotations(config)),
            ..Default::default()
        },
        spec: Some(NodeSpec::default()),
        status: None,
    }
}

fn resources(config: &Config, machine: &Machine) -> BTreeMap<String, Quantity> {
    [
        ("cpu", machine.cpus.to_string()),
        ("memory", format!("{}Ki", machine.memory_bytes / 1024)),
        (
            "ephemeral-storage",
            format!("{}Ki", machine.ephemeral_storage_bytes / 1024),
        ),
        ("pods", config.max_pods.to_string()),
        ("hugepages-1Gi", "0".to_string()),
        ("hugepages-2Mi", "0".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), Quantity(v)))
    .collect()
}

/// The conditions for `health`: (type, status, reason, message), in the kubelet's order.
pub fn conditions(health: &Health) -> Vec<(&'static str, &'static str, &'static str, String)> {
    let ready = match &health.network_not_ready {
        None => (
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status".to_string(),
        ),
        Some(why) => (
            "Ready",
            "False",
            "KubeletNotReady",
            format!("container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:{why}"),
        ),
    };
    vec![
        (
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available".into(),
        ),
        (
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure".into(),
        ),
        (
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available".into(),
        ),
        ready,
    ]
}

/// The status to post at `now`. A condition keeps its lastTransitionTime from
/// `previous` while its status stays the same.
pub fn node_status(
    config: &Config,
    machine: &Machine,
    runtime_version: &str,
    health: &Health,
    previous: Option<&NodeStatus>,
    now: Timestamp,
) -> NodeStatus {
    let old = previous
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let conditions = conditions(health)
        .into_iter()
        .map(|(t, s, r, m)| {
            let since = old
                .iter()
                .find(|c| c.type_ == t && c.status == s)
                .and_then(|c| c.last_transition_time.clone())
                .unwrap_or(Time(now));
            NodeCondition {
                type_: t.into(),
                status: s.into(),
                reason: Some(r.into()),
                message: Some(m),
                last_heartbeat_time: Some(Time(now)),
                last_transition_time: Some(since),
            }
        })
        .collect();
    NodeStatus {
        capacity: Some(resources(config, machine)),
        // No system or kube reservations yet: everything is allocatable.
        allocatable: Some(resources(config, machine)),
        conditions: Some(conditions),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: config.node_ip.to_string(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: config.node_name.clone(),
            },
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(config.kubelet_port),
            }),
        }),
        node_info: Some(NodeSystemInfo {
            machine_id: machine.machine_id.clone(),
            system_uuid: machine.system_uuid.clone(),
            boot_id: machine.boot_id.clone(),
            kernel_version: machine.kernel_version.clone(),
            os_image: machine.os_image.clone(),
            container_runtime_version: runtime_version.into(),
            kubelet_version: KUBELET_VERSION.into(),
            kube_proxy_version: String::new(),
            operating_system: "linux".into(),
            architecture: machine.architecture.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Whether a posted status differs from the new one in anything but heartbeat times
/// (then it must be posted now, not at the next periodic report).
pub fn changed(old: Option<&NodeStatus>, new: &NodeStatus) -> bool {
    let Some(old) = old else { return true };
    let strip = |s: &NodeStatus| {
        let mut s = s.clone();
        for c in s.conditions.iter_mut().flatten() {
            c.last_heartbeat_time = None;
        }
        s.images = None;
        s.volumes_attached = None;
        s.volumes_in_use = None;
        s.phase = None;
        s.config = None;
        s.runtime_handlers = None;
        s.features = None;
        s
    };
    strip(old) != strip(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn config() -> Config {
        Config::new(
            "Node-A",
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
            "/tmp/x".into(),
            "/run/c.sock",
        )
    }

    fn machine() -> Machine {
        Machine {
            cpus: 2,
            memory_bytes: 4 << 30,
            ephemeral_storage_bytes: 100 << 30,
            kernel_version: "6.1".into(),
            os_image: "Debian".into(),
            architecture: "amd64".into(),
            ..Default::default()
        }
    }

    #[test]
    fn node_registers_lower_cased_with_well_known_labels() {
        let n = node_object(&config(), &machine());
        assert_eq!(n.metadata.name.as_deref(), Some("node-a"));
        let l = n.metadata.labels.unwrap();
        assert_eq!(l["kubernetes.io/hostname"], "node-a");
        assert_eq!(l["kubernetes.io/arch"], "amd64");
    }

    #[test]
    fn status_reports_capacity_addresses_info_and_ready() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let ok = Health {
            network_not_ready: None,
        };
        let s = node_status(&config(), &machine(), "containerd://1.6", &ok, None, now);
        let cap = s.capacity.as_ref().unwrap();
        assert_eq!(cap["cpu"].0, "2");
        assert_eq!(cap["memory"].0, "4194304Ki");
        assert_eq!(cap["pods"].0, "110");
        let addrs = s.addresses.as_ref().unwrap();
        assert_eq!(
            (addrs[0].type_.as_str(), addrs[0].address.as_str()),
            ("InternalIP", "127.0.0.1")
        );
        assert_eq!(addrs[1].address, "node-a");
        let info = s.node_info.as_ref().unwrap();
        assert_eq!(info.kubelet_version, KUBELET_VERSION);
        assert_eq!(info.container_runtime_version, "containerd://1.6");
        assert_eq!(
            s.daemon_endpoints
                .as_ref()
                .unwrap()
                .kubelet_endpoint
                .as_ref()
                .unwrap()
                .port,
            10250
        );
        let ready = s
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_deref()),
            ("True", Some("KubeletReady"))
        );
    }

    #[test]
    fn transition_times_survive_heartbeats_and_move_on_change() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        let not_ready = Health {
            network_not_ready: Some("cni config uninitialized".into()),
        };
        let ready = Health {
            network_not_ready: None,
        };
        let s0 = node_status(&config(), &machine(), "c", &not_ready, None, t0);
        let r0 = s0
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap()
            .clone();
        assert_eq!(r0.status, "False");
        assert!(r0.message.unwrap().contains("cni config uninitialized"));
        let s1 = node_status(&config(), &machine(), "c", &ready, Some(&s0), t1);
        assert!(changed(Some(&s0), &s1));
        let conds = s1.conditions.as_ref().unwrap();
        let mem = conds.iter().find(|c| c.type_ == "MemoryPressure").unwrap();
        assert_eq!(mem.last_transition_time.as_ref().unwrap().0, t0);
        let r1 = conds.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(r1.last_transition_time.as_ref().unwrap().0, t1);
        let s2 = node_status(
            &config(),
            &machine(),
            "c",
            &ready,
            Some(&s1),
            t1 + std::time::Duration::from_secs(10),
        );
        assert!(!changed(Some(&s1), &s2));
    }
}
