//! Transactions and the guarded single-key writes built on them; request validation.

use std::sync::Arc;

use bytes::Bytes;
use skiff_store::{
    Compare, CompareOp, KeyValue, Store, StoreError, Txn, TxnOp, TxnOpResult, WriteOutcome,
    MAX_REQUEST_BYTES,
};

use crate::support::{assert_err, current_revision, delete, get, ok, put, text, value_of};

/// Asserts `kv` is `key` with `value` last modified at `mod_revision`.
fn assert_kv(kv: Option<&KeyValue>, key: &str, value: &str, mod_revision: i64) {
    let kv = kv.unwrap_or_else(|| panic!("expected {key}={value}, got no key"));
    assert_eq!(
        (text(&kv.key), text(&kv.value), kv.mod_revision),
        (key.to_string(), value.to_string(), mod_revision)
    );
}

async fn txn_ok(store: &dyn Store, txn: Txn) -> skiff_store::TxnResponse {
    ok(&format!("txn {txn:?}"), store.txn(txn).await)
}

pub async fn check_create_only_succeeds_when_the_key_is_absent(store: Arc<dyn Store>) {
    let store = &*store;
    put(store, "/t/other", "o").await;
    let before = current_revision(store).await;
    let created = match ok("create", store.create(b"/t/k", "v1".into(), 0).await) {
        WriteOutcome::Done {
            revision,
            prev: None,
        } => revision,
        other => panic!("first create: expected Done without prev, got {other:?}"),
    };
    assert_eq!(created, before + 1);

    match ok("second create", store.create(b"/t/k", "v2".into(), 0).await) {
        WriteOutcome::Conflict { current } => assert_kv(current.as_ref(), "/t/k", "v1", created),
        other => panic!("second create: expected Conflict, got {other:?}"),
    }
    assert_eq!(value_of(store, "/t/k").await.as_deref(), Some("v1"));
    assert_eq!(
        current_revision(store).await,
        created,
        "a failed create changes nothing"
    );
}

pub async fn check_update_is_compare_and_swap_on_mod_revision(store: Arc<dyn Store>) {
    let store = &*store;
    let r1 = put(store, "/t/k", "v1").await;
    let r2 = match ok("update", store.update(b"/t/k", "v2".into(), r1, 0).await) {
        WriteOutcome::Done { revision, prev } => {
            assert_kv(prev.as_ref(), "/t/k", "v1", r1);
            revision
        }
        other => panic!("update with the right mod revision: expected Done, got {other:?}"),
    };
    assert!(r2 > r1);

    match ok(
        "stale update",
        store.update(b"/t/k", "v3".into(), r1, 0).await,
    ) {
        WriteOutcome::Conflict { current } => assert_kv(current.as_ref(), "/t/k", "v2", r2),
        other => panic!("update with a stale mod revision: expected Conflict, got {other:?}"),
    }
    assert_eq!(value_of(store, "/t/k").await.as_deref(), Some("v2"));

    assert_eq!(
        ok(
            "update missing",
            store.update(b"/t/missing", "v".into(), r2, 0).await
        ),
        WriteOutcome::Conflict { current: None }
    );
    assert_eq!(get(store, "/t/missing").await, None);
    assert_eq!(current_revision(store).await, r2);
}

pub async fn check_delete_is_compare_and_delete(store: Arc<dyn Store>) {
    let store = &*store;
    let r1 = put(store, "/t/k", "v1").await;
    let r2 = put(store, "/t/k", "v2").await;

    match ok("stale delete", store.delete(b"/t/k", Some(r1)).await) {
        WriteOutcome::Conflict { current } => assert_kv(current.as_ref(), "/t/k", "v2", r2),
        other => panic!("delete with a stale mod revision: expected Conflict, got {other:?}"),
    }
    assert_eq!(value_of(store, "/t/k").await.as_deref(), Some("v2"));

    let r3 = match ok("delete", store.delete(b"/t/k", Some(r2)).await) {
        WriteOutcome::Done { revision, prev } => {
            assert_kv(prev.as_ref(), "/t/k", "v2", r2);
            revision
        }
        other => panic!("delete with the right mod revision: expected Done, got {other:?}"),
    };
    assert_eq!(r3, r2 + 1);
    assert_eq!(get(store, "/t/k").await, None);

    for (key, expected) in [("/t/k", None), ("/t/k", Some(r2)), ("/t/never", None)] {
        assert_eq!(
            ok(
                "delete missing",
                store.delete(key.as_bytes(), expected).await
            ),
            WriteOutcome::Conflict { current: None },
            "deleting missing {key} (expected mod revision {expected:?})"
        );
    }
    assert_eq!(
        current_revision(store).await,
        r3,
        "failed deletes change nothing"
    );
}

