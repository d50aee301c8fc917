//! Runs a work queue's workers: take a key, reconcile it, and on failure requeue it with
//! backoff; on success forget its failures and requeue it only when asked to.

use std::fmt::Display;
use std::future::Future;
use std::hash::Hash;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;

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
                // A bug in one reconcile must not kill the worker and leave its key
                // marked "processing" for ever: report it and retry with backoff.
                let outcome = AssertUnwindSafe(reconcile(key.clone()))
                    .catch_unwind()
                    .await;
                let Ok(outcome) = outcome else {
                    tracing::error!(queue = queue.name(), %key, "reconcile panicked; retrying with backoff");
                    queue.add_rate_limited(key.clone());
                    queue.done(&key);
                    continue;
                };
                match outcome {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn a_panicking_reconcile_is_retried_and_the_worker_survives() {
        let queue: WorkQueue<String> = WorkQueue::new("t", Duration::from_millis(10));
        let calls = Arc::new(AtomicUsize::new(0));
        let shutdown = CancellationToken::new();
        let c = calls.clone();
        let stop = shutdown.clone();
        let task = tokio::spawn(run(
            queue.clone(),
            1,
            shutdown.clone(),
            move |key: String| {
                let c = c.clone();
                let stop = stop.clone();
                async move {
                    if c.fetch_add(1, Ordering::SeqCst) == 0 {
                        panic!("bug in reconcile of {key}");
                    }
                    stop.cancel();
                    Ok::<_, String>(None)
                }
            },
        ));
        queue.add("a".to_string());
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the key was retried after the panic")
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
