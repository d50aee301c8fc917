//! The single writer thread and its group commit.
//!
//! Every write goes through one thread. It takes the first waiting request, then everything
//! else already queued (up to a cap), applies them all in one redb transaction, commits with
//! one fsync, publishes the changes to watchers, and only then answers each caller. Callers
//! that arrive during an fsync form the next batch, so concurrency turns into bigger
//! batches instead of more fsyncs. Lease expiry and compaction clean-up ride along in the
//! same commits.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};

use super::apply::{Changes, Tables};
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
}

/// An answer held back until the batch is durable.
enum Answer {
    Txn(Reply<TxnResponse>, Result<TxnResponse>),
    Lease(Reply<Lease>, Result<Lease>),
    Unit(Reply<()>, Result<()>),
}

impl Answer {
    fn send(self) {
        // A caller that gave up waiting is no error of the store's.
        match self {
            Answer::Txn(tx, r) => drop(tx.send(r)),
            Answer::Lease(tx, r) => drop(tx.send(r)),
            Answer::Unit(tx, r) => drop(tx.send(r)),
        }
    }

    /// Replaces the answer with a failure of the whole batch.
    fn fail(self, reason: &str) {
        let err = || StoreError::Engine(reason.to_string());
        match self {
            Answer::Txn(tx, _) => Answer::Txn(tx, Err(err())),
            Answer::Lease(tx, _) => Answer::Lease(tx, Err(err())),
            Answer::Unit(tx, _) => Answer::Unit(tx, Err(err())),
        }
        .send()
    }
}

/// A change to in-memory state, made only once the batch is durable.
enum AfterCommit {
    ArmLease(i64, i64),
    RemoveLease(i64),
    Compacted(i64),
}

pub(crate) struct Writer {
    pub shared: Arc<Shared>,
    pub requests: Receiver<Request>,
    pub published: watch::Sender<i64>,
    pub max_batch: usize,
    /// Whether compacted history still awaits removal.
    pub purge_pending: bool,
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
                Err(RecvTimeoutError::Disconnected) => return,
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
            if batch.is_empty() && expired.is_empty() && !self.purge_pending {
                continue;
            }
            self.commit(batch, expired);
        }
    }

    fn commit(&mut self, batch: Vec<Request>, expired: Vec<i64>) {
        let mut answers = Vec::with_capacity(batch.len());
        let mut after_commit = Vec::new();
        let mut changes = Vec::new();
        let outcome = self.apply(
            batch,
            &expired,
            &mut answers,
            &mut after_commit,
            &mut changes,
        );
        let outcome = outcome.and_then(|(txn, purge_more)| {
            txn.commit().map_err(engine_err)?;
            Ok(purge_more)
        });
        match outcome {
            Ok(purge_more) => {
                self.purge_pending = purge_more;
                let now = Instant::now();
                for change in after_commit {
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
                answers.into_iter().for_each(Answer::send);
            }
            Err(err) => {
                let reason = format!("commit to {} failed: {err}", self.shared.path.display());
                tracing::error!("{reason}");
                // Expired leases stay in the file; expire them again on the next pass.
                let now = Instant::now();
                for id in expired {
                    self.shared.leases.arm(id, 0, now);
                }
                answers.into_iter().for_each(|a| a.fail(&reason));
            }
        }
    }

    /// Applies a batch to a new write transaction, not yet committed.
    fn apply(
        &mut self,
        batch: Vec<Request>,
        expired: &[i64],
        answers: &mut Vec<Answer>,
        after_commit: &mut Vec<AfterCommit>,
        changes: &mut Vec<Changes>,
    ) -> Result<(redb::WriteTransaction, bool)> {
        let txn = self.shared.db.begin_write().map_err(engine_err)?;
        let purge_more = {
            let mut tables = Tables::open(&txn)?;
            for &id in expired {
                match tables.revoke_lease(id) {
                    Ok(c) => changes.extend(c),
                    Err(StoreError::LeaseNotFound(_)) => {}
                    Err(err) => return Err(err),
                }
            }
            for request in batch {
                // Request-level errors are checked before anything is written, so they
                // answer only their caller; engine errors fail the whole batch.
                let answer = match request {
                    Request::Txn(t, reply) => {
                        let result = tables.apply_txn(&t).map(|(resp, c)| {
                            changes.extend(c);
                            resp
                        });
                        fatal(&result)?;
                        Answer::Txn(reply, result)
                    }
                    Request::LeaseGrant(ttl, reply) => {
                        let id = tables.grant_lease(ttl)?;
                        after_commit.push(AfterCommit::ArmLease(id, ttl));
                        Answer::Lease(reply, Ok(Lease { id, ttl }))
                    }
                    Request::LeaseRevoke(id, reply) => {
                        let result = tables.revoke_lease(id).map(|c| {
                            changes.extend(c);
                            after_commit.push(AfterCommit::RemoveLease(id));
                        });
                        fatal(&result)?;
                        Answer::Unit(reply, result)
                    }
                    Request::Compact(revision, reply) => {
                        let result = tables.set_compaction(revision);
                        fatal(&result)?;
                        if result.is_ok() {
                            after_commit.push(AfterCommit::Compacted(revision));
                        }
                        Answer::Unit(reply, result)
                    }
                };
                answers.push(answer);
            }
            let more = tables.purge(PURGE_SLICE)?;
            tables.finish()?;
            more
        };
        Ok((txn, purge_more))
    }
}

/// Passes engine failures up (they abort the batch); keeps request errors for the caller.
fn fatal<T>(result: &Result<T>) -> Result<()> {
    match result {
        Err(StoreError::Engine(reason)) => Err(StoreError::Engine(reason.clone())),
        _ => Ok(()),
    }
}
