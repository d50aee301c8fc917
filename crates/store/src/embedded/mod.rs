//! The default backend: an MVCC store in one redb file.
//!
//! Guarantees:
//! - A write is answered only after it is durable: logged and synced in the write-ahead log
//!   (`<file>-wal`), then applied to redb. Concurrent writers share one log append and one
//!   sync (group commit), so durability costs latency, not throughput; redb itself is
//!   synced at checkpoints (every second or 8 MiB of log), and the log replayed after a
//!   crash.
//! - History (for past-revision reads and watch replay) survives restarts until compacted.
//! - Memory is bounded: redb's page cache (`cache_bytes`) and a byte-bounded ring of recent
//!   events (`watch_buffer_bytes`); slower watchers replay from disk.
//!
//! Layout: `schema` (tables, opening), `codec` (record bytes), `apply` (the write state
//! machine), `wal` (write-ahead log), `writer` (group-commit thread, checkpoints, replay),
//! `read` (snapshots), `hub` + `watch` (fan-out), `leases` (expiry clock).

mod apply;
mod codec;
mod hub;
mod leases;
mod read;
mod schema;
mod wal;
mod watch;
mod writer;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redb::{Database, ReadTransaction, ReadableDatabase};
use tokio::sync::oneshot;

use crate::{
    Lease, RangeRequest, RangeResponse, Result, Store, StoreError, Txn, TxnResponse, WatchStream,
};
use hub::Hub;
use leases::LeaseClock;
use writer::{Reply, Request, Writer};

/// Tuning of the embedded store; the defaults suit a single-node cluster.
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// redb page cache; bounds the store's memory with large data.
    pub cache_bytes: usize,
    /// Most writes folded into one commit (one fsync).
    pub max_batch: usize,
    /// Recent events kept in memory for watchers; a watcher further behind reads from disk.
    pub watch_buffer_bytes: usize,
    /// Check every page's checksum when opening, so a damaged file is refused with an error
    /// instead of failing later. Costs a read of the whole file at start.
    pub verify_on_open: bool,
    /// Checkpoint (sync redb, empty the write-ahead log) after this long...
    pub checkpoint_interval: Duration,
    /// ...or once the log holds this many bytes: bounds the log and crash replay time.
    pub checkpoint_log_bytes: u64,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            cache_bytes: 64 << 20,
            max_batch: 1024,
            watch_buffer_bytes: 16 << 20,
            verify_on_open: true,
            // Measured here: a checkpoint's durable commit costs in proportion to the pages
            // changed since the last one (~10 ms per second of 1,000 writes/s, ~100 ms
            // after a bulk load), and writers wait for it; small, frequent ones keep the
            // latency tail short at a few percent of peak throughput.
            checkpoint_interval: Duration::from_secs(1),
            checkpoint_log_bytes: 8 << 20,
        }
    }
}

/// State shared by the handle, the writer thread, readers and watch tasks.
pub(crate) struct Shared {
    db: Database,
    hub: Hub,
    leases: LeaseClock,
    path: PathBuf,
    compact_revision: AtomicI64,
}

impl Shared {
    fn compact_revision(&self) -> i64 {
        self.compact_revision.load(Ordering::Acquire)
    }

    fn set_compact_revision(&self, revision: i64) {
        self.compact_revision.store(revision, Ordering::Release);
    }

    /// Engine errors name the data file, so an operator knows which file is in trouble.
    fn name_file(&self, err: StoreError) -> StoreError {
        match err {
            StoreError::Engine(reason) => StoreError::DataFile {
                path: self.path.clone(),
                reason,
            },
            other => other,
        }
    }
}

/// The embedded store. Cheap to clone; the file closes when the last clone is dropped (or
/// on [`EmbeddedStore::close`]).
#[derive(Clone)]
pub struct EmbeddedStore {
    shared: Arc<Shared>,
    handle: Arc<Handle>,
}

