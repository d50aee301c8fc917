//! Kubernetes clients for Skiff's components.

use std::path::Path;

/// Reading a kubeconfig or building a client from it failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("reading kubeconfig {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("kubeconfig {path}: {source}")]
    Config {
        path: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("building a client from {path}: {source}")]
    Client {
        path: String,
        #[source]
        source: kube::Error,
    },
}

/// A client for the cluster a kubeconfig file names (its current context).
pub async fn from_kubeconfig_file(path: &Path) -> Result<kube::Client, ClientError> {
    // rustls needs one process-wide crypto provider; a second install is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let shown = path.display().to_string();
    let kubeconfig =
        kube::config::Kubeconfig::read_from(path).map_err(|source| ClientError::Read {
            path: shown.clone(),
            source,
        })?;
    from_kubeconfig(kubeconfig, &shown).await
}

/// A client from kubeconfig YAML held in memory (`what` names it in errors).
pub async fn from_kubeconfig_yaml(yaml: &str, what: &str) -> Result<kube::Client, ClientError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kubeconfig =
        kube::config::Kubeconfig::from_yaml(yaml).map_err(|source| ClientError::Read {
            path: what.to_string(),
            source,
        })?;
    from_kubeconfig(kubeconfig, what).await
}

async fn from_kubeconfig(
    kubeconfig: kube::config::Kubeconfig,
    what: &str,
) -> Result<kube::Client, ClientError> {
    let mut config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .map_err(|source| ClientError::Config {
        path: what.to_string(),
        source,
    })?;
    // Control loops make many small requests; the default 295 s read timeout is only
    // wrong for watches, which kube sets per request.
    config.read_timeout = Some(std::time::Duration::from_secs(60));
    // Loops retry through their work queues with backoff; the client's own retry of
    // 429s would hide answers that mean "not now" (a PodDisruptionBudget refusing an
    // eviction) for minutes.
    config.default_retry = false;
    kube::Client::try_from(config).map_err(|source| ClientError::Client {
        path: what.to_string(),
        source,
    })
}
