//! The etcd backend against real etcd processes: a 3-member cluster losing a member under
//! load and watches, and TLS with client certificates.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use skiff_store::{
    EtcdOptions, EtcdStore, EtcdTls, Event, EventKind, RangeRequest, Store, StoreError,
    WatchStream, WriteOutcome,
};
use skiff_testkit::{EtcdCluster, TlsFiles};
use tokio::time::{timeout, Instant};

/// How long a write may keep failing while the cluster elects a new leader.
const FAILOVER_WINDOW: Duration = Duration::from_secs(20);

/// Creates `key`, retrying while the cluster is unavailable. A create cut off mid-flight may
/// have been applied; then the retry conflicts with our own value, which counts as done.
/// Returns the revision the key was created at.
async fn create_with_retry(store: &EtcdStore, key: &str, value: &str) -> i64 {
    let deadline = Instant::now() + FAILOVER_WINDOW;
    loop {
        match store
            .create(key.as_bytes(), Bytes::copy_from_slice(value.as_bytes()), 0)
            .await
        {
            Ok(WriteOutcome::Done { revision, .. }) => return revision,
            Ok(WriteOutcome::Conflict { current: Some(kv) }) if kv.value == value.as_bytes() => {
                return kv.mod_revision
            }
            Ok(other) => panic!("create {key}: unexpected {other:?}"),
            Err(e @ StoreError::Unavailable(_)) if Instant::now() < deadline => {
                eprintln!("create {key}: retrying after {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("create {key} failed: {e}"),
        }
    }
}

/// Deletes `key`, retrying like [`create_with_retry`]; a missing key after a cut-off try
/// means our delete went through, and its revision is read from the watch instead.
async fn delete_with_retry(store: &EtcdStore, key: &str) -> Option<i64> {
    let deadline = Instant::now() + FAILOVER_WINDOW;
    loop {
        match store.delete(key.as_bytes(), None).await {
            Ok(WriteOutcome::Done { revision, .. }) => return Some(revision),
            Ok(WriteOutcome::Conflict { current: None }) => return None,
            Ok(other) => panic!("delete {key}: unexpected {other:?}"),
            Err(StoreError::Unavailable(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("delete {key} failed: {e}"),
        }
    }
}

/// Reads events until one at `last_revision` or later arrives.
async fn collect_until(watch: &mut WatchStream, last_revision: i64, name: &str) -> Vec<Event> {
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while events
        .last()
        .is_none_or(|e: &Event| e.revision() < last_revision)
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(left, watch.next()).await {
            Ok(Some(Ok(ev))) => events.push(ev),
            Ok(Some(Err(e))) => panic!("{name}: watch failed after {} events: {e}", events.len()),
            Ok(None) => panic!("{name}: watch ended after {} events", events.len()),
            Err(_) => panic!(
                "{name}: no event at revision {last_revision} within 60 s; got {:?}",
                events.iter().map(Event::revision).collect::<Vec<_>>()
            ),
        }
    }
    events
}

/// Each expected (revision → key, kind) exactly once, in revision order, nothing else.
fn assert_exact(name: &str, events: &[Event], expected: &BTreeMap<i64, (String, EventKind)>) {
    let got: Vec<(i64, String, EventKind)> = events
        .iter()
        .map(|e| {
            (
                e.revision(),
                String::from_utf8_lossy(&e.kv.key).into_owned(),
                e.kind,
            )
        })
        .collect();
    let want: Vec<(i64, String, EventKind)> = expected
        .iter()
        .map(|(rev, (key, kind))| (*rev, key.clone(), *kind))
        .collect();
    assert_eq!(got, want, "{name}: events differ from the writes made");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_member_cluster_survives_losing_the_first_endpoint() {
    let mut cluster = tokio::task::spawn_blocking(|| EtcdCluster::start_members(3, None))
        .await
        .expect("cluster");
    let endpoints = cluster.endpoints();
    let store = EtcdStore::connect(EtcdOptions::new(endpoints.clone()))
        .await
        .expect("connect to all three members");
    // A second client that can only reach member 0: its watch must ride out that member's
    // death and restart, resuming where it stopped.
    let only_first = EtcdStore::connect(EtcdOptions::new([endpoints[0].clone()]))
        .await
        .expect("connect to member 0");

    let mut expected = BTreeMap::new();
    for i in 0..5 {
        let key = format!("/t/before-{i}");
        let rev = create_with_retry(&store, &key, "v").await;
        expected.insert(rev, (key, EventKind::Put));
    }
    let from = store.current_revision().await.expect("revision");
    // Watch from a revision in the past: the last two writes are replayed.
    let replay_from = from - 2;
    let mut watch_all = store.watch(b"/t/", replay_from).await.expect("watch");
    let mut watch_first = only_first.watch(b"/t/", replay_from).await.expect("watch");
    expected.retain(|rev, _| *rev > replay_from);

    cluster.members[0].kill();

    // The first write may wait out a leader election (if member 0 led).
    let rev = create_with_retry(&store, "/t/during-0", "v").await;
    expected.insert(rev, ("/t/during-0".to_string(), EventKind::Put));
    // After that the dead endpoint still in the client's list must not fail any call.
    for i in 1..20 {
        let key = format!("/t/during-{i}");
        match store
            .create(key.as_bytes(), Bytes::from_static(b"v"), 0)
            .await
        {
            Ok(WriteOutcome::Done { revision, .. }) => {
                expected.insert(revision, (key, EventKind::Put));
            }
            other => panic!("create {key} with member 0 down: {other:?}"),
        }
    }
    if let Some(rev) = delete_with_retry(&store, "/t/during-3").await {
        expected.insert(rev, ("/t/during-3".to_string(), EventKind::Delete));
    }
    let listed = store
        .range(RangeRequest::prefix("/t/"))
        .await
        .expect("read while a member is down");
    assert_eq!(listed.count, 5 + 20 - 1);

    let last = *expected.keys().last().expect("writes");
    let events = collect_until(&mut watch_all, last, "watch over all members").await;
    if expected
        .values()
        .filter(|(_, k)| *k == EventKind::Delete)
        .count()
        == 0
    {
        // The delete was applied by a cut-off attempt; take its revision from the watch.
        let del = events
            .iter()
            .find(|e| e.kind == EventKind::Delete)
            .expect("delete event");
        expected.insert(del.revision(), ("/t/during-3".into(), EventKind::Delete));
    }
    assert_exact("watch over all members", &events, &expected);
    let delete = events
        .iter()
        .find(|e| e.kind == EventKind::Delete)
        .expect("delete event");
    assert_eq!(
        delete.prev_kv.as_ref().map(|kv| kv.value.clone()),
        Some(Bytes::from_static(b"v")),
        "a delete event carries the deleted value"
    );

    // Member 0 comes back within the resume window; its watch catches up from where it was.
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.members[0].restart();
    let after = create_with_retry(&store, "/t/after-restart", "v").await;
    expected.insert(after, ("/t/after-restart".into(), EventKind::Put));
    let first_events = collect_until(&mut watch_first, after, "watch over member 0").await;
    assert_exact("watch over member 0", &first_events, &expected);
    let rest = collect_until(&mut watch_all, after, "watch over all members").await;
    assert_eq!(
        rest.iter().map(Event::revision).collect::<Vec<_>>(),
        vec![after]
    );

    // The restarted member serves reads again with everything written while it was down.
    let deadline = Instant::now() + FAILOVER_WINDOW;
    loop {
        match only_first.count(b"/t/").await {
            Ok(n) if n == 5 + 20 - 1 + 1 => break,
            Ok(n) if Instant::now() < deadline => eprintln!("member 0 sees {n} keys so far"),
            Err(e) if Instant::now() < deadline => eprintln!("member 0 not ready: {e}"),
            other => panic!("member 0 after restart: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_endpoints_fail_fast_naming_them() {
    let port = skiff_testkit::free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut opts = EtcdOptions::new([endpoint.clone()]);
    opts.connect_timeout = Duration::from_secs(1);
    let started = Instant::now();
    let err = match EtcdStore::connect(opts).await {
        Ok(_) => panic!("connected to a port nobody listens on"),
        Err(e) => e,
    };
    eprintln!("connect to nothing: {err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains(&endpoint), "{err}");
}

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }
}

/// A CA, a server certificate for 127.0.0.1/localhost, and a client certificate, as PEM files.
fn make_pki() -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |name: &str, pem: String| std::fs::write(dir.path().join(name), pem).unwrap();

    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "skiff test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    write("ca.pem", ca.pem());

    let leaf = |cn: &str, sans: Vec<String>, usage: ExtendedKeyUsagePurpose, stem: &str| {
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();
        write(&format!("{stem}.pem"), cert.pem());
        write(&format!("{stem}-key.pem"), key.serialize_pem());
    };
    leaf(
        "etcd",
        vec!["127.0.0.1".into(), "localhost".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
        "server",
    );
    leaf(
        "skiff-apiserver",
        vec![],
        ExtendedKeyUsagePurpose::ClientAuth,
        "client",
    );
    Pki { dir }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_client_certificates() {
    let pki = make_pki();
    let files = TlsFiles {
        ca: pki.path("ca.pem"),
        server_cert: pki.path("server.pem"),
        server_key: pki.path("server-key.pem"),
        client_cert_auth: true,
    };
    let cluster = tokio::task::spawn_blocking(move || EtcdCluster::start_members(1, Some(files)))
        .await
        .expect("cluster");
    let endpoints = cluster.endpoints();
    assert!(endpoints[0].starts_with("https://"));

    let mut opts = EtcdOptions::new(endpoints.clone());
    opts.tls = Some(EtcdTls {
        ca_file: pki.path("ca.pem"),
        cert_file: Some(pki.path("client.pem")),
        key_file: Some(pki.path("client-key.pem")),
    });
    // etcd may still be finishing startup behind the open port; allow it a moment.
    let store = connect_eventually(opts).await;

    let mut watch = store.watch(b"/tls/", 0).await.expect("watch over TLS");
    let created = store
        .create(b"/tls/a", Bytes::from_static(b"1"), 0)
        .await
        .expect("create over TLS");
    let WriteOutcome::Done { revision, prev } = created else {
        panic!("create over TLS: {created:?}");
    };
    assert_eq!(prev, None);
    let got = store.get(b"/tls/a").await.expect("get").expect("key");
    assert_eq!(got.value, Bytes::from_static(b"1"));
    assert_eq!(got.mod_revision, revision);
    let ev = timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("event within 10 s")
        .expect("stream open")
        .expect("event");
    assert_eq!(ev.kind, EventKind::Put);
    assert_eq!(ev.kv, got);

    // Without a client certificate the server refuses us: a clear error, not a hang.
    let mut no_cert = EtcdOptions::new(endpoints.clone());
    no_cert.connect_timeout = Duration::from_secs(3);
    no_cert.tls = Some(EtcdTls {
        ca_file: pki.path("ca.pem"),
        cert_file: None,
        key_file: None,
    });
    let err = match timeout(Duration::from_secs(10), EtcdStore::connect(no_cert)).await {
        Ok(Ok(_)) => panic!("connected without a client certificate"),
        Ok(Err(e)) => e,
        Err(_) => panic!("connect without a client certificate hung"),
    };
    eprintln!("connect without a client certificate: {err}");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains(&endpoints[0]), "{err}");

    // A missing CA file is named in the error.
    let mut bad_ca = EtcdOptions::new(endpoints);
    bad_ca.tls = Some(EtcdTls {
        ca_file: pki.path("missing.pem"),
        cert_file: None,
        key_file: None,
    });
    let err = match EtcdStore::connect(bad_ca).await {
        Ok(_) => panic!("connected with a missing CA file"),
        Err(e) => e,
    };
    assert!(err.to_string().contains("missing.pem"), "{err}");
}

async fn connect_eventually(opts: EtcdOptions) -> EtcdStore {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match EtcdStore::connect(opts.clone()).await {
            Ok(store) => return store,
            Err(e) if Instant::now() < deadline => {
                eprintln!("TLS connect not ready yet: {e}");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(e) => panic!("TLS connect with a client certificate failed: {e}"),
        }
    }
}

/// etcd's errors arrive as the store's typed errors, naming what was asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_errors_map_to_store_errors() {
    let cluster = tokio::task::spawn_blocking(EtcdCluster::start)
        .await
        .expect("cluster");
    let store = EtcdStore::connect(EtcdOptions::new(cluster.endpoints()))
        .await
        .expect("connect");
    let mut revs = Vec::new();
    for i in 0..4 {
        let out = store
            .update(
                b"/e/k",
                Bytes::from(format!("v{i}")),
                revs.last().copied().unwrap_or(0),
                0,
            )
            .await
            .expect("write");
        let WriteOutcome::Done { revision, .. } = out else {
            panic!("update: {out:?}")
        };
        revs.push(revision);
    }
    let current = store.current_revision().await.expect("revision");
    assert_eq!(current, revs[3]);

    // Past reads work until compacted.
    let old = store
        .range(RangeRequest::key("/e/k").at_revision(revs[1]))
        .await
        .expect("read at an old revision");
    assert_eq!(old.kvs[0].value, Bytes::from_static(b"v1"));

    match store
        .range(RangeRequest::key("/e/k").at_revision(current + 5))
        .await
    {
        Err(StoreError::FutureRevision {
            revision,
            current: c,
        }) => {
            assert_eq!((revision, c), (current + 5, current));
        }
        other => panic!("future read: {other:?}"),
    }
    store.compact(revs[2]).await.expect("compact");
    match store
        .range(RangeRequest::key("/e/k").at_revision(revs[0]))
        .await
    {
        Err(StoreError::Compacted { revision, .. }) => assert_eq!(revision, revs[0]),
        other => panic!("compacted read: {other:?}"),
    }
    assert!(matches!(
        store.compact(revs[1]).await,
        Err(StoreError::Compacted { .. })
    ));
    assert!(matches!(
        store.compact(current + 10).await,
        Err(StoreError::FutureRevision { .. })
    ));
    let mut watch = store.watch(b"/e/", revs[0]).await.expect("watch");
    match timeout(Duration::from_secs(10), watch.next()).await {
        Ok(Some(Err(StoreError::Compacted {
            revision,
            compact_revision,
        }))) => {
            assert_eq!(revision, revs[0]);
            assert_eq!(compact_revision, revs[2]);
        }
        other => panic!("watch from a compacted revision: {other:?}"),
    }
    assert!(
        timeout(Duration::from_secs(5), watch.next())
            .await
            .expect("stream ends")
            .is_none(),
        "the stream ends after the compaction error"
    );

    // Leases: grant, renew, attach, revoke, and the not-found cases.
    let lease = store.lease_grant(1).await.expect("grant");
    assert!(lease.ttl >= 1, "{lease:?}");
    assert_eq!(
        store.lease_keep_alive(lease.id).await.expect("renew"),
        lease.ttl
    );
    let out = store
        .create(b"/e/leased", Bytes::from_static(b"x"), lease.id)
        .await
        .expect("create with lease");
    assert!(out.is_done());
    let mut watch = store.watch(b"/e/leased", 0).await.expect("watch");
    store.lease_revoke(lease.id).await.expect("revoke");
    let ev = timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("delete event")
        .expect("open")
        .expect("event");
    assert_eq!(ev.kind, EventKind::Delete);
    assert_eq!(ev.prev_kv.map(|kv| kv.lease), Some(lease.id));
    assert!(store.get(b"/e/leased").await.expect("get").is_none());
    assert!(matches!(
        store.lease_keep_alive(lease.id).await,
        Err(StoreError::LeaseNotFound(id)) if id == lease.id
    ));
    assert!(matches!(
        store.lease_revoke(lease.id).await,
        Err(StoreError::LeaseNotFound(id)) if id == lease.id
    ));
    assert!(matches!(
        store.create(b"/e/orphan", Bytes::from_static(b"x"), lease.id).await,
        Err(StoreError::LeaseNotFound(id)) if id == lease.id
    ));
}
