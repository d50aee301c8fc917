//! A pod's QoS class and what follows from it: its cgroup parent and each container's
//! oom_score_adj, computed as upstream does.

use k8s_openapi::api::core::v1::{Container, PodSpec};
use skiff_api::quantity::Quantity;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Qos {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl Qos {
    pub fn as_str(self) -> &'static str {
        match self {
            Qos::Guaranteed => "Guaranteed",
            Qos::Burstable => "Burstable",
            Qos::BestEffort => "BestEffort",
        }
    }
}

/// A container's quantity `name` from requests (`limits = false`) or limits, if set
/// and non-zero. A missing request defaults to the limit, as API defaulting does.
pub fn quantity(c: &Container, name: &str, limits: bool) -> Option<Quantity> {
    let res = c.resources.as_ref()?;
    let get = |m: Option<
        &std::collections::BTreeMap<
            String,
            k8s_openapi::apimachinery::pkg::api::resource::Quantity,
        >,
    >| {
        m.and_then(|m| m.get(name))
            .and_then(|q| q.0.parse::<Quantity>().ok())
            .filter(|q| !q.is_zero())
    };
    if limits {
        get(res.limits.as_ref())
    } else {
        get(res.requests.as_ref()).or_else(|| get(res.limits.as_ref()))
    }
}

/// Upstream's GetPodQOS: BestEffort without any cpu/memory request or limit;
/// Guaranteed when every container limits both and requests equal limits.
pub fn class(spec: &PodSpec) -> Qos {
    let mut any = false;
    let mut guaranteed = true;
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        for name in ["cpu", "memory"] {
            let request = quantity(c, name, false);
            let limit = quantity(c, name, true);
            any |= request.is_some() || limit.is_some();
            if limit.is_none() || request != limit {
                guaranteed = false;
            }
        }
    }
    if !any {
        Qos::BestEffort
    } else if guaranteed {
        Qos::Guaranteed
    } else {
        Qos::Burstable
    }
}

/// The pod's cgroup (cgroupfs layout, as the kubelet's): /kubepods[/burstable|/besteffort]/pod<uid>.
pub fn cgroup_parent(qos: Qos, uid: &str) -> String {
    match qos {
        Qos::Guaranteed => format!("/kubepods/pod{uid}"),
        Qos::Burstable => format!("/kubepods/burstable/pod{uid}"),
        Qos::BestEffort => format!("/kubepods/besteffort/pod{uid}"),
    }
}

/// Upstream's GetContainerOOMScoreAdjust for a container of a pod of class `qos` on a
/// node with `capacity` bytes of memory.
pub fn oom_score_adj(qos: Qos, c: &Container, capacity: i128) -> i64 {
    match qos {
        Qos::Guaranteed => -997,
        Qos::BestEffort => 1000,
        Qos::Burstable => {
            let request = quantity(c, "memory", false).map(|q| q.value()).unwrap_or(0);
            let capacity = capacity.max(1);
            let adj = 1000 - (1000 * request) / capacity;
            // Keep burstable containers above guaranteed ones and below best-effort ones.
            adj.clamp(2, 999) as i64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(resources: &[serde_json::Value]) -> PodSpec {
        let containers: Vec<_> = resources
            .iter()
            .enumerate()
            .map(|(i, r)| json!({"name": format!("c{i}"), "resources": r}))
            .collect();
        serde_json::from_value(json!({ "containers": containers })).unwrap()
    }

    #[test]
    fn classes() {
        let cases = [
            ("nothing", vec![json!({})], Qos::BestEffort),
            (
                "limits only (requests default to them)",
                vec![json!({"limits": {"cpu": "1", "memory": "1Gi"}})],
                Qos::Guaranteed,
            ),
            (
                "equal",
                vec![
                    json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1000m", "memory": "1Gi"}}),
                ],
                Qos::Guaranteed,
            ),
            (
                "request below limit",
                vec![json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}})],
                Qos::Burstable,
            ),
            (
                "memory only",
                vec![json!({"limits": {"memory": "1Gi"}})],
                Qos::Burstable,
            ),
            (
                "one container without",
                vec![json!({"limits": {"cpu": "1", "memory": "1Gi"}}), json!({})],
                Qos::Burstable,
            ),
        ];
        for (name, r, want) in cases {
            assert_eq!(class(&spec(&r)), want, "{name}");
        }
    }

    #[test]
    fn oom_scores_and_cgroups() {
        let s = spec(&[json!({"requests": {"memory": "1Gi"}})]);
        let c = &s.containers[0];
        assert_eq!(oom_score_adj(Qos::Burstable, c, 4 << 30), 750);
        assert_eq!(oom_score_adj(Qos::Burstable, c, 1 << 30), 2);
        assert_eq!(oom_score_adj(Qos::Guaranteed, c, 4 << 30), -997);
        assert_eq!(oom_score_adj(Qos::BestEffort, c, 4 << 30), 1000);
        assert_eq!(
            cgroup_parent(Qos::Burstable, "u"),
            "/kubepods/burstable/podu"
        );
        assert_eq!(cgroup_parent(Qos::Guaranteed, "u"), "/kubepods/podu");
    }
}
