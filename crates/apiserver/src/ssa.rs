//! Server-side apply's field ownership, as pure functions over `metadata.managedFields`.
//!
//! Each manager's entry holds the set of fields it owns in upstream's FieldsV1 form:
//! `{"f:data": {"f:one": {}}}`, with list elements that merge by key written
//! `{"k:{\"name\":\"c\"}": {".": {}, ...}}` and other lists owned whole. An apply:
//! 1. conflicts (409) on fields another manager owns with a different live value, unless
//!    forced (then those fields move to the applier);
//! 2. merges the configuration onto the live object;
//! 3. removes fields the applier owned before but no longer applies, if nobody else owns
//!    them;
//! 4. records the applier's new field set.
//!
//! Not modelled (upstream does): ownership from non-apply writes ("Update" managers), and
//! lists of scalars as sets.

use serde_json::{json, Map, Value};
use skiff_api::patch::schema::{lookup, ListStrategy};

/// One step of a field path, in FieldsV1 spelling (`f:name`, `k:{...}`, `.`).
type Path = Vec<String>;

/// Fields an apply configuration sets, in FieldsV1 form. Identity fields (apiVersion,
/// kind, metadata.name/namespace) are not owned by anyone, as upstream.
pub fn field_set(config: &Value, kind: &str) -> Value {
    let mut set = Map::new();
    if let Some(obj) = config.as_object() {
        for (k, v) in obj {
            if matches!(k.as_str(), "apiVersion" | "kind" | "status") {
                continue;
            }
            if k == "metadata" {
                let mut meta = Map::new();
                for (mk, mv) in v.as_object().into_iter().flatten() {
                    if matches!(
                        mk.as_str(),
                        "labels" | "annotations" | "finalizers" | "ownerReferences"
                    ) {
                        meta.insert(
                            format!("f:{mk}"),
                            fields_of(mv, kind, &format!("metadata.{mk}")),
                        );
                    }
                }
                if !meta.is_empty() {
                    set.insert("f:metadata".into(), Value::Object(meta));
                }
                continue;
            }
            set.insert(format!("f:{k}"), fields_of(v, kind, k));
        }
    }
    Value::Object(set)
}

fn fields_of(v: &Value, kind: &str, dotted: &str) -> Value {
    match v {
        Value::Object(o) => {
            let mut m = Map::new();
            for (k, child) in o {
                m.insert(
                    format!("f:{k}"),
                    fields_of(child, kind, &format!("{dotted}.{k}")),
                );
            }
            Value::Object(m)
        }
        Value::Array(items) => match lookup(kind, dotted).map(|f| f.list) {
            Some(ListStrategy::Merge { key: Some(key) }) => {
                let mut m = Map::new();
                for item in items {
                    let Some(id) = item.get(key) else { continue };
                    let mut elem = match fields_of(item, kind, dotted) {
                        Value::Object(e) => e,
                        _ => Map::new(),
                    };
                    elem.insert(".".into(), json!({}));
                    m.insert(format!("k:{}", json!({ key: id })), Value::Object(elem));
                }
                Value::Object(m)
            }
            // Lists without a merge key are owned whole.
            _ => json!({}),
        },
        _ => json!({}),
    }
}

/// Every leaf path of a field set (a leaf is an empty object).
fn leaves(set: &Value, prefix: &mut Path, out: &mut Vec<Path>) {
    match set.as_object() {
        Some(m) if !m.is_empty() => {
            for (k, v) in m {
                prefix.push(k.clone());
                leaves(v, prefix, out);
                prefix.pop();
            }
        }
        _ => out.push(prefix.clone()),
    }
}

fn set_contains(set: &Value, path: &[String]) -> bool {
    let mut node = set;
    for step in path {
        match node.get(step) {
            Some(next) => node = next,
            None => return false,
        }
    }
    true
}

/// Removes a path from a field set, and the parents it leaves empty (an empty object is
/// a leaf — "owns this field" — so an emptied parent must not linger as one).
fn remove_from_set(set: &mut Value, path: &[String]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let Some(map) = set.as_object_mut() else {
        return;
    };
    if rest.is_empty() {
        map.remove(first);
        return;
    }
    if let Some(child) = map.get_mut(first) {
        let had_children = child.as_object().is_some_and(|c| !c.is_empty());
        remove_from_set(child, rest);
        if had_children && child.as_object().is_some_and(Map::is_empty) {
            map.remove(first);
        }
    }
}

/// The element of a keyed list that `k:{...}` names.
fn key_matches(item: &Value, key_json: &str) -> bool {
    match serde_json::from_str::<Map<String, Value>>(key_json) {
        Ok(keys) => keys.iter().all(|(k, v)| item.get(k) == Some(v)),
        Err(_) => false,
    }
}

