//! Reads: single keys, prefixes, pagination, counts, past and future revisions.

use std::sync::Arc;

use skiff_store::{keys, RangeRequest, Store, StoreError};

use crate::support::{
    assert_err, current_revision, delete, get, keys_of, ok, put, value_at, value_of,
};

pub async fn check_get_returns_one_key_with_its_bookkeeping(store: Arc<dyn Store>) {
    let store = &*store;
    let created = put(store, "/r/a", "v1").await;
    put(store, "/r/a/child", "c").await;
    put(store, "/r/ab", "x").await;

    let kv = get(store, "/r/a").await.expect("/r/a was written");
    assert_eq!(&kv.key[..], b"/r/a");
    assert_eq!(&kv.value[..], b"v1");
    assert_eq!(kv.create_revision, created);
    assert_eq!(kv.mod_revision, created);
    assert_eq!(kv.version, 1);
    assert_eq!(kv.lease, 0);

    let updated = put(store, "/r/a", "v2").await;
    assert!(updated > created, "a write must move the revision up");
    let kv = get(store, "/r/a").await.expect("/r/a still exists");
    assert_eq!(&kv.value[..], b"v2");
    assert_eq!(
        kv.create_revision, created,
        "an update keeps create_revision"
    );
    assert_eq!(kv.mod_revision, updated);
    assert_eq!(kv.version, 2);

    // A single-key read is exact: no children, no longer keys.
    let resp = ok("range /r/a", store.range(RangeRequest::key("/r/a")).await);
    assert_eq!(keys_of(&resp.kvs), ["/r/a"]);
    assert_eq!(resp.count, 1);
    assert!(!resp.more);
    assert_eq!(resp.revision, current_revision(store).await);

    assert_eq!(get(store, "/r/missing").await, None);
    let missing = ok(
        "range /r/missing",
        store.range(RangeRequest::key("/r/missing")).await,
    );
    assert!(missing.kvs.is_empty());
    assert_eq!(missing.count, 0);
}

pub async fn check_prefix_range_returns_only_keys_under_the_prefix_in_order(store: Arc<dyn Store>) {
    let store = &*store;
    for key in [
        "/registry/pods/ns/b",
        "/registry/pods/ns/a",
        "/registry/pods/other/c",
        "/registry/podsx/ns/a",
        "/registry/pods",
        "/registry/pod",
        "/registry/services/ns/a",
    ] {
        put(store, key, "v").await;
    }
    let resp = ok(
        "range prefix /registry/pods/",
        store.range(RangeRequest::prefix("/registry/pods/")).await,
    );
    assert_eq!(
        keys_of(&resp.kvs),
        [
            "/registry/pods/ns/a",
            "/registry/pods/ns/b",
            "/registry/pods/other/c"
        ]
    );
    assert_eq!(resp.count, 3);
    assert!(!resp.more);

    let ns = ok(
        "range prefix /registry/pods/ns/",
        store
            .range(RangeRequest::prefix("/registry/pods/ns/"))
            .await,
    );
    assert_eq!(
        keys_of(&ns.kvs),
        ["/registry/pods/ns/a", "/registry/pods/ns/b"]
    );

    let none = ok(
        "range prefix /nothing/",
        store.range(RangeRequest::prefix("/nothing/")).await,
    );
    assert!(none.kvs.is_empty() && none.count == 0 && !none.more);
}

