//! Watches: history replay, new changes only, prefix filtering, prev_kv, txn revisions.

use std::sync::Arc;

use skiff_store::{EventKind, Store, Txn, TxnOp};

use crate::support::{
    current_revision, delete, describe, events_before_fence, next_event, ok, put, revisions, text,
    watch,
};

pub async fn check_watch_from_revision_replays_exactly_the_later_changes(store: Arc<dyn Store>) {
    let store = &*store;
    put(store, "/w/a", "0").await;
    let from = put(store, "/w/a", "1").await;
    let r_b = put(store, "/w/b", "1").await;
    let r_a = put(store, "/w/a", "2").await;
    let r_del = delete(store, "/w/b").await;
    let r_c = put(store, "/w/c", "3").await;

    let mut stream = watch(store, "/w/", from).await;
    let events = events_before_fence(store, &mut stream, "/w/").await;
    assert_eq!(
        describe(&events),
        [
            "put /w/b=1 prev=-",
            "put /w/a=2 prev=1",
            "delete /w/b prev=1",
            "put /w/c=3 prev=-",
        ],
        "exactly the changes after revision {from}, in order"
    );
    assert_eq!(revisions(&events), [r_b, r_a, r_del, r_c]);

    let update = &events[1];
    let prev = update.prev_kv.as_ref().expect("an update carries prev_kv");
    assert_eq!(
        (prev.mod_revision, prev.version),
        (from, 2),
        "prev_kv is the replaced version"
    );
    assert_eq!(update.kv.version, 3);
}

pub async fn check_watch_from_zero_sees_only_new_changes(store: Arc<dyn Store>) {
    let store = &*store;
    put(store, "/w/old", "1").await;
    put(store, "/w/old", "2").await;
    let mut stream = watch(store, "/w/", 0).await;
    let r = put(store, "/w/new", "n").await;
    let event = next_event(&mut stream).await;
    assert_eq!(
        describe(std::slice::from_ref(&event)),
        ["put /w/new=n prev=-"]
    );
    assert_eq!(event.revision(), r);
    put(store, "/w/old", "3").await;
    let events = events_before_fence(store, &mut stream, "/w/").await;
    assert_eq!(describe(&events), ["put /w/old=3 prev=2"]);
}

pub async fn check_watch_sees_only_keys_under_its_prefix(store: Arc<dyn Store>) {
    let store = &*store;
    let from = current_revision(store).await;
    let mut stream = watch(store, "/registry/pods/", from).await;
    for key in [
        "/registry/podsx",
        "/registry/podsx/ns/a",
        "/registry/pods",
        "/registry/pod",
        "/registry/pods/ns/a",
        "/registry/services/ns/a",
        "/registry/pods/ns/b",
    ] {
        put(store, key, "v").await;
    }
    delete(store, "/registry/podsx/ns/a").await;
    let events = events_before_fence(store, &mut stream, "/registry/pods/").await;
    assert_eq!(
        describe(&events),
        [
            "put /registry/pods/ns/a=v prev=-",
            "put /registry/pods/ns/b=v prev=-"
        ]
    );
}

pub async fn check_watch_delete_event_carries_prev_kv(store: Arc<dyn Store>) {
    let store = &*store;
    let created = put(store, "/w/k", "v1").await;
    let updated = put(store, "/w/k", "v2").await;
    let mut stream = watch(store, "/w/", 0).await;
    let deleted = delete(store, "/w/k").await;

    let event = next_event(&mut stream).await;
    assert_eq!(event.kind, EventKind::Delete);
    assert_eq!(text(&event.kv.key), "/w/k");
    assert_eq!(
        event.kv.mod_revision, deleted,
        "a delete event is at its revision"
    );
    let prev = event.prev_kv.expect("a delete carries the deleted version");
    assert_eq!(
        (
            text(&prev.value),
            prev.create_revision,
            prev.mod_revision,
            prev.version
        ),
        ("v2".to_string(), created, updated, 2)
    );
}

pub async fn check_watch_delivers_txn_writes_with_one_revision(store: Arc<dyn Store>) {
    let store = &*store;
    put(store, "/w/gone", "g").await;
    put(store, "/w/a", "0").await;
    let mut stream = watch(store, "/w/", 0).await;
    let resp = ok(
        "txn",
        store
            .txn(
                Txn::new()
                    .and_then(TxnOp::put("/w/a", "1", 0))
                    .and_then(TxnOp::put("/w/b", "2", 0))
                    .and_then(TxnOp::delete("/w/gone"))
                    .and_then(TxnOp::put("/outside/c", "3", 0)),
            )
            .await,
    );
    assert!(resp.succeeded);
    let events = events_before_fence(store, &mut stream, "/w/").await;
    let mut described = describe(&events);
    described.sort();
    assert_eq!(
        described,
        [
            "delete /w/gone prev=g",
            "put /w/a=1 prev=0",
            "put /w/b=2 prev=-"
        ]
    );
    assert!(
        revisions(&events).iter().all(|r| *r == resp.revision),
        "every write of the txn arrives at its revision {}: {:?}",
        resp.revision,
        revisions(&events)
    );
}
