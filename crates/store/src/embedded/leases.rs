//! Lease deadlines, in memory. As in etcd, keep-alives are not written to disk: after a
//! restart every lease gets its full TTL again, which can only extend, never cut, a life.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Default)]
struct Deadlines {
    by_id: HashMap<i64, (i64, Instant)>,
    by_deadline: BTreeSet<(Instant, i64)>,
}

#[derive(Default)]
pub(crate) struct LeaseClock {
    inner: Mutex<Deadlines>,
}

impl LeaseClock {
    fn lock(&self) -> std::sync::MutexGuard<'_, Deadlines> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts (or restarts) a lease's countdown from `now`.
    pub fn arm(&self, id: i64, ttl: i64, now: Instant) {
        let mut d = self.lock();
        let deadline = now + Duration::from_secs(ttl.max(0) as u64);
        if let Some((_, old)) = d.by_id.insert(id, (ttl, deadline)) {
            d.by_deadline.remove(&(old, id));
        }
        d.by_deadline.insert((deadline, id));
    }

    /// Renews a live lease; None if it is unknown or already being expired.
    pub fn keep_alive(&self, id: i64, now: Instant) -> Option<i64> {
        let ttl = self.lock().by_id.get(&id).map(|(ttl, _)| *ttl)?;
        self.arm(id, ttl, now);
        Some(ttl)
    }

    pub fn remove(&self, id: i64) {
        let mut d = self.lock();
        if let Some((_, deadline)) = d.by_id.remove(&id) {
            d.by_deadline.remove(&(deadline, id));
        }
    }

    /// Removes and returns every lease whose deadline has passed: from here on a keep-alive
    /// for it fails, and the writer deletes its keys.
    pub fn take_expired(&self, now: Instant) -> Vec<i64> {
        let mut d = self.lock();
        let mut expired = Vec::new();
        while let Some(&(deadline, id)) = d.by_deadline.first() {
            if deadline > now {
                break;
            }
            d.by_deadline.pop_first();
            d.by_id.remove(&id);
            expired.push(id);
        }
        expired
    }

    /// Time until the next lease expires, if any.
    pub fn until_next(&self, now: Instant) -> Option<Duration> {
        self.lock()
            .by_deadline
            .first()
            .map(|(deadline, _)| deadline.saturating_duration_since(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_expire_in_deadline_order_and_keep_alive_postpones() {
        let clock = LeaseClock::default();
        let t0 = Instant::now();
        clock.arm(1, 5, t0);
        clock.arm(2, 10, t0);
        assert_eq!(clock.until_next(t0), Some(Duration::from_secs(5)));
        assert_eq!(clock.keep_alive(1, t0 + Duration::from_secs(4)), Some(5));
        // Lease 1 now ends at t0+9 (renewed at t0+4), lease 2 at t0+10.
        assert!(clock.take_expired(t0 + Duration::from_secs(6)).is_empty());
        assert_eq!(clock.take_expired(t0 + Duration::from_secs(9)), vec![1]);
        assert_eq!(clock.take_expired(t0 + Duration::from_secs(20)), vec![2]);
        assert_eq!(clock.keep_alive(1, t0), None);
        assert_eq!(clock.until_next(t0), None);
    }

    #[test]
    fn removed_leases_neither_expire_nor_renew() {
        let clock = LeaseClock::default();
        let t0 = Instant::now();
        clock.arm(7, 1, t0);
        clock.remove(7);
        assert!(clock.take_expired(t0 + Duration::from_secs(5)).is_empty());
        assert_eq!(clock.keep_alive(7, t0), None);
    }
}
