//! HorizontalPodAutoscaler, served as autoscaling/v2 (the storage version) and
//! autoscaling/v1 (converted on the way in and out).
//!
//! v1 knows one target, CPU utilization. Converting v2 to v1 keeps everything else in
//! annotations (`autoscaling.alpha.kubernetes.io/...`, as upstream does) so a v1 client
//! that reads, edits and writes back an HPA loses none of its v2 metrics, behavior or
//! conditions. Upstream stores those annotations in the older v2beta1-style schema; here
//! they hold the v2 JSON, which round-trips exactly.

use serde_json::{json, Map, Value};
use skiff_api::{FieldError, FieldErrors};

use super::workload::*;
use super::{Column, Context, Hooks};

const METRICS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/metrics";
const CURRENT_METRICS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
const BEHAVIOR_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/behavior";
const CONDITIONS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/conditions";

fn is_cpu_utilization(metric: &Value) -> bool {
    metric["type"] == "Resource"
        && metric.pointer("/resource/name") == Some(&json!("cpu"))
        && metric.pointer("/resource/target/type") == Some(&json!("Utilization"))
        && metric
            .pointer("/resource/target/averageUtilization")
            .is_some_and(Value::is_i64)
}

fn cpu_status(percent: Option<&Value>) -> Value {
    json!({"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": percent}}})
}

fn cpu_metric(percent: &Value) -> Value {
    json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": percent}}})
}

