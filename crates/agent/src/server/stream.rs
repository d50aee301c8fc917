//! Exec, attach and port-forward. The runtime serves the streams itself (containerd's
//! streaming server speaks the SPDY and WebSocket remote-command and port-forward
//! protocols); the agent asks it for a one-time URL through CRI and relays the client's
//! upgrade request to that URL, then copies bytes both ways, as the kubelet's proxy does.

use std::collections::HashMap;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use skiff_cri::api::{AttachRequest, ExecRequest, PortForwardRequest};

use super::{full, lookup, Body, Failure, ServerConfig};

/// What a streaming request is for.
pub enum Target {
    Exec {
        ns: String,
        pod: String,
        container: String,
    },
    Attach {
        ns: String,
        pod: String,
        container: String,
    },
    PortForward {
        ns: String,
        pod: String,
    },
}

impl Target {
    pub fn exec(ns: &str, pod: &str, container: &str) -> Self {
        Self::Exec {
            ns: ns.into(),
            pod: pod.into(),
            container: container.into(),
        }
    }
    pub fn attach(ns: &str, pod: &str, container: &str) -> Self {
        Self::Attach {
            ns: ns.into(),
            pod: pod.into(),
            container: container.into(),
        }
    }
    pub fn port_forward(ns: &str, pod: &str) -> Self {
        Self::PortForward {
            ns: ns.into(),
            pod: pod.into(),
        }
    }
}

/// The query's flags and repeated `command` values.
struct Query {
    command: Vec<String>,
    flags: HashMap<String, bool>,
    ports: Vec<i32>,
}

impl Query {
    fn parse(query: &str) -> Result<Self, Failure> {
        let mut q = Query {
            command: Vec::new(),
            flags: HashMap::new(),
            ports: Vec::new(),
        };
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match k.as_ref() {
                "command" => q.command.push(v.into_owned()),
                "port" => {
                    let port = v
                        .parse::<u16>()
                        .ok()
                        .filter(|p| *p > 0)
                        .ok_or_else(|| Failure::bad_request(format!("invalid port {v:?}")))?;
                    q.ports.push(i32::from(port));
                }
                key @ ("stdin" | "stdout" | "stderr" | "tty" | "input" | "output") => {
                    q.flags
                        .insert(key.to_string(), matches!(v.as_ref(), "1" | "true" | "True"));
                }
                _ => {}
            }
        }
        Ok(q)
    }

    fn flag(&self, key: &str) -> bool {
        self.flags.get(key).copied().unwrap_or(false)
    }
}

/// Asks the runtime for the streaming URL that serves `target`.
async fn url(config: &ServerConfig, target: &Target, q: &Query) -> Result<String, Failure> {
    let mut rt = config.cri.runtime.clone();
    let cri_err =
        |what: &str, e: tonic::Status| Failure::internal(format!("{what}: {}", e.message()));
    let running = |i: lookup::Instance, container: &str| {
        if i.running {
            Ok(i.id)
        } else {
            Err(Failure::not_found(format!(
                "container not found ({container:?})"
            )))
        }
    };
    match target {
        Target::Exec { ns, pod, container } => {
            if q.command.is_empty() {
                return Err(Failure::bad_request("you must specify at least 1 command"));
            }
            let id = running(
                lookup::current(&config.cri, ns, pod, container).await?,
                container,
            )?;
            let resp = rt
                .exec(ExecRequest {
                    container_id: id,
                    cmd: q.command.clone(),
                    tty: q.flag("tty"),
                    stdin: q.flag("stdin") || q.flag("input"),
                    stdout: q.flag("stdout") || q.flag("output"),
                    stderr: q.flag("stderr"),
                })
                .await
                .map_err(|e| cri_err("exec", e))?;
            Ok(resp.into_inner().url)
        }
        Target::Attach { ns, pod, container } => {
            let id = running(
                lookup::current(&config.cri, ns, pod, container).await?,
                container,
            )?;
            let resp = rt
                .attach(AttachRequest {
                    container_id: id,
                    tty: q.flag("tty"),
                    stdin: q.flag("stdin") || q.flag("input"),
                    stdout: q.flag("stdout") || q.flag("output"),
                    stderr: q.flag("stderr"),
                })
                .await
                .map_err(|e| cri_err("attach", e))?;
            Ok(resp.into_inner().url)
        }
        Target::PortForward { ns, pod } => {
            let sandbox = lookup::sandbox(&config.cri, ns, pod).await?;
            let resp = rt
                .port_forward(PortForwardRequest {
                    pod_sandbox_id: sandbox,
                    port: q.ports.clone(),
                })
                .await
                .map_err(|e| cri_err("port-forward", e))?;
            Ok(resp.into_inner().url)
        }
    }
}

/// Headers that belong to one hop and are not relayed (the upgrade ones are: the
/// runtime must see them to switch protocols).
fn relayed(name: &header::HeaderName) -> bool {
    !matches!(
        name.as_str(),
        "host" | "authorization" | "content-length" | "transfer-encoding" | "keep-alive"
    )
}

pub async fn serve(
    config: &ServerConfig,
    target: Target,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, Failure> {
    let q = Query::parse(req.uri().query().unwrap_or(""))?;
    let url = url(config, &target, &q).await?;
    let uri: http::Uri = url
        .parse()
        .map_err(|e| Failure::internal(format!("the runtime's streaming URL {url:?}: {e}")))?;
    let authority = uri
        .authority()
        .map(|a| a.to_string())
        .ok_or_else(|| Failure::internal(format!("streaming URL {url:?} has no address")))?;
    if uri.scheme_str() != Some("http") {
        return Err(Failure::internal(format!(
            "streaming URL {url:?}: only plain HTTP on the node is supported"
        )));
    }
    let tcp = tokio::net::TcpStream::connect(&authority)
        .await
        .map_err(|e| {
            Failure::internal(format!(
                "connecting to the runtime's streams at {authority}: {e}"
            ))
        })?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| Failure::internal(format!("streaming server handshake: {e}")))?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let mut upstream = Request::builder()
        .method(req.method().clone())
        .uri(path)
        .header(header::HOST, &authority);
    for (name, value) in req.headers() {
        if relayed(name) {
            upstream = upstream.header(name, value);
        }
    }
    let upstream = upstream
        .body(Empty::<Bytes>::new())
        .map_err(|e| Failure::internal(format!("building the streaming request: {e}")))?;
    let mut resp = sender
        .send_request(upstream)
        .await
        .map_err(|e| Failure::internal(format!("streaming request: {e}")))?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        // The runtime refused (bad protocol, expired URL): pass its answer on.
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let mut out = Response::new(full(body));
        *out.status_mut() = status;
        if let Some(ct) = headers.get(header::CONTENT_TYPE) {
            out.headers_mut().insert(header::CONTENT_TYPE, ct.clone());
        }
        return Ok(out);
    }
    let client_side = hyper::upgrade::on(&mut req);
    let runtime_side = hyper::upgrade::on(&mut resp);
    let mut out = Response::new(full(Bytes::new()));
    *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for (name, value) in resp.headers() {
        out.headers_mut().append(name, value.clone());
    }
    tokio::spawn(async move {
        let (client, runtime) = match tokio::try_join!(client_side, runtime_side) {
            Ok(both) => both,
            Err(err) => {
                tracing::debug!(%err, "stream upgrade failed");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut runtime = TokioIo::new(runtime);
        let _ = tokio::io::copy_bidirectional(&mut client, &mut runtime).await;
    });
    Ok(out)
}
