//! Runs a work queue's workers: take a key, reconcile it, and on failure requeue it with
//! backoff; on success forget its failures and requeue it only when asked to.

use std::fmt::Display;
use std::future::Future;
use std::hash::Hash;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::queue::WorkQueue;

/// Processes keys from `queue` with `workers` concurrent workers until `shutdown` fires.
/// `reconcile` returns `Ok(Some(d))` to look at the key again after `d`.
pub async fn run<T, F, Fut, E>(
    queue: WorkQueue<T>,
    workers: usize,
    shutdown: CancellationToken,
    reconcile: F,
) where
    T: Clone + Eq + Hash + Send + Sync + Display + 'static,
    F: Fn(T) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<Duration>, E>> + Send,
    E: Display + Send,
{
    let mut tasks = Vec::with_capacity(workers);
    for _ in 0..workers.max(1) {
        let queue = queue.clone();
        let reconcile = reconcile.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(key) = queue.get().await {
                match reconcile(key.clone()).await {
                    Ok(next) => {
                        queue.forget(&key);
                        if let Some(after) = next {
                            queue.add_after(key.clone(), after);
                        }
                    }
                    Err(e) => {
                        let failures = queue.failures(&key);
                        // The first failures are usually conflicts with a stale cache; say
                        // them quietly, and loudly once they persist.
                        if failures < 5 {
                            tracing::debug!(queue = queue.name(), %key, "retrying: {e}");
                        } else {
                            tracing::warn!(queue = queue.name(), %key, failures, "retrying: {e}");
                        }
                        queue.add_rate_limited(key.clone());
                    }
                }
                queue.done(&key);
            }
        }));
    }
    shutdown.cancelled().await;
    queue.shut_down();
    for task in tasks {
        let _ = task.await;
    }
}
