//! Skiff's cluster store: the part that plays etcd's role.
//!
//! One [`Store`] trait with etcd's data model — a flat, ordered key space where every write
//! bumps a global revision, history is kept until it is compacted, and watches replay that
//! history — and two backends behind it:
//!
//! - [`EmbeddedStore`]: the default. Pure Rust on a single redb file; durable before it
//!   answers, with concurrent writers batched into one fsync (group commit).
//! - [`EtcdStore`]: the same trait over a real etcd cluster's v3 gRPC API, for control planes
//!   that span machines.
//!
//! What it is not: it knows nothing of Kubernetes objects. Keys and values are bytes; the
//! `/registry/...` layout lives in [`keys`] only as helpers for callers.

mod compactor;
pub mod embedded;
mod error;
pub mod etcd;
pub mod keys;
mod types;

pub use compactor::spawn_compactor;
pub use embedded::{EmbeddedOptions, EmbeddedStore};
pub use error::{Result, StoreError};
pub use etcd::{EtcdOptions, EtcdStore, EtcdTls};
pub use types::*;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

/// etcd's default `--max-request-bytes` (1.5 MiB). Both backends refuse larger writes, so a
/// cluster that works on the embedded store also works on etcd.
pub const MAX_REQUEST_BYTES: usize = 1536 * 1024;

/// A stream of changes from [`Store::watch`], in revision order, with no gaps and no
/// duplicates. It yields `Err(StoreError::Compacted { .. })` and ends when the history it
/// needs is gone; the caller then re-lists and watches again from the new revision.
pub type WatchStream = BoxStream<'static, Result<Event>>;

/// The store contract the API server is written against.
///
/// Revisions are global and grow by one for every transaction that changes at least one key
/// (all changes in one transaction share a revision, as in etcd). A revision argument of 0
/// always means "the current revision".
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Reads a key or a key range, now or at a past revision.
    ///
    /// Errors: [`StoreError::Compacted`] when `revision` is older than retained history,
    /// [`StoreError::FutureRevision`] when it is newer than the current revision.
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse>;

    /// Runs a transaction atomically: if every compare holds, the `success` ops run, else the
    /// `failure` ops. Writes of one transaction share one new revision.
    ///
    /// Errors: [`StoreError::TooLarge`] above [`MAX_REQUEST_BYTES`], [`StoreError::LeaseNotFound`]
    /// for a put attached to an unknown lease, [`StoreError::InvalidRequest`] for the same key
    /// written twice in one branch. A failed transaction changes nothing.
    ///
    /// [`StoreError::Unavailable`] means the outcome is unknown (a request to etcd may have
    /// been cut off after it was applied): re-read before retrying a non-idempotent write.
    async fn txn(&self, txn: Txn) -> Result<TxnResponse>;

    /// Streams every change to keys starting with `prefix` whose revision is greater than
    /// `from_revision` (0: changes after the current revision), each with the previous value.
    async fn watch(&self, prefix: &[u8], from_revision: i64) -> Result<WatchStream>;

    /// Grants a lease that expires `ttl_seconds` after its last keep-alive. Backends may round
    /// the TTL up to their minimum (etcd's is about 2 s); the granted TTL is returned.
    async fn lease_grant(&self, ttl_seconds: i64) -> Result<Lease>;

    /// Renews a lease for its full TTL and returns that TTL.
    /// Errors: [`StoreError::LeaseNotFound`] when it expired or was revoked.
    async fn lease_keep_alive(&self, id: i64) -> Result<i64>;

    /// Revokes a lease now: its keys are deleted (one revision, with delete events).
    /// Errors: [`StoreError::LeaseNotFound`].
    async fn lease_revoke(&self, id: i64) -> Result<()>;

    /// Discards history older than `revision`: reads and watches at revisions below it fail
    /// with [`StoreError::Compacted`] from then on. The latest value of every key is kept.
    /// Errors: `Compacted` if `revision` is not above the last compaction, `FutureRevision` if
    /// it is above the current revision.
    async fn compact(&self, revision: i64) -> Result<()>;

    /// The revision of the last change.
    async fn current_revision(&self) -> Result<i64>;

    /// Reads one key at the current revision.
    async fn get(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        Ok(self
            .range(RangeRequest::key(key))
            .await?
            .kvs
            .into_iter()
            .next())
    }

    /// Counts the keys under a prefix at the current revision.
    async fn count(&self, prefix: &[u8]) -> Result<i64> {
        Ok(self
            .range(RangeRequest::prefix(prefix).count_only())
            .await?
            .count)
    }

    /// Creates a key only if it does not exist (lease 0: none).
    async fn create(&self, key: &[u8], value: Bytes, lease: i64) -> Result<WriteOutcome> {
        let txn = Txn::new()
            .when(Compare::mod_revision(key, CompareOp::Equal, 0))
            .and_then(TxnOp::put(key, value, lease))
            .or_else(TxnOp::get(key));
        Ok(WriteOutcome::from_guarded(self.txn(txn).await?))
    }

    /// Replaces a key only if its mod revision is still `expected_mod_revision` (compare-and-swap).
    async fn update(
        &self,
        key: &[u8],
        value: Bytes,
        expected_mod_revision: i64,
        lease: i64,
    ) -> Result<WriteOutcome> {
        let txn = Txn::new()
            .when(Compare::mod_revision(
                key,
                CompareOp::Equal,
                expected_mod_revision,
            ))
            .and_then(TxnOp::put(key, value, lease))
            .or_else(TxnOp::get(key));
        Ok(WriteOutcome::from_guarded(self.txn(txn).await?))
    }

    /// Deletes a key if it exists and, when given, its mod revision is still the expected one
    /// (compare-and-delete). A missing key is a `Conflict { current: None }`.
    async fn delete(&self, key: &[u8], expected_mod_revision: Option<i64>) -> Result<WriteOutcome> {
        let guard = match expected_mod_revision {
            Some(rev) => Compare::mod_revision(key, CompareOp::Equal, rev),
            None => Compare::mod_revision(key, CompareOp::Greater, 0),
        };
        let txn = Txn::new()
            .when(guard)
            .and_then(TxnOp::delete(key))
            .or_else(TxnOp::get(key));
        Ok(WriteOutcome::from_guarded(self.txn(txn).await?))
    }
}
