//! NodeResourcesFit and NodePorts filters: the pod's requests must fit in what the
//! node's allocatable leaves after bound and assumed pods; its host ports must be free.

use std::borrow::Cow;

use super::{Plugin, Rejection};
use crate::cache::{HostPort, NodeInfo, PodInfo};

pub const REASON_TOO_MANY_PODS: &str = "Too many pods";
pub const REASON_PORTS: &str = "node(s) didn't have free ports for the requested pod ports";

/// Every resource the pod asks for more of than the node has left, upstream's reasons
/// in upstream's order (pods, cpu, memory, ephemeral-storage, extended resources).
pub fn insufficient(pod: &PodInfo, node: &NodeInfo) -> Vec<Cow<'static, str>> {
    let mut out = Vec::new();
    let alloc = &node.allocatable;
    let used = &node.requested;
    if alloc.pods < used.pods + 1 {
        out.push(Cow::Borrowed(REASON_TOO_MANY_PODS));
    }
    let req = &pod.requests.requests;
    if req.milli_cpu == 0
        && req.memory == 0
        && req.ephemeral_storage == 0
        && req.scalar.values().all(|v| *v == 0)
    {
        return out;
    }
    if req.milli_cpu > 0 && req.milli_cpu > alloc.milli_cpu - used.milli_cpu {
        out.push(Cow::Borrowed("Insufficient cpu"));
    }
    if req.memory > 0 && req.memory > alloc.memory - used.memory {
        out.push(Cow::Borrowed("Insufficient memory"));
    }
    if req.ephemeral_storage > 0
        && req.ephemeral_storage > alloc.ephemeral_storage - used.ephemeral_storage
    {
        out.push(Cow::Borrowed("Insufficient ephemeral-storage"));
    }
    for (name, q) in &req.scalar {
        if *q > 0 && *q > alloc.scalar(name) - used.scalar(name) {
            out.push(Cow::Owned(format!("Insufficient {name}")));
        }
    }
    out
}

pub fn filter(pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
    let reasons = insufficient(pod, node);
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(Rejection {
            plugin: Plugin::NodeResourcesFit,
            resolvable: true,
            reasons,
        })
    }
}

fn conflicts(a: &HostPort, b: &HostPort) -> bool {
    a.port == b.port
        && a.protocol == b.protocol
        && (a.ip == b.ip || a.ip == "0.0.0.0" || b.ip == "0.0.0.0")
}

pub fn filter_ports(pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
    let clash = pod
        .ports
        .iter()
        .any(|want| node.used_ports.iter().any(|used| conflicts(want, used)));
    if clash {
        Err(Rejection::unschedulable(Plugin::NodePorts, REASON_PORTS))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::{node, pod, resources};
    use serde_json::json;

    #[test]
    fn resource_fit_cases() {
        struct Case {
            name: &'static str,
            existing: Vec<serde_json::Value>,
            spec: serde_json::Value,
            want: Vec<&'static str>,
        }
        let gpu = |n: &str| json!({"containers": [{"name": "c", "image": "i", "resources": {"requests": {"example.com/gpu": n}}}]});
        let cases = [
            Case {
                name: "fits",
                existing: vec![resources("1", "1Gi")],
                spec: resources("1", "1Gi"),
                want: vec![],
            },
            Case {
                name: "cpu exhausted by bound pods",
                existing: vec![resources("1500m", "1Gi")],
                spec: resources("1", "1Gi"),
                want: vec!["Insufficient cpu"],
            },
            Case {
                name: "cpu and memory",
                existing: vec![],
                spec: resources("3", "5Gi"),
                want: vec!["Insufficient cpu", "Insufficient memory"],
            },
            Case {
                name: "pod count",
                existing: vec![json!({}), json!({})],
                spec: resources("1", "1Gi"),
                want: vec!["Too many pods"],
            },
            Case {
                name: "pod count with an empty pod",
                existing: vec![json!({}), json!({})],
                spec: json!({}),
                want: vec!["Too many pods"],
            },
            Case {
                name: "extended resource",
                existing: vec![gpu("1")],
                spec: gpu("1"),
                want: vec!["Insufficient example.com/gpu"],
            },
            Case {
                name: "unknown extended resource",
                existing: vec![],
                spec: json!({"containers": [{"name": "c", "image": "i", "resources": {"requests": {"example.com/fpga": "1"}}}]}),
                want: vec!["Insufficient example.com/fpga"],
            },
        ];
        for c in cases {
            let mut ni = NodeInfo::new(node(
                "n",
                json!({}),
                json!({}),
                json!({"cpu": "2", "memory": "4Gi", "pods": "2", "example.com/gpu": "1"}),
            ));
            for (i, e) in c.existing.into_iter().enumerate() {
                ni.add_pod(pod(&format!("e{i}"), e));
            }
            let got: Vec<String> = insufficient(&pod("p", c.spec), &ni)
                .into_iter()
                .map(|r| r.to_string())
                .collect();
            assert_eq!(got, c.want, "{}", c.name);
        }
    }

    #[test]
    fn host_port_cases() {
        struct Case {
            name: &'static str,
            used: serde_json::Value,
            want: serde_json::Value,
            clash: bool,
        }
        let ports =
            |p: serde_json::Value| json!({"containers": [{"name": "c", "image": "i", "ports": p}]});
        let cases = [
            Case {
                name: "same port",
                used: json!([{"containerPort": 80, "hostPort": 8080}]),
                want: json!([{"containerPort": 80, "hostPort": 8080}]),
                clash: true,
            },
            Case {
                name: "other port",
                used: json!([{"containerPort": 80, "hostPort": 8080}]),
                want: json!([{"containerPort": 80, "hostPort": 8081}]),
                clash: false,
            },
            Case {
                name: "other protocol",
                used: json!([{"containerPort": 80, "hostPort": 8080}]),
                want: json!([{"containerPort": 80, "hostPort": 8080, "protocol": "UDP"}]),
                clash: false,
            },
            Case {
                name: "different IPs",
                used: json!([{"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.1"}]),
                want: json!([{"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.2"}]),
                clash: false,
            },
            Case {
                name: "wildcard IP clashes with any",
                used: json!([{"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.1"}]),
                want: json!([{"containerPort": 80, "hostPort": 8080}]),
                clash: true,
            },
            Case {
                name: "container port only",
                used: json!([{"containerPort": 80}]),
                want: json!([{"containerPort": 80}]),
                clash: false,
            },
        ];
        for c in cases {
            let mut ni = NodeInfo::new(node("n", json!({}), json!({}), json!({"pods": "10"})));
            ni.add_pod(pod("e", ports(c.used)));
            let got = filter_ports(&pod("p", ports(c.want)), &ni);
            assert_eq!(got.is_err(), c.clash, "{}", c.name);
        }
    }
}
