//! Structural OpenAPI v3 schemas of custom resources (a CRD version's `openAPIV3Schema`,
//! kept as JSON): validation with upstream's messages, defaulting (`default:`), pruning
//! of unknown fields (honouring `x-kubernetes-preserve-unknown-fields` and embedded
//! resources), and the structural check a CRD's schema must pass.
//!
//! What it is not: a full JSON-Schema engine. `allOf`/`anyOf`/`oneOf`/`not` only count
//! for the structural check (their value constraints are not enforced), and `pattern`
//! uses Rust's regex dialect (ECMA-262 lookarounds are rejected as an invalid pattern).

use serde_json::{json, Map, Value};
use skiff_api::{FieldError, FieldErrors};

/// `metadata` fields an object (or an embedded resource) may carry: everything else in
/// it is pruned, as upstream's ObjectMeta decoding drops it.
const OBJECT_META: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

fn flag(schema: &Value, name: &str) -> bool {
    schema.get(name).and_then(Value::as_bool) == Some(true)
}

fn ty(schema: &Value) -> &str {
    schema.get("type").and_then(Value::as_str).unwrap_or("")
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

/// The JSON type name of a value as upstream's messages spell it.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_matches(want: &str, v: &Value) -> bool {
    match want {
        "" => true,
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        "number" => v.is_number(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => true,
    }
}

// ---------------------------------------------------------------------------------------
// Validation

/// Checks `value` against `schema`; `path` is the field path (`spec.replicas`). The root
/// object's `metadata`, `apiVersion` and `kind` are the server's to check, not the schema's.
pub fn validate(schema: &Value, value: &Value, errs: &mut FieldErrors) {
    let mut root = value.clone();
    if let Some(m) = root.as_object_mut() {
        for k in ["metadata", "apiVersion", "kind"] {
            m.remove(k);
        }
    }
    let mut schema = schema.clone();
    if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        for k in ["metadata", "apiVersion", "kind"] {
            props.remove(k);
        }
    }
    if let Some(req) = schema.get_mut("required").and_then(Value::as_array_mut) {
        req.retain(|r| !matches!(r.as_str(), Some("metadata" | "apiVersion" | "kind")));
    }
    check(&schema, &root, "", errs);
}

