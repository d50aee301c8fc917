//! The three `PATCH` bodies the API server accepts, applied to untyped objects:
//!
//! - `application/strategic-merge-patch+json` ([`strategic_merge`]): JSON merge patch that
//!   knows, per field of the built-in types, whether a list merges (and by which key) or is
//!   replaced, plus the directives kubectl sends (`$patch`, `$retainKeys`,
//!   `$setElementOrder/<list>`, `$deleteFromPrimitiveList/<list>`). Refused for kinds that
//!   are not built in, as upstream does ([`supports_strategic`]).
//! - `application/merge-patch+json` ([`json_merge_patch`], RFC 7386).
//! - `application/json-patch+json` ([`json_patch`], RFC 6902).
//!
//! The per-field metadata is the type graph in [`schema`]; the merge itself is in
//! `strategic`. Nothing here does IO or panics on input.

pub mod schema;
mod strategic;
#[cfg(test)]
mod tests;

use serde_json::Value;

/// Why a patch could not be applied. Every variant is a fault of the request (a malformed
/// patch, or one that does not fit the object); there is no internal failure mode.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    #[error("strategic merge patch is not supported for kind {0:?}")]
    UnsupportedKind(String),
    #[error("the {0} must be a JSON object")]
    NotAnObject(&'static str),
    #[error("{path}: element {element} does not contain declared merge key {key:?}")]
    MissingMergeKey {
        path: String,
        key: String,
        element: String,
    },
    #[error("{path}: unknown patch type {value} (want \"replace\" or \"delete\")")]
    UnknownPatchType { path: String, value: String },
    #[error("{path}: {directive} must be {expected}")]
    BadDirective {
        path: String,
        directive: String,
        expected: &'static str,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("invalid JSON patch: {0}")]
    JsonPatch(String),
}

/// Whether `kind` has strategic merge patch metadata, i.e. is a built-in kind. Custom
/// resources have none; the server answers their strategic patches with 415 Unsupported
/// Media Type. The check is by kind alone: call it only for resources served from
/// built-in groups, since a CRD may reuse a built-in kind's name.
pub fn supports_strategic(kind: &str) -> bool {
    schema::root(kind).is_some()
}

/// Applies a strategic merge patch to `original`, an object of kind `kind` ("Pod",
/// "Deployment", ...), and returns the patched object.
///
/// Maps merge recursively and `null` deletes a field; lists follow the field's strategy:
/// merged by key (containers by `name`, ports by `containerPort`, ...), unioned (lists of
/// scalars such as `metadata.finalizers`) or, by default, replaced. Merged lists keep the
/// patch's order for the elements it names (or `$setElementOrder`'s), with the other
/// elements slotted in where the original had them, as upstream orders them.
pub fn strategic_merge(original: &Value, patch: &Value, kind: &str) -> Result<Value, PatchError> {
    let root = schema::root(kind).ok_or_else(|| PatchError::UnsupportedKind(kind.to_string()))?;
    let Value::Object(patch) = patch else {
        return Err(PatchError::NotAnObject("patch"));
    };
    let Value::Object(original) = original else {
        return Err(PatchError::NotAnObject("original object"));
    };
    let merged = strategic::merge_object(original.clone(), patch, Some(root), "")?;
    Ok(Value::Object(merged.unwrap_or_default()))
}

/// Applies an RFC 7386 JSON merge patch: objects merge, `null` deletes, anything else
/// (lists included) replaces.
pub fn json_merge_patch(original: &Value, patch: &Value) -> Value {
    let mut doc = original.clone();
    json_patch::merge(&mut doc, patch);
    doc
}

/// Applies an RFC 6902 JSON patch (a list of operations) atomically: on error nothing of
/// it applies.
pub fn json_patch(original: &Value, patch: &Value) -> Result<Value, PatchError> {
    let ops: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|e| PatchError::JsonPatch(e.to_string()))?;
    let mut doc = original.clone();
    json_patch::patch(&mut doc, &ops).map_err(|e| PatchError::JsonPatch(e.to_string()))?;
    Ok(doc)
}
