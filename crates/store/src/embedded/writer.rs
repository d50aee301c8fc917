//! The single writer thread and its group commit.
//!
//! Every write goes through one thread. It takes the first waiting request, then everything
//! else already queued (up to a cap), applies them all in one redb transaction, appends the
//! batch to the write-ahead log with one `fdatasync`, commits redb without fsync, publishes
//! the changes to watchers, and only then answers each caller. Callers that arrive during
//! a sync form the next batch, so concurrency turns into bigger batches instead of more
//! syncs. redb is committed durably (a checkpoint) every so often, emptying the log. Lease
//! expiry and compaction clean-up ride along in the same commits.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};

use super::apply::{Changes, Tables};
use super::wal::{Batch, Entry, Wal};
use super::{engine_err, Shared};
use crate::{Lease, Result, StoreError, Txn, TxnResponse};

pub(crate) type Reply<T> = oneshot::Sender<Result<T>>;

pub(crate) enum Request {
    Txn(Txn, Reply<TxnResponse>),
    LeaseGrant(i64, Reply<Lease>),
    LeaseRevoke(i64, Reply<()>),
    Compact(i64, Reply<()>),
}

impl Request {
    fn size(&self) -> usize {
        match self {
            Request::Txn(txn, _) => txn.request_size(),
            _ => 0,
        }
    }

    /// The request as a log entry, and where its answer goes.
    fn split(self) -> (Entry, Pending) {
        match self {
            Request::Txn(t, r) => (Entry::Txn(t), Pending::Txn(r)),
            Request::LeaseGrant(ttl, r) => (Entry::LeaseGrant(ttl), Pending::Lease(r)),
            Request::LeaseRevoke(id, r) => (Entry::LeaseRevoke(id), Pending::Unit(r)),
            Request::Compact(rev, r) => (Entry::Compact(rev), Pending::Unit(r)),
        }
    }
}

enum Pending {
    Txn(Reply<TxnResponse>),
    Lease(Reply<Lease>),
    Unit(Reply<()>),
    /// A lease expiry: nobody waits for it.
    None,
}

/// What applying one entry produced.
pub(crate) enum Outcome {
    Txn(TxnResponse),
    Lease(Lease),
    Unit,
}

/// A change to in-memory state, made only once the batch is durable.
pub(crate) enum AfterCommit {
    ArmLease(i64, i64),
    RemoveLease(i64),
    Compacted(i64),
}

/// Applies one logged input to the tables: shared by live batches and crash replay, so
/// both produce exactly the same state. Request-level errors are checked before anything
/// is written; engine errors abort the whole batch.
pub(crate) fn apply_entry(
    tables: &mut Tables<'_>,
    entry: &Entry,
    changes: &mut Vec<Changes>,
    after: &mut Vec<AfterCommit>,
) -> Result<Outcome> {
    match entry {
        Entry::Txn(t) => {
            let (resp, c) = tables.apply_txn(t)?;
            changes.extend(c);
            Ok(Outcome::Txn(resp))
        }
        Entry::LeaseGrant(ttl) => {
            let id = tables.grant_lease(*ttl)?;
            after.push(AfterCommit::ArmLease(id, *ttl));
            Ok(Outcome::Lease(Lease { id, ttl: *ttl }))
        }
        Entry::LeaseRevoke(id) => {
            changes.extend(tables.revoke_lease(*id)?);
            after.push(AfterCommit::RemoveLease(*id));
            Ok(Outcome::Unit)
        }
        Entry::Expire(id) => {
            match tables.revoke_lease(*id) {
                Ok(c) => changes.extend(c),
                Err(StoreError::LeaseNotFound(_)) => {}
                Err(err) => return Err(err),
            }
            Ok(Outcome::Unit)
        }
        Entry::Compact(rev) => {
            tables.set_compaction(*rev)?;
            after.push(AfterCommit::Compacted(*rev));
            Ok(Outcome::Unit)
        }
    }
}

fn answer(pending: Pending, result: Result<Outcome>) {
    // A caller that gave up waiting is no error of the store's.
    match (pending, result) {
        (Pending::Txn(tx), Ok(Outcome::Txn(resp))) => drop(tx.send(Ok(resp))),
        (Pending::Lease(tx), Ok(Outcome::Lease(lease))) => drop(tx.send(Ok(lease))),
        (Pending::Unit(tx), Ok(_)) => drop(tx.send(Ok(()))),
        (Pending::Txn(tx), Err(e)) => drop(tx.send(Err(e))),
        (Pending::Lease(tx), Err(e)) => drop(tx.send(Err(e))),
        (Pending::Unit(tx), Err(e)) => drop(tx.send(Err(e))),
        (Pending::Txn(tx), Ok(_)) => {
            drop(tx.send(Err(StoreError::Engine("unexpected outcome".into()))))
        }
        (Pending::Lease(tx), Ok(_)) => {
            drop(tx.send(Err(StoreError::Engine("unexpected outcome".into()))))
        }
        (Pending::None, _) => {}
    }
}

