//! The embedded store on disk: acknowledged writes survive SIGKILL, history survives a
//! restart, and damaged files are refused with an error naming them, never a panic.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::{Rng, RngCore};
use skiff_store::{
    EmbeddedOptions, EmbeddedStore, Store, StoreError, Txn, TxnOp, MAX_REQUEST_BYTES,
};

#[path = "conformance/support.rs"]
#[allow(dead_code, unused_imports, unused_macros)]
mod support;

use support::{
    assert_err, current_revision, delete, describe, events_before_fence, get, ok, put, revisions,
    value_of, watch,
};

/// Set (to the store path) only in the child process of the crash test.
const CHILD_ENV: &str = "SKIFF_STORE_CRASH_CHILD_PATH";
const CHILD_TEST: &str = "crash_child_writes_and_acknowledges_until_killed";
const CRASH_ROUNDS: usize = 20;
const CHILD_WRITERS: usize = 16;

fn store_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("store.redb")
}

async fn open(path: &Path) -> EmbeddedStore {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        EmbeddedStore::open(&path, EmbeddedOptions::default())
            .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()))
    })
    .await
    .expect("open task")
}

async fn close(store: EmbeddedStore) {
    ok("close", store.close().await);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

// ---------------------------------------------------------------------------------------
// Crash safety

/// The child of `store_keeps_every_acknowledged_write_across_sigkill`: writes from many tasks
/// as fast as it can and prints `ACK <key> <revision>` after each acknowledged write. Does
/// nothing when run as part of the normal suite.
#[test]
#[ignore = "run by store_keeps_every_acknowledged_write_across_sigkill in a child process"]
fn crash_child_writes_and_acknowledges_until_killed() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    runtime().block_on(async move {
        let store: Arc<dyn Store> = Arc::new(open(Path::new(&path)).await);
        let pid = std::process::id();
        let writers: Vec<_> = (0..CHILD_WRITERS)
            .map(|task| {
                let store = store.clone();
                tokio::spawn(async move {
                    for i in 0u64.. {
                        let key = format!("/crash/{pid}/{task}/{i}");
                        let revision = put(&*store, &key, format!("value-{i}")).await;
                        // One write(2) per line: below PIPE_BUF, so a kill never leaves half.
                        let line = format!("ACK {key} {revision}\n");
                        let mut out = std::io::stdout().lock();
                        out.write_all(line.as_bytes()).expect("stdout");
                        out.flush().expect("stdout");
                    }
                })
            })
            .collect();
        // Should the parent die without killing us, stop on our own.
        let _ =
            tokio::time::timeout(Duration::from_secs(60), futures::future::join_all(writers)).await;
    });
}

/// One acknowledged write reported by the child.
struct Ack {
    key: String,
    revision: i64,
}

fn parse_ack(line: &str) -> Option<Ack> {
    let mut fields = line.strip_prefix("ACK ")?.split(' ');
    let (key, revision) = (fields.next()?, fields.next()?.parse().ok()?);
    fields.next().is_none().then(|| Ack {
        key: key.to_string(),
        revision,
    })
}

/// Starts the child writer on `path`, lets it write for `run_for` after its first
/// acknowledgement, SIGKILLs it and returns what it acknowledged.
fn run_child_then_kill(path: &Path, run_for: Duration) -> Vec<Ack> {
    let exe = std::env::current_exe().expect("test binary path");
    let mut child = Command::new(exe)
        .args(["--exact", CHILD_TEST, "--nocapture", "--ignored"])
        .env(CHILD_ENV, path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the child writer");
    let stdout = child.stdout.take().expect("child stdout");
    let mut stderr = child.stderr.take().expect("child stderr");
    let (lines_tx, lines) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(|line| line.ok()) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });

    let mut acks = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while acks.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => acks.extend(parse_ack(&line)),
            Err(_) => {
                kill(&mut child);
                panic!(
                    "the child writer acknowledged nothing within 30 s; its stderr:\n{}",
                    stderr_reader.join().unwrap_or_default()
                );
            }
        }
    }
    std::thread::sleep(run_for);
    kill(&mut child);
    reader.join().expect("stdout reader");
    drop(stderr_reader);
    acks.extend(lines.try_iter().filter_map(|line| parse_ack(&line)));
    acks
}

fn kill(child: &mut Child) {
    child.kill().expect("SIGKILL the child writer");
    child.wait().expect("reap the child writer");
}

/// Reopens the store after a crash and checks every acknowledged write is there. Returns
/// the store's current revision.
async fn verify_acks_after_crash(path: &Path, round: usize, acks: &[Ack]) -> i64 {
    let store = open(path).await;
    for ack in acks {
        let kv = get(&store, &ack.key).await.unwrap_or_else(|| {
            panic!(
                "round {round}: {} acknowledged at revision {} is missing after SIGKILL",
                ack.key, ack.revision
            )
        });
        assert!(
            kv.mod_revision >= ack.revision,
            "round {round}: {} has mod revision {} below the acknowledged {}",
            ack.key,
            kv.mod_revision,
            ack.revision
        );
    }
    let current = current_revision(&store).await;
    let highest = acks.iter().map(|a| a.revision).max().unwrap_or(0);
    assert!(
        current >= highest,
        "round {round}: current revision {current} is below acknowledged revision {highest}"
    );
    close(store).await;
    current
}

