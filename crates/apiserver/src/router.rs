//! The request pipeline, in order: authenticate (401), resolve what the request is about,
//! authorize (403), limit concurrency (429), serve, record metrics. Health endpoints and
//! the public CA (`/cacerts`) are the only paths served without credentials, so load
//! balancers, probes and joining nodes can use them.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{header, StatusCode};
use serde_json::Value;
use skiff_api::{ApiError, GroupResource};

use crate::auth::{Attributes, Decision, UserInfo};
use crate::http::{bytes_response, json_response, ErrorResponse};
use crate::request_info::RequestInfo;
use crate::server::ConnIdentity;
use crate::{discovery, handlers, openapi, App};

pub fn router(app: Arc<App>) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(app)
}

fn is_health(path: &str) -> bool {
    ["/healthz", "/livez", "/readyz"]
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")))
}

fn text(code: StatusCode, body: &str) -> Response {
    bytes_response(
        code,
        bytes::Bytes::from(body.to_string()),
        "text/plain; charset=utf-8",
    )
}

async fn handle(State(app): State<Arc<App>>, req: Request) -> Response {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let version = parts.version;
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    let info = RequestInfo::parse(&parts.method, &path, &query);
    let resource_label = if info.is_resource {
        info.resource.clone()
    } else {
        String::new()
    };
    let verb_label = info.verb.to_ascii_uppercase();
    let resp = if is_health(&path) {
        health(&app, &path)
    } else if path == "/cacerts" {
        // The CA is public; a joining node fetches it unverified and checks it against
        // the hash in its join token (k3s's /cacerts).
        bytes_response(
            StatusCode::OK,
            bytes::Bytes::from(app.ca_cert_pem.clone()),
            "text/plain; charset=utf-8",
        )
    } else {
        let cert_user = parts
            .extensions
            .get::<ConnIdentity>()
            .and_then(|c| c.0.as_ref());
        let authorization = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        match app
            .authn
            .authenticate(cert_user, authorization, app.as_ref())
            .await
        {
            None => ErrorResponse(ApiError::unauthorized()).into_response(),
            Some(user) => {
                let user =
                    match crate::auth::impersonate::apply(app.authz.as_ref(), user, &parts.headers)
                    {
                        Ok(user) => user,
                        Err(err) => return ErrorResponse(err).into_response(),
                    };
                match app
                    .audit
                    .as_ref()
                    .and_then(|a| a.begin(&user, &info, &parts))
                {
                    None => authorized(&app, user, info, parts, &query, body).await,
                    Some(mut record) => match record.received(&parts.headers, body).await {
                        Err(resp) => record.respond(resp).await,
                        Ok(body) => {
                            let resp = authorized(&app, user, info, parts, &query, body).await;
                            record.respond(resp).await
                        }
                    },
                }
            }
        }
    };
    let mut resp = resp;
    // A 413 leaves the rest of the body unread, so hyper drops the connection; an HTTP/1
    // client must hear that, or it reuses a dead connection (Go's server says the same).
    if resp.status() == StatusCode::PAYLOAD_TOO_LARGE && version <= http::Version::HTTP_11 {
        resp.headers_mut()
            .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
    }
    let code = resp.status().as_u16();
    app.metrics.observe(
        &verb_label,
        &resource_label,
        code,
        started.elapsed().as_secs_f64(),
    );
    resp
}

