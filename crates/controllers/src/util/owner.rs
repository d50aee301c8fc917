//! Owner references: who controls an object, and how to say "I control this".

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use skiff_runtime::informer::Object;
use skiff_runtime::{Informer, ObjectKey};

/// The owner reference with `controller: true`, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// An owner reference naming `owner` as controller, blocking its foreground deletion
/// until the dependent is gone (what upstream's controllers set).
pub fn controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Whether `meta` is controlled by the object with `uid`.
pub fn is_controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    controller_of(meta).is_some_and(|r| r.uid == uid)
}

/// The index of objects by their controller, kept once per shared informer for every
/// loop that looks up "what does this set own" (pods, revisions, jobs).
pub const CONTROLLER_INDEX: &str = "controller";

/// The API group of an `apiVersion` (`apps/v1` → `apps`, `v1` → ``).
fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("")
}

/// Index value naming a controller: `<group>/<Kind>/<namespace>/<name>`.
fn index_value(group: &str, kind: &str, key: &ObjectKey) -> String {
    format!("{group}/{kind}/{key}")
}

/// The key of the object of `kind` in `group` controlling `meta`, if that is what
/// controls it.
pub fn controller_key(meta: &ObjectMeta, group: &str, kind: &str) -> Option<ObjectKey> {
    let r = controller_of(meta)?;
    (r.kind == kind && group_of(&r.api_version) == group)
        .then(|| ObjectKey::new(meta.namespace.as_deref(), &r.name))
}

/// Indexes `informer`'s objects by controller (idempotent: loops sharing the informer
/// each ask for it and get the one index).
pub fn index_by_controller<K: Object>(informer: &Informer<K>) {
    informer.add_index(CONTROLLER_INDEX, |o: &K| {
        let meta = o.meta();
        controller_of(meta)
            .map(|r| {
                let key = ObjectKey::new(meta.namespace.as_deref(), &r.name);
                index_value(group_of(&r.api_version), &r.kind, &key)
            })
            .into_iter()
            .collect()
    });
}

/// The objects whose controller is the `kind` in `group` named by `key` (the informer
/// must be indexed with [`index_by_controller`]).
pub fn controlled_by<K: Object>(
    informer: &Informer<K>,
    group: &str,
    kind: &str,
    key: &ObjectKey,
) -> Vec<std::sync::Arc<K>> {
    informer.by_index(CONTROLLER_INDEX, &index_value(group, kind, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(api_version: &str, kind: &str) -> ObjectMeta {
        ObjectMeta {
            namespace: Some("ns".into()),
            owner_references: Some(vec![OwnerReference {
                api_version: api_version.into(),
                kind: kind.into(),
                name: "web".into(),
                uid: "u".into(),
                controller: Some(true),
                block_owner_deletion: None,
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn controller_key_checks_group_and_kind() {
        let key = ObjectKey::new(Some("ns"), "web");
        assert_eq!(
            controller_key(&meta("apps/v1", "DaemonSet"), "apps", "DaemonSet"),
            Some(key)
        );
        assert_eq!(
            controller_key(&meta("apps/v1", "DaemonSet"), "apps", "StatefulSet"),
            None
        );
        assert_eq!(
            controller_key(&meta("batch/v1", "Job"), "apps", "Job"),
            None
        );
        assert_eq!(
            controller_key(
                &meta("v1", "ReplicationController"),
                "",
                "ReplicationController"
            )
            .map(|k| k.name),
            Some("web".into())
        );
    }
}
