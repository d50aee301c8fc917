//! One task per watch: replays history from disk while it is behind, then follows the
//! in-memory ring of fresh revisions. It tracks the last revision it has passed on, so
//! switching between the two sources can neither skip nor repeat a revision.

use std::sync::Arc;

use futures::StreamExt;
use redb::ReadableDatabase;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::hub::Next;
use super::{read, Shared};
use crate::{Event, Result, StoreError, WatchStream};

/// Revisions read from disk per replay step; bounds the memory a replay holds.
const REPLAY_SLICE: i64 = 256;
/// Events buffered for a consumer before the task waits for it.
const BUFFER: usize = 256;

pub(crate) fn start(shared: Arc<Shared>, prefix: Vec<u8>, from_revision: i64) -> WatchStream {
    let (tx, rx) = mpsc::channel(BUFFER);
    let after = if from_revision == 0 {
        shared.hub.latest()
    } else {
        from_revision
    };
    let compact_revision = shared.compact_revision();
    if after < compact_revision {
        let err = StoreError::Compacted {
            revision: after,
            compact_revision,
        };
        return futures::stream::once(async move { Err(err) }).boxed();
    }
    tokio::spawn(follow(shared, prefix, after, tx));
    ReceiverStream::new(rx).boxed()
}

async fn follow(
    shared: Arc<Shared>,
    prefix: Vec<u8>,
    mut after: i64,
    tx: mpsc::Sender<Result<Event>>,
) {
    let mut published = shared.hub.subscribe();
    loop {
        published.borrow_and_update();
        match shared.hub.next_after(after) {
            Next::Ready(revisions) => {
                for published in revisions {
                    for event in published
                        .events
                        .iter()
                        .filter(|e| e.kv.key.starts_with(&prefix))
                    {
                        if tx.send(Ok(event.clone())).await.is_err() {
                            return;
                        }
                    }
                    after = published.revision;
                }
            }
            Next::Replay => {
                let (db, pfx) = (shared.clone(), prefix.clone());
                let replay = tokio::task::spawn_blocking(move || {
                    let txn = db.db.begin_read().map_err(super::engine_err)?;
                    read::history(&txn, &pfx, after, REPLAY_SLICE)
                })
                .await
                .unwrap_or_else(|e| Err(StoreError::Engine(format!("watch replay failed: {e}"))));
                match replay {
                    Ok((events, until)) => {
                        for event in events {
                            if tx.send(Ok(event)).await.is_err() {
                                return;
                            }
                        }
                        after = until;
                    }
                    Err(err) => {
                        let _ = tx.send(Err(shared.name_file(err))).await;
                        return;
                    }
                }
            }
            Next::Wait => {
                tokio::select! {
                    changed = published.changed() => if changed.is_err() { return },
                    _ = tx.closed() => return,
                }
            }
        }
    }
}