/// autoscaling/v2 (storage) → autoscaling/v1.
pub fn v2_to_v1(v2: Value) -> Value {
    let mut metadata = v2.get("metadata").cloned().unwrap_or(json!({}));
    let spec = v2.get("spec").cloned().unwrap_or(json!({}));
    let status = v2.get("status").cloned();
    let metrics: Vec<Value> = spec
        .get("metrics")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let cpu = metrics
        .iter()
        .find(|m| is_cpu_utilization(m))
        .map(|m| m["resource"]["target"]["averageUtilization"].clone());
    let others: Vec<&Value> = metrics.iter().filter(|m| !is_cpu_utilization(m)).collect();

    let mut keep = Map::new();
    if !others.is_empty() {
        keep.insert(METRICS_ANNOTATION.into(), json!(others));
    }
    let current: Vec<Value> = status
        .as_ref()
        .and_then(|s| s.get("currentMetrics"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    // A lone CPU utilization reading is what v1's currentCPUUtilizationPercentage says;
    // anything more needs the annotation.
    let cpu_only = matches!(current.as_slice(), [one] if *one == cpu_status(one.pointer("/resource/current/averageUtilization")));
    if !current.is_empty() && !cpu_only {
        keep.insert(CURRENT_METRICS_ANNOTATION.into(), json!(current));
    }
    if let Some(b) = spec.get("behavior").filter(|b| !b.is_null()) {
        keep.insert(BEHAVIOR_ANNOTATION.into(), b.clone());
    }
    if let Some(c) = status
        .as_ref()
        .and_then(|s| s.get("conditions"))
        .filter(|c| c.as_array().is_some_and(|a| !a.is_empty()))
    {
        keep.insert(CONDITIONS_ANNOTATION.into(), c.clone());
    }
    if !keep.is_empty() {
        let annotations = object_at(&mut metadata, "annotations");
        for (k, v) in keep {
            annotations[k] = json!(v.to_string());
        }
    }

    let mut v1_spec = json!({
        "scaleTargetRef": spec.get("scaleTargetRef").cloned().unwrap_or(json!({})),
        "maxReplicas": spec.get("maxReplicas").cloned().unwrap_or(json!(0)),
    });
    if let Some(min) = spec.get("minReplicas").filter(|v| !v.is_null()) {
        v1_spec["minReplicas"] = min.clone();
    }
    if let Some(cpu) = cpu {
        v1_spec["targetCPUUtilizationPercentage"] = cpu;
    }
    let mut out = json!({
        "apiVersion": "autoscaling/v1",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata,
        "spec": v1_spec,
    });
    if let Some(status) = status {
        let mut s = json!({
            "currentReplicas": status.get("currentReplicas").cloned().unwrap_or(json!(0)),
            "desiredReplicas": status.get("desiredReplicas").cloned().unwrap_or(json!(0)),
        });
        for k in ["observedGeneration", "lastScaleTime"] {
            if let Some(v) = status.get(k).filter(|v| !v.is_null()) {
                s[k] = v.clone();
            }
        }
        if let Some(u) = current
            .iter()
            .find(|m| m["type"] == "Resource" && m.pointer("/resource/name") == Some(&json!("cpu")))
            .and_then(|m| m.pointer("/resource/current/averageUtilization"))
        {
            s["currentCPUUtilizationPercentage"] = u.clone();
        }
        out["status"] = s;
    }
    out
}

/// autoscaling/v1 → autoscaling/v2 (storage): the CPU target becomes a Resource metric,
/// and whatever a v2 → v1 conversion kept in annotations comes back.
pub fn v1_to_v2(v1: Value) -> Value {
    let mut metadata = v1.get("metadata").cloned().unwrap_or(json!({}));
    let spec = v1.get("spec").cloned().unwrap_or(json!({}));
    let mut take = |key: &str| -> Option<Value> {
        let annotations = metadata.get_mut("annotations")?.as_object_mut()?;
        let raw = annotations.remove(key)?;
        serde_json::from_str(raw.as_str()?).ok()
    };
    let others = take(METRICS_ANNOTATION);
    let current = take(CURRENT_METRICS_ANNOTATION);
    let behavior = take(BEHAVIOR_ANNOTATION);
    let conditions = take(CONDITIONS_ANNOTATION);
    if metadata
        .get("annotations")
        .and_then(Value::as_object)
        .is_some_and(Map::is_empty)
    {
        metadata.as_object_mut().map(|m| m.remove("annotations"));
    }

    let mut metrics: Vec<Value> = others
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default();
    if let Some(cpu) = spec
        .get("targetCPUUtilizationPercentage")
        .filter(|v| !v.is_null())
    {
        metrics.push(cpu_metric(cpu));
    }
    let mut v2_spec = json!({
        "scaleTargetRef": spec.get("scaleTargetRef").cloned().unwrap_or(json!({})),
        "maxReplicas": spec.get("maxReplicas").cloned().unwrap_or(json!(0)),
    });
    if let Some(min) = spec.get("minReplicas").filter(|v| !v.is_null()) {
        v2_spec["minReplicas"] = min.clone();
    }
    if !metrics.is_empty() {
        v2_spec["metrics"] = json!(metrics);
    }
    if let Some(b) = behavior {
        v2_spec["behavior"] = b;
    }
    let mut out = json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata,
        "spec": v2_spec,
    });
    if let Some(status) = v1.get("status").filter(|s| s.is_object()) {
        let mut s = json!({
            "currentReplicas": status.get("currentReplicas").cloned().unwrap_or(json!(0)),
            "desiredReplicas": status.get("desiredReplicas").cloned().unwrap_or(json!(0)),
        });
        for k in ["observedGeneration", "lastScaleTime"] {
            if let Some(v) = status.get(k).filter(|v| !v.is_null()) {
                s[k] = v.clone();
            }
        }
        match current {
            Some(c) => s["currentMetrics"] = c,
            None => {
                if let Some(u) = status
                    .get("currentCPUUtilizationPercentage")
                    .filter(|v| !v.is_null())
                {
                    s["currentMetrics"] = json!([cpu_status(Some(u))]);
                }
            }
        }
        if let Some(c) = conditions {
            s["conditions"] = c;
        }
        out["status"] = s;
    }
    out
}

