//! The scheduling queue (upstream's PriorityQueue), without clocks or sockets: callers
//! pass `now`.
//!
//! - active: pods ready to try, highest `spec.priority` first, then oldest enqueue;
//! - backoff: pods that failed, until their per-pod backoff (initial × 2^(attempts−1),
//!   capped) runs out;
//! - unschedulable: pods no node fits, until a cluster event that may help them (one
//!   touching a plugin that rejected them) or until they have waited the flush interval.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use skiff_runtime::ObjectKey;

const STALE_SCAN_INTERVAL: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Active,
    Backoff(Instant),
    Unschedulable(Instant),
    InFlight,
}

struct Entry {
    pod: Arc<Pod>,
    priority: i32,
    attempts: u32,
    last_attempt: Option<Instant>,
    /// Plugins (bits of [`crate::plugins::Plugin::bit`]) that rejected it last time; 0
    /// means any event may help.
    rejected_by: u16,
    place: Place,
    generation: u64,
    /// Set when a pod update arrives during its own attempt.
    updated_in_flight: bool,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct ActiveItem {
    priority: i32,
    order: Reverse<(Instant, u64)>,
    generation: u64,
    key: ObjectKey,
}

pub struct SchedulingQueue {
    initial_backoff: Duration,
    max_backoff: Duration,
    max_unschedulable: Duration,
    entries: HashMap<ObjectKey, Entry>,
    active: BinaryHeap<ActiveItem>,
    backoff: BinaryHeap<Reverse<(Instant, u64, ObjectKey)>>,
    /// Keys in the unschedulable place, so events need not scan every pending pod.
    parked: HashSet<ObjectKey>,
    /// When parked pods were last checked against the flush interval (upstream checks
    /// every 30 s).
    last_stale_scan: Option<Instant>,
    seq: u64,
}

/// A pod handed out for one scheduling attempt.
pub struct Popped {
    pub key: ObjectKey,
    pub pod: Arc<Pod>,
    pub attempts: u32,
}

impl SchedulingQueue {
    pub fn new(
        initial_backoff: Duration,
        max_backoff: Duration,
        max_unschedulable: Duration,
    ) -> Self {
        Self {
            initial_backoff,
            max_backoff,
            max_unschedulable,
            entries: HashMap::new(),
            active: BinaryHeap::new(),
            backoff: BinaryHeap::new(),
            parked: HashSet::new(),
            last_stale_scan: None,
            seq: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, key: &ObjectKey) -> bool {
        self.entries.contains_key(key)
    }

    /// Number of pods in each place: (active, backoff, unschedulable, in flight).
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let mut c = (0, 0, 0, 0);
        for e in self.entries.values() {
            match e.place {
                Place::Active => c.0 += 1,
                Place::Backoff(_) => c.1 += 1,
                Place::Unschedulable(_) => c.2 += 1,
                Place::InFlight => c.3 += 1,
            }
        }
        c
    }

    fn backoff_for(&self, attempts: u32) -> Duration {
        let shift = attempts.saturating_sub(1).min(20);
        (self.initial_backoff * (1u32 << shift)).min(self.max_backoff)
    }

    fn set_place(&mut self, key: &ObjectKey, place: Place, now: Instant) {
        self.seq += 1;
        let seq = self.seq;
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        e.generation = seq;
        e.place = place;
        if matches!(place, Place::Unschedulable(_)) {
            self.parked.insert(key.clone());
        } else {
            self.parked.remove(key);
        }
        match place {
            Place::Active => self.active.push(ActiveItem {
                priority: e.priority,
                order: Reverse((now, seq)),
                generation: seq,
                key: key.clone(),
            }),
            Place::Backoff(until) => self.backoff.push(Reverse((until, seq, key.clone()))),
            Place::Unschedulable(_) | Place::InFlight => {}
        }
    }

    /// Where a pod goes when something may have made it schedulable: backoff if its
    /// backoff has not run out, else active.
    fn requeue(&mut self, key: &ObjectKey, now: Instant) {
        let Some(e) = self.entries.get(key) else {
            return;
        };
        let until = e
            .last_attempt
            .map(|t| t + self.backoff_for(e.attempts))
            .filter(|u| *u > now);
        match until {
            Some(u) => self.set_place(key, Place::Backoff(u), now),
            None => self.set_place(key, Place::Active, now),
        }
    }

