//! Leases: grant, attach, keep-alive, revoke, expiry, unknown ids.

use std::sync::Arc;
use std::time::{Duration, Instant};

use skiff_store::{Compare, CompareOp, Lease, Store, StoreError, Txn, TxnOp};

use crate::support::{
    assert_err, current_revision, describe, events_before_fence, get, ok, put, put_leased,
    revisions, value_of, wait_until, watch,
};

/// An id no store handed out (etcd's are random 63-bit numbers; collisions are negligible).
const UNKNOWN_LEASE: i64 = 0x1234_5678_9abc;

/// Grants a lease asking for 2 s (etcd's minimum); the granted TTL may be longer.
async fn grant(store: &dyn Store) -> Lease {
    let lease = ok("lease_grant", store.lease_grant(2).await);
    assert_ne!(lease.id, 0, "0 means no lease");
    assert!(
        lease.ttl >= 2,
        "granted TTL {} is below the asked 2 s",
        lease.ttl
    );
    lease
}

/// Asserts a lease is gone: keep-alive and revoke both say `LeaseNotFound(id)`.
async fn assert_lease_gone(store: &dyn Store, id: i64) {
    assert_err!(store.lease_keep_alive(id).await, StoreError::LeaseNotFound(got) if got == id);
    assert_err!(store.lease_revoke(id).await, StoreError::LeaseNotFound(got) if got == id);
}

/// Puts `keys` attached to a fresh lease and `/l/plain` without one, then opens a watch on
/// `/l/` from the current revision.
async fn leased_keys_and_watch(
    store: &dyn Store,
    keys: &[&str],
) -> (Lease, skiff_store::WatchStream) {
    let lease = grant(store).await;
    for key in keys {
        put_leased(store, key, format!("{key}-value"), lease.id).await;
    }
    put(store, "/l/plain", "stays").await;
    let from = current_revision(store).await;
    (lease, watch(store, "/l/", from).await)
}

/// The watch saw one delete per leased key, with prev_kv, all at one revision.
fn assert_deleted_together(events: &[skiff_store::Event]) {
    assert_eq!(
        describe(events),
        ["delete /l/a prev=/l/a-value", "delete /l/b prev=/l/b-value"]
    );
    let revs = revisions(events);
    assert_eq!(revs[0], revs[1], "a lease's keys go in one revision");
}

pub async fn check_lease_grant_attaches_keys_to_the_lease(store: Arc<dyn Store>) {
    let store = &*store;
    let lease = grant(store).await;
    let other = grant(store).await;
    assert_ne!(lease.id, other.id, "every grant is a new lease");

    put_leased(store, "/l/put", "v", lease.id).await;
    assert!(ok(
        "create",
        store.create(b"/l/created", "v".into(), lease.id).await
    )
    .is_done());
    for key in ["/l/put", "/l/created"] {
        assert_eq!(get(store, key).await.expect(key).lease, lease.id);
    }
    let attached = ok(
        "lease compare",
        store
            .txn(Txn::new().when(Compare::lease("/l/put", CompareOp::Equal, lease.id)))
            .await,
    );
    assert!(attached.succeeded);

    // Re-putting without a lease detaches the key.
    put(store, "/l/put", "v2").await;
    assert_eq!(get(store, "/l/put").await.expect("/l/put").lease, 0);
}

pub async fn check_keep_alive_keeps_leased_keys_past_the_ttl(store: Arc<dyn Store>) {
    let store = &*store;
    let lease = grant(store).await;
    put_leased(store, "/l/k", "alive", lease.id).await;
    let ttl = Duration::from_secs(lease.ttl as u64);
    let interval = (ttl / 4).max(Duration::from_millis(400));
    let until = Instant::now() + ttl * 2 + Duration::from_secs(1);
    while Instant::now() < until {
        tokio::time::sleep(interval).await;
        let renewed = ok("keep-alive", store.lease_keep_alive(lease.id).await);
        assert_eq!(renewed, lease.ttl, "keep-alive renews for the full TTL");
        assert_eq!(
            value_of(store, "/l/k").await.as_deref(),
            Some("alive"),
            "a kept-alive lease keeps its keys"
        );
    }
}

pub async fn check_revoke_deletes_leased_keys_with_delete_events(store: Arc<dyn Store>) {
    let store = &*store;
    let (lease, mut stream) = leased_keys_and_watch(store, &["/l/a", "/l/b"]).await;
    ok("revoke", store.lease_revoke(lease.id).await);

    for key in ["/l/a", "/l/b"] {
        assert_eq!(get(store, key).await, None, "{key} goes with its lease");
    }
    assert_eq!(value_of(store, "/l/plain").await.as_deref(), Some("stays"));
    let events = events_before_fence(store, &mut stream, "/l/").await;
    assert_deleted_together(&events);
    assert_lease_gone(store, lease.id).await;
    assert_err!(
        store
            .txn(Txn::new().and_then(TxnOp::put("/l/late", "x", lease.id)))
            .await,
        StoreError::LeaseNotFound(_)
    );
    assert_eq!(get(store, "/l/late").await, None);
}

pub async fn check_expired_lease_deletes_keys_with_delete_events(store: Arc<dyn Store>) {
    let store = &*store;
    let granted_at = Instant::now();
    let (lease, mut stream) = leased_keys_and_watch(store, &["/l/a", "/l/b"]).await;
    let ttl = Duration::from_secs(lease.ttl as u64);

    let expired = wait_until(ttl + Duration::from_secs(6), || async move {
        get(store, "/l/a").await.is_none() && get(store, "/l/b").await.is_none()
    })
    .await;
    let waited = granted_at.elapsed();
    assert!(
        expired,
        "keys of a {ttl:?} lease still there after {waited:?}"
    );
    assert!(
        waited + Duration::from_millis(500) >= ttl,
        "keys of a {ttl:?} lease vanished early, after {waited:?}"
    );
    assert_eq!(value_of(store, "/l/plain").await.as_deref(), Some("stays"));
    let events = events_before_fence(store, &mut stream, "/l/").await;
    assert_deleted_together(&events);
    assert_lease_gone(store, lease.id).await;
}

pub async fn check_unknown_lease_is_lease_not_found_and_writes_nothing(store: Arc<dyn Store>) {
    let store = &*store;
    put(store, "/l/existing", "1").await;
    let before = current_revision(store).await;
    assert_lease_gone(store, UNKNOWN_LEASE).await;

    assert_err!(
        store
            .txn(
                Txn::new()
                    .and_then(TxnOp::put("/l/plain", "p", 0))
                    .and_then(TxnOp::put("/l/k", "v", UNKNOWN_LEASE))
            )
            .await,
        StoreError::LeaseNotFound(id) if id == UNKNOWN_LEASE
    );
    assert_err!(
        store.create(b"/l/k", "v".into(), UNKNOWN_LEASE).await,
        StoreError::LeaseNotFound(_)
    );
    assert_err!(
        store
            .update(b"/l/existing", "2".into(), before, UNKNOWN_LEASE)
            .await,
        StoreError::LeaseNotFound(_)
    );
    for key in ["/l/k", "/l/plain"] {
        assert_eq!(get(store, key).await, None, "{key} must not be written");
    }
    assert_eq!(value_of(store, "/l/existing").await.as_deref(), Some("1"));
    assert_eq!(current_revision(store).await, before);
}
