//! Fan-out of committed changes to watchers, with memory bounded in bytes.
//!
//! The writer publishes each committed revision here; watchers read from the ring at their
//! own pace. A watcher that falls behind the ring's oldest entry is not a problem to keep
//! in memory: it replays from the on-disk history instead (see `watch.rs`). So a slow
//! watcher never blocks the writer and never grows memory.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::Event;

/// The events of one revision.
pub(crate) struct Published {
    pub revision: i64,
    pub events: Vec<Event>,
    bytes: usize,
}

struct Ring {
    entries: VecDeque<Arc<Published>>,
    bytes: usize,
}

pub(crate) struct Hub {
    ring: Mutex<Ring>,
    max_bytes: usize,
    /// Newest published revision. The sender is the writer's alone: when the writer stops,
    /// every watcher's `changed()` fails and its stream ends.
    latest: watch::Receiver<i64>,
}

/// What a watcher at revision `after` should do next.
pub(crate) enum Next {
    /// These revisions follow `after` directly.
    Ready(Vec<Arc<Published>>),
    /// The ring no longer reaches back to `after + 1`: replay from disk.
    Replay,
    /// Nothing newer yet.
    Wait,
}

impl Hub {
    /// A hub at `revision`, and the sender the writer publishes with.
    pub fn new(revision: i64, max_bytes: usize) -> (Self, watch::Sender<i64>) {
        let (tx, latest) = watch::channel(revision);
        let hub = Self {
            ring: Mutex::new(Ring {
                entries: VecDeque::new(),
                bytes: 0,
            }),
            max_bytes,
            latest,
        };
        (hub, tx)
    }

    /// The newest published revision; every acknowledged write is at or below it.
    pub fn latest(&self) -> i64 {
        *self.latest.borrow()
    }

    /// A receiver that wakes when a newer revision is published, and errs when the store
    /// closes.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.latest.clone()
    }

    /// Publishes committed revisions, in order.
    pub fn publish(&self, tx: &watch::Sender<i64>, revision: i64, events: Vec<Event>) {
        let bytes = events
            .iter()
            .map(|e| {
                64 + e.kv.key.len()
                    + e.kv.value.len()
                    + e.prev_kv.as_ref().map_or(0, |p| p.value.len())
            })
            .sum();
        {
            let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
            ring.bytes += bytes;
            ring.entries.push_back(Arc::new(Published {
                revision,
                events,
                bytes,
            }));
            while ring.bytes > self.max_bytes && ring.entries.len() > 1 {
                if let Some(old) = ring.entries.pop_front() {
                    ring.bytes -= old.bytes;
                }
            }
        }
        tx.send_replace(revision);
    }

    pub fn next_after(&self, after: i64) -> Next {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        match (ring.entries.front(), ring.entries.back()) {
            (_, Some(last)) if last.revision <= after => Next::Wait,
            (Some(first), _) if first.revision > after + 1 => Next::Replay,
            (None, _) if self.latest() > after => Next::Replay,
            (None, _) => Next::Wait,
            _ => {
                let skip = ring.entries.partition_point(|p| p.revision <= after);
                Next::Ready(ring.entries.iter().skip(skip).cloned().collect())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EventKind, KeyValue};

    fn event(revision: i64, size: usize) -> Event {
        Event {
            kind: EventKind::Put,
            kv: KeyValue {
                value: vec![0u8; size].into(),
                mod_revision: revision,
                ..KeyValue::default()
            },
            prev_kv: None,
        }
    }

    fn revisions(next: Next) -> Vec<i64> {
        match next {
            Next::Ready(list) => list.iter().map(|p| p.revision).collect(),
            Next::Replay => vec![-1],
            Next::Wait => vec![],
        }
    }

    #[test]
    fn watchers_get_what_follows_their_revision() {
        let (hub, tx) = Hub::new(1, 1 << 20);
        assert_eq!(revisions(hub.next_after(1)), Vec::<i64>::new());
        for r in 2..=5 {
            hub.publish(&tx, r, vec![event(r, 10)]);
        }
        assert_eq!(revisions(hub.next_after(1)), vec![2, 3, 4, 5]);
        assert_eq!(revisions(hub.next_after(3)), vec![4, 5]);
        assert_eq!(revisions(hub.next_after(5)), Vec::<i64>::new());
        assert_eq!(hub.latest(), 5);
    }

    #[test]
    fn the_ring_is_bounded_in_bytes_and_laggards_replay() {
        let (hub, tx) = Hub::new(1, 1000);
        for r in 2..=20 {
            hub.publish(&tx, r, vec![event(r, 200)]);
        }
        let held = revisions(hub.next_after(19));
        assert_eq!(held, vec![20]);
        // Revision 2 fell out of memory: a watcher there must read from disk.
        assert_eq!(revisions(hub.next_after(1)), vec![-1]);
    }

    #[test]
    fn a_store_reopened_with_history_on_disk_replays_first() {
        let (hub, _tx) = Hub::new(10, 1 << 20);
        assert_eq!(revisions(hub.next_after(4)), vec![-1]);
        assert_eq!(revisions(hub.next_after(10)), Vec::<i64>::new());
    }
}
