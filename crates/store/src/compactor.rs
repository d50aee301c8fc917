//! Periodic compaction, the way kube-apiserver drives etcd: every `window`, compact to the
//! revision that was current one window ago, so at least `window` of history stays readable.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::{Store, StoreError};

/// Starts the compaction loop on the current tokio runtime; abort the handle to stop it.
pub fn spawn_compactor(store: Arc<dyn Store>, window: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut previous: Option<i64> = None;
        let mut tick = tokio::time::interval(window);
        tick.tick().await; // the first tick fires at once; history starts counting now
        loop {
            tick.tick().await;
            if let Some(revision) = previous.filter(|r| *r > 0) {
                match store.compact(revision).await {
                    // Someone else (another server on the same etcd) compacted further.
                    Ok(()) | Err(StoreError::Compacted { .. }) => {}
                    Err(err) => tracing::warn!(%err, revision, "compaction failed; will retry"),
                }
            }
            match store.current_revision().await {
                Ok(rev) => previous = Some(rev),
                Err(err) => tracing::warn!(%err, "compactor could not read the current revision"),
            }
        }
    })
}
