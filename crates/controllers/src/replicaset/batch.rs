//! Creating pods in slow-start batches (1, 2, 4, ...) behind a narrow trait, so the
//! batching and its bookkeeping are testable with a recording fake.

use std::future::Future;

use futures::future::join_all;
use k8s_openapi::api::core::v1::Pod;

use crate::util::podcontrol;

/// Writes pods. The real one goes through the API server; tests record.
pub trait PodCreator: Send + Sync {
    /// `Ok(None)`: not created, and never will be seen (the namespace is going away).
    fn create(&self, pod: &Pod) -> impl Future<Output = Result<Option<Pod>, kube::Error>> + Send;
}

pub struct ApiCreator(pub kube::Client);

impl PodCreator for ApiCreator {
    fn create(&self, pod: &Pod) -> impl Future<Output = Result<Option<Pod>, kube::Error>> + Send {
        podcontrol::create(&self.0, pod)
    }
}

/// What a round of creates did.
#[derive(Debug, Default, PartialEq)]
pub struct Outcome {
    /// Names of the pods created.
    pub created: Vec<String>,
    /// Error messages of the failed creates (upstream's `err.Error()`).
    pub errors: Vec<String>,
    /// Creates that will never be observed: failed, refused, or never sent because an
    /// earlier batch failed. The caller lowers its expectations by this many.
    pub unobserved: usize,
}

/// Creates `count` copies of `pod`, a batch at a time, doubling the batch after each
/// fully successful one and stopping after the first batch with a failure (upstream's
/// slowStartBatch): a quota or a bad template costs one failed call, not `count`.
pub async fn slow_start<C: PodCreator>(creator: &C, pod: &Pod, count: usize) -> Outcome {
    let mut out = Outcome::default();
    let mut sent = 0;
    for batch in super::plan::slow_start_batches(count) {
        let results = join_all((0..batch).map(|_| creator.create(pod))).await;
        sent += batch;
        for r in results {
            match r {
                Ok(Some(p)) => out.created.push(p.metadata.name.unwrap_or_default()),
                Ok(None) => out.unobserved += 1,
                Err(e) => {
                    out.unobserved += 1;
                    out.errors.push(super::error_message(&e));
                }
            }
        }
        if !out.errors.is_empty() {
            out.unobserved += count - sent;
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Succeeds `allow` times, then answers 403 as a quota would.
    struct Fake {
        allow: usize,
        calls: AtomicUsize,
    }

    impl PodCreator for Fake {
        fn create(
            &self,
            _pod: &Pod,
        ) -> impl Future<Output = Result<Option<Pod>, kube::Error>> + Send {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            let allow = self.allow;
            async move {
                if n < allow {
                    let mut p = Pod::default();
                    p.metadata.name = Some(format!("p{n}"));
                    Ok(Some(p))
                } else {
                    Err(kube::Error::Api(
                        serde_json::from_value(serde_json::json!({
                            "status": "Failure", "code": 403, "reason": "Forbidden",
                            "message": "pods \"x\" is forbidden: exceeded quota: q",
                        }))
                        .unwrap(),
                    ))
                }
            }
        }
    }

    #[test]
    fn batches_stop_at_the_first_failure() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        struct Case {
            name: &'static str,
            count: usize,
            allow: usize,
            calls: usize,
            created: usize,
            unobserved: usize,
        }
        let cases = [
            Case {
                name: "all succeed",
                count: 10,
                allow: 100,
                calls: 10,
                created: 10,
                unobserved: 0,
            },
            Case {
                name: "first call fails: nothing more is tried",
                count: 10,
                allow: 0,
                calls: 1,
                created: 0,
                unobserved: 10,
            },
            // Batches 1, 2, 4: the third batch has the failures, the last 3 are never sent.
            Case {
                name: "failure in the third batch",
                count: 10,
                allow: 4,
                calls: 7,
                created: 4,
                unobserved: 6,
            },
        ];
        for c in cases {
            let fake = Fake {
                allow: c.allow,
                calls: AtomicUsize::new(0),
            };
            let out = rt.block_on(slow_start(&fake, &Pod::default(), c.count));
            assert_eq!(fake.calls.load(Ordering::SeqCst), c.calls, "{}", c.name);
            assert_eq!(out.created.len(), c.created, "{}", c.name);
            assert_eq!(out.unobserved, c.unobserved, "{}", c.name);
            assert_eq!(
                out.created.len() + out.unobserved,
                c.count,
                "{}: every create accounted for",
                c.name
            );
            if c.allow < c.count {
                assert_eq!(
                    out.errors[0], "pods \"x\" is forbidden: exceeded quota: q",
                    "{}",
                    c.name
                );
            }
        }
    }
}
