//! The one error type of the runtime side: starting containerd, building and importing
//! images, writing CNI configuration.

use std::path::PathBuf;
use std::time::Duration;

use crate::connect::CriError;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("starting {binary}: {source} (is Debian's `containerd` package installed?)")]
    Spawn {
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("containerd exited during start ({status}); last lines of {log}:\n{tail}")]
    Exited {
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error(
        "containerd did not answer CRI Version on {socket} within {timeout:?} ({last}); last lines of {log}:\n{tail}"
    )]
    NotReady {
        socket: PathBuf,
        timeout: Duration,
        last: String,
        log: PathBuf,
        tail: String,
    },
    #[error("{what}: {source}")]
    Image {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("importing image archive {path} with ctr failed ({status}): {stderr}")]
    Import {
        path: PathBuf,
        status: String,
        stderr: String,
    },
    #[error(
        "{path} not found: the busybox test image is built from Debian's `busybox-static` package (apt-get install busybox-static)"
    )]
    BusyboxMissing { path: PathBuf },
    #[error("{path} is not a static busybox ({why}); install Debian's `busybox-static` package")]
    BusyboxNotStatic { path: PathBuf, why: String },
    #[error("invalid CNI network: {0}")]
    Cni(String),
    #[error(transparent)]
    Connect(#[from] CriError),
    #[error("CRI {op}: {status}")]
    Cri {
        op: &'static str,
        #[source]
        status: tonic::Status,
    },
}
