//! Connecting to a CRI runtime's unix socket.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::api::image_service_client::ImageServiceClient;
use crate::api::runtime_service_client::RuntimeServiceClient;

#[derive(Debug, thiserror::Error)]
pub enum CriError {
    #[error("connecting to the container runtime at {path}: {source}")]
    Connect {
        path: String,
        #[source]
        source: tonic::transport::Error,
    },
}

/// Both CRI services over one connection. Clones share the connection.
#[derive(Clone)]
pub struct Cri {
    pub runtime: RuntimeServiceClient<Channel>,
    pub images: ImageServiceClient<Channel>,
    pub socket: PathBuf,
}

/// Connects to a CRI endpoint (`/run/containerd/containerd.sock` or
/// `unix:///run/containerd/containerd.sock`).
pub async fn connect(endpoint: &str) -> Result<Cri, CriError> {
    let path = PathBuf::from(endpoint.strip_prefix("unix://").unwrap_or(endpoint));
    // tonic needs a URI, but every connection goes to the socket below.
    let socket = path.clone();
    let channel = Endpoint::from_static("http://[::1]:1")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(socket).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await
        .map_err(|source| CriError::Connect {
            path: display(&path),
            source,
        })?;
    Ok(Cri {
        runtime: RuntimeServiceClient::new(channel.clone()),
        images: ImageServiceClient::new(channel),
        socket: path,
    })
}

fn display(p: &Path) -> String {
    p.display().to_string()
}
