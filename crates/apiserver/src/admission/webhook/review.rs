//! AdmissionReview v1 (pure): the request a webhook gets and what its response means.

use base64::Engine;
use serde_json::{json, Value};
use skiff_api::ApiError;

use crate::admission::{Attributes, Operation};

/// The `AdmissionReview` sent to a webhook.
pub fn request(uid: &str, attrs: &Attributes, obj: Option<&Value>) -> Value {
    let kind = json!({"group": attrs.group, "version": attrs.version, "kind": attrs.kind});
    let resource =
        json!({"group": attrs.group, "version": attrs.version, "resource": attrs.resource});
    let mut req = json!({
        "uid": uid,
        "kind": kind,
        "resource": resource,
        "requestKind": kind,
        "requestResource": resource,
        "operation": attrs.operation.as_str(),
        "userInfo": {
            "username": attrs.user.name,
            "groups": attrs.user.groups,
        },
        "dryRun": attrs.dry_run,
        "object": if attrs.operation == Operation::Delete { Value::Null } else { obj.cloned().unwrap_or(Value::Null) },
        "oldObject": attrs.old_object.clone().unwrap_or(Value::Null),
        "options": attrs.options,
    });
    if !attrs.user.uid.is_empty() {
        req["userInfo"]["uid"] = json!(attrs.user.uid);
    }
    for (field, value) in [
        ("subResource", &attrs.subresource),
        ("requestSubResource", &attrs.subresource),
        ("name", &attrs.name),
        ("namespace", &attrs.namespace),
    ] {
        if !value.is_empty() {
            req[field] = json!(value);
        }
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req})
}

/// A webhook's answer, checked.
#[derive(Debug, Default, PartialEq)]
pub struct Response {
    pub allowed: bool,
    pub status: Value,
    /// A JSON patch (already decoded from base64), for mutating webhooks.
    pub patch: Option<json_patch::Patch>,
    pub warnings: Vec<String>,
    pub audit_annotations: Vec<(String, String)>,
}

/// Reads an `AdmissionReview` response body for request `uid`. Errors are what upstream
/// calls an invalid response (they follow the webhook's failurePolicy).
pub fn parse_response(body: &[u8], uid: &str) -> Result<Response, String> {
    let review: Value = serde_json::from_slice(body)
        .map_err(|e| format!("failed to decode the webhook's response: {e}"))?;
    if review.get("kind").and_then(Value::as_str) != Some("AdmissionReview") {
        return Err(
            "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview".into(),
        );
    }
    let resp = review
        .get("response")
        .filter(|r| r.is_object())
        .ok_or("webhook response was absent")?;
    let got = resp.get("uid").and_then(Value::as_str).unwrap_or("");
    if got != uid {
        return Err(format!("expected response.uid={uid:?}, got {got:?}"));
    }
    let patch = match resp.get("patch").and_then(Value::as_str) {
        None | Some("") => None,
        Some(b64) => {
            let kind = resp.get("patchType").and_then(Value::as_str).unwrap_or("");
            if kind != "JSONPatch" {
                return Err(format!("expected patchType \"JSONPatch\", got {kind:?}"));
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| format!("the patch is not valid base64: {e}"))?;
            Some(
                serde_json::from_slice(&bytes)
                    .map_err(|e| format!("the patch is not a JSON patch: {e}"))?,
            )
        }
    };
    Ok(Response {
        allowed: resp
            .get("allowed")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        status: resp.get("status").cloned().unwrap_or(Value::Null),
        patch,
        warnings: resp
            .get("warnings")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        audit_annotations: resp
            .get("auditAnnotations")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect(),
    })
}

/// Upstream's reason names for the codes a webhook may use.
fn reason_for(code: u16, given: &str) -> &'static str {
    const KNOWN: [&str; 12] = [
        "BadRequest",
        "Unauthorized",
        "Forbidden",
        "NotFound",
        "AlreadyExists",
        "Conflict",
        "Gone",
        "Invalid",
        "ServerTimeout",
        "Timeout",
        "TooManyRequests",
        "InternalError",
    ];
    if let Some(k) = KNOWN.iter().find(|k| **k == given) {
        return k;
    }
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        409 => "Conflict",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        _ => "",
    }
}

/// The error a denial becomes (upstream's `ToStatusErr`): the webhook's code (at least
/// 400) and `admission webhook "NAME" denied the request: <message>`.
pub fn denied(webhook: &str, status: &Value) -> ApiError {
    let code = status
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| *c >= 400 && *c < 600)
        .unwrap_or(400);
    let message = status.get("message").and_then(Value::as_str).unwrap_or("");
    let reason = status.get("reason").and_then(Value::as_str).unwrap_or("");
    let by = format!("admission webhook {webhook:?} denied the request");
    let message = if !message.is_empty() {
        format!("{by}: {message}")
    } else if !reason.is_empty() {
        format!("{by}: {reason}")
    } else {
        format!("{by} without explanation")
    };
    ApiError {
        code,
        reason: reason_for(code, reason),
        message,
        details: Box::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_checked_and_decoded() {
        let patch = base64::engine::general_purpose::STANDARD
            .encode(r#"[{"op":"add","path":"/metadata/labels/x","value":"y"}]"#);
        let body = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "response": {"uid": "u1", "allowed": true, "patchType": "JSONPatch", "patch": patch,
                "warnings": ["careful"]}});
        let r = parse_response(body.to_string().as_bytes(), "u1").unwrap();
        assert!(r.allowed);
        assert!(r.patch.is_some());
        assert_eq!(r.warnings, vec!["careful"]);
        assert!(parse_response(body.to_string().as_bytes(), "u2")
            .unwrap_err()
            .contains("expected response.uid"));
    }

    #[test]
    fn denials_carry_the_webhooks_message_and_code() {
        let e = denied(
            "deny.example.com",
            &json!({"code": 403, "message": "no thanks"}),
        );
        assert_eq!(e.code, 403);
        assert_eq!(e.reason, "Forbidden");
        assert_eq!(
            e.message,
            "admission webhook \"deny.example.com\" denied the request: no thanks"
        );
        let e = denied("d.e.f", &Value::Null);
        assert_eq!(e.code, 400);
        assert!(e
            .message
            .ends_with("denied the request without explanation"));
    }
}