pub async fn check_txn_success_branch_applies_all_ops_at_one_revision(store: Arc<dyn Store>) {
    let store = &*store;
    let ra = put(store, "/t/a", "1").await;
    let rb = put(store, "/t/b", "2").await;
    let rd = put(store, "/t/d", "4").await;
    let before = current_revision(store).await;

    let resp = txn_ok(
        store,
        Txn::new()
            .when(Compare::value("/t/a", CompareOp::Equal, "1"))
            .when(Compare::version("/t/b", CompareOp::Equal, 1))
            .when(Compare::create_revision("/t/a", CompareOp::Equal, ra))
            .when(Compare::mod_revision("/t/c", CompareOp::Equal, 0))
            .and_then(TxnOp::put("/t/a", "10", 0))
            .and_then(TxnOp::delete("/t/b"))
            .and_then(TxnOp::put("/t/c", "3", 0))
            .and_then(TxnOp::get("/t/d"))
            .or_else(TxnOp::put("/t/failed", "x", 0)),
    )
    .await;
    assert!(resp.succeeded, "every compare holds");
    let rev = resp.revision;
    assert_eq!(rev, before + 1, "one transaction, one new revision");

    assert_eq!(
        resp.results.len(),
        4,
        "one result per op: {:?}",
        resp.results
    );
    match &resp.results[..] {
        [TxnOpResult::Put { prev: a }, TxnOpResult::Delete { prev: b }, TxnOpResult::Put { prev: None }, TxnOpResult::Get { kv: d }] =>
        {
            assert_kv(a.as_ref(), "/t/a", "1", ra);
            assert_kv(b.as_ref(), "/t/b", "2", rb);
            assert_kv(d.as_ref(), "/t/d", "4", rd);
        }
        other => panic!("unexpected results {other:?}"),
    }

    let a = get(store, "/t/a").await.expect("/t/a");
    assert_eq!(
        (text(&a.value), a.create_revision, a.mod_revision, a.version),
        ("10".to_string(), ra, rev, 2)
    );
    let c = get(store, "/t/c").await.expect("/t/c");
    assert_eq!(
        (text(&c.value), c.create_revision, c.mod_revision, c.version),
        ("3".to_string(), rev, rev, 1)
    );
    assert_eq!(get(store, "/t/b").await, None);
    assert_eq!(
        get(store, "/t/failed").await,
        None,
        "the failure branch did not run"
    );
    assert_eq!(current_revision(store).await, rev);
}

pub async fn check_txn_failure_branch_runs_when_any_compare_fails(store: Arc<dyn Store>) {
    let store = &*store;
    let ra = put(store, "/t/a", "1").await;
    put(store, "/t/b", "2").await;
    let before = current_revision(store).await;

    let resp = txn_ok(
        store,
        Txn::new()
            .when(Compare::value("/t/a", CompareOp::Equal, "1"))
            .when(Compare::mod_revision("/t/b", CompareOp::Less, 1))
            .and_then(TxnOp::put("/t/a", "10", 0))
            .and_then(TxnOp::delete("/t/b"))
            .or_else(TxnOp::put("/t/e", "5", 0))
            .or_else(TxnOp::get("/t/a")),
    )
    .await;
    assert!(!resp.succeeded, "the second compare fails");
    assert_eq!(resp.revision, before + 1, "the failure branch wrote");
    match &resp.results[..] {
        [TxnOpResult::Put { prev: None }, TxnOpResult::Get { kv }] => {
            assert_kv(kv.as_ref(), "/t/a", "1", ra)
        }
        other => panic!("unexpected failure-branch results {other:?}"),
    }
    assert_eq!(value_of(store, "/t/a").await.as_deref(), Some("1"));
    assert_eq!(value_of(store, "/t/b").await.as_deref(), Some("2"));
    let e = get(store, "/t/e")
        .await
        .expect("/t/e written by the failure branch");
    assert_eq!(
        (e.mod_revision, e.create_revision, e.version),
        (before + 1, before + 1, 1)
    );
}

