//! Pieces every workload resource shares: pod template defaults and checks, selector
//! checks, and the table cells (`CONTAINERS`, `IMAGES`, `SELECTOR`) upstream prints for
//! anything with a pod template.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use skiff_api::selector::LabelSelector;
use skiff_api::validation::{check, dns1123_subdomain};
use skiff_api::{meta, FieldError, FieldErrors};

pub(super) fn str_at<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

pub(super) fn int_at(obj: &Value, pointer: &str) -> i64 {
    obj.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// Sets `key` when it is absent or null.
pub(super) fn set_default(obj: &mut Value, key: &str, value: Value) {
    if let Some(map) = obj.as_object_mut() {
        if map.get(key).is_none_or(Value::is_null) {
            map.insert(key.to_string(), value);
        }
    }
}

/// The object at `key`, created empty when absent or null.
pub(super) fn object_at<'a>(obj: &'a mut Value, key: &str) -> &'a mut Value {
    set_default(obj, key, json!({}));
    &mut obj[key]
}

/// Defaults of a pod template: the pod spec defaults upstream applies to pods.
pub(super) fn default_template(template: &mut Value) {
    if !template.is_object() {
        return;
    }
    super::core::default_pod_spec(object_at(template, "spec"));
}

/// Defaults the template at `spec.template` (creating spec as needed).
pub(super) fn default_spec_template(obj: &mut Value) {
    let spec = object_at(obj, "spec");
    default_template(object_at(spec, "template"));
}

