//! The [`Store`](crate::Store) trait over a real etcd cluster (v3 gRPC API).
//!
//! One client balances requests over every endpoint, so losing a member costs the requests
//! that were in flight on it, not the store. Reads are retried briefly on such failures;
//! writes are not, because a write cut off mid-flight may have been applied.

mod convert;
mod watch;

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use etcd_client as ec;

use crate::{
    Lease, RangeRequest, RangeResponse, Result, Store, StoreError, Txn, TxnResponse, WatchStream,
};
use convert::ErrorContext;

/// Where and how to reach etcd (kube-apiserver's `--etcd-servers`, `--etcd-cafile`,
/// `--etcd-certfile`, `--etcd-keyfile`).
#[derive(Clone, Debug)]
pub struct EtcdOptions {
    /// Client URLs of the members, e.g. `http://127.0.0.1:2379` or `https://...`.
    pub endpoints: Vec<String>,
    pub tls: Option<EtcdTls>,
    /// How long [`EtcdStore::connect`] waits for the first answer from any member.
    pub connect_timeout: Duration,
    /// Upper bound on one unary request (not on a watch), so a call against a cluster
    /// without quorum fails instead of hanging.
    pub request_timeout: Duration,
}

impl EtcdOptions {
    pub fn new(endpoints: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            tls: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
        }
    }
}

/// TLS to etcd: the CA that signed the members' certificates and, for client-certificate
/// auth, this client's certificate and key. All PEM files.
#[derive(Clone, Debug)]
pub struct EtcdTls {
    pub ca_file: PathBuf,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

pub struct EtcdStore {
    client: ec::Client,
    request_timeout: Duration,
}

/// How long a read keeps retrying after transient failures (a member dying under it).
const READ_RETRY_WINDOW: Duration = Duration::from_secs(3);
/// How long a write keeps retrying when it could not reach any member.
const WRITE_RETRY_WINDOW: Duration = Duration::from_secs(3);

impl EtcdStore {
    /// Connects to the cluster and waits until some member answers, so a wrong address or
    /// a refused certificate is reported here rather than on the first request.
    pub async fn connect(opts: EtcdOptions) -> Result<Self> {
        if opts.endpoints.is_empty() {
            return Err(StoreError::InvalidRequest(
                "no etcd endpoints given".to_string(),
            ));
        }
        let mut connect = ec::ConnectOptions::new()
            .with_connect_timeout(opts.connect_timeout)
            .with_timeout(opts.request_timeout)
            // Detects a silently dead member (no RST, e.g. a partition) on open watches.
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3))
            // A member cut off from the quorum answers "no leader" instead of serving stale
            // reads or holding a watch open that will never deliver.
            .with_require_leader(true);
        if let Some(tls) = &opts.tls {
            connect = connect.with_tls(tls_options(tls)?);
        }
        let endpoints = opts.endpoints.join(", ");
        let client = ec::Client::connect(&opts.endpoints, Some(connect))
            .await
            .map_err(|e| {
                StoreError::Unavailable(format!("etcd at {endpoints}: bad client settings: {e}"))
            })?;
        let store = Self {
            client,
            request_timeout: opts.request_timeout,
        };
        // The channel connects lazily: one request proves a member is reachable and, with
        // TLS, that it accepted our certificate. Unreachable members make the balancer wait
        // rather than fail, so bound it by the connect timeout.
        let hint = match &opts.tls {
            Some(tls) if tls.cert_file.is_none() => {
                " (TLS without a client certificate: members that require one close the \
                 connection)"
            }
            Some(_) => " (check the TLS files: CA, client certificate and key)",
            None => "",
        };
        match tokio::time::timeout(opts.connect_timeout, store.probe()).await {
            Ok(Ok(_)) => Ok(store),
            Ok(Err(StoreError::Unavailable(why))) => Err(StoreError::Unavailable(format!(
                "could not reach etcd at {endpoints}: {why}{hint}"
            ))),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(StoreError::Unavailable(format!(
                "could not reach etcd at {endpoints}: no member answered within {:?}{hint}",
                opts.connect_timeout
            ))),
        }
    }

    /// A cheap linearizable request; its header carries the current revision.
    async fn probe(&self) -> Result<i64> {
        let resp = self
            .client
            .kv_client()
            .get(vec![0], Some(ec::GetOptions::new().with_count_only()))
            .await
            .map_err(|e| convert::error(e, ErrorContext::default()))?;
        Ok(resp.header().map_or(0, |h| h.revision()))
    }

    /// Runs an idempotent read, retrying transient failures for a short while.
    async fn read<T, F, Fut>(&self, mut call: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let deadline = tokio::time::Instant::now() + READ_RETRY_WINDOW;
        let mut pause = Duration::from_millis(50);
        loop {
            match call().await {
                Err(StoreError::Unavailable(_)) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                other => return other,
            }
        }
    }

    /// Runs a call that may change state. It is retried only when it failed while
    /// connecting (it never reached etcd): the balancer keeps handing requests to a dead
    /// member's endpoint now and then, and those must not surface as failures. A call cut
    /// off after it was sent is not retried: it may have been applied.
    async fn write<T, F, Fut>(&self, ctx: ErrorContext, mut call: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, ec::Error>>,
    {
        let deadline = tokio::time::Instant::now() + WRITE_RETRY_WINDOW;
        let mut pause = Duration::from_millis(20);
        loop {
            match call().await {
                Err(e) if convert::never_sent(&e) && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                other => return other.map_err(|e| convert::error(e, ctx)),
            }
        }
    }

    /// Fills in the current revision of a `FutureRevision` error, which etcd does not give.
    async fn with_current(&self, err: StoreError) -> StoreError {
        match err {
            StoreError::FutureRevision { revision, .. } => StoreError::FutureRevision {
                revision,
                current: self.probe().await.unwrap_or(0),
            },
            other => other,
        }
    }
}

