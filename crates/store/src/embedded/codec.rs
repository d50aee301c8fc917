//! Byte layouts of what the embedded store keeps in redb. Pure functions, no IO.
//!
//! A version record (the value in both the `latest` and `versions` tables):
//! `kind:u8 | mod_revision:i64 | create_revision:i64 | version:i64 | lease:i64 | value...`
//! (little endian). A log record lists what one revision changed: for each key,
//! `key_len:u32 | key | prev_mod_revision:i64` (0: the key did not exist before).

use bytes::Bytes;

use crate::KeyValue;

const HEADER: usize = 1 + 8 * 4;
const PUT: u8 = 0;
const TOMBSTONE: u8 = 1;

/// A decoded version record: a live value or the tombstone a delete leaves in history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Version {
    Put(KeyValue),
    Tombstone { mod_revision: i64 },
}

pub(crate) fn encode_put(kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + kv.value.len());
    out.push(PUT);
    for n in [kv.mod_revision, kv.create_revision, kv.version, kv.lease] {
        out.extend_from_slice(&n.to_le_bytes());
    }
    out.extend_from_slice(&kv.value);
    out
}

pub(crate) fn encode_tombstone(mod_revision: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER);
    out.push(TOMBSTONE);
    out.extend_from_slice(&mod_revision.to_le_bytes());
    out.extend_from_slice(&[0u8; 24]);
    out
}

fn read_i64(bytes: &[u8], at: usize) -> i64 {
    let mut buf = [0u8; 8];
    buf.copy_from_slice(&bytes[at..at + 8]);
    i64::from_le_bytes(buf)
}

/// Decodes a version record of `key`; None if the bytes are not a record (corruption).
pub(crate) fn decode_version(key: &[u8], bytes: &[u8]) -> Option<Version> {
    if bytes.len() < HEADER {
        return None;
    }
    let mod_revision = read_i64(bytes, 1);
    match bytes[0] {
        PUT => Some(Version::Put(KeyValue {
            key: Bytes::copy_from_slice(key),
            value: Bytes::copy_from_slice(&bytes[HEADER..]),
            mod_revision,
            create_revision: read_i64(bytes, 9),
            version: read_i64(bytes, 17),
            lease: read_i64(bytes, 25),
        })),
        TOMBSTONE => Some(Version::Tombstone { mod_revision }),
        _ => None,
    }
}

/// Decodes only the header fields of a live record (no value copy): `(mod, lease)`.
pub(crate) fn peek_put(bytes: &[u8]) -> Option<(i64, i64)> {
    (bytes.len() >= HEADER && bytes[0] == PUT).then(|| (read_i64(bytes, 1), read_i64(bytes, 25)))
}

/// One key changed at a revision, with the mod revision of the version it replaced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LogEntry {
    pub key: Vec<u8>,
    pub prev_revision: i64,
}

pub(crate) fn encode_log(entries: &[LogEntry]) -> Vec<u8> {
    let size = entries.iter().map(|e| 12 + e.key.len()).sum();
    let mut out = Vec::with_capacity(size);
    for e in entries {
        out.extend_from_slice(&(e.key.len() as u32).to_le_bytes());
        out.extend_from_slice(&e.key);
        out.extend_from_slice(&e.prev_revision.to_le_bytes());
    }
    out
}

pub(crate) fn decode_log(mut bytes: &[u8]) -> Option<Vec<LogEntry>> {
    let mut entries = Vec::new();
    while !bytes.is_empty() {
        let len_bytes: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
        let len = u32::from_le_bytes(len_bytes) as usize;
        let key = bytes.get(4..4 + len)?.to_vec();
        let prev_bytes: [u8; 8] = bytes.get(4 + len..12 + len)?.try_into().ok()?;
        entries.push(LogEntry {
            key,
            prev_revision: i64::from_le_bytes(prev_bytes),
        });
        bytes = &bytes[12 + len..];
    }
    Some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_records_round_trip() {
        let kv = KeyValue {
            key: Bytes::from_static(b"/registry/pods/a"),
            value: Bytes::from_static(b"{\"x\":1}"),
            create_revision: 3,
            mod_revision: 9,
            version: 4,
            lease: 77,
        };
        let bytes = encode_put(&kv);
        assert_eq!(
            decode_version(&kv.key, &bytes),
            Some(Version::Put(kv.clone()))
        );
        assert_eq!(peek_put(&bytes), Some((9, 77)));
    }

    #[test]
    fn tombstones_round_trip_and_are_not_puts() {
        let bytes = encode_tombstone(12);
        assert_eq!(
            decode_version(b"k", &bytes),
            Some(Version::Tombstone { mod_revision: 12 })
        );
        assert_eq!(peek_put(&bytes), None);
    }

    #[test]
    fn garbage_is_refused_not_misread() {
        assert_eq!(decode_version(b"k", &[0u8; 5]), None);
        assert_eq!(decode_version(b"k", &[9u8; 40]), None);
        assert_eq!(decode_log(&[5, 0, 0, 0, b'a']), None);
    }

    #[test]
    fn log_records_round_trip() {
        let entries = vec![
            LogEntry {
                key: b"a".to_vec(),
                prev_revision: 0,
            },
            LogEntry {
                key: b"/registry/x".to_vec(),
                prev_revision: 41,
            },
        ];
        assert_eq!(decode_log(&encode_log(&entries)), Some(entries));
        assert_eq!(decode_log(&[]), Some(vec![]));
    }
}
