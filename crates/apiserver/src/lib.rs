//! Skiff's Kubernetes API server: the only component that touches the store. HTTPS REST
//! and watch for every built-in resource and for custom resources defined by
//! CustomResourceDefinitions (`crd`), discovery, tables for kubectl, JSON/merge/
//! strategic patches, client-certificate and token authentication, a pluggable
//! authorizer, namespace-lifecycle admission, and a watch cache fed by one store watch.
//!
//! What it is not: it runs no workload control loops (those are clients of it, in other
//! crates); the only loop inside is the CRD controller, which decides what the server
//! itself serves.

pub mod admission;
mod admission_node;
pub mod audit;
pub mod auth;
mod bootstrap;
mod crd;
mod discovery;
pub mod encryption;
mod handlers;
mod http;
pub mod ipalloc;
mod lifecycle;
mod metrics;
mod openapi;
mod patch;
pub mod pki;
mod request_info;
pub mod resources;
mod router;
mod sa_admission;
mod server;
mod ssa;
pub mod storage;
mod streaming;
mod table;
mod watchcache;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use skiff_store::Store;

pub use ipalloc::Cidr;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("store: {0}")]
    Store(#[from] skiff_store::StoreError),
    #[error(
        "cannot listen on {addr} (is another server running? choose another --https-listen-port)"
    )]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

impl ServerError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// `skiff server` settings (k3s's flag names where k3s has one).
#[derive(Clone, Debug)]
pub struct Config {
    pub data_dir: PathBuf,
    pub bind_address: IpAddr,
    pub https_port: u16,
    /// etcd client URLs; the embedded store when empty.
    pub datastore_endpoints: Vec<String>,
    pub datastore_tls: Option<skiff_store::EtcdTls>,
    pub service_cidr: Cidr,
    pub cluster_domain: String,
    pub token_auth_file: Option<PathBuf>,
    /// Extra names and addresses for the serving certificate.
    pub tls_sans: Vec<String>,
    /// Most non-watch requests served at once; beyond it, 429 with Retry-After.
    pub max_inflight: usize,
    /// Tolerations for the node lifecycle taints that pods get by default.
    pub default_toleration_seconds: admission::DefaultTolerationSeconds,
    /// EncryptionConfiguration for resources at rest (`--encryption-provider-config`).
    pub encryption_provider_config: Option<PathBuf>,
    /// Audit policy (`--audit-policy-file`) and where events go; no audit log without both.
    pub audit_policy_file: Option<PathBuf>,
    pub audit_log: Option<audit::LogOptions>,
    /// `--authorization-mode`: the authorizers asked in order (`Node,RBAC` by default).
    pub authorization_modes: Vec<auth::Mode>,
    /// `iss` of service account tokens (`--service-account-issuer`); upstream's in-cluster
    /// URL when not set.
    pub service_account_issuer: Option<String>,
    /// Audiences tokens must name (`--api-audiences`); the issuer when empty.
    pub api_audiences: Vec<String>,
}

impl Config {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            bind_address: IpAddr::from([0, 0, 0, 0]),
            https_port: 6443,
            datastore_endpoints: Vec::new(),
            datastore_tls: None,
            service_cidr: "10.43.0.0/16"
                .parse()
                .expect("default service CIDR is valid"),
            cluster_domain: "cluster.local".into(),
            token_auth_file: None,
            tls_sans: Vec::new(),
            max_inflight: 600,
            default_toleration_seconds: Default::default(),
            encryption_provider_config: None,
            audit_policy_file: None,
            audit_log: None,
            authorization_modes: auth::chain::default_modes(),
            service_account_issuer: None,
            api_audiences: Vec::new(),
        }
    }
}

