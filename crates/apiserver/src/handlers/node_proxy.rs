//! Pod subresources served by the pod's node agent: `pods/log`, `pods/exec`,
//! `pods/attach`, `pods/portforward`, and `nodes/proxy` (any agent path). The API server
//! finds the pod's node, the node's address and agent port (InternalIP and
//! `status.daemonEndpoints.kubeletEndpoint.Port`), and connects with its kubelet-client
//! certificate. Logs are streamed through as they come; streams are upgraded and relayed
//! (see [`crate::streaming::relay`] for the protocol translations).

use std::sync::Arc;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{header, HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Empty};
use serde_json::Value;
use skiff_api::{ApiError, GroupResource};

use crate::auth::{Attributes, Decision, UserInfo};
use crate::http::ErrorResponse;
use crate::request_info::RequestInfo;
use crate::streaming::relay::{self, Streams};
use crate::streaming::ws;
use crate::{resources, App};

/// The default agent port when a Node does not say (the kubelet's).
const DEFAULT_PORT: u16 = 10250;
const V5: &str = "v5.channel.k8s.io";
/// What an agent's runtime serves for exec and attach over SPDY.
const SPDY_V4: &str = "v4.channel.k8s.io";

/// Whether this request is one of the subresources served here.
pub fn handles(info: &RequestInfo) -> bool {
    info.is_resource
        && info.group.is_empty()
        && info.version == "v1"
        && !info.name.is_empty()
        && match info.resource.as_str() {
            "pods" => matches!(
                info.subresource.as_str(),
                "log" | "exec" | "attach" | "portforward"
            ),
            "nodes" => info.subresource == "proxy",
            _ => false,
        }
}

type Result<T> = std::result::Result<T, ApiError>;

/// Serves an authenticated, authorized request for one of these subresources.
pub async fn serve(
    app: Arc<App>,
    user: &UserInfo,
    info: RequestInfo,
    parts: http::request::Parts,
    query: &str,
) -> Response {
    match route(app, user, info, parts, query).await {
        Ok(resp) => resp,
        Err(err) => ErrorResponse(err).into_response(),
    }
}