fn read_pem(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn tls_options(tls: &EtcdTls) -> Result<ec::TlsOptions> {
    let mut opts =
        ec::TlsOptions::new().ca_certificate(ec::Certificate::from_pem(read_pem(&tls.ca_file)?));
    match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            opts = opts.identity(ec::Identity::from_pem(read_pem(cert)?, read_pem(key)?));
        }
        (None, None) => {}
        _ => {
            return Err(StoreError::InvalidRequest(
                "etcd TLS: a client certificate needs its key and a key needs its certificate"
                    .to_string(),
            ))
        }
    }
    Ok(opts)
}

#[async_trait]
impl Store for EtcdStore {
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse> {
        let result = self
            .read(|| {
                let req = req.clone();
                let mut kv = self.client.kv_client();
                async move {
                    let mut opts = ec::GetOptions::new()
                        .with_limit(req.limit)
                        .with_revision(req.revision);
                    if !req.range_end.is_empty() {
                        opts = opts.with_range(req.range_end.clone());
                    }
                    if req.count_only {
                        opts = opts.with_count_only();
                    }
                    let key = convert::range_start(&req.key, &req.range_end);
                    kv.get(key, Some(opts))
                        .await
                        .map_err(|e| convert::error(e, ErrorContext::revision(req.revision)))
                }
            })
            .await;
        let resp = match result {
            Ok(resp) => resp,
            Err(e) => return Err(self.with_current(e).await),
        };
        Ok(RangeResponse {
            kvs: resp.kvs().iter().map(convert::key_value).collect(),
            more: resp.more(),
            count: resp.count(),
            revision: resp.header().map_or(0, |h| h.revision()),
        })
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        txn.validate()?;
        let request = convert::txn(&txn);
        let ctx = ErrorContext::lease(convert::first_lease(&txn));
        let resp = self
            .write(ctx, || {
                let request = request.clone();
                let mut kv = self.client.kv_client();
                async move { kv.txn(request).await }
            })
            .await?;
        Ok(convert::txn_response(&resp))
    }

    async fn watch(&self, prefix: &[u8], from_revision: i64) -> Result<WatchStream> {
        watch::start(self.client.watch_client(), prefix.to_vec(), from_revision).await
    }

    async fn lease_grant(&self, ttl_seconds: i64) -> Result<Lease> {
        let resp = self
            .write(ErrorContext::default(), || {
                let mut leases = self.client.lease_client();
                async move { leases.grant(ttl_seconds, None).await }
            })
            .await?;
        if !resp.error().is_empty() {
            return Err(StoreError::InvalidRequest(format!(
                "etcd refused a lease of {ttl_seconds}s: {}",
                resp.error()
            )));
        }
        Ok(Lease {
            id: resp.id(),
            ttl: resp.ttl(),
        })
    }

    async fn lease_keep_alive(&self, id: i64) -> Result<i64> {
        // One renewal over a short-lived keep-alive stream; the library checks the answered
        // TTL (<= 0: not found) but drops it, so the granted TTL is read back after. Renewing
        // twice is harmless, so this retries like a read.
        let resp = self
            .read(|| {
                let mut leases = self.client.lease_client();
                let limit = self.request_timeout;
                async move {
                    let renew = async {
                        let (_keeper, _stream) = leases.keep_alive(id).await?;
                        leases.time_to_live(id, None).await
                    };
                    tokio::time::timeout(limit, renew)
                        .await
                        .map_err(|_| {
                            StoreError::Unavailable(format!(
                                "etcd did not answer a keep-alive for lease {id} within {limit:?}"
                            ))
                        })?
                        .map_err(|e| convert::error(e, ErrorContext::lease(id)))
                }
            })
            .await?;
        if resp.ttl() <= 0 {
            return Err(StoreError::LeaseNotFound(id));
        }
        Ok(resp.granted_ttl())
    }

    async fn lease_revoke(&self, id: i64) -> Result<()> {
        self.write(ErrorContext::lease(id), || {
            let mut leases = self.client.lease_client();
            async move { leases.revoke(id).await }
        })
        .await?;
        Ok(())
    }

    async fn compact(&self, revision: i64) -> Result<()> {
        let result = self
            .write(ErrorContext::revision(revision), || {
                let mut kv = self.client.kv_client();
                async move { kv.compact(revision, None).await }
            })
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => Err(self.with_current(e).await),
        }
    }

    async fn current_revision(&self) -> Result<i64> {
        self.read(|| self.probe()).await
    }
}
