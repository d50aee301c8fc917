//! Quota usage (pure): what the objects of a namespace use of each resource a quota
//! limits, as upstream's evaluators count it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PersistentVolumeClaim, Pod, ResourceQuota, Service};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use skiff_api::quantity::Quantity;

use super::scopes;
use crate::util::pods;

const STORAGE_CLASS_SUFFIX: &str = ".storageclass.storage.k8s.io/";

/// What a namespace holds, as far as quotas care.
#[derive(Default)]
pub struct Namespace<'a> {
    pub pods: Vec<&'a Pod>,
    pub services: Vec<&'a Service>,
    pub claims: Vec<&'a PersistentVolumeClaim>,
    /// Object counts by resource name as quotas write them (`configmaps`,
    /// `count/deployments.apps`, ...), for types only counted.
    pub counts: BTreeMap<String, usize>,
}

/// A running sum that keeps the first addend's format, as upstream's `Add`.
#[derive(Clone, Copy, Default)]
struct Sum(Option<Quantity>);

impl Sum {
    fn add(&mut self, q: Quantity) {
        self.0 = Some(match self.0 {
            None => q,
            Some(s) => s.checked_add(&q).unwrap_or(s),
        });
    }

    fn value(self) -> Quantity {
        self.0.unwrap_or_else(|| Quantity::from_value(0))
    }
}

fn parse(q: &K8sQuantity) -> Option<Quantity> {
    q.0.parse().ok()
}

/// Whether the pod still counts against quota (upstream's QuotaV1Pod): not finished,
/// and not stuck terminating past its grace period.
pub fn pod_counts(pod: &Pod, now: Timestamp) -> bool {
    if pods::is_terminal(pod) {
        return false;
    }
    match (
        &pod.metadata.deletion_timestamp,
        pod.metadata.deletion_grace_period_seconds,
    ) {
        (Some(t), Some(grace)) => {
            let end =
                t.0.checked_add(SignedDuration::from_secs(grace))
                    .unwrap_or(t.0);
            now <= end
        }
        _ => true,
    }
}

fn container_list(c: &Container, limits: bool) -> impl Iterator<Item = (&String, &K8sQuantity)> {
    let r = c.resources.as_ref();
    let m = if limits {
        r.and_then(|r| r.limits.as_ref())
    } else {
        r.and_then(|r| r.requests.as_ref())
    };
    m.into_iter().flatten()
}

/// A pod's effective requests or limits (upstream's PodRequests / PodLimits): the larger
/// of the app containers plus sidecars and each init container plus the sidecars
/// started before it, plus the pod overhead.
pub fn pod_resources(pod: &Pod, limits: bool) -> BTreeMap<String, Quantity> {
    let mut total: BTreeMap<String, Sum> = BTreeMap::new();
    let Some(spec) = pod.spec.as_ref() else {
        return BTreeMap::new();
    };
    for c in &spec.containers {
        for (k, v) in container_list(c, limits) {
            if let Some(q) = parse(v) {
                total.entry(k.clone()).or_default().add(q);
            }
        }
    }
    let mut sidecars: BTreeMap<String, Sum> = BTreeMap::new();
    let mut init_max: BTreeMap<String, Quantity> = BTreeMap::new();
    for c in spec.init_containers.iter().flatten() {
        let is_sidecar = c.restart_policy.as_deref() == Some("Always");
        for (k, v) in container_list(c, limits) {
            let Some(q) = parse(v) else { continue };
            if is_sidecar {
                sidecars.entry(k.clone()).or_default().add(q);
                total.entry(k.clone()).or_default().add(q);
            } else {
                let mut with = sidecars.get(k).copied().unwrap_or_default();
                with.add(q);
                let v = with.value();
                let e = init_max.entry(k.clone()).or_insert(v);
                if v > *e {
                    *e = v;
                }
            }
        }
    }
    let mut out: BTreeMap<String, Quantity> =
        total.into_iter().map(|(k, s)| (k, s.value())).collect();
    for (k, v) in init_max {
        let e = out.entry(k).or_insert(v);
        if v > *e {
            *e = v;
        }
    }
    for (k, v) in spec.overhead.iter().flatten() {
        if let (Some(q), Some(e)) = (parse(v), out.get_mut(k)) {
            *e = e.checked_add(&q).unwrap_or(*e);
        }
    }
    out
}

