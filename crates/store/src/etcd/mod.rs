//! The [`Store`](crate::Store) trait over a real etcd cluster (v3 gRPC API).
//! (Skeleton: being implemented.)

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;

use crate::{Lease, RangeRequest, RangeResponse, Result, Store, Txn, TxnResponse, WatchStream};

/// Where and how to reach etcd (kube-apiserver's `--etcd-servers`, `--etcd-cafile`,
/// `--etcd-certfile`, `--etcd-keyfile`).
#[derive(Clone, Debug)]
pub struct EtcdOptions {
    /// Client URLs of the members, e.g. `http://127.0.0.1:2379` or `https://...`.
    pub endpoints: Vec<String>,
    pub tls: Option<EtcdTls>,
    pub connect_timeout: Duration,
}

impl EtcdOptions {
    pub fn new(endpoints: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            tls: None,
            connect_timeout: Duration::from_secs(5),
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
    _client: etcd_client::Client,
}

impl EtcdStore {
    pub async fn connect(_opts: EtcdOptions) -> Result<Self> {
        unimplemented!("etcd backend")
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn range(&self, _req: RangeRequest) -> Result<RangeResponse> {
        unimplemented!()
    }
    async fn txn(&self, _txn: Txn) -> Result<TxnResponse> {
        unimplemented!()
    }
    async fn watch(&self, _prefix: &[u8], _from_revision: i64) -> Result<WatchStream> {
        unimplemented!()
    }
    async fn lease_grant(&self, _ttl_seconds: i64) -> Result<Lease> {
        unimplemented!()
    }
    async fn lease_keep_alive(&self, _id: i64) -> Result<i64> {
        unimplemented!()
    }
    async fn lease_revoke(&self, _id: i64) -> Result<()> {
        unimplemented!()
    }
    async fn compact(&self, _revision: i64) -> Result<()> {
        unimplemented!()
    }
    async fn current_revision(&self) -> Result<i64> {
        unimplemented!()
    }
}
