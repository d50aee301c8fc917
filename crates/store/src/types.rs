//! The request and response shapes of [`crate::Store`], modelled on etcd's v3 API so the etcd
//! backend maps one to one and the embedded backend behaves the same.

use bytes::Bytes;

use crate::keys::prefix_end;

/// One version of a key, as etcd reports it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct KeyValue {
    pub key: Bytes,
    pub value: Bytes,
    /// Revision at which the key was last created (it resets after a delete).
    pub create_revision: i64,
    /// Revision of the last change to this key.
    pub mod_revision: i64,
    /// Number of changes since creation, starting at 1.
    pub version: i64,
    /// Lease the key is attached to, 0 for none.
    pub lease: i64,
}

/// A read of one key (`range_end` empty) or of the keys in `[key, range_end)`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RangeRequest {
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
    /// At most this many keys (0: no limit).
    pub limit: i64,
    /// Read as of this revision (0: current).
    pub revision: i64,
    /// Return only `count`, no keys.
    pub count_only: bool,
}

impl RangeRequest {
    /// Exactly one key.
    pub fn key(key: impl AsRef<[u8]>) -> Self {
        Self {
            key: key.as_ref().to_vec(),
            ..Self::default()
        }
    }

    /// Every key starting with `prefix`.
    pub fn prefix(prefix: impl AsRef<[u8]>) -> Self {
        let prefix = prefix.as_ref();
        Self {
            key: prefix.to_vec(),
            range_end: prefix_end(prefix),
            ..Self::default()
        }
    }

    /// Start the range at `start` (inclusive) instead: how the next page of a paginated
    /// prefix read begins (`keys::key_after(last_key)`).
    pub fn starting_at(mut self, start: impl AsRef<[u8]>) -> Self {
        self.key = start.as_ref().to_vec();
        self
    }

    pub fn limit(mut self, limit: i64) -> Self {
        self.limit = limit;
        self
    }

    pub fn at_revision(mut self, revision: i64) -> Self {
        self.revision = revision;
        self
    }

    pub fn count_only(mut self) -> Self {
        self.count_only = true;
        self
    }

    /// Whether `key` falls in this range.
    pub fn contains(&self, key: &[u8]) -> bool {
        if self.range_end.is_empty() {
            return key == self.key.as_slice();
        }
        key >= self.key.as_slice() && (self.range_end == [0] || key < self.range_end.as_slice())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RangeResponse {
    /// Keys in order, at most `limit` of them.
    pub kvs: Vec<KeyValue>,
    /// Whether keys beyond `limit` exist in the range.
    pub more: bool,
    /// Number of keys in the whole range, regardless of `limit`.
    pub count: i64,
    /// The store's current revision when the read was served, also for reads of a past
    /// revision (as etcd's response header does).
    pub revision: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareOp {
    Equal,
    NotEqual,
    Greater,
    Less,
}

/// What a compare looks at. A missing key has mod, create revision, version and lease 0; a
/// `Value` compare on a missing key is always false (as in etcd).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompareTarget {
    ModRevision(i64),
    CreateRevision(i64),
    Version(i64),
    Value(Bytes),
    Lease(i64),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compare {
    pub key: Vec<u8>,
    pub op: CompareOp,
    pub target: CompareTarget,
}

impl Compare {
    pub fn mod_revision(key: impl AsRef<[u8]>, op: CompareOp, revision: i64) -> Self {
        Self {
            key: key.as_ref().to_vec(),
            op,
            target: CompareTarget::ModRevision(revision),
        }
    }

    pub fn create_revision(key: impl AsRef<[u8]>, op: CompareOp, revision: i64) -> Self {
        Self {
            key: key.as_ref().to_vec(),
            op,
            target: CompareTarget::CreateRevision(revision),
        }
    }

    pub fn version(key: impl AsRef<[u8]>, op: CompareOp, version: i64) -> Self {
        Self {
            key: key.as_ref().to_vec(),
            op,
            target: CompareTarget::Version(version),
        }
    }

    pub fn value(key: impl AsRef<[u8]>, op: CompareOp, value: impl Into<Bytes>) -> Self {
        Self {
            key: key.as_ref().to_vec(),
            op,
            target: CompareTarget::Value(value.into()),
        }
    }

    pub fn lease(key: impl AsRef<[u8]>, op: CompareOp, lease: i64) -> Self {
        Self {
            key: key.as_ref().to_vec(),
            op,
            target: CompareTarget::Lease(lease),
        }
    }

    /// Evaluates the compare against the key's current version (`None`: missing).
    pub fn holds(&self, current: Option<&KeyValue>) -> bool {
        use std::cmp::Ordering;
        let ordering = match (&self.target, current) {
            (CompareTarget::Value(_), None) => return false,
            (CompareTarget::Value(want), Some(kv)) => kv.value.as_ref().cmp(want.as_ref()),
            (CompareTarget::ModRevision(want), kv) => kv.map_or(0, |kv| kv.mod_revision).cmp(want),
            (CompareTarget::CreateRevision(want), kv) => {
                kv.map_or(0, |kv| kv.create_revision).cmp(want)
            }
            (CompareTarget::Version(want), kv) => kv.map_or(0, |kv| kv.version).cmp(want),
            (CompareTarget::Lease(want), kv) => kv.map_or(0, |kv| kv.lease).cmp(want),
        };
        match self.op {
            CompareOp::Equal => ordering == Ordering::Equal,
            CompareOp::NotEqual => ordering != Ordering::Equal,
            CompareOp::Greater => ordering == Ordering::Greater,
            CompareOp::Less => ordering == Ordering::Less,
        }
    }
}

/// One operation inside a transaction branch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnOp {
    /// Write a key, attached to `lease` (0: none).
    Put {
        key: Vec<u8>,
        value: Bytes,
        lease: i64,
    },
    /// Delete a key; deleting a missing key is not an error and changes nothing.
    Delete { key: Vec<u8> },
    /// Read a key as the transaction sees it.
    Get { key: Vec<u8> },
}

impl TxnOp {
    pub fn put(key: impl AsRef<[u8]>, value: impl Into<Bytes>, lease: i64) -> Self {
        Self::Put {
            key: key.as_ref().to_vec(),
            value: value.into(),
            lease,
        }
    }

    pub fn delete(key: impl AsRef<[u8]>) -> Self {
        Self::Delete {
            key: key.as_ref().to_vec(),
        }
    }

    pub fn get(key: impl AsRef<[u8]>) -> Self {
        Self::Get {
            key: key.as_ref().to_vec(),
        }
    }
}

/// If every compare holds, run `success`, else `failure`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub success: Vec<TxnOp>,
    pub failure: Vec<TxnOp>,
}

impl Txn {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn when(mut self, compare: Compare) -> Self {
        self.compares.push(compare);
        self
    }

