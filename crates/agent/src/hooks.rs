//! Lifecycle hooks (postStart, preStop) and their handlers: exec in the container, or
//! an HTTP GET to the pod (host defaults to the pod IP).

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::runtime::Runtime;

/// Runs `handler` for container `id`; `Err` carries upstream-like text.
pub async fn run(
    runtime: &Runtime,
    handler: &LifecycleHandler,
    container: &Container,
    id: &str,
    pod_ip: Option<&str>,
    timeout: Duration,
) -> Result<(), String> {
    if let Some(exec) = &handler.exec {
        let cmd = exec.command.clone().unwrap_or_default();
        let (code, out) = runtime
            .exec_sync(id, cmd.clone(), timeout)
            .await
            .map_err(|e| e.to_string())?;
        if code != 0 {
            return Err(format!(
                "command '{}' exited with {code}: {out}",
                cmd.join(" ")
            ));
        }
        return Ok(());
    }
    if let Some(http) = &handler.http_get {
        let port = match &http.port {
            IntOrString::Int(p) => *p,
            IntOrString::String(name) => container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port)
                .ok_or_else(|| {
                    format!("port {name:?} not found in container {}", container.name)
                })?,
        };
        let host = http
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .or_else(|| pod_ip.map(str::to_string))
            .ok_or("the pod has no IP yet")?;
        let path = http.path.clone().unwrap_or_else(|| "/".into());
        let fut = http_get(&host, port, &path);
        return match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(format!("HTTP GET http://{host}:{port}{path} timed out")),
        };
    }
    if let Some(sleep) = &handler.sleep {
        tokio::time::sleep(Duration::from_secs(sleep.seconds.max(0) as u64).min(timeout)).await;
        return Ok(());
    }
    Err("no handler (exec, httpGet or sleep) given".into())
}

/// A bare HTTP/1.0 GET: success on 2xx or 3xx, as the kubelet's hook handler.
async fn http_get(host: &str, port: i32, path: &str) -> Result<(), String> {
    let url = format!("http://{host}:{port}{path}");
    let mut stream = tokio::net::TcpStream::connect((host, port as u16))
        .await
        .map_err(|e| format!("HTTP GET {url}: {e}"))?;
    let req = format!(
        "GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nUser-Agent: kube-lifecycle/1.33\r\n\r\n"
    );
    stream
        .write_all(req.as_bytes())
        .await
        .map_err(|e| format!("HTTP GET {url}: {e}"))?;
    let mut head = vec![0u8; 64];
    let n = stream
        .read(&mut head)
        .await
        .map_err(|e| format!("HTTP GET {url}: {e}"))?;
    let line = String::from_utf8_lossy(&head[..n]);
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("HTTP GET {url}: malformed response"))?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP GET {url} returned {code}"))
    }
}
