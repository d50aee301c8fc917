//! NamespaceLifecycle: no new objects in a namespace that does not exist or is being
//! terminated (upstream refuses creates only; updates and deletes go through so the
//! namespace controller can finish its work).

use serde_json::Value;
use skiff_api::ApiError;

use super::{Attributes, Context, Operation, Plugin};

pub struct NamespaceLifecycle;

/// What upstream's plugin says for a namespace that is going away.
fn terminating(attrs: &Attributes) -> ApiError {
    let ns = &attrs.namespace;
    attrs.forbidden(&format!(
        "unable to create new content in namespace {ns} because it is being terminated"
    ))
}

#[async_trait::async_trait]
impl Plugin for NamespaceLifecycle {
    fn name(&self) -> &'static str {
        "NamespaceLifecycle"
    }

    async fn validate(
        &self,
        ctx: &Context<'_>,
        attrs: &Attributes,
        _obj: &Value,
    ) -> Result<(), ApiError> {
        // Checked before anything else too (see `check_namespace`); this is the chain's
        // record that the plugin exists and covers late terminations.
        if attrs.operation != Operation::Create || attrs.namespace.is_empty() {
            return Ok(());
        }
        check_namespace(ctx, attrs).await
    }
}

/// The NamespaceLifecycle check, also run first of all on a create so a missing namespace
/// is a 404 before any other plugin (or webhook) is asked.
pub async fn check_namespace(ctx: &Context<'_>, attrs: &Attributes) -> Result<(), ApiError> {
    let ns = &attrs.namespace;
    let key = skiff_store::keys::object_key("namespaces", None, ns);
    let namespaces =
        crate::resources::find("", "v1", "namespaces").ok_or_else(ApiError::path_not_found)?;
    // The phase is what upstream's NamespaceLifecycle checks, and the cache indexes it
    // (a field selector), so the common case parses nothing.
    let cached = ctx
        .app
        .cache
        .resource(namespaces)
        .and_then(|c| c.get(&key))
        .map(|o| o.fields.get("status.phase").cloned().unwrap_or_default());
    // The cache may lag a namespace created a moment ago: confirm a miss in the store.
    let phase = match cached {
        Some(phase) => Some(phase),
        None => ctx.app.storage.get(&key).await?.map(|n| {
            n.pointer("/status/phase")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        }),
    };
    match phase.as_deref() {
        None => Err(ApiError::not_found(
            &skiff_api::GroupResource::new("", "namespaces"),
            ns,
        )),
        Some("Terminating") => Err(terminating(attrs)),
        Some(_) => Ok(()),
    }
}
