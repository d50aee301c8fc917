//! Expectations: how many creates and deletes a controller has issued for a key but not
//! yet seen come back through its informer. While any are outstanding the cache is known
//! to be stale for that key, so the controller must not act on it again (it would
//! create duplicates). Expectations expire after five minutes in case a watch event is
//! never seen (as upstream's ExpectationsTimeout).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Default)]
struct Pending {
    adds: i64,
    dels: i64,
    at: Option<Instant>,
}

pub struct Expectations<T> {
    map: Mutex<HashMap<T, Pending>>,
}

impl<T: Eq + Hash + Clone> Default for Expectations<T> {
    fn default() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<T: Eq + Hash + Clone> Expectations<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<T, Pending>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the cache can be trusted for `key`: nothing outstanding, or expired.
    pub fn satisfied(&self, key: &T) -> bool {
        match self.lock().get(key) {
            None => true,
            Some(p) => (p.adds <= 0 && p.dels <= 0) || p.at.is_none_or(|t| t.elapsed() > TIMEOUT),
        }
    }

    /// Records that `adds` creates and `dels` deletes are about to be issued.
    pub fn expect(&self, key: &T, adds: usize, dels: usize) {
        self.lock().insert(
            key.clone(),
            Pending {
                adds: adds as i64,
                dels: dels as i64,
                at: Some(Instant::now()),
            },
        );
    }

    /// A create was observed (or failed, so will never be observed).
    pub fn creation_observed(&self, key: &T) {
        if let Some(p) = self.lock().get_mut(key) {
            p.adds -= 1;
        }
    }

    /// A delete was observed (or failed).
    pub fn deletion_observed(&self, key: &T) {
        if let Some(p) = self.lock().get_mut(key) {
            p.dels -= 1;
        }
    }

    /// Forgets `key` (its object was deleted).
    pub fn forget(&self, key: &T) {
        self.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outstanding_creates_hold_the_key_until_observed() {
        let e = Expectations::default();
        assert!(e.satisfied(&"rs"));
        e.expect(&"rs", 2, 1);
        assert!(!e.satisfied(&"rs"));
        e.creation_observed(&"rs");
        e.creation_observed(&"rs");
        assert!(!e.satisfied(&"rs"));
        e.deletion_observed(&"rs");
        assert!(e.satisfied(&"rs"));
        e.expect(&"rs", 1, 0);
        e.forget(&"rs");
        assert!(e.satisfied(&"rs"));
    }
}
