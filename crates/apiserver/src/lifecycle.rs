//! The generic metadata rules of create, update and delete, as pure functions: what the
//! server sets, what a client may not change, when generation moves, when a delete
//! completes. The handlers do the IO around them.

use serde_json::{json, Value};
use skiff_api::validation::{check, dns1123_subdomain, label_value, qualified_name};
use skiff_api::{meta, FieldError, FieldErrors};

use crate::resources::ResourceDef;

/// Characters upstream uses for generated name suffixes (no vowels, no look-alikes).
const SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

pub fn generated_name(prefix: &str) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    let suffix: String = (0..5)
        .map(|_| SUFFIX_ALPHABET[rng.random_range(0..SUFFIX_ALPHABET.len())] as char)
        .collect();
    format!("{prefix}{suffix}")
}

pub fn now_rfc3339() -> String {
    // Seconds precision, as metav1.Time serializes.
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Whether status is reset on create: types whose status is the controllers' to write.
/// Nodes keep theirs (a node agent registers with its status).
fn resets_status(def: &ResourceDef) -> bool {
    def.has_subresource("status") && def.plural != "nodes"
}

/// Empty metadata maps and lists are absent, as upstream's `omitempty` fields serialize:
/// removing the last label or annotation leaves no `labels: {}` behind.
fn drop_empty_metadata(obj: &mut Value) {
    let m = meta::metadata_mut(obj);
    for field in [
        "labels",
        "annotations",
        "finalizers",
        "ownerReferences",
        "managedFields",
    ] {
        let empty = match m.get(field) {
            Some(Value::Object(o)) => o.is_empty(),
            Some(Value::Array(a)) => a.is_empty(),
            Some(Value::Null) => true,
            _ => false,
        };
        if empty {
            m.remove(field);
        }
    }
}

/// Server-set metadata for a new object.
pub fn prepare_create(def: &ResourceDef, obj: &mut Value, namespace: &str) {
    drop_empty_metadata(obj);
    let m = meta::metadata_mut(obj);
    for field in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
        "uid",
        "generation",
    ] {
        m.remove(field);
    }
    m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    m.insert("creationTimestamp".into(), json!(now_rfc3339()));
    if def.generation {
        m.insert("generation".into(), json!(1));
    }
    if def.namespaced {
        m.insert("namespace".into(), json!(namespace));
    } else {
        m.remove("namespace");
    }
    if resets_status(def) {
        if let Some(o) = obj.as_object_mut() {
            o.remove("status");
        }
    }
}

/// Everything but metadata and status: what "spec changed" means for `generation`.
fn spec_part(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(map) = o.as_object_mut() {
        for k in ["metadata", "status", "apiVersion", "kind"] {
            map.remove(k);
        }
    }
    o
}

/// Which part of the object an update may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateScope {
    /// The main resource: everything but status (for types with a status subresource).
    Main,
    /// The `status` subresource: only status.
    Status,
}

/// Carries server-owned metadata over from `old` and confines the change to `scope`.
pub fn prepare_update(def: &ResourceDef, new: &mut Value, old: &Value, scope: UpdateScope) {
    if scope == UpdateScope::Status {
        let status = new.get("status").cloned();
        let mut merged = old.clone();
        match status {
            Some(s) => merged["status"] = s,
            None => {
                if let Some(o) = merged.as_object_mut() {
                    o.remove("status");
                }
            }
        }
        *new = merged;
    } else if def.has_subresource("status") {
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(o) = new.as_object_mut() {
                    o.remove("status");
                }
            }
        }
    }
    drop_empty_metadata(new);
    let old_meta = old.get("metadata").cloned().unwrap_or(json!({}));
    let m = meta::metadata_mut(new);
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "namespace",
        "name",
        "generation",
    ] {
        match old_meta.get(field) {
            Some(v) => m.insert(field.to_string(), v.clone()),
            None => m.remove(field),
        };
    }
    m.remove("selfLink");
    if def.generation && spec_part(new) != spec_part(old) {
        let next = old_meta
            .get("generation")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            + 1;
        meta::set_meta(new, "generation", next);
    }
}

/// Whether an update changes nothing stored (then no write happens, as upstream).
pub fn unchanged(new: &Value, old: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        meta::remove_meta(&mut v, "resourceVersion");
        meta::remove_meta(&mut v, "managedFields");
        v
    };
    strip(new) == strip(old)
}