async fn route(
    app: Arc<App>,
    user: &UserInfo,
    info: RequestInfo,
    parts: http::request::Parts,
    query: &str,
) -> Result<Response> {
    let sub = info.subresource.as_str();
    // Opening a stream is `create` on the subresource, also over a WebSocket GET
    // (upstream checks both since 1.30).
    if matches!(sub, "exec" | "attach" | "portforward") && info.verb != "create" {
        let attrs = Attributes {
            verb: "create".into(),
            namespace: info.namespace.clone(),
            group: info.group.clone(),
            resource: info.resource.clone(),
            subresource: info.subresource.clone(),
            name: info.name.clone(),
            path: None,
            ..Attributes::default()
        };
        if let Decision::Deny(why) = app.authz.authorize(user, &attrs) {
            return Err(ApiError::forbidden(
                &GroupResource::new("", &format!("pods/{sub}")),
                &info.name,
                &why,
            ));
        }
    }
    if !matches!(parts.method, Method::GET | Method::POST) && info.resource == "pods" {
        return Err(ApiError::method_not_allowed());
    }
    let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let one = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    if info.resource == "nodes" {
        let node = get(&app, "nodes", "", &info.name).await?;
        let target = agent_address(&node, &info.name)?;
        let rest = proxy_rest(&info.path);
        let path = with_query(&rest, query);
        return upgrade_or_forward(&app, &target, parts, &path, Mode::Splice).await;
    }
    let pod = get(&app, "pods", &info.namespace, &info.name).await?;
    let ns = info.namespace.as_str();
    let name = info.name.as_str();
    match sub {
        "log" => {
            let container = container(&pod, name, one("container"))?;
            let Some(node) = node_name(&pod) else {
                // Upstream answers an unscheduled pod's log with nothing at all.
                return Ok(StatusCode::OK.into_response());
            };
            let target = node_target(&app, node).await?;
            let mut q: Vec<(&str, String)> = Vec::new();
            for key in [
                "follow",
                "previous",
                "timestamps",
                "sinceSeconds",
                "sinceTime",
                "tailLines",
                "limitBytes",
            ] {
                if let Some(v) = one(key) {
                    q.push((key, v.to_string()));
                }
            }
            let path = with_query(
                &format!("/containerLogs/{ns}/{name}/{container}"),
                &encode(&q),
            );
            logs(&app, &target, &path).await
        }
        "exec" | "attach" => {
            let container = container(&pod, name, one("container"))?;
            let flag = |key: &str| one(key).is_some_and(|v| matches!(v, "true" | "1" | "True"));
            let streams = Streams {
                stdin: flag("stdin"),
                stdout: flag("stdout"),
                stderr: flag("stderr"),
                tty: flag("tty"),
            };
            let mut q: Vec<(&str, String)> = Vec::new();
            if sub == "exec" {
                let commands: Vec<&str> = params
                    .iter()
                    .filter(|(k, _)| k == "command")
                    .map(|(_, v)| v.as_str())
                    .collect();
                if commands.is_empty() {
                    return Err(ApiError::bad_request("you must specify at least 1 command"));
                }
                for c in commands {
                    q.push(("command", c.to_string()));
                }
            }
            if !(streams.stdin || streams.stdout || streams.stderr) {
                return Err(ApiError::bad_request(
                    "you must specify at least 1 of stdin, stdout, stderr",
                ));
            }
            for (key, on) in [
                ("stdin", streams.stdin),
                ("stdout", streams.stdout),
                ("stderr", streams.stderr),
                ("tty", streams.tty),
            ] {
                if on {
                    q.push((key, "true".into()));
                }
            }
            let node = node_name(&pod).ok_or_else(|| {
                ApiError::bad_request(format!("pod {name} does not have a host assigned"))
            })?;
            check_running(&pod, name, sub)?;
            let target = node_target(&app, node).await?;
            let path = with_query(&format!("/{sub}/{ns}/{name}/{container}"), &encode(&q));
            let mode = if ws::is_websocket(&parts.headers)
                && ws::offered_protocols(&parts.headers)
                    .iter()
                    .any(|p| p == V5)
            {
                Mode::Translate(streams)
            } else {
                Mode::Splice
            };
            upgrade_or_forward(&app, &target, parts, &path, mode).await
        }
        "portforward" => {
            let node = node_name(&pod).ok_or_else(|| {
                ApiError::bad_request(format!("pod {name} does not have a host assigned"))
            })?;
            check_running(&pod, name, sub)?;
            let target = node_target(&app, node).await?;
            let mut q: Vec<(&str, String)> = Vec::new();
            for (k, v) in &params {
                if k == "ports" {
                    for p in v.split(',').filter(|p| !p.trim().is_empty()) {
                        q.push(("port", p.trim().to_string()));
                    }
                }
            }
            let path = with_query(&format!("/portForward/{ns}/{name}"), &encode(&q));
            let tunneled = ws::is_websocket(&parts.headers)
                .then(|| {
                    ws::offered_protocols(&parts.headers)
                        .into_iter()
                        .find(|p| p.starts_with("SPDY/3.1+"))
                })
                .flatten();
            let mode = match tunneled {
                Some(protocol) => Mode::Tunnel(protocol),
                None => Mode::Splice,
            };
            upgrade_or_forward(&app, &target, parts, &path, mode).await
        }
        _ => Err(ApiError::path_not_found()),
    }
}

async fn get(app: &App, plural: &str, ns: &str, name: &str) -> Result<Value> {
    let def = resources::find("", "v1", plural).ok_or_else(ApiError::path_not_found)?;
    let key = crate::storage::object_key(def, ns, name);
    app.storage
        .get(&key)
        .await?
        .ok_or_else(|| ApiError::not_found(&def.group_resource(), name))
}

fn node_name(pod: &Value) -> Option<&str> {
    pod.pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
}

