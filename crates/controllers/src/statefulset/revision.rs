//! ControllerRevisions: the template history of StatefulSets and DaemonSets. A revision
//! stores the pod template as upstream does (`{"spec":{"template":{..,"$patch":"replace"}}}`),
//! is named `<owner>-<hash>` and labelled with the same hash that the owner's pods carry
//! in `controller-revision-hash`.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use serde_json::Value;

pub const HASH_LABEL: &str = "controller-revision-hash";
/// The label upstream puts on revisions themselves.
pub const REVISION_HASH_LABEL: &str = "controller.kubernetes.io/hash";

/// What a revision stores for `template`.
pub fn data_of(template: &PodTemplateSpec) -> Value {
    let mut t = serde_json::to_value(template).unwrap_or(Value::Null);
    if let Some(obj) = t.as_object_mut() {
        obj.insert("$patch".into(), Value::String("replace".into()));
    }
    serde_json::json!({"spec": {"template": t}})
}

/// The pod template a revision stores.
pub fn template_of(rev: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = rev.data.as_ref()?.0.pointer("/spec/template")?.clone();
    if let Some(obj) = t.as_object_mut() {
        obj.remove("$patch");
    }
    serde_json::from_value(t).ok()
}

/// FNV-1a (32 bit) of the data and the collision count, in upstream's safe alphabet
/// (no vowels, no look-alike digits).
pub fn hash(data: &Value, collision_count: i32) -> String {
    let mut h: u32 = 0x811c_9dc5;
    let bytes = serde_json::to_vec(data).unwrap_or_default();
    for b in bytes.iter().chain(collision_count.to_le_bytes().iter()) {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    h.to_string()
        .bytes()
        .map(|d| ALPHABET[usize::from(d) % ALPHABET.len()] as char)
        .collect()
}

/// The outcome of looking for the revision of the current template.
#[derive(Debug)]
pub enum Found {
    /// An existing revision holds the template.
    Existing(Arc<ControllerRevision>),
    /// None does: create this one.
    New(Box<ControllerRevision>),
}

fn revision_number(r: &ControllerRevision) -> i64 {
    r.revision
}

/// The revision for `template` among `existing` (the owner's revisions), or a new one
/// numbered after the newest.
pub fn find_or_build(
    owner_name: &str,
    namespace: &str,
    owner: OwnerReference,
    labels: &BTreeMap<String, String>,
    template: &PodTemplateSpec,
    existing: &[Arc<ControllerRevision>],
    collision_count: i32,
) -> Found {
    let data = data_of(template);
    let mut matching: Vec<&Arc<ControllerRevision>> = existing
        .iter()
        .filter(|r| {
            r.data.as_ref().is_some_and(|d| d.0 == data)
                || template_of(r).as_ref() == Some(template)
        })
        .collect();
    matching.sort_by_key(|r| revision_number(r));
    if let Some(r) = matching.last() {
        return Found::Existing((*r).clone());
    }
    let next = existing
        .iter()
        .map(|r| revision_number(r))
        .max()
        .unwrap_or(0)
        + 1;
    let h = hash(&data, collision_count);
    let mut labels = labels.clone();
    labels.insert(REVISION_HASH_LABEL.into(), h.clone());
    Found::New(Box::new(ControllerRevision {
        metadata: ObjectMeta {
            name: Some(format!("{owner_name}-{h}")),
            namespace: Some(namespace.into()),
            labels: Some(labels),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        data: Some(RawExtension(data)),
        revision: next,
    }))
}

/// The hash part of a revision's name (what pods carry in `controller-revision-hash`).
pub fn hash_of(rev: &ControllerRevision) -> String {
    rev.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_HASH_LABEL))
        .cloned()
        .unwrap_or_else(|| rev.metadata.name.clone().unwrap_or_default())
}

