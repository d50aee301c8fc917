//! Applying writes inside one redb write transaction: the state machine of the store.
//! Callers (the writer thread) decide batching and durability; this module only changes
//! tables, and checks every request-level error before it changes anything, so a refused
//! request leaves the batch it was in untouched.

use bytes::Bytes;
use redb::{ReadableTable, Table, WriteTransaction};

use super::codec::{self, LogEntry, Version};
use super::engine_err;
use super::schema::{self, LATEST, LEASES, LEASE_KEYS, LOG, META, VERSIONS};
use crate::{Event, EventKind, KeyValue, Result, StoreError, Txn, TxnOp, TxnOpResult, TxnResponse};

/// The tables of one write transaction plus the revision counter as the batch sees it.
pub(crate) struct Tables<'txn> {
    meta: Table<'txn, &'static str, i64>,
    latest: Table<'txn, &'static [u8], &'static [u8]>,
    versions: Table<'txn, (&'static [u8], i64), &'static [u8]>,
    log: Table<'txn, i64, &'static [u8]>,
    leases: Table<'txn, i64, i64>,
    lease_keys: Table<'txn, (i64, &'static [u8]), ()>,
    pub revision: i64,
    pub compact_revision: i64,
    /// History up to here is physically gone (trails `compact_revision`).
    pub purged_revision: i64,
    /// Sequence number of the last write-ahead-log batch applied here.
    pub applied_batch: u64,
}

/// What one revision changed, for watchers.
pub(crate) struct Changes {
    pub revision: i64,
    pub events: Vec<Event>,
}

impl<'txn> Tables<'txn> {
    pub fn open(txn: &'txn WriteTransaction) -> Result<Self> {
        let meta = txn.open_table(META).map_err(engine_err)?;
        let revision = schema::meta_value(&meta, schema::REVISION)?;
        let compact_revision = schema::meta_value(&meta, schema::COMPACT_REVISION)?;
        let purged_revision = schema::meta_value(&meta, schema::PURGED_REVISION)?;
        let applied_batch = meta
            .get(schema::APPLIED_BATCH)
            .map_err(engine_err)?
            .map_or(0, |v| v.value()) as u64;
        Ok(Self {
            meta,
            latest: txn.open_table(LATEST).map_err(engine_err)?,
            versions: txn.open_table(VERSIONS).map_err(engine_err)?,
            log: txn.open_table(LOG).map_err(engine_err)?,
            leases: txn.open_table(LEASES).map_err(engine_err)?,
            lease_keys: txn.open_table(LEASE_KEYS).map_err(engine_err)?,
            revision,
            compact_revision,
            purged_revision,
            applied_batch,
        })
    }

    pub fn set_applied_batch(&mut self, seq: u64) -> Result<()> {
        self.meta
            .insert(schema::APPLIED_BATCH, seq as i64)
            .map_err(engine_err)?;
        self.applied_batch = seq;
        Ok(())
    }

    /// Writes the revision counter back; call once before committing the batch.
    pub fn finish(&mut self) -> Result<()> {
        self.meta
            .insert(schema::REVISION, self.revision)
            .map_err(engine_err)?;
        Ok(())
    }

    fn latest(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        let Some(guard) = self.latest.get(key).map_err(engine_err)? else {
            return Ok(None);
        };
        match codec::decode_version(key, guard.value()) {
            Some(Version::Put(kv)) => Ok(Some(kv)),
            _ => Err(corrupt("latest", key)),
        }
    }

    fn lease_exists(&self, id: i64) -> Result<bool> {
        Ok(self.leases.get(id).map_err(engine_err)?.is_some())
    }

