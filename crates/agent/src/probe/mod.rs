//! Container probes, as the kubelet's prober: startup, liveness and readiness probes
//! (exec, httpGet, tcpSocket, grpc) run by one worker per probe, with upstream's
//! timing (initialDelaySeconds, periodSeconds, timeoutSeconds) and thresholds
//! (successThreshold, failureThreshold).
//!
//! What it is not: the reaction. The agent reads the results ([`ProbeManager::readiness`],
//! [`ProbeManager::started`], [`ProbeManager::liveness_failed`]), restarts containers,
//! writes pod status and records events (with [`ProbeManager::last_failure`] as the
//! message). The manager wakes the agent (a pod UID on the channel given to
//! [`ProbeManager::new`]) whenever a result changes.

mod exec;
mod grpc;
mod http;
mod manager;
mod runner;
mod tcp;
mod worker;

pub use exec::{CriExec, ExecError, ExecOutput, ExecRunner};
pub use http::Url as HttpUrl;
pub use manager::{ProbeEvent, ProbeManager};
pub use runner::{Prober, RealProber, Target};

/// The `User-Agent` of HTTP and gRPC probes (upstream sends `kube-probe/<major>.<minor>`).
pub const USER_AGENT: &str = "kube-probe/1.33";

/// Which probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    Startup,
    Liveness,
    Readiness,
}

impl ProbeKind {
    /// As upstream's messages name it (`Liveness probe failed: ...`).
    pub fn title(self) -> &'static str {
        match self {
            ProbeKind::Startup => "Startup",
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
        }
    }
}

/// What one probe run found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// A success that upstream reports with a warning event (e.g. an off-host redirect).
    Warning(String),
    Failure(String),
}

impl Outcome {
    pub fn is_success(&self) -> bool {
        !matches!(self, Outcome::Failure(_))
    }
}

/// A socket error as Go's dialer words it (`connect: connection refused`), so probe
/// messages read as upstream's.
pub(crate) fn dial_error(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "connect: connection refused".into(),
        HostUnreachable => "connect: no route to host".into(),
        NetworkUnreachable => "connect: network is unreachable".into(),
        TimedOut => "i/o timeout".into(),
        _ => e.to_string(),
    }
}