/// Upstream's SetDefaults_HorizontalPodAutoscaler (v2): one replica at least, 80% CPU when
/// no metric is given, and a given behavior completed with the default scaling rules.
fn default_hpa(obj: &mut Value) {
    let spec = object_at(obj, "spec");
    set_default(spec, "minReplicas", json!(1));
    if spec
        .get("metrics")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
    {
        spec["metrics"] = json!([cpu_metric(&json!(80))]);
    }
    if let Some(behavior) = spec.get_mut("behavior").filter(|b| b.is_object()) {
        let up = object_at(behavior, "scaleUp");
        set_default(up, "stabilizationWindowSeconds", json!(0));
        set_default(up, "selectPolicy", json!("Max"));
        set_default(
            up,
            "policies",
            json!([{"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}]),
        );
        let down = object_at(behavior, "scaleDown");
        set_default(down, "selectPolicy", json!("Max"));
        set_default(
            down,
            "policies",
            json!([{"type": "Percent", "value": 100, "periodSeconds": 15}]),
        );
    }
}

const METRIC_TYPES: &[&str] = &[
    "ContainerResource",
    "External",
    "Object",
    "Pods",
    "Resource",
];

fn validate_hpa(obj: &Value) -> FieldErrors {
    let mut errs = validate_name(obj);
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let min = spec.get("minReplicas").and_then(Value::as_i64);
    let max = int_at(spec, "/maxReplicas");
    if let Some(min) = min.filter(|m| *m < 1) {
        errs.push(FieldError::invalid(
            "spec.minReplicas",
            &json!(min),
            "must be greater than or equal to 1",
        ));
    }
    if max < 1 {
        errs.push(FieldError::invalid(
            "spec.maxReplicas",
            &json!(max),
            "must be greater than 0",
        ));
    }
    if min.is_some_and(|m| m > max) {
        errs.push(FieldError::invalid(
            "spec.maxReplicas",
            &json!(max),
            "must be greater than or equal to `minReplicas`",
        ));
    }
    for field in ["kind", "name"] {
        if str_at(spec, &format!("/scaleTargetRef/{field}")).is_empty() {
            errs.push(FieldError::required(
                format!("spec.scaleTargetRef.{field}"),
                "",
            ));
        }
    }
    for (i, m) in spec
        .get("metrics")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let p = format!("spec.metrics[{i}]");
        let kind = str_at(m, "/type");
        if !METRIC_TYPES.contains(&kind) {
            errs.push(FieldError::invalid(
                format!("{p}.type"),
                &json!(kind),
                "must be either External, Object, Pods, ContainerResource or Resource",
            ));
            continue;
        }
        if kind == "Resource" || kind == "ContainerResource" {
            let field = if kind == "Resource" {
                "resource"
            } else {
                "containerResource"
            };
            if str_at(m, &format!("/{field}/name")).is_empty() {
                errs.push(FieldError::required(format!("{p}.{field}.name"), ""));
            }
            if let Some(u) = m
                .pointer(&format!("/{field}/target/averageUtilization"))
                .and_then(Value::as_i64)
            {
                if u <= 0 {
                    errs.push(FieldError::invalid(
                        format!("{p}.{field}.target.averageUtilization"),
                        &json!(u),
                        "must be greater than 0",
                    ));
                }
            }
        }
    }
    errs
}

/// Upstream's TARGETS cell: each metric's current value over its target, two at most.
fn targets_cell(obj: &Value) -> String {
    let specs: Vec<Value> = obj
        .pointer("/spec/metrics")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if specs.is_empty() {
        return "<none>".into();
    }
    let statuses: Vec<Value> = obj
        .pointer("/status/currentMetrics")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let quantity = |v: Option<&Value>| match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "<unknown>".into(),
    };
    let mut list = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let status = statuses.get(i);
        let text = match str_at(spec, "/type") {
            kind @ ("External" | "Object") => {
                let f = if kind == "External" {
                    "external"
                } else {
                    "object"
                };
                let current_of = |k: &str| {
                    status
                        .and_then(|s| s.pointer(&format!("/{f}/current/{k}")))
                        .map_or("<unknown>".into(), |v| quantity(Some(v)))
                };
                match spec.pointer(&format!("/{f}/target/averageValue")) {
                    Some(avg) => format!(
                        "{}/{} (avg)",
                        current_of("averageValue"),
                        quantity(Some(avg))
                    ),
                    None => format!(
                        "{}/{}",
                        current_of("value"),
                        quantity(spec.pointer(&format!("/{f}/target/value")))
                    ),
                }
            }
            "Pods" => format!(
                "{}/{}",
                status
                    .and_then(|s| s.pointer("/pods/current/averageValue"))
                    .map_or("<unknown>".into(), |v| quantity(Some(v))),
                quantity(spec.pointer("/pods/target/averageValue"))
            ),
            kind @ ("Resource" | "ContainerResource") => {
                let f = if kind == "Resource" {
                    "resource"
                } else {
                    "containerResource"
                };
                let name = str_at(spec, &format!("/{f}/name"));
                match spec.pointer(&format!("/{f}/target/averageValue")) {
                    Some(avg) => format!(
                        "{name}: {}/{}",
                        status
                            .and_then(|s| s.pointer(&format!("/{f}/current/averageValue")))
                            .map_or("<unknown>".into(), |v| quantity(Some(v))),
                        quantity(Some(avg))
                    ),
                    None => {
                        let current = status
                            .and_then(|s| s.pointer(&format!("/{f}/current/averageUtilization")))
                            .and_then(Value::as_i64)
                            .map_or("<unknown>".into(), |u| format!("{u}%"));
                        let target = spec
                            .pointer(&format!("/{f}/target/averageUtilization"))
                            .and_then(Value::as_i64)
                            .map_or("<auto>".into(), |u| format!("{u}%"));
                        format!("{name}: {current}/{target}")
                    }
                }
            }
            _ => "<unknown type>".into(),
        };
        list.push(text);
    }
    if list.len() > 2 {
        let more = list.len() - 2;
        list.truncate(2);
        return format!("{} + {more} more...", list.join(", "));
    }
    list.join(", ")
}

