//! Mechanics of this backend the shared conformance suite cannot see: replay from disk
//! after restart and after the in-memory ring has moved on, and purge of compacted history.

use futures::StreamExt;

use super::*;
use crate::{EventKind, Store};

fn small_ring() -> EmbeddedOptions {
    EmbeddedOptions {
        watch_buffer_bytes: 1024,
        ..EmbeddedOptions::default()
    }
}

async fn put(store: &EmbeddedStore, key: &str, value: &str) -> i64 {
    match store
        .create(key.as_bytes(), value.as_bytes().to_vec().into(), 0)
        .await
        .unwrap()
    {
        crate::WriteOutcome::Done { revision, .. } => revision,
        other => {
            let current = store.get(key.as_bytes()).await.unwrap().unwrap();
            match store
                .update(
                    key.as_bytes(),
                    value.as_bytes().to_vec().into(),
                    current.mod_revision,
                    0,
                )
                .await
                .unwrap()
            {
                crate::WriteOutcome::Done { revision, .. } => revision,
                _ => panic!("update failed after {other:?}"),
            }
        }
    }
}

#[tokio::test]
async fn a_watcher_behind_the_ring_replays_from_disk_without_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path().join("s.db"), small_ring()).unwrap();
    let start = store.current_revision().await.unwrap();
    for i in 0..200 {
        put(&store, &format!("/k/{i:03}"), &"v".repeat(100)).await;
    }
    // 200 revisions of ~200 bytes each cannot fit a 1 KiB ring: this must come from disk.
    let mut watch = store.watch(b"/k/", start).await.unwrap();
    for i in 0..200 {
        let event = watch.next().await.unwrap().unwrap();
        assert_eq!(event.kv.key.as_ref(), format!("/k/{i:03}").as_bytes());
        assert_eq!(event.kv.mod_revision, start + 1 + i);
    }
    put(&store, "/k/live", "x").await;
    assert_eq!(
        watch.next().await.unwrap().unwrap().kv.key.as_ref(),
        b"/k/live"
    );
}

#[tokio::test]
async fn history_and_leases_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let store = EmbeddedStore::open(&path, EmbeddedOptions::default()).unwrap();
    let start = store.current_revision().await.unwrap();
    put(&store, "/a", "1").await;
    put(&store, "/a", "2").await;
    let lease = store.lease_grant(60).await.unwrap();
    store
        .create(b"/leased", "x".into(), lease.id)
        .await
        .unwrap();
    store.close().await.unwrap();

    let store = EmbeddedStore::open(&path, EmbeddedOptions::default()).unwrap();
    assert_eq!(store.current_revision().await.unwrap(), start + 3);
    let mut watch = store.watch(b"/a", start).await.unwrap();
    let first = watch.next().await.unwrap().unwrap();
    let second = watch.next().await.unwrap().unwrap();
    assert_eq!(
        (first.kv.value.as_ref(), second.kv.value.as_ref()),
        (&b"1"[..], &b"2"[..])
    );
    assert_eq!(second.prev_kv.unwrap().value.as_ref(), b"1");
    assert_eq!(store.lease_keep_alive(lease.id).await.unwrap(), 60);
    store.lease_revoke(lease.id).await.unwrap();
    assert!(store.get(b"/leased").await.unwrap().is_none());
}

