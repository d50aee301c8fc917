//! Reads on a redb read transaction: ranges now or at a past revision, and the history a
//! watch replays. A read transaction is a consistent snapshot, so the revision read from
//! `meta` is exactly the revision the data belongs to.

use std::ops::Bound;

use redb::ReadTransaction;

use super::apply::corrupt;
use super::codec::{self, Version};
use super::engine_err;
use super::schema::{self, LATEST, LOG, META, VERSIONS};
use crate::{Event, EventKind, KeyValue, RangeRequest, RangeResponse, Result, StoreError};

/// The revisions a snapshot can serve: `(compact_revision, current revision)`.
pub(crate) fn bounds(txn: &ReadTransaction) -> Result<(i64, i64)> {
    let meta = txn.open_table(META).map_err(engine_err)?;
    Ok((
        schema::meta_value(&meta, schema::COMPACT_REVISION)?,
        schema::meta_value(&meta, schema::REVISION)?,
    ))
}

/// Upper bound of a request's key range, as a redb bound.
fn end_bound(req: &RangeRequest) -> Bound<&[u8]> {
    if req.range_end.is_empty() {
        Bound::Included(req.key.as_slice())
    } else if req.range_end == [0] {
        Bound::Unbounded
    } else {
        Bound::Excluded(req.range_end.as_slice())
    }
}

/// Collects range results: counts everything, keeps at most `limit` key-values.
struct Collector {
    out: RangeResponse,
    limit: usize,
    count_only: bool,
}

impl Collector {
    /// Whether the next key's value is still wanted (past the limit only the count is).
    fn wants_value(&self) -> bool {
        !self.count_only && self.out.kvs.len() < self.limit
    }

    fn counted(&mut self, kv: Option<KeyValue>) {
        self.out.count += 1;
        match kv {
            Some(kv) => self.out.kvs.push(kv),
            None if !self.count_only => self.out.more = true,
            None => {}
        }
    }
}

pub(crate) fn range(txn: &ReadTransaction, req: &RangeRequest) -> Result<RangeResponse> {
    let (compact_revision, current) = bounds(txn)?;
    let revision = if req.revision == 0 {
        current
    } else {
        req.revision
    };
    if revision > current {
        return Err(StoreError::FutureRevision { revision, current });
    }
    if revision < compact_revision {
        return Err(StoreError::Compacted {
            revision,
            compact_revision,
        });
    }
    let mut acc = Collector {
        out: RangeResponse {
            revision: current,
            ..RangeResponse::default()
        },
        limit: if req.limit > 0 {
            req.limit as usize
        } else {
            usize::MAX
        },
        count_only: req.count_only,
    };
    let empty_range = !req.range_end.is_empty() && req.range_end != [0] && req.range_end <= req.key;
    if empty_range {
        return Ok(acc.out);
    }
    if revision == current {
        let table = txn.open_table(LATEST).map_err(engine_err)?;
        let bounds = (Bound::Included(req.key.as_slice()), end_bound(req));
        for entry in table.range::<&[u8]>(bounds).map_err(engine_err)? {
            let (key, value) = entry.map_err(engine_err)?;
            if !acc.wants_value() {
                acc.counted(None);
                continue;
            }
            match codec::decode_version(key.value(), value.value()) {
                Some(Version::Put(kv)) => acc.counted(Some(kv)),
                _ => return Err(corrupt("latest", key.value())),
            }
        }
    } else {
        past_range(txn, req, revision, &mut acc)?;
    }
    Ok(acc.out)
}

/// A range as of a past revision: for each key, its last version at or below `revision`,
/// if that version is not a tombstone.
fn past_range(
    txn: &ReadTransaction,
    req: &RangeRequest,
    revision: i64,
    acc: &mut Collector,
) -> Result<()> {
    let table = txn.open_table(VERSIONS).map_err(engine_err)?;
    let start = Bound::Included((req.key.as_slice(), i64::MIN));
    let end = match end_bound(req) {
        Bound::Included(key) => Bound::Included((key, i64::MAX)),
        Bound::Excluded(key) => Bound::Excluded((key, i64::MIN)),
        Bound::Unbounded => Bound::Unbounded,
    };
    // Versions come grouped by key, oldest first: remember the newest one at or below
    // `revision` and emit it when the key changes.
    let mut pending: Option<(Vec<u8>, Vec<u8>)> = None;
    let flush = |pending: Option<(Vec<u8>, Vec<u8>)>, acc: &mut Collector| -> Result<()> {
        let Some((key, record)) = pending else {
            return Ok(());
        };
        match codec::decode_version(&key, &record) {
            Some(Version::Put(kv)) => acc.counted(acc.wants_value().then_some(kv)),
            Some(Version::Tombstone { .. }) => {}
            None => return Err(corrupt("versions", &key)),
        }
        Ok(())
    };
    for entry in table
        .range::<(&[u8], i64)>((start, end))
        .map_err(engine_err)?
    {
        let (k, v) = entry.map_err(engine_err)?;
        let (key, mod_revision) = k.value();
        if pending.as_ref().is_some_and(|(p, _)| p.as_slice() != key) {
            flush(pending.take(), acc)?;
        }
        if mod_revision <= revision {
            pending = Some((key.to_vec(), v.value().to_vec()));
        }
    }
    flush(pending, acc)
}

/// What a watch replays: the changes of revisions after `after`, up to `max_revisions` of
/// them, keeping only keys that start with `prefix`. Returns the events and the last
/// revision looked at (which may have had no matching events).
pub(crate) fn history(
    txn: &ReadTransaction,
    prefix: &[u8],
    after: i64,
    max_revisions: i64,
) -> Result<(Vec<Event>, i64)> {
    let (compact_revision, current) = bounds(txn)?;
    if after < compact_revision {
        return Err(StoreError::Compacted {
            revision: after,
            compact_revision,
        });
    }
    let log = txn.open_table(LOG).map_err(engine_err)?;
    let versions = txn.open_table(VERSIONS).map_err(engine_err)?;
    let version = |key: &[u8], revision: i64| -> Result<Version> {
        let record = versions.get((key, revision)).map_err(engine_err)?;
        record
            .and_then(|r| codec::decode_version(key, r.value()))
            .ok_or_else(|| corrupt("versions", key))
    };
    let until = current.min(after.saturating_add(max_revisions));
    let mut events = Vec::new();
    for entry in log.range(after + 1..=until).map_err(engine_err)? {
        let (revision, record) = entry.map_err(engine_err)?;
        let revision = revision.value();
        let entries = codec::decode_log(record.value())
            .ok_or_else(|| corrupt("log", &revision.to_le_bytes()))?;
        for change in entries.into_iter().filter(|c| c.key.starts_with(prefix)) {
            let prev_kv = match change.prev_revision {
                0 => None,
                prev => match version(&change.key, prev)? {
                    Version::Put(kv) => Some(kv),
                    Version::Tombstone { .. } => None,
                },
            };
            let event = match version(&change.key, revision)? {
                Version::Put(kv) => Event {
                    kind: EventKind::Put,
                    kv,
                    prev_kv,
                },
                Version::Tombstone { mod_revision } => Event {
                    kind: EventKind::Delete,
                    kv: KeyValue {
                        key: change.key.into(),
                        mod_revision,
                        ..KeyValue::default()
                    },
                    prev_kv,
                },
            };
            events.push(event);
        }
    }
    Ok((events, until))
}
