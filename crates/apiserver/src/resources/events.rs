//! Events, served as core/v1 Event (the storage version) and events.k8s.io/v1 Event
//! (converted on the way in and out), with upstream's validation for each API and the
//! `kubectl get events` columns.

use serde_json::{json, Map, Value};
use skiff_api::validation::{dns1123_subdomain, qualified_name};
use skiff_api::{meta, FieldError, FieldErrors};

use super::workload::*;
use super::{Column, Context, Hooks};

/// events.k8s.io/v1 field ↔ core/v1 field, for the fields that were renamed.
const RENAMED: &[(&str, &str)] = &[
    ("note", "message"),
    ("regarding", "involvedObject"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

/// Fields both versions spell the same.
const SHARED: &[&str] = &[
    "metadata",
    "eventTime",
    "series",
    "action",
    "reason",
    "related",
    "type",
    "reportingInstance",
];

fn rename(
    obj: &Value,
    pairs: impl Iterator<Item = (&'static str, &'static str)>,
    api_version: &str,
) -> Value {
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!(api_version));
    out.insert("kind".into(), json!("Event"));
    for (from, to) in pairs {
        if let Some(v) = obj.get(from).filter(|v| !v.is_null()) {
            out.insert(to.to_string(), v.clone());
        }
    }
    for k in SHARED {
        if let Some(v) = obj.get(*k).filter(|v| !v.is_null()) {
            out.insert(k.to_string(), v.clone());
        }
    }
    Value::Object(out)
}

/// core/v1 (storage) → events.k8s.io/v1.
pub fn core_to_events(core: Value) -> Value {
    rename(
        &core,
        RENAMED.iter().map(|(e, c)| (*c, *e)),
        "events.k8s.io/v1",
    )
}

/// events.k8s.io/v1 → core/v1 (storage).
pub fn events_to_core(ev: Value) -> Value {
    let mut core = rename(&ev, RENAMED.iter().copied(), "v1");
    // core/v1 always carries an involvedObject.
    set_default(&mut core, "involvedObject", json!({}));
    core
}

fn is_set(obj: &Value, key: &str) -> bool {
    match obj.get(key) {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Number(n)) => n.as_i64() != Some(0),
        Some(Value::Object(m)) => m.values().any(|v| !v.is_null() && *v != json!("")),
        Some(_) => true,
    }
}

fn too_long(obj: &Value, key: &str, field: &str, limit: usize, errs: &mut FieldErrors) {
    if str_at(obj, &format!("/{key}")).len() > limit {
        errs.push(FieldError::invalid(
            field,
            &json!(""),
            format!("can have at most {limit} characters"),
        ));
    }
}

/// Upstream's legacy checks, which every Event passes whichever API it came through.
/// `v1_names` picks the field names of the API the client used.
fn legacy_validate(obj: &Value, core_api: bool) -> FieldErrors {
    let mut errs = FieldErrors::default();
    let ns = meta::namespace(obj);
    let involved_ns = str_at(obj, "/involvedObject/namespace");
    let mismatch = || {
        FieldError::invalid(
            "involvedObject.namespace",
            &json!(involved_ns),
            "does not match event.namespace",
        )
    };
    if !is_set(obj, "eventTime") {
        let ok = if involved_ns.is_empty() {
            ns.is_empty() || ns == "default"
        } else {
            ns == involved_ns
        };
        if !ok {
            errs.push(mismatch());
        }
    } else {
        if involved_ns.is_empty() && ns != "default" && ns != "kube-system" {
            errs.push(mismatch());
        }
        let controller_field = if core_api {
            "reportingComponent"
        } else {
            "reportingController"
        };
        let controller = str_at(obj, "/reportingComponent");
        if controller.is_empty() {
            errs.push(FieldError::required(controller_field, ""));
        }
        errs.extend(skiff_api::validation::check(
            controller_field,
            controller,
            qualified_name(controller),
        ));
        if str_at(obj, "/reportingInstance").is_empty() {
            errs.push(FieldError::required("reportingInstance", ""));
        }
        too_long(
            obj,
            "reportingInstance",
            "reportingInstance",
            128,
            &mut errs,
        );
        if str_at(obj, "/action").is_empty() {
            errs.push(FieldError::required("action", ""));
        }
        too_long(obj, "action", "action", 128, &mut errs);
        if str_at(obj, "/reason").is_empty() {
            errs.push(FieldError::required("reason", ""));
        }
        too_long(obj, "reason", "reason", 128, &mut errs);
        too_long(obj, "message", "message", 1024, &mut errs);
    }
    for problem in dns1123_subdomain(ns) {
        errs.push(FieldError::invalid("namespace", &json!(ns), problem));
    }
    errs
}

/// core/v1 Event (the storage version).
pub struct Events;

impl Hooks for Events {
    fn validate(&self, obj: &Value, _ctx: &Context<'_>) -> FieldErrors {
        legacy_validate(obj, true)
    }

