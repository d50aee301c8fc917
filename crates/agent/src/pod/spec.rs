//! From a Pod to CRI requests: the sandbox config (hostname, DNS, ports, namespaces,
//! cgroup parent, labels, log directory) and each container's config (command, env,
//! mounts, resources, security context, labels and annotations as the kubelet sets
//! them). Pure.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use skiff_cri::api as cri;

use crate::config::Config;
use crate::pod::qos::{self, Qos};

pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";
pub const ANNOTATION_RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
pub const ANNOTATION_TERMINATION_MESSAGE_PATH: &str =
    "io.kubernetes.container.terminationMessagePath";
pub const ANNOTATION_TERMINATION_MESSAGE_POLICY: &str =
    "io.kubernetes.container.terminationMessagePolicy";
pub const ANNOTATION_GRACE_PERIOD: &str = "io.kubernetes.pod.terminationGracePeriod";

/// CPU period the kubelet sets with a cpu limit (100 ms).
pub const CPU_PERIOD: i64 = 100_000;

pub fn meta(pod: &Pod) -> (&str, &str, &str) {
    (
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default(),
    )
}

fn pod_labels(pod: &Pod) -> HashMap<String, String> {
    let (ns, name, uid) = meta(pod);
    let mut labels: HashMap<String, String> = pod
        .metadata
        .labels
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert(LABEL_POD_NAME.into(), name.into());
    labels.insert(LABEL_POD_NAMESPACE.into(), ns.into());
    labels.insert(LABEL_POD_UID.into(), uid.into());
    labels
}

/// What /etc/resolv.conf of the host says (for dnsPolicy Default).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostDns {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

pub fn parse_resolv_conf(text: &str) -> HostDns {
    let mut dns = HostDns::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => dns.servers.extend(words.next().map(str::to_string)),
            Some("search") | Some("domain") => dns.searches = words.map(str::to_string).collect(),
            Some("options") => dns.options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    dns
}

/// The pod's DNS config from dnsPolicy (and dnsConfig), as the kubelet builds it.
pub fn dns_config(pod: &Pod, config: &Config, host: &HostDns) -> cri::DnsConfig {
    let spec = pod.spec.clone().unwrap_or_default();
    let (ns, _, _) = meta(pod);
    let host_network = spec.host_network.unwrap_or(false);
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let cluster = match policy {
        "ClusterFirstWithHostNet" => true,
        "ClusterFirst" => !host_network,
        _ => false,
    };
    let mut dns = match policy {
        "None" => cri::DnsConfig::default(),
        _ if cluster && !config.cluster_dns.is_empty() => {
            let d = &config.cluster_domain;
            let mut searches = vec![format!("{ns}.svc.{d}"), format!("svc.{d}"), d.clone()];
            searches.extend(host.searches.iter().cloned());
            cri::DnsConfig {
                servers: config.cluster_dns.iter().map(|s| s.to_string()).collect(),
                searches,
                options: vec!["ndots:5".into()],
            }
        }
        _ => cri::DnsConfig {
            servers: host.servers.clone(),
            searches: host.searches.clone(),
            options: host.options.clone(),
        },
    };
    if let Some(extra) = &spec.dns_config {
        dns.servers
            .extend(extra.nameservers.iter().flatten().cloned());
        for s in extra.searches.iter().flatten() {
            if !dns.searches.contains(s) {
                dns.searches.push(s.clone());
            }
        }
        for o in extra.options.iter().flatten() {
            let rendered = match &o.value {
                Some(v) => format!("{}:{v}", o.name.as_deref().unwrap_or_default()),
                None => o.name.clone().unwrap_or_default(),
            };
            let name = o.name.as_deref().unwrap_or_default();
            dns.options.retain(|x| x.split(':').next() != Some(name));
            dns.options.push(rendered);
        }
    }
    dns
}

fn namespace_options(pod: &Pod) -> cri::NamespaceOption {
    let spec = pod.spec.as_ref();
    let node = cri::NamespaceMode::Node as i32;
    let flag = |f: Option<bool>| f.unwrap_or(false);
    cri::NamespaceOption {
        network: if flag(spec.and_then(|s| s.host_network)) {
            node
        } else {
            cri::NamespaceMode::Pod as i32
        },
        pid: if flag(spec.and_then(|s| s.host_pid)) {
            node
        } else if flag(spec.and_then(|s| s.share_process_namespace)) {
            cri::NamespaceMode::Pod as i32
        } else {
            cri::NamespaceMode::Container as i32
        },
        ipc: if flag(spec.and_then(|s| s.host_ipc)) {
            node
        } else {
            cri::NamespaceMode::Pod as i32
        },
        ..Default::default()
    }
}