fn is_extended(name: &str) -> bool {
    name.contains('/') && !name.starts_with("kubernetes.io/") && !name.starts_with("requests.")
}

/// The pod's usage under every resource name a quota can limit.
fn pod_usage(pod: &Pod) -> BTreeMap<String, Quantity> {
    let mut out = BTreeMap::new();
    out.insert("pods".to_string(), Quantity::from_value(1));
    out.insert("count/pods".to_string(), Quantity::from_value(1));
    for (name, q) in pod_resources(pod, false) {
        match name.as_str() {
            "cpu" | "memory" | "ephemeral-storage" => {
                out.insert(name.clone(), q);
                out.insert(format!("requests.{name}"), q);
            }
            n if n.starts_with("hugepages-") => {
                out.insert(name.clone(), q);
                out.insert(format!("requests.{name}"), q);
            }
            n if is_extended(n) => {
                out.insert(format!("requests.{name}"), q);
            }
            _ => {}
        }
    }
    for (name, q) in pod_resources(pod, true) {
        if matches!(name.as_str(), "cpu" | "memory" | "ephemeral-storage") {
            out.insert(format!("limits.{name}"), q);
        }
    }
    out
}

fn service_usage(svc: &Service) -> BTreeMap<String, Quantity> {
    let spec = svc.spec.as_ref();
    let type_ = spec.and_then(|s| s.type_.as_deref()).unwrap_or("ClusterIP");
    let ports = spec.and_then(|s| s.ports.as_deref()).unwrap_or(&[]);
    let node_ports = match type_ {
        "NodePort" => ports.len(),
        "LoadBalancer" => ports
            .iter()
            .filter(|p| p.node_port.is_some_and(|n| n != 0))
            .count(),
        _ => 0,
    };
    BTreeMap::from([
        ("services".to_string(), Quantity::from_value(1)),
        ("count/services".to_string(), Quantity::from_value(1)),
        (
            "services.nodeports".to_string(),
            Quantity::from_value(node_ports as i64),
        ),
        (
            "services.loadbalancers".to_string(),
            Quantity::from_value(i64::from(type_ == "LoadBalancer")),
        ),
    ])
}

fn claim_usage(pvc: &PersistentVolumeClaim) -> BTreeMap<String, Quantity> {
    let mut out = BTreeMap::from([
        (
            "persistentvolumeclaims".to_string(),
            Quantity::from_value(1),
        ),
        (
            "count/persistentvolumeclaims".to_string(),
            Quantity::from_value(1),
        ),
    ]);
    let class = pvc.spec.as_ref().and_then(|s| s.storage_class_name.clone());
    if let Some(class) = &class {
        out.insert(
            format!("{class}{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"),
            Quantity::from_value(1),
        );
    }
    let storage = pvc
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .and_then(parse);
    if let Some(q) = storage {
        out.insert("requests.storage".to_string(), q);
        if let Some(class) = &class {
            out.insert(format!("{class}{STORAGE_CLASS_SUFFIX}requests.storage"), q);
        }
    }
    out
}

/// Whether this controller knows how to measure `resource`.
fn pod_resource(name: &str) -> bool {
    matches!(
        name,
        "pods" | "count/pods" | "cpu" | "memory" | "ephemeral-storage"
    ) || name.starts_with("requests.") && name != "requests.storage"
        || name.starts_with("limits.")
        || name.starts_with("hugepages-")
}

fn service_resource(name: &str) -> bool {
    matches!(
        name,
        "services" | "count/services" | "services.nodeports" | "services.loadbalancers"
    )
}