/// The writer's queue and thread; dropping it stops the writer after its current batch.
struct Handle {
    requests: Mutex<Option<mpsc::Sender<Request>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl EmbeddedStore {
    /// Opens (or creates) the store file. Blocking: call before serving, or in
    /// `spawn_blocking`. Errors name the file: corrupt, truncated, locked, not a Skiff store.
    pub fn open(path: impl AsRef<Path>, opts: EmbeddedOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let db = schema::open_database(&path, &opts)?;
        let (mut wal, logged) = wal::Wal::open(&wal_path(&path))?;
        let data_file = |err: StoreError| match err {
            StoreError::Engine(reason) => StoreError::DataFile {
                path: path.clone(),
                reason,
            },
            other => other,
        };
        // Batches acknowledged after the last checkpoint are in the log, not yet in redb.
        let seq = writer::replay(&db, &mut wal, logged).map_err(data_file)?;
        let (revision, compact_revision, purged, leases) = {
            let txn = db.begin_write().map_err(engine_err).map_err(data_file)?;
            let tables = apply::Tables::open(&txn).map_err(data_file)?;
            let state = (
                tables.revision,
                tables.compact_revision,
                tables.purged_revision,
                tables.leases().map_err(data_file)?,
            );
            drop(tables);
            txn.abort().map_err(engine_err).map_err(data_file)?;
            state
        };
        let clock = LeaseClock::default();
        let now = Instant::now();
        for (id, ttl) in leases {
            clock.arm(id, ttl, now);
        }
        let (hub, published) = Hub::new(revision, opts.watch_buffer_bytes);
        let shared = Arc::new(Shared {
            db,
            hub,
            leases: clock,
            path: path.clone(),
            compact_revision: AtomicI64::new(compact_revision),
        });
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            shared: shared.clone(),
            requests: rx,
            published,
            max_batch: opts.max_batch.max(1),
            purge_pending: purged < compact_revision,
            wal,
            seq,
            last_checkpoint: Instant::now(),
            flusher: None,
            checkpoint_interval: opts.checkpoint_interval,
            checkpoint_log_bytes: opts.checkpoint_log_bytes,
            broken: None,
        };
        let thread = std::thread::Builder::new()
            .name("skiff-store-writer".into())
            .spawn(move || writer.run())
            .map_err(|source| StoreError::Io {
                path: path.clone(),
                source,
            })?;
        Ok(Self {
            shared,
            handle: Arc::new(Handle {
                requests: Mutex::new(Some(tx)),
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Finishes queued writes, ends watches and closes the file, so it can be reopened.
    /// Other clones of this store stop working.
    pub async fn close(self) -> Result<()> {
        let sender = self
            .handle
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        drop(sender);
        let thread = self
            .handle
            .thread
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(thread) = thread {
            tokio::task::spawn_blocking(move || thread.join())
                .await
                .map_err(|e| StoreError::Engine(format!("writer thread: {e}")))?
                .map_err(|_| StoreError::Engine("writer thread panicked".into()))?;
        }
        // Watch tasks end once the writer is gone; wait for them to let go of the file.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Arc::strong_count(&self.shared) > 1 {
            if Instant::now() > deadline {
                return Err(StoreError::Engine(format!(
                    "{} is still in use by {} readers or watchers",
                    self.shared.path.display(),
                    Arc::strong_count(&self.shared) - 1
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }

    /// Queues a request for the writer and waits for its durable answer.
    async fn submit<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        {
            let requests = self
                .handle
                .requests
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let sender = requests.as_ref().ok_or(StoreError::Closed)?;
            sender.send(make(tx)).map_err(|_| StoreError::Closed)?;
        }
        rx.await
            .map_err(|_| StoreError::Closed)?
            .map_err(|e| self.shared.name_file(e))
    }

    /// Runs a read on a snapshot, off the async threads.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let txn = shared.db.begin_read().map_err(engine_err)?;
            f(&txn).map_err(|e| shared.name_file(e))
        })
        .await
        .map_err(|e| StoreError::Engine(format!("read task failed: {e}")))?
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse> {
        self.read(move |txn| read::range(txn, &req)).await
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        txn.validate()?;
        self.submit(|reply| Request::Txn(txn, reply)).await
    }

    async fn watch(&self, prefix: &[u8], from_revision: i64) -> Result<WatchStream> {
        Ok(watch::start(
            self.shared.clone(),
            prefix.to_vec(),
            from_revision,
        ))
    }

    async fn lease_grant(&self, ttl_seconds: i64) -> Result<Lease> {
        if ttl_seconds <= 0 {
            return Err(StoreError::InvalidRequest(format!(
                "lease TTL must be positive, got {ttl_seconds}"
            )));
        }
        self.submit(|reply| Request::LeaseGrant(ttl_seconds, reply))
            .await
    }

    async fn lease_keep_alive(&self, id: i64) -> Result<i64> {
        self.shared
            .leases
            .keep_alive(id, Instant::now())
            .ok_or(StoreError::LeaseNotFound(id))
    }

    async fn lease_revoke(&self, id: i64) -> Result<()> {
        self.submit(|reply| Request::LeaseRevoke(id, reply)).await
    }

    async fn compact(&self, revision: i64) -> Result<()> {
        self.submit(|reply| Request::Compact(revision, reply)).await
    }

    async fn current_revision(&self) -> Result<i64> {
        Ok(self.shared.hub.latest())
    }
}

/// The write-ahead log beside the store file (`state.db` → `state.db-wal`).
fn wal_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

pub(crate) fn engine_err(err: impl std::fmt::Display) -> StoreError {
    StoreError::Engine(err.to_string())
}
