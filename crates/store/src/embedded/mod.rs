//! The default backend: an MVCC store in one redb file. (Skeleton: being implemented.)

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use crate::{Lease, RangeRequest, RangeResponse, Result, Store, Txn, TxnResponse, WatchStream};

/// Tuning of the embedded store; the defaults suit a single-node cluster.
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// redb page cache; bounds the store's memory with large data.
    pub cache_bytes: usize,
    /// Most writes folded into one commit (one fsync).
    pub max_batch: usize,
    /// Recent events kept in memory for watchers; a watcher further behind reads from disk.
    pub watch_buffer_bytes: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            cache_bytes: 64 << 20,
            max_batch: 1024,
            watch_buffer_bytes: 16 << 20,
        }
    }
}

#[derive(Clone)]
pub struct EmbeddedStore {
    path: PathBuf,
}

impl EmbeddedStore {
    /// Opens (or creates) the store file. Blocking: call before serving, or in
    /// `spawn_blocking`. Errors name the file: corrupt, truncated, locked, not a Skiff store.
    pub fn open(path: impl AsRef<Path>, _opts: EmbeddedOptions) -> Result<Self> {
        Ok(Self {
            path: path.as_ref().to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Finishes queued writes, ends watches and closes the file, so it can be reopened.
    pub async fn close(self) -> Result<()> {
        Ok(())
    }
}

#[async_trait]
impl Store for EmbeddedStore {
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
