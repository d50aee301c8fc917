//! What a probe spec means: which handler runs, against which host and port. The
//! [`Prober`] trait is the seam the workers run probes through (a scripted fake in the
//! timing tests, [`RealProber`] in the agent).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::exec::{self, ExecRunner};
use super::http::{self, Url};
use super::{grpc, tcp, Outcome};

/// The container a probe runs against.
#[derive(Clone, Debug)]
pub struct Target {
    pub container_id: String,
    pub pod_ip: Option<String>,
    /// For named ports.
    pub container: Container,
}

#[async_trait::async_trait]
pub trait Prober: Send + Sync {
    /// Runs `probe` once against `target`, within the probe's timeout.
    async fn run(&self, probe: &Probe, target: &Target) -> Outcome;
}

/// Runs probes for real: exec through the runtime, the others over the network.
pub struct RealProber {
    exec: Arc<dyn ExecRunner>,
}

impl RealProber {
    pub fn new(exec: Arc<dyn ExecRunner>) -> Self {
        Self { exec }
    }
}

/// Upstream's default `timeoutSeconds`.
pub fn timeout_of(probe: &Probe) -> Duration {
    Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64)
}

#[async_trait::async_trait]
impl Prober for RealProber {
    async fn run(&self, probe: &Probe, target: &Target) -> Outcome {
        let timeout = timeout_of(probe);
        if let Some(e) = &probe.exec {
            let cmd = e.command.as_deref().unwrap_or(&[]);
            return exec::probe(&*self.exec, &target.container_id, cmd, timeout).await;
        }
        if let Some(h) = &probe.http_get {
            let (host, port) = match host_port(h.host.as_deref(), &h.port, target) {
                Ok(hp) => hp,
                Err(e) => return Outcome::Failure(e),
            };
            let https = h.scheme.as_deref() == Some("HTTPS");
            let url = Url::new(https, &host, port, h.path.as_deref().unwrap_or(""));
            let headers: Vec<(String, String)> = h
                .http_headers
                .iter()
                .flatten()
                .map(|hh| (hh.name.clone(), hh.value.clone()))
                .collect();
            return http::probe(&url, &headers, timeout).await;
        }
        if let Some(t) = &probe.tcp_socket {
            return match host_port(t.host.as_deref(), &t.port, target) {
                Ok((host, port)) => tcp::probe(&host, port, timeout).await,
                Err(e) => Outcome::Failure(e),
            };
        }
        if let Some(g) = &probe.grpc {
            let port = IntOrString::Int(g.port);
            return match host_port(None, &port, target) {
                Ok((host, port)) => {
                    let service = g.service.as_deref().unwrap_or("");
                    grpc::probe(&host, port, service, timeout).await
                }
                Err(e) => Outcome::Failure(e),
            };
        }
        Outcome::Failure("missing probe handler".into())
    }
}

/// The probe's host (default: the pod IP) and its port, by number or by the name of
/// one of the container's ports.
fn host_port(
    host: Option<&str>,
    port: &IntOrString,
    target: &Target,
) -> Result<(String, u16), String> {
    let host = match host.filter(|h| !h.is_empty()) {
        Some(h) => h.to_owned(),
        None => target
            .pod_ip
            .clone()
            .filter(|ip| !ip.is_empty())
            .ok_or("the pod has no IP yet")?,
    };
    Ok((host, resolve_port(port, &target.container)?))
}

pub fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    let number = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(s) => match s.parse::<i32>() {
            Ok(n) => n,
            Err(_) => container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(s.as_str()))
                .map(|p| p.container_port)
                .ok_or_else(|| {
                    format!("couldn't find port: {s} in container {:?}", container.name)
                })?,
        },
    };
    u16::try_from(number)
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| format!("invalid port number: {number}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_by_number_and_name() {
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "web", "ports": [{"name": "http", "containerPort": 8080}]
        }))
        .unwrap();
        assert_eq!(resolve_port(&IntOrString::Int(80), &c), Ok(80));
        assert_eq!(
            resolve_port(&IntOrString::String("http".into()), &c),
            Ok(8080)
        );
        assert_eq!(resolve_port(&IntOrString::String("81".into()), &c), Ok(81));
        assert_eq!(
            resolve_port(&IntOrString::String("grpc".into()), &c),
            Err("couldn't find port: grpc in container \"web\"".into())
        );
        assert_eq!(
            resolve_port(&IntOrString::Int(70000), &c),
            Err("invalid port number: 70000".into())
        );
    }
}