fn check(schema: &Value, v: &Value, path: &str, errs: &mut FieldErrors) {
    let shown = if path.is_empty() { "body" } else { path };
    if v.is_null() {
        if flag(schema, "nullable") || ty(schema).is_empty() {
            return;
        }
        errs.push(FieldError::invalid(
            path,
            &json!("null"),
            format!("{shown} in body must be of type {}: \"null\"", ty(schema)),
        ));
        return;
    }
    if flag(schema, "x-kubernetes-int-or-string") {
        if !(v.is_string() || type_matches("integer", v)) {
            errs.push(FieldError::invalid(
                path,
                &json!(type_name(v)),
                format!(
                    "{shown} in body must be of type integer,string: \"{}\"",
                    type_name(v)
                ),
            ));
            return;
        }
    } else if !type_matches(ty(schema), v) {
        errs.push(FieldError::invalid(
            path,
            &json!(type_name(v)),
            format!(
                "{shown} in body must be of type {}: \"{}\"",
                ty(schema),
                type_name(v)
            ),
        ));
        return;
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        if !options.iter().any(|o| o == v) {
            let valid: Vec<String> = options
                .iter()
                .map(|o| match o {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            let valid: Vec<&str> = valid.iter().map(String::as_str).collect();
            errs.push(FieldError::not_supported(path, v, &valid));
        }
    }
    match v {
        Value::Number(n) => check_number(schema, v, n.as_f64().unwrap_or(0.0), path, errs),
        Value::String(s) => check_string(schema, v, s, path, errs),
        Value::Array(items) => check_array(schema, v, items, path, errs),
        Value::Object(map) => check_object(schema, v, map, path, errs),
        _ => {}
    }
}

fn num(schema: &Value, key: &str) -> Option<f64> {
    schema.get(key).and_then(Value::as_f64)
}

fn show_num(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        f.to_string()
    }
}

fn check_number(schema: &Value, v: &Value, n: f64, path: &str, errs: &mut FieldErrors) {
    if let Some(min) = num(schema, "minimum") {
        let exclusive = flag(schema, "exclusiveMinimum");
        if n < min || (exclusive && n == min) {
            let rel = if exclusive {
                "greater than"
            } else {
                "greater than or equal to"
            };
            errs.push(FieldError::invalid(
                path,
                v,
                format!("{path} in body should be {rel} {}", show_num(min)),
            ));
        }
    }
    if let Some(max) = num(schema, "maximum") {
        let exclusive = flag(schema, "exclusiveMaximum");
        if n > max || (exclusive && n == max) {
            let rel = if exclusive {
                "less than"
            } else {
                "less than or equal to"
            };
            errs.push(FieldError::invalid(
                path,
                v,
                format!("{path} in body should be {rel} {}", show_num(max)),
            ));
        }
    }
    if let Some(m) = num(schema, "multipleOf").filter(|m| *m > 0.0) {
        if (n / m).fract() != 0.0 {
            errs.push(FieldError::invalid(
                path,
                v,
                format!("{path} in body should be a multiple of {}", show_num(m)),
            ));
        }
    }
}

fn check_string(schema: &Value, v: &Value, s: &str, path: &str, errs: &mut FieldErrors) {
    let len = s.chars().count() as f64;
    if let Some(min) = num(schema, "minLength") {
        if len < min {
            errs.push(FieldError::invalid(
                path,
                v,
                format!(
                    "{path} in body should be at least {} chars long",
                    show_num(min)
                ),
            ));
        }
    }
    if let Some(max) = num(schema, "maxLength") {
        if len > max {
            errs.push(FieldError::too_long(path, max as usize));
        }
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        if regex::Regex::new(pattern).is_ok_and(|re| !re.is_match(s)) {
            errs.push(FieldError::invalid(
                path,
                v,
                format!("{path} in body should match '{pattern}'"),
            ));
        }
    }
    if let Some(format) = schema.get("format").and_then(Value::as_str) {
        if !format_ok(format, s) {
            errs.push(FieldError::invalid(
                path,
                v,
                format!("{path} in body must be of type {format}: {s:?}"),
            ));
        }
    }
}

/// The string formats upstream checks that are cheap to check; others pass.
fn format_ok(format: &str, s: &str) -> bool {
    match format {
        "date-time" | "datetime" => s.parse::<jiff::Timestamp>().is_ok(),
        "date" => s.parse::<jiff::civil::Date>().is_ok(),
        "ipv4" => s.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => s.parse::<std::net::Ipv6Addr>().is_ok(),
        "cidr" => s.split_once('/').is_some_and(|(ip, bits)| {
            ip.parse::<std::net::IpAddr>().is_ok() && bits.parse::<u8>().is_ok()
        }),
        "uuid" => uuid::Uuid::parse_str(s).is_ok() && s.len() == 36,
        "byte" => base64::Engine::decode(&base64::engine::general_purpose::STANDARD, s).is_ok(),
        "hostname" => !s.is_empty() && skiff_api::validation::dns1123_subdomain(s).is_empty(),
        _ => true,
    }
}

fn check_array(schema: &Value, v: &Value, items: &[Value], path: &str, errs: &mut FieldErrors) {
    let n = items.len() as f64;
    if let Some(min) = num(schema, "minItems") {
        if n < min {
            errs.push(FieldError::invalid(
                path,
                v,
                format!(
                    "{path} in body should have at least {} items",
                    show_num(min)
                ),
            ));
        }
    }
    if let Some(max) = num(schema, "maxItems") {
        if n > max {
            errs.push(FieldError::too_many(path, items.len(), max as usize));
        }
    }
    if flag(schema, "uniqueItems") || schema.get("x-kubernetes-list-type") == Some(&json!("set")) {
        for (i, item) in items.iter().enumerate() {
            if items[..i].contains(item) {
                errs.push(FieldError::duplicate(format!("{path}[{i}]"), item));
            }
        }
    }
    if let Some(item_schema) = schema.get("items") {
        for (i, item) in items.iter().enumerate() {
            check(item_schema, item, &format!("{path}[{i}]"), errs);
        }
    }
}

fn check_object(
    schema: &Value,
    v: &Value,
    map: &Map<String, Value>,
    path: &str,
    errs: &mut FieldErrors,
) {
    for r in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if map.get(r).is_none() {
            errs.push(FieldError::required(join(path, r), ""));
        }
    }
    let n = map.len() as f64;
    if let Some(min) = num(schema, "minProperties") {
        if n < min {
            errs.push(FieldError::invalid(
                path,
                v,
                format!(
                    "{path} in body should have at least {} properties",
                    show_num(min)
                ),
            ));
        }
    }
    if let Some(max) = num(schema, "maxProperties") {
        if n > max {
            errs.push(FieldError::too_many(path, map.len(), max as usize));
        }
    }
    let props = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    for (k, child) in map {
        let p = join(path, k);
        if let Some(s) = props.and_then(|p| p.get(k)) {
            check(s, child, &p, errs);
        } else if let Some(s) = additional {
            check(s, child, &p, errs);
        }
    }
    if flag(schema, "x-kubernetes-embedded-resource") {
        for field in ["apiVersion", "kind"] {
            if map
                .get(field)
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                errs.push(FieldError::required(join(path, field), "must not be empty"));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Pruning

/// Drops fields the schema does not specify, recording their paths in `dropped`. The
/// root keeps `apiVersion`, `kind` and `metadata` (pruned to ObjectMeta's fields).
pub fn prune(schema: &Value, value: &mut Value, dropped: &mut Vec<String>) {
    prune_node(schema, value, "", true, dropped);
}

fn prune_meta(value: &mut Value, path: &str, dropped: &mut Vec<String>) {
    if let Some(m) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        m.retain(|k, _| {
            let keep = OBJECT_META.contains(&k.as_str());
            if !keep {
                dropped.push(join(&join(path, "metadata"), k));
            }
            keep
        });
    }
}

fn prune_node(
    schema: &Value,
    value: &mut Value,
    path: &str,
    resource: bool,
    dropped: &mut Vec<String>,
) {
    match value {
        Value::Object(map) => {
            let embedded = resource || flag(schema, "x-kubernetes-embedded-resource");
            if flag(schema, "x-kubernetes-preserve-unknown-fields")
                && schema.get("properties").is_none()
                && schema.get("additionalProperties").is_none()
            {
                if embedded {
                    prune_meta(value, path, dropped);
                }
                return;
            }
            let preserve = flag(schema, "x-kubernetes-preserve-unknown-fields");
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                let p = join(path, &k);
                let is_meta = embedded && matches!(k.as_str(), "apiVersion" | "kind" | "metadata");
                let child_schema = props
                    .and_then(|ps| ps.get(&k))
                    .or(additional.filter(|a| a.is_object()));
                match child_schema {
                    Some(s) if !(is_meta && k == "metadata") => {
                        if let Some(child) = map.get_mut(&k) {
                            prune_node(s, child, &p, false, dropped);
                        }
                    }
                    _ if is_meta => {}
                    _ if preserve || additional == Some(&Value::Bool(true)) => {}
                    _ => {
                        map.remove(&k);
                        dropped.push(p);
                    }
                }
            }
            if embedded {
                prune_meta(value, path, dropped);
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    prune_node(s, item, &format!("{path}[{i}]"), false, dropped);
                }
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------
// Defaulting

/// Fills in `default:` values for absent fields (and nulls where null is not allowed),
/// depth first, as upstream's structural defaulting does.
pub fn default(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, s) in props {
                    let absent = match map.get(k) {
                        None => true,
                        Some(Value::Null) => !flag(s, "nullable"),
                        Some(_) => false,
                    };
                    if absent {
                        if let Some(d) = s.get("default") {
                            map.insert(k.clone(), d.clone());
                        }
                    }
                    if let Some(child) = map.get_mut(k) {
                        default(s, child);
                    }
                }
            }
            if let Some(s) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for child in map.values_mut() {
                    default(s, child);
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for item in items {
                    default(s, item);
                }
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------
// Structural check of a CRD's schema

/// Why a schema is not structural, as upstream lists it (paths under `base`). Checked:
/// every specified property and array item has a type (unless int-or-string or
/// preserve-unknown-fields), the root is an object, `items` is one schema, and defaults
/// and patterns are well formed.
pub fn structural_errors(schema: &Value, base: &str) -> FieldErrors {
    let mut errs = FieldErrors::default();
    structural(schema, base, true, &mut errs);
    errs
}

fn structural(schema: &Value, path: &str, root: bool, errs: &mut FieldErrors) {
    let Some(obj) = schema.as_object() else {
        errs.push(FieldError::invalid(path, schema, "must be a schema object"));
        return;
    };
    let typed = !ty(schema).is_empty()
        || flag(schema, "x-kubernetes-int-or-string")
        || flag(schema, "x-kubernetes-preserve-unknown-fields");
    if !root && !typed {
        errs.push(FieldError::required(
            format!("{path}.type"),
            "must not be empty for specified object fields",
        ));
    }
    if flag(schema, "x-kubernetes-int-or-string") && !ty(schema).is_empty() {
        errs.push(FieldError::forbidden(
            format!("{path}.type"),
            "must be empty if x-kubernetes-int-or-string is true",
        ));
    }
    if let Some(t) = obj.get("type").and_then(Value::as_str) {
        const TYPES: &[&str] = &["array", "boolean", "integer", "number", "object", "string"];
        if !TYPES.contains(&t) {
            errs.push(FieldError::not_supported(
                format!("{path}.type"),
                &json!(t),
                TYPES,
            ));
        }
    }
    if let Some(p) = obj.get("pattern").and_then(Value::as_str) {
        if let Err(e) = regex::Regex::new(p) {
            errs.push(FieldError::invalid(
                format!("{path}.pattern"),
                &json!(p),
                format!("must be a valid regular expression, but isn't: {e}"),
            ));
        }
    }
    if flag(schema, "x-kubernetes-embedded-resource") && ty(schema) != "object" {
        errs.push(FieldError::invalid(
            format!("{path}.type"),
            &json!(ty(schema)),
            "must be object if x-kubernetes-embedded-resource is true",
        ));
    }
    if let Some(props) = obj.get("properties") {
        match props.as_object() {
            Some(props) => {
                if ty(schema) != "object" && !root {
                    errs.push(FieldError::invalid(
                        format!("{path}.type"),
                        &json!(ty(schema)),
                        "must be object if properties are specified",
                    ));
                }
                for (k, s) in props {
                    structural(s, &format!("{path}.properties[{k}]"), false, errs);
                }
            }
            None => errs.push(FieldError::invalid(
                format!("{path}.properties"),
                props,
                "must be a map of schemas",
            )),
        }
    }
    if let Some(items) = obj.get("items") {
        if items.is_array() {
            errs.push(FieldError::forbidden(
                format!("{path}.items"),
                "items must be a schema object and not an array",
            ));
        } else {
            structural(items, &format!("{path}.items"), false, errs);
        }
    } else if ty(schema) == "array" {
        errs.push(FieldError::required(
            format!("{path}.items"),
            "must be specified",
        ));
    }
    if let Some(add) = obj.get("additionalProperties").filter(|a| a.is_object()) {
        if obj.contains_key("properties") {
            errs.push(FieldError::forbidden(
                format!("{path}.additionalProperties"),
                "additionalProperties and properties are mutual exclusive",
            ));
        }
        structural(add, &format!("{path}.additionalProperties"), false, errs);
    }
    if let Some(d) = obj.get("default") {
        let mut errs_d = FieldErrors::default();
        check(schema, d, &format!("{path}.default"), &mut errs_d);
        for e in errs_d.0 {
            errs.push(FieldError::invalid(
                format!("{path}.default"),
                d,
                e.to_string(),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "spec": {"type": "object", "required": ["size"], "properties": {
                "replicas": {"type": "integer", "minimum": 0, "maximum": 10, "default": 1},
                "size": {"type": "string", "enum": ["small", "large"]},
                "name": {"type": "string", "minLength": 1, "maxLength": 5, "pattern": "^[a-z]+$"},
                "tags": {"type": "array", "minItems": 1, "maxItems": 2, "items": {"type": "string"}},
                "port": {"x-kubernetes-int-or-string": true},
                "when": {"type": "string", "format": "date-time"},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "maybe": {"type": "string", "nullable": true},
                "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                             "x-kubernetes-preserve-unknown-fields": true},
                "nested": {"type": "object", "default": {}, "properties": {
                    "level": {"type": "string", "default": "info"}}}
            }},
            "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}}
        }})
    }

    fn errors(obj: Value) -> String {
        let mut errs = FieldErrors::default();
        validate(&schema(), &obj, &mut errs);
        errs.to_string()
    }

    #[test]
    fn validation_messages_are_upstreams() {
        let cases = [
            (json!({"spec": {"size": "small", "replicas": "three"}}),
             "spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\""),
            (json!({"spec": {}}), "spec.size: Required value"),
            (json!({"spec": {"size": "medium"}}),
             "spec.size: Unsupported value: \"medium\": supported values: \"small\", \"large\""),
            (json!({"spec": {"size": "small", "replicas": -1}}),
             "spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or equal to 0"),
            (json!({"spec": {"size": "small", "replicas": 11}}),
             "spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10"),
            (json!({"spec": {"size": "small", "name": ""}}),
             "spec.name: Invalid value: \"\": spec.name in body should be at least 1 chars long"),
            (json!({"spec": {"size": "small", "name": "abcdefg"}}),
             "spec.name: Too long: may not be more than 5 bytes"),
            (json!({"spec": {"size": "small", "name": "AB"}}),
             "spec.name: Invalid value: \"AB\": spec.name in body should match '^[a-z]+$'"),
            (json!({"spec": {"size": "small", "tags": []}}),
             "spec.tags: Invalid value: []: spec.tags in body should have at least 1 items"),
            (json!({"spec": {"size": "small", "tags": ["a", "b", "c"]}}),
             "spec.tags: Too many: 3: must have at most 2 items"),
            (json!({"spec": {"size": "small", "tags": [1]}}),
             "spec.tags[0]: Invalid value: \"integer\": spec.tags[0] in body must be of type string: \"integer\""),
            (json!({"spec": {"size": "small", "port": true}}),
             "spec.port: Invalid value: \"boolean\": spec.port in body must be of type integer,string: \"boolean\""),
            (json!({"spec": {"size": "small", "when": "yesterday"}}),
             "spec.when: Invalid value: \"yesterday\": spec.when in body must be of type date-time: \"yesterday\""),
            (json!({"spec": {"size": "small", "labels": {"a": 1}}}),
             "spec.labels.a: Invalid value: \"integer\": spec.labels.a in body must be of type string: \"integer\""),
            (json!({"spec": {"size": "small", "template": {"spec": {}}}}),
             "spec.template.apiVersion: Required value: must not be empty"),
        ];
        for (obj, want) in cases {
            let got = errors(obj);
            assert!(got.contains(want), "want {want}\n got {got}");
        }
        let ok = json!({"metadata": {"name": "x"}, "apiVersion": "a/v1", "kind": "K", "spec": {
            "size": "large", "replicas": 3, "port": "http", "when": "2026-01-01T00:00:00Z",
            "free": {"anything": [1, {"x": null}]}, "maybe": null,
            "template": {"apiVersion": "v1", "kind": "Pod", "spec": {}}}});
        assert_eq!(errors(ok), "[]");
    }

    #[test]
    fn defaults_fill_absent_fields_depth_first() {
        let mut obj = json!({"spec": {"size": "small", "replicas": null}});
        default(&schema(), &mut obj);
        assert_eq!(obj["spec"]["replicas"], 1);
        assert_eq!(obj["spec"]["nested"], json!({"level": "info"}));
        let mut set = json!({"spec": {"replicas": 4, "nested": {"level": "debug"}}});
        default(&schema(), &mut set);
        assert_eq!(set["spec"]["replicas"], 4);
        assert_eq!(set["spec"]["nested"]["level"], "debug");
    }

    #[test]
    fn pruning_drops_unknown_fields_but_keeps_preserved_and_embedded_ones() {
        let mut obj = json!({
            "apiVersion": "a/v1", "kind": "K",
            "metadata": {"name": "x", "bogus": 1},
            "spec": {"size": "small", "extra": 1, "free": {"any": {"thing": 1}},
                     "labels": {"k": "v"},
                     "template": {"apiVersion": "v1", "kind": "Pod",
                                  "metadata": {"name": "p", "junk": true}, "spec": {"x": 1}}},
            "status": {"replicas": 1, "other": 2},
            "top": true
        });
        let mut dropped = Vec::new();
        prune(&schema(), &mut obj, &mut dropped);
        dropped.sort();
        assert_eq!(
            dropped,
            vec![
                "metadata.bogus",
                "spec.extra",
                "spec.template.metadata.junk",
                "status.other",
                "top"
            ]
        );
        assert_eq!(obj["spec"]["free"]["any"]["thing"], 1);
        assert_eq!(obj["spec"]["template"]["spec"]["x"], 1);
        assert_eq!(obj["spec"]["labels"]["k"], "v");
        assert_eq!(obj["apiVersion"], "a/v1");
    }

    #[test]
    fn structural_check_names_untyped_fields_and_bad_defaults() {
        let bad = json!({"type": "object", "properties": {
            "spec": {"properties": {"a": {"type": "string"}}},
            "list": {"type": "array"},
            "n": {"type": "integer", "default": "x"}}});
        let errs = structural_errors(&bad, "spec.versions[0].schema.openAPIV3Schema").to_string();
        for want in [
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].type: Required value: must not be empty for specified object fields",
            "spec.versions[0].schema.openAPIV3Schema.properties[list].items: Required value",
            "spec.versions[0].schema.openAPIV3Schema.properties[n].default: Invalid value: \"x\"",
        ] {
            assert!(errs.contains(want), "want {want}\n got {errs}");
        }
        assert!(
            structural_errors(&schema(), "s").is_empty(),
            "{}",
            structural_errors(&schema(), "s")
        );
    }
}