/// autoscaling/v2 HorizontalPodAutoscaler (the storage version).
pub struct HorizontalPodAutoscalers;

impl Hooks for HorizontalPodAutoscalers {
    fn prepare_create(&self, obj: &mut Value, _ctx: &Context<'_>) {
        default_hpa(obj);
    }

    fn prepare_update(&self, new: &mut Value, _old: &Value) {
        default_hpa(new);
    }

    fn validate(&self, obj: &Value, _ctx: &Context<'_>) -> FieldErrors {
        validate_hpa(obj)
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name_column(),
            Column::new("Reference", "string", "reference to scaled resource; horizontal pod autoscaler will learn the current resource consumption and will set the desired number of pods by using its Scale subresource."),
            Column::new("Targets", "string", "the specifications for which to use to calculate the desired replica count."),
            Column::new("MinPods", "string", "the lower limit for the number of replicas to which the autoscaler can scale down."),
            Column::new("MaxPods", "string", "the upper limit for the number of replicas to which the autoscaler can scale up."),
            Column::new("Replicas", "string", "current number of replicas of pods managed by this autoscaler."),
            Column::age_column(),
        ]
    }

    fn row(&self, obj: &Value) -> Vec<Value> {
        let min = obj
            .pointer("/spec/minReplicas")
            .and_then(Value::as_i64)
            .map_or("<unset>".to_string(), |m| m.to_string());
        vec![
            name_cell(obj),
            json!(format!(
                "{}/{}",
                str_at(obj, "/spec/scaleTargetRef/kind"),
                str_at(obj, "/spec/scaleTargetRef/name")
            )),
            json!(targets_cell(obj)),
            json!(min),
            json!(int_at(obj, "/spec/maxReplicas")),
            json!(int_at(obj, "/status/currentReplicas")),
            age_cell(obj),
        ]
    }
}

/// autoscaling/v1 HorizontalPodAutoscaler. Requests reach these hooks already converted to
/// the storage (v2) form, so everything delegates to the v2 hooks; only table rows, which
/// are printed from the v1 form a client gets, convert back first.
pub struct HorizontalPodAutoscalersV1;

impl Hooks for HorizontalPodAutoscalersV1 {
    fn prepare_create(&self, obj: &mut Value, ctx: &Context<'_>) {
        HorizontalPodAutoscalers.prepare_create(obj, ctx);
    }

    fn prepare_update(&self, new: &mut Value, old: &Value) {
        HorizontalPodAutoscalers.prepare_update(new, old);
    }

    fn validate(&self, obj: &Value, ctx: &Context<'_>) -> FieldErrors {
        HorizontalPodAutoscalers.validate(obj, ctx)
    }

    fn validate_update(&self, new: &Value, old: &Value, ctx: &Context<'_>) -> FieldErrors {
        HorizontalPodAutoscalers.validate_update(new, old, ctx)
    }

    fn fields(&self, obj: &Value) -> Vec<(&'static str, String)> {
        HorizontalPodAutoscalers.fields(obj)
    }

    fn columns(&self) -> Vec<Column> {
        HorizontalPodAutoscalers.columns()
    }