pub async fn check_txn_compares_every_target_and_operator(store: Arc<dyn Store>) {
    let store = &*store;
    let r1 = put(store, "/t/a", "b").await;
    let r2 = put(store, "/t/a", "m").await;
    let before = current_revision(store).await;
    use CompareOp::{Equal, Greater, Less, NotEqual};
    let cases = [
        (Compare::mod_revision("/t/a", Equal, r2), true),
        (Compare::mod_revision("/t/a", NotEqual, r2), false),
        (Compare::mod_revision("/t/a", Greater, r1), true),
        (Compare::mod_revision("/t/a", Less, r2), false),
        (Compare::mod_revision("/t/a", Less, r2 + 1), true),
        (Compare::create_revision("/t/a", Equal, r1), true),
        (Compare::create_revision("/t/a", Greater, r1), false),
        (Compare::version("/t/a", Equal, 2), true),
        (Compare::version("/t/a", Greater, 1), true),
        (Compare::version("/t/a", Less, 2), false),
        (Compare::value("/t/a", Equal, "m"), true),
        (Compare::value("/t/a", NotEqual, "m"), false),
        (Compare::value("/t/a", Greater, "a"), true),
        (Compare::value("/t/a", Less, "a"), false),
        (Compare::value("/t/a", Less, "z"), true),
        (Compare::lease("/t/a", Equal, 0), true),
        (Compare::lease("/t/a", NotEqual, 0), false),
        // A missing key has zero revisions, version and lease, and no value at all.
        (Compare::mod_revision("/t/none", Equal, 0), true),
        (Compare::create_revision("/t/none", Equal, 0), true),
        (Compare::version("/t/none", Equal, 0), true),
        (Compare::lease("/t/none", Equal, 0), true),
        (Compare::mod_revision("/t/none", Greater, 0), false),
        (Compare::value("/t/none", Equal, ""), false),
        (Compare::value("/t/none", NotEqual, "x"), false),
    ];
    for (compare, expected) in cases {
        let resp = txn_ok(store, Txn::new().when(compare.clone())).await;
        assert_eq!(resp.succeeded, expected, "{compare:?}");
    }
    let all_true = Txn::new()
        .when(Compare::value("/t/a", Equal, "m"))
        .when(Compare::version("/t/a", Equal, 2));
    assert!(txn_ok(store, all_true.clone()).await.succeeded);
    let one_false = all_true.when(Compare::version("/t/none", Greater, 0));
    assert!(!txn_ok(store, one_false).await.succeeded);
    assert_eq!(
        current_revision(store).await,
        before,
        "compares alone write nothing"
    );
}

pub async fn check_read_only_or_no_op_txn_does_not_move_the_revision(store: Arc<dyn Store>) {
    let store = &*store;
    let r = put(store, "/t/a", "1").await;

    let read = txn_ok(store, Txn::new().and_then(TxnOp::get("/t/a"))).await;
    assert!(read.succeeded);
    assert_eq!(
        read.revision, r,
        "a read-only txn reports the current revision"
    );
    match &read.results[..] {
        [TxnOpResult::Get { kv }] => assert_kv(kv.as_ref(), "/t/a", "1", r),
        other => panic!("unexpected results {other:?}"),
    }

    let noop = txn_ok(store, Txn::new().and_then(TxnOp::delete("/t/missing"))).await;
    assert!(noop.succeeded);
    assert_eq!(
        noop.results,
        [TxnOpResult::Delete { prev: None }],
        "deleting a missing key is not an error"
    );
    assert_eq!(noop.revision, r, "deleting a missing key changes nothing");

    let failed = txn_ok(
        store,
        Txn::new()
            .when(Compare::version("/t/a", CompareOp::Equal, 99))
            .and_then(TxnOp::put("/t/a", "2", 0)),
    )
    .await;
    assert!(!failed.succeeded);
    assert!(failed.results.is_empty());
    assert_eq!(failed.revision, r);

    assert_eq!(current_revision(store).await, r);
    assert_eq!(value_of(store, "/t/a").await.as_deref(), Some("1"));
    let next = put(store, "/t/b", "1").await;
    assert_eq!(next, r + 1, "the next write takes the very next revision");
}

pub async fn check_recreated_key_restarts_create_revision_and_version(store: Arc<dyn Store>) {
    let store = &*store;
    put(store, "/t/k", "1").await;
    put(store, "/t/k", "2").await;
    delete(store, "/t/k").await;
    let recreated = put(store, "/t/k", "3").await;
    let kv = get(store, "/t/k").await.expect("recreated");
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (recreated, recreated, 1),
        "a key created again after a delete starts over"
    );
}

