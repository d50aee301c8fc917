//! One probe of one container, run every `periodSeconds` until the container is
//! removed, with upstream's thresholds: a result is only published after
//! `successThreshold` consecutive successes or `failureThreshold` consecutive failures.

use std::sync::{Arc, Weak};
use std::time::Duration;

use k8s_openapi::api::core::v1::Probe;
use tokio::time::{Instant, MissedTickBehavior};

use super::manager::{Gate, Shared};
use super::runner::{Prober, Target};
use super::ProbeKind;

/// Timing and thresholds with upstream's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Timing {
    pub fn of(kind: ProbeKind, probe: &Probe) -> Self {
        let secs = |v: Option<i32>, default: i32, min: i32| {
            Duration::from_secs(v.unwrap_or(default).max(min) as u64)
        };
        // Liveness and startup succeed on one success whatever the spec says
        // (validation requires 1; defaulting protects old objects).
        let success_threshold = match kind {
            ProbeKind::Readiness => probe.success_threshold.unwrap_or(1).max(1) as u32,
            _ => 1,
        };
        Timing {
            initial_delay: secs(probe.initial_delay_seconds, 0, 0),
            period: secs(probe.period_seconds, 10, 1),
            success_threshold,
            failure_threshold: probe.failure_threshold.unwrap_or(3).max(1) as u32,
        }
    }
}

/// Runs until the container is removed or its startup probe has succeeded (startup).
pub async fn run(
    kind: ProbeKind,
    probe: Probe,
    target: Target,
    prober: Arc<dyn Prober>,
    shared: Weak<Shared>,
    started_at: Instant,
) {
    let timing = Timing::of(kind, &probe);
    let cid = target.container_id.clone();
    let mut ticker = tokio::time::interval(timing.period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last: Option<bool> = None;
    let mut run_length = 0u32;
    // After a liveness or startup failure the container is restarted under a new ID;
    // this worker stops probing the old one.
    let mut on_hold = false;
    loop {
        ticker.tick().await;
        let gate = match shared.upgrade() {
            Some(s) => s.gate(&cid, kind),
            None => Gate::Stop,
        };
        match gate {
            Gate::Stop => return,
            Gate::Skip => continue,
            Gate::Run => {}
        }
        if on_hold || started_at.elapsed() < timing.initial_delay {
            continue;
        }
        let outcome = prober.run(&probe, &target).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let ok = outcome.is_success();
        shared.record(&cid, &target.container.name, kind, &outcome);
        if last == Some(ok) {
            run_length = run_length.saturating_add(1);
        } else {
            last = Some(ok);
            run_length = 1;
        }
        let threshold = if ok {
            timing.success_threshold
        } else {
            timing.failure_threshold
        };
        if run_length < threshold {
            continue;
        }
        shared.publish(&cid, kind, ok);
        if !ok && kind != ProbeKind::Readiness {
            on_hold = true;
            run_length = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_forced_thresholds() {
        let p = Probe::default();
        let t = Timing::of(ProbeKind::Readiness, &p);
        assert_eq!(t.period, Duration::from_secs(10));
        assert_eq!(t.initial_delay, Duration::ZERO);
        assert_eq!((t.success_threshold, t.failure_threshold), (1, 3));
        let p = Probe {
            success_threshold: Some(3),
            period_seconds: Some(0),
            ..Default::default()
        };
        assert_eq!(Timing::of(ProbeKind::Liveness, &p).success_threshold, 1);
        assert_eq!(Timing::of(ProbeKind::Readiness, &p).success_threshold, 3);
        assert_eq!(
            Timing::of(ProbeKind::Readiness, &p).period,
            Duration::from_secs(1)
        );
    }
}
