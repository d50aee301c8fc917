//! NodeRestriction admission: a node (`system:node:<name>`) may write only its own Node
//! object and its own Lease in `kube-node-lease`, and may create only mirror pods bound to
//! itself. Which objects a node may read, or whose status it may update, is the Node
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
}
