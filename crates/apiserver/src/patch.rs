//! The three patch types a PATCH request can carry (server-side apply is handled by the
//! write path): JSON patch (RFC 6902), JSON merge patch (RFC 7386) and strategic merge
//! patch (merge keys of built-in types, from `skiff_api::patch`).

use serde_json::Value;
use skiff_api::ApiError;

pub fn apply_patch(
    content_type: &str,
    kind: &str,
    current: &Value,
    patch: &Value,
) -> Result<Value, ApiError> {
    match content_type {
        "application/json-patch+json" => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| ApiError::bad_request(format!("the JSON patch is malformed: {e}")))?;
            let mut doc = current.clone();
            json_patch::patch(&mut doc, &ops).map_err(|e| {
                // Upstream: a 422 Invalid with no details, so kubectl prints "The request
                // is invalid: ..." rather than naming an object.
                tracing::debug!(%e, "JSON patch failed");
                let mut err =
                    ApiError::invalid(&skiff_api::GroupKind::new("", ""), "", &Default::default());
                err.message =
                    "the server rejected our request due to an error in our request".into();
                err.details = Box::default();
                err
            })?;
            Ok(doc)
        }
        "application/merge-patch+json" => {
            if !patch.is_object() {
                return Err(ApiError::bad_request("a merge patch must be a JSON object"));
            }
            let mut doc = current.clone();
            json_patch::merge(&mut doc, patch);
            Ok(doc)
        }
        "application/strategic-merge-patch+json" => {
            if !skiff_api::patch::supports_strategic(kind) {
                return Err(ApiError::unsupported_media_type(content_type));
            }
            skiff_api::patch::strategic_merge(current, patch, kind)
                .map_err(|e| ApiError::bad_request(e.to_string()))
        }
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_and_merge_patches() {
        let cur = json!({"metadata": {"name": "c", "labels": {"a": "1"}}, "data": {"k": "v"}});
        let out = apply_patch(
            "application/merge-patch+json",
            "ConfigMap",
            &cur,
            &json!({"metadata": {"labels": {"a": null, "b": "2"}}}),
        )
        .unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"b": "2"}));
        let ops = json!([{"op": "test", "path": "/data/k", "value": "v"}, {"op": "replace", "path": "/data/k", "value": "w"}]);
        assert_eq!(
            apply_patch("application/json-patch+json", "ConfigMap", &cur, &ops).unwrap()["data"]
                ["k"],
            "w"
        );
        let failing = json!([{"op": "test", "path": "/data/k", "value": "nope"}]);
        assert_eq!(
            apply_patch("application/json-patch+json", "ConfigMap", &cur, &failing)
                .unwrap_err()
                .code,
            422
        );
        assert_eq!(
            apply_patch("text/plain", "ConfigMap", &cur, &json!({}))
                .unwrap_err()
                .code,
            415
        );
    }
}