pub(crate) struct Writer {
    pub shared: Arc<Shared>,
    pub requests: Receiver<Request>,
    pub published: watch::Sender<i64>,
    pub max_batch: usize,
    /// Whether compacted history still awaits removal.
    pub purge_pending: bool,
    pub wal: Wal,
    /// Sequence number of the last logged batch.
    pub seq: u64,
    pub last_checkpoint: Instant,
    /// A side thread flushing the data file's dirty pages ahead of a checkpoint.
    pub flusher: Option<std::thread::JoinHandle<()>>,
    pub checkpoint_interval: Duration,
    pub checkpoint_log_bytes: u64,
    /// Set when redb failed after a batch was logged: memory and log disagree, so no more
    /// writes until a restart replays the log.
    pub broken: Option<String>,
}

/// Bytes of requests folded into one commit at most: keeps a batch of large values from
/// holding tens of megabytes of dirty pages.
const MAX_BATCH_BYTES: usize = 16 << 20;
/// Revisions of compacted history removed per commit, so clean-up never stalls writes.
const PURGE_SLICE: i64 = 512;

impl Writer {
    pub fn run(mut self) {
        loop {
            let now = Instant::now();
            let wait = if self.purge_pending {
                Duration::ZERO
            } else if self.flusher.is_some() {
                // Notice soon when the pre-flush is done, even with no writes coming.
                Duration::from_millis(5)
            } else {
                self.shared
                    .leases
                    .until_next(now)
                    .unwrap_or(Duration::from_secs(1))
                    .min(Duration::from_secs(1))
            };
            let mut batch = Vec::new();
            match self.requests.recv_timeout(wait) {
                Ok(first) => batch.push(first),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            let mut bytes = batch.iter().map(Request::size).sum::<usize>();
            while batch.len() < self.max_batch && bytes < MAX_BATCH_BYTES {
                let Ok(next) = self.requests.try_recv() else {
                    break;
                };
                bytes += next.size();
                batch.push(next);
            }
            let expired = self.shared.leases.take_expired(Instant::now());
            if !batch.is_empty() || !expired.is_empty() || self.purge_pending {
                self.commit(batch, expired);
            }
            self.maybe_checkpoint();
        }
        // Closing: make redb durable so the next open has no log to replay.
        if let Some(flusher) = self.flusher.take() {
            let _ = flusher.join();
        }
        self.checkpoint();
    }

    /// Checkpoints in two steps: first a side thread fsyncs the data file (fsync flushes
    /// the inode's dirty pages, whichever descriptor asks) while this thread keeps
    /// committing batches; then the durable commit. Measured: the side flush takes ~50 ms
    /// off a checkpoint after a bulk load and little in steady state, where redb holds
    /// most changed pages itself until the durable commit writes them.
    fn maybe_checkpoint(&mut self) {
        let due = self.wal.size > self.checkpoint_log_bytes
            || self.last_checkpoint.elapsed() > self.checkpoint_interval;
        match &self.flusher {
            None if due && self.wal.size > 0 => {
                let path = self.shared.path.clone();
                let spawned = std::thread::Builder::new().name("skiff-store-flush".into()).spawn(move || {
                    if let Err(err) = std::fs::File::open(&path).and_then(|f| f.sync_data()) {
                        tracing::warn!(%err, path = %path.display(), "pre-checkpoint flush failed");
                    }
                });
                match spawned {
                    Ok(handle) => self.flusher = Some(handle),
                    // No thread: checkpoint the slow way rather than never.
                    Err(_) => self.checkpoint(),
                }
            }
            None if due => self.checkpoint(),
            Some(handle) if handle.is_finished() => {
                if let Some(handle) = self.flusher.take() {
                    let _ = handle.join();
                }
                self.checkpoint();
            }
            _ => {}
        }
    }

    fn checkpoint(&mut self) {
        if self.broken.is_some() || self.wal.size == 0 {
            self.last_checkpoint = Instant::now();
            return;
        }
        match checkpoint(&self.shared.db, &mut self.wal) {
            Ok(()) => self.last_checkpoint = Instant::now(),
            Err(err) => {
                tracing::error!(%err, "checkpoint failed; the write-ahead log keeps the data")
            }
        }
    }

    fn commit(&mut self, batch: Vec<Request>, expired: Vec<i64>) {
        let mut entries: Vec<Entry> = expired.iter().map(|id| Entry::Expire(*id)).collect();
        let mut pending: Vec<Pending> = expired.iter().map(|_| Pending::None).collect();
        for request in batch {
            let (entry, p) = request.split();
            entries.push(entry);
            pending.push(p);
        }
        if let Some(reason) = &self.broken {
            let reason = reason.clone();
            pending
                .into_iter()
                .for_each(|p| answer(p, Err(StoreError::Engine(reason.clone()))));
            return;
        }
        let mut results = Vec::with_capacity(entries.len());
        let mut after = Vec::new();
        let mut changes = Vec::new();
        let seq = self.seq + 1;
        let applied = self.apply(seq, &entries, &mut results, &mut after, &mut changes);
        let (txn, purge_more) = match applied {
            Ok(done) => done,
            Err(err) => {
                return self.fail(
                    pending,
                    &expired,
                    &format!("applying a batch to {}: {err}", self.shared.path.display()),
                )
            }
        };
        if !entries.is_empty() {
            // Durable in the log before anyone can read it or hear it is done.
            if let Err(err) = self.wal.append(seq, &entries) {
                drop(txn);
                return self.fail(pending, &expired, &format!("{err}"));
            }
            self.seq = seq;
        }
        if let Err(err) = txn.commit() {
            let reason = format!(
                "commit to {} failed after logging: {err}; restart to recover from the log",
                self.shared.path.display()
            );
            self.broken = Some(reason.clone());
            return self.fail(pending, &expired, &reason);
        }
        self.purge_pending = purge_more;
        let now = Instant::now();
        for change in after {
            match change {
                AfterCommit::ArmLease(id, ttl) => self.shared.leases.arm(id, ttl, now),
                AfterCommit::RemoveLease(id) => self.shared.leases.remove(id),
                AfterCommit::Compacted(rev) => self.shared.set_compact_revision(rev),
            }
        }
        for Changes { revision, events } in changes {
            self.shared.hub.publish(&self.published, revision, events);
        }
        // Watchers see a revision no later than its writer hears it is done.
        for (p, r) in pending.into_iter().zip(results) {
            answer(p, r);
        }
    }

    fn fail(&mut self, pending: Vec<Pending>, expired: &[i64], reason: &str) {
        tracing::error!("{reason}");
        // Expired leases stay in the file; expire them again on the next pass.
        let now = Instant::now();
        for id in expired {
            self.shared.leases.arm(*id, 0, now);
        }
        pending
            .into_iter()
            .for_each(|p| answer(p, Err(StoreError::Engine(reason.to_string()))));
    }

    /// Applies a batch to a new write transaction, not yet committed.
    fn apply(
        &mut self,
        seq: u64,
        entries: &[Entry],
        results: &mut Vec<Result<Outcome>>,
        after: &mut Vec<AfterCommit>,
        changes: &mut Vec<Changes>,
    ) -> Result<(redb::WriteTransaction, bool)> {
        let mut txn = self.shared.db.begin_write().map_err(engine_err)?;
        // The log makes the batch durable; redb catches up at checkpoints.
        txn.set_durability(redb::Durability::None)
            .map_err(engine_err)?;
        let purge_more = {
            let mut tables = Tables::open(&txn)?;
            for entry in entries {
                let result = apply_entry(&mut tables, entry, changes, after);
                if let Err(StoreError::Engine(reason)) = &result {
                    return Err(StoreError::Engine(reason.clone()));
                }
                results.push(result);
            }
            if !entries.is_empty() {
                tables.set_applied_batch(seq)?;
            }
            let more = tables.purge(PURGE_SLICE)?;
            tables.finish()?;
            more
        };
        Ok((txn, purge_more))
    }
}

/// Commits redb durably (with it, every earlier non-durable commit) and empties the log.
pub(crate) fn checkpoint(db: &redb::Database, wal: &mut Wal) -> Result<()> {
    let txn = db.begin_write().map_err(engine_err)?;
    txn.commit().map_err(engine_err)?;
    wal.reset()
}

/// Re-applies logged batches that the last durable redb state does not have yet, then
/// checkpoints. Returns the sequence number of the last batch.
pub(crate) fn replay(db: &redb::Database, wal: &mut Wal, batches: Vec<Batch>) -> Result<u64> {
    let txn = db.begin_write().map_err(engine_err)?;
    let mut last;
    {
        let mut tables = Tables::open(&txn)?;
        last = tables.applied_batch;
        for (seq, entries) in batches {
            if seq <= last {
                continue;
            }
            let (mut changes, mut after) = (Vec::new(), Vec::new());
            for entry in &entries {
                // A request that failed the first time fails the same way again: only an
                // engine error stops the replay.
                if let Err(StoreError::Engine(reason)) =
                    apply_entry(&mut tables, entry, &mut changes, &mut after)
                {
                    return Err(StoreError::Engine(reason));
                }
            }
            tables.set_applied_batch(seq)?;
            last = seq;
        }
        tables.finish()?;
    }
    txn.commit().map_err(engine_err)?;
    wal.reset()?;
    Ok(last)
}
