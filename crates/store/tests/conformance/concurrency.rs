//! Concurrency: CAS under contention, many watchers under load, watches opened mid-stream.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use skiff_store::{Store, WriteOutcome};

use crate::support::{
    current_revision, events_before_fence, get, next_event, ok, put, text, wait_until, watch,
};

const COUNTER: &str = "/cas/counter";
const CAS_WRITERS: usize = 16;
const CAS_ROUNDS: usize = 30;

/// Acknowledged writes: revision → (key, value).
type Acks = BTreeMap<i64, (String, String)>;
/// One write as a watcher saw it or a writer had it acknowledged: (revision, key, value).
type Seen = (i64, String, String);

/// Reads the counter: (value, mod revision).
async fn read_counter(store: &dyn Store) -> (u64, i64) {
    let kv = get(store, COUNTER).await.expect("the counter exists");
    let value = text(&kv.value).parse().expect("the counter is a number");
    (value, kv.mod_revision)
}

/// Compare-and-swaps the counter from `seen` to `seen + 1`; returns whether it won.
async fn increment(store: &dyn Store, (seen, mod_revision): (u64, i64)) -> bool {
    let outcome = ok(
        "counter CAS",
        store
            .update(
                COUNTER.as_bytes(),
                (seen + 1).to_string().into(),
                mod_revision,
                0,
            )
            .await,
    );
    match outcome {
        WriteOutcome::Done { .. } => true,
        WriteOutcome::Conflict { current } => {
            let current = current.expect("the counter is never deleted");
            assert!(
                current.mod_revision > mod_revision,
                "a CAS may only lose to a later write"
            );
            false
        }
    }
}

async fn join_all<T>(handles: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.expect("task panicked"));
    }
    out
}

pub async fn check_concurrent_cas_has_exactly_one_winner_per_round(store: Arc<dyn Store>) {
    put(&*store, COUNTER, "0").await;
    let barrier = Arc::new(tokio::sync::Barrier::new(CAS_WRITERS));
    let handles = (0..CAS_WRITERS)
        .map(|_| {
            let (store, barrier) = (store.clone(), barrier.clone());
            tokio::spawn(async move {
                let mut wins = Vec::with_capacity(CAS_ROUNDS);
                for _ in 0..CAS_ROUNDS {
                    let seen = read_counter(&*store).await;
                    barrier.wait().await; // every writer has read the same version
                    wins.push(increment(&*store, seen).await);
                    barrier.wait().await; // every attempt is over before the next read
                }
                wins
            })
        })
        .collect();
    let wins = join_all(handles).await;
    for round in 0..CAS_ROUNDS {
        let winners = wins.iter().filter(|w| w[round]).count();
        assert_eq!(winners, 1, "round {round}: exactly one CAS must win");
    }
    assert_eq!(read_counter(&*store).await.0, CAS_ROUNDS as u64);
}

pub async fn check_concurrent_cas_loses_no_increment(store: Arc<dyn Store>) {
    put(&*store, COUNTER, "0").await;
    let handles = (0..CAS_WRITERS)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut won = 0u64;
                for _ in 0..CAS_ROUNDS {
                    let seen = read_counter(&*store).await;
                    won += u64::from(increment(&*store, seen).await);
                }
                won
            })
        })
        .collect();
    let successes: u64 = join_all(handles).await.into_iter().sum();
    assert!(successes > 0, "someone must win");
    assert_eq!(
        read_counter(&*store).await.0,
        successes,
        "every successful CAS is one increment: none lost, none doubled"
    );
}

/// Writers putting `{prefix}w{n}/{i % 10}` (with an unwatched `/outside` write every fifth
/// time) until `per_writer` writes each or `stop` is set; counts acknowledged writes.
struct Writers {
    handles: Vec<tokio::task::JoinHandle<Acks>>,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
}

