//! LimitRanger: the namespace's LimitRanges default and bound what pods and claims ask.
//!
//! Mutating (pod creates): each container without a limit or request for a resource the
//! `Container` item has a `default` / `defaultRequest` for gets it, and the pod is
//! annotated `kubernetes.io/limit-ranger` with what was set.
//! Validating: `min`, `max` and `maxLimitRequestRatio` per Container, per Pod (sums over
//! the containers) and per PersistentVolumeClaim (storage), with upstream's messages
//! (`maximum cpu usage per Container is 1, but limit is 2`), all reported at once.
//!
//! Pods are checked on create only (their containers' resources cannot change later, as
//! upstream reasons); claims on create and update (a resize).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use skiff_api::quantity::Quantity;
use skiff_api::{meta, ApiError};

use super::{Attributes, Context, Operation, Plugin};

pub struct LimitRanger;

const ANNOTATION: &str = "kubernetes.io/limit-ranger";

type Resources = BTreeMap<String, Quantity>;

/// A resource list (`{"cpu": "1"}`), skipping values that do not parse (validation of
/// the object reports those).
fn resources(list: Option<&Value>) -> Resources {
    list.and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.parse().ok()?)))
        .collect()
}

/// The LimitRange items of one type (`Container`, `Pod`, `PersistentVolumeClaim`).
fn items<'a>(ranges: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    ranges
        .iter()
        .filter_map(|r| r.pointer("/spec/limits").and_then(Value::as_array))
        .flatten()
        .filter(move |i| i.get("type").and_then(Value::as_str) == Some(kind))
}

fn containers_mut(pod: &mut Value) -> Vec<&mut Value> {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (field, list) in spec.iter_mut() {
        if field == "containers" || field == "initContainers" {
            if let Some(list) = list.as_array_mut() {
                out.extend(list.iter_mut());
            }
        }
    }
    out
}

fn containers(pod: &Value) -> Vec<&Value> {
    ["/spec/initContainers", "/spec/containers"]
        .iter()
        .filter_map(|p| pod.pointer(p).and_then(Value::as_array))
        .flatten()
        .collect()
}

