//! Resource amounts as the scheduler counts them: a pod's effective requests (upstream's
//! init-container max rule, sidecars and overhead) and a node's allocatable.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// CPU assumed for a container without a CPU request when scoring (upstream's 100m).
pub const DEFAULT_MILLI_CPU: i64 = 100;
/// Memory assumed for a container without a memory request when scoring (200 MiB).
pub const DEFAULT_MEMORY: i64 = 200 * 1024 * 1024;

/// An amount of every resource the scheduler tracks. CPU is in millicores, everything
/// else in whole units; `pods` is only meaningful for a node's allocatable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    pub pods: i64,
    /// Extended and other scalar resources (`example.com/gpu`, `hugepages-2Mi`, ...).
    pub scalar: BTreeMap<String, i64>,
}

fn amount(name: &str, q: &Quantity) -> i64 {
    let Ok(parsed) = skiff_api::quantity::parse(&q.0) else {
        return 0;
    };
    let v = if name == "cpu" {
        parsed.milli_value()
    } else {
        parsed.value()
    };
    v.clamp(-MAX_AMOUNT, MAX_AMOUNT) as i64
}

/// Larger amounts (about a pebibyte, or 10^12 cores) are clamped, so sums over every
/// pod of a node can never overflow.
const MAX_AMOUNT: i128 = 1 << 50;

impl Resources {
    /// Reads a resource list (requests, allocatable, overhead).
    pub fn from_list(list: Option<&BTreeMap<String, Quantity>>) -> Self {
        let mut r = Resources::default();
        for (name, q) in list.into_iter().flatten() {
            let v = amount(name, q);
            match name.as_str() {
                "cpu" => r.milli_cpu = v,
                "memory" => r.memory = v,
                "ephemeral-storage" => r.ephemeral_storage = v,
                "pods" => r.pods = v,
                _ => {
                    r.scalar.insert(name.clone(), v);
                }
            }
        }
        r
    }