    pub fn and_then(mut self, op: TxnOp) -> Self {
        self.success.push(op);
        self
    }

    pub fn or_else(mut self, op: TxnOp) -> Self {
        self.failure.push(op);
        self
    }

    /// Bytes this transaction asks to write (keys and values of its puts, keys of its
    /// deletes, in the larger branch): what [`crate::MAX_REQUEST_BYTES`] limits.
    pub fn request_size(&self) -> usize {
        let branch = |ops: &[TxnOp]| -> usize {
            ops.iter()
                .map(|op| match op {
                    TxnOp::Put { key, value, .. } => key.len() + value.len(),
                    TxnOp::Delete { key } | TxnOp::Get { key } => key.len(),
                })
                .sum()
        };
        branch(&self.success).max(branch(&self.failure))
    }

    /// The key of the largest put, to name in a size error.
    pub(crate) fn largest_key(&self) -> String {
        self.success
            .iter()
            .chain(&self.failure)
            .filter_map(|op| match op {
                TxnOp::Put { key, value, .. } => Some((key.len() + value.len(), key)),
                _ => None,
            })
            .max_by_key(|(size, _)| *size)
            .map(|(_, key)| String::from_utf8_lossy(key).into_owned())
            .unwrap_or_default()
    }

    /// Checks what both backends refuse before anything is written: oversize requests and a
    /// key written twice in one branch.
    pub fn validate(&self) -> crate::Result<()> {
        let size = self.request_size();
        if size > crate::MAX_REQUEST_BYTES {
            return Err(crate::StoreError::TooLarge {
                key: self.largest_key(),
                size,
                limit: crate::MAX_REQUEST_BYTES,
            });
        }
        for branch in [&self.success, &self.failure] {
            let mut written: Vec<&[u8]> = branch
                .iter()
                .filter_map(|op| match op {
                    TxnOp::Put { key, .. } | TxnOp::Delete { key } => Some(key.as_slice()),
                    TxnOp::Get { .. } => None,
                })
                .collect();
            written.sort_unstable();
            if let Some(pair) = written.windows(2).find(|w| w[0] == w[1]) {
                return Err(crate::StoreError::InvalidRequest(format!(
                    "duplicate key {:?} given in txn request",
                    String::from_utf8_lossy(pair[0])
                )));
            }
        }
        Ok(())
    }
}

/// Result of one op, in the order of the branch that ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnOpResult {
    /// The key's version before the put (None: it was created).
    Put {
        prev: Option<KeyValue>,
    },
    /// The deleted version (None: the key did not exist; nothing changed).
    Delete {
        prev: Option<KeyValue>,
    },
    Get {
        kv: Option<KeyValue>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnResponse {
    /// Whether the compares held (the `success` branch ran).
    pub succeeded: bool,
    /// The store revision after the transaction: its own revision if it wrote anything.
    pub revision: i64,
    pub results: Vec<TxnOpResult>,
}

/// Outcome of the guarded single-key helpers ([`crate::Store::create`], `update`, `delete`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The write happened at `revision`; `prev` is the version it replaced or deleted.
    Done {
        revision: i64,
        prev: Option<KeyValue>,
    },
    /// The guard failed; `current` is the key as it is now (None: missing).
    Conflict { current: Option<KeyValue> },
}

impl WriteOutcome {
    /// Reads a response of a one-op guarded transaction whose failure branch is a `Get`.
    pub(crate) fn from_guarded(resp: TxnResponse) -> Self {
        let first = resp.results.into_iter().next();
        if resp.succeeded {
            let prev = match first {
                Some(TxnOpResult::Put { prev }) | Some(TxnOpResult::Delete { prev }) => prev,
                _ => None,
            };
            WriteOutcome::Done {
                revision: resp.revision,
                prev,
            }
        } else {
            let current = match first {
                Some(TxnOpResult::Get { kv }) => kv,
                _ => None,
            };
            WriteOutcome::Conflict { current }
        }
    }