/// Fills missing container limits and requests from the `Container` items' defaults.
/// Returns the annotation text (empty when nothing was set).
pub fn apply_defaults(ranges: &[Value], pod: &mut Value) -> String {
    let mut default_limits = Map::new();
    let mut default_requests = Map::new();
    for item in items(ranges, "Container") {
        for (field, target) in [
            ("default", &mut default_limits),
            ("defaultRequest", &mut default_requests),
        ] {
            if let Some(m) = item.get(field).and_then(Value::as_object) {
                for (k, v) in m {
                    target.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
        }
    }
    if default_limits.is_empty() && default_requests.is_empty() {
        return String::new();
    }
    let mut notes = Vec::new();
    for container in containers_mut(pod) {
        let name = container
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let Some(c) = container.as_object_mut() else {
            continue;
        };
        let res = c.entry("resources").or_insert_with(|| json!({}));
        if !res.is_object() {
            *res = json!({});
        }
        for (field, defaults, what) in [
            ("requests", &default_requests, "request"),
            ("limits", &default_limits, "limit"),
        ] {
            let Some(list) = res.as_object_mut().map(|r| {
                let l = r.entry(field).or_insert_with(|| json!({}));
                if !l.is_object() {
                    *l = json!({});
                }
                l
            }) else {
                continue;
            };
            let Some(list) = list.as_object_mut() else {
                continue;
            };
            let mut set = Vec::new();
            for (k, v) in defaults {
                if !list.contains_key(k) {
                    list.insert(k.clone(), v.clone());
                    set.push(k.clone());
                }
            }
            if !set.is_empty() {
                notes.push(format!("{} {what} for container {name}", set.join(", ")));
            }
        }
        // Leave no empty maps behind (the typed form would drop them anyway).
        if let Some(r) = res.as_object_mut() {
            r.retain(|_, v| !v.as_object().is_some_and(Map::is_empty));
        }
    }
    if notes.is_empty() {
        String::new()
    } else {
        format!("LimitRanger plugin set: {}", notes.join("; "))
    }
}

fn min_violation(
    kind: &str,
    res: &str,
    min: &Quantity,
    req: &Resources,
    lim: &Resources,
) -> Option<String> {
    match req.get(res) {
        None => Some(format!(
            "minimum {res} usage per {kind} is {min}.  No request is specified"
        )),
        Some(r) if r < min => Some(format!(
            "minimum {res} usage per {kind} is {min}, but request is {r}"
        )),
        _ => match lim.get(res) {
            Some(l) if l < min => Some(format!(
                "minimum {res} usage per {kind} is {min}, but limit is {l}"
            )),
            _ => None,
        },
    }
}

fn max_violation(
    kind: &str,
    res: &str,
    max: &Quantity,
    req: &Resources,
    lim: &Resources,
) -> Option<String> {
    match lim.get(res) {
        None => Some(format!(
            "maximum {res} usage per {kind} is {max}.  No limit is specified"
        )),
        Some(l) if l > max => Some(format!(
            "maximum {res} usage per {kind} is {max}, but limit is {l}"
        )),
        _ => match req.get(res) {
            Some(r) if r > max => Some(format!(
                "maximum {res} usage per {kind} is {max}, but request is {r}"
            )),
            _ => None,
        },
    }
}

fn ratio_violation(
    kind: &str,
    res: &str,
    ratio: &Quantity,
    req: &Resources,
    lim: &Resources,
) -> Option<String> {
    let r = req.get(res).filter(|q| !q.is_zero());
    let l = lim.get(res).filter(|q| !q.is_zero());
    let Some(r) = r else {
        return Some(format!("{res} max limit to request ratio per {kind} is {ratio}, but no request is specified or request is 0"));
    };
    let Some(l) = l else {
        return Some(format!("{res} max limit to request ratio per {kind} is {ratio}, but no limit is specified or limit is 0"));
    };
    let observed = l.nanos() as f64 / r.nanos() as f64;
    (observed * 1000.0 > ratio.milli_value() as f64).then(|| {
        format!("{res} max limit to request ratio per {kind} is {ratio}, but provided ratio is {observed:.6}")
    })
}

/// Every min/max/ratio violation of one item against given requests and limits.
fn check(item: &Value, kind: &str, req: &Resources, lim: &Resources, out: &mut Vec<String>) {
    for (field, check) in [
        (
            "min",
            min_violation as fn(&str, &str, &Quantity, &Resources, &Resources) -> Option<String>,
        ),
        ("max", max_violation),
        ("maxLimitRequestRatio", ratio_violation),
    ] {
        for (res, bound) in resources(item.get(field)) {
            out.extend(check(kind, &res, &bound, req, lim));
        }
    }
}

fn sum(a: &mut Resources, b: &Resources) {
    for (k, v) in b {
        let total = match a.get(k) {
            Some(s) => s.checked_add(v).unwrap_or(*s),
            None => *v,
        };
        a.insert(k.clone(), total);
    }
}

/// The violations of a pod against the namespace's ranges.
pub fn pod_violations(ranges: &[Value], pod: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let per_container: Vec<(Resources, Resources)> = containers(pod)
        .iter()
        .map(|c| {
            (
                resources(c.pointer("/resources/requests")),
                resources(c.pointer("/resources/limits")),
            )
        })
        .collect();
    for item in items(ranges, "Container") {
        for (req, lim) in &per_container {
            check(item, "Container", req, lim, &mut out);
        }
    }
    let (mut req, mut lim) = (Resources::new(), Resources::new());
    for (r, l) in &per_container {
        sum(&mut req, r);
        sum(&mut lim, l);
    }
    for item in items(ranges, "Pod") {
        check(item, "Pod", &req, &lim, &mut out);
    }
    out
}

/// The violations of a claim (its storage request and limit).
pub fn claim_violations(ranges: &[Value], pvc: &Value) -> Vec<String> {
    let req = resources(pvc.pointer("/spec/resources/requests"));
    let lim = resources(pvc.pointer("/spec/resources/limits"));
    let mut out = Vec::new();
    for item in items(ranges, "PersistentVolumeClaim") {
        // Upstream bounds a claim's request by min and max (a claim need not set limits).
        for (field, is_min) in [("min", true), ("max", false)] {
            for (res, bound) in resources(item.get(field)) {
                let kind = "PersistentVolumeClaim";
                match req.get(&res) {
                    None => out.push(format!(
                        "{} {res} usage per {kind} is {bound}.  No request is specified",
                        if is_min { "minimum" } else { "maximum" }
                    )),
                    Some(r) if is_min && r < &bound => out.push(format!(
                        "minimum {res} usage per {kind} is {bound}, but request is {r}"
                    )),
                    Some(r) if !is_min && r > &bound => out.push(format!(
                        "maximum {res} usage per {kind} is {bound}, but request is {r}"
                    )),
                    _ => {}
                }
                if let Some(l) = lim.get(&res) {
                    if (is_min && l < &bound) || (!is_min && l > &bound) {
                        out.push(format!(
                            "{} {res} usage per {kind} is {bound}, but limit is {l}",
                            if is_min { "minimum" } else { "maximum" }
                        ));
                    }
                }
            }
        }
    }
    out
}

/// Upstream's aggregate format: one error alone, several in brackets.
pub fn aggregate(errors: &[String]) -> String {
    match errors {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

fn ranges(ctx: &Context<'_>, namespace: &str) -> Vec<Value> {
    super::cached_list(ctx.app, ("", "v1", "limitranges"), Some(namespace))
}

fn applies(attrs: &Attributes) -> bool {
    (attrs.operation == Operation::Create && attrs.is("", "pods"))
        || (matches!(attrs.operation, Operation::Create | Operation::Update)
            && attrs.is("", "persistentvolumeclaims"))
}

#[async_trait::async_trait]
impl Plugin for LimitRanger {
    fn name(&self) -> &'static str {
        "LimitRanger"
    }

    async fn mutate(
        &self,
        ctx: &Context<'_>,
        attrs: &Attributes,
        obj: &mut Value,
    ) -> Result<(), ApiError> {
        if attrs.operation != Operation::Create || !attrs.is("", "pods") {
            return Ok(());
        }
        let ranges = ranges(ctx, &attrs.namespace);
        if ranges.is_empty() {
            return Ok(());
        }
        let note = apply_defaults(&ranges, obj);
        if !note.is_empty() {
            let metadata = meta::metadata_mut(obj);
            let annotations = metadata.entry("annotations").or_insert_with(|| json!({}));
            if let Some(a) = annotations.as_object_mut() {
                a.insert(ANNOTATION.into(), Value::String(note));
            }
        }
        Ok(())
    }

    async fn validate(
        &self,
        ctx: &Context<'_>,
        attrs: &Attributes,
        obj: &Value,
    ) -> Result<(), ApiError> {
        if !applies(attrs) {
            return Ok(());
        }
        let ranges = ranges(ctx, &attrs.namespace);
        if ranges.is_empty() {
            return Ok(());
        }
        let errors = if attrs.resource == "pods" {
            pod_violations(&ranges, obj)
        } else {
            claim_violations(&ranges, obj)
        };
        if errors.is_empty() {
            Ok(())
        } else {
            Err(attrs.forbidden(&aggregate(&errors)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(items: Value) -> Vec<Value> {
        vec![json!({"spec": {"limits": items}})]
    }

    fn pod(resources: Value) -> Value {
        json!({"spec": {"containers": [{"name": "c", "resources": resources}]}})
    }

    #[test]
    fn defaults_fill_only_what_the_container_leaves_out() {
        let ranges = range(json!([{"type": "Container",
            "default": {"cpu": "500m", "memory": "128Mi"},
            "defaultRequest": {"cpu": "100m", "memory": "64Mi"}}]));
        let mut p = pod(json!({"limits": {"cpu": "1"}}));
        let note = apply_defaults(&ranges, &mut p);
        let r = &p["spec"]["containers"][0]["resources"];
        assert_eq!(r["limits"], json!({"cpu": "1", "memory": "128Mi"}));
        assert_eq!(r["requests"], json!({"cpu": "100m", "memory": "64Mi"}));
        assert_eq!(
            note,
            "LimitRanger plugin set: cpu, memory request for container c; memory limit for container c"
        );
    }

    #[test]
    fn max_min_and_ratio_use_upstreams_messages() {
        let ranges = range(
            json!([{"type": "Container", "max": {"cpu": "1"}, "min": {"memory": "10Mi"},
            "maxLimitRequestRatio": {"cpu": "2"}}]),
        );
        let p = pod(json!({"limits": {"cpu": "2"}, "requests": {"cpu": "500m", "memory": "5Mi"}}));
        assert_eq!(
            pod_violations(&ranges, &p),
            vec![
                "minimum memory usage per Container is 10Mi, but request is 5Mi",
                "maximum cpu usage per Container is 1, but limit is 2",
                "cpu max limit to request ratio per Container is 2, but provided ratio is 4.000000",
            ]
        );
        let ok =
            pod(json!({"limits": {"cpu": "1"}, "requests": {"cpu": "500m", "memory": "10Mi"}}));
        assert!(pod_violations(&ranges, &ok).is_empty());
        let none = pod(json!({}));
        assert_eq!(
            pod_violations(
                &range(json!([{"type": "Container", "max": {"cpu": "1"}}])),
                &none
            ),
            vec!["maximum cpu usage per Container is 1.  No limit is specified"]
        );
    }

    #[test]
    fn pod_items_bound_the_sum_of_the_containers() {
        let ranges = range(json!([{"type": "Pod", "max": {"memory": "1Gi"}}]));
        let p = json!({"spec": {"containers": [
            {"name": "a", "resources": {"limits": {"memory": "600Mi"}}},
            {"name": "b", "resources": {"limits": {"memory": "600Mi"}}}]}});
        assert_eq!(
            pod_violations(&ranges, &p),
            vec!["maximum memory usage per Pod is 1Gi, but limit is 1200Mi"]
        );
    }

    #[test]
    fn claims_are_bounded_by_their_storage_request() {
        let ranges = range(
            json!([{"type": "PersistentVolumeClaim", "max": {"storage": "2Gi"}, "min": {"storage": "1Gi"}}]),
        );
        let pvc = |s: &str| json!({"spec": {"resources": {"requests": {"storage": s}}}});
        assert_eq!(
            claim_violations(&ranges, &pvc("5Gi")),
            vec!["maximum storage usage per PersistentVolumeClaim is 2Gi, but request is 5Gi"]
        );
        assert!(claim_violations(&ranges, &pvc("1Gi")).is_empty());
        assert_eq!(aggregate(&["a".into(), "b".into()]), "[a, b]");
    }
}
