//! `metav1.Status` errors, with upstream's codes, reasons and message texts, so kubectl and
//! client libraries print and branch on them exactly as they do against Kubernetes.

use std::fmt;

use serde_json::{json, Value};

use crate::validation::FieldErrors;

/// A resource with its group, printed as upstream does: `pods`, `deployments.apps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupResource {
    pub group: String,
    pub resource: String,
}

impl GroupResource {
    pub fn new(group: &str, resource: &str) -> Self {
        Self {
            group: group.to_string(),
            resource: resource.to_string(),
        }
    }
}

impl fmt::Display for GroupResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() {
            f.write_str(&self.resource)
        } else {
            write!(f, "{}.{}", self.resource, self.group)
        }
    }
}

/// A kind with its group, printed as upstream does: `Pod`, `Deployment.apps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupKind {
    pub group: String,
    pub kind: String,
}

impl GroupKind {
    pub fn new(group: &str, kind: &str) -> Self {
        Self {
            group: group.to_string(),
            kind: kind.to_string(),
        }
    }
}

impl fmt::Display for GroupKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() {
            f.write_str(&self.kind)
        } else {
            write!(f, "{}.{}", self.kind, self.group)
        }
    }
}

/// One entry of `details.causes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    pub reason: String,
    pub message: String,
    pub field: String,
}

/// `metav1.StatusDetails`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Details {
    pub name: Option<String>,
    pub group: Option<String>,
    /// `details.kind`: the resource (e.g. `pods`) for most errors, the kind for Invalid.
    pub kind: Option<String>,
    pub causes: Vec<Cause>,
    pub retry_after_seconds: Option<u32>,
}

/// An API error: everything a `metav1.Status` failure carries. The details are boxed so
/// `Result<_, ApiError>` stays small on hot paths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Box<Details>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: Box::default(),
        }
    }

    fn about(mut self, gr: &GroupResource, name: &str) -> Self {
        self.details.group = Some(gr.group.clone());
        self.details.kind = Some(gr.resource.clone());
        if !name.is_empty() {
            self.details.name = Some(name.to_string());
        }
        self
    }

    pub fn not_found(gr: &GroupResource, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{gr} \"{name}\" not found")).about(gr, name)
    }

    /// A path that names no resource the server knows.
    pub fn path_not_found() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    pub fn already_exists(gr: &GroupResource, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{gr} \"{name}\" already exists"),
        )
        .about(gr, name)
    }

    pub fn conflict(gr: &GroupResource, name: &str, detail: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {gr} \"{name}\": {detail}"),
        )
        .about(gr, name)
    }

    /// The optimistic-concurrency conflict every stale update gets.
    pub fn stale(gr: &GroupResource, name: &str) -> Self {
        Self::conflict(
            gr,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422 with one cause per field error: `Pod "x" is invalid: spec.containers: Required value`.
    pub fn invalid(gk: &GroupKind, name: &str, errors: &FieldErrors) -> Self {
        let mut err = Self::new(
            422,
            "Invalid",
            format!("{gk} \"{name}\" is invalid: {errors}"),
        );
        err.details.group = Some(gk.group.clone());
        err.details.kind = Some(gk.kind.clone());
        if !name.is_empty() {
            err.details.name = Some(name.to_string());
        }
        err.details.causes = errors
            .iter()
            .map(|e| Cause {
                reason: e.reason().to_string(),
                message: e.body(),
                field: e.field.clone(),
            })
            .collect();
        err
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// 403: `pods "x" is forbidden: <why>` or, without a name, `pods is forbidden: <why>`.
    pub fn forbidden(gr: &GroupResource, name: &str, why: &str) -> Self {
        let message = if name.is_empty() {
            format!("{gr} is forbidden: {why}")
        } else {
            format!("{gr} \"{name}\" is forbidden: {why}")
        };
        Self::new(403, "Forbidden", message).about(gr, name)
    }

    /// 403 for a path that is not a resource (`/healthz`, `/version` ...).
    pub fn forbidden_path(why: &str) -> Self {
        Self::new(403, "Forbidden", format!("forbidden: {why}"))
    }

    /// 410 for a watch or list from a compacted resource version.
    pub fn expired(requested: i64, oldest: i64) -> Self {
        Self::new(
            410,
            "Expired",
            format!("too old resource version: {requested} ({oldest})"),
        )
    }

    /// 410 for a `continue` token whose snapshot is gone.
    pub fn expired_continue() -> Self {
        Self::new(
            410,
            "Expired",
            "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
        )
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit}"),
        )
    }

    pub fn too_many_requests(retry_after_seconds: u32) -> Self {
        let mut err = Self::new(
            429,
            "TooManyRequests",
            "Too many requests, please try again later.",
        );
        err.details.retry_after_seconds = Some(retry_after_seconds);
        err
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {content_type:?})"))
    }

    pub fn not_acceptable(accept: &str) -> Self {
        Self::new(406, "NotAcceptable", format!("only the following media types are accepted: application/json, application/yaml (got {accept:?})"))
    }

    pub fn internal(message: impl fmt::Display) -> Self {
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {message}"),
        )
    }

    pub fn service_unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(504, "Timeout", message)
    }

    /// The `metav1.Status` body.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        let mut details = serde_json::Map::new();
        let d = &self.details;
        if let Some(name) = &d.name {
            details.insert("name".into(), json!(name));
        }
        if let Some(group) = d.group.as_ref().filter(|g| !g.is_empty()) {
            details.insert("group".into(), json!(group));
        }
        if let Some(kind) = &d.kind {
            details.insert("kind".into(), json!(kind));
        }
        if !d.causes.is_empty() {
            let causes: Vec<Value> = d
                .causes
                .iter()
                .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                .collect();
            details.insert("causes".into(), Value::Array(causes));
        }
        if let Some(secs) = d.retry_after_seconds {
            details.insert("retryAfterSeconds".into(), json!(secs));
        }
        // Upstream sends `details` only when there is something in it.
        if !details.is_empty() {
            status["details"] = Value::Object(details);
        }
        status
    }
}

