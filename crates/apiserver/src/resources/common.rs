//! Small pieces the hooks of several resources share: reading untyped objects, upstream's
//! shared checks (quantities, label selectors, immutable fields, DNS names) and the cell
//! formats kubectl users know (`<none>`, `CREATED AT`, access modes, selectors).

use serde_json::{json, Value};
use skiff_api::quantity::Quantity;
use skiff_api::validation::{check, dns1123_subdomain, label_value, qualified_name};
use skiff_api::{meta, FieldError, FieldErrors};

use super::Column;

pub fn str_at<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

pub fn array_at<'a>(obj: &'a Value, pointer: &str) -> &'a [Value] {
    obj.pointer(pointer)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Sets `key` on an object when absent or null.
pub fn set_default(obj: &mut Value, key: &str, value: Value) {
    if let Some(map) = obj.as_object_mut() {
        if map.get(key).is_none_or(Value::is_null) {
            map.insert(key.to_string(), value);
        }
    }
}

pub fn name_cell(obj: &Value) -> Value {
    Value::String(meta::name(obj).to_string())
}

/// `s`, or `<none>` when empty.
pub fn or_none(s: &str) -> String {
    if s.is_empty() {
        "<none>".into()
    } else {
        s.to_string()
    }
}

/// The `metadata.name` check for types whose names are DNS subdomains.
pub fn subdomain_name(obj: &Value) -> FieldErrors {
    let name = meta::name(obj);
    check("metadata.name", name, dns1123_subdomain(name))
}

/// The columns of upstream's default table (types without a printer): NAME, CREATED AT.
pub fn created_at_columns() -> Vec<Column> {
    vec![
        Column::name_column(),
        Column {
            name: "Created At",
            kind: "date",
            format: "",
            description: "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
            wide: false,
        },
    ]
}

pub fn created_at_row(obj: &Value) -> Vec<Value> {
    vec![
        name_cell(obj),
        json!(str_at(obj, "/metadata/creationTimestamp")),
    ]
}

/// Upstream's `ValidateImmutableField`: `<path>: Invalid value: <new>: field is immutable`.
pub fn immutable(new: &Value, old: &Value, pointer: &str, path: &str, errs: &mut FieldErrors) {
    let (n, o) = (
        new.pointer(pointer).unwrap_or(&Value::Null),
        old.pointer(pointer).unwrap_or(&Value::Null),
    );
    if n != o {
        errs.push(FieldError::invalid(path, n, "field is immutable"));
    }
}

/// Checks every quantity in a `{resource: quantity}` map at `path`: it parses and (with
/// `non_negative`) is not below zero. Returns the parsed ones.
pub fn quantities(
    map: Option<&Value>,
    path: &str,
    non_negative: bool,
    errs: &mut FieldErrors,
) -> Vec<(String, Quantity)> {
    let mut out = Vec::new();
    for (k, v) in map.and_then(Value::as_object).into_iter().flatten() {
        let p = format!("{path}[{k}]");
        let Some(s) = v.as_str() else {
            errs.push(FieldError::invalid(p, v, skiff_api::quantity::FORMAT_MSG));
            continue;
        };
        match s.parse::<Quantity>() {
            Ok(q) if non_negative && q.is_negative() => errs.push(FieldError::invalid(
                p,
                &json!(s),
                "must be greater than or equal to 0",
            )),
            Ok(q) => out.push((k.clone(), q)),
            Err(e) => errs.push(FieldError::invalid(p, &json!(s), e.to_string())),
        }
    }
    out
}

/// Rewrites every parseable quantity in a `{resource: quantity}` map into its canonical
/// form, as upstream stores them (`1.5Gi` → `1536Mi`).
pub fn canonicalize_quantities(map: Option<&mut Value>) {
    for v in map
        .and_then(Value::as_object_mut)
        .into_iter()
        .flat_map(|m| m.values_mut())
    {
        if let Some(q) = v.as_str().and_then(|s| s.parse::<Quantity>().ok()) {
            *v = Value::String(q.to_string());
        }
    }
}

/// The canonical form of a quantity string, or the string itself when it does not parse.
pub fn canonical(s: &str) -> String {
    s.parse::<Quantity>()
        .map_or_else(|_| s.to_string(), |q| q.to_string())
}

