//! The write-ahead log that makes group commit cheap.
//!
//! A durable redb commit rewrites B-tree pages all over the file and costs milliseconds;
//! appending one record and `fdatasync`ing it costs a fraction of that. So each batch of
//! writes is appended here and synced *before* it is applied to redb (without fsync) and
//! answered. Every so often redb is committed durably (a checkpoint) and the log emptied.
//! After a crash, the batches logged since the last checkpoint are applied again, in
//! order, to the last durable redb state: the same inputs through the same deterministic
//! code give the same revisions and results the callers were told.
//!
//! Record: `len:u32 | crc32(payload):u32 | payload`, payload = `seq:u64 | entries`.
//! A record cut short or failing its checksum ends the log (the crash came mid-append,
//! before that batch was acknowledged) and is truncated away.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::{Compare, CompareOp, CompareTarget, Txn, TxnOp};

/// One logged input of the state machine.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Entry {
    Txn(Txn),
    LeaseGrant(i64),
    LeaseRevoke(i64),
    /// A lease whose deadline passed: revoked if it still exists.
    Expire(i64),
    Compact(i64),
}

/// A logged batch: its sequence number and entries.
pub(crate) type Batch = (u64, Vec<Entry>);

pub(crate) struct Wal {
    path: PathBuf,
    file: File,
    /// Bytes appended since the last reset, to decide when to checkpoint.
    pub size: u64,
}

fn io_err(path: &Path, source: std::io::Error) -> crate::StoreError {
    crate::StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Wal {
    /// Opens (creating) the log and returns the intact batches in it, in order.
    pub fn open(path: &Path) -> crate::Result<(Self, Vec<Batch>)> {
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| io_err(path, e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|e| io_err(path, e))?;
        let mut batches = Vec::new();
        let mut at = 0usize;
        while let Some((next, batch)) = read_record(&bytes, at) {
            batches.push(batch);
            at = next;
        }
        if at < bytes.len() && !is_tail(&bytes, at) {
            return Err(crate::StoreError::DataFile {
                path: path.to_path_buf(),
                reason: format!("write-ahead log is corrupt at byte {at} (a damaged record followed by more records); restore the store from a backup"),
            });
        }
        if at < bytes.len() {
            // A torn tail from a crash mid-append: never acknowledged, so dropped.
            file.set_len(at as u64).map_err(|e| io_err(path, e))?;
            file.sync_all().map_err(|e| io_err(path, e))?;
        }
        if !existed {
            sync_dir(path)?;
        }
        Ok((
            Self {
                path: path.to_path_buf(),
                file,
                size: at as u64,
            },
            batches,
        ))
    }

    /// Appends one batch and waits until it is on disk.
    pub fn append(&mut self, seq: u64, entries: &[Entry]) -> crate::Result<()> {
        let mut payload = Vec::with_capacity(64 * entries.len() + 8);
        payload.extend_from_slice(&seq.to_le_bytes());
        for e in entries {
            encode_entry(&mut payload, e);
        }
        let mut record = Vec::with_capacity(payload.len() + 8);
        record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        record.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        record.extend_from_slice(&payload);
        self.file
            .write_all(&record)
            .map_err(|e| io_err(&self.path, e))?;
        self.file.sync_data().map_err(|e| io_err(&self.path, e))?;
        self.size += record.len() as u64;
        Ok(())
    }

    /// Empties the log once everything in it is durable in redb.
    pub fn reset(&mut self) -> crate::Result<()> {
        self.file.set_len(0).map_err(|e| io_err(&self.path, e))?;
        self.file.sync_all().map_err(|e| io_err(&self.path, e))?;
        self.size = 0;
        Ok(())
    }
}

fn sync_dir(path: &Path) -> crate::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_err(dir, e))?;
    }
    Ok(())
}

/// Whether the unreadable record at `at` is the log's last one: only the last record can
/// be torn, since each is synced before the next is written.
fn is_tail(bytes: &[u8], at: usize) -> bool {
    match bytes.get(at..at + 4) {
        Some(len) => {
            let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
            at.saturating_add(8).saturating_add(len) >= bytes.len()
        }
        None => true,
    }
}