    pub fn is_done(&self) -> bool {
        matches!(self, WriteOutcome::Done { .. })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change seen by a watch. For a delete, `kv` holds the key and the deletion revision
/// (as `mod_revision`); other fields are zero.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
    /// The version this change replaced; None for a creation.
    pub prev_kv: Option<KeyValue>,
}

impl Event {
    pub fn revision(&self) -> i64 {
        self.kv.mod_revision
    }
}

/// A granted lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    pub id: i64,
    /// TTL in seconds as granted (a backend may round up).
    pub ttl: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(mod_revision: i64, value: &'static str) -> KeyValue {
        KeyValue {
            key: Bytes::from_static(b"k"),
            value: Bytes::from_static(value.as_bytes()),
            create_revision: 1,
            mod_revision,
            version: 1,
            lease: 0,
        }
    }

    #[test]
    fn compares_on_a_missing_key_see_zeroes_and_no_value() {
        assert!(Compare::mod_revision("k", CompareOp::Equal, 0).holds(None));
        assert!(!Compare::mod_revision("k", CompareOp::Greater, 0).holds(None));
        assert!(Compare::version("k", CompareOp::Equal, 0).holds(None));
        assert!(!Compare::value("k", CompareOp::Equal, "").holds(None));
        assert!(!Compare::value("k", CompareOp::NotEqual, "x").holds(None));
    }

    #[test]
    fn compares_on_a_present_key() {
        let current = kv(7, "b");
        assert!(Compare::mod_revision("k", CompareOp::Equal, 7).holds(Some(&current)));
        assert!(Compare::mod_revision("k", CompareOp::Less, 8).holds(Some(&current)));
        assert!(!Compare::mod_revision("k", CompareOp::NotEqual, 7).holds(Some(&current)));
        assert!(Compare::value("k", CompareOp::Greater, "a").holds(Some(&current)));
        assert!(Compare::value("k", CompareOp::Equal, "b").holds(Some(&current)));
    }

    #[test]
    fn range_contains_respects_single_key_prefix_and_open_end() {
        assert!(RangeRequest::key("a").contains(b"a"));
        assert!(!RangeRequest::key("a").contains(b"ab"));
        let p = RangeRequest::prefix("/r/pods/");
        assert!(p.contains(b"/r/pods/x"));
        assert!(!p.contains(b"/r/pods"));
        assert!(!p.contains(b"/r/podsx"));
        assert!(RangeRequest::prefix("").contains(b"\xff\xff"));
    }

    #[test]
    fn validate_refuses_oversize_and_duplicate_writes() {
        let big = Txn::new().and_then(TxnOp::put("big", vec![0u8; crate::MAX_REQUEST_BYTES], 0));
        match big.validate() {
            Err(crate::StoreError::TooLarge { key, size, .. }) => {
                assert_eq!(key, "big");
                assert_eq!(size, crate::MAX_REQUEST_BYTES + 3);
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        let dup = Txn::new()
            .and_then(TxnOp::put("a", "1", 0))
            .and_then(TxnOp::delete("a"));
        assert!(matches!(
            dup.validate(),
            Err(crate::StoreError::InvalidRequest(_))
        ));
        let ok = Txn::new()
            .and_then(TxnOp::put("a", "1", 0))
            .and_then(TxnOp::get("a"));
        assert!(ok.validate().is_ok());
    }

    #[test]
    fn guarded_outcome_reads_both_branches() {
        let done = TxnResponse {
            succeeded: true,
            revision: 9,
            results: vec![TxnOpResult::Put {
                prev: Some(kv(3, "a")),
            }],
        };
        assert_eq!(
            WriteOutcome::from_guarded(done),
            WriteOutcome::Done {
                revision: 9,
                prev: Some(kv(3, "a"))
            }
        );
        let conflict = TxnResponse {
            succeeded: false,
            revision: 9,
            results: vec![TxnOpResult::Get {
                kv: Some(kv(5, "b")),
            }],
        };
        assert_eq!(
            WriteOutcome::from_guarded(conflict),
            WriteOutcome::Conflict {
                current: Some(kv(5, "b"))
            }
        );
    }
}
