//! Spreads a periodic per-node action evenly over its interval: node `j` of `n` acts at
//! `j * interval / n` into every round, so 5,000 nodes renewing every 10 s make a steady
//! 500 requests a second rather than a burst each 10 s.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use skiff_runtime::CancellationToken;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// How far into each round item `j` of `count` acts.
pub fn offset(j: u32, count: u32, interval: Duration) -> Duration {
    let nanos = interval.as_nanos() * u128::from(j) / u128::from(count.max(1));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// Calls `act(j)` for every `j < count` once per `interval`, each at its offset, the
/// first round starting at `first`, until `shutdown`. Each call runs on its own task
/// holding a permit of `permits`, so at most that many are in flight; when all are
/// busy the schedule waits (the API server is slow: adding load would not help).
/// After a stall longer than a round the schedule restarts from now instead of
/// catching up in a burst.
pub async fn run<F, Fut>(
    count: u32,
    interval: Duration,
    first: Instant,
    permits: Arc<Semaphore>,
    shutdown: CancellationToken,
    act: F,
) where
    F: Fn(u32) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let act = Arc::new(act);
    let mut base = first;
    let mut j = 0;
    loop {
        let due = base + offset(j, count, interval);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep_until(due) => {}
        }
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let now = Instant::now();
        if now > due + interval {
            base = now - offset(j, count, interval);
        }
        let act = act.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = act(j) => {}
            }
            drop(permit);
        });
        j += 1;
        if j == count {
            j = 0;
            base += interval;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn offsets_divide_the_interval_evenly() {
        let i = Duration::from_secs(10);
        assert_eq!(offset(0, 5000, i), Duration::ZERO);
        assert_eq!(offset(1, 5000, i), Duration::from_millis(2));
        assert_eq!(offset(2500, 5000, i), Duration::from_secs(5));
        assert_eq!(offset(4999, 5000, i), Duration::from_millis(9998));
        assert_eq!(offset(0, 0, i), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn each_item_acts_once_per_round_at_its_offset() {
        let start = Instant::now();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let shutdown = CancellationToken::new();
        let s = seen.clone();
        let task = tokio::spawn(run(
            4,
            Duration::from_secs(8),
            start,
            Arc::new(Semaphore::new(2)),
            shutdown.clone(),
            move |j| {
                let s = s.clone();
                async move {
                    s.lock().unwrap().push((j, start.elapsed().as_secs()));
                }
            },
        ));
        tokio::time::sleep(Duration::from_secs(15)).await;
        shutdown.cancel();
        let _ = task.await;
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            vec![
                (0, 0),
                (1, 2),
                (2, 4),
                (3, 6),
                (0, 8),
                (1, 10),
                (2, 12),
                (3, 14)
            ]
        );
    }
}