    fn fields(&self, obj: &Value) -> Vec<(&'static str, String)> {
        let io = |k: &str| str_at(obj, &format!("/involvedObject/{k}")).to_string();
        let mut source = str_at(obj, "/source/component").to_string();
        if source.is_empty() {
            source = str_at(obj, "/reportingComponent").to_string();
        }
        vec![
            ("involvedObject.kind", io("kind")),
            ("involvedObject.namespace", io("namespace")),
            ("involvedObject.name", io("name")),
            ("involvedObject.uid", io("uid")),
            ("involvedObject.apiVersion", io("apiVersion")),
            ("involvedObject.resourceVersion", io("resourceVersion")),
            ("involvedObject.fieldPath", io("fieldPath")),
            ("reason", str_at(obj, "/reason").to_string()),
            (
                "reportingComponent",
                str_at(obj, "/reportingComponent").to_string(),
            ),
            ("source", source),
            ("type", str_at(obj, "/type").to_string()),
        ]
    }

    fn columns(&self) -> Vec<Column> {
        let mut name = Column::name_column();
        name.wide = true;
        vec![
            Column::new("Last Seen", "string", "The time at which the most recent occurrence of this event was recorded."),
            Column::new("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future"),
            Column::new("Reason", "string", "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
            Column::new("Object", "string", "The object that this event is about."),
            Column::wide("Subobject", "string", "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement."),
            Column::wide("Source", "string", "The component reporting this event. Should be a short machine understandable string."),
            Column::new("Message", "string", "A human-readable description of the status of this operation."),
            Column::wide("First Seen", "string", "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)"),
            Column::wide("Count", "string", "The number of times this event has occurred."),
            name,
        ]
    }

    fn row(&self, obj: &Value) -> Vec<Value> {
        let first = if is_set(obj, "firstTimestamp") {
            since(obj.get("firstTimestamp"))
        } else {
            since(obj.get("eventTime"))
        };
        let mut last = if is_set(obj, "lastTimestamp") {
            since(obj.get("lastTimestamp"))
        } else {
            first.clone()
        };
        let mut count = int_at(obj, "/count");
        if obj.get("series").is_some_and(Value::is_object) {
            last = since(obj.pointer("/series/lastObservedTime"));
            count = int_at(obj, "/series/count");
        } else if count == 0 {
            // Singleton events of the new API carry no count.
            count = 1;
        }
        let kind = str_at(obj, "/involvedObject/kind").to_lowercase();
        let name = str_at(obj, "/involvedObject/name");
        let target = if name.is_empty() {
            kind
        } else {
            format!("{kind}/{name}")
        };
        let component = [
            str_at(obj, "/source/component"),
            str_at(obj, "/reportingComponent"),
        ]
        .into_iter()
        .find(|s| !s.is_empty())
        .unwrap_or("");
        let host = [
            str_at(obj, "/source/host"),
            str_at(obj, "/reportingInstance"),
        ]
        .into_iter()
        .find(|s| !s.is_empty())
        .unwrap_or("");
        let source = if host.is_empty() {
            component.to_string()
        } else {
            format!("{component}, {host}")
        };
        vec![
            json!(last),
            json!(str_at(obj, "/type")),
            json!(str_at(obj, "/reason")),
            json!(target),
            json!(str_at(obj, "/involvedObject/fieldPath")),
            json!(source),
            json!(str_at(obj, "/message").trim()),
            json!(first),
            json!(count),
            name_cell(obj),
        ]
    }
}

/// events.k8s.io/v1 Event. Requests reach these hooks in the storage (core/v1) form;
/// creation through this API gets upstream's stricter checks, with this API's field names.
pub struct EventsV1;

impl Hooks for EventsV1 {
    fn validate(&self, obj: &Value, _ctx: &Context<'_>) -> FieldErrors {
        let mut errs = legacy_validate(obj, false);
        let name = meta::name(obj);
        errs.extend(skiff_api::validation::check(
            "metadata.name",
            name,
            dns1123_subdomain(name),
        ));
        if obj.get("series").is_some_and(Value::is_object) {
            if int_at(obj, "/series/count") < 2 {
                errs.push(FieldError::invalid(
                    "series.count",
                    &json!(""),
                    "should be at least 2",
                ));
            }
            if !is_set(&obj["series"], "lastObservedTime") {
                errs.push(FieldError::required("series.lastObservedTime", ""));
            }
        }
        if !is_set(obj, "eventTime") {
            errs.push(FieldError::required("eventTime", ""));
        }
        let kind = str_at(obj, "/type");
        if kind != "Normal" && kind != "Warning" {
            errs.push(FieldError::invalid(
                "type",
                &json!(""),
                format!("has invalid value: {kind}"),
            ));
        }
        for (field, core) in [
            ("deprecatedFirstTimestamp", "firstTimestamp"),
            ("deprecatedLastTimestamp", "lastTimestamp"),
            ("deprecatedCount", "count"),
            ("deprecatedSource", "source"),
        ] {
            if is_set(obj, core) {
                errs.push(FieldError::invalid(field, &json!(""), "needs to be unset"));
            }
        }
        errs
    }