/// The sandbox config of `pod`'s `attempt`th sandbox.
pub fn sandbox_config(
    pod: &Pod,
    attempt: u32,
    config: &Config,
    host_dns: &HostDns,
) -> cri::PodSandboxConfig {
    let (ns, name, uid) = meta(pod);
    let spec = pod.spec.clone().unwrap_or_default();
    let host_network = spec.host_network.unwrap_or(false);
    // As the kubelet: a host-network pod shares the node's UTS namespace, so it names no
    // hostname (runc refuses one without a private UTS namespace) and sees the node's.
    let hostname = if host_network {
        String::new()
    } else {
        let h = spec.hostname.clone().unwrap_or_else(|| name.to_string());
        h.chars()
            .take(63)
            .collect::<String>()
            .trim_end_matches(['-', '.'])
            .to_string()
    };
    let mut port_mappings = Vec::new();
    for c in &spec.containers {
        for p in c.ports.iter().flatten() {
            let host_port = p.host_port.unwrap_or(0);
            if host_port <= 0 {
                continue;
            }
            let protocol = match p.protocol.as_deref() {
                Some("UDP") => cri::Protocol::Udp,
                Some("SCTP") => cri::Protocol::Sctp,
                _ => cri::Protocol::Tcp,
            };
            port_mappings.push(cri::PortMapping {
                protocol: protocol as i32,
                container_port: p.container_port,
                host_port,
                host_ip: p.host_ip.clone().unwrap_or_default(),
            });
        }
    }
    let qos = qos::class(&spec);
    let annotations = pod
        .metadata
        .annotations
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.into(),
            uid: uid.into(),
            namespace: ns.into(),
            attempt,
        }),
        hostname,
        log_directory: config.pod_log_dir(ns, name, uid).display().to_string(),
        dns_config: Some(dns_config(pod, config, host_dns)),
        port_mappings,
        labels: pod_labels(pod),
        annotations,
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: qos::cgroup_parent(qos, uid),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(namespace_options(pod)),
                privileged: spec
                    .containers
                    .iter()
                    .any(|c| c.security_context.as_ref().and_then(|s| s.privileged) == Some(true)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        windows: None,
    }
}

/// Linux resources of a container of class `qos` on a node with `memory_capacity`.
pub fn resources(c: &Container, qos: Qos, memory_capacity: i128) -> cri::LinuxContainerResources {
    let cpu_request = qos::quantity(c, "cpu", false)
        .map(|q| q.milli_value())
        .unwrap_or(0);
    let cpu_limit = qos::quantity(c, "cpu", true).map(|q| q.milli_value());
    let memory_limit = qos::quantity(c, "memory", true)
        .map(|q| q.value())
        .unwrap_or(0);
    // Upstream: shares = request * 1024 / 1000, at least 2 (also for best-effort).
    let shares = ((cpu_request * 1024) / 1000).max(2) as i64;
    let (period, quota) = match cpu_limit {
        Some(l) => (
            CPU_PERIOD,
            ((l * i128::from(CPU_PERIOD)) / 1000).max(1000) as i64,
        ),
        None => (0, 0),
    };
    cri::LinuxContainerResources {
        cpu_period: period,
        cpu_quota: quota,
        cpu_shares: shares,
        memory_limit_in_bytes: memory_limit.min(i128::from(i64::MAX)) as i64,
        oom_score_adj: qos::oom_score_adj(qos, c, memory_capacity),
        ..Default::default()
    }
}

/// Everything a container config needs that is not in the pod spec.
pub struct ContainerInputs<'a> {
    pub image_ref: &'a str,
    pub restart_count: u32,
    pub env: Vec<(String, String)>,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub mounts: Vec<cri::Mount>,
    pub memory_capacity: i128,
}