fn value_at<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut node = obj;
    for step in path {
        node = if let Some(field) = step.strip_prefix("f:") {
            node.get(field)?
        } else if let Some(k) = step.strip_prefix("k:") {
            node.as_array()?.iter().find(|item| key_matches(item, k))?
        } else {
            node
        };
    }
    Some(node)
}

fn remove_at(obj: &mut Value, path: &[String]) {
    // A `.` leaf stands for the list element itself.
    let path = match path.last().map(String::as_str) {
        Some(".") => &path[..path.len() - 1],
        _ => path,
    };
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = obj;
    for step in parents {
        let next = if let Some(field) = step.strip_prefix("f:") {
            node.get_mut(field)
        } else if let Some(k) = step.strip_prefix("k:") {
            node.as_array_mut()
                .and_then(|a| a.iter_mut().find(|item| key_matches(item, k)))
        } else {
            Some(node)
        };
        match next {
            Some(n) => node = n,
            None => return,
        }
    }
    if let Some(field) = last.strip_prefix("f:") {
        if let Some(m) = node.as_object_mut() {
            m.remove(field);
        }
    } else if let Some(k) = last.strip_prefix("k:") {
        if let Some(a) = node.as_array_mut() {
            a.retain(|item| !key_matches(item, k));
        }
    }
}

/// Upstream's spelling of a path in conflict messages: `.data.one`, `.spec.containers[name="c"].image`.
fn show(path: &[String]) -> String {
    let mut s = String::new();
    for step in path {
        if let Some(f) = step.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = step.strip_prefix("k:") {
            let keys: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let parts: Vec<String> = keys.iter().map(|(k, v)| format!("{k}={v}")).collect();
            s.push_str(&format!("[{}]", parts.join(",")));
        }
    }
    s
}

/// A field another manager owns that the apply would change.
#[derive(Debug, PartialEq)]
pub struct Conflict {
    pub manager: String,
    pub field: String,
}

fn managed(obj: &Value) -> Vec<Value> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// Checks an apply by `manager` of `config` against `live` (None: the object is new).
pub fn conflicts(live: &Value, config: &Value, manager: &str, kind: &str) -> Vec<Conflict> {
    let applied = field_set(config, kind);
    let mut paths = Vec::new();
    leaves(&applied, &mut Vec::new(), &mut paths);
    let mut out = Vec::new();
    for entry in managed(live) {
        let owner = entry["manager"].as_str().unwrap_or("");
        if owner == manager {
            continue;
        }
        let owned = entry.get("fieldsV1").cloned().unwrap_or(json!({}));
        for path in &paths {
            if path.last().map(String::as_str) == Some(".") {
                continue;
            }
            if set_contains(&owned, path) && value_at(live, path) != value_at(config, path) {
                out.push(Conflict {
                    manager: owner.to_string(),
                    field: show(path),
                });
            }
        }
    }
    out
}

/// Finishes an apply: `merged` is the live object with the configuration merged in.
/// Removes what the manager gave up, moves forced fields, and records ownership.
pub fn record(
    live: Option<&Value>,
    merged: &mut Value,
    config: &Value,
    manager: &str,
    kind: &str,
    api_version: &str,
    now: &str,
) {
    let applied = field_set(config, kind);
    let mut entries = live.map(managed).unwrap_or_default();
    let previous = entries
        .iter()
        .find(|e| e["manager"] == manager && e["operation"] == "Apply")
        .and_then(|e| e.get("fieldsV1").cloned())
        .unwrap_or(json!({}));
    let mut applied_leaves = Vec::new();
    leaves(&applied, &mut Vec::new(), &mut applied_leaves);
    // Forced (or agreed) fields now belong to the applier alone.
    for entry in entries.iter_mut().filter(|e| e["manager"] != manager) {
        if let Some(owned) = entry.get_mut("fieldsV1") {
            for path in &applied_leaves {
                remove_from_set(owned, path);
            }
        }
    }
    let mut given_up = Vec::new();
    leaves(&previous, &mut Vec::new(), &mut given_up);
    for path in given_up {
        let still_applied = set_contains(&applied, &path);
        let owned_by_other = entries
            .iter()
            .filter(|e| e["manager"] != manager)
            .any(|e| set_contains(&e["fieldsV1"], &path));
        if !still_applied && !owned_by_other && !path.is_empty() {
            remove_at(merged, &path);
        }
    }
    entries.retain(|e| !(e["manager"] == manager && e["operation"] == "Apply"));
    entries.retain(|e| e["fieldsV1"].as_object().is_some_and(|m| !m.is_empty()));
    entries.push(json!({
        "manager": manager,
        "operation": "Apply",
        "apiVersion": api_version,
        "time": now,
        "fieldsType": "FieldsV1",
        "fieldsV1": applied,
    }));
    skiff_api::meta::set_meta(merged, "managedFields", Value::Array(entries));
}