async fn authorized(
    app: &Arc<App>,
    user: UserInfo,
    info: RequestInfo,
    parts: http::request::Parts,
    query: &str,
    body: Body,
) -> Response {
    let attrs = Attributes {
        verb: info.verb.clone(),
        namespace: info.namespace.clone(),
        group: info.group.clone(),
        resource: info.resource.clone(),
        subresource: info.subresource.clone(),
        name: info.name.clone(),
        path: (!info.is_resource).then(|| info.path.clone()),
        field_selector: crate::http::query_map(query)
            .remove("fieldSelector")
            .unwrap_or_default(),
    };
    if let Decision::Deny(why) = app.authz.authorize(&user, &attrs) {
        let err = if info.is_resource {
            ApiError::forbidden(
                &GroupResource::new(&info.group, &info.resource),
                &info.name,
                &why,
            )
        } else {
            ApiError::forbidden_path(&why)
        };
        return ErrorResponse(err).into_response();
    }
    if !info.is_resource {
        return non_resource(app, &info.path, &parts.headers);
    }
    if crate::auth::review::is_review(&info) {
        return crate::auth::review::serve(app, &user, &info, &parts.headers, body).await;
    }
    // Served by the pod's node agent; long-running, so outside the in-flight limit.
    if handlers::node_proxy::handles(&info) {
        return handlers::node_proxy::serve(app.clone(), &user, info, parts, query).await;
    }
    // Long-running watches are not counted against the in-flight limit, as upstream.
    let _permit = if info.verb == "watch" {
        None
    } else {
        match app.inflight.try_acquire() {
            Ok(p) => Some(p),
            Err(_) => return ErrorResponse(ApiError::too_many_requests(1)).into_response(),
        }
    };
    handlers::dispatch(app.clone(), user, info, parts.headers, query, body).await
}

fn health(app: &App, path: &str) -> Response {
    if path.starts_with("/livez") || app.is_ready() {
        text(StatusCode::OK, "ok")
    } else {
        text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "[-]informer-sync failed: not finished\nreadyz check failed",
        )
    }
}

fn non_resource(app: &App, path: &str, headers: &http::HeaderMap) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let aggregated = discovery::wants_aggregated(accept);
    let defs = app.resources();
    let segments: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let found: Option<(Value, String)> = match segments.as_slice() {
        ["version"] => Some((discovery::version(), "application/json".into())),
        ["metrics"] => {
            let body = bytes::Bytes::from(app.metrics.render());
            return bytes_response(
                StatusCode::OK,
                body,
                "text/plain; version=0.0.4; charset=utf-8",
            );
        }
        ["api"] => Some(match aggregated {
            Some(v) => (
                discovery::aggregated(&defs, true),
                format!("application/json;g=apidiscovery.k8s.io;v={v};as=APIGroupDiscoveryList"),
            ),
            None => (
                discovery::core_versions(&app.server_address),
                "application/json".into(),
            ),
        }),
        ["apis"] => Some(match aggregated {
            Some(v) => (
                discovery::aggregated(&defs, false),
                format!("application/json;g=apidiscovery.k8s.io;v={v};as=APIGroupDiscoveryList"),
            ),
            None => (discovery::group_list(&defs), "application/json".into()),
        }),
        ["api", version] => {
            discovery::resource_list(&defs, "", version).map(|d| (d, "application/json".into()))
        }
        ["apis", group] => discovery::group(&defs, group).map(|d| (d, "application/json".into())),
        ["apis", group, version] => {
            discovery::resource_list(&defs, group, version).map(|d| (d, "application/json".into()))
        }
        [".well-known", "openid-configuration"] => app.authn.service_accounts.as_ref().map(|sa| {
            (
                crate::auth::oidc::configuration(sa),
                "application/json".into(),
            )
        }),
        ["openid", "v1", "jwks"] => app.authn.service_accounts.as_ref().map(|sa| {
            (
                crate::auth::oidc::jwks(sa),
                "application/jwk-set+json".into(),
            )
        }),
        // Large, pre-serialized documents: sent as bytes, not through a Value.
        ["openapi", "v2"] => return openapi::respond(openapi::v2(accept)),
        ["openapi", "v3"] => {
            return openapi::respond(Some(&openapi::v3_index_with(&app.crds.all())))
        }
        ["openapi", "v3", rest @ ..] => {
            let path = rest.join("/");
            return openapi::respond(openapi::v3_document_with(&path, &app.crds.all()).as_ref());
        }
        _ => None,
    };
    match found {
        Some((body, content_type)) => {
            let mut resp = json_response(StatusCode::OK, &body);
            if let Ok(ct) = http::HeaderValue::from_str(&content_type) {
                resp.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            resp
        }
        None => ErrorResponse(ApiError::path_not_found()).into_response(),
    }
}
