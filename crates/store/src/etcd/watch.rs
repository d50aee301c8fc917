//! A watch that survives members dying: when the gRPC stream breaks it opens a new one from
//! the revision after the last event it received, so the consumer sees every change once,
//! in order. No background task: the state lives in the stream, and dropping the stream
//! drops the gRPC stream with it.

use std::collections::VecDeque;
use std::time::Duration;

use etcd_client as ec;
use futures::StreamExt;
use tokio::time::Instant;

use super::convert;
use crate::{Event, EventKind, KeyValue, Result, StoreError, WatchStream};

/// How long to keep trying to re-establish a broken watch before giving up.
const RESUME_WINDOW: Duration = Duration::from_secs(30);
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(2);
/// One attempt to open a stream: with every member down the balancer waits, not fails.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

struct Watcher {
    client: ec::WatchClient,
    prefix: Vec<u8>,
    /// The first revision not yet received: where a new stream starts.
    next_rev: i64,
    stream: Option<ec::WatchStream>,
    ready: VecDeque<Event>,
    /// The error to yield once `ready` is drained; then the stream ends.
    pending_error: Option<StoreError>,
    done: bool,
}

/// Opens the watch and waits until etcd has registered it, so every change made after this
/// returns is delivered.
pub(super) async fn start(
    client: ec::WatchClient,
    prefix: Vec<u8>,
    from_revision: i64,
) -> Result<WatchStream> {
    let mut watcher = Watcher {
        client,
        prefix,
        // 0 asks etcd for "from now"; the created response tells us what now was.
        next_rev: if from_revision > 0 {
            from_revision + 1
        } else {
            0
        },
        stream: None,
        ready: VecDeque::new(),
        pending_error: None,
        done: false,
    };
    watcher.open_bounded().await?;
    Ok(futures::stream::unfold(watcher, |mut w| async move {
        w.next().await.map(|item| (item, w))
    })
    .boxed())
}

/// What one message from etcd means for the consumer.
enum Step {
    Continue,
    /// The stream broke or ended; open another.
    Broken(String),
    /// Final error for the consumer.
    Fatal(StoreError),
}

impl Watcher {
    /// Opens a gRPC watch stream from `next_rev` and waits for etcd's "created" answer.
    async fn open(&mut self) -> Result<()> {
        let opts = ec::WatchOptions::new()
            .with_prefix()
            .with_prev_key()
            .with_start_revision(self.next_rev);
        let mut stream = self
            .client
            .watch(self.prefix.clone(), Some(opts))
            .await
            .map_err(|e| convert::error(e, convert::ErrorContext::revision(self.next_rev)))?;
        loop {
            let resp = match stream.message().await {
                Ok(Some(resp)) => resp,
                Ok(None) => {
                    return Err(StoreError::Unavailable(
                        "etcd closed the watch before creating it".to_string(),
                    ))
                }
                Err(e) => {
                    return Err(convert::error(
                        e,
                        convert::ErrorContext::revision(self.next_rev),
                    ))
                }
            };
            let created = resp.created();
            if created && self.next_rev == 0 {
                self.next_rev = resp.header().map_or(0, |h| h.revision()) + 1;
            }
            match self.absorb(resp) {
                // Compaction comes as its own answer after "created"; either way it ends
                // the stream with that error, after anything already received.
                Step::Fatal(e) => {
                    self.finish(e);
                    return Ok(());
                }
                Step::Broken(why) => return Err(StoreError::Unavailable(why)),
                Step::Continue if created => {
                    self.stream = Some(stream);
                    return Ok(());
                }
                Step::Continue => {}
            }
        }
    }

    async fn open_bounded(&mut self) -> Result<()> {
        tokio::time::timeout(OPEN_TIMEOUT, self.open())
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::Unavailable(format!(
                    "no etcd member accepted the watch within {OPEN_TIMEOUT:?}"
                )))
            })
    }

    /// Takes the events and status of one response.
    fn absorb(&mut self, resp: ec::WatchResponse) -> Step {
        if resp.compact_revision() > 0 {
            return Step::Fatal(StoreError::Compacted {
                revision: self.next_rev - 1,
                compact_revision: resp.compact_revision(),
            });
        }
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            // Events below next_rev were already delivered by an earlier stream.
            if kv.mod_revision() < self.next_rev {
                continue;
            }
            self.ready.push_back(event(ev, kv));
        }
        if let Some(last) = self.ready.back() {
            self.next_rev = self.next_rev.max(last.revision() + 1);
        }
        if resp.canceled() {
            let reason = resp.cancel_reason();
            return Step::Broken(if reason.is_empty() {
                "etcd canceled the watch".to_string()
            } else {
                format!("etcd canceled the watch: {reason}")
            });
        }
        Step::Continue
    }

    async fn next(&mut self) -> Option<Result<Event>> {
        loop {
            if let Some(ev) = self.ready.pop_front() {
                return Some(Ok(ev));
            }
            if let Some(err) = self.pending_error.take() {
                return Some(Err(err));
            }
            if self.done {
                return None;
            }
            let step = match self.stream.as_mut() {
                None => Step::Broken("watch stream not open".to_string()),
                Some(stream) => match stream.message().await {
                    Ok(Some(resp)) => self.absorb(resp),
                    Ok(None) => Step::Broken("etcd ended the watch stream".to_string()),
                    Err(e) => Step::Broken(e.to_string()),
                },
            };
            match step {
                Step::Continue => {}
                Step::Fatal(e) => {
                    self.finish(e);
                }
                Step::Broken(why) => {
                    self.stream = None;
                    if let Err(e) = self.resume(why).await {
                        self.finish(e);
                    }
                }
            }
        }
    }

    /// Ends the stream with `err` after any events already received.
    fn finish(&mut self, err: StoreError) {
        self.stream = None;
        self.done = true;
        self.pending_error = Some(err);
    }

    /// Reopens the watch from `next_rev`, with backoff, for up to [`RESUME_WINDOW`].
    async fn resume(&mut self, why: String) -> Result<()> {
        tracing::debug!(revision = self.next_rev, %why, "etcd watch broke; resuming");
        let deadline = Instant::now() + RESUME_WINDOW;
        let mut pause = FIRST_PAUSE;
        loop {
            let last = match self.open_bounded().await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if Instant::now() + pause > deadline {
                return Err(StoreError::Unavailable(format!(
                    "etcd watch could not resume from revision {} within {:?}: {last}",
                    self.next_rev, RESUME_WINDOW
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }
}

/// etcd marks a deletion by version 0 on the event's kv; reading that instead of the event
/// type avoids etcd-client's panic on an unknown type number.
fn event(ev: &ec::Event, kv: &ec::KeyValue) -> Event {
    let prev_kv = ev.prev_kv().map(convert::key_value);
    if kv.version() == 0 {
        Event {
            kind: EventKind::Delete,
            kv: KeyValue {
                key: bytes::Bytes::copy_from_slice(kv.key()),
                mod_revision: kv.mod_revision(),
                ..KeyValue::default()
            },
            prev_kv,
        }
    } else {
        Event {
            kind: EventKind::Put,
            kv: convert::key_value(kv),
            prev_kv,
        }
    }
}
