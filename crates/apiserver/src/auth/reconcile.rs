//! Bootstrap of the default RBAC policy at server start: missing default ClusterRoles and
//! ClusterRoleBindings are created; existing ones annotated
//! `rbac.authorization.kubernetes.io/autoupdate: "true"` get back missing rules, labels,
//! aggregation rules and subjects (as upstream reconciles; extras a cluster added stay).
//! Objects set to autoupdate "false" are left alone.

use serde_json::Value;
use skiff_api::{meta, ApiError};

use super::policy::{self, AUTOUPDATE};
use crate::resources::find;
use crate::storage::object_key;
use crate::App;

const GROUP: &str = "rbac.authorization.k8s.io";

/// Adds to `list` (an array at `field`) the entries of `want` it lacks; whether it changed.
fn merge_list(obj: &mut Value, want: &Value, field: &str) -> bool {
    let wanted = want
        .get(field)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if obj.get(field).is_none_or(|v| !v.is_array()) {
        obj[field] = Value::Array(Vec::new());
    }
    let Some(have) = obj.get_mut(field).and_then(Value::as_array_mut) else {
        return false;
    };
    let mut changed = false;
    for w in wanted {
        if !have.contains(&w) {
            have.push(w);
            changed = true;
        }
    }
    changed
}

fn merge_map(obj: &mut Value, want: &Value, ptr: &str) -> bool {
    let Some(wanted) = want.pointer(ptr).and_then(Value::as_object) else {
        return false;
    };
    let (parent, field) = ptr.rsplit_once('/').unwrap_or(("", ptr));
    let Some(meta) = obj.pointer_mut(parent).and_then(Value::as_object_mut) else {
        return false;
    };
    let map = meta
        .entry(field.to_string())
        .or_insert_with(|| Value::Object(Default::default()));
    if !map.is_object() {
        *map = Value::Object(Default::default());
    }
    let Some(map) = map.as_object_mut() else {
        return false;
    };
    let mut changed = false;
    for (k, v) in wanted {
        if map.get(k) != Some(v) {
            map.insert(k.clone(), v.clone());
            changed = true;
        }
    }
    changed
}

/// The reconciled object, if `current` needs changes to hold `want`.
fn reconciled(current: &Value, want: &Value, binding: bool) -> Option<Value> {
    let auto = current
        .pointer(&format!(
            "/metadata/annotations/{}",
            AUTOUPDATE.replace('/', "~1")
        ))
        .and_then(Value::as_str);
    if auto == Some("false") {
        return None;
    }
    let mut obj = current.clone();
    let mut changed = merge_map(&mut obj, want, "/metadata/labels");
    changed |= merge_map(&mut obj, want, "/metadata/annotations");
    if binding {
        changed |= merge_list(&mut obj, want, "subjects");
    } else if let Some(agg) = want.get("aggregationRule") {
        // Aggregated roles' rules belong to the aggregation loop.
        if obj.get("aggregationRule") != Some(agg) {
            obj["aggregationRule"] = agg.clone();
            changed = true;
        }
    } else {
        changed |= merge_list(&mut obj, want, "rules");
    }
    changed.then_some(obj)
}

async fn ensure(app: &App, plural: &str, want: Value) -> Result<(), ApiError> {
    let def = find(GROUP, "v1", plural).ok_or_else(ApiError::path_not_found)?;
    let name = meta::name(&want).to_string();
    let key = object_key(def, "", &name);
    let Some(current) = app.storage.get(&key).await? else {
        return crate::bootstrap::ensure(app, GROUP, plural, "", want).await;
    };
    if let Some(new) = reconciled(&current, &want, plural.ends_with("bindings")) {
        let rv: i64 = meta::resource_version(&current).parse().unwrap_or(0);
        // Lost a race with another server reconciling: its result stands.
        let _ = app.storage.update(&key, &new, rv, &[], &[]).await?;
    }
    Ok(())
}

/// Creates or reconciles every default ClusterRole and ClusterRoleBinding.
pub async fn bootstrap(app: &App) -> Result<(), ApiError> {
    for role in policy::cluster_roles() {
        ensure(app, "clusterroles", role).await?;
    }
    for binding in policy::cluster_role_bindings() {
        ensure(app, "clusterrolebindings", binding).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn autoupdate_roles_get_missing_rules_back_and_keep_extras() {
        let want = json!({"metadata": {"name": "r", "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
            "annotations": {AUTOUPDATE: "true"}}, "rules": [{"verbs": ["get"]}]});
        let current = json!({"metadata": {"name": "r", "annotations": {AUTOUPDATE: "true"}},
            "rules": [{"verbs": ["list"]}]});
        let new = reconciled(&current, &want, false).unwrap();
        assert_eq!(
            new["rules"],
            json!([{"verbs": ["list"]}, {"verbs": ["get"]}])
        );
        assert_eq!(
            new["metadata"]["labels"]["kubernetes.io/bootstrapping"],
            "rbac-defaults"
        );
        assert!(reconciled(&new, &want, false).is_none());
        let pinned =
            json!({"metadata": {"name": "r", "annotations": {AUTOUPDATE: "false"}}, "rules": []});
        assert!(reconciled(&pinned, &want, false).is_none());
    }
}
