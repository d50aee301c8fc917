//! The redb tables of the embedded store and opening the file.
//!
//! - `meta`: store-wide counters (revision, compaction points, next lease id, format).
//! - `latest`: key → its live version record (deleted keys are absent). Serves current reads.
//! - `versions`: (key, mod revision) → version record or tombstone: the MVCC history that
//!   past-revision reads and watch replays use, trimmed by compaction.
//! - `log`: revision → which keys it changed: the order watches replay in.
//! - `leases`: lease id → TTL seconds; `lease_keys`: (lease id, key) → () to find a lease's keys.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::{engine_err, EmbeddedOptions};
use crate::{Result, StoreError};

pub(crate) const META: TableDefinition<&str, i64> = TableDefinition::new("meta");
pub(crate) const LATEST: TableDefinition<&[u8], &[u8]> = TableDefinition::new("latest");
pub(crate) const VERSIONS: TableDefinition<(&[u8], i64), &[u8]> = TableDefinition::new("versions");
pub(crate) const LOG: TableDefinition<i64, &[u8]> = TableDefinition::new("log");
pub(crate) const LEASES: TableDefinition<i64, i64> = TableDefinition::new("leases");
pub(crate) const LEASE_KEYS: TableDefinition<(i64, &[u8]), ()> = TableDefinition::new("lease_keys");

pub(crate) const FORMAT: &str = "format";
/// Revision of the last change.
pub(crate) const REVISION: &str = "revision";
/// Reads and watches below this revision fail with `Compacted`.
pub(crate) const COMPACT_REVISION: &str = "compact_revision";
/// History up to this revision has been physically removed (trails `COMPACT_REVISION`).
pub(crate) const PURGED_REVISION: &str = "purged_revision";
pub(crate) const NEXT_LEASE: &str = "next_lease";
/// Sequence number of the last write-ahead-log batch redb holds (see `wal.rs`).
pub(crate) const APPLIED_BATCH: &str = "applied_batch";

const FORMAT_VERSION: i64 = 1;

/// Opens or creates the store file and makes sure it holds a Skiff store of a known format.
pub(crate) fn open_database(path: &Path, opts: &EmbeddedOptions) -> Result<Database> {
    let data_file = |reason: String| StoreError::DataFile {
        path: path.to_path_buf(),
        reason,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    // redb would take an existing empty file for a new database; an existing store file is
    // never empty, so an empty one was truncated or clobbered and must not pass as "empty".
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() && m.len() == 0 => {
            return Err(data_file(
                "is empty (zero bytes): it is not a Skiff store; restore it from a backup or remove it to start a new one".into(),
            ))
        }
        _ => {}
    }
    let mut builder = Database::builder();
    builder.set_cache_size(opts.cache_bytes);
    builder.set_check_integrity_on_open(opts.verify_on_open);
    // redb reports corruption as errors when checking integrity, but a debug build asserts on
    // states its own writes cannot produce: keep a damaged file from taking the process down.
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| builder.create(path)));
    let db = match opened {
        Ok(Ok(db)) => db,
        Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => {
            return Err(data_file("already open by another store in this or another process".into()))
        }
        Ok(Err(err)) => return Err(data_file(format!("cannot be opened: {err} (corrupt, truncated or not a Skiff store; restore it from a backup or move it away to start empty)"))),
        Err(_) => return Err(data_file("is corrupt: the storage engine failed reading it (restore it from a backup or move it away to start empty)".into())),
    };
    initialize(&db).map_err(|e| match e {
        StoreError::Engine(reason) => data_file(reason),
        other => other,
    })?;
    Ok(db)
}

/// Creates the tables of a new store, or checks the format of an existing one.
fn initialize(db: &Database) -> Result<()> {
    {
        let read = db.begin_read().map_err(engine_err)?;
        if let Ok(meta) = read.open_table(META) {
            match meta.get(FORMAT).map_err(engine_err)?.map(|v| v.value()) {
                Some(FORMAT_VERSION) => return Ok(()),
                Some(other) => {
                    return Err(StoreError::Engine(format!(
                        "has store format {other}, this build reads format {FORMAT_VERSION}"
                    )))
                }
                None => {}
            }
        }
    }
    let write = db.begin_write().map_err(engine_err)?;
    {
        let mut meta = write.open_table(META).map_err(engine_err)?;
        if meta.len().map_err(engine_err)? > 0 {
            return Err(StoreError::Engine(
                "is a redb file but not a Skiff store".into(),
            ));
        }
        meta.insert(FORMAT, FORMAT_VERSION).map_err(engine_err)?;
        // etcd starts at revision 1; so does this store, so revisions mean the same on both.
        meta.insert(REVISION, 1).map_err(engine_err)?;
        meta.insert(COMPACT_REVISION, 0).map_err(engine_err)?;
        meta.insert(PURGED_REVISION, 0).map_err(engine_err)?;
        meta.insert(NEXT_LEASE, 1).map_err(engine_err)?;
        write.open_table(LATEST).map_err(engine_err)?;
        write.open_table(VERSIONS).map_err(engine_err)?;
        write.open_table(LOG).map_err(engine_err)?;
        write.open_table(LEASES).map_err(engine_err)?;
        write.open_table(LEASE_KEYS).map_err(engine_err)?;
    }
    write.commit().map_err(engine_err)?;
    Ok(())
}

/// Reads a meta counter that [`initialize`] always writes.
pub(crate) fn meta_value(table: &impl ReadableTable<&'static str, i64>, name: &str) -> Result<i64> {
    table
        .get(name)
        .map_err(engine_err)?
        .map(|v| v.value())
        .ok_or_else(|| StoreError::Engine(format!("meta counter {name} is missing")))
}