    fn validate_update(&self, new: &Value, _old: &Value, _ctx: &Context<'_>) -> FieldErrors {
        // Updates get the legacy checks only, as upstream.
        legacy_validate(new, false)
    }

    fn fields(&self, obj: &Value) -> Vec<(&'static str, String)> {
        Events.fields(obj)
    }

    fn columns(&self) -> Vec<Column> {
        Events.columns()
    }

    fn row(&self, obj: &Value) -> Vec<Value> {
        Events.row(&events_to_core(obj.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::test_ctx as ctx;

    fn core_event() -> Value {
        json!({"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "web.1", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default", "fieldPath": "spec.containers{c}"},
            "reason": "Started", "message": "Started container c ", "type": "Normal",
            "source": {"component": "kubelet", "host": "node-1"},
            "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:01:00Z", "count": 3,
            "reportingComponent": "kubelet", "reportingInstance": "node-1"})
    }

    #[test]
    fn core_and_events_v1_convert_both_ways() {
        let ev = core_to_events(core_event());
        assert_eq!(ev["apiVersion"], "events.k8s.io/v1");
        assert_eq!(ev["note"], "Started container c ");
        assert_eq!(ev["regarding"]["name"], "web");
        assert_eq!(ev["reportingController"], "kubelet");
        assert_eq!(ev["deprecatedCount"], 3);
        assert_eq!(ev["deprecatedSource"]["host"], "node-1");
        assert_eq!(ev["deprecatedFirstTimestamp"], "2026-01-01T00:00:00Z");
        assert!(ev.get("message").is_none() && ev.get("involvedObject").is_none());
        assert_eq!(
            events_to_core(ev),
            core_event(),
            "core -> events -> core is lossless"
        );

        let new_api = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "e", "namespace": "default"},
            "eventTime": "2026-01-01T00:00:00.000000Z", "series": {"count": 2, "lastObservedTime": "2026-01-01T00:00:05.000000Z"},
            "reportingController": "example.com/ctl", "reportingInstance": "ctl-1", "action": "Scale", "reason": "Scaled",
            "regarding": {"kind": "Deployment", "name": "d"}, "related": {"kind": "Pod", "name": "p"}, "note": "scaled", "type": "Normal"});
        let core = events_to_core(new_api.clone());
        assert_eq!(core["message"], "scaled");
        assert_eq!(core["involvedObject"]["kind"], "Deployment");
        assert_eq!(core["series"]["count"], 2);
        assert_eq!(
            core_to_events(core),
            new_api,
            "events -> core -> events is lossless"
        );
    }

    #[test]
    fn event_rows_follow_kubectl() {
        let row = Events.row(&core_event());
        assert_eq!(row.len(), Events.columns().len());
        assert_eq!(
            row[1..7],
            [
                json!("Normal"),
                json!("Started"),
                json!("pod/web"),
                json!("spec.containers{c}"),
                json!("kubelet, node-1"),
                json!("Started container c")
            ]
        );
        assert_eq!(row[8], 3);
        assert_eq!(row[9], "web.1");
        let mut single = core_event();
        single.as_object_mut().unwrap().remove("count");
        assert_eq!(Events.row(&single)[8], 1);
        assert_eq!(EventsV1.row(&core_to_events(core_event())), row);
        let fields = Events.fields(&core_event());
        assert!(fields.contains(&("involvedObject.name", "web".to_string())));
        assert!(fields.contains(&("source", "kubelet".to_string())));
    }

    #[test]
    fn event_validation_per_api() {
        assert!(Events.validate(&core_event(), &ctx()).is_empty());
        let mut elsewhere = core_event();
        elsewhere["involvedObject"]["namespace"] = json!("other");
        assert_eq!(
            Events.validate(&elsewhere, &ctx()).to_string(),
            "involvedObject.namespace: Invalid value: \"other\": does not match event.namespace"
        );
        // The old API accepts an old-style event; the new one wants the new fields.
        let errs: Vec<String> = EventsV1
            .validate(&core_event(), &ctx())
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errs,
            [
                "eventTime: Required value",
                "deprecatedFirstTimestamp: Invalid value: \"\": needs to be unset",
                "deprecatedLastTimestamp: Invalid value: \"\": needs to be unset",
                "deprecatedCount: Invalid value: \"\": needs to be unset",
                "deprecatedSource: Invalid value: \"\": needs to be unset",
            ]
        );
        let new_style = events_to_core(json!({"metadata": {"name": "e", "namespace": "default"},
            "eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "ctl", "reportingInstance": "i",
            "action": "Do", "reason": "Did", "regarding": {"kind": "Pod", "name": "p", "namespace": "default"}, "type": "Normal"}));
        assert!(EventsV1.validate(&new_style, &ctx()).is_empty());
        let mut no_action = new_style.clone();
        no_action.as_object_mut().unwrap().remove("action");
        assert_eq!(
            EventsV1.validate(&no_action, &ctx()).to_string(),
            "action: Required value"
        );
    }
}
