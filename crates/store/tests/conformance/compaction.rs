//! Compaction: old revisions become unreadable, latest values stay, watches behave.

use std::sync::Arc;

use futures::StreamExt;
use skiff_store::{RangeRequest, Store, StoreError};

use crate::support::{
    assert_err, current_revision, delete, describe, events_before_fence, keys_of, next_event, ok,
    put, revisions, value_at, value_of, watch, EVENT_TIMEOUT,
};

/// Writes `/c/k` = v1..v5 and returns their revisions.
async fn five_versions(store: &dyn Store) -> [i64; 5] {
    let mut revs = [0; 5];
    for (i, rev) in revs.iter_mut().enumerate() {
        *rev = put(store, "/c/k", format!("v{}", i + 1)).await;
    }
    revs
}

async fn compact(store: &dyn Store, revision: i64) {
    ok(
        &format!("compact at {revision}"),
        store.compact(revision).await,
    );
}

pub async fn check_compacted_revisions_are_unreadable_and_latest_values_survive(
    store: Arc<dyn Store>,
) {
    let store = &*store;
    let r_keep = put(store, "/c/keep", "k").await;
    put(store, "/c/gone", "g").await;
    delete(store, "/c/gone").await;
    let [r1, r2, r3, r4, _] = five_versions(store).await;
    compact(store, r3).await;

    for old in [r_keep, r1, r2] {
        assert_err!(
            store.range(RangeRequest::key("/c/k").at_revision(old)).await,
            StoreError::Compacted { revision, compact_revision }
                if revision == old && (compact_revision == r3 || compact_revision == 0)
        );
    }
    assert_eq!(value_at(store, "/c/k", r3).await.as_deref(), Some("v3"));
    assert_eq!(value_at(store, "/c/k", r4).await.as_deref(), Some("v4"));
    assert_eq!(value_of(store, "/c/k").await.as_deref(), Some("v5"));

    // A key last written before the compaction revision keeps its latest value, readable
    // now and at the compaction revision; a key deleted before it stays deleted.
    assert_eq!(value_of(store, "/c/keep").await.as_deref(), Some("k"));
    assert_eq!(value_at(store, "/c/keep", r3).await.as_deref(), Some("k"));
    assert_eq!(value_of(store, "/c/gone").await, None);
    let at_r3 = ok(
        "prefix at the compaction revision",
        store
            .range(RangeRequest::prefix("/c/").at_revision(r3))
            .await,
    );
    assert_eq!(keys_of(&at_r3.kvs), ["/c/k", "/c/keep"]);
    let keep = &at_r3.kvs[1];
    assert_eq!((keep.create_revision, keep.mod_revision), (r_keep, r_keep));

    let after = put(store, "/c/after", "a").await;
    assert_eq!(after, current_revision(store).await);
    assert!(after > r4, "revisions keep growing after a compaction");
}

pub async fn check_compact_at_or_below_last_compaction_or_in_future_is_refused(
    store: Arc<dyn Store>,
) {
    let store = &*store;
    let [_, _, _, r4, r5] = five_versions(store).await;
    compact(store, r4).await;
    for again in [r4, r4 - 1] {
        assert_err!(store.compact(again).await, StoreError::Compacted { .. });
    }
    assert_err!(
        store.compact(r5 + 1).await,
        StoreError::FutureRevision { .. }
    );
    compact(store, r5).await;
    assert_err!(store.compact(r5).await, StoreError::Compacted { .. });
    assert_eq!(value_of(store, "/c/k").await.as_deref(), Some("v5"));
}

pub async fn check_watch_from_compacted_revision_fails_then_ends(store: Arc<dyn Store>) {
    let store = &*store;
    let [r1, r2, _, r4, _] = five_versions(store).await;
    compact(store, r4).await;
    // Watching from r2 needs the change at r3, which is gone.
    for from in [r1, r2] {
        let mut stream = watch(store, "/c/", from).await;
        match tokio::time::timeout(EVENT_TIMEOUT, stream.next()).await {
            Ok(Some(Err(StoreError::Compacted { .. }))) => {}
            other => panic!(
                "watch from compacted revision {from}: expected Err(Compacted), got {other:?}"
            ),
        }
        match tokio::time::timeout(EVENT_TIMEOUT, stream.next()).await {
            Ok(None) => {}
            other => panic!("after Err(Compacted) the watch must end, got {other:?}"),
        }
    }
}

pub async fn check_watch_from_compaction_revision_works(store: Arc<dyn Store>) {
    let store = &*store;
    let [_, _, r3, r4, r5] = five_versions(store).await;
    compact(store, r3).await;
    let mut stream = watch(store, "/c/", r3).await;
    let events = events_before_fence(store, &mut stream, "/c/").await;
    assert_eq!(
        describe(&events),
        ["put /c/k=v4 prev=v3", "put /c/k=v5 prev=v4"]
    );
    assert_eq!(revisions(&events), [r4, r5]);
}

pub async fn check_running_watch_keeps_delivering_across_compaction(store: Arc<dyn Store>) {
    let store = &*store;
    let from = current_revision(store).await;
    let mut stream = watch(store, "/c/", from).await;
    put(store, "/c/k", "v1").await;
    put(store, "/c/k", "v2").await;
    for _ in 0..2 {
        next_event(&mut stream).await;
    }
    let r3 = put(store, "/c/k", "v3").await;
    compact(store, r3).await;
    put(store, "/c/k", "v4").await;
    let events = events_before_fence(store, &mut stream, "/c/").await;
    assert_eq!(
        describe(&events),
        ["put /c/k=v3 prev=v2", "put /c/k=v4 prev=v3"]
    );
}