    /// Runs a transaction at the next revision (if it writes anything).
    pub fn apply_txn(&mut self, txn: &Txn) -> Result<(TxnResponse, Option<Changes>)> {
        let mut succeeded = true;
        for compare in &txn.compares {
            if !compare.holds(self.latest(&compare.key)?.as_ref()) {
                succeeded = false;
                break;
            }
        }
        let ops = if succeeded {
            &txn.success
        } else {
            &txn.failure
        };
        for op in ops {
            if let TxnOp::Put { lease, .. } = op {
                if *lease != 0 && !self.lease_exists(*lease)? {
                    return Err(StoreError::LeaseNotFound(*lease));
                }
            }
        }
        let revision = self.revision + 1;
        let mut log = Vec::new();
        let mut events = Vec::new();
        let mut results = Vec::with_capacity(ops.len());
        for op in ops {
            let result = match op {
                TxnOp::Put { key, value, lease } => {
                    let prev =
                        self.put(key, value.clone(), *lease, revision, &mut log, &mut events)?;
                    TxnOpResult::Put { prev }
                }
                TxnOp::Delete { key } => TxnOpResult::Delete {
                    prev: self.delete(key, revision, &mut log, &mut events)?,
                },
                TxnOp::Get { key } => TxnOpResult::Get {
                    kv: self.latest(key)?,
                },
            };
            results.push(result);
        }
        let changes = self.record(revision, &log, events)?;
        Ok((
            TxnResponse {
                succeeded,
                revision: self.revision,
                results,
            },
            changes,
        ))
    }

    /// Logs a revision's changes and advances the counter; None if nothing changed.
    fn record(
        &mut self,
        revision: i64,
        log: &[LogEntry],
        events: Vec<Event>,
    ) -> Result<Option<Changes>> {
        if log.is_empty() {
            return Ok(None);
        }
        self.log
            .insert(revision, codec::encode_log(log).as_slice())
            .map_err(engine_err)?;
        self.revision = revision;
        Ok(Some(Changes { revision, events }))
    }

    fn put(
        &mut self,
        key: &[u8],
        value: Bytes,
        lease: i64,
        revision: i64,
        log: &mut Vec<LogEntry>,
        events: &mut Vec<Event>,
    ) -> Result<Option<KeyValue>> {
        let prev = self.latest(key)?;
        let (create_revision, version) = prev
            .as_ref()
            .map_or((revision, 1), |p| (p.create_revision, p.version + 1));
        let kv = KeyValue {
            key: Bytes::copy_from_slice(key),
            value,
            create_revision,
            mod_revision: revision,
            version,
            lease,
        };
        let record = codec::encode_put(&kv);
        self.latest
            .insert(key, record.as_slice())
            .map_err(engine_err)?;
        self.versions
            .insert((key, revision), record.as_slice())
            .map_err(engine_err)?;
        let prev_lease = prev.as_ref().map_or(0, |p| p.lease);
        if prev_lease != 0 && prev_lease != lease {
            self.lease_keys
                .remove((prev_lease, key))
                .map_err(engine_err)?;
        }
        if lease != 0 {
            self.lease_keys
                .insert((lease, key), ())
                .map_err(engine_err)?;
        }
        log.push(LogEntry {
            key: key.to_vec(),
            prev_revision: prev.as_ref().map_or(0, |p| p.mod_revision),
        });
        events.push(Event {
            kind: EventKind::Put,
            kv,
            prev_kv: prev.clone(),
        });
        Ok(prev)
    }

    fn delete(
        &mut self,
        key: &[u8],
        revision: i64,
        log: &mut Vec<LogEntry>,
        events: &mut Vec<Event>,
    ) -> Result<Option<KeyValue>> {
        let Some(prev) = self.latest(key)? else {
            return Ok(None);
        };
        self.latest.remove(key).map_err(engine_err)?;
        self.versions
            .insert(
                (key, revision),
                codec::encode_tombstone(revision).as_slice(),
            )
            .map_err(engine_err)?;
        if prev.lease != 0 {
            self.lease_keys
                .remove((prev.lease, key))
                .map_err(engine_err)?;
        }
        log.push(LogEntry {
            key: key.to_vec(),
            prev_revision: prev.mod_revision,
        });
        let kv = KeyValue {
            key: prev.key.clone(),
            mod_revision: revision,
            ..KeyValue::default()
        };
        events.push(Event {
            kind: EventKind::Delete,
            kv,
            prev_kv: Some(prev.clone()),
        });
        Ok(Some(prev))
    }

