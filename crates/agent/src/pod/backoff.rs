//! Restart back-off as the kubelet keeps it (client-go's flowcontrol.Backoff): per key
//! (pod uid + container), the first restart is immediate, then a container that exits
//! again waits 10 s, 20 s, 40 s ... up to 5 min before the next start. An entry not
//! touched for twice the maximum (10 min: the container ran that long) starts over.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

pub const INITIAL: Duration = Duration::from_secs(10);
pub const MAX: Duration = Duration::from_secs(300);

#[derive(Clone, Copy, Debug)]
struct Entry {
    backoff: Duration,
    last_update: Timestamp,
}

#[derive(Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    entries: HashMap<String, Entry>,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(INITIAL, MAX)
    }
}

fn since(now: Timestamp, then: Timestamp) -> Duration {
    Duration::try_from(now.duration_since(then)).unwrap_or(Duration::ZERO)
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            entries: HashMap::new(),
        }
    }

    fn expired(&self, at: Timestamp, last_update: Timestamp) -> bool {
        since(at, last_update) > self.max * 2
    }

    /// How long is still to wait before restarting after an exit at `finished`, if the
    /// key is backing off at `now`.
    pub fn remaining(&self, key: &str, finished: Timestamp, now: Timestamp) -> Option<Duration> {
        let e = self.entries.get(key)?;
        if self.expired(now, e.last_update) {
            return None;
        }
        let waited = since(now, finished);
        (waited < e.backoff).then(|| e.backoff - waited)
    }

    /// The current back-off of `key` (for the CrashLoopBackOff message).
    pub fn get(&self, key: &str) -> Duration {
        self.entries
            .get(key)
            .map(|e| e.backoff)
            .unwrap_or(Duration::ZERO)
    }

    /// Records a restart for an exit at `finished`: the next wait doubles (up to the
    /// maximum), or starts over when the last one was long ago.
    pub fn next(&mut self, key: &str, finished: Timestamp) {
        let initial = self.initial;
        let max = self.max;
        let expired = self
            .entries
            .get(key)
            .is_some_and(|e| self.expired(finished, e.last_update));
        let e = self.entries.entry(key.to_string()).or_insert(Entry {
            backoff: Duration::ZERO,
            last_update: finished,
        });
        e.backoff = if e.backoff.is_zero() || expired {
            initial
        } else {
            (e.backoff * 2).min(max)
        };
        e.last_update = finished;
    }

    /// Forgets every key starting with `prefix` (a pod that is gone).
    pub fn forget_prefix(&mut self, prefix: &str) {
        self.entries.retain(|k, _| !k.starts_with(prefix));
    }
}

/// Upstream's CrashLoopBackOff waiting message.
pub fn crash_loop_message(
    backoff: Duration,
    container: &str,
    pod: &str,
    namespace: &str,
    uid: &str,
) -> String {
    format!(
        "back-off {} restarting failed container={container} pod={pod}_{namespace}({uid})",
        go_duration(backoff)
    )
}

/// A duration as Go prints it for whole seconds and minutes ("10s", "1m20s", "5m0s").
pub fn go_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else {
        format!("{}m{}s", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    #[test]
    fn first_restart_is_immediate_then_doubles_to_the_cap() {
        let mut b = Backoff::default();
        assert_eq!(b.remaining("k", at(0), at(0)), None);
        b.next("k", at(0));
        // Second exit 1 s later: wait 10 s from that exit.
        assert_eq!(b.remaining("k", at(1), at(2)), Some(Duration::from_secs(9)));
        assert_eq!(b.remaining("k", at(1), at(11)), None);
        b.next("k", at(1));
        assert_eq!(b.get("k"), Duration::from_secs(20));
        for i in 0..10 {
            b.next("k", at(2 + i));
        }
        assert_eq!(b.get("k"), MAX);
    }

    #[test]
    fn a_long_run_resets_the_backoff() {
        let mut b = Backoff::default();
        b.next("k", at(0));
        b.next("k", at(1));
        assert_eq!(b.get("k"), Duration::from_secs(20));
        // Ran for more than 10 minutes before exiting again.
        assert_eq!(b.remaining("k", at(700), at(701)), None);
        b.next("k", at(700));
        assert_eq!(b.get("k"), INITIAL);
        b.forget_prefix("k");
        assert_eq!(b.get("k"), Duration::ZERO);
    }

    #[test]
    fn messages_match_upstream() {
        assert_eq!(
            crash_loop_message(Duration::from_secs(20), "app", "web", "default", "u1"),
            "back-off 20s restarting failed container=app pod=web_default(u1)"
        );
        assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
        assert_eq!(go_duration(Duration::from_secs(80)), "1m20s");
    }
}
