//! ResourceQuota (last in the chain): a create must fit every quota of its namespace
//! that counts it, and is charged to them before it is stored.
//!
//! Usage comes from each quota's `status.used` (kept by the quota controller); what the
//! new object adds ([`usage`]) is added and compared with `status.hard`. The charge is a
//! compare-and-swap of the quota (by resourceVersion) so two creates racing for the last
//! unit cannot both pass: the loser re-reads and is checked again. A quota whose status
//! the controller has not filled yet restricts nothing (as upstream: it reads
//! `status.hard`); one with `hard` but no `used` for a resource refuses ("status
//! unknown"), since usage cannot be known.
//!
//! Scopes as the quota controller supports them: Terminating, NotTerminating,
//! BestEffort, NotBestEffort and PriorityClass (scopeSelector In/NotIn/Exists/
//! DoesNotExist). Only creates are charged (a pod's resources cannot change later; a
//! deleted object is released by the controller's next pass).

use std::collections::BTreeMap;

use serde_json::{json, Value};
use skiff_api::quantity::Quantity;
use skiff_api::{meta, ApiError};

use super::{Attributes, Context, Operation, Plugin};
use crate::storage::WriteConflict;

pub struct ResourceQuota;

type Resources = BTreeMap<String, Quantity>;

/// Attempts at charging a quota that others are charging at the same time.
const RETRIES: usize = 16;

fn parse_list(v: Option<&Value>) -> Resources {
    v.and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.parse().ok()?)))
        .collect()
}

fn one() -> Quantity {
    Quantity::from_value(1)
}

fn add(list: &mut Resources, key: &str, q: Quantity) {
    let total = match list.get(key) {
        Some(s) => s.checked_add(&q).unwrap_or(*s),
        None => q,
    };
    list.insert(key.to_string(), total);
}

fn containers(pod: &Value) -> impl Iterator<Item = &Value> {
    pod.pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// A pod's effective requests or limits: the larger of the containers' sum and each init
/// container (they run one at a time, before the others), plus the overhead.
fn pod_resources(pod: &Value, field: &str) -> Resources {
    let mut sum = Resources::new();
    for c in containers(pod) {
        for (k, q) in parse_list(c.pointer(&format!("/resources/{field}"))) {
            add(&mut sum, &k, q);
        }
    }
    for c in pod
        .pointer("/spec/initContainers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for (k, q) in parse_list(c.pointer(&format!("/resources/{field}"))) {
            if sum.get(&k).is_none_or(|s| *s < q) {
                sum.insert(k, q);
            }
        }
    }
    for (k, q) in parse_list(pod.pointer("/spec/overhead")) {
        add(&mut sum, &k, q);
    }
    sum
}

/// What creating `obj` (of `resource` in `group`) adds to quota usage, by quota name.
pub fn usage(group: &str, resource: &str, obj: &Value) -> Resources {
    let mut out = Resources::new();
    let count = if group.is_empty() {
        format!("count/{resource}")
    } else {
        format!("count/{resource}.{group}")
    };
    out.insert(count, one());
    if !group.is_empty() {
        return out;
    }
    match resource {
        "pods" => {
            out.insert("pods".into(), one());
            for (field, prefix) in [("requests", "requests."), ("limits", "limits.")] {
                for (k, q) in pod_resources(obj, field) {
                    // Plain `cpu`/`memory` are the legacy names of the requests.
                    if field == "requests" && !k.contains('/') && !k.starts_with("hugepages-") {
                        out.insert(k.clone(), q);
                    }
                    out.insert(format!("{prefix}{k}"), q);
                }
            }
        }
        "services" => {
            out.insert("services".into(), one());
            let kind = obj.pointer("/spec/type").and_then(Value::as_str);
            let ports = obj
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .map_or(0, Vec::len) as i64;
            match kind {
                Some("NodePort") => {
                    out.insert("services.nodeports".into(), Quantity::from_value(ports));
                }
                Some("LoadBalancer") => {
                    out.insert("services.loadbalancers".into(), one());
                    out.insert("services.nodeports".into(), Quantity::from_value(ports));
                }
                _ => {}
            }
        }
        "persistentvolumeclaims" => {
            out.insert("persistentvolumeclaims".into(), one());
            let storage = obj
                .pointer("/spec/resources/requests/storage")
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok());
            if let Some(q) = storage {
                out.insert("requests.storage".into(), q);
            }
            if let Some(class) = obj
                .pointer("/spec/storageClassName")
                .and_then(Value::as_str)
                .filter(|c| !c.is_empty())
            {
                let prefix = format!("{class}.storageclass.storage.k8s.io/");
                out.insert(format!("{prefix}persistentvolumeclaims"), one());
                if let Some(q) = storage {
                    out.insert(format!("{prefix}requests.storage"), q);
                }
            }
        }
        "configmaps" | "secrets" | "replicationcontrollers" | "resourcequotas" => {
            out.insert(resource.to_string(), one());
        }
        _ => {}
    }
    out
}