pub async fn check_duplicate_key_in_a_branch_is_invalid_and_writes_nothing(store: Arc<dyn Store>) {
    let store = &*store;
    put(store, "/t/existing", "1").await;
    let before = current_revision(store).await;
    let invalid = [
        Txn::new()
            .and_then(TxnOp::put("/t/x", "1", 0))
            .and_then(TxnOp::delete("/t/x")),
        Txn::new()
            .and_then(TxnOp::put("/t/y", "1", 0))
            .and_then(TxnOp::put("/t/z", "1", 0))
            .and_then(TxnOp::put("/t/y", "2", 0)),
        Txn::new()
            .and_then(TxnOp::delete("/t/existing"))
            .and_then(TxnOp::delete("/t/existing")),
        // The duplicate is in the branch that would not run: still refused.
        Txn::new()
            .when(Compare::mod_revision("/t/w", CompareOp::Equal, 0))
            .and_then(TxnOp::put("/t/w", "1", 0))
            .or_else(TxnOp::put("/t/v", "1", 0))
            .or_else(TxnOp::put("/t/v", "2", 0)),
    ];
    for txn in invalid {
        assert_err!(store.txn(txn).await, StoreError::InvalidRequest(_));
    }
    for key in ["/t/x", "/t/y", "/t/z", "/t/w", "/t/v"] {
        assert_eq!(get(store, key).await, None, "{key} must not be written");
    }
    assert_eq!(value_of(store, "/t/existing").await.as_deref(), Some("1"));
    assert_eq!(current_revision(store).await, before);

    // A put and a get of one key, or the same key in both branches, is fine.
    let resp = txn_ok(
        store,
        Txn::new()
            .and_then(TxnOp::put("/t/x", "1", 0))
            .and_then(TxnOp::get("/t/x"))
            .or_else(TxnOp::put("/t/x", "2", 0)),
    )
    .await;
    assert!(resp.succeeded);
    assert_eq!(value_of(store, "/t/x").await.as_deref(), Some("1"));
}

pub async fn check_oversize_write_is_refused_naming_the_key_and_writes_nothing(
    store: Arc<dyn Store>,
) {
    let store = &*store;
    put(store, "/big/small", "s").await;
    let before = current_revision(store).await;

    let huge = Bytes::from(vec![b'x'; MAX_REQUEST_BYTES]);
    let result = store
        .txn(Txn::new().and_then(TxnOp::put("/big/huge", huge.clone(), 0)))
        .await;
    assert_err!(
        result,
        StoreError::TooLarge { ref key, size, limit }
            if key == "/big/huge" && size > MAX_REQUEST_BYTES && limit == MAX_REQUEST_BYTES
    );
    let message = store
        .create(b"/big/huge", huge, 0)
        .await
        .expect_err("an oversize create must fail")
        .to_string();
    assert!(
        message.contains("/big/huge"),
        "the error names the key: {message}"
    );

    // Several values that only together exceed the limit: refused as a whole.
    let half = Bytes::from(vec![b'y'; MAX_REQUEST_BYTES / 2 + 1024]);
    let result = store
        .txn(
            Txn::new()
                .and_then(TxnOp::put("/big/small", "changed", 0))
                .and_then(TxnOp::put("/big/half-1", half.clone(), 0))
                .and_then(TxnOp::put("/big/half-2", half, 0)),
        )
        .await;
    assert_err!(result, StoreError::TooLarge { .. });

    for key in ["/big/huge", "/big/half-1", "/big/half-2"] {
        assert_eq!(get(store, key).await, None, "{key} must not be written");
    }
    assert_eq!(value_of(store, "/big/small").await.as_deref(), Some("s"));
    assert_eq!(
        current_revision(store).await,
        before,
        "refused writes do not move the revision"
    );
}

pub async fn check_write_just_under_the_size_limit_succeeds(store: Arc<dyn Store>) {
    let store = &*store;
    let key = "/big/almost";
    // Leave room for etcd's request framing, which also counts against its limit.
    let value = Bytes::from(vec![b'z'; MAX_REQUEST_BYTES - key.len() - 512]);
    let before = current_revision(store).await;
    let rev = put(store, key, value.clone()).await;
    assert_eq!(rev, before + 1);
    let kv = get(store, key).await.expect("the large value was written");
    assert_eq!(kv.value.len(), value.len());
    assert!(kv.value == value, "the large value reads back intact");
}
