//! Crash safety: SIGKILL `skiff server` in the middle of a write load from 8 concurrent
//! kube-rs clients, restart it on the same data dir, and check that every acknowledged
//! object is there; and that a kube-rs watcher running across the crash ends up with
//! exactly the server's objects (no gap; re-listing on 410 is allowed).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use rand::Rng;
use support::Server;

const WRITERS: usize = 8;

async fn create_namespace(server: &Server, name: &str) {
    let namespaces: Api<Namespace> = Api::all(server.kube().await);
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
}

/// What one round of load left behind.
struct Round {
    acked: BTreeSet<String>,
    killed_after: Duration,
}

/// 8 kube-rs clients create ConfigMaps as fast as they can; SIGKILL the server 0.5–2 s
/// in. Returns the names whose create was acknowledged (a success response arrived).
async fn load_then_kill(server: &mut Server, ns: &str, round: usize) -> Round {
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let killing = Arc::new(AtomicBool::new(false));
    let early_errors = Arc::new(Mutex::new(Vec::new()));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        // Each writer is its own client (own connections), like separate programs.
        let cms: Api<ConfigMap> = Api::namespaced(server.kube().await, ns);
        let (acked, killing, early_errors) = (acked.clone(), killing.clone(), early_errors.clone());
        writers.push(tokio::spawn(async move {
            for n in 0..100_000 {
                let name = format!("r{round}-w{w}-{n}");
                let cm = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        ..Default::default()
                    },
                    data: Some(BTreeMap::from([("n".into(), n.to_string())])),
                    ..Default::default()
                };
                match cms.create(&PostParams::default(), &cm).await {
                    Ok(_) => {
                        acked.lock().unwrap().insert(name);
                    }
                    Err(_) if killing.load(Ordering::SeqCst) => return,
                    Err(e) => {
                        early_errors.lock().unwrap().push(format!("{name}: {e}"));
                        return;
                    }
                }
            }
        }));
    }
    let killed_after = Duration::from_millis(rand::rng().random_range(500..=2000));
    tokio::time::sleep(killed_after).await;
    killing.store(true, Ordering::SeqCst);
    tokio::task::block_in_place(|| server.kill());
    for w in writers {
        tokio::time::timeout(Duration::from_secs(30), w)
            .await
            .expect("writers stop within 30 s of the kill")
            .expect("writer task");
    }
    let early = early_errors.lock().unwrap().clone();
    assert!(
        early.is_empty(),
        "round {round}: creates failed before the kill: {early:?}"
    );
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(
        acked.len() >= WRITERS,
        "round {round}: only {} creates acknowledged in {killed_after:?}",
        acked.len()
    );
    Round {
        acked,
        killed_after,
    }
}

/// name -> resourceVersion of every ConfigMap in `ns`, as the server lists them.
async fn server_state(server: &Server, ns: &str) -> BTreeMap<String, String> {
    let cms: Api<ConfigMap> = Api::namespaced(server.kube().await, ns);
    cms.list(&ListParams::default())
        .await
        .expect("list after restart")
        .into_iter()
        .map(|c| {
            (
                c.metadata.name.unwrap_or_default(),
                c.metadata.resource_version.unwrap_or_default(),
            )
        })
        .collect()
}

fn missing_from<'a>(
    acked: &'a BTreeSet<String>,
    present: &BTreeMap<String, String>,
) -> Vec<&'a String> {
    acked.iter().filter(|n| !present.contains_key(*n)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    let mut server = tokio::task::block_in_place(Server::start);
    create_namespace(&server, "crash").await;
    let mut all_acked = BTreeSet::new();
    for round in 0..3 {
        let r = load_then_kill(&mut server, "crash", round).await;
        tokio::task::block_in_place(|| server.restart());
        all_acked.extend(r.acked.iter().cloned());
        let present = server_state(&server, "crash").await;
        let missing = missing_from(&all_acked, &present);
        assert!(
            missing.is_empty(),
            "round {round} (SIGKILL {:?} into the load, {} acknowledged this round): \
             {} acknowledged ConfigMaps are gone after restart: {:?}",
            r.killed_after,
            r.acked.len(),
            missing.len(),
            missing.iter().take(20).collect::<Vec<_>>()
        );
        eprintln!(
            "round {round}: killed after {:?}, {} acknowledged, {} present",
            r.killed_after,
            r.acked.len(),
            present.len()
        );
    }
    // The restarted server still takes writes.
    let cms: Api<ConfigMap> = Api::namespaced(server.kube().await, "crash");
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("after-crashes".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("writes after the crashes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_watchers_resume_across_sigkill_without_a_gap() {
    let mut server = tokio::task::block_in_place(Server::start);
    create_namespace(&server, "watched").await;
    // The watcher's client is built once and kept across every kill and restart.
    let cms: Api<ConfigMap> = Api::namespaced(server.kube().await, "watched");
    let (store, writer) = reflector::store::<ConfigMap>();
    let relists = Arc::new(Mutex::new(0usize));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let (inits, errs) = (relists.clone(), errors.clone());
    let task = tokio::spawn(
        reflector(writer, watcher(cms, watcher::Config::default()))
            .backoff(support::QuickBackoff)
            .for_each(move |ev| {
                match ev {
                    Ok(watcher::Event::Init) => *inits.lock().unwrap() += 1,
                    Ok(_) => {}
                    Err(e) => errs.lock().unwrap().push(e.to_string()),
                }
                futures::future::ready(())
            }),
    );
    tokio::time::timeout(Duration::from_secs(10), store.wait_until_ready())
        .await
        .expect("watcher ready within 10 s")
        .expect("writer alive");

    let mut all_acked = BTreeSet::new();
    for round in 0..3 {
        let r = load_then_kill(&mut server, "watched", round).await;
        tokio::task::block_in_place(|| server.restart());
        all_acked.extend(r.acked.iter().cloned());
        let want = server_state(&server, "watched").await;
        let missing = missing_from(&all_acked, &want);
        assert!(
            missing.is_empty(),
            "round {round}: acknowledged ConfigMaps gone after restart: {missing:?}"
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let have: BTreeMap<String, String> = store
                .state()
                .iter()
                .map(|c| {
                    (
                        c.metadata.name.clone().unwrap_or_default(),
                        c.metadata.resource_version.clone().unwrap_or_default(),
                    )
                })
                .collect();
            if have == want {
                break;
            }
            if Instant::now() > deadline {
                let errors = errors.lock().unwrap();
                panic!(
                    "round {round} (SIGKILL {:?} into the load): the kube-rs watcher did not \
                     converge to the server's {} ConfigMaps within 30 s of the restart: it has \
                     {}, missing {} acknowledged ({:?}...), {} extra; re-lists so far {}; \
                     {} watcher errors, the last: {:?}",
                    r.killed_after,
                    want.len(),
                    have.len(),
                    missing_from(&all_acked, &have).len(),
                    missing_from(&all_acked, &have)
                        .into_iter()
                        .take(5)
                        .collect::<Vec<_>>(),
                    have.keys().filter(|k| !want.contains_key(*k)).count(),
                    relists.lock().unwrap(),
                    errors.len(),
                    errors.last()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!(
            "round {round}: killed after {:?}, {} acknowledged, watcher in sync with {} objects \
             ({} lists so far)",
            r.killed_after,
            r.acked.len(),
            want.len(),
            relists.lock().unwrap()
        );
    }
    task.abort();
}