fn is_best_effort(pod: &Value) -> bool {
    pod.pointer("/spec/initContainers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .chain(containers(pod))
        .all(|c| {
            ["requests", "limits"].iter().all(|f| {
                c.pointer(&format!("/resources/{f}"))
                    .and_then(Value::as_object)
                    .is_none_or(|m| m.is_empty())
            })
        })
}

/// The quota's scope requirements: `spec.scopes` as Exists requirements plus
/// `spec.scopeSelector.matchExpressions`.
fn scope_requirements(quota: &Value) -> Vec<(String, String, Vec<String>)> {
    let mut out: Vec<(String, String, Vec<String>)> = quota
        .pointer("/spec/scopes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|s| (s.to_string(), "Exists".to_string(), Vec::new()))
        .collect();
    for e in quota
        .pointer("/spec/scopeSelector/matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let values = e
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        out.push((
            e.get("scopeName")
                .and_then(Value::as_str)
                .unwrap_or("")
                .into(),
            e.get("operator")
                .and_then(Value::as_str)
                .unwrap_or("")
                .into(),
            values,
        ));
    }
    out
}

/// Whether a quota counts the object: unscoped quotas count everything; scoped ones only
/// pods in every scope.
fn matches_scopes(quota: &Value, resource: &str, obj: &Value) -> bool {
    let reqs = scope_requirements(quota);
    if reqs.is_empty() {
        return true;
    }
    if resource != "pods" {
        return false;
    }
    let terminating = obj
        .pointer("/spec/activeDeadlineSeconds")
        .is_some_and(|v| v.as_i64().is_some_and(|s| s >= 0));
    let class = obj
        .pointer("/spec/priorityClassName")
        .and_then(Value::as_str)
        .unwrap_or("");
    reqs.iter().all(|(scope, op, values)| match scope.as_str() {
        "Terminating" => terminating,
        "NotTerminating" => !terminating,
        "BestEffort" => is_best_effort(obj),
        "NotBestEffort" => !is_best_effort(obj),
        "PriorityClass" => match op.as_str() {
            "In" => values.iter().any(|v| v == class),
            "NotIn" => !values.iter().any(|v| v == class),
            "Exists" => !class.is_empty(),
            "DoesNotExist" => class.is_empty(),
            _ => false,
        },
        // Scopes this server does not evaluate (CrossNamespacePodAffinity, ...) match
        // nothing rather than everything.
        _ => false,
    })
}

/// `a=1,b=2` in key order, as upstream prints resource lists.
fn pretty(list: &Resources) -> String {
    list.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The resources a quota limits on which each container must say what it asks for.
const MUST_SPECIFY: [&str; 6] = [
    "cpu",
    "memory",
    "requests.cpu",
    "requests.memory",
    "limits.cpu",
    "limits.memory",
];

/// Upstream's backward-compatible constraint: a quota on cpu/memory makes every
/// container name its request/limit for it.
fn missing_constraints(hard: &Resources, pod: &Value) -> Option<String> {
    let mut missing: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for res in MUST_SPECIFY.iter().filter(|r| hard.contains_key(**r)) {
        let (field, name) = match res.split_once('.') {
            Some((f, n)) => (f, n),
            None => ("requests", *res),
        };
        for c in containers(pod) {
            let has = c
                .pointer(&format!("/resources/{field}/{name}"))
                .is_some_and(|v| !v.is_null());
            if !has {
                let cname = c.get("name").and_then(Value::as_str).unwrap_or("");
                missing.entry(res).or_default().push(cname.to_string());
            }
        }
    }
    if missing.is_empty() {
        return None;
    }
    let parts: Vec<String> = missing
        .iter()
        .map(|(res, names)| format!("{res} for: {}", names.join(",")))
        .collect();
    Some(format!("must specify {}", parts.join("; ")))
}

/// Decides one quota: the new `status.used` when the object fits (None when the quota
/// does not count it), or why it does not.
pub fn charge(
    quota: &Value,
    resource: &str,
    obj: &Value,
    delta: &Resources,
) -> Result<Option<Resources>, String> {
    let name = meta::name(quota);
    let hard = parse_list(quota.pointer("/status/hard"));
    if hard.is_empty() || !matches_scopes(quota, resource, obj) {
        return Ok(None);
    }
    if resource == "pods" {
        if let Some(why) = missing_constraints(&hard, obj) {
            return Err(format!("failed quota: {name}: {why}"));
        }
    }
    let requested: Resources = delta
        .iter()
        .filter(|(k, _)| hard.contains_key(*k))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    if requested.is_empty() {
        return Ok(None);
    }
    let mut used = parse_list(quota.pointer("/status/used"));
    let unknown: Vec<&String> = requested
        .keys()
        .filter(|k| !used.contains_key(*k))
        .collect();
    if !unknown.is_empty() {
        let names: Vec<&str> = unknown.iter().map(|s| s.as_str()).collect();
        return Err(format!(
            "status unknown for quota: {name}, resources: {}",
            names.join(",")
        ));
    }
    let mut failed = Vec::new();
    for (k, q) in &requested {
        let now = used
            .get(k)
            .copied()
            .unwrap_or_else(|| Quantity::from_value(0));
        let next = now.checked_add(q).unwrap_or(now);
        if hard.get(k).is_some_and(|h| next > *h) {
            failed.push(k.clone());
        }
        used.insert(k.clone(), next);
    }
    if !failed.is_empty() {
        let pick = |list: &Resources| -> Resources {
            failed
                .iter()
                .filter_map(|k| Some((k.clone(), *list.get(k)?)))
                .collect()
        };
        let before = parse_list(quota.pointer("/status/used"));
        return Err(format!(
            "exceeded quota: {name}, requested: {}, used: {}, limited: {}",
            pretty(&pick(&requested)),
            pretty(&pick(&before)),
            pretty(&pick(&hard))
        ));
    }
    Ok(Some(used))
}

#[async_trait::async_trait]
impl Plugin for ResourceQuota {
    fn name(&self) -> &'static str {
        "ResourceQuota"
    }

    async fn validate(
        &self,
        ctx: &Context<'_>,
        attrs: &Attributes,
        obj: &Value,
    ) -> Result<(), ApiError> {
        if attrs.operation != Operation::Create
            || !attrs.subresource.is_empty()
            || attrs.namespace.is_empty()
        {
            return Ok(());
        }
        let quotas = super::cached_list(
            ctx.app,
            ("", "v1", "resourcequotas"),
            Some(&attrs.namespace),
        );
        if quotas.is_empty() {
            return Ok(());
        }
        let delta = usage(&attrs.group, &attrs.resource, obj);
        for cached in quotas {
            let key = skiff_store::keys::object_key(
                "resourcequotas",
                Some(&attrs.namespace),
                meta::name(&cached),
            );
            let mut quota = cached;
            let mut charged = false;
            for _ in 0..RETRIES {
                let used = charge(&quota, &attrs.resource, obj, &delta)
                    .map_err(|why| attrs.forbidden(&why))?;
                let Some(used) = used else {
                    charged = true;
                    break;
                };
                if attrs.dry_run {
                    charged = true;
                    break;
                }
                let mut next = quota.clone();
                let used: serde_json::Map<String, Value> = used
                    .into_iter()
                    .map(|(k, v)| (k, json!(v.to_string())))
                    .collect();
                next["status"]["used"] = Value::Object(used);
                let expected: i64 = meta::resource_version(&quota).parse().unwrap_or(0);
                match ctx
                    .app
                    .storage
                    .update(&key, &next, expected, &[], &[])
                    .await?
                {
                    Ok(_) => {
                        charged = true;
                        break;
                    }
                    // Someone else charged (or the controller recounted) first: decide
                    // again on what is stored now.
                    Err(WriteConflict::Object(Some(current))) => quota = current,
                    Err(WriteConflict::Object(None)) => {
                        charged = true; // the quota is gone: nothing to charge
                        break;
                    }
                    Err(WriteConflict::Claim) => break,
                }
            }
            if !charged {
                return Err(ApiError::conflict(
                    &skiff_api::GroupResource::new("", "resourcequotas"),
                    meta::name(&quota),
                    "too many concurrent writers charging this quota; try again",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(hard: Value, used: Value) -> Value {
        json!({"metadata": {"name": "q"}, "status": {"hard": hard, "used": used}})
    }

    fn pod(requests: Value, limits: Value) -> Value {
        json!({"spec": {"containers": [{"name": "c", "resources": {"requests": requests, "limits": limits}}]}})
    }

    #[test]
    fn a_full_quota_refuses_with_upstreams_message() {
        let q = quota(json!({"pods": "2"}), json!({"pods": "2"}));
        let p = pod(json!({}), json!({}));
        let delta = usage("", "pods", &p);
        assert_eq!(
            charge(&q, "pods", &p, &delta).unwrap_err(),
            "exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"
        );
        let q = quota(json!({"pods": "2"}), json!({"pods": "1"}));
        let used = charge(&q, "pods", &p, &delta).unwrap().unwrap();
        assert_eq!(used["pods"], Quantity::from_value(2));
    }

    #[test]
    fn cpu_quotas_need_containers_to_say_what_they_use() {
        let q = quota(json!({"limits.cpu": "2"}), json!({"limits.cpu": "0"}));
        let p = pod(json!({"cpu": "1"}), json!({}));
        assert_eq!(
            charge(&q, "pods", &p, &usage("", "pods", &p)).unwrap_err(),
            "failed quota: q: must specify limits.cpu for: c"
        );
        let p = pod(json!({"cpu": "1"}), json!({"cpu": "1500m"}));
        let used = charge(&q, "pods", &p, &usage("", "pods", &p))
            .unwrap()
            .unwrap();
        assert_eq!(used["limits.cpu"].to_string(), "1500m");
    }

    #[test]
    fn counts_and_scopes() {
        let delta = usage("apps", "deployments", &json!({}));
        assert_eq!(
            delta.keys().collect::<Vec<_>>(),
            vec!["count/deployments.apps"]
        );
        let q = json!({"metadata": {"name": "be"}, "spec": {"scopes": ["BestEffort"]},
            "status": {"hard": {"pods": "0"}, "used": {"pods": "0"}}});
        let burstable = pod(json!({"cpu": "1"}), json!({}));
        assert_eq!(
            charge(&q, "pods", &burstable, &usage("", "pods", &burstable)),
            Ok(None)
        );
        let best = json!({"spec": {"containers": [{"name": "c"}]}});
        assert!(charge(&q, "pods", &best, &usage("", "pods", &best)).is_err());
        let unsynced = json!({"metadata": {"name": "new"}, "spec": {"hard": {"pods": "0"}}});
        assert_eq!(
            charge(&unsynced, "pods", &best, &usage("", "pods", &best)),
            Ok(None)
        );
    }
}
