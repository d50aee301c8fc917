//! Quota scopes (pure): which pods a scoped quota tracks, and which of its resources a
//! scope allows, as upstream's pod evaluator decides.

use k8s_openapi::api::core::v1::{Pod, ResourceQuota, ScopedResourceSelectorRequirement};

/// Every scope requirement of a quota: its plain `scopes` (as Exists) and its
/// `scopeSelector` expressions.
pub fn requirements(quota: &ResourceQuota) -> Vec<ScopedResourceSelectorRequirement> {
    let spec = quota.spec.as_ref();
    let mut out: Vec<ScopedResourceSelectorRequirement> = spec
        .and_then(|s| s.scopes.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|scope| ScopedResourceSelectorRequirement {
            operator: "Exists".into(),
            scope_name: scope,
            values: None,
        })
        .collect();
    out.extend(
        spec.and_then(|s| s.scope_selector.as_ref())
            .and_then(|s| s.match_expressions.clone())
            .unwrap_or_default(),
    );
    out
}

/// Whether a pod is BestEffort: no container asks for or limits cpu or memory.
pub fn is_best_effort(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return true;
    };
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .all(|c| {
            let r = c.resources.as_ref();
            ["cpu", "memory"].iter().all(|k| {
                !r.and_then(|r| r.requests.as_ref())
                    .is_some_and(|m| m.contains_key(*k))
                    && !r
                        .and_then(|r| r.limits.as_ref())
                        .is_some_and(|m| m.contains_key(*k))
            })
        })
}

fn is_terminating(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.active_deadline_seconds)
        .is_some_and(|d| d >= 0)
}

fn uses_cross_namespace_affinity(pod: &Pod) -> bool {
    let Some(a) = pod.spec.as_ref().and_then(|s| s.affinity.as_ref()) else {
        return false;
    };
    let terms = a
        .pod_affinity
        .iter()
        .flat_map(|p| {
            p.required_during_scheduling_ignored_during_execution
                .iter()
                .flatten()
                .chain(
                    p.preferred_during_scheduling_ignored_during_execution
                        .iter()
                        .flatten()
                        .map(|w| &w.pod_affinity_term),
                )
        })
        .chain(a.pod_anti_affinity.iter().flat_map(|p| {
            p.required_during_scheduling_ignored_during_execution
                .iter()
                .flatten()
                .chain(
                    p.preferred_during_scheduling_ignored_during_execution
                        .iter()
                        .flatten()
                        .map(|w| &w.pod_affinity_term),
                )
        }));
    terms.into_iter().any(|t| {
        t.namespace_selector.is_some() || t.namespaces.as_ref().is_some_and(|n| !n.is_empty())
    })
}

/// Whether `pod` matches one scope requirement.
fn matches(req: &ScopedResourceSelectorRequirement, pod: &Pod) -> bool {
    match req.scope_name.as_str() {
        "Terminating" => is_terminating(pod),
        "NotTerminating" => !is_terminating(pod),
        "BestEffort" => is_best_effort(pod),
        "NotBestEffort" => !is_best_effort(pod),
        "CrossNamespacePodAffinity" => uses_cross_namespace_affinity(pod),
        "PriorityClass" => {
            let class = pod
                .spec
                .as_ref()
                .and_then(|s| s.priority_class_name.as_deref());
            let values = req.values.as_deref().unwrap_or(&[]);
            match req.operator.as_str() {
                "Exists" => class.is_some_and(|c| !c.is_empty()),
                "DoesNotExist" => class.is_none_or(str::is_empty),
                "In" => class.is_some_and(|c| values.iter().any(|v| v == c)),
                "NotIn" => class.is_none_or(|c| !values.iter().any(|v| v == c)),
                _ => false,
            }
        }
        _ => false,
    }
}

/// Whether a scoped quota tracks `pod` (all requirements match).
pub fn pod_matches(reqs: &[ScopedResourceSelectorRequirement], pod: &Pod) -> bool {
    reqs.iter().all(|r| matches(r, pod))
}

/// Whether the quota's scopes let it track `resource` (BestEffort pods have no
/// requests or limits, so a BestEffort quota only counts pods).
pub fn allows_resource(reqs: &[ScopedResourceSelectorRequirement], resource: &str) -> bool {
    let best_effort = reqs.iter().any(|r| r.scope_name == "BestEffort");
    !best_effort || resource == "pods" || resource == "count/pods"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    fn quota(json: serde_json::Value) -> ResourceQuota {
        serde_json::from_value(serde_json::json!({"spec": json})).unwrap()
    }

    #[test]
    fn scopes_select_pods() {
        let best = pod(serde_json::json!({"spec": {"containers": [{"name": "c"}]}}));
        let burst = pod(
            serde_json::json!({"spec": {"activeDeadlineSeconds": 30, "priorityClassName": "high",
            "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}}),
        );
        let cases = [
            (
                "BestEffort",
                quota(serde_json::json!({"scopes": ["BestEffort"]})),
                true,
                false,
            ),
            (
                "NotBestEffort",
                quota(serde_json::json!({"scopes": ["NotBestEffort"]})),
                false,
                true,
            ),
            (
                "Terminating",
                quota(serde_json::json!({"scopes": ["Terminating"]})),
                false,
                true,
            ),
            (
                "NotTerminating",
                quota(serde_json::json!({"scopes": ["NotTerminating"]})),
                true,
                false,
            ),
            (
                "PriorityClass In",
                quota(serde_json::json!({"scopeSelector": {"matchExpressions": [
                {"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}})),
                false,
                true,
            ),
            (
                "PriorityClass DoesNotExist",
                quota(serde_json::json!({"scopeSelector": {"matchExpressions": [
                {"scopeName": "PriorityClass", "operator": "DoesNotExist"}]}})),
                true,
                false,
            ),
            (
                "two scopes must both match",
                quota(serde_json::json!({"scopes": ["NotBestEffort", "NotTerminating"]})),
                false,
                false,
            ),
            ("no scopes", quota(serde_json::json!({})), true, true),
        ];
        for (name, q, want_best, want_burst) in cases {
            let reqs = requirements(&q);
            assert_eq!(
                pod_matches(&reqs, &best),
                want_best,
                "{name}: best-effort pod"
            );
            assert_eq!(
                pod_matches(&reqs, &burst),
                want_burst,
                "{name}: burstable pod"
            );
        }
        let reqs = requirements(&quota(serde_json::json!({"scopes": ["BestEffort"]})));
        assert!(allows_resource(&reqs, "pods"));
        assert!(!allows_resource(&reqs, "requests.cpu"));
    }
}