pub(super) fn labels_of(template: &Value) -> BTreeMap<String, String> {
    template
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// `metadata.name` as a DNS subdomain (the workload resources' name rule).
pub(super) fn validate_name(obj: &Value) -> FieldErrors {
    let name = meta::name(obj);
    check("metadata.name", name, dns1123_subdomain(name))
}

pub(super) fn non_negative(obj: &Value, pointer: &str, field: &str, errs: &mut FieldErrors) {
    if let Some(n) = obj.pointer(pointer).and_then(Value::as_i64) {
        if n < 0 {
            errs.push(FieldError::invalid(
                field,
                &json!(n),
                "must be greater than or equal to 0",
            ));
        }
    }
}

/// A label selector object (`matchLabels`/`matchExpressions`): required, well formed and
/// not empty (`kind` names the resource in upstream's message).
pub(super) fn validate_selector(
    selector: Option<&Value>,
    path: &str,
    kind: &str,
    errs: &mut FieldErrors,
) -> Option<LabelSelector> {
    let Some(sel) = selector.filter(|s| !s.is_null()) else {
        errs.push(FieldError::required(path, ""));
        return None;
    };
    let count = ["matchLabels", "matchExpressions"]
        .iter()
        .map(|k| {
            sel.get(*k)
                .map(|v| match v {
                    Value::Object(m) => m.len(),
                    Value::Array(a) => a.len(),
                    _ => 0,
                })
                .unwrap_or(0)
        })
        .sum::<usize>();
    if count == 0 {
        errs.push(FieldError::invalid(
            path,
            sel,
            format!("empty selector is invalid for {kind}"),
        ));
    }
    for (i, e) in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let op = e.get("operator").cloned().unwrap_or(Value::Null);
        let values = e
            .get("values")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        let p = format!("{path}.matchExpressions[{i}]");
        match op.as_str() {
            Some("In" | "NotIn") if values == 0 => errs.push(FieldError::required(
                format!("{p}.values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            )),
            Some("Exists" | "DoesNotExist") if values > 0 => errs.push(FieldError::forbidden(
                format!("{p}.values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            Some("In" | "NotIn" | "Exists" | "DoesNotExist") => {}
            _ => errs.push(FieldError::invalid(
                format!("{p}.operator"),
                &op,
                "not a valid selector operator",
            )),
        }
    }
    match LabelSelector::from_object(sel) {
        Ok(s) => Some(s),
        Err(_) => {
            errs.push(FieldError::invalid(path, sel, "invalid label selector"));
            None
        }
    }
}

/// Upstream's checks of a controller's pod template: labels match the selector, the pod
/// spec is valid, and the restart policy is one the controller supports.
pub(super) fn validate_template(
    template: Option<&Value>,
    selector: Option<&LabelSelector>,
    path: &str,
    restart_policies: &[&str],
    errs: &mut FieldErrors,
) {
    let Some(template) = template.filter(|t| t.is_object()) else {
        errs.push(FieldError::required(path, ""));
        return;
    };
    let labels = labels_of(template);
    if let Some(sel) = selector {
        if !sel.is_empty() && !sel.matches(&labels) {
            errs.push(FieldError::invalid(
                format!("{path}.metadata.labels"),
                &json!(labels),
                "`selector` does not match template `labels`",
            ));
        }
    }
    for (k, v) in &labels {
        errs.extend(check(
            &format!("{path}.metadata.labels"),
            k,
            skiff_api::validation::qualified_name(k),
        ));
        errs.extend(check(
            &format!("{path}.metadata.labels"),
            v,
            skiff_api::validation::label_value(v),
        ));
    }
    let spec = template.get("spec").unwrap_or(&Value::Null);
    let spec_path = format!("{path}.spec");
    let mut pod_errs = FieldErrors::default();
    super::core::validate_pod_spec(spec, &spec_path, &mut pod_errs);
    let policy_path = format!("{spec_path}.restartPolicy");
    let policy_known = pod_errs.iter().any(|e| e.field == policy_path);
    errs.extend(pod_errs);
    let policy = spec.get("restartPolicy").cloned().unwrap_or(Value::Null);
    if !policy_known
        && !policy
            .as_str()
            .is_some_and(|p| restart_policies.contains(&p))
    {
        errs.push(FieldError::not_supported(
            policy_path,
            &policy,
            restart_policies,
        ));
    }
}

/// Pod templates of long-running controllers may not set activeDeadlineSeconds.
pub(super) fn forbid_deadline(
    template: Option<&Value>,
    path: &str,
    kind: &str,
    errs: &mut FieldErrors,
) {
    if template
        .and_then(|t| t.pointer("/spec/activeDeadlineSeconds"))
        .is_some_and(|v| !v.is_null())
    {
        errs.push(FieldError::forbidden(
            format!("{path}.spec.activeDeadlineSeconds"),
            format!("activeDeadlineSeconds in {kind} is not Supported"),
        ));
    }
}

/// `field is immutable` when the value at `pointer` changed.
pub(super) fn immutable(
    new: &Value,
    old: &Value,
    pointer: &str,
    field: &str,
    errs: &mut FieldErrors,
) {
    let (n, o) = (new.pointer(pointer), old.pointer(pointer));
    if n != o {
        errs.push(FieldError::invalid(
            field,
            n.unwrap_or(&Value::Null),
            "field is immutable",
        ));
    }
}

/// An int-or-percent that must be non-negative (`maxSurge`, `minAvailable`, ...).
pub(super) fn int_or_percent(v: Option<&Value>, field: &str, errs: &mut FieldErrors) {
    match v {
        Some(Value::String(s)) => {
            let ok = s
                .strip_suffix('%')
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if !ok {
                errs.push(FieldError::invalid(
                    field,
                    &json!(s),
                    "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                ));
            }
        }
        Some(Value::Number(n)) if n.as_i64().unwrap_or(0) < 0 => {
            errs.push(FieldError::invalid(
                field,
                &Value::Number(n.clone()),
                "must be greater than or equal to 0",
            ));
        }
        _ => {}
    }
}

/// The value of an int-or-percent (a percent as its number), for "both zero" checks.
pub(super) fn int_or_percent_value(v: Option<&Value>) -> i64 {
    match v {
        Some(Value::String(s)) => s.trim_end_matches('%').parse().unwrap_or(0),
        Some(v) => v.as_i64().unwrap_or(0),
        None => 0,
    }
}

pub(super) fn not_over_100_percent(v: Option<&Value>, field: &str, errs: &mut FieldErrors) {
    if let Some(Value::String(s)) = v {
        if s.ends_with('%') && int_or_percent_value(v) > 100 {
            errs.push(FieldError::invalid(
                field,
                &json!(s),
                "must not be greater than 100%",
            ));
        }
    }
}

pub(super) fn name_cell(obj: &Value) -> Value {
    Value::String(meta::name(obj).to_string())
}

/// Container names and images of a template, comma separated.
pub(super) fn containers_cells(template: &Value) -> (Value, Value) {
    let cs: Vec<&Value> = template
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let names: Vec<&str> = cs.iter().map(|c| str_at(c, "/name")).collect();
    let images: Vec<&str> = cs.iter().map(|c| str_at(c, "/image")).collect();
    (json!(names.join(",")), json!(images.join(",")))
}

/// A selector object as `kubectl` prints it (`app=web,tier in (a,b)`; `<none>` if empty).
pub(super) fn selector_cell(sel: Option<&Value>) -> String {
    let Some(sel) = sel.filter(|s| s.is_object()) else {
        return "<none>".into();
    };
    let mut parts: Vec<(String, String)> = Vec::new();
    if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in m {
            parts.push((k.clone(), format!("{k}={}", v.as_str().unwrap_or(""))));
        }
    }
    for e in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = str_at(e, "/key").to_string();
        let mut values: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        values.sort_unstable();
        let text = match str_at(e, "/operator") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.clone(),
            _ => format!("!{key}"),
        };
        parts.push((key, text));
    }
    if parts.is_empty() {
        return "<none>".into();
    }
    // Requirements print sorted by key, as a parsed selector does.
    parts.sort_by(|a, b| a.0.cmp(&b.0));
    parts
        .into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join(",")
}

/// A label map as `kubectl` prints it (`a=b,c=d`, `<none>` if empty).
pub(super) fn labels_cell(labels: Option<&Value>) -> String {
    let pairs: Vec<String> = labels
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    if pairs.is_empty() {
        "<none>".into()
    } else {
        pairs.join(",")
    }
}

/// Human time since an RFC 3339 timestamp (`<unknown>` if unset or unreadable).
pub(super) fn since(ts: Option<&Value>) -> String {
    match ts
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
    {
        Some(t) => crate::table::human_duration((jiff::Timestamp::now() - t).get_seconds()),
        None => "<unknown>".into(),
    }
}

/// The table cell of an object's age.
pub(super) fn age_cell(obj: &Value) -> Value {
    json!(crate::table::age(obj))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_cells_print_like_kubectl() {
        let sel = json!({"matchLabels": {"tier": "web", "app": "x"}, "matchExpressions": [
            {"key": "env", "operator": "In", "values": ["prod", "dev"]},
            {"key": "gpu", "operator": "DoesNotExist"}
        ]});
        assert_eq!(
            selector_cell(Some(&sel)),
            "app=x,env in (dev,prod),!gpu,tier=web"
        );
        assert_eq!(selector_cell(None), "<none>");
        assert_eq!(selector_cell(Some(&json!({}))), "<none>");
        assert_eq!(labels_cell(Some(&json!({"a": "b"}))), "a=b");
        assert_eq!(labels_cell(None), "<none>");
    }

    #[test]
    fn int_or_percent_checks() {
        let mut errs = FieldErrors::default();
        int_or_percent(Some(&json!("25%")), "f", &mut errs);
        int_or_percent(Some(&json!(3)), "f", &mut errs);
        assert!(errs.is_empty());
        int_or_percent(Some(&json!("25")), "a", &mut errs);
        int_or_percent(Some(&json!(-1)), "b", &mut errs);
        not_over_100_percent(Some(&json!("101%")), "c", &mut errs);
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["a", "b", "c"]);
        assert_eq!(int_or_percent_value(Some(&json!("0%"))), 0);
        assert_eq!(int_or_percent_value(Some(&json!(2))), 2);
    }
}
