//! A de-duplicating work queue of keys, with client-go's guarantees:
//!
//! - a key queued several times before a worker takes it is processed once;
//! - a key is never handed to two workers at once: re-adding it while it is being
//!   processed marks it dirty, and it is queued again when the worker calls [`done`];
//! - [`add_after`] delays an add (the earliest pending delay wins);
//! - [`add_rate_limited`] delays by a per-key exponential backoff (5 ms doubling, capped)
//!   that [`forget`] resets after a success.
//!
//! [`done`]: WorkQueue::done
//! [`add_after`]: WorkQueue::add_after
//! [`add_rate_limited`]: WorkQueue::add_rate_limited
//! [`forget`]: WorkQueue::forget

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

const BASE_DELAY: Duration = Duration::from_millis(5);

pub struct WorkQueue<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for WorkQueue<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<T> {
    name: String,
    max_delay: Duration,
    state: Mutex<State<T>>,
    notify: Notify,
}

struct State<T> {
    queue: VecDeque<T>,
    /// Keys waiting to be processed (queued, or re-added while processing).
    dirty: HashSet<T>,
    processing: HashSet<T>,
    /// Earliest pending delayed add per key.
    waiting: HashMap<T, Instant>,
    failures: HashMap<T, u32>,
    shut_down: bool,
}

impl<T: Clone + Eq + Hash + Send + Sync + 'static> WorkQueue<T> {
    /// A queue whose rate-limited backoff is capped at `max_delay`.
    pub fn new(name: impl Into<String>, max_delay: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                name: name.into(),
                max_delay,
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    dirty: HashSet::new(),
                    processing: HashSet::new(),
                    waiting: HashMap::new(),
                    failures: HashMap::new(),
                    shut_down: false,
                }),
                notify: Notify::new(),
            }),
        }
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        // A worker that panicked while holding the lock leaves plain data behind; keep
        // serving rather than poisoning every other loop.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `item` now.
    pub fn add(&self, item: T) {
        let mut s = self.lock();
        if s.shut_down || s.dirty.contains(&item) {
            return;
        }
        s.dirty.insert(item.clone());
        if s.processing.contains(&item) {
            return;
        }
        s.queue.push_back(item);
        drop(s);
        self.inner.notify.notify_one();
    }

    /// Queues `item` after `delay` (at once when zero).
    pub fn add_after(&self, item: T, delay: Duration) {
        if delay.is_zero() {
            return self.add(item);
        }
        let at = Instant::now() + delay;
        {
            let mut s = self.lock();
            if s.shut_down {
                return;
            }
            match s.waiting.get(&item) {
                Some(existing) if *existing <= at => return,
                _ => {
                    s.waiting.insert(item.clone(), at);
                }
            }
        }
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let due = {
                let mut s = queue.lock();
                match s.waiting.get(&item) {
                    // A later, earlier-due add superseded this one only if its time differs.
                    Some(t) if *t == at => {
                        s.waiting.remove(&item);
                        true
                    }
                    _ => false,
                }
            };
            if due {
                queue.add(item);
            }
        });
    }

    /// Queues `item` after its backoff: 5 ms doubling per consecutive failure, capped.
    pub fn add_rate_limited(&self, item: T) {
        let delay = {
            let mut s = self.lock();
            let n = s.failures.entry(item.clone()).or_insert(0);
            let delay = backoff(*n, self.inner.max_delay);
            *n = n.saturating_add(1);
            delay
        };
        self.add_after(item, delay);
    }

    /// Clears `item`'s failure count (call after a success).
    pub fn forget(&self, item: &T) {
        self.lock().failures.remove(item);
    }

    /// How many times `item` failed in a row.
    pub fn failures(&self, item: &T) -> u32 {
        self.lock().failures.get(item).copied().unwrap_or(0)
    }

    /// The next key to process, waiting for one; `None` once shut down.
    pub async fn get(&self) -> Option<T> {
        loop {
            let notified = self.inner.notify.notified();
            {
                let mut s = self.lock();
                if s.shut_down {
                    return None;
                }
                if let Some(item) = s.queue.pop_front() {
                    s.dirty.remove(&item);
                    s.processing.insert(item.clone());
                    // Wake another waiter if more work remains.
                    if !s.queue.is_empty() {
                        self.inner.notify.notify_one();
                    }
                    return Some(item);
                }
            }
            notified.await;
        }
    }

    /// Marks `item` processed; if it was re-added meanwhile it is queued again.
    pub fn done(&self, item: &T) {
        let mut s = self.lock();
        s.processing.remove(item);
        if s.dirty.contains(item) {
            s.queue.push_back(item.clone());
            drop(s);
            self.inner.notify.notify_one();
        }
    }

    /// Stops handing out keys; waiting `get`s return `None`.
    pub fn shut_down(&self) {
        self.lock().shut_down = true;
        self.inner.notify.notify_waiters();
    }

    /// Keys queued and not yet taken.
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The delay before retry number `failures` (0-based).
pub fn backoff(failures: u32, max: Duration) -> Duration {
    let factor = 1u64.checked_shl(failures.min(40)).unwrap_or(u64::MAX);
    let nanos = (BASE_DELAY.as_nanos() as u64).saturating_mul(factor);
    Duration::from_nanos(nanos).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn duplicates_collapse_and_order_is_kept() {
        let q = WorkQueue::new("t", Duration::from_secs(1));
        q.add("a");
        q.add("b");
        q.add("a");
        assert_eq!(q.len(), 2);
        assert_eq!(q.get().await, Some("a"));
        assert_eq!(q.get().await, Some("b"));
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn a_key_being_processed_is_requeued_after_done_not_handed_out_twice() {
        let q = WorkQueue::new("t", Duration::from_secs(1));
        q.add("a");
        let a = q.get().await.unwrap();
        q.add("a");
        assert!(q.is_empty(), "must not be handed to a second worker");
        q.done(&a);
        assert_eq!(q.len(), 1);
        assert_eq!(q.get().await, Some("a"));
        q.done(&"a");
        assert!(q.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_add_arrives_after_the_delay_and_earliest_wins() {
        let q = WorkQueue::new("t", Duration::from_secs(1));
        q.add_after("a", Duration::from_secs(10));
        q.add_after("a", Duration::from_secs(2));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(q.is_empty());
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(q.len(), 1);
        assert_eq!(q.get().await, Some("a"));
        q.done(&"a");
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert!(q.is_empty(), "the superseded 10 s add must not fire");
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let max = Duration::from_secs(60);
        assert_eq!(backoff(0, max), Duration::from_millis(5));
        assert_eq!(backoff(3, max), Duration::from_millis(40));
        assert_eq!(backoff(30, max), max);
        assert_eq!(backoff(u32::MAX, max), max);
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limited_adds_back_off_until_forgotten() {
        let q = WorkQueue::new("t", Duration::from_secs(60));
        q.add_rate_limited("a");
        q.add_rate_limited("a");
        assert_eq!(q.failures(&"a"), 2);
        q.forget(&"a");
        assert_eq!(q.failures(&"a"), 0);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(q.get().await, Some("a"));
    }

    #[tokio::test]
    async fn shut_down_wakes_waiting_workers() {
        let q: WorkQueue<&str> = WorkQueue::new("t", Duration::from_secs(1));
        let q2 = q.clone();
        let waiter = tokio::spawn(async move { q2.get().await });
        tokio::task::yield_now().await;
        q.shut_down();
        assert_eq!(waiter.await.unwrap(), None);
    }
}