/// The 409 upstream returns for apply conflicts.
pub fn conflict_error(
    gr: &skiff_api::GroupResource,
    name: &str,
    conflicts: &[Conflict],
) -> skiff_api::ApiError {
    let n = conflicts.len();
    let list: Vec<String> = conflicts
        .iter()
        .map(|c| format!("conflict with \"{}\": {}", c.manager, c.field))
        .collect();
    let mut err = skiff_api::ApiError::conflict(gr, name, "");
    err.message = format!(
        "Apply failed with {n} conflict{}: {}",
        if n == 1 { "" } else { "s" },
        list.join("\n")
    );
    err.details.causes = conflicts
        .iter()
        .map(|c| skiff_api::status::Cause {
            reason: "FieldManagerConflict".into(),
            message: format!("conflict with \"{}\"", c.manager),
            field: c.field.clone(),
        })
        .collect();
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_sets_use_fieldsv1_spelling_with_merge_keys() {
        let config = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "labels": {"a": "1"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "c", "image": "nginx"}], "tolerations": [{"key": "k"}]}}}});
        let set = field_set(&config, "Deployment");
        assert_eq!(set["f:metadata"], json!({"f:labels": {"f:a": {}}}));
        assert_eq!(set["f:spec"]["f:replicas"], json!({}));
        let c = &set["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"c\"}"];
        assert_eq!(c, &json!({".": {}, "f:image": {}, "f:name": {}}));
        assert_eq!(
            set["f:spec"]["f:template"]["f:spec"]["f:tolerations"],
            json!({}),
            "unkeyed lists are owned whole"
        );
    }

    #[test]
    fn applies_record_remove_and_conflict() {
        let cfg = |data: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": data});
        let mut live = json!({"metadata": {"name": "c"}, "data": {"one": "1", "two": "2"}});
        record(
            None,
            &mut live,
            &cfg(json!({"one": "1", "two": "2"})),
            "a",
            "ConfigMap",
            "v1",
            "t",
        );
        assert_eq!(live["metadata"]["managedFields"][0]["manager"], "a");

        // `a` stops applying `two`: it goes.
        let before = live.clone();
        let mut merged = live.clone();
        record(
            Some(&before),
            &mut merged,
            &cfg(json!({"one": "1"})),
            "a",
            "ConfigMap",
            "v1",
            "t",
        );
        assert_eq!(merged["data"], json!({"one": "1"}));

        // `b` changing `one` conflicts; agreeing on its value does not.
        let conflicts_changed = conflicts(&merged, &cfg(json!({"one": "x"})), "b", "ConfigMap");
        assert_eq!(
            conflicts_changed,
            vec![Conflict {
                manager: "a".into(),
                field: ".data.one".into()
            }]
        );
        assert!(conflicts(&merged, &cfg(json!({"one": "1"})), "b", "ConfigMap").is_empty());

        // Forced: `one` moves to `b`; `a` owns nothing and its entry goes.
        let before = merged.clone();
        let mut forced = merged.clone();
        forced["data"]["one"] = json!("x");
        record(
            Some(&before),
            &mut forced,
            &cfg(json!({"one": "x"})),
            "b",
            "ConfigMap",
            "v1",
            "t",
        );
        let managers: Vec<&str> = forced["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["manager"].as_str().unwrap())
            .collect();
        assert_eq!(managers, vec!["b"]);
    }

    #[test]
    fn keyed_list_elements_given_up_are_removed() {
        let cfg = |names: &[&str]| json!({"kind": "Pod", "spec": {"containers": names.iter().map(|n| json!({"name": n, "image": "i"})).collect::<Vec<_>>()}});
        let mut live = json!({"spec": {"containers": [{"name": "a", "image": "i"}, {"name": "b", "image": "i"}]}});
        record(None, &mut live, &cfg(&["a", "b"]), "m", "Pod", "v1", "t");
        let before = live.clone();
        record(
            Some(&before),
            &mut live,
            &cfg(&["a"]),
            "m",
            "Pod",
            "v1",
            "t",
        );
        assert_eq!(
            live["spec"]["containers"],
            json!([{"name": "a", "image": "i"}])
        );
    }
}