pub async fn check_paginated_range_walks_every_key_once_at_one_revision(store: Arc<dyn Store>) {
    let store = &*store;
    let prefix = "/registry/configmaps/ns/";
    let all: Vec<String> = (0..7).map(|i| format!("{prefix}cm-{i}")).collect();
    for key in all.iter().rev() {
        put(store, key, "v").await;
    }
    put(store, "/registry/configmaps/nt/after", "outside").await;

    let first = ok(
        "first page",
        store.range(RangeRequest::prefix(prefix).limit(3)).await,
    );
    assert_eq!(keys_of(&first.kvs), all[..3]);
    assert!(first.more, "4 keys remain after the first page");
    assert_eq!(first.count, 7, "count covers the whole range, not the page");
    let snapshot = first.revision;

    // Writes between pages must not show up in pages read at the first page's revision.
    put(store, format!("{prefix}cm-3a"), "new").await;
    delete(store, &all[5]).await;

    let mut seen = keys_of(&first.kvs);
    let mut last = first.kvs.last().expect("first page has keys").key.clone();
    let mut pages = 1;
    loop {
        let resp = ok(
            "next page",
            store
                .range(
                    RangeRequest::prefix(prefix)
                        .starting_at(keys::key_after(&last))
                        .limit(3)
                        .at_revision(snapshot),
                )
                .await,
        );
        let remaining = all.len() - seen.len();
        assert_eq!(
            resp.count, remaining as i64,
            "count is the number of keys in the requested range [start, end)"
        );
        assert_eq!(resp.more, remaining > 3);
        seen.extend(keys_of(&resp.kvs));
        pages += 1;
        if !resp.more {
            break;
        }
        last = resp
            .kvs
            .last()
            .expect("a page with more has keys")
            .key
            .clone();
    }
    assert_eq!(seen, all, "pages join up to the whole range, once each");
    assert_eq!(pages, 3);
}

pub async fn check_count_only_counts_without_returning_keys(store: Arc<dyn Store>) {
    let store = &*store;
    for i in 0..5 {
        put(store, format!("/c/x/{i}"), "v").await;
    }
    put(store, "/c/y/0", "v").await;
    let resp = ok(
        "count_only",
        store
            .range(RangeRequest::prefix("/c/x/").count_only())
            .await,
    );
    assert_eq!(resp.count, 5);
    assert!(resp.kvs.is_empty(), "count_only returns no keys");
    assert_eq!(ok("count", store.count(b"/c/").await), 6);
    assert_eq!(ok("count", store.count(b"/c/z/").await), 0);

    let limited = ok(
        "count with limit",
        store.range(RangeRequest::prefix("/c/x/").limit(2)).await,
    );
    assert_eq!(limited.kvs.len(), 2);
    assert_eq!(limited.count, 5);
    assert!(limited.more);
}

pub async fn check_read_at_past_revision_sees_old_values_and_deleted_keys(store: Arc<dyn Store>) {
    let store = &*store;
    let r1 = put(store, "/h/k", "v1").await;
    let r2 = put(store, "/h/k", "v2").await;
    let r3 = delete(store, "/h/k").await;
    let r4 = put(store, "/h/later", "l").await;
    assert!(r1 < r2 && r2 < r3 && r3 < r4);

    assert_eq!(value_at(store, "/h/k", r1).await.as_deref(), Some("v1"));
    assert_eq!(value_at(store, "/h/k", r2).await.as_deref(), Some("v2"));
    assert_eq!(value_at(store, "/h/k", r3).await, None, "deleted at r3");
    assert_eq!(value_of(store, "/h/k").await, None);
    assert_eq!(
        value_at(store, "/h/later", r3).await,
        None,
        "not yet created"
    );

    let old = ok(
        "prefix at r2",
        store
            .range(RangeRequest::prefix("/h/").at_revision(r2))
            .await,
    );
    assert_eq!(keys_of(&old.kvs), ["/h/k"]);
    assert_eq!(old.kvs[0].mod_revision, r2);
    assert_eq!(old.kvs[0].version, 2);
    assert_eq!(old.kvs[0].create_revision, r1);

    let now = ok("prefix now", store.range(RangeRequest::prefix("/h/")).await);
    assert_eq!(keys_of(&now.kvs), ["/h/later"]);
}

pub async fn check_read_at_future_revision_is_refused(store: Arc<dyn Store>) {
    let store = &*store;
    put(store, "/f/k", "v").await;
    let current = current_revision(store).await;
    let asked = current + 1;
    assert_err!(
        store.range(RangeRequest::key("/f/k").at_revision(asked)).await,
        StoreError::FutureRevision { revision, .. } if revision == asked
    );
    assert_err!(
        store
            .range(RangeRequest::prefix("/f/").at_revision(current + 100))
            .await,
        StoreError::FutureRevision { .. }
    );
    assert_eq!(
        value_at(store, "/f/k", current).await.as_deref(),
        Some("v"),
        "the current revision itself is readable"
    );
}
