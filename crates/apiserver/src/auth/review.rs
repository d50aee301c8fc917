//! The review APIs: create-only, never stored. authorization.k8s.io/v1
//! SelfSubjectAccessReview (`kubectl auth can-i`), SelfSubjectRulesReview (`kubectl auth
//! can-i --list`), SubjectAccessReview and LocalSubjectAccessReview; and
//! authentication.k8s.io/v1 SelfSubjectReview (`kubectl auth whoami`).

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde_json::{json, Value};
use skiff_api::ApiError;

use super::rules::Rule;
use super::{node, Attributes, Decision, UserInfo};
use crate::http::{json_response, parse_body, read_body, ErrorResponse};
use crate::request_info::RequestInfo;
use crate::App;

const AUTHZ: &str = "authorization.k8s.io";
const AUTHN: &str = "authentication.k8s.io";

/// Whether the request is for a review resource (answered here, not by the registry).
pub fn is_review(info: &RequestInfo) -> bool {
    info.version == "v1"
        && info.subresource.is_empty()
        && match info.group.as_str() {
            AUTHZ => matches!(
                info.resource.as_str(),
                "selfsubjectaccessreviews"
                    | "selfsubjectrulesreviews"
                    | "subjectaccessreviews"
                    | "localsubjectaccessreviews"
            ),
            AUTHN => info.resource == "selfsubjectreviews",
            _ => false,
        }
}

fn kind_of(resource: &str) -> &'static str {
    match resource {
        "selfsubjectaccessreviews" => "SelfSubjectAccessReview",
        "selfsubjectrulesreviews" => "SelfSubjectRulesReview",
        "subjectaccessreviews" => "SubjectAccessReview",
        "localsubjectaccessreviews" => "LocalSubjectAccessReview",
        _ => "SelfSubjectReview",
    }
}

/// Serves a review request that the chain already authorized.
pub async fn serve(
    app: &App,
    user: &UserInfo,
    info: &RequestInfo,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    match review(app, user, info, headers, body).await {
        Ok(v) => json_response(StatusCode::CREATED, &v),
        Err(e) => ErrorResponse(e).into_response(),
    }
}

async fn review(
    app: &App,
    user: &UserInfo,
    info: &RequestInfo,
    headers: &HeaderMap,
    body: Body,
) -> Result<Value, ApiError> {
    if info.verb != "create" {
        return Err(ApiError::method_not_allowed());
    }
    let kind = kind_of(&info.resource);
    let bytes = read_body(body).await?;
    let mut obj = if bytes.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        parse_body(headers, &bytes)?
    };
    if !obj.is_object() {
        return Err(ApiError::bad_request("the request body must be an object"));
    }
    obj["apiVersion"] = json!(format!("{}/v1", info.group));
    obj["kind"] = json!(kind);
    if obj.get("metadata").is_none_or(|m| !m.is_object()) {
        obj["metadata"] = json!({});
    }
    obj["metadata"]["creationTimestamp"] = Value::Null;
    let spec = obj.get("spec").cloned().unwrap_or(json!({}));
    let status = match kind {
        "SelfSubjectReview" => json!({"userInfo": user_info(user)}),
        "SelfSubjectAccessReview" => access(app, user, &spec)?,
        "SelfSubjectRulesReview" => {
            let ns = spec.get("namespace").and_then(Value::as_str).unwrap_or("");
            rules_review(app, user, ns)
        }
        _ => {
            let subject = subject(&spec)?;
            if kind == "LocalSubjectAccessReview" {
                let ns = spec
                    .pointer("/resourceAttributes/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if ns != info.namespace {
                    return Err(ApiError::bad_request(format!(
                        "spec.resourceAttributes.namespace must match namespace: {}",
                        info.namespace
                    )));
                }
                obj["metadata"]["namespace"] = json!(info.namespace);
            }
            access(app, &subject, &spec)?
        }
    };
    obj["status"] = status;
    Ok(obj)
}

fn user_info(user: &UserInfo) -> Value {
    let mut v = json!({"username": user.name, "groups": user.groups});
    if !user.uid.is_empty() {
        v["uid"] = json!(user.uid);
    }
    v
}

/// The user a (Local)SubjectAccessReview asks about.
fn subject(spec: &Value) -> Result<UserInfo, ApiError> {
    let name = spec.get("user").and_then(Value::as_str).unwrap_or("");
    let groups: Vec<&str> = spec
        .get("groups")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if name.is_empty() && groups.is_empty() {
        return Err(ApiError::bad_request(
            "spec.user: Invalid value: \"\": at least one of user or group must be specified",
        ));
    }
    // Upstream asks about exactly the groups given (no implicit system:authenticated).
    Ok(UserInfo {
        name: name.to_string(),
        uid: spec
            .get("uid")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        extra: Default::default(),
    })
}

fn access(app: &App, user: &UserInfo, spec: &Value) -> Result<Value, ApiError> {
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let attrs = if let Some(r) = spec.get("resourceAttributes").filter(|r| r.is_object()) {
        Attributes {
            verb: s(r, "verb"),
            namespace: s(r, "namespace"),
            group: s(r, "group"),
            resource: s(r, "resource"),
            subresource: s(r, "subresource"),
            name: s(r, "name"),
            path: None,
            field_selector: r
                .pointer("/fieldSelector/rawSelector")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        }
    } else if let Some(n) = spec.get("nonResourceAttributes").filter(|r| r.is_object()) {
        Attributes {
            verb: s(n, "verb"),
            path: Some(s(n, "path")),
            ..Attributes::default()
        }
    } else {
        return Err(ApiError::bad_request(
            "spec: Invalid value: exactly one of nonResourceAttributes or resourceAttributes must be specified",
        ));
    };
    Ok(match app.authz.authorize(user, &attrs) {
        Decision::Allow => json!({"allowed": true, "reason": allow_reason(user)}),
        Decision::Deny(_) => json!({"allowed": false}),
    })
}

fn allow_reason(user: &UserInfo) -> &'static str {
    if user.in_group("system:masters") {
        ""
    } else {
        "RBAC: allowed"
    }
}

fn rules_review(app: &App, user: &UserInfo, namespace: &str) -> Value {
    let mut rules = app.rbac.rules_for(user, namespace);
    if node::node_name(user).is_some() {
        rules.extend(app.node_authz.rules().iter().cloned());
    }
    let (urls, resources): (Vec<Rule>, Vec<Rule>) = rules
        .into_iter()
        .partition(|r| !r.non_resource_urls.is_empty());
    let resource_rules: Vec<Value> = resources
        .iter()
        .map(|r| {
            let mut v =
                json!({"verbs": r.verbs, "apiGroups": r.api_groups, "resources": r.resources});
            if !r.resource_names.is_empty() {
                v["resourceNames"] = json!(r.resource_names);
            }
            v
        })
        .collect();
    let url_rules: Vec<Value> = urls
        .iter()
        .map(|r| json!({"verbs": r.verbs, "nonResourceURLs": r.non_resource_urls}))
        .collect();
    json!({"resourceRules": resource_rules, "nonResourceRules": url_rules, "incomplete": false})
}
