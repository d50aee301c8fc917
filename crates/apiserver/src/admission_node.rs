//! NodeRestriction admission: a node (`system:node:<name>`) may write only its own Node
//! object (without node-restriction.kubernetes.io/ labels, and without changing its taints
//! once registered) and its own Lease in `kube-node-lease`, and may create only mirror
//! pods bound to itself. Which objects a node may read, or whose status it may update, is the Node
//! authorizer's business (`auth/node.rs`).

use serde_json::Value;
use skiff_api::{meta, ApiError};

use crate::auth::node::node_name;
use crate::auth::UserInfo;
use crate::resources::ResourceDef;

pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// Checks an object a user is about to create or update.
pub fn admit(
    user: &UserInfo,
    def: &ResourceDef,
    obj: &Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    let Some(node) = node_name(user) else {
        return Ok(());
    };
    let name = meta::name(obj);
    let refuse = |why: String| Err(ApiError::forbidden(&def.group_resource(), name, &why));
    match (def.group, def.plural) {
        ("", "nodes") if name != node => refuse(format!(
            "node \"{node}\" is not allowed to modify node \"{name}\""
        )),
        // Its own Node: labels under node-restriction.kubernetes.io/ and (after
        // registration) taints are the administrator's means of steering workloads, so a
        // node cannot set or change them on itself.
        ("", "nodes") => {
            if old.is_some_and(|old| obj.pointer("/spec/taints") != old.pointer("/spec/taints")) {
                return refuse(format!("node \"{node}\" is not allowed to modify taints"));
            }
            let forbidden = restricted(modified_labels(obj, old)).join(", ");
            match (forbidden.is_empty(), old) {
                (true, _) => Ok(()),
                (false, None) => refuse(format!(
                    "node \"{node}\" is not allowed to set the following labels: {forbidden}"
                )),
                (false, Some(_)) => refuse(format!("is not allowed to modify labels: {forbidden}")),
            }
        }
        ("coordination.k8s.io", "leases") if meta::namespace(obj) == "kube-node-lease" => {
            if name == node {
                Ok(())
            } else {
                refuse(
                    "can only access node lease with the same name as the requesting node".into(),
                )
            }
        }
        ("", "pods") if old.is_none() => {
            let annotations = obj.pointer("/metadata/annotations");
            if annotations.and_then(|a| a.get(MIRROR_ANNOTATION)).is_none() {
                return refuse(format!(
                    "pod does not have \"{MIRROR_ANNOTATION}\" annotation, node \"{node}\" can only create mirror pods"
                ));
            }
            let bound = obj
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .unwrap_or("");
            if bound != node {
                return refuse(format!(
                    "node \"{node}\" can only create pods with spec.nodeName set to itself"
                ));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Label keys added, changed or removed between `old` and `new`, sorted.
fn modified_labels(new: &Value, old: Option<&Value>) -> Vec<String> {
    fn labels<'a>(
        o: &'a Value,
        empty: &'a serde_json::Map<String, Value>,
    ) -> &'a serde_json::Map<String, Value> {
        o.pointer("/metadata/labels")
            .and_then(Value::as_object)
            .unwrap_or(empty)
    }
    let empty = serde_json::Map::new();
    let new = labels(new, &empty);
    let old = old.map_or(&empty, |o| labels(o, &empty));
    let mut keys: Vec<String> = new
        .iter()
        .filter(|(k, v)| old.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .chain(old.keys().filter(|k| !new.contains_key(*k)).cloned())
        .collect();
    keys.sort();
    keys
}

/// The keys in the node-restriction.kubernetes.io domain (or a subdomain of it).
fn restricted(keys: Vec<String>) -> Vec<String> {
    keys.into_iter()
        .filter(|k| {
            k.split_once('/').is_some_and(|(domain, _)| {
                domain == "node-restriction.kubernetes.io"
                    || domain.ends_with(".node-restriction.kubernetes.io")
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_node_writes_only_its_own_objects() {
        let a = UserInfo::new("system:node:a", &["system:nodes"]);
        let nodes = crate::resources::find("", "v1", "nodes").unwrap();
        let pods = crate::resources::find("", "v1", "pods").unwrap();
        let node_b = json!({"metadata": {"name": "b"}});
        let err = admit(&a, nodes, &node_b, None).unwrap_err();
        assert_eq!(
            err.message,
            "nodes \"b\" is forbidden: node \"a\" is not allowed to modify node \"b\""
        );
        assert!(admit(&a, nodes, &json!({"metadata": {"name": "a"}}), None).is_ok());
        let admin = UserInfo::new("admin", &["system:masters"]);
        assert!(admit(&admin, nodes, &node_b, None).is_ok());
        let plain = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "a"}});
        assert!(admit(&a, pods, &plain, None)
            .unwrap_err()
            .message
            .contains("can only create mirror pods"));
        let mirror_b = json!({"metadata": {"name": "p", "annotations": {MIRROR_ANNOTATION: "x"}}, "spec": {"nodeName": "b"}});
        assert!(admit(&a, pods, &mirror_b, None)
            .unwrap_err()
            .message
            .contains("spec.nodeName set to itself"));
        let mirror_a = json!({"metadata": {"name": "p", "annotations": {MIRROR_ANNOTATION: "x"}}, "spec": {"nodeName": "a"}});
        assert!(admit(&a, pods, &mirror_a, None).is_ok());
    }

    #[test]
    fn a_node_cannot_claim_restricted_labels_or_change_its_taints() {
        let a = UserInfo::new("system:node:a", &["system:nodes"]);
        let nodes = crate::resources::find("", "v1", "nodes").unwrap();
        let node = |labels: Value, taints: Value| json!({"metadata": {"name": "a", "labels": labels}, "spec": {"taints": taints}});
        let plain = node(json!({"kubernetes.io/hostname": "a"}), json!([]));
        let steering = node(
            json!({"kubernetes.io/hostname": "a", "node-restriction.kubernetes.io/db": "yes",
                   "x.node-restriction.kubernetes.io/y": "1"}),
            json!([]),
        );
        assert!(admit(&a, nodes, &plain, None).is_ok());
        assert_eq!(
            admit(&a, nodes, &steering, None).unwrap_err().message,
            "nodes \"a\" is forbidden: node \"a\" is not allowed to set the following labels: \
             node-restriction.kubernetes.io/db, x.node-restriction.kubernetes.io/y"
        );
        assert_eq!(
            admit(&a, nodes, &steering, Some(&plain))
                .unwrap_err()
                .message,
            "nodes \"a\" is forbidden: is not allowed to modify labels: \
             node-restriction.kubernetes.io/db, x.node-restriction.kubernetes.io/y"
        );
        // Removing one is a modification too; other labels stay the node's own.
        assert!(admit(&a, nodes, &plain, Some(&steering))
            .unwrap_err()
            .message
            .contains("not allowed to modify labels"));
        let relabelled = node(
            json!({"kubernetes.io/hostname": "a", "team": "x"}),
            json!([]),
        );
        assert!(admit(&a, nodes, &relabelled, Some(&plain)).is_ok());
        // Taints: set at registration, never changed by the node afterwards.
        let tainted = node(
            json!({"kubernetes.io/hostname": "a"}),
            json!([{"key": "k", "effect": "NoSchedule"}]),
        );
        assert!(admit(&a, nodes, &tainted, None).is_ok());
        assert_eq!(
            admit(&a, nodes, &plain, Some(&tainted))
                .unwrap_err()
                .message,
            "nodes \"a\" is forbidden: node \"a\" is not allowed to modify taints"
        );
        // An administrator may do both.
        let admin = UserInfo::new("admin", &["system:masters"]);
        assert!(admit(&admin, nodes, &steering, Some(&tainted)).is_ok());
    }
}