    pub fn add(&mut self, o: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_add(o.milli_cpu);
        self.memory = self.memory.saturating_add(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.saturating_add(o.ephemeral_storage);
        self.pods = self.pods.saturating_add(o.pods);
        for (k, v) in &o.scalar {
            let e = self.scalar.entry(k.clone()).or_default();
            *e = e.saturating_add(*v);
        }
    }

    pub fn sub(&mut self, o: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_sub(o.milli_cpu);
        self.memory = self.memory.saturating_sub(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.saturating_sub(o.ephemeral_storage);
        self.pods = self.pods.saturating_sub(o.pods);
        for (k, v) in &o.scalar {
            let e = self.scalar.entry(k.clone()).or_default();
            *e = e.saturating_sub(*v);
        }
    }

    /// Raises every amount to at least `o`'s.
    pub fn max_with(&mut self, o: &Resources) {
        self.milli_cpu = self.milli_cpu.max(o.milli_cpu);
        self.memory = self.memory.max(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(o.ephemeral_storage);
        self.pods = self.pods.max(o.pods);
        for (k, v) in &o.scalar {
            let e = self.scalar.entry(k.clone()).or_insert(*v);
            *e = (*e).max(*v);
        }
    }

    pub fn scalar(&self, name: &str) -> i64 {
        self.scalar.get(name).copied().unwrap_or(0)
    }
}

/// What a pod asks of a node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodRequests {
    /// Effective requests, as NodeResourcesFit checks them.
    pub requests: Resources,
    /// CPU and memory with upstream's defaults for containers that request none, as
    /// LeastAllocated scores them.
    pub non_zero_cpu: i64,
    pub non_zero_memory: i64,
}

fn container_requests(c: &Container) -> Resources {
    Resources::from_list(c.resources.as_ref().and_then(|r| r.requests.as_ref()))
}

fn non_zero(c: &Container) -> (i64, i64) {
    let reqs = c.resources.as_ref().and_then(|r| r.requests.as_ref());
    let cpu = reqs
        .and_then(|r| r.get("cpu"))
        .map_or(DEFAULT_MILLI_CPU, |q| amount("cpu", q));
    let mem = reqs
        .and_then(|r| r.get("memory"))
        .map_or(DEFAULT_MEMORY, |q| amount("memory", q));
    (cpu, mem)
}

/// Upstream's pod request rule: the sum of the app containers (plus sidecars, i.e.
/// init containers with `restartPolicy: Always`), or the largest of the init
/// containers' needs (each with the sidecars started before it) if larger; plus the
/// pod's overhead.
pub fn pod_requests(pod: &Pod) -> PodRequests {
    let Some(spec) = pod.spec.as_ref() else {
        return PodRequests::default();
    };
    let mut reqs = Resources::default();
    let (mut nz_cpu, mut nz_mem) = (0i64, 0i64);
    for c in &spec.containers {
        reqs.add(&container_requests(c));
        let (cpu, mem) = non_zero(c);
        nz_cpu += cpu;
        nz_mem += mem;
    }
    let mut sidecars = Resources::default();
    let mut init = Resources::default();
    let (mut sidecar_cpu, mut sidecar_mem) = (0i64, 0i64);
    let (mut init_cpu, mut init_mem) = (0i64, 0i64);
    for c in spec.init_containers.iter().flatten() {
        let r = container_requests(c);
        let (cpu, mem) = non_zero(c);
        let (need, need_cpu, need_mem) = if c.restart_policy.as_deref() == Some("Always") {
            reqs.add(&r);
            nz_cpu += cpu;
            nz_mem += mem;
            sidecars.add(&r);
            sidecar_cpu += cpu;
            sidecar_mem += mem;
            (sidecars.clone(), sidecar_cpu, sidecar_mem)
        } else {
            let mut tmp = r;
            tmp.add(&sidecars);
            (tmp, cpu + sidecar_cpu, mem + sidecar_mem)
        };
        init.max_with(&need);
        init_cpu = init_cpu.max(need_cpu);
        init_mem = init_mem.max(need_mem);
    }
    reqs.max_with(&init);
    nz_cpu = nz_cpu.max(init_cpu);
    nz_mem = nz_mem.max(init_mem);
    if let Some(overhead) = spec.overhead.as_ref() {
        let o = Resources::from_list(Some(overhead));
        reqs.add(&o);
        nz_cpu += o.milli_cpu;
        nz_mem += o.memory;
    }
    PodRequests {
        requests: reqs,
        non_zero_cpu: nz_cpu,
        non_zero_memory: nz_mem,
    }
}

/// A node's allocatable resources (what pods may use).
pub fn allocatable(node: &Node) -> Resources {
    Resources::from_list(node.status.as_ref().and_then(|s| s.allocatable.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap()
    }

    fn c(name: &str, cpu: Option<&str>, mem: Option<&str>) -> serde_json::Value {
        let mut req = serde_json::Map::new();
        if let Some(cpu) = cpu {
            req.insert("cpu".into(), json!(cpu));
        }
        if let Some(mem) = mem {
            req.insert("memory".into(), json!(mem));
        }
        json!({"name": name, "image": "i", "resources": {"requests": req}})
    }

    #[test]
    fn pod_request_rules() {
        struct Case {
            name: &'static str,
            spec: serde_json::Value,
            cpu: i64,
            mem: i64,
            nz_cpu: i64,
            nz_mem: i64,
        }
        let mut sidecar = c("s", Some("200m"), None);
        sidecar["restartPolicy"] = json!("Always");
        let cases = [
            Case {
                name: "containers add up",
                spec: json!({"containers": [c("a", Some("100m"), Some("1Gi")), c("b", Some("250m"), None)]}),
                cpu: 350,
                mem: 1 << 30,
                nz_cpu: 350,
                nz_mem: (1 << 30) + DEFAULT_MEMORY,
            },
            Case {
                name: "no requests: zero requests, defaults for scoring",
                spec: json!({"containers": [c("a", None, None)]}),
                cpu: 0,
                mem: 0,
                nz_cpu: DEFAULT_MILLI_CPU,
                nz_mem: DEFAULT_MEMORY,
            },
            Case {
                name: "a larger init container wins",
                spec: json!({"containers": [c("a", Some("100m"), Some("1Mi"))], "initContainers": [c("i", Some("2"), None)]}),
                cpu: 2000,
                mem: 1 << 20,
                nz_cpu: 2000,
                nz_mem: DEFAULT_MEMORY,
            },
            Case {
                name: "sidecars add to containers and to later init containers",
                spec: json!({"containers": [c("a", Some("100m"), Some("1Mi"))], "initContainers": [sidecar, c("i", Some("1"), Some("1Mi"))]}),
                cpu: 1200,
                mem: 1 << 20,
                nz_cpu: 1200,
                nz_mem: (1 << 20) + DEFAULT_MEMORY,
            },
            Case {
                name: "overhead is added",
                spec: json!({"containers": [c("a", Some("100m"), Some("1Mi"))], "overhead": {"cpu": "50m", "memory": "1Mi"}}),
                cpu: 150,
                mem: 2 << 20,
                nz_cpu: 150,
                nz_mem: 2 << 20,
            },
        ];
        for case in cases {
            let r = pod_requests(&pod(case.spec));
            assert_eq!(r.requests.milli_cpu, case.cpu, "{}: cpu", case.name);
            assert_eq!(r.requests.memory, case.mem, "{}: memory", case.name);
            assert_eq!(r.non_zero_cpu, case.nz_cpu, "{}: non-zero cpu", case.name);
            assert_eq!(
                r.non_zero_memory, case.nz_mem,
                "{}: non-zero memory",
                case.name
            );
        }
    }

    #[test]
    fn extended_resources_are_scalar() {
        let p = pod(
            json!({"containers": [{"name": "a", "image": "i", "resources": {"requests": {"example.com/gpu": "2"}}}]}),
        );
        assert_eq!(pod_requests(&p).requests.scalar("example.com/gpu"), 2);
    }
}