    fn row(&self, obj: &Value) -> Vec<Value> {
        HorizontalPodAutoscalers.row(&v1_to_v2(obj.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::test_ctx as ctx;

    fn v1() -> Value {
        json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "d", "namespace": "default"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d"}, "minReplicas": 1, "maxReplicas": 5, "targetCPUUtilizationPercentage": 80},
            "status": {"currentReplicas": 2, "desiredReplicas": 3, "currentCPUUtilizationPercentage": 40}})
    }

    #[test]
    fn v1_cpu_target_becomes_a_v2_resource_metric() {
        let v2 = v1_to_v2(v1());
        assert_eq!(v2["apiVersion"], "autoscaling/v2");
        assert_eq!(v2["spec"]["metrics"], json!([cpu_metric(&json!(80))]));
        assert_eq!(
            v2["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"],
            40
        );
        assert_eq!(v2_to_v1(v2), v1(), "v1 -> v2 -> v1 is lossless");
    }

    #[test]
    fn v2_only_parts_survive_a_trip_through_v1() {
        let v2 = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "d", "namespace": "default", "annotations": {"team": "a"}},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d"}, "minReplicas": 2, "maxReplicas": 9,
                "metrics": [
                    {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "10"}}},
                    cpu_metric(&json!(60))
                ],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}},
            "status": {"currentReplicas": 2, "desiredReplicas": 2,
                "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 55, "averageValue": "100m"}}}],
                "conditions": [{"type": "AbleToScale", "status": "True"}]}});
        let v1 = v2_to_v1(v2.clone());
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 60);
        assert_eq!(v1["status"]["currentCPUUtilizationPercentage"], 55);
        assert_eq!(v1["metadata"]["annotations"]["team"], "a");
        assert!(v1["metadata"]["annotations"][METRICS_ANNOTATION].is_string());
        let back = v1_to_v2(v1);
        // The CPU metric moves after the others (upstream's order); nothing is lost.
        assert_eq!(back["spec"]["metrics"][0]["type"], "Pods");
        assert_eq!(back["spec"]["metrics"][1], cpu_metric(&json!(60)));
        assert_eq!(back["spec"]["behavior"], v2["spec"]["behavior"]);
        assert_eq!(back["status"], v2["status"]);
        assert_eq!(back["metadata"], v2["metadata"]);
    }

    #[test]
    fn v1_is_served_from_the_v2_store() {
        let def_v1 =
            crate::resources::find("autoscaling", "v1", "horizontalpodautoscalers").unwrap();
        let def_v2 =
            crate::resources::find("autoscaling", "v2", "horizontalpodautoscalers").unwrap();
        assert!(def_v1.conversion.is_some() && def_v2.conversion.is_none());
        assert_eq!(def_v1.storage_prefix(), def_v2.storage_prefix());
        let stored = crate::resources::by_storage("horizontalpodautoscalers").unwrap();
        assert!(std::ptr::eq(stored, def_v2));
        assert_eq!(def_v1.from_storage(def_v1.to_storage(v1())), v1());
        let defs: Vec<_> = crate::resources::RESOURCES.iter().collect();
        let group = crate::discovery::group(&defs, "autoscaling").unwrap();
        assert_eq!(group["preferredVersion"]["version"], "v2");
    }

    #[test]
    fn hpa_defaults_and_validation() {
        let mut h = json!({"metadata": {"name": "h"}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "d"}, "maxReplicas": 3, "behavior": {}}});
        HorizontalPodAutoscalers.prepare_create(&mut h, &ctx());
        assert_eq!(h["spec"]["minReplicas"], 1);
        assert_eq!(h["spec"]["metrics"], json!([cpu_metric(&json!(80))]));
        assert_eq!(h["spec"]["behavior"]["scaleUp"]["selectPolicy"], "Max");
        assert!(HorizontalPodAutoscalers.validate(&h, &ctx()).is_empty());
        let bad = json!({"metadata": {"name": "h"}, "spec": {"scaleTargetRef": {"kind": "Deployment"}, "minReplicas": 4, "maxReplicas": 3}});
        let errs: Vec<String> = HorizontalPodAutoscalers
            .validate(&bad, &ctx())
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errs,
            [
                "spec.maxReplicas: Invalid value: 3: must be greater than or equal to `minReplicas`",
                "spec.scaleTargetRef.name: Required value",
            ]
        );
    }

    #[test]
    fn hpa_rows_in_both_versions() {
        let v2 = v1_to_v2(v1());
        let row = HorizontalPodAutoscalers.row(&v2);
        assert_eq!(row.len(), HorizontalPodAutoscalers.columns().len());
        assert_eq!(
            row[1..6],
            [
                json!("Deployment/d"),
                json!("cpu: 40%/80%"),
                json!("1"),
                json!(5),
                json!(2)
            ]
        );
        assert_eq!(HorizontalPodAutoscalersV1.row(&v1()), row);
        let none = json!({"metadata": {"name": "h"}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "d"}, "maxReplicas": 3,
            "metrics": [cpu_metric(&json!(50)), cpu_metric(&json!(60)), cpu_metric(&json!(70))]}});
        assert_eq!(
            HorizontalPodAutoscalers.row(&none)[2],
            "cpu: <unknown>/50%, cpu: <unknown>/60% + 1 more..."
        );
    }
}