fn read_record(bytes: &[u8], at: usize) -> Option<(usize, Batch)> {
    let len = u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(bytes.get(at + 4..at + 8)?.try_into().ok()?);
    let payload = bytes.get(at + 8..at + 8 + len)?;
    if crc32fast::hash(payload) != crc {
        return None;
    }
    let mut r = Reader(payload);
    let seq = r.u64()?;
    let mut entries = Vec::new();
    while !r.0.is_empty() {
        entries.push(decode_entry(&mut r)?);
    }
    Some((at + 8 + len, (seq, entries)))
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn tagged(out: &mut Vec<u8>, tag: u8, n: i64) {
    out.push(tag);
    out.extend_from_slice(&n.to_le_bytes());
}

fn encode_op(out: &mut Vec<u8>, op: &TxnOp) {
    match op {
        TxnOp::Put { key, value, lease } => {
            out.push(0);
            put_bytes(out, key);
            put_bytes(out, value);
            out.extend_from_slice(&lease.to_le_bytes());
        }
        TxnOp::Delete { key } => {
            out.push(1);
            put_bytes(out, key);
        }
        TxnOp::Get { key } => {
            out.push(2);
            put_bytes(out, key);
        }
    }
}

fn encode_entry(out: &mut Vec<u8>, e: &Entry) {
    match e {
        Entry::Txn(txn) => {
            out.push(0);
            out.extend_from_slice(&(txn.compares.len() as u32).to_le_bytes());
            for c in &txn.compares {
                put_bytes(out, &c.key);
                out.push(match c.op {
                    CompareOp::Equal => 0,
                    CompareOp::NotEqual => 1,
                    CompareOp::Greater => 2,
                    CompareOp::Less => 3,
                });
                match &c.target {
                    CompareTarget::ModRevision(n) => tagged(out, 0, *n),
                    CompareTarget::CreateRevision(n) => tagged(out, 1, *n),
                    CompareTarget::Version(n) => tagged(out, 2, *n),
                    CompareTarget::Lease(n) => tagged(out, 3, *n),
                    CompareTarget::Value(v) => {
                        out.push(4);
                        put_bytes(out, v);
                    }
                }
            }
            for branch in [&txn.success, &txn.failure] {
                out.extend_from_slice(&(branch.len() as u32).to_le_bytes());
                branch.iter().for_each(|op| encode_op(out, op));
            }
        }
        Entry::LeaseGrant(n) => tagged(out, 1, *n),
        Entry::LeaseRevoke(n) => tagged(out, 2, *n),
        Entry::Expire(n) => tagged(out, 3, *n),
        Entry::Compact(n) => tagged(out, 4, *n),
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let (head, tail) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<Vec<u8>> {
        let n = self.u32()? as usize;
        Some(self.take(n)?.to_vec())
    }
}

fn decode_op(r: &mut Reader<'_>) -> Option<TxnOp> {
    Some(match r.u8()? {
        0 => TxnOp::Put {
            key: r.bytes()?,
            value: Bytes::from(r.bytes()?),
            lease: r.i64()?,
        },
        1 => TxnOp::Delete { key: r.bytes()? },
        2 => TxnOp::Get { key: r.bytes()? },
        _ => return None,
    })
}

fn decode_entry(r: &mut Reader<'_>) -> Option<Entry> {
    Some(match r.u8()? {
        0 => {
            let mut txn = Txn::new();
            for _ in 0..r.u32()? {
                let key = r.bytes()?;
                let op = match r.u8()? {
                    0 => CompareOp::Equal,
                    1 => CompareOp::NotEqual,
                    2 => CompareOp::Greater,
                    3 => CompareOp::Less,
                    _ => return None,
                };
                let target = match r.u8()? {
                    0 => CompareTarget::ModRevision(r.i64()?),
                    1 => CompareTarget::CreateRevision(r.i64()?),
                    2 => CompareTarget::Version(r.i64()?),
                    3 => CompareTarget::Lease(r.i64()?),
                    4 => CompareTarget::Value(Bytes::from(r.bytes()?)),
                    _ => return None,
                };
                txn.compares.push(Compare { key, op, target });
            }
            for _ in 0..r.u32()? {
                txn.success.push(decode_op(r)?);
            }
            for _ in 0..r.u32()? {
                txn.failure.push(decode_op(r)?);
            }
            Entry::Txn(txn)
        }
        1 => Entry::LeaseGrant(r.i64()?),
        2 => Entry::LeaseRevoke(r.i64()?),
        3 => Entry::Expire(r.i64()?),
        4 => Entry::Compact(r.i64()?),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Entry> {
        vec![
            Entry::Txn(
                Txn::new()
                    .when(Compare::mod_revision("/a", CompareOp::Equal, 0))
                    .when(Compare::value("/b", CompareOp::NotEqual, "x"))
                    .and_then(TxnOp::put("/a", "1", 7))
                    .and_then(TxnOp::delete("/c"))
                    .or_else(TxnOp::get("/a")),
            ),
            Entry::LeaseGrant(30),
            Entry::LeaseRevoke(3),
            Entry::Expire(4),
            Entry::Compact(99),
        ]
    }

    #[test]
    fn batches_survive_reopen_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.wal");
        let (mut wal, old) = Wal::open(&path).unwrap();
        assert!(old.is_empty());
        wal.append(1, &sample()).unwrap();
        wal.append(2, &sample()[1..2]).unwrap();
        drop(wal);
        let (_, batches) = Wal::open(&path).unwrap();
        assert_eq!(batches, vec![(1, sample()), (2, sample()[1..2].to_vec())]);
    }

    #[test]
    fn a_torn_or_corrupt_tail_is_cut_off_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.wal");
        let (mut wal, _) = Wal::open(&path).unwrap();
        wal.append(1, &sample()).unwrap();
        let good = wal.size;
        wal.append(2, &sample()).unwrap();
        drop(wal);
        let full = std::fs::read(&path).unwrap();
        // Half of the second record made it to disk.
        std::fs::write(&path, &full[..good as usize + 10]).unwrap();
        let (wal, batches) = Wal::open(&path).unwrap();
        assert_eq!(batches.len(), 1);
        assert_eq!(wal.size, good);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), good);
        // A flipped byte inside the last record fails its checksum: a torn tail.
        let mut flipped = full.clone();
        let last = flipped.len() - 3;
        flipped[last] ^= 0xff;
        std::fs::write(&path, &flipped).unwrap();
        assert_eq!(Wal::open(&path).unwrap().1.len(), 1);
        // The same damage in the first of two records is corruption, not a torn write.
        let mut early = full.clone();
        early[20] ^= 0xff;
        std::fs::write(&path, &early).unwrap();
        match Wal::open(&path) {
            Err(crate::StoreError::DataFile { reason, .. }) => {
                assert!(reason.contains("corrupt"), "{reason}")
            }
            other => panic!(
                "expected a corruption error, got {:?}",
                other.map(|(_, b)| b.len())
            ),
        }
    }

    #[test]
    fn reset_empties_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.wal");
        let (mut wal, _) = Wal::open(&path).unwrap();
        wal.append(1, &sample()).unwrap();
        wal.reset().unwrap();
        wal.append(2, &sample()[..1]).unwrap();
        drop(wal);
        assert_eq!(
            Wal::open(&path).unwrap().1,
            vec![(2, sample()[..1].to_vec())]
        );
    }
}