/// The container config for `c` of `pod`.
pub fn container_config(
    pod: &Pod,
    c: &Container,
    inputs: ContainerInputs<'_>,
) -> cri::ContainerConfig {
    let spec = pod.spec.clone().unwrap_or_default();
    let qos = qos::class(&spec);
    let mut labels: HashMap<String, String> = HashMap::new();
    let (ns, name, uid) = meta(pod);
    labels.insert(LABEL_POD_NAME.into(), name.into());
    labels.insert(LABEL_POD_NAMESPACE.into(), ns.into());
    labels.insert(LABEL_POD_UID.into(), uid.into());
    labels.insert(LABEL_CONTAINER_NAME.into(), c.name.clone());
    let mut annotations = HashMap::new();
    annotations.insert(
        ANNOTATION_RESTART_COUNT.into(),
        inputs.restart_count.to_string(),
    );
    annotations.insert(
        ANNOTATION_TERMINATION_MESSAGE_PATH.into(),
        c.termination_message_path
            .clone()
            .unwrap_or_else(|| "/dev/termination-log".into()),
    );
    annotations.insert(
        ANNOTATION_TERMINATION_MESSAGE_POLICY.into(),
        c.termination_message_policy
            .clone()
            .unwrap_or_else(|| "File".into()),
    );
    annotations.insert(
        ANNOTATION_GRACE_PERIOD.into(),
        spec.termination_grace_period_seconds
            .unwrap_or(30)
            .to_string(),
    );
    let sc = c.security_context.as_ref();
    let pod_sc = spec.security_context.as_ref();
    let run_as_user = sc
        .and_then(|s| s.run_as_user)
        .or_else(|| pod_sc.and_then(|s| s.run_as_user))
        .map(|value| cri::Int64Value { value });
    let run_as_group = sc
        .and_then(|s| s.run_as_group)
        .or_else(|| pod_sc.and_then(|s| s.run_as_group))
        .map(|value| cri::Int64Value { value });
    let capabilities = sc
        .and_then(|s| s.capabilities.as_ref())
        .map(|caps| cri::Capability {
            add_capabilities: caps.add.clone().unwrap_or_default(),
            drop_capabilities: caps.drop.clone().unwrap_or_default(),
            ..Default::default()
        });
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: c.name.clone(),
            attempt: inputs.restart_count,
        }),
        image: Some(cri::ImageSpec {
            image: inputs.image_ref.to_string(),
            user_specified_image: c.image.clone().unwrap_or_default(),
            ..Default::default()
        }),
        command: inputs.command,
        args: inputs.args,
        working_dir: c.working_dir.clone().unwrap_or_default(),
        envs: inputs
            .env
            .into_iter()
            .map(|(key, value)| cri::KeyValue { key, value })
            .collect(),
        mounts: inputs.mounts,
        labels,
        annotations,
        log_path: format!("{}/{}.log", c.name, inputs.restart_count),
        stdin: c.stdin.unwrap_or(false),
        stdin_once: c.stdin_once.unwrap_or(false),
        tty: c.tty.unwrap_or(false),
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(resources(c, qos, inputs.memory_capacity)),
            security_context: Some(cri::LinuxContainerSecurityContext {
                capabilities,
                privileged: sc.and_then(|s| s.privileged).unwrap_or(false),
                namespace_options: Some(namespace_options(pod)),
                run_as_user,
                run_as_group,
                readonly_rootfs: sc
                    .and_then(|s| s.read_only_root_filesystem)
                    .unwrap_or(false),
                supplemental_groups: pod_sc
                    .and_then(|s| s.supplemental_groups.clone())
                    .unwrap_or_default(),
                no_new_privs: sc.and_then(|s| s.allow_privilege_escalation) == Some(false),
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::net::{IpAddr, Ipv4Addr};

    fn config() -> Config {
        Config::new("n1", IpAddr::V4(Ipv4Addr::LOCALHOST), "/a".into(), "/s")
    }

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "prod", "uid": "u1", "labels": {"app": "w"}},
            "spec": spec,
        }))
        .unwrap()
    }

    #[test]
    fn dns_per_policy() {
        let host = HostDns {
            servers: vec!["192.0.2.53".into()],
            searches: vec!["corp".into()],
            options: vec!["edns0".into()],
        };
        let c = config();
        let d = dns_config(&pod(json!({"containers": []})), &c, &host);
        assert_eq!(d.servers, vec!["10.43.0.10"]);
        assert_eq!(
            d.searches,
            vec![
                "prod.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
                "corp"
            ]
        );
        assert_eq!(d.options, vec!["ndots:5"]);
        let d = dns_config(
            &pod(json!({"containers": [], "hostNetwork": true})),
            &c,
            &host,
        );
        assert_eq!(
            d.servers,
            vec!["192.0.2.53"],
            "host network falls back to Default"
        );
        let d = dns_config(
            &pod(
                json!({"containers": [], "hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"}),
            ),
            &c,
            &host,
        );
        assert_eq!(d.servers, vec!["10.43.0.10"]);
        let d = dns_config(
            &pod(json!({"containers": [], "dnsPolicy": "Default"})),
            &c,
            &host,
        );
        assert_eq!(
            (d.servers, d.options),
            (vec!["192.0.2.53".to_string()], vec!["edns0".to_string()])
        );
        let d = dns_config(
            &pod(json!({"containers": [], "dnsPolicy": "None", "dnsConfig": {
                "nameservers": ["1.2.3.4"], "searches": ["a.b"], "options": [{"name": "ndots", "value": "2"}, {"name": "rotate"}]}})),
            &c,
            &host,
        );
        assert_eq!(d.servers, vec!["1.2.3.4"]);
        assert_eq!(d.searches, vec!["a.b"]);
        assert_eq!(d.options, vec!["ndots:2", "rotate"]);
        let d = dns_config(
            &pod(
                json!({"containers": [], "dnsConfig": {"options": [{"name": "ndots", "value": "1"}]}}),
            ),
            &c,
            &host,
        );
        assert_eq!(
            d.options,
            vec!["ndots:1"],
            "dnsConfig options replace same-named ones"
        );
    }

    #[test]
    fn resolv_conf_parses() {
        let d = parse_resolv_conf(
            "# c\nnameserver 1.1.1.1\nnameserver 8.8.8.8\nsearch a b\noptions ndots:2 edns0\n",
        );
        assert_eq!(d.servers, vec!["1.1.1.1", "8.8.8.8"]);
        assert_eq!(d.searches, vec!["a", "b"]);
        assert_eq!(d.options, vec!["ndots:2", "edns0"]);
    }

    #[test]
    fn sandbox_has_labels_ports_log_dir_and_cgroup() {
        let p = pod(json!({"containers": [{"name": "c", "ports": [
            {"containerPort": 80, "hostPort": 8080}, {"containerPort": 53, "protocol": "UDP", "hostPort": 53}, {"containerPort": 9}]}]}));
        let s = sandbox_config(&p, 2, &config(), &HostDns::default());
        assert_eq!(s.metadata.as_ref().unwrap().attempt, 2);
        assert_eq!(s.hostname, "web");
        assert_eq!(s.labels[LABEL_POD_UID], "u1");
        assert_eq!(s.labels[LABEL_POD_NAMESPACE], "prod");
        assert_eq!(s.labels["app"], "w");
        assert_eq!(s.log_directory, "/a/logs/pods/prod_web_u1");
        assert_eq!(s.port_mappings.len(), 2);
        assert_eq!(s.port_mappings[1].protocol, cri::Protocol::Udp as i32);
        let linux = s.linux.unwrap();
        assert_eq!(linux.cgroup_parent, "/kubepods/besteffort/podu1");
        let ns = linux.security_context.unwrap().namespace_options.unwrap();
        assert_eq!(ns.network, cri::NamespaceMode::Pod as i32);
        let hn = sandbox_config(
            &pod(json!({"containers": [], "hostNetwork": true})),
            0,
            &config(),
            &HostDns::default(),
        );
        assert_eq!(hn.hostname, "", "a host-network sandbox names no hostname");
        let ns = hn
            .linux
            .unwrap()
            .security_context
            .unwrap()
            .namespace_options
            .unwrap();
        assert_eq!(ns.network, cri::NamespaceMode::Node as i32);
    }

    #[test]
    fn container_resources_follow_upstream_formulas() {
        let p = pod(json!({"containers": [{"name": "c", "resources": {
            "requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "128Mi"}}}]}));
        let c = &p.spec.as_ref().unwrap().containers[0];
        let r = resources(c, Qos::Burstable, 1 << 30);
        assert_eq!(r.cpu_shares, 256);
        assert_eq!((r.cpu_period, r.cpu_quota), (100_000, 50_000));
        assert_eq!(r.memory_limit_in_bytes, 128 << 20);
        assert_eq!(r.oom_score_adj, 938);
        let none = resources(&Container::default(), Qos::BestEffort, 1 << 30);
        assert_eq!(
            (none.cpu_shares, none.cpu_quota, none.memory_limit_in_bytes),
            (2, 0, 0)
        );
    }

    #[test]
    fn container_config_carries_labels_annotations_and_log_path() {
        let p = pod(
            json!({"terminationGracePeriodSeconds": 5, "containers": [{"name": "app", "image": "busybox:1", "tty": true}]}),
        );
        let c = &p.spec.as_ref().unwrap().containers[0];
        let cfg = container_config(
            &p,
            c,
            ContainerInputs {
                image_ref: "sha256:abc",
                restart_count: 3,
                env: vec![("A".into(), "1".into())],
                command: vec!["sh".into()],
                args: vec![],
                mounts: vec![],
                memory_capacity: 1 << 30,
            },
        );
        assert_eq!(cfg.labels[LABEL_CONTAINER_NAME], "app");
        assert_eq!(cfg.labels[LABEL_POD_UID], "u1");
        assert_eq!(cfg.annotations[ANNOTATION_RESTART_COUNT], "3");
        assert_eq!(cfg.annotations[ANNOTATION_GRACE_PERIOD], "5");
        assert_eq!(cfg.log_path, "app/3.log");
        assert_eq!(cfg.metadata.unwrap().attempt, 3);
        assert_eq!(cfg.image.unwrap().image, "sha256:abc");
        assert!(cfg.tty);
        assert_eq!(cfg.envs[0].key, "A");
    }
}
