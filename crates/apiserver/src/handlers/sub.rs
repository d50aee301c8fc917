//! Subresources with their own shapes: `scale` (an autoscaling/v1 Scale view of
//! spec.replicas), `pods/binding` (the scheduler's assignment) and `pods/eviction` (a
//! delete that respects PodDisruptionBudgets).

use axum::body::Body;
use http::StatusCode;
use serde_json::{json, Value};
use skiff_api::{meta, ApiError, GroupResource};

use super::Req;
use crate::http::{object_response, parse_body, read_body, ApiResult, Format};
use crate::resources::ScalePaths;
use crate::storage::WriteConflict;

/// A label selector object as the string form Scale reports (`app=web,tier in (a,b)`).
fn selector_string(sel: &Value) -> String {
    let mut parts: Vec<String> = Vec::new();
    let labels = sel.get("matchLabels").unwrap_or(sel);
    if let Some(m) = labels.as_object() {
        for (k, v) in m {
            if let Some(v) = v.as_str() {
                parts.push(format!("{k}={v}"));
            }
        }
    }
    for e in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = e["key"].as_str().unwrap_or("");
        let values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        parts.push(match e["operator"].as_str() {
            Some("In") => format!("{key} in ({})", values.join(",")),
            Some("NotIn") => format!("{key} notin ({})", values.join(",")),
            Some("Exists") => key.to_string(),
            _ => format!("!{key}"),
        });
    }
    parts.join(",")
}

fn scale_of(paths: &ScalePaths, obj: &Value) -> Value {
    let m = &obj["metadata"];
    let selector = match &paths.selector {
        None => String::new(),
        Some(p) if paths.selector_is_string => obj
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        Some(p) => selector_string(obj.pointer(p).unwrap_or(&Value::Null)),
    };
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": m["name"], "namespace": m["namespace"], "uid": m["uid"],
            "resourceVersion": m["resourceVersion"], "creationTimestamp": m["creationTimestamp"],
        },
        "spec": {"replicas": obj.pointer(&paths.spec_replicas).and_then(Value::as_i64).unwrap_or(1)},
        "status": {
            "replicas": obj.pointer(&paths.status_replicas).and_then(Value::as_i64).unwrap_or(0),
            "selector": selector,
        },
    })
}

pub async fn scale(req: &Req, body: Body) -> ApiResult {
    let gr = GroupResource::new(req.def.group, &format!("{}/scale", req.def.plural));
    let paths = req.def.hooks.scale_paths();
    if req.info.verb == "get" {
        let obj = req.app.storage.get(&req.key(&req.info.name)).await?;
        let obj =
            obj.ok_or_else(|| ApiError::not_found(&req.def.group_resource(), &req.info.name))?;
        return Ok(object_response(
            StatusCode::OK,
            Format::Json,
            &scale_of(&paths, &obj),
        ));
    }
    let bytes = read_body(body).await?;
    let content_type = req
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let is_update = req.info.verb == "update";
    // An update carries a whole Scale (maybe pinned to a resourceVersion); a patch, changes.
    let (patch, pinned) = if is_update {
        let scale = parse_body(&req.headers, &bytes)?;
        let pinned = scale
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        (scale, pinned)
    } else {
        let patch: Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad_request(format!("the patch is not valid JSON: {e}")))?;
        (patch, None)
    };
    let kind = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let stored = super::write::write_with(
        req,
        |current| {
            let scale = if is_update {
                patch.clone()
            } else {
                let patch_kind = if kind == "application/strategic-merge-patch+json" {
                    "application/merge-patch+json"
                } else {
                    kind.as_str()
                };
                crate::patch::apply_patch(patch_kind, "Scale", &scale_of(&paths, current), &patch)?
            };
            let replicas = scale
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if replicas < 0 {
                return Err(ApiError::invalid(
                    &skiff_api::GroupKind::new("autoscaling", "Scale"),
                    &req.info.name,
                    &skiff_api::FieldErrors(vec![skiff_api::FieldError::invalid(
                        "spec.replicas",
                        &json!(replicas),
                        "must be greater than or equal to 0",
                    )]),
                ));
            }
            let mut new = current.clone();
            set_pointer(&mut new, &paths.spec_replicas, json!(replicas));
            Ok(new)
        },
        pinned,
        &crate::admission::Context::new(&req.app),
    )
    .await
    .map_err(|mut e| {
        if e.code == 409 && e.reason == "Conflict" {
            e = ApiError::stale(&gr, &req.info.name);
        }
        e
    })?;
    Ok(object_response(
        StatusCode::OK,
        Format::Json,
        &scale_of(&paths, &stored),
    ))
}

/// Sets the field at a JSON pointer, making the objects on the way.
fn set_pointer(obj: &mut Value, pointer: &str, value: Value) {
    let mut at = obj;
    let parts: Vec<&str> = pointer.split('/').skip(1).collect();
    for (i, part) in parts.iter().enumerate() {
        if !at.is_object() {
            *at = json!({});
        }
        let Some(map) = at.as_object_mut() else {
            return;
        };
        if i + 1 == parts.len() {
            map.insert(part.to_string(), value);
            return;
        }
        at = map.entry(part.to_string()).or_insert_with(|| json!({}));
    }
}

fn success(code: StatusCode) -> axum::response::Response {
    let mut status = skiff_api::status::success_status(None);
    status["code"] = json!(code.as_u16());
    object_response(code, Format::Json, &status)
}