impl Writers {
    fn start(store: &Arc<dyn Store>, prefix: &str, writers: usize, per_writer: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicUsize::new(0));
        let handles = (0..writers)
            .map(|w| {
                let (store, stop, acked) = (store.clone(), stop.clone(), acked.clone());
                let prefix = prefix.to_string();
                tokio::spawn(async move {
                    let mut acks = Acks::new();
                    for i in 0..per_writer {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let (key, value) = (format!("{prefix}w{w}/{}", i % 10), i.to_string());
                        let rev = put(&*store, &key, value.clone()).await;
                        acks.insert(rev, (key, value));
                        acked.fetch_add(1, Ordering::Relaxed);
                        if i % 5 == 0 {
                            put(&*store, format!("/outside{prefix}w{w}"), "x").await;
                        }
                    }
                    acks
                })
            })
            .collect();
        Self {
            handles,
            stop,
            acked,
        }
    }

    async fn wait_for_acks(&self, at_least: usize) {
        let acked = self.acked.clone();
        let reached = wait_until(Duration::from_secs(60), || {
            let acked = acked.clone();
            async move { acked.load(Ordering::Relaxed) >= at_least }
        })
        .await;
        assert!(
            reached,
            "writers did not reach {at_least} acknowledged writes"
        );
    }

    fn acked(&self) -> usize {
        self.acked.load(Ordering::Relaxed)
    }

    /// Stops the writers and returns every acknowledged write.
    async fn stop(self) -> Acks {
        self.stop.store(true, Ordering::Relaxed);
        self.join().await
    }

    /// Waits for the writers to finish their writes; returns every acknowledged write.
    async fn join(self) -> Acks {
        let mut all = Acks::new();
        for acks in join_all(self.handles).await {
            for (rev, write) in acks {
                assert!(
                    all.insert(rev, write).is_none(),
                    "two writes acknowledged at revision {rev}"
                );
            }
        }
        all
    }
}

pub async fn check_many_watchers_see_every_acknowledged_write_once_in_order(store: Arc<dyn Store>) {
    const WATCHERS: usize = 20;
    let prefix = "/many/";
    let from = current_revision(&*store).await;
    let done_key = format!("{prefix}~done");
    let mut watchers = Vec::with_capacity(WATCHERS);
    for _ in 0..WATCHERS {
        let mut stream = watch(&*store, prefix, from).await;
        let done_key = done_key.clone();
        watchers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            loop {
                let event = next_event(&mut stream).await;
                let key = text(&event.kv.key);
                if key == done_key {
                    return seen;
                }
                seen.push((event.revision(), key, text(&event.kv.value)));
            }
        }));
    }

    let acks = Writers::start(&store, prefix, 4, 125).join().await;
    assert_eq!(acks.len(), 500);
    put(&*store, &done_key, "done").await;

    let expected: Vec<Seen> = acks.into_iter().map(|(rev, (k, v))| (rev, k, v)).collect();
    for (i, seen) in join_all(watchers).await.into_iter().enumerate() {
        assert_saw_exactly(&format!("watcher {i}"), &seen, &expected);
    }
}

/// A watcher saw exactly the `expected` writes: each once, in strictly increasing revisions.
fn assert_saw_exactly(who: &str, seen: &[Seen], expected: &[Seen]) {
    assert!(
        seen.windows(2).all(|w| w[0].0 < w[1].0),
        "{who}: revisions must strictly increase"
    );
    assert_eq!(
        seen.len(),
        expected.len(),
        "{who}: every acknowledged write exactly once"
    );
    assert!(
        seen == expected,
        "{who}: first difference at {:?}",
        seen.iter().zip(expected).find(|(a, b)| a != b)
    );
}

pub async fn check_watch_started_during_writes_sees_exactly_the_later_writes(
    store: Arc<dyn Store>,
) {
    let prefix = "/mid/";
    let writers = Writers::start(&store, prefix, 4, 5_000);
    writers.wait_for_acks(100).await;
    let from = current_revision(&*store).await;
    let mut stream = watch(&*store, prefix, from).await;
    let acked_at_open = writers.acked();
    writers.wait_for_acks(acked_at_open + 100).await;
    let acks = writers.stop().await;

    let events = events_before_fence(&*store, &mut stream, prefix).await;
    let seen: Vec<Seen> = events
        .iter()
        .map(|e| (e.revision(), text(&e.kv.key), text(&e.kv.value)))
        .collect();
    let expected: Vec<Seen> = acks
        .range(from + 1..)
        .map(|(rev, (k, v))| (*rev, k.clone(), v.clone()))
        .collect();
    assert!(
        expected.len() >= 100,
        "the watch must have run alongside writes"
    );
    assert_saw_exactly(&format!("watch from revision {from}"), &seen, &expected);
}