/// Shared state of a running server.
pub struct App {
    pub config: Config,
    pub storage: storage::Storage,
    pub cache: Arc<watchcache::WatchCache>,
    pub authn: auth::Authenticator,
    pub authz: Box<dyn auth::Authorizer>,
    pub audit: Option<audit::Auditor>,
    /// RBAC's in-memory policy and the Node authorizer's graph (also used by escalation
    /// checks and SelfSubjectRulesReview).
    pub rbac: Arc<auth::Rbac>,
    pub node_authz: Arc<auth::NodeAuthorizer>,
    pub metrics: metrics::Metrics,
    pub inflight: tokio::sync::Semaphore,
    pub server_address: String,
    pub bootstrapped: std::sync::atomic::AtomicBool,
    /// Custom resources served from CRDs (consulted after the static resource table).
    pub crds: crd::Registry,
    /// The cluster CA certificate (PEM), served at `/cacerts`.
    pub ca_cert_pem: String,
    /// Connections to node agents (logs, exec, attach, port-forward, nodes/proxy).
    pub kubelet: streaming::kubelet::KubeletClient,
}

impl App {
    /// Whether `/readyz` is ok: the watch cache is filled and the bootstrap objects exist.
    pub fn is_ready(&self) -> bool {
        self.cache.is_ready()
            && self.bootstrapped.load(std::sync::atomic::Ordering::Acquire)
            && self.crds.is_synced()
    }

    /// The resource served at `group/version` `plural`: built-in, else from a CRD.
    pub fn resource(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<&'static resources::ResourceDef> {
        resources::find(group, version, plural).or_else(|| self.crds.find(group, version, plural))
    }

    /// Every served resource: the built-in table, then the custom resources.
    pub fn resources(&self) -> Vec<&'static resources::ResourceDef> {
        let mut all: Vec<&'static resources::ResourceDef> = resources::RESOURCES.iter().collect();
        all.extend(self.crds.all());
        all
    }
}

/// A started server.
pub struct Running {
    pub address: SocketAddr,
    pub kubeconfig: PathBuf,
    pub pki: pki::Pki,
    pub app: Arc<App>,
}

