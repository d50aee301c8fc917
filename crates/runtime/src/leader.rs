//! Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection:
//! candidates try to take the Lease; the holder renews it every `retry_period`; a
//! candidate takes over once it has seen the same record unchanged for a whole
//! `lease_duration` (timed on its own clock, so clock skew between servers does not
//! matter). A leader that cannot renew within `renew_deadline` stops leading (its work
//! is cancelled) and becomes a candidate again.

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::Api;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug)]
pub struct Config {
    pub namespace: String,
    /// The Lease's name: one per loop (e.g. `kube-scheduler`).
    pub name: String,
    /// This candidate's identity, unique per process (`<host>_<uuid>`).
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl Config {
    /// Upstream's defaults (15 s / 10 s / 2 s) in `kube-system`, with a fresh identity.
    pub fn new(name: &str) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "skiff".into());
        Self {
            namespace: "kube-system".into(),
            name: name.into(),
            identity: format!("{host}_{}", uuid::Uuid::new_v4()),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What a candidate decides from the Lease it read.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// No Lease yet: create it holding it.
    Create,
    /// Ours, or free to take: write ourselves as holder.
    Take { transition: bool },
    /// Someone else holds it and it has not expired on our clock.
    Wait,
}

/// Pure decision, given the Lease, our identity, and for how long we have seen its
/// current record unchanged.
fn decide(
    lease: Option<&Lease>,
    identity: &str,
    unchanged_for: Duration,
    lease_duration: Duration,
) -> Step {
    let Some(lease) = lease else {
        return Step::Create;
    };
    let spec = lease.spec.as_ref();
    let holder = spec
        .and_then(|s| s.holder_identity.as_deref())
        .unwrap_or("");
    if holder == identity {
        return Step::Take { transition: false };
    }
    let duration = spec
        .and_then(|s| s.lease_duration_seconds)
        .map(|s| Duration::from_secs(s.max(1) as u64))
        .unwrap_or(lease_duration);
    if holder.is_empty() || unchanged_for >= duration {
        Step::Take { transition: true }
    } else {
        Step::Wait
    }
}

/// What tells one holder's renewal from the next: holder and renew time.
type Record = (Option<String>, Option<MicroTime>);

fn record_of(lease: &Lease) -> Option<Record> {
    lease
        .spec
        .as_ref()
        .map(|s| (s.holder_identity.clone(), s.renew_time.clone()))
}

pub struct Elector {
    api: Api<Lease>,
    config: Config,
    observed: Option<(Option<Record>, Instant)>,
}

impl Elector {
    pub fn new(client: kube::Client, config: Config) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: None,
        }
    }

    /// One attempt to acquire or renew. `Ok(true)` when we hold the Lease now.
    async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let lease = self.api.get_opt(&self.config.name).await?;
        let record = lease.as_ref().and_then(record_of);
        let unchanged_for = match &self.observed {
            Some((seen, since)) if *seen == record => since.elapsed(),
            _ => {
                self.observed = Some((record.clone(), Instant::now()));
                Duration::ZERO
            }
        };
        let seconds = self.config.lease_duration.as_secs().max(1) as i32;
        match decide(
            lease.as_ref(),
            &self.config.identity,
            unchanged_for,
            self.config.lease_duration,
        ) {
            Step::Wait => Ok(false),
            Step::Create => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.config.name.clone()),
                        namespace: Some(self.config.namespace.clone()),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.config.identity.clone()),
                        lease_duration_seconds: Some(seconds),
                        acquire_time: Some(now.clone()),
                        renew_time: Some(now),
                        lease_transitions: Some(0),
                        ..Default::default()
                    }),
                };
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                    Err(e) => Err(e),
                }
            }
            Step::Take { transition } => {
                let mut lease = lease.expect("Take is decided only on an existing Lease");
                let spec = lease.spec.get_or_insert_with(Default::default);
                if transition {
                    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                    spec.acquire_time = Some(now.clone());
                }
                spec.holder_identity = Some(self.config.identity.clone());
                spec.lease_duration_seconds = Some(seconds);
                spec.renew_time = Some(now);
                // The resourceVersion we read makes this a compare-and-swap: two
                // candidates taking over at once cannot both win.
                match self
                    .api
                    .replace(&self.config.name, &PostParams::default(), &lease)
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Campaigns until `shutdown`; while leading, runs `lead` with a token that is
    /// cancelled when leadership is lost (then campaigns again).
    pub async fn run<F, Fut>(mut self, shutdown: CancellationToken, lead: F)
    where
        F: Fn(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let name = self.config.name.clone();
        while !shutdown.is_cancelled() {
            match self.try_acquire_or_renew().await {
                Ok(true) => {}
                Ok(false) => {
                    sleep_or_cancel(self.config.retry_period, &shutdown).await;
                    continue;
                }
                Err(e) => {
                    tracing::debug!(lease = %name, "leader election: {e}");
                    sleep_or_cancel(self.config.retry_period, &shutdown).await;
                    continue;
                }
            }
            tracing::info!(lease = %name, identity = %self.config.identity, "became leader");
            let leading = shutdown.child_token();
            let work = tokio::spawn(lead(leading.clone()));
            let mut last_renew = Instant::now();
            loop {
                sleep_or_cancel(self.config.retry_period, &shutdown).await;
                if shutdown.is_cancelled() {
                    break;
                }
                match self.try_acquire_or_renew().await {
                    Ok(true) => last_renew = Instant::now(),
                    Ok(false) => break,
                    Err(e) => {
                        tracing::warn!(lease = %name, "renewing the lease failed: {e}");
                        if last_renew.elapsed() >= self.config.renew_deadline {
                            break;
                        }
                    }
                }
            }
            leading.cancel();
            let _ = work.await;
            if !shutdown.is_cancelled() {
                tracing::warn!(lease = %name, "lost leadership; campaigning again");
            }
        }
        // Hand over at once on a clean shutdown, as client-go's ReleaseOnCancel.
        let _ = self.release().await;
    }

    async fn release(&mut self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        self.api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
            .map(|_| ())
    }
}

async fn sleep_or_cancel(d: Duration, token: &CancellationToken) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = token.cancelled() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held_by(who: &str) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: Some(who.into()),
                lease_duration_seconds: Some(15),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    const D: Duration = Duration::from_secs(15);

    #[test]
    fn candidates_create_renew_wait_and_take_over() {
        assert_eq!(decide(None, "me", Duration::ZERO, D), Step::Create);
        assert_eq!(
            decide(Some(&held_by("me")), "me", Duration::ZERO, D),
            Step::Take { transition: false }
        );
        assert_eq!(
            decide(Some(&held_by("other")), "me", Duration::from_secs(14), D),
            Step::Wait
        );
        assert_eq!(
            decide(Some(&held_by("other")), "me", Duration::from_secs(15), D),
            Step::Take { transition: true }
        );
        assert_eq!(
            decide(Some(&held_by("")), "me", Duration::ZERO, D),
            Step::Take { transition: true },
            "a released lease is free at once"
        );
    }
}