/// Upstream's `ValidateLabelSelector` for a `metav1.LabelSelector` at `path`.
pub fn validate_label_selector(sel: &Value, path: &str, errs: &mut FieldErrors) {
    for (k, v) in sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let p = format!("{path}.matchLabels");
        errs.extend(check(&p, k, qualified_name(k)));
        let v = v.as_str().unwrap_or("");
        errs.extend(check(&p, v, label_value(v)));
    }
    for (i, expr) in array_at(sel, "/matchExpressions").iter().enumerate() {
        let p = format!("{path}.matchExpressions[{i}]");
        let key = str_at(expr, "/key");
        errs.extend(check(&format!("{p}.key"), key, qualified_name(key)));
        let values = array_at(expr, "/values");
        match str_at(expr, "/operator") {
            "In" | "NotIn" if values.is_empty() => errs.push(FieldError::required(
                format!("{p}.values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            )),
            "Exists" | "DoesNotExist" if !values.is_empty() => errs.push(FieldError::forbidden(
                format!("{p}.values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            op => errs.push(FieldError::invalid(
                format!("{p}.operator"),
                &json!(op),
                "not a valid selector operator",
            )),
        }
    }
}

/// Upstream's `FormatLabelSelector`: `app=web,tier in (a,b)`, or `<none>` when empty.
pub fn format_label_selector(sel: Option<&Value>) -> String {
    let Some(sel) = sel else {
        return "<none>".into();
    };
    let mut parts: Vec<(String, String)> = Vec::new();
    for (k, v) in sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        parts.push((k.clone(), format!("{k}={}", v.as_str().unwrap_or(""))));
    }
    for expr in array_at(sel, "/matchExpressions") {
        let key = str_at(expr, "/key");
        let mut values: Vec<&str> = array_at(expr, "/values")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        values.sort_unstable();
        let text = match str_at(expr, "/operator") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => return "<invalid>".into(),
        };
        parts.push((key.to_string(), text));
    }
    parts.sort();
    let s: Vec<String> = parts.into_iter().map(|(_, t)| t).collect();
    or_none(&s.join(","))
}

/// Upstream's short access modes (`RWO,ROX,RWX,RWOP`), in that order.
pub fn access_modes(modes: &[Value]) -> String {
    let has = |m: &str| modes.iter().any(|v| v.as_str() == Some(m));
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(long, _)| has(long))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

pub const ACCESS_MODES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];

/// Port numbers: upstream's `IsValidPortNum`.
pub fn port_number(n: &Value, path: &str, errs: &mut FieldErrors) {
    if !n.as_i64().is_some_and(|n| (1..=65535).contains(&n)) {
        errs.push(FieldError::invalid(
            path,
            n,
            "must be between 1 and 65535, inclusive",
        ));
    }
}

pub const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];

/// A protocol field, which defaulting has set.
pub fn protocol(obj: &Value, path: &str, errs: &mut FieldErrors) {
    let p = obj.get("protocol").cloned().unwrap_or(Value::Null);
    if !matches!(p.as_str(), Some("TCP" | "UDP" | "SCTP")) {
        errs.push(FieldError::not_supported(path, &p, PROTOCOLS));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_selectors_print_like_kubectl() {
        assert_eq!(format_label_selector(Some(&json!({}))), "<none>");
        assert_eq!(format_label_selector(None), "<none>");
        assert_eq!(
            format_label_selector(Some(&json!({
                "matchLabels": {"app": "web"},
                "matchExpressions": [
                    {"key": "tier", "operator": "In", "values": ["b", "a"]},
                    {"key": "canary", "operator": "DoesNotExist"}
                ]
            }))),
            "app=web,!canary,tier in (a,b)"
        );
    }

    #[test]
    fn label_selector_errors_name_the_field() {
        let mut errs = FieldErrors::default();
        validate_label_selector(
            &json!({"matchExpressions": [
                {"key": "a", "operator": "In"},
                {"key": "b", "operator": "Exists", "values": ["x"]},
                {"key": "c", "operator": "Near"}
            ]}),
            "spec.podSelector",
            &mut errs,
        );
        let text = errs.to_string();
        assert!(text.contains("spec.podSelector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'"), "{text}");
        assert!(
            text.contains("spec.podSelector.matchExpressions[1].values: Forbidden"),
            "{text}"
        );
        assert!(text.contains("spec.podSelector.matchExpressions[2].operator: Invalid value: \"Near\": not a valid selector operator"), "{text}");
    }

    #[test]
    fn access_modes_are_short_and_ordered() {
        assert_eq!(
            access_modes(&[json!("ReadWriteMany"), json!("ReadWriteOnce")]),
            "RWO,RWX"
        );
        assert_eq!(access_modes(&[]), "");
    }

    #[test]
    fn quantity_maps_report_each_bad_entry() {
        let mut errs = FieldErrors::default();
        let ok = quantities(
            Some(&json!({"cpu": "1", "memory": "lots", "pods": "-1"})),
            "spec.hard",
            true,
            &mut errs,
        );
        assert_eq!(ok.len(), 1);
        let text = errs.to_string();
        assert!(text.contains("spec.hard[memory]: Invalid value: \"lots\": quantities must match the regular expression"), "{text}");
        assert!(
            text.contains(
                "spec.hard[pods]: Invalid value: \"-1\": must be greater than or equal to 0"
            ),
            "{text}"
        );
    }
}