/// A `metav1.Status` success body (what a delete of a collection or of a gone object returns).
pub fn success_status(details: Option<Value>) -> Value {
    let mut status =
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"});
    if let Some(details) = details {
        status["details"] = details;
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::FieldError;

    #[test]
    fn messages_match_upstream_texts() {
        let pods = GroupResource::new("", "pods");
        let deployments = GroupResource::new("apps", "deployments");
        assert_eq!(
            ApiError::not_found(&pods, "web").message,
            "pods \"web\" not found"
        );
        assert_eq!(
            ApiError::not_found(&deployments, "d").message,
            "deployments.apps \"d\" not found"
        );
        assert_eq!(
            ApiError::already_exists(&pods, "web").message,
            "pods \"web\" already exists"
        );
        assert_eq!(
            ApiError::stale(&pods, "web").message,
            "Operation cannot be fulfilled on pods \"web\": the object has been modified; please apply your changes to the latest version and try again"
        );
        assert_eq!(
            ApiError::forbidden(&pods, "", "User \"bob\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\"").message,
            "pods is forbidden: User \"bob\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        );
        assert_eq!(
            ApiError::expired(3, 10).message,
            "too old resource version: 3 (10)"
        );
    }

    #[test]
    fn invalid_lists_causes_with_field_paths() {
        let mut errors = FieldErrors::default();
        errors.push(FieldError::required("spec.containers", ""));
        errors.push(FieldError::invalid(
            "metadata.name",
            &json!("Bad_Name"),
            "must be lowercase",
        ));
        let err = ApiError::invalid(&GroupKind::new("", "Pod"), "Bad_Name", &errors);
        assert_eq!(err.code, 422);
        assert_eq!(
            err.message,
            "Pod \"Bad_Name\" is invalid: [spec.containers: Required value, metadata.name: Invalid value: \"Bad_Name\": must be lowercase]"
        );
        let status = err.to_status();
        assert_eq!(status["details"]["kind"], "Pod");
        assert_eq!(
            status["details"]["causes"][0]["reason"],
            "FieldValueRequired"
        );
        assert_eq!(status["details"]["causes"][1]["field"], "metadata.name");
        assert_eq!(status["reason"], "Invalid");
    }

    #[test]
    fn status_bodies_have_the_metav1_shape() {
        let status = ApiError::too_many_requests(1).to_status();
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["apiVersion"], "v1");
        assert_eq!(status["status"], "Failure");
        assert_eq!(status["code"], 429);
        assert_eq!(status["details"]["retryAfterSeconds"], 1);
        let bare = ApiError::path_not_found().to_status();
        assert!(bare.get("details").is_none());
        let gr = ApiError::not_found(&GroupResource::new("apps", "deployments"), "x").to_status();
        assert_eq!(
            gr["details"],
            json!({"name": "x", "group": "apps", "kind": "deployments"})
        );
    }
}
