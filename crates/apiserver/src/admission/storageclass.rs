//! DefaultStorageClass: a PersistentVolumeClaim created without `storageClassName` gets
//! the cluster's default StorageClass (the one annotated
//! `storageclass.kubernetes.io/is-default-class: "true"`). An explicit empty string means
//! "no class" and is left alone, as upstream.

use serde_json::Value;
use skiff_api::{meta, ApiError};

use super::{Attributes, Context, Operation, Plugin};

pub const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
const BETA_DEFAULT_CLASS_ANNOTATION: &str = "storageclass.beta.kubernetes.io/is-default-class";

pub struct DefaultStorageClass;

fn is_default(class: &Value) -> bool {
    let annotations = meta::annotations(class);
    [DEFAULT_CLASS_ANNOTATION, BETA_DEFAULT_CLASS_ANNOTATION]
        .iter()
        .any(|a| annotations.get(*a).map(String::as_str) == Some("true"))
}

/// The default class among `classes`: when several claim it, the newest (then the first
/// by name), as upstream since 1.26 so adding a new default takes over smoothly.
pub fn default_class(classes: &[Value]) -> Option<String> {
    classes
        .iter()
        .filter(|c| is_default(c))
        .max_by(|a, b| {
            let created = |o: &Value| {
                o.pointer("/metadata/creationTimestamp")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            created(a)
                .cmp(&created(b))
                .then_with(|| meta::name(b).cmp(meta::name(a)))
        })
        .map(|c| meta::name(c).to_string())
}

#[async_trait::async_trait]
impl Plugin for DefaultStorageClass {
    fn name(&self) -> &'static str {
        "DefaultStorageClass"
    }

    async fn mutate(
        &self,
        ctx: &Context<'_>,
        attrs: &Attributes,
        pvc: &mut Value,
    ) -> Result<(), ApiError> {
        if attrs.operation != Operation::Create || !attrs.is("", "persistentvolumeclaims") {
            return Ok(());
        }
        if pvc
            .pointer("/spec/storageClassName")
            .is_some_and(|v| !v.is_null())
        {
            return Ok(());
        }
        let classes = super::cached_list(ctx.app, ("storage.k8s.io", "v1", "storageclasses"), None);
        if let (Some(name), Some(spec)) = (
            default_class(&classes),
            pvc.get_mut("spec").and_then(Value::as_object_mut),
        ) {
            spec.insert("storageClassName".into(), Value::String(name));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn class(name: &str, default: bool, created: &str) -> Value {
        json!({"metadata": {"name": name, "creationTimestamp": created,
            "annotations": {DEFAULT_CLASS_ANNOTATION: if default {"true"} else {"false"}}}})
    }

    #[test]
    fn the_newest_default_class_wins_and_non_defaults_never_do() {
        let classes = vec![
            class("old", true, "2024-01-01T00:00:00Z"),
            class("new", true, "2025-01-01T00:00:00Z"),
            class("plain", false, "2026-01-01T00:00:00Z"),
        ];
        assert_eq!(default_class(&classes).as_deref(), Some("new"));
        assert_eq!(default_class(&classes[2..]), None);
    }
}
