//! The node heartbeat: a coordination.k8s.io/v1 Lease per node in `kube-node-lease`,
//! named after the node and held by it, owned by the Node (so it goes when the Node
//! does), as the kubelet keeps it. Pure builders; the renewal loop is in `heartbeat`.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;

pub const NAMESPACE: &str = "kube-node-lease";

/// The owner reference the kubelet puts on its lease: the Node, not as controller.
pub fn owner(node: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: node.into(),
        uid: uid.into(),
        ..Default::default()
    }
}

/// The Lease to create for `node` (owner set once the Node's uid is known).
pub fn lease(node: &str, uid: Option<&str>, duration_seconds: i32, now: Timestamp) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(node.into()),
            namespace: Some(NAMESPACE.into()),
            owner_references: uid.map(|u| vec![owner(node, u)]),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(node.into()),
            lease_duration_seconds: Some(duration_seconds),
            renew_time: Some(MicroTime(now)),
            ..Default::default()
        }),
    }
}

/// The merge patch that renews `node`'s lease at `now`: one request, no read first.
/// It also re-asserts holder, duration and owner, which heals a lease someone edited or
/// one left pointing at a Node that was deleted and registered again.
pub fn renew_patch(
    node: &str,
    uid: Option<&str>,
    duration_seconds: i32,
    now: Timestamp,
) -> serde_json::Value {
    let mut patch = serde_json::json!({
        "spec": {
            "holderIdentity": node,
            "leaseDurationSeconds": duration_seconds,
            "renewTime": MicroTime(now),
        }
    });
    if let Some(uid) = uid {
        patch["metadata"] = serde_json::json!({ "ownerReferences": [owner(node, uid)] });
    }
    patch
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_is_held_by_and_owned_by_its_node() {
        let now: Timestamp = "2025-01-01T00:00:00.123456Z".parse().unwrap();
        let l = lease("n1", Some("u1"), 40, now);
        assert_eq!(l.metadata.namespace.as_deref(), Some("kube-node-lease"));
        assert_eq!(l.metadata.name.as_deref(), Some("n1"));
        let o = &l.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (o.kind.as_str(), o.name.as_str(), o.uid.as_str()),
            ("Node", "n1", "u1")
        );
        assert_eq!(o.controller, None);
        let spec = l.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("n1"));
        assert_eq!(spec.lease_duration_seconds, Some(40));
        assert_eq!(spec.renew_time.unwrap().0, now);
        assert!(lease("n1", None, 40, now)
            .metadata
            .owner_references
            .is_none());
    }

    #[test]
    fn renewal_patch_sets_renew_time_and_owner_when_known() {
        let now: Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
        let p = renew_patch("n1", Some("u1"), 40, now);
        assert_eq!(p["spec"]["holderIdentity"], "n1");
        assert!(p["spec"]["renewTime"]
            .as_str()
            .unwrap()
            .starts_with("2025-01-01T00:00:00"));
        assert_eq!(p["metadata"]["ownerReferences"][0]["uid"], "u1");
        assert!(renew_patch("n1", None, 40, now).get("metadata").is_none());
    }
}