/// Revisions past `limit` (oldest first) that no live pod and neither the current nor
/// the update revision uses.
pub fn to_prune<'a>(
    existing: &'a [Arc<ControllerRevision>],
    live: &[String],
    limit: usize,
) -> Vec<&'a Arc<ControllerRevision>> {
    let mut old: Vec<&Arc<ControllerRevision>> = existing
        .iter()
        .filter(|r| {
            let name = r.metadata.name.clone().unwrap_or_default();
            !live.contains(&name) && !live.contains(&hash_of(r))
        })
        .collect();
    old.sort_by_key(|r| revision_number(r));
    let extra = old.len().saturating_sub(limit);
    old.truncate(extra);
    old
}

/// What creating a revision came to.
pub enum Created {
    /// Created now, or an identical one already existed.
    Revision(Box<ControllerRevision>),
    /// A different revision holds the name: a hash collision. The owner must bump its
    /// `status.collisionCount` so the next name differs.
    Collision(String),
}

/// A failed revision write: what was being done, to which revision, and why.
pub type WriteError = (&'static str, String, kube::Error);

/// Creates `new`, treating an existing identical revision as success (another pass or
/// controller instance made it).
pub async fn create(
    client: &kube::Client,
    namespace: &str,
    new: &ControllerRevision,
) -> Result<Created, WriteError> {
    use kube::api::{Api, PostParams};
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), namespace);
    let name = new.metadata.name.clone().unwrap_or_default();
    match api.create(&PostParams::default(), new).await {
        Ok(r) => Ok(Created::Revision(Box::new(r))),
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let existing = api
                .get(&name)
                .await
                .map_err(|e| ("reading revision", name.clone(), e))?;
            if existing.data == new.data {
                Ok(Created::Revision(Box::new(existing)))
            } else {
                Ok(Created::Collision(name))
            }
        }
        Err(e) => Err(("creating revision", name, e)),
    }
}

/// The revision hashes pods carry (revisions in use are never pruned).
pub fn pod_hashes(pods: &[Arc<k8s_openapi::api::core::v1::Pod>]) -> Vec<String> {
    pods.iter()
        .filter_map(|p| p.metadata.labels.as_ref()?.get(HASH_LABEL).cloned())
        .collect()
}

/// Deletes the revisions beyond `limit` that nothing in `live` uses; already gone is
/// fine.
pub async fn prune(
    client: &kube::Client,
    namespace: &str,
    revisions: &[Arc<ControllerRevision>],
    live: &[String],
    limit: usize,
) -> Result<(), WriteError> {
    use kube::api::{Api, DeleteParams};
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), namespace);
    for r in to_prune(revisions, live, limit) {
        let name = r.metadata.name.clone().unwrap_or_default();
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(("deleting revision", name, e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(image: &str) -> PodTemplateSpec {
        serde_json::from_value(serde_json::json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": image}]}
        }))
        .unwrap()
    }

    fn owner() -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: "StatefulSet".into(),
            name: "web".into(),
            uid: "u".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    fn build(t: &PodTemplateSpec, existing: &[Arc<ControllerRevision>], collisions: i32) -> Found {
        find_or_build(
            "web",
            "ns",
            owner(),
            &BTreeMap::new(),
            t,
            existing,
            collisions,
        )
    }

    #[test]
    fn same_template_same_revision_new_template_next_number() {
        let Found::New(first) = build(&template("a"), &[], 0) else {
            panic!("expected a new revision");
        };
        assert_eq!(first.revision, 1);
        assert_eq!(template_of(&first), Some(template("a")));
        let first = Arc::new(*first);
        let existing = vec![first.clone()];
        assert!(
            matches!(build(&template("a"), &existing, 0), Found::Existing(r) if r.revision == 1)
        );
        let Found::New(second) = build(&template("b"), &existing, 0) else {
            panic!("expected a new revision");
        };
        assert_eq!(second.revision, 2);
        assert_ne!(second.metadata.name, first.metadata.name);
        // A collision count changes the name of the same data.
        assert_ne!(
            hash(&data_of(&template("a")), 0),
            hash(&data_of(&template("a")), 1)
        );
        let both = [first.clone(), Arc::new(*second)];
        let pruned = to_prune(&both, &[], 1);
        assert_eq!(pruned.len(), 1);
        assert_eq!(pruned[0].revision, 1);
    }
}