fn claim_resource(name: &str) -> bool {
    matches!(
        name,
        "persistentvolumeclaims" | "count/persistentvolumeclaims" | "requests.storage"
    ) || name.contains(STORAGE_CLASS_SUFFIX)
}

/// `status.used` for `quota` over `ns`: every resource of `spec.hard` this controller can
/// measure (others are left out, as upstream leaves out resources no evaluator knows).
pub fn used(
    quota: &ResourceQuota,
    ns: &Namespace<'_>,
    now: Timestamp,
) -> BTreeMap<String, Quantity> {
    let hard: Vec<String> = quota
        .spec
        .as_ref()
        .and_then(|s| s.hard.as_ref())
        .map(|h| h.keys().cloned().collect())
        .unwrap_or_default();
    let reqs = scopes::requirements(quota);
    let scoped = !reqs.is_empty();
    let mut sums: BTreeMap<String, Sum> = BTreeMap::new();
    let mut add = |usage: BTreeMap<String, Quantity>| {
        for (k, v) in usage {
            if hard.contains(&k) {
                sums.entry(k).or_default().add(v);
            }
        }
    };
    for pod in &ns.pods {
        if pod_counts(pod, now) && (!scoped || scopes::pod_matches(&reqs, pod)) {
            add(pod_usage(pod));
        }
    }
    // Scopes are about pods: a scoped quota counts no other objects.
    if !scoped {
        ns.services.iter().for_each(|s| add(service_usage(s)));
        ns.claims.iter().for_each(|c| add(claim_usage(c)));
    }
    let mut out = BTreeMap::new();
    for name in &hard {
        let known = pod_resource(name)
            || service_resource(name)
            || claim_resource(name)
            || ns.counts.contains_key(name);
        if !known || (scoped && !scopes::allows_resource(&reqs, name)) {
            continue;
        }
        let value = match ns.counts.get(name) {
            Some(n) if !scoped => Quantity::from_value(*n as i64),
            Some(_) => Quantity::from_value(0),
            None => sums.get(name).copied().unwrap_or_default().value(),
        };
        out.insert(name.clone(), value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    fn quota(hard: serde_json::Value, scopes: serde_json::Value) -> ResourceQuota {
        serde_json::from_value(serde_json::json!({"spec": {"hard": hard, "scopes": scopes}}))
            .unwrap()
    }

    fn strings(m: BTreeMap<String, Quantity>) -> BTreeMap<String, String> {
        m.into_iter().map(|(k, v)| (k, v.to_string())).collect()
    }

    fn running(cpu: &str, mem: &str) -> Pod {
        pod(
            serde_json::json!({"spec": {"containers": [{"name": "c", "resources": {
            "requests": {"cpu": cpu, "memory": mem}, "limits": {"cpu": "1", "memory": mem}}}]},
            "status": {"phase": "Running"}}),
        )
    }

    #[test]
    fn pods_requests_and_limits_add_up() {
        let now = Timestamp::from_second(1000).unwrap();
        let (a, b) = (running("250m", "128Mi"), running("500m", "128Mi"));
        let done = pod(
            serde_json::json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "4"}}}]},
            "status": {"phase": "Succeeded"}}),
        );
        let q = quota(
            serde_json::json!({"pods": "10", "requests.cpu": "2", "cpu": "2", "limits.cpu": "4", "requests.memory": "1Gi", "configmaps": "5", "services": "3", "requests.nvidia.com/gpu": "1", "foo.example.com/bar": "1"}),
            serde_json::Value::Null,
        );
        let ns = Namespace {
            pods: vec![&a, &b, &done],
            counts: BTreeMap::from([("configmaps".to_string(), 2)]),
            ..Default::default()
        };
        let got = strings(used(&q, &ns, now));
        let want: BTreeMap<String, String> = [
            ("pods", "2"),
            ("requests.cpu", "750m"),
            ("cpu", "750m"),
            ("limits.cpu", "2"),
            ("requests.memory", "256Mi"),
            ("configmaps", "2"),
            ("services", "0"),
            ("requests.nvidia.com/gpu", "0"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            got, want,
            "finished pods and unknown resources are left out"
        );
    }

    #[test]
    fn init_containers_and_sidecars_as_upstream() {
        let p = pod(serde_json::json!({"spec": {
            "initContainers": [
                {"name": "sidecar", "restartPolicy": "Always", "resources": {"requests": {"cpu": "100m"}}},
                {"name": "big-init", "resources": {"requests": {"cpu": "2"}}}],
            "containers": [{"name": "c", "resources": {"requests": {"cpu": "500m"}}}],
            "overhead": {"cpu": "10m"}}}));
        // max(500m + 100m sidecar, 2 + 100m sidecar started before it) + 10m overhead
        assert_eq!(pod_resources(&p, false)["cpu"].to_string(), "2110m");
    }

    #[test]
    fn pods_stuck_terminating_past_grace_stop_counting() {
        let now = Timestamp::from_second(1000).unwrap();
        let stuck = pod(
            serde_json::json!({"metadata": {"deletionTimestamp": "1970-01-01T00:10:00Z", "deletionGracePeriodSeconds": 30}}),
        );
        let leaving = pod(
            serde_json::json!({"metadata": {"deletionTimestamp": "1970-01-01T00:16:30Z", "deletionGracePeriodSeconds": 30}}),
        );
        assert!(!pod_counts(&stuck, now));
        assert!(pod_counts(&leaving, now));
    }

    #[test]
    fn services_and_claims() {
        let now = Timestamp::from_second(0).unwrap();
        let np: Service = serde_json::from_value(serde_json::json!({"spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 443}]}})).unwrap();
        let lb: Service = serde_json::from_value(serde_json::json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80, "nodePort": 30080}]}})).unwrap();
        let pvc: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({"spec": {"storageClassName": "fast", "resources": {"requests": {"storage": "10Gi"}}}})).unwrap();
        let q = quota(
            serde_json::json!({"services": "9", "services.nodeports": "9", "services.loadbalancers": "9", "requests.storage": "100Gi",
                "fast.storageclass.storage.k8s.io/requests.storage": "50Gi", "persistentvolumeclaims": "9"}),
            serde_json::Value::Null,
        );
        let ns = Namespace {
            services: vec![&np, &lb],
            claims: vec![&pvc],
            ..Default::default()
        };
        let got = strings(used(&q, &ns, now));
        assert_eq!(got["services"], "2");
        assert_eq!(got["services.nodeports"], "3");
        assert_eq!(got["services.loadbalancers"], "1");
        assert_eq!(got["requests.storage"], "10Gi");
        assert_eq!(
            got["fast.storageclass.storage.k8s.io/requests.storage"],
            "10Gi"
        );
        assert_eq!(got["persistentvolumeclaims"], "1");
    }

    #[test]
    fn scoped_quotas_count_only_matching_pods() {
        let now = Timestamp::from_second(0).unwrap();
        let best = pod(serde_json::json!({"spec": {"containers": [{"name": "c"}]}}));
        let burst = running("1", "1Gi");
        let q = quota(
            serde_json::json!({"pods": "5"}),
            serde_json::json!(["BestEffort"]),
        );
        let ns = Namespace {
            pods: vec![&best, &burst],
            ..Default::default()
        };
        assert_eq!(strings(used(&q, &ns, now))["pods"], "1");
        let q = quota(
            serde_json::json!({"pods": "5", "requests.cpu": "4"}),
            serde_json::json!(["NotBestEffort"]),
        );
        let got = strings(used(&q, &ns, now));
        assert_eq!(
            (got["pods"].as_str(), got["requests.cpu"].as_str()),
            ("1", "1")
        );
    }
}
