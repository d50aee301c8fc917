//! A bounded cache of upstream answers, kept for their TTL (capped: positive answers 5
//! minutes, negative ones 1 minute), answered with the TTLs counted down.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

const MAX_POSITIVE: u32 = 300;
const MAX_NEGATIVE: u32 = 60;

#[derive(Clone, Hash, PartialEq, Eq)]
pub struct Key {
    name: String,
    qtype: u16,
    qclass: u16,
}

impl Key {
    pub fn of(msg: &Message) -> Option<Self> {
        let q = msg.queries().first()?;
        Some(Self {
            name: q.name().to_lowercase().to_ascii(),
            qtype: u16::from(q.query_type()),
            qclass: u16::from(q.query_class()),
        })
    }
}

struct Entry {
    msg: Message,
    stored: Instant,
    expires: Instant,
}

pub struct Cache {
    entries: Mutex<HashMap<Key, Entry>>,
    capacity: usize,
}

impl Cache {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// A cached answer with TTLs reduced by its age, or None.
    pub fn get(&self, key: &Key) -> Option<Message> {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entry = entries.get(key)?;
        if entry.expires <= now {
            entries.remove(key);
            return None;
        }
        let age = now.duration_since(entry.stored).as_secs() as u32;
        let mut msg = entry.msg.clone();
        for r in msg.answers_mut().iter_mut() {
            r.set_ttl(r.ttl().saturating_sub(age));
        }
        for r in msg.name_servers_mut().iter_mut() {
            r.set_ttl(r.ttl().saturating_sub(age));
        }
        Some(msg)
    }

    pub fn put(&self, key: Key, msg: &Message) {
        let Some(ttl) = cache_ttl(msg) else {
            return;
        };
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.capacity {
            entries.retain(|_, e| e.expires > now);
            if entries.len() >= self.capacity {
                if let Some(k) = entries.keys().next().cloned() {
                    entries.remove(&k);
                }
            }
        }
        entries.insert(
            key,
            Entry {
                msg: msg.clone(),
                stored: now,
                expires: now + Duration::from_secs(u64::from(ttl)),
            },
        );
    }

    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }
}

/// How long an answer may be kept: the smallest TTL of its answers; for a negative answer
/// the SOA's minimum (RFC 2308). Failures are not cached.
fn cache_ttl(msg: &Message) -> Option<u32> {
    match msg.response_code() {
        ResponseCode::NoError if !msg.answers().is_empty() => msg
            .answers()
            .iter()
            .map(|r| r.ttl())
            .min()
            .map(|t| t.min(MAX_POSITIVE)),
        ResponseCode::NoError | ResponseCode::NXDomain => {
            let soa = msg
                .name_servers()
                .iter()
                .find(|r| r.record_type() == RecordType::SOA)?;
            let minimum = match soa.data() {
                RData::SOA(s) => s.minimum(),
                _ => 0,
            };
            Some(soa.ttl().min(minimum).min(MAX_NEGATIVE))
        }
        _ => None,
    }
    .filter(|t| *t > 0)
}
