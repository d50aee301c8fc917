//! Resource requests: one entry point that resolves the resource and dispatches on the
//! verb. Reads (`read.rs`), writes (`write.rs`), watches (`watch.rs`) and subresources
//! (`sub.rs`) each live in their own module.

mod csr;
pub mod node_proxy;
mod read;
mod sub;
mod token_request;
mod watch;
mod write;

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use http::HeaderMap;
use skiff_api::ApiError;

use crate::http::{ApiResult, ErrorResponse};
use crate::request_info::RequestInfo;
use crate::resources::ResourceDef;
use crate::App;

/// expirationSeconds of the token ServiceAccount admission projects into pods.
pub const ADMISSION_TOKEN_EXPIRATION: i64 = token_request::ADMISSION_EXPIRATION;

/// Everything a handler needs about one request.
pub struct Req {
    pub app: Arc<App>,
    /// Who asks (for admission that depends on it: RBAC escalation, NodeRestriction).
    pub user: crate::auth::UserInfo,
    pub info: RequestInfo,
    pub def: &'static ResourceDef,
    pub query: HashMap<String, String>,
    pub headers: HeaderMap,
}

impl Req {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub fn dry_run(&self) -> bool {
        self.query.get("dryRun").is_some_and(|v| v == "All")
    }

    pub fn key(&self, name: &str) -> String {
        crate::storage::object_key(self.def, &self.info.namespace, name)
    }
}

/// Dispatches an authenticated, authorized resource request.
pub async fn dispatch(
    app: Arc<App>,
    user: crate::auth::UserInfo,
    info: RequestInfo,
    headers: HeaderMap,
    query: &str,
    body: Body,
) -> Response {
    let result = route(app, user, info, headers, query, body).await;
    match result {
        Ok(resp) => resp,
        Err(err) => axum::response::IntoResponse::into_response(err),
    }
}

async fn route(
    app: Arc<App>,
    user: crate::auth::UserInfo,
    info: RequestInfo,
    headers: HeaderMap,
    query: &str,
    body: Body,
) -> ApiResult {
    let def = app
        .resource(&info.group, &info.version, &info.resource)
        .ok_or_else(ApiError::path_not_found)?;
    if !def.namespaced && !info.namespace.is_empty() {
        return Err(ApiError::path_not_found().into());
    }
    let sub = info.subresource.clone();
    if !sub.is_empty() && !def.has_subresource(&sub) {
        return Err(ApiError::path_not_found().into());
    }
    let req = Req {
        app,
        user,
        info,
        def,
        query: crate::http::query_map(query),
        headers,
    };
    match (req.info.verb.as_str(), sub.as_str()) {
        ("get", "" | "status") => read::get(&req).await,
        ("list", "") => read::list(&req).await,
        ("watch", "") => watch::watch(&req).await,
        ("create", "") => write::create(&req, body).await,
        ("update", "" | "status") => write::update(&req, body).await,
        ("patch", "" | "status") => write::patch(&req, body).await,
        ("delete", "") => write::delete(&req, body).await,
        ("deletecollection", "") => write::delete_collection(&req, body).await,
        ("get" | "update" | "patch", "scale") => sub::scale(&req, body).await,
        ("create", "binding") => sub::binding(&req, body).await,
        ("create", "eviction") => sub::eviction(&req, body).await,
        ("create", "token") => token_request::create(&req, body).await,
        ("update", "finalize" | "approval") => write::update(&req, body).await,
        _ => Err(ErrorResponse(ApiError::method_not_allowed())),
    }
}