    /// A pending pod was added or changed.
    pub fn upsert(&mut self, key: ObjectKey, pod: Arc<Pod>, now: Instant) {
        let priority = pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
        match self.entries.get_mut(&key) {
            None => {
                self.entries.insert(
                    key.clone(),
                    Entry {
                        pod,
                        priority,
                        attempts: 0,
                        last_attempt: None,
                        rejected_by: 0,
                        place: Place::Active,
                        generation: 0,
                        updated_in_flight: false,
                    },
                );
                self.set_place(&key, Place::Active, now);
            }
            Some(e) => {
                e.pod = pod;
                e.priority = priority;
                match e.place {
                    Place::InFlight => e.updated_in_flight = true,
                    // An update may make it schedulable (upstream re-evaluates on it).
                    Place::Unschedulable(_) => self.requeue(&key, now),
                    Place::Active | Place::Backoff(_) => {}
                }
            }
        }
    }

    /// A pending pod changed only in ways that cannot make it schedulable (its status,
    /// e.g. our own PodScheduled condition): keep the newer object, leave it in place.
    pub fn refresh(&mut self, key: &ObjectKey, pod: Arc<Pod>) {
        if let Some(e) = self.entries.get_mut(key) {
            e.pod = pod;
        }
    }

    pub fn delete(&mut self, key: &ObjectKey) {
        self.entries.remove(key);
        self.parked.remove(key);
    }

    /// Moves backoff pods whose time is up to active, and pods that have been
    /// unschedulable longer than the flush interval to backoff or active.
    pub fn flush(&mut self, now: Instant) {
        while let Some(Reverse((until, seq, _))) = self.backoff.peek() {
            if *until > now {
                break;
            }
            let seq = *seq;
            let Some(Reverse((_, _, key))) = self.backoff.pop() else {
                break;
            };
            if self.entries.get(&key).is_some_and(|e| e.generation == seq) {
                self.set_place(&key, Place::Active, now);
            }
        }
        let scan_due = self
            .last_stale_scan
            .is_none_or(|t| now.duration_since(t) >= STALE_SCAN_INTERVAL);
        if !scan_due {
            return;
        }
        self.last_stale_scan = Some(now);
        let stale: Vec<ObjectKey> = self
            .parked
            .iter()
            .filter(|k| {
                self.entries.get(*k).is_some_and(|e| {
                    matches!(e.place, Place::Unschedulable(since) if now.duration_since(since) >= self.max_unschedulable)
                })
            })
            .cloned()
            .collect();
        for key in stale {
            self.requeue(&key, now);
        }
    }

    /// The next pod to try, if any is active.
    pub fn pop(&mut self, now: Instant) -> Option<Popped> {
        self.flush(now);
        while let Some(item) = self.active.pop() {
            let Some(e) = self.entries.get_mut(&item.key) else {
                continue;
            };
            if e.generation != item.generation || e.place != Place::Active {
                continue;
            }
            e.place = Place::InFlight;
            e.attempts += 1;
            e.last_attempt = Some(now);
            e.updated_in_flight = false;
            return Some(Popped {
                key: item.key,
                pod: e.pod.clone(),
                attempts: e.attempts,
            });
        }
        None
    }

    /// The attempt found no node: park the pod until an event involving one of the
    /// plugins in `rejected_by` (bits), or backoff if it changed meanwhile.
    pub fn unschedulable(&mut self, key: &ObjectKey, rejected_by: u16, now: Instant) {
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        e.rejected_by = rejected_by;
        if e.updated_in_flight {
            self.requeue(key, now);
        } else {
            self.set_place(key, Place::Unschedulable(now), now);
        }
    }

    /// The attempt failed for another reason (bind error): retry after backoff.
    pub fn error(&mut self, key: &ObjectKey, now: Instant) {
        let backoff = self.backoff_for(self.attempts(key));
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        e.last_attempt = Some(now);
        let until = now + backoff;
        self.set_place(key, Place::Backoff(until), now);
    }

    /// Puts back a pod whose bind failed (it left the queue when it was assumed).
    pub fn readd_after_error(
        &mut self,
        key: ObjectKey,
        pod: Arc<Pod>,
        attempts: u32,
        now: Instant,
    ) {
        self.upsert(key.clone(), pod, now);
        if let Some(e) = self.entries.get_mut(&key) {
            e.attempts = attempts;
        }
        self.error(&key, now);
    }

    /// The pod was assumed onto a node: it leaves the queue.
    pub fn done(&mut self, key: &ObjectKey) {
        self.delete(key);
    }

