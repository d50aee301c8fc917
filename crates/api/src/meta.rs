//! Accessors for untyped objects (`serde_json::Value`), the form the API server's generic
//! paths handle every resource in.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

fn metadata(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata").and_then(Value::as_object)
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    metadata(obj)
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or("")
}

pub fn name(obj: &Value) -> &str {
    meta_str(obj, "name")
}

pub fn namespace(obj: &Value) -> &str {
    meta_str(obj, "namespace")
}

pub fn generate_name(obj: &Value) -> &str {
    meta_str(obj, "generateName")
}

pub fn resource_version(obj: &Value) -> &str {
    meta_str(obj, "resourceVersion")
}

pub fn uid(obj: &Value) -> &str {
    meta_str(obj, "uid")
}

pub fn deletion_timestamp(obj: &Value) -> Option<&str> {
    metadata(obj)
        .and_then(|m| m.get("deletionTimestamp"))
        .and_then(Value::as_str)
}

pub fn finalizers(obj: &Value) -> Vec<String> {
    string_list(metadata(obj).and_then(|m| m.get("finalizers")))
}

fn string_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

pub fn labels(obj: &Value) -> BTreeMap<String, String> {
    string_map(metadata(obj).and_then(|m| m.get("labels")))
}

pub fn annotations(obj: &Value) -> BTreeMap<String, String> {
    string_map(metadata(obj).and_then(|m| m.get("annotations")))
}

/// `metadata`, created if missing (and replacing a non-object).
pub fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    let map = obj.as_object_mut().expect("object ensured above");
    let meta = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut().expect("object ensured above")
}

pub fn set_meta(obj: &mut Value, field: &str, value: impl Into<Value>) {
    metadata_mut(obj).insert(field.to_string(), value.into());
}

pub fn remove_meta(obj: &mut Value, field: &str) {
    metadata_mut(obj).remove(field);
}

/// `apiVersion` split into group and version (`apps/v1` → `("apps", "v1")`, `v1` → `("", "v1")`).
pub fn group_version(obj: &Value) -> (&str, &str) {
    let av = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    av.split_once('/').unwrap_or(("", av))
}

pub fn kind(obj: &Value) -> &str {
    obj.get("kind").and_then(Value::as_str).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_and_writes_metadata() {
        let mut obj = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "labels": {"a": "1"}}});
        assert_eq!(name(&obj), "d");
        assert_eq!(namespace(&obj), "");
        assert_eq!(group_version(&obj), ("apps", "v1"));
        assert_eq!(labels(&obj).get("a").map(String::as_str), Some("1"));
        set_meta(&mut obj, "namespace", "default");
        assert_eq!(namespace(&obj), "default");
        let mut bare = json!(null);
        set_meta(&mut bare, "name", "x");
        assert_eq!(name(&bare), "x");
        assert_eq!(group_version(&json!({"apiVersion": "v1"})), ("", "v1"));
    }
}