/// Starts a server in `data_dir` on a free loopback port and waits until it is ready:
/// what in-process integration tests of the server's clients (scheduler, controllers,
/// simulated nodes) start.
pub async fn start_local(data_dir: &Path) -> Result<Running, ServerError> {
    let mut config = Config::new(data_dir);
    config.bind_address = IpAddr::from([127, 0, 0, 1]);
    config.https_port = 0;
    let running = start(config).await?;
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    while !running.app.is_ready() {
        if Instant::now() > deadline {
            return Err(ServerError::Config(
                "the API server was not ready within 30 s".into(),
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    Ok(running)
}

/// Opens the store the configuration names, behind encryption at rest when configured.
pub async fn open_store(config: &Config) -> Result<storage::Storage, ServerError> {
    let store = open_backend(config).await?;
    let Some(path) = &config.encryption_provider_config else {
        return Ok(storage::Storage {
            store,
            encryption: None,
        });
    };
    let group_of: encryption::GroupOf =
        Arc::new(|plural: &str| resources::by_storage(plural).map(|d| d.group.to_string()));
    let encrypted = Arc::new(
        encryption::EncryptedStore::from_file(store, path, group_of)
            .map_err(ServerError::Config)?,
    );
    Ok(storage::Storage {
        store: encrypted.clone(),
        encryption: Some(encrypted),
    })
}

async fn open_backend(config: &Config) -> Result<Arc<dyn Store>, ServerError> {
    if config.datastore_endpoints.is_empty() {
        let path = config.data_dir.join("server").join("db").join("state.db");
        let store = tokio::task::spawn_blocking(move || {
            skiff_store::EmbeddedStore::open(path, Default::default())
        })
        .await
        .map_err(|e| ServerError::Config(format!("opening the store: {e}")))??;
        Ok(Arc::new(store))
    } else {
        let mut opts = skiff_store::EtcdOptions::new(config.datastore_endpoints.clone());
        opts.tls = config.datastore_tls.clone();
        Ok(Arc::new(skiff_store::EtcdStore::connect(opts).await?))
    }
}

/// Starts the API server: TLS material, store, watch cache, bootstrap objects, listener.
/// Returns once it is listening; `/readyz` turns ok when the cache and bootstrap are done.
pub async fn start(config: Config) -> Result<Running, ServerError> {
    let started = Instant::now();
    // rustls needs one process-wide crypto provider; a second install is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tls_dir = config.data_dir.join("server").join("tls");
    let sans = pki::default_sans(
        Some(IpAddr::V4(config.service_cidr.nth(1))),
        &config.cluster_domain,
        &config.tls_sans,
    );
    let pki = {
        let dir = tls_dir.clone();
        tokio::task::spawn_blocking(move || pki::ensure(&dir, &sans))
            .await
            .map_err(|e| ServerError::Tls(e.to_string()))??
    };
    let storage = open_store(&config).await?;
    let store = storage.store.clone();
    let addr = SocketAddr::new(config.bind_address, config.https_port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })?;
    let address = listener
        .local_addr()
        .map_err(|source| ServerError::Bind { addr, source })?;
    let loopback = if config.bind_address.is_unspecified() || config.bind_address.is_loopback() {
        format!("127.0.0.1:{}", address.port())
    } else {
        address.to_string()
    };
    let kubeconfig = config.data_dir.join("kubeconfig.yaml");
    pki.write_admin_kubeconfig(&kubeconfig, &format!("https://{loopback}"))?;
    let tokens = match &config.token_auth_file {
        Some(path) => auth::TokenFile::load(path)?,
        None => auth::TokenFile::default(),
    };
    let auditor = match (&config.audit_policy_file, &config.audit_log) {
        (Some(policy), Some(log)) => {
            Some(audit::Auditor::start(policy, log.clone()).map_err(ServerError::Config)?)
        }
        _ => None,
    };
    let service_accounts = {
        let dir = tls_dir.clone();
        let key = tokio::task::spawn_blocking(move || auth::sa_token::SigningKey::ensure(&dir))
            .await
            .map_err(|e| ServerError::Tls(e.to_string()))??;
        let issuer = config
            .service_account_issuer
            .clone()
            .unwrap_or_else(|| auth::sa_token::default_issuer(&config.cluster_domain));
        let audiences = if config.api_audiences.is_empty() {
            vec![issuer.clone()]
        } else {
            config.api_audiences.clone()
        };
        auth::ServiceAccountTokens {
            key,
            issuer,
            audiences,
        }
    };
    let cache = watchcache::WatchCache::new(store.clone());
    let rbac = auth::Rbac::new();
    let node_authz = auth::NodeAuthorizer::new();
    rbac.spawn_feed(cache.clone());
    node_authz.spawn_feed(cache.clone());
    let authz = auth::Chain {
        modes: config.authorization_modes.clone(),
        node: node_authz.clone(),
        rbac: rbac.clone(),
    };
    let kubelet = streaming::kubelet::KubeletClient::new(&pki)?;
    let app = Arc::new(App {
        kubelet,
        inflight: tokio::sync::Semaphore::new(config.max_inflight),
        config,
        storage,
        cache: cache.clone(),
        authn: auth::Authenticator {
            tokens,
            service_accounts: Some(service_accounts),
            bootstrap_tokens: true,
        },
        audit: auditor,
        authz: Box::new(authz),
        rbac,
        node_authz,
        metrics: metrics::Metrics::default(),
        server_address: loopback,
        bootstrapped: std::sync::atomic::AtomicBool::new(false),
        crds: crd::Registry::default(),
        ca_cert_pem: pki.ca_cert_pem.clone(),
    });
    tokio::spawn(cache.run());
    // As kube-apiserver does: keep five minutes of history for watches and old reads.
    skiff_store::spawn_compactor(
        app.storage.store.clone(),
        std::time::Duration::from_secs(300),
    );
    tokio::spawn(bootstrap::run(app.clone()));
    tokio::spawn(crd::controller::run(app.clone()));
    let tls = server::tls_config(&pki)?;
    tokio::spawn(server::serve(listener, tls, router::router(app.clone())));
    tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, %address, "API server listening");
    Ok(Running {
        address,
        kubeconfig,
        pki,
        app,
    })
}