/// Checks every object gets: name, labels, annotations, finalizers.
pub fn validate_metadata(def: &ResourceDef, obj: &Value) -> FieldErrors {
    let mut errs = FieldErrors::default();
    let name = meta::name(obj);
    if name.is_empty() {
        errs.push(FieldError::required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else if name.len() > 253
        || name.contains('/')
        || name.contains('%')
        || name == "."
        || name == ".."
    {
        errs.extend(check("metadata.name", name, dns1123_subdomain(name)));
    }
    if def.namespaced && meta::namespace(obj).is_empty() {
        errs.push(FieldError::required("metadata.namespace", ""));
    }
    for (k, v) in meta::labels(obj) {
        errs.extend(check("metadata.labels", &k, qualified_name(&k)));
        errs.extend(check(&format!("metadata.labels[{k}]"), &v, label_value(&v)));
    }
    let annotations = meta::annotations(obj);
    let total: usize = annotations.iter().map(|(k, v)| k.len() + v.len()).sum();
    for k in annotations.keys() {
        errs.extend(check("metadata.annotations", k, qualified_name(k)));
    }
    if total > 256 * 1024 {
        errs.push(FieldError::too_long("metadata.annotations", 256 * 1024));
    }
    errs
}

/// How a delete goes.
#[derive(Debug, PartialEq)]
pub enum DeletePlan {
    /// Remove the object from the store now.
    Now,
    /// Keep it, marked for deletion: with these metadata changes.
    Mark(Value),
}

/// Decides a delete: objects with finalizers (or a propagation policy that adds one), and
/// scheduled pods with a grace period, are marked with a deletionTimestamp and stay until
/// their finalizers are gone or their node confirms; everything else goes now.
pub fn plan_delete(
    def: &ResourceDef,
    obj: &Value,
    grace: Option<i64>,
    propagation: Option<&str>,
) -> DeletePlan {
    let mut finalizers = meta::finalizers(obj);
    let add = match propagation {
        Some("Foreground") => Some("foregroundDeletion"),
        Some("Orphan") => Some("orphan"),
        _ => None,
    };
    if let Some(f) = add {
        if !finalizers.iter().any(|x| x == f) && meta::deletion_timestamp(obj).is_none() {
            finalizers.push(f.to_string());
        }
    }
    let pod_grace = if def.plural == "pods"
        && obj
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty())
    {
        let spec_grace = obj
            .pointer("/spec/terminationGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(30);
        Some(grace.unwrap_or(spec_grace).max(0))
    } else {
        None
    };
    let graceful = pod_grace.is_some_and(|g| g > 0);
    let is_namespace = def.plural == "namespaces";
    if finalizers.is_empty() && !graceful && !is_namespace {
        return DeletePlan::Now;
    }
    let mut marked = obj.clone();
    let now = jiff::Timestamp::now();
    let existing_grace = obj
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64);
    let grace_secs = pod_grace.unwrap_or(0);
    // A second delete may shorten a pod's grace period, never lengthen it.
    let shorten = existing_grace.is_some_and(|g| grace_secs < g);
    if meta::deletion_timestamp(obj).is_none() || shorten {
        let at = now + jiff::SignedDuration::from_secs(grace_secs);
        meta::set_meta(
            &mut marked,
            "deletionTimestamp",
            at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        );
        meta::set_meta(&mut marked, "deletionGracePeriodSeconds", grace_secs);
    }
    meta::set_meta(&mut marked, "finalizers", json!(finalizers));
    if finalizers.is_empty() {
        meta::remove_meta(&mut marked, "finalizers");
    }
    if is_namespace {
        marked["status"]["phase"] = json!("Terminating");
    }
    DeletePlan::Mark(marked)
}

/// Whether a marked object is now free to go: deletion requested, no finalizers left
/// (a namespace also needs its spec.finalizers empty).
pub fn finalized(def: &ResourceDef, obj: &Value) -> bool {
    if meta::deletion_timestamp(obj).is_none() || !meta::finalizers(obj).is_empty() {
        return false;
    }
    if def.plural == "namespaces" {
        return obj
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
    }
    // A pod on a node goes when its node agent deletes it with grace 0, not before.
    def.plural != "pods"
        || obj
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::find;

    fn deployment() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "ns", "uid": "u1", "generation": 1, "creationTimestamp": "2026-01-01T00:00:00Z"}, "spec": {"replicas": 1}, "status": {"replicas": 1}})
    }

    #[test]
    fn generation_moves_only_with_the_spec() {
        let def = find("apps", "v1", "deployments").unwrap();
        let old = deployment();
        let mut labels_only = old.clone();
        labels_only["metadata"]["labels"] = json!({"a": "b"});
        prepare_update(def, &mut labels_only, &old, UpdateScope::Main);
        assert_eq!(labels_only["metadata"]["generation"], 1);
        let mut scaled = old.clone();
        scaled["spec"]["replicas"] = json!(3);
        scaled["status"]["replicas"] = json!(99);
        scaled["metadata"]["uid"] = json!("forged");
        prepare_update(def, &mut scaled, &old, UpdateScope::Main);
        assert_eq!(scaled["metadata"]["generation"], 2);
        assert_eq!(
            scaled["status"]["replicas"], 1,
            "main resource writes ignore status"
        );
        assert_eq!(scaled["metadata"]["uid"], "u1", "uid is the server's");
    }

    #[test]
    fn status_writes_ignore_everything_else() {
        let def = find("apps", "v1", "deployments").unwrap();
        let old = deployment();
        let mut new = old.clone();
        new["spec"]["replicas"] = json!(5);
        new["status"]["replicas"] = json!(5);
        prepare_update(def, &mut new, &old, UpdateScope::Status);
        assert_eq!(new["spec"]["replicas"], 1);
        assert_eq!(new["status"]["replicas"], 5);
        assert_eq!(new["metadata"]["generation"], 1);
    }

    #[test]
    fn create_sets_server_fields_and_resets_status() {
        let def = find("apps", "v1", "deployments").unwrap();
        let mut obj = json!({"metadata": {"name": "d", "uid": "forged", "resourceVersion": "5"}, "status": {"replicas": 3}});
        prepare_create(def, &mut obj, "ns");
        assert_ne!(obj["metadata"]["uid"], "forged");
        assert_eq!(obj["metadata"]["namespace"], "ns");
        assert_eq!(obj["metadata"]["generation"], 1);
        assert!(obj["metadata"].get("resourceVersion").is_none());
        assert!(obj.get("status").is_none());
        let nodes = find("", "v1", "nodes").unwrap();
        let mut node = json!({"metadata": {"name": "n", "namespace": "x"}, "status": {"capacity": {"pods": "110"}}});
        prepare_create(nodes, &mut node, "");
        assert!(node["metadata"].get("namespace").is_none());
        assert_eq!(node["status"]["capacity"]["pods"], "110");
    }

    #[test]
    fn empty_metadata_maps_are_omitted() {
        let cm = find("", "v1", "configmaps").unwrap();
        let mut obj = json!({"metadata": {"name": "c", "labels": {}, "finalizers": [], "annotations": {"a": "b"}}});
        prepare_create(cm, &mut obj, "ns");
        assert!(obj["metadata"].get("labels").is_none());
        assert!(obj["metadata"].get("finalizers").is_none());
        assert_eq!(obj["metadata"]["annotations"]["a"], "b");
        let old = obj.clone();
        let mut new = obj.clone();
        new["metadata"]["annotations"] = json!({});
        prepare_update(cm, &mut new, &old, UpdateScope::Main);
        assert!(new["metadata"].get("annotations").is_none());
    }

    #[test]
    fn deletes_wait_for_finalizers_and_scheduled_pods() {
        let cm = find("", "v1", "configmaps").unwrap();
        let plain = json!({"metadata": {"name": "c"}});
        assert_eq!(plan_delete(cm, &plain, None, None), DeletePlan::Now);
        let DeletePlan::Mark(m) = plan_delete(cm, &plain, None, Some("Foreground")) else {
            panic!()
        };
        assert_eq!(m["metadata"]["finalizers"], json!(["foregroundDeletion"]));
        assert!(m["metadata"]["deletionTimestamp"].is_string());
        assert!(!finalized(cm, &m));

        let pods = find("", "v1", "pods").unwrap();
        let unscheduled = json!({"metadata": {"name": "p"}, "spec": {}});
        assert_eq!(plan_delete(pods, &unscheduled, None, None), DeletePlan::Now);
        let running = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 30}});
        let DeletePlan::Mark(m) = plan_delete(pods, &running, None, None) else {
            panic!()
        };
        assert_eq!(m["metadata"]["deletionGracePeriodSeconds"], 30);
        assert_eq!(plan_delete(pods, &running, Some(0), None), DeletePlan::Now);

        let ns = find("", "v1", "namespaces").unwrap();
        let namespace = json!({"metadata": {"name": "x"}, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
        let DeletePlan::Mark(m) = plan_delete(ns, &namespace, None, None) else {
            panic!()
        };
        assert_eq!(m["status"]["phase"], "Terminating");
        assert!(!finalized(ns, &m));
        let mut emptied = m.clone();
        emptied["spec"]["finalizers"] = json!([]);
        assert!(finalized(ns, &emptied));
    }

    #[test]
    fn metadata_validation() {
        let cm = find("", "v1", "configmaps").unwrap();
        let ok = json!({"metadata": {"name": "c", "namespace": "d", "labels": {"app.kubernetes.io/name": "web"}}});
        assert!(validate_metadata(cm, &ok).is_empty());
        let bad = json!({"metadata": {"namespace": "d", "labels": {"bad key": "-v"}}});
        let errs = validate_metadata(cm, &bad).to_string();
        assert!(
            errs.contains("metadata.name: Required value: name or generateName is required"),
            "{errs}"
        );
        assert!(errs.contains("metadata.labels"), "{errs}");
    }
}
