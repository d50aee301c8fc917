//! Fixtures (one fresh store per test) and small helpers the checks share.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use skiff_store::{
    EmbeddedOptions, EmbeddedStore, EtcdOptions, EtcdStore, Event, EventKind, KeyValue,
    RangeRequest, Result, Store, Txn, TxnOp, WatchStream, WriteOutcome,
};

/// A whole check; a broken backend fails here instead of hanging the run.
const CHECK_TIMEOUT: Duration = Duration::from_secs(180);
/// One watch event; generous for a loaded 2-core machine.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs `check` against a fresh embedded store in a temporary directory.
pub async fn run_embedded<F, Fut>(name: &str, check: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.redb");
    let store = tokio::task::spawn_blocking(move || {
        EmbeddedStore::open(&path, EmbeddedOptions::default())
            .unwrap_or_else(|e| panic!("opening the embedded store: {e}"))
    })
    .await
    .expect("open task");
    run_check(name, Arc::new(store), check).await;
    drop(dir);
}

/// Runs `check` against a fresh single-member etcd (a real process, killed afterwards).
pub async fn run_etcd<F, Fut>(name: &str, check: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let etcd = tokio::task::spawn_blocking(skiff_testkit::EtcdCluster::start)
        .await
        .expect("etcd start task");
    let connect = EtcdStore::connect(EtcdOptions::new(etcd.endpoints()));
    let store = tokio::time::timeout(Duration::from_secs(30), connect)
        .await
        .expect("connecting to etcd timed out")
        .unwrap_or_else(|e| panic!("connecting to etcd at {:?}: {e}", etcd.endpoints()));
    run_check(name, Arc::new(store), check).await;
    drop(etcd);
}

async fn run_check<F, Fut>(name: &str, store: Arc<dyn Store>, check: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    if tokio::time::timeout(CHECK_TIMEOUT, check(store))
        .await
        .is_err()
    {
        panic!("{name} did not finish within {CHECK_TIMEOUT:?}");
    }
}

/// `assert_err!(result, Pattern)` or `assert_err!(result, Pattern if guard)`: the result is
/// an error matching the pattern; otherwise panics showing what came back.
macro_rules! assert_err {
    ($result:expr, $pattern:pat $(if $guard:expr)?) => {
        match $result {
            Err($pattern) $(if $guard)? => {}
            other => panic!(
                "{}: expected Err({}{}), got {:?}",
                stringify!($result),
                stringify!($pattern),
                stringify!($(if $guard)?),
                other
            ),
        }
    };
}
pub(crate) use assert_err;

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Unwraps a store call, naming what was being done.
pub fn ok<T>(what: &str, result: Result<T>) -> T {
    result.unwrap_or_else(|e| panic!("{what}: {e} ({e:?})"))
}

/// An unconditional put; returns the revision it was written at.
pub async fn put(store: &dyn Store, key: impl AsRef<[u8]>, value: impl Into<Bytes>) -> i64 {
    put_leased(store, key, value, 0).await
}

pub async fn put_leased(
    store: &dyn Store,
    key: impl AsRef<[u8]>,
    value: impl Into<Bytes>,
    lease: i64,
) -> i64 {
    let key = key.as_ref();
    let resp = ok(
        &format!("put {}", text(key)),
        store
            .txn(Txn::new().and_then(TxnOp::put(key, value, lease)))
            .await,
    );
    assert!(resp.succeeded, "an unconditional put must succeed");
    resp.revision
}

/// Deletes an existing key; returns the deletion revision.
pub async fn delete(store: &dyn Store, key: &str) -> i64 {
    match ok(
        &format!("delete {key}"),
        store.delete(key.as_bytes(), None).await,
    ) {
        WriteOutcome::Done { revision, .. } => revision,
        other => panic!("delete {key}: expected Done, got {other:?}"),
    }
}

pub async fn get(store: &dyn Store, key: &str) -> Option<KeyValue> {
    ok(&format!("get {key}"), store.get(key.as_bytes()).await)
}

/// The current value of a key as text, None if missing.
pub async fn value_of(store: &dyn Store, key: &str) -> Option<String> {
    get(store, key).await.map(|kv| text(&kv.value))
}

/// The value of a key as of `revision`, None if it did not exist then.
pub async fn value_at(store: &dyn Store, key: &str, revision: i64) -> Option<String> {
    let resp = ok(
        &format!("get {key} at revision {revision}"),
        store
            .range(RangeRequest::key(key).at_revision(revision))
            .await,
    );
    resp.kvs.first().map(|kv| text(&kv.value))
}

pub async fn current_revision(store: &dyn Store) -> i64 {
    ok("current_revision", store.current_revision().await)
}

/// Keys (as text) of a range response, in the order returned.
pub fn keys_of(kvs: &[KeyValue]) -> Vec<String> {
    kvs.iter().map(|kv| text(&kv.key)).collect()
}

/// The next watch event; panics on an error, the end of the stream or a timeout.
pub async fn next_event(stream: &mut WatchStream) -> Event {
    match tokio::time::timeout(EVENT_TIMEOUT, stream.next()).await {
        Err(_) => panic!("no watch event within {EVENT_TIMEOUT:?}"),
        Ok(None) => panic!("watch stream ended unexpectedly"),
        Ok(Some(Err(e))) => panic!("watch stream failed: {e} ({e:?})"),
        Ok(Some(Ok(event))) => event,
    }
}

/// Opens a watch, bounded in time.
pub async fn watch(store: &dyn Store, prefix: &str, from_revision: i64) -> WatchStream {
    let opened = tokio::time::timeout(EVENT_TIMEOUT, store.watch(prefix.as_bytes(), from_revision))
        .await
        .unwrap_or_else(|_| panic!("opening a watch on {prefix} timed out"));
    ok(
        &format!("watch {prefix} from revision {from_revision}"),
        opened,
    )
}

/// Writes a fence key under `prefix`, then returns every event the stream delivers before
/// the fence: with the fence as the last write, this is "everything the watch saw".
pub async fn events_before_fence(
    store: &dyn Store,
    stream: &mut WatchStream,
    prefix: &str,
) -> Vec<Event> {
    let fence_key = format!("{prefix}~fence");
    let fence_revision = put(store, &fence_key, "fence").await;
    let mut events = Vec::new();
    loop {
        let event = next_event(stream).await;
        if event.revision() >= fence_revision {
            assert_eq!(
                (text(&event.kv.key), event.revision()),
                (fence_key, fence_revision),
                "the fence must be the first event at or after its revision"
            );
            return events;
        }
        events.push(event);
    }
}

/// One line per event, e.g. `put /a=2 prev=1`, `delete /b prev=1`, `put /c=3 prev=-`,
/// so whole event sequences compare in one readable assertion.
pub fn describe(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|event| {
            let prev = event
                .prev_kv
                .as_ref()
                .map_or_else(|| "-".to_string(), |kv| text(&kv.value));
            match event.kind {
                EventKind::Put => format!(
                    "put {}={} prev={prev}",
                    text(&event.kv.key),
                    text(&event.kv.value)
                ),
                EventKind::Delete => format!("delete {} prev={prev}", text(&event.kv.key)),
            }
        })
        .collect()
}

pub fn revisions(events: &[Event]) -> Vec<i64> {
    events.iter().map(Event::revision).collect()
}

/// Polls `condition` every 100 ms until it holds or `deadline` passes; returns whether it
/// held. For effects with a timing window (lease expiry), instead of a fixed sleep.
pub async fn wait_until<F, Fut>(deadline: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = Instant::now() + deadline;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