fn names(pod: &Value, list: &str) -> Vec<String> {
    pod.pointer(&format!("/spec/{list}"))
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The container a request means, with upstream's errors: the only container when none
/// is named, a named one only if the pod has it (init and ephemeral ones count).
fn container(pod: &Value, pod_name: &str, asked: Option<&str>) -> Result<String> {
    let main = names(pod, "containers");
    let init = names(pod, "initContainers");
    let ephemeral = names(pod, "ephemeralContainers");
    match asked {
        None => {
            if main.len() == 1 {
                return Ok(main[0].clone());
            }
            let mut msg = format!(
                "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                main.join(" ")
            );
            if !init.is_empty() {
                msg.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init.join(" ")
                ));
            }
            Err(ApiError::bad_request(msg))
        }
        Some(c) => {
            let known = main.iter().any(|n| n == c)
                || init.iter().any(|n| n == c)
                || ephemeral.iter().any(|n| n == c);
            if known {
                Ok(c.to_string())
            } else {
                Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {pod_name}"
                )))
            }
        }
    }
}

/// Streams need a running pod; a finished one has nothing to connect to.
fn check_running(pod: &Value, name: &str, sub: &str) -> Result<()> {
    let phase = pod
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("");
    if matches!(phase, "Succeeded" | "Failed") {
        let what = if sub == "portforward" {
            "forward ports of"
        } else {
            "connect to"
        };
        return Err(ApiError::bad_request(format!(
            "cannot {what} a container in a completed pod; current phase is {phase}"
        ))
        .with_name(name));
    }
    Ok(())
}

trait WithName {
    fn with_name(self, name: &str) -> Self;
}

impl WithName for ApiError {
    fn with_name(mut self, name: &str) -> Self {
        self.details.name = Some(name.to_string());
        self.details.kind = Some("pods".into());
        self
    }
}

/// Where a node's agent listens.
pub struct Target {
    host: String,
    port: u16,
}

async fn node_target(app: &App, node: &str) -> Result<Target> {
    let obj = get(app, "nodes", "", node).await?;
    agent_address(&obj, node)
}

fn agent_address(node: &Value, name: &str) -> Result<Target> {
    let addresses = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let of = |kind: &str| {
        addresses
            .iter()
            .find(|a| a.get("type").and_then(Value::as_str) == Some(kind))
            .and_then(|a| a.get("address").and_then(Value::as_str))
            .map(str::to_string)
    };
    let host = [
        "InternalIP",
        "Hostname",
        "ExternalIP",
        "InternalDNS",
        "ExternalDNS",
    ]
    .iter()
    .find_map(|k| of(k))
    .ok_or_else(|| {
        ApiError::bad_request("no preferred addresses found; known addresses: []").with_node(name)
    })?;
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p > 0)
        .unwrap_or(DEFAULT_PORT);
    Ok(Target { host, port })
}

trait WithNode {
    fn with_node(self, name: &str) -> Self;
}

impl WithNode for ApiError {
    fn with_node(mut self, name: &str) -> Self {
        self.details.name = Some(name.to_string());
        self.details.kind = Some("nodes".into());
        self
    }
}

/// The part of a `nodes/{name}/proxy/...` path after `proxy`.
fn proxy_rest(path: &str) -> String {
    let rest = path
        .split_once("/proxy")
        .map(|(_, rest)| rest)
        .unwrap_or("");
    if rest.is_empty() {
        "/".into()
    } else {
        rest.to_string()
    }
}

fn encode(pairs: &[(&str, String)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        q.append_pair(k, v);
    }
    q.finish()
}

fn with_query(path: &str, query: &str) -> String {
    if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{query}")
    }
}

/// An agent's error answer as an API error: upstream passes the kubelet's text on with
/// its status code.
fn agent_error(code: StatusCode, body: &[u8]) -> ApiError {
    let text = String::from_utf8_lossy(body).trim().to_string();
    let (reason, message) = match code.as_u16() {
        400 => ("BadRequest", text),
        401 => ("Unauthorized", text),
        403 => ("Forbidden", text),
        404 => ("NotFound", text),
        _ => ("InternalError", format!("Internal error occurred: {text}")),
    };
    ApiError {
        code: if code.is_client_error() || code.is_server_error() {
            code.as_u16()
        } else {
            500
        },
        reason,
        message,
        details: Box::default(),
    }
}