#[tokio::test]
async fn compaction_purges_superseded_versions_but_keeps_what_is_readable() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path().join("s.db"), EmbeddedOptions::default()).unwrap();
    for i in 0..50 {
        put(&store, "/hot", &i.to_string()).await;
    }
    put(&store, "/gone", "x").await;
    store.delete(b"/gone", None).await.unwrap();
    let compact_at = put(&store, "/cold", "c").await;
    put(&store, "/hot", "after").await;
    store.compact(compact_at).await.unwrap();
    // A later write gives the writer a pass to purge in.
    put(&store, "/tick", "t").await;

    let txn = store.shared.db.begin_read().unwrap();
    let versions = txn.open_table(schema::VERSIONS).unwrap();
    let hot: Vec<i64> = versions
        .range((&b"/hot"[..], i64::MIN)..=(&b"/hot"[..], i64::MAX))
        .unwrap()
        .map(|e| e.unwrap().0.value().1)
        .collect();
    // Only the version readable at the compaction point and the one after it remain.
    assert_eq!(hot.len(), 2, "versions of /hot left: {hot:?}");
    let gone = versions
        .range((&b"/gone"[..], i64::MIN)..=(&b"/gone"[..], i64::MAX))
        .unwrap()
        .count();
    assert_eq!(gone, 0);
    drop((versions, txn));

    let at = store
        .range(RangeRequest::key("/hot").at_revision(compact_at))
        .await
        .unwrap();
    assert_eq!(at.kvs[0].value.as_ref(), b"49");
    let mut watch = store.watch(b"/hot", compact_at).await.unwrap();
    let event = watch.next().await.unwrap().unwrap();
    assert_eq!(
        (event.kind, event.prev_kv.unwrap().value.as_ref()),
        (EventKind::Put, &b"49"[..])
    );
}

#[tokio::test]
async fn acknowledged_writes_missing_from_redb_are_replayed_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let store = EmbeddedStore::open(&path, EmbeddedOptions::default()).unwrap();
    let start = store.current_revision().await.unwrap();
    for i in 0..20 {
        put(&store, &format!("/k/{i}"), "v").await;
    }
    let lease = store.lease_grant(60).await.unwrap();
    store
        .create(b"/leased", "x".into(), lease.id)
        .await
        .unwrap();
    // The files as a crash would leave them: redb not yet checkpointed, the log holding
    // every acknowledged batch.
    let crashed = dir.path().join("crashed.db");
    std::fs::copy(&path, &crashed).unwrap();
    let without_log = dir.path().join("nolog.db");
    std::fs::copy(&path, &without_log).unwrap();
    std::fs::copy(wal_path(&path), wal_path(&crashed)).unwrap();
    assert!(
        std::fs::metadata(wal_path(&path)).unwrap().len() > 0,
        "writes must go through the log"
    );
    store.close().await.unwrap();

    // Without the log, redb alone is behind: the replay below is what recovers the writes.
    let behind = EmbeddedStore::open(&without_log, EmbeddedOptions::default()).unwrap();
    assert!(behind.current_revision().await.unwrap() < start + 21);
    behind.close().await.unwrap();

    let recovered = EmbeddedStore::open(&crashed, EmbeddedOptions::default()).unwrap();
    assert_eq!(recovered.current_revision().await.unwrap(), start + 21);
    assert_eq!(recovered.count(b"/k/").await.unwrap(), 20);
    assert_eq!(
        recovered.get(b"/leased").await.unwrap().unwrap().lease,
        lease.id
    );
    // Replayed once, then checkpointed: reopening again changes nothing.
    recovered.close().await.unwrap();
    let again = EmbeddedStore::open(&crashed, EmbeddedOptions::default()).unwrap();
    assert_eq!(again.current_revision().await.unwrap(), start + 21);
    assert_eq!(std::fs::metadata(wal_path(&crashed)).unwrap().len(), 0);
}

#[tokio::test]
async fn checkpoints_empty_the_log_while_writes_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let opts = EmbeddedOptions {
        checkpoint_log_bytes: 2048,
        ..EmbeddedOptions::default()
    };
    let store = EmbeddedStore::open(&path, opts).unwrap();
    for i in 0..300 {
        put(&store, &format!("/k/{i}"), &"v".repeat(64)).await;
    }
    // 300 writes of ~100 bytes logged: without checkpoints the log would hold ~30 KiB.
    let wait = std::time::Instant::now();
    while std::fs::metadata(wal_path(&path)).unwrap().len() > 8192 {
        assert!(
            wait.elapsed() < std::time::Duration::from_secs(10),
            "the log was never checkpointed"
        );
        put(&store, "/tick", "t").await;
    }
    // What was checkpointed is in redb itself: a copy without the log has it.
    let copy = dir.path().join("copy.db");
    std::fs::copy(&path, &copy).unwrap();
    let reopened = EmbeddedStore::open(&copy, EmbeddedOptions::default()).unwrap();
    assert!(reopened.count(b"/k/").await.unwrap() >= 250);
}