    /// A cluster event that may help pods rejected by any plugin in `plugins` (bits):
    /// moves them out of the unschedulable set.
    pub fn move_for(&mut self, plugins: u16, now: Instant) {
        if self.parked.is_empty() {
            return;
        }
        let keys: Vec<ObjectKey> = self
            .parked
            .iter()
            .filter(|k| {
                self.entries
                    .get(*k)
                    .is_some_and(|e| e.rejected_by == 0 || e.rejected_by & plugins != 0)
            })
            .cloned()
            .collect();
        for key in keys {
            self.requeue(&key, now);
        }
    }

    /// When the earliest backoff ends (for the caller's timer).
    pub fn next_backoff(&self) -> Option<Instant> {
        self.backoff.peek().map(|Reverse((t, _, _))| *t)
    }

    /// Whether an active pod waits.
    pub fn has_active(&self) -> bool {
        !self.active.is_empty()
    }

    pub fn attempts(&self, key: &ObjectKey) -> u32 {
        self.entries.get(key).map_or(0, |e| e.attempts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, priority: i32) -> (ObjectKey, Arc<Pod>) {
        let p: Pod = serde_json::from_value(json!({"metadata": {"name": name, "namespace": "ns"}, "spec": {"containers": [], "priority": priority}})).unwrap();
        (ObjectKey::new(Some("ns"), name), Arc::new(p))
    }

    fn q() -> SchedulingQueue {
        SchedulingQueue::new(
            Duration::from_secs(1),
            Duration::from_secs(10),
            Duration::from_secs(300),
        )
    }

    #[test]
    fn priority_then_enqueue_order() {
        let mut q = q();
        let t0 = Instant::now();
        for (i, (name, prio)) in [("low-old", 0), ("high", 100), ("low-new", 0), ("mid", 50)]
            .into_iter()
            .enumerate()
        {
            let (k, p) = pod(name, prio);
            q.upsert(k, p, t0 + Duration::from_millis(i as u64));
        }
        let order: Vec<String> =
            std::iter::from_fn(|| q.pop(t0 + Duration::from_secs(1)).map(|p| p.key.name)).collect();
        assert_eq!(order, ["high", "mid", "low-old", "low-new"]);
    }

    #[test]
    fn unschedulable_pods_wait_for_a_relevant_event_then_respect_backoff() {
        let mut q = q();
        let t0 = Instant::now();
        let (k, p) = pod("p", 0);
        q.upsert(k.clone(), p, t0);
        assert!(q.pop(t0).is_some());
        q.unschedulable(&k, 0b10, t0);
        assert!(q.pop(t0 + Duration::from_secs(5)).is_none(), "parked");
        q.move_for(0b01, t0 + Duration::from_secs(5));
        assert!(
            q.pop(t0 + Duration::from_secs(5)).is_none(),
            "irrelevant event"
        );
        q.move_for(0b10, t0 + Duration::from_millis(500));
        assert!(
            q.pop(t0 + Duration::from_millis(600)).is_none(),
            "still backing off (1 s)"
        );
        let p = q
            .pop(t0 + Duration::from_millis(1000))
            .expect("backoff over");
        assert_eq!(p.attempts, 2);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let q = q();
        let got: Vec<u64> = (1..=6).map(|a| q.backoff_for(a).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn unschedulable_pods_are_flushed_after_the_interval() {
        let mut q = q();
        let t0 = Instant::now();
        let (k, p) = pod("p", 0);
        q.upsert(k.clone(), p, t0);
        q.pop(t0);
        q.unschedulable(&k, 0b1, t0);
        assert!(q.pop(t0 + Duration::from_secs(299)).is_none());
        assert!(
            q.pop(t0 + Duration::from_secs(330)).is_some(),
            "checked every 30 s"
        );
    }

    #[test]
    fn an_update_during_the_attempt_requeues_with_backoff() {
        let mut q = q();
        let t0 = Instant::now();
        let (k, p) = pod("p", 0);
        q.upsert(k.clone(), p.clone(), t0);
        q.pop(t0);
        q.upsert(k.clone(), p, t0);
        q.unschedulable(&k, 0b1, t0);
        assert!(q.pop(t0 + Duration::from_secs(1)).is_some());
    }

    #[test]
    fn errors_back_off() {
        let mut q = q();
        let t0 = Instant::now();
        let (k, p) = pod("p", 0);
        q.upsert(k.clone(), p, t0);
        q.pop(t0);
        q.error(&k, t0);
        assert!(q.pop(t0 + Duration::from_millis(999)).is_none());
        assert!(q.pop(t0 + Duration::from_secs(1)).is_some());
        q.error(&k, t0 + Duration::from_secs(1));
        assert!(q.pop(t0 + Duration::from_millis(2999)).is_none());
        assert!(q.pop(t0 + Duration::from_secs(3)).is_some());
    }
}