fn dial_error(e: crate::streaming::kubelet::DialError) -> ApiError {
    ApiError::internal(e)
}

fn request(target: &Target, method: Method, path: &str) -> http::request::Builder {
    http::Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, format!("{}:{}", target.host, target.port))
}

/// GET the agent's log stream and pass it on unbuffered.
async fn logs(app: &App, target: &Target, path: &str) -> Result<Response> {
    let req = request(target, Method::GET, path)
        .body(Empty::<Bytes>::new())
        .map_err(ApiError::internal)?;
    let resp = app
        .kubelet
        .send(&target.host, target.port, req)
        .await
        .map_err(dial_error)?;
    if !resp.status().is_success() {
        let status = resp.status();
        let body = resp.into_body().collect().await.map(|b| b.to_bytes());
        return Err(agent_error(status, &body.unwrap_or_default()));
    }
    let mut out = Response::new(Body::new(resp.into_body()));
    out.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    Ok(out)
}

/// How an upgraded connection is relayed.
enum Mode {
    /// Same protocol both sides.
    Splice,
    /// WebSocket v5 to the client, SPDY v4 to the agent.
    Translate(Streams),
    /// SPDY inside WebSocket messages; the subprotocol the client chose.
    Tunnel(String),
}

/// Headers not relayed to the agent: the client's credentials are for the API server.
fn relayed(name: &header::HeaderName) -> bool {
    !matches!(
        name.as_str(),
        "host" | "authorization" | "content-length" | "transfer-encoding" | "keep-alive"
    ) && !name.as_str().starts_with("impersonate-")
}

async fn upgrade_or_forward(
    app: &App,
    target: &Target,
    mut parts: http::request::Parts,
    path: &str,
    mode: Mode,
) -> Result<Response> {
    let mut req = match &mode {
        Mode::Splice => {
            let mut b = request(target, parts.method.clone(), path);
            for (name, value) in &parts.headers {
                if relayed(name) {
                    b = b.header(name, value);
                }
            }
            b
        }
        Mode::Translate(_) => request(target, Method::POST, path)
            .header(header::CONNECTION, "Upgrade")
            .header(header::UPGRADE, "SPDY/3.1")
            .header("X-Stream-Protocol-Version", SPDY_V4),
        Mode::Tunnel(protocol) => {
            let inner = protocol.trim_start_matches("SPDY/3.1+");
            request(target, Method::POST, path)
                .header(header::CONNECTION, "Upgrade")
                .header(header::UPGRADE, "SPDY/3.1")
                .header("X-Stream-Protocol-Version", inner)
        }
    };
    // A WebSocket client must be answered with its own handshake, not the agent's.
    let client_accept = match &mode {
        Mode::Translate(_) | Mode::Tunnel(_) => Some(
            ws::accept_key(&parts.headers)
                .ok_or_else(|| ApiError::bad_request("invalid WebSocket handshake"))?,
        ),
        Mode::Splice => None,
    };
    if let Some(h) = req.headers_mut() {
        h.remove(header::CONTENT_LENGTH);
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(ApiError::internal)?;
    let mut resp = app
        .kubelet
        .send(&target.host, target.port, req)
        .await
        .map_err(dial_error)?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if !status.is_success() {
            return Err(agent_error(status, &body));
        }
        // A plain answer (nodes/proxy of an ordinary path): passed on as it is.
        let mut out = Response::new(Body::from(body));
        *out.status_mut() = status;
        copy_headers(&headers, out.headers_mut());
        return Ok(out);
    }
    let agent_side = hyper::upgrade::on(&mut resp);
    let client_side = parts
        .extensions
        .remove::<hyper::upgrade::OnUpgrade>()
        .ok_or_else(|| ApiError::bad_request("the connection cannot be upgraded"))?;
    let mut out = Response::new(Body::empty());
    *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    match (&mode, client_accept) {
        (Mode::Splice, _) | (_, None) => copy_headers(resp.headers(), out.headers_mut()),
        (Mode::Translate(_), Some(accept)) => websocket_headers(out.headers_mut(), &accept, V5),
        (Mode::Tunnel(protocol), Some(accept)) => {
            websocket_headers(out.headers_mut(), &accept, protocol)
        }
    }
    if matches!(mode, Mode::Splice) {
        // Hop headers of the agent's answer are this hop's too.
        out.headers_mut().remove(header::CONTENT_LENGTH);
    }
    tokio::spawn(async move {
        let (client, agent) = match tokio::try_join!(client_side, agent_side) {
            Ok(both) => both,
            Err(err) => {
                tracing::debug!(%err, "stream upgrade failed");
                return;
            }
        };
        match mode {
            Mode::Splice => relay::splice(client, agent).await,
            Mode::Translate(streams) => relay::remote_command(client, agent, streams).await,
            Mode::Tunnel(_) => relay::tunnel(client, agent).await,
        }
    });
    Ok(out)
}

fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        if !matches!(name.as_str(), "content-length" | "transfer-encoding") {
            to.append(name, value.clone());
        }
    }
}

fn websocket_headers(h: &mut HeaderMap, accept: &str, protocol: &str) {
    let mut set = |name: &'static str, value: &str| {
        if let Ok(v) = http::HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    };
    set("upgrade", "websocket");
    set("connection", "Upgrade");
    set("sec-websocket-accept", accept);
    set("sec-websocket-protocol", protocol);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Value {
        json!({"spec": {
            "containers": [{"name": "a"}, {"name": "b"}],
            "initContainers": [{"name": "init"}],
        }})
    }

    #[test]
    fn container_choice_and_upstream_errors() {
        let one = json!({"spec": {"containers": [{"name": "only"}]}});
        assert_eq!(container(&one, "p", None).unwrap(), "only");
        let err = container(&pod(), "p", None).unwrap_err();
        assert_eq!(
            err.message,
            "a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [init]"
        );
        assert_eq!(container(&pod(), "p", Some("b")).unwrap(), "b");
        assert_eq!(container(&pod(), "p", Some("init")).unwrap(), "init");
        let err = container(&pod(), "p", Some("x")).unwrap_err();
        assert_eq!(
            (err.code, err.message.as_str()),
            (400, "container x is not valid for pod p")
        );
    }

    #[test]
    fn agent_address_prefers_internal_ip_and_the_reported_port() {
        let node = json!({"status": {
            "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.5"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 12345}},
        }});
        let t = agent_address(&node, "n1").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("10.0.0.5", 12345));
        let bare = json!({"status": {"addresses": [{"type": "Hostname", "address": "n1"}]}});
        assert_eq!(agent_address(&bare, "n1").unwrap().port, DEFAULT_PORT);
        assert!(agent_address(&json!({}), "n1").is_err());
    }

    #[test]
    fn handled_subresources() {
        let info = |resource: &str, sub: &str| RequestInfo {
            is_resource: true,
            version: "v1".into(),
            resource: resource.into(),
            subresource: sub.into(),
            name: "x".into(),
            ..Default::default()
        };
        for (r, s) in [
            ("pods", "log"),
            ("pods", "exec"),
            ("pods", "attach"),
            ("pods", "portforward"),
            ("nodes", "proxy"),
        ] {
            assert!(handles(&info(r, s)), "{r}/{s}");
        }
        for (r, s) in [
            ("pods", "status"),
            ("pods", ""),
            ("nodes", "status"),
            ("services", "proxy"),
        ] {
            assert!(!handles(&info(r, s)), "{r}/{s}");
        }
    }

    #[test]
    fn agent_errors_keep_their_text() {
        let e = agent_error(
            StatusCode::BAD_REQUEST,
            b"previous terminated container \"c\" in pod \"p\" not found\n",
        );
        assert_eq!((e.code, e.reason), (400, "BadRequest"));
        assert_eq!(
            e.message,
            "previous terminated container \"c\" in pod \"p\" not found"
        );
        assert_eq!(agent_error(StatusCode::BAD_GATEWAY, b"x").code, 502);
    }
}