    /// Persists a new lease and returns its id.
    pub fn grant_lease(&mut self, ttl: i64) -> Result<i64> {
        let id = schema::meta_value(&self.meta, schema::NEXT_LEASE)?;
        self.meta
            .insert(schema::NEXT_LEASE, id + 1)
            .map_err(engine_err)?;
        self.leases.insert(id, ttl).map_err(engine_err)?;
        Ok(id)
    }

    /// Removes a lease and deletes its keys, all at one revision.
    pub fn revoke_lease(&mut self, id: i64) -> Result<Option<Changes>> {
        if self.leases.remove(id).map_err(engine_err)?.is_none() {
            return Err(StoreError::LeaseNotFound(id));
        }
        let keys: Vec<Vec<u8>> = self
            .lease_keys
            .range((id, &[][..])..(id + 1, &[][..]))
            .map_err(engine_err)?
            .map(|entry| entry.map(|(k, _)| k.value().1.to_vec()).map_err(engine_err))
            .collect::<Result<_>>()?;
        let revision = self.revision + 1;
        let (mut log, mut events) = (Vec::new(), Vec::new());
        for key in &keys {
            self.delete(key, revision, &mut log, &mut events)?;
        }
        self.record(revision, &log, events)
    }

    /// Every lease with its TTL, to rebuild expiry deadlines after a restart.
    pub fn leases(&self) -> Result<Vec<(i64, i64)>> {
        self.leases
            .iter()
            .map_err(engine_err)?
            .map(|entry| {
                entry
                    .map(|(id, ttl)| (id.value(), ttl.value()))
                    .map_err(engine_err)
            })
            .collect()
    }

    /// Moves the compaction point to `revision`: from now on reads below it fail. The
    /// history itself is removed later, a slice per batch, by [`Tables::purge`].
    pub fn set_compaction(&mut self, revision: i64) -> Result<()> {
        if revision <= self.compact_revision {
            return Err(StoreError::Compacted {
                revision,
                compact_revision: self.compact_revision,
            });
        }
        if revision > self.revision {
            return Err(StoreError::FutureRevision {
                revision,
                current: self.revision,
            });
        }
        self.meta
            .insert(schema::COMPACT_REVISION, revision)
            .map_err(engine_err)?;
        self.compact_revision = revision;
        Ok(())
    }

    /// Removes history made unreachable by compaction, at most `max_revisions` revisions of
    /// it; returns whether more remains. A version is unreachable once a later version of
    /// the same key at or below the compaction point exists; a tombstone at or below it is.
    pub fn purge(&mut self, max_revisions: i64) -> Result<bool> {
        let purged = self.purged_revision;
        let until = self.compact_revision.min(purged + max_revisions);
        if until <= purged {
            return Ok(false);
        }
        for revision in purged + 1..=until {
            let Some(record) = self.log.remove(revision).map_err(engine_err)? else {
                continue;
            };
            let entries = codec::decode_log(record.value())
                .ok_or_else(|| corrupt("log", &revision.to_le_bytes()))?;
            drop(record);
            for entry in entries {
                if entry.prev_revision != 0 {
                    self.versions
                        .remove((entry.key.as_slice(), entry.prev_revision))
                        .map_err(engine_err)?;
                }
                let tombstone = match self
                    .versions
                    .get((entry.key.as_slice(), revision))
                    .map_err(engine_err)?
                {
                    Some(v) => codec::peek_put(v.value()).is_none(),
                    None => false,
                };
                if tombstone {
                    self.versions
                        .remove((entry.key.as_slice(), revision))
                        .map_err(engine_err)?;
                }
            }
        }
        self.meta
            .insert(schema::PURGED_REVISION, until)
            .map_err(engine_err)?;
        Ok(until < self.compact_revision)
    }
}

pub(crate) fn corrupt(table: &str, key: &[u8]) -> StoreError {
    StoreError::Engine(format!(
        "corrupt record in table {table} for key {:?}",
        String::from_utf8_lossy(key)
    ))
}
