//! The audit log (`--audit-policy-file`, `--audit-log-path`): for each authenticated
//! request the policy picks a level; events (audit.k8s.io/v1 Event, one JSON line each)
//! are written at RequestReceived and ResponseComplete (ResponseStarted too for streams).
//! Secrets' contents are logged only at RequestResponse: at Request level their request
//! bodies are left out.

mod log;
mod policy;

use std::net::SocketAddr;
use std::path::Path;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde_json::{json, Map, Value};

pub use log::LogOptions;
pub use policy::{Level, Policy, Stage};

use crate::auth::UserInfo;
use crate::http::ErrorResponse;
use crate::request_info::RequestInfo;

pub struct Auditor {
    policy: Policy,
    log: log::LogWriter,
}

impl Auditor {
    pub fn start(policy_file: &Path, log: LogOptions) -> Result<Self, String> {
        let text = std::fs::read_to_string(policy_file)
            .map_err(|e| format!("reading audit policy {}: {e}", policy_file.display()))?;
        let policy = Policy::parse(&text)
            .map_err(|why| format!("audit policy {}: {why}", policy_file.display()))?;
        Ok(Self {
            policy,
            log: log::LogWriter::start(log)?,
        })
    }

    /// Starts the record of one request, or None when the policy says not to log it.
    pub fn begin(
        &self,
        user: &UserInfo,
        info: &RequestInfo,
        parts: &http::request::Parts,
    ) -> Option<Record<'_>> {
        let decision = self.policy.decide(&policy::Request {
            user,
            verb: &info.verb,
            is_resource: info.is_resource,
            group: &info.group,
            resource: &info.resource,
            subresource: &info.subresource,
            namespace: &info.namespace,
            name: &info.name,
            path: &info.path,
        });
        if decision.level == Level::None {
            return None;
        }
        let mut event = Map::new();
        event.insert("kind".into(), json!("Event"));
        event.insert("apiVersion".into(), json!("audit.k8s.io/v1"));
        event.insert("level".into(), json!(decision.level.name()));
        event.insert("auditID".into(), json!(uuid::Uuid::new_v4().to_string()));
        event.insert(
            "requestURI".into(),
            json!(parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/")),
        );
        event.insert("verb".into(), json!(info.verb));
        let mut u = json!({"username": user.name, "groups": user.groups});
        if !user.uid.is_empty() {
            u["uid"] = json!(user.uid);
        }
        event.insert("user".into(), u);
        if let Some(peer) = parts.extensions.get::<PeerAddr>() {
            event.insert("sourceIPs".into(), json!([peer.0.ip().to_string()]));
        }
        if let Some(agent) = parts
            .headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
        {
            event.insert("userAgent".into(), json!(agent));
        }
        if info.is_resource {
            let mut obj = Map::new();
            obj.insert("resource".into(), json!(info.resource));
            for (k, v) in [
                ("namespace", &info.namespace),
                ("name", &info.name),
                ("apiGroup", &info.group),
                ("apiVersion", &info.version),
                ("subresource", &info.subresource),
            ] {
                if !v.is_empty() {
                    obj.insert(k.into(), json!(v));
                }
            }
            event.insert("objectRef".into(), Value::Object(obj));
        }
        event.insert("requestReceivedTimestamp".into(), json!(micro_now()));
        Some(Record {
            auditor: self,
            level: decision.level,
            omit: decision.omit_stages,
            event,
            secret: info.is_resource && info.group.is_empty() && info.resource == "secrets",
            long_running: info.verb == "watch"
                || matches!(
                    info.subresource.as_str(),
                    "exec" | "attach" | "portforward" | "proxy" | "log"
                ),
        })
    }
}

/// The peer address of the connection a request came on.
#[derive(Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

fn micro_now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// One request's audit event, written at each stage the policy does not omit.
pub struct Record<'a> {
    auditor: &'a Auditor,
    level: Level,
    omit: Vec<Stage>,
    event: Map<String, Value>,
    secret: bool,
    long_running: bool,
}

impl Record<'_> {
    /// Logs RequestReceived, reading the body first when the level wants it. Returns the
    /// body to serve the request with (the same bytes), or the error response for a body
    /// that could not be read.
    pub async fn received(
        &mut self,
        headers: &http::HeaderMap,
        body: Body,
    ) -> Result<Body, Response> {
        let body = if self.level >= Level::Request && !self.long_running {
            let bytes = crate::http::read_body(body)
                .await
                .map_err(|e| ErrorResponse(e).into_response())?;
            let logged = self.level == Level::RequestResponse || !self.secret;
            if logged && !bytes.is_empty() {
                if let Ok(obj) = crate::http::parse_body(headers, &bytes) {
                    self.event.insert("requestObject".into(), obj);
                }
            }
            Body::from(bytes)
        } else {
            body
        };
        self.emit(Stage::RequestReceived).await;
        Ok(body)
    }

    /// Logs the response: ResponseComplete (with the response object at
    /// RequestResponse), or ResponseStarted for a stream.
    pub async fn respond(mut self, resp: Response) -> Response {
        self.event.insert(
            "responseStatus".into(),
            json!({"metadata": {}, "code": resp.status().as_u16()}),
        );
        if self.long_running && resp.status().is_success() || resp.status() == 101 {
            self.emit(Stage::ResponseStarted).await;
            // ResponseComplete is written when the stream's body is dropped: its end.
            if self.omit.contains(&Stage::ResponseComplete) {
                return resp;
            }
            let log = self.auditor.log.clone();
            let event = std::mem::take(&mut self.event);
            return resp.map(|body| {
                Body::new(log::OnEnd::new(body, move || {
                    let mut event = event;
                    event.insert("stage".into(), json!(Stage::ResponseComplete.name()));
                    event.insert("stageTimestamp".into(), json!(micro_now()));
                    log.write_now(serde_json::to_vec(&event).unwrap_or_default());
                }))
            });
        }
        let json_body = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/json"));
        let resp = if self.level == Level::RequestResponse && json_body {
            let (parts, body) = resp.into_parts();
            let bytes = body
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            if let Ok(obj) = serde_json::from_slice::<Value>(&bytes) {
                self.event.insert("responseObject".into(), obj);
            }
            Response::from_parts(parts, Body::from(bytes))
        } else {
            resp
        };
        if !resp.status().is_success() {
            // Failures carry their Status reason as upstream's responseStatus does.
            if let Some(obj) = self.event.get("responseObject").cloned() {
                if let Some(status) = self.event.get_mut("responseStatus") {
                    for k in ["status", "message", "reason"] {
                        if let Some(v) = obj.get(k) {
                            status[k] = v.clone();
                        }
                    }
                }
            }
        }
        self.emit(Stage::ResponseComplete).await;
        resp
    }

    async fn emit(&mut self, stage: Stage) {
        if self.omit.contains(&stage) {
            return;
        }
        self.event.insert("stage".into(), json!(stage.name()));
        self.event
            .insert("stageTimestamp".into(), json!(micro_now()));
        let line = serde_json::to_vec(&self.event).unwrap_or_default();
        self.auditor.log.write(line).await;
    }
}