#[test]
fn store_keeps_every_acknowledged_write_across_sigkill() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = store_path(&dir);
    let rt = runtime();
    let mut rng = rand::rng();
    let (mut revision_before, mut acknowledged) = (0i64, 0usize);
    for round in 0..CRASH_ROUNDS {
        let run_for = Duration::from_millis(rng.random_range(50..=400));
        let acks = run_child_then_kill(&path, run_for);
        let mut revs: Vec<i64> = acks.iter().map(|a| a.revision).collect();
        revs.sort_unstable();
        assert!(
            revs.windows(2).all(|w| w[0] < w[1]),
            "round {round}: two writes acknowledged at one revision"
        );
        assert!(
            revs[0] > revision_before,
            "round {round}: acknowledged revision {} does not continue above {revision_before}, \
             the revision before this round",
            revs[0]
        );
        revision_before = rt.block_on(verify_acks_after_crash(&path, round, &acks));
        acknowledged += acks.len();
    }
    println!(
        "crash safety: {CRASH_ROUNDS} SIGKILL rounds, {acknowledged} acknowledged writes all \
         present, final revision {revision_before}"
    );
}

// ---------------------------------------------------------------------------------------
// Restart

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_history_survives_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = store_path(&dir);
    let store = open(&path).await;
    let from = put(&store, "/h/a", "1").await;
    let mut expected_revisions = vec![
        put(&store, "/h/b", "1").await,
        put(&store, "/h/a", "2").await,
        delete(&store, "/h/b").await,
    ];
    let txn = ok(
        "txn",
        store
            .txn(
                Txn::new()
                    .and_then(TxnOp::put("/h/c", "3", 0))
                    .and_then(TxnOp::delete("/h/a")),
            )
            .await,
    );
    expected_revisions.extend([txn.revision, txn.revision]);
    let last = current_revision(&store).await;
    close(store).await;

    let store = open(&path).await;
    assert_eq!(
        current_revision(&store).await,
        last,
        "the revision survives restart"
    );
    let mut stream = watch(&store, "/h/", from).await;
    let events = events_before_fence(&store, &mut stream, "/h/").await;
    let mut described = describe(&events);
    described[3..].sort(); // the txn's two changes share a revision
    assert_eq!(
        described,
        [
            "put /h/b=1 prev=-",
            "put /h/a=2 prev=1",
            "delete /h/b prev=1",
            "delete /h/a prev=2",
            "put /h/c=3 prev=-",
        ]
    );
    assert_eq!(revisions(&events), expected_revisions);
    assert_eq!(
        put(&store, "/h/after", "x").await,
        last + 2,
        "the fence took {}, the next write the one after",
        last + 1
    );
    close(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refused_oversize_write_leaves_nothing_after_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = store_path(&dir);
    let store = open(&path).await;
    let before = put(&store, "/o/a", "small").await;
    let huge = Bytes::from(vec![b'x'; MAX_REQUEST_BYTES + 1]);
    assert_err!(
        store
            .txn(
                Txn::new()
                    .and_then(TxnOp::put("/o/a", "changed", 0))
                    .and_then(TxnOp::put("/o/big", huge.clone(), 0)),
            )
            .await,
        StoreError::TooLarge { .. }
    );
    assert_err!(
        store.create(b"/o/big", huge, 0).await,
        StoreError::TooLarge { .. }
    );
    close(store).await;

    let store = open(&path).await;
    assert_eq!(value_of(&store, "/o/a").await.as_deref(), Some("small"));
    assert_eq!(get(&store, "/o/big").await, None);
    assert_eq!(current_revision(&store).await, before);
    close(store).await;
}

// ---------------------------------------------------------------------------------------
// Damaged files

/// Opens `path`, turning a panic into a test failure that says so.
async fn open_refused(path: &Path, what: &str) {
    let owned = path.to_path_buf();
    let opened = tokio::task::spawn_blocking(move || {
        std::panic::catch_unwind(|| EmbeddedStore::open(&owned, EmbeddedOptions::default()))
    })
    .await
    .expect("open task");
    let shown = path.display().to_string();
    match opened {
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!(
                "EmbeddedStore::open panicked on {what} instead of returning an error: {message}"
            )
        }
        Ok(Ok(store)) => {
            let _ = store.close().await;
            panic!("EmbeddedStore::open accepted {what} ({shown})")
        }
        Ok(Err(err)) => assert!(
            err.to_string().contains(&shown),
            "the error for {what} must name the file {shown}: {err}"
        ),
    }
}

/// A closed store with enough data that its middle holds live pages.
async fn valid_store_file(dir: &tempfile::TempDir) -> PathBuf {
    let path = store_path(dir);
    let store = open(&path).await;
    let value = "v".repeat(2048);
    for i in 0..400 {
        put(&store, format!("/d/{i:04}"), value.clone()).await;
    }
    close(store).await;
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_refuses_a_file_of_random_bytes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = store_path(&dir);
    let mut bytes = vec![0u8; 64 * 1024];
    rand::rng().fill_bytes(&mut bytes);
    std::fs::write(&path, bytes).expect("write random file");
    open_refused(&path, "a file of random bytes").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_refuses_a_zero_length_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = store_path(&dir);
    std::fs::File::create(&path).expect("create empty file");
    open_refused(&path, "a zero-length file").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_refuses_a_store_truncated_to_half() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = valid_store_file(&dir).await;
    let len = std::fs::metadata(&path).expect("store size").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_len(len / 2))
        .expect("truncate the store");
    open_refused(&path, "a store truncated to half its length").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_refuses_a_store_with_flipped_bytes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = valid_store_file(&dir).await;
    let mut bytes = std::fs::read(&path).expect("read store");
    let middle = bytes.len() / 2;
    for byte in &mut bytes[middle..middle + 16] {
        *byte ^= 0xa5;
    }
    std::fs::write(&path, bytes).expect("write damaged store");
    open_refused(&path, "a store with bytes flipped in the middle").await;
}
