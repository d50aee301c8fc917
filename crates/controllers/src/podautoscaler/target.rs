//! Reaching any scalable object's `scale` subresource by apiVersion and kind (what
//! upstream's scale client does through its REST mapper; here the plural of built-in
//! kinds is known and others are the lower-cased kind plus "s", as for most CRDs).

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};

/// The plural resource name of `kind`.
pub fn plural(kind: &str) -> String {
    let lower = kind.to_ascii_lowercase();
    if lower.ends_with('s') {
        format!("{lower}es")
    } else if let Some(stem) = lower.strip_suffix('y') {
        format!("{stem}ies")
    } else {
        format!("{lower}s")
    }
}

/// An API handle for objects of `api_version`/`kind` in `namespace`, whose
/// `get_scale` / `replace_scale` reach their scale subresource.
pub fn scale_api(
    client: kube::Client,
    namespace: &str,
    api_version: &str,
    kind: &str,
) -> Api<DynamicObject> {
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let resource = ApiResource::from_gvk_with_plural(&gvk, &plural(kind));
    Api::namespaced_with(client, namespace, &resource)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plurals_of_scalable_kinds() {
        for (kind, want) in [
            ("Deployment", "deployments"),
            ("ReplicaSet", "replicasets"),
            ("StatefulSet", "statefulsets"),
            ("ReplicationController", "replicationcontrollers"),
            ("Policy", "policies"),
        ] {
            assert_eq!(plural(kind), want);
        }
    }
}