/// Assigns a pod to a node, once.
pub async fn binding(req: &Req, body: Body) -> ApiResult {
    let bytes = read_body(body).await?;
    let binding = parse_body(&req.headers, &bytes)?;
    let node = binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if node.is_empty() {
        return Err(ApiError::invalid(
            &skiff_api::GroupKind::new("", "Binding"),
            &req.info.name,
            &skiff_api::FieldErrors(vec![skiff_api::FieldError::required("target.name", "")]),
        )
        .into());
    }
    let key = req.key(&req.info.name);
    let gr = GroupResource::new("", "pods/binding");
    for _ in 0..8 {
        let pod = req
            .app
            .storage
            .get(&key)
            .await?
            .ok_or_else(|| ApiError::not_found(&req.def.group_resource(), &req.info.name))?;
        let current = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !current.is_empty() {
            return Err(ApiError::conflict(
                &gr,
                &req.info.name,
                &format!(
                    "pod {} is already assigned to node \"{current}\"",
                    req.info.name
                ),
            )
            .into());
        }
        if meta::deletion_timestamp(&pod).is_some() {
            return Err(ApiError::conflict(
                &gr,
                &req.info.name,
                &format!(
                    "pod {} is being deleted, cannot be assigned to a host",
                    req.info.name
                ),
            )
            .into());
        }
        let mut bound = pod.clone();
        bound["spec"]["nodeName"] = json!(node);
        let conditions = bound["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut conditions: Vec<Value> = conditions
            .into_iter()
            .filter(|c| c["type"] != "PodScheduled")
            .collect();
        conditions.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": crate::lifecycle::now_rfc3339()}));
        bound["status"]["conditions"] = json!(conditions);
        let expected: i64 = meta::resource_version(&pod).parse().unwrap_or(0);
        match req
            .app
            .storage
            .update(&key, &bound, expected, &[], &[])
            .await?
        {
            Ok(_) => return Ok(success(StatusCode::CREATED)),
            Err(WriteConflict::Object(None)) => {
                return Err(ApiError::not_found(&req.def.group_resource(), &req.info.name).into())
            }
            Err(_) => continue,
        }
    }
    Err(ApiError::conflict(
        &gr,
        &req.info.name,
        "too many concurrent writers; try again",
    )
    .into())
}

/// Evicts a pod unless a PodDisruptionBudget covering it allows no disruption now.
pub async fn eviction(req: &Req, body: Body) -> ApiResult {
    let bytes = read_body(body).await?;
    let eviction = parse_body(&req.headers, &bytes)?;
    let key = req.key(&req.info.name);
    let pod = req
        .app
        .storage
        .get(&key)
        .await?
        .ok_or_else(|| ApiError::not_found(&req.def.group_resource(), &req.info.name))?;
    if let Some(pdbs) = crate::resources::find("policy", "v1", "poddisruptionbudgets")
        .and_then(|d| req.app.cache.resource(d))
    {
        let filter = crate::watchcache::Filter {
            namespace: req.info.namespace.clone(),
            ..Default::default()
        };
        let labels = meta::labels(&pod);
        for cached in pdbs.list(&filter).0 {
            let pdb = cached.value();
            let selector = skiff_api::selector::LabelSelector::from_object(
                pdb.pointer("/spec/selector").unwrap_or(&Value::Null),
            );
            let covers = selector.is_ok_and(|s| !s.is_empty() && s.matches(&labels));
            let allowed = pdb
                .pointer("/status/disruptionsAllowed")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if covers && allowed < 1 && meta::deletion_timestamp(&pod).is_none() {
                let mut err = ApiError::too_many_requests(10);
                err.message =
                    "Cannot evict pod as it would violate the pod's disruption budget.".into();
                err.details.causes.push(skiff_api::status::Cause {
                    reason: "DisruptionBudget".into(),
                    message: format!(
                        "The disruption budget {} needs {} healthy pods and has {} currently",
                        meta::name(&pdb),
                        pdb.pointer("/status/desiredHealthy")
                            .and_then(Value::as_i64)
                            .unwrap_or(0),
                        pdb.pointer("/status/currentHealthy")
                            .and_then(Value::as_i64)
                            .unwrap_or(0)
                    ),
                    field: String::new(),
                });
                return Err(err.into());
            }
        }
    }
    let grace = eviction
        .pointer("/deleteOptions/gracePeriodSeconds")
        .and_then(Value::as_i64);
    let body = json!({"gracePeriodSeconds": grace});
    let body = if grace.is_some() {
        Body::from(body.to_string())
    } else {
        Body::empty()
    };
    super::write::delete(req, body).await?;
    Ok(success(StatusCode::CREATED))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_reports_spec_status_and_selector() {
        let d = json!({"metadata": {"name": "d", "namespace": "n", "resourceVersion": "4"}, "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]}}, "status": {"replicas": 2}});
        let s = scale_of(&ScalePaths::default(), &d);
        assert_eq!(s["spec"]["replicas"], 3);
        assert_eq!(s["status"]["replicas"], 2);
        assert_eq!(s["status"]["selector"], "app=web,tier in (a,b)");
        assert_eq!(s["metadata"]["resourceVersion"], "4");
        let rc = json!({"metadata": {"name": "r"}, "spec": {"selector": {"app": "nginx"}}});
        assert_eq!(
            scale_of(&ScalePaths::default(), &rc)["status"]["selector"],
            "app=nginx"
        );
        assert_eq!(scale_of(&ScalePaths::default(), &rc)["spec"]["replicas"], 1);
    }
}
