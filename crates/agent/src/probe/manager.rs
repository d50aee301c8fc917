//! The registry of probe workers and their published results, by container ID.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use k8s_openapi::api::core::v1::{Container, Pod};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::task::AbortHandle;

use super::exec::CriExec;
use super::runner::{Prober, RealProber, Target};
use super::{worker, Outcome, ProbeKind};

/// What a worker should do on its next tick.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Gate {
    Run,
    /// Not yet: liveness and readiness wait for the startup probe to succeed.
    Skip,
    /// The container is gone, or its startup probe is done.
    Stop,
}

#[derive(Default)]
struct Entry {
    pod_uid: String,
    has_startup: bool,
    has_readiness: bool,
    /// Startup probe result once its threshold is reached.
    started: Option<bool>,
    /// Readiness probe result once its threshold is reached.
    ready: Option<bool>,
    liveness_failed: bool,
    startup_failed: bool,
    last_failure: Option<String>,
    tasks: Vec<AbortHandle>,
}

pub(crate) struct Shared {
    entries: Mutex<HashMap<String, Entry>>,
    wake: UnboundedSender<String>,
    events: Mutex<Option<UnboundedSender<ProbeEvent>>>,
}

/// One failed (or warned) probe run, for the agent's `Unhealthy`/`ProbeWarning` events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeEvent {
    pub pod_uid: String,
    pub container_id: String,
    pub container_name: String,
    pub kind: ProbeKind,
    /// A success with a warning (e.g. an off-host redirect) rather than a failure.
    pub warning: bool,
    /// Upstream's event message: `Liveness probe failed: ...` or
    /// `Readiness probe warning: ...`.
    pub message: String,
}

impl ProbeEvent {
    /// Upstream's event reason.
    pub fn reason(&self) -> &'static str {
        if self.warning {
            "ProbeWarning"
        } else {
            "Unhealthy"
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn gate(&self, container_id: &str, kind: ProbeKind) -> Gate {
        let entries = self.lock();
        let Some(e) = entries.get(container_id) else {
            return Gate::Stop;
        };
        match kind {
            ProbeKind::Startup if e.started == Some(true) => Gate::Stop,
            ProbeKind::Startup => Gate::Run,
            _ if e.has_startup && e.started != Some(true) => Gate::Skip,
            _ => Gate::Run,
        }
    }

    /// Notes a failed or warned run: kept as the last failure, and sent to the events
    /// subscriber if there is one.
    pub(crate) fn record(
        &self,
        container_id: &str,
        container_name: &str,
        kind: ProbeKind,
        outcome: &Outcome,
    ) {
        let (warning, message) = match outcome {
            Outcome::Success => return,
            Outcome::Warning(m) => (true, format!("{} probe warning: {m}", kind.title())),
            Outcome::Failure(m) => (false, format!("{} probe failed: {m}", kind.title())),
        };
        let pod_uid = {
            let mut entries = self.lock();
            let Some(e) = entries.get_mut(container_id) else {
                return;
            };
            if !warning {
                e.last_failure = Some(message.clone());
            }
            e.pod_uid.clone()
        };
        let events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = events.as_ref() {
            let _ = tx.send(ProbeEvent {
                pod_uid,
                container_id: container_id.to_owned(),
                container_name: container_name.to_owned(),
                kind,
                warning,
                message,
            });
        }
    }

    /// Sets a result that reached its threshold; wakes the pod's worker on a change.
    pub(crate) fn publish(&self, container_id: &str, kind: ProbeKind, ok: bool) {
        let changed_pod = {
            let mut entries = self.lock();
            let Some(e) = entries.get_mut(container_id) else {
                return;
            };
            let changed = match kind {
                ProbeKind::Startup => {
                    let before = (e.started, e.startup_failed);
                    e.started = Some(ok);
                    e.startup_failed |= !ok;
                    before != (e.started, e.startup_failed)
                }
                ProbeKind::Liveness => {
                    let before = e.liveness_failed;
                    e.liveness_failed |= !ok;
                    before != e.liveness_failed
                }
                ProbeKind::Readiness => {
                    let before = e.ready;
                    e.ready = Some(ok);
                    before != e.ready
                }
            };
            changed.then(|| e.pod_uid.clone())
        };
        if let Some(uid) = changed_pod {
            let _ = self.wake.send(uid);
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        for e in self.lock().values() {
            e.tasks.iter().for_each(AbortHandle::abort);
        }
    }
}

/// Probe workers for the node's containers. Clones share the workers; they stop when
/// their container is removed or the last clone is dropped.
#[derive(Clone)]
pub struct ProbeManager {
    shared: Arc<Shared>,
    prober: Arc<dyn Prober>,
}

impl ProbeManager {
    /// Probes through `cri` (exec) and the network (the others); `wake` gets a pod UID
    /// whenever one of its containers' results changes.
    pub fn new(cri: skiff_cri::Cri, wake: UnboundedSender<String>) -> Self {
        let prober = RealProber::new(Arc::new(CriExec(cri)));
        Self::with_prober(Arc::new(prober), wake)
    }

    /// With another way to run probes (tests, or an exec runner other than CRI).
    pub fn with_prober(prober: Arc<dyn Prober>, wake: UnboundedSender<String>) -> Self {
        Self {
            shared: Arc::new(Shared {
                entries: Mutex::new(HashMap::new()),
                wake,
                events: Mutex::new(None),
            }),
            prober,
        }
    }

    /// Starts the workers for `container`'s probes (running as `container_id`, just
    /// started). Adding a container ID that is already known changes nothing. Must be
    /// called within a Tokio runtime.
    pub fn add(
        &self,
        pod: &Pod,
        container: &Container,
        container_id: &str,
        pod_ip: Option<String>,
    ) {
        let mut entries = self.shared.lock();
        if entries.contains_key(container_id) {
            return;
        }
        let probes = [
            (ProbeKind::Startup, &container.startup_probe),
            (ProbeKind::Liveness, &container.liveness_probe),
            (ProbeKind::Readiness, &container.readiness_probe),
        ];
        let mut entry = Entry {
            pod_uid: pod.metadata.uid.clone().unwrap_or_default(),
            has_startup: container.startup_probe.is_some(),
            has_readiness: container.readiness_probe.is_some(),
            ..Default::default()
        };
        let target = Target {
            container_id: container_id.to_owned(),
            pod_ip,
            container: container.clone(),
        };
        let started_at = tokio::time::Instant::now();
        for (kind, probe) in probes {
            let Some(probe) = probe.clone() else {
                continue;
            };
            let task = tokio::spawn(worker::run(
                kind,
                probe,
                target.clone(),
                self.prober.clone(),
                Arc::downgrade(&self.shared),
                started_at,
            ));
            entry.tasks.push(task.abort_handle());
        }
        entries.insert(container_id.to_owned(), entry);
    }

    /// Every failed (and warned) probe run from now on, for events; a new call
    /// replaces the previous receiver.
    pub fn events(&self) -> UnboundedReceiver<ProbeEvent> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        *self.shared.events.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        rx
    }

    /// Stops the container's workers and forgets its results.
    pub fn remove_container(&self, container_id: &str) {
        if let Some(e) = self.shared.lock().remove(container_id) {
            e.tasks.iter().for_each(AbortHandle::abort);
        }
    }

    /// Stops the workers of all the pod's containers.
    pub fn remove_pod(&self, pod_uid: &str) {
        self.shared.lock().retain(|_, e| {
            let keep = e.pod_uid != pod_uid;
            if !keep {
                e.tasks.iter().for_each(AbortHandle::abort);
            }
            keep
        });
    }

    /// Whether the container is ready: with a readiness probe, its result (None until
    /// the probe reached a threshold); without one, whether it has started. None for a
    /// container that was never added.
    pub fn readiness(&self, container_id: &str) -> Option<bool> {
        let entries = self.shared.lock();
        let e = entries.get(container_id)?;
        if e.has_readiness {
            e.ready
        } else {
            Some(!e.has_startup || e.started == Some(true))
        }
    }

    /// Whether the container has started: its startup probe succeeded, or it has none.
    pub fn started(&self, container_id: &str) -> bool {
        self.shared
            .lock()
            .get(container_id)
            .is_none_or(|e| !e.has_startup || e.started == Some(true))
    }

    /// Whether the container must be restarted: its liveness probe (or its startup
    /// probe) failed `failureThreshold` times in a row. Cleared by `remove_container`.
    pub fn liveness_failed(&self, container_id: &str) -> bool {
        self.shared
            .lock()
            .get(container_id)
            .is_some_and(|e| e.liveness_failed || e.startup_failed)
    }

    /// Whether it was the startup probe that failed (upstream's kill message differs:
    /// "failed startup probe" rather than "failed liveness probe").
    pub fn startup_failed(&self, container_id: &str) -> bool {
        self.shared
            .lock()
            .get(container_id)
            .is_some_and(|e| e.startup_failed)
    }

    /// The latest failed probe run, as upstream's `Unhealthy` event says it:
    /// `Liveness probe failed: HTTP probe failed with statuscode: 500`.
    pub fn last_failure(&self, container_id: &str) -> Option<String> {
        self.shared
            .lock()
            .get(container_id)
            .and_then(|e| e.last_failure.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::exec::tests::FakeExec;
    use crate::probe::exec::{ExecError, ExecOutput};
    use std::collections::VecDeque;
    use std::time::Duration;
    use tokio::sync::mpsc;

    use k8s_openapi::api::core::v1::Probe;

    /// Answers each probe kind from its own script (the last answer repeats) and counts
    /// the runs. Probes are told apart by their exec command's first word.
    #[derive(Default)]
    struct Scripted {
        scripts: Mutex<HashMap<String, VecDeque<bool>>>,
        runs: Mutex<HashMap<String, usize>>,
    }

    impl Scripted {
        fn set(&self, name: &str, answers: &[bool]) {
            self.scripts
                .lock()
                .unwrap()
                .insert(name.into(), answers.iter().copied().collect());
        }
        fn runs(&self, name: &str) -> usize {
            self.runs.lock().unwrap().get(name).copied().unwrap_or(0)
        }
    }

    #[async_trait::async_trait]
    impl Prober for Scripted {
        async fn run(&self, probe: &Probe, _target: &Target) -> Outcome {
            let name = probe.exec.as_ref().unwrap().command.as_ref().unwrap()[0].clone();
            *self.runs.lock().unwrap().entry(name.clone()).or_default() += 1;
            let mut scripts = self.scripts.lock().unwrap();
            let script = scripts.entry(name.clone()).or_default();
            let ok = if script.len() > 1 {
                script.pop_front().unwrap()
            } else {
                script.front().copied().unwrap_or(true)
            };
            if ok {
                Outcome::Success
            } else {
                Outcome::Failure(format!("{name} said no"))
            }
        }
    }

    fn probe(name: &str, extra: serde_json::Value) -> serde_json::Value {
        let mut p = serde_json::json!({"exec": {"command": [name]}});
        p.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        p
    }

    fn pod_and_container(container: serde_json::Value) -> (Pod, Container) {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "uid": "pod-1"},
            "spec": {"containers": [container.clone()]}
        }))
        .unwrap();
        (pod, serde_json::from_value(container).unwrap())
    }

    fn setup(
        container: serde_json::Value,
    ) -> (
        Arc<Scripted>,
        ProbeManager,
        mpsc::UnboundedReceiver<String>,
        Pod,
        Container,
    ) {
        let scripted = Arc::new(Scripted::default());
        let (tx, rx) = mpsc::unbounded_channel();
        let manager = ProbeManager::with_prober(scripted.clone(), tx);
        let (pod, c) = pod_and_container(container);
        (scripted, manager, rx, pod, c)
    }

    async fn at(secs: f64, start: tokio::time::Instant) {
        tokio::time::sleep_until(start + Duration::from_secs_f64(secs)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn liveness_fails_after_failure_threshold_consecutive_failures() {
        let (s, m, mut rx, pod, c) = setup(serde_json::json!({
            "name": "c",
            "livenessProbe": probe("live", serde_json::json!({"periodSeconds": 10, "failureThreshold": 3}))
        }));
        // ok, fail, fail, ok (resets the run), fail, fail, fail
        s.set(
            "live",
            &[true, false, false, true, false, false, false, true],
        );
        let start = tokio::time::Instant::now();
        m.add(&pod, &c, "cid", None);
        m.add(&pod, &c, "cid", None); // idempotent: still one worker
        at(55.0, start).await; // runs at 0,10,20,30,40,50
        assert_eq!(s.runs("live"), 6);
        assert!(!m.liveness_failed("cid"));
        assert_eq!(
            m.last_failure("cid").as_deref(),
            Some("Liveness probe failed: live said no")
        );
        at(65.0, start).await; // the third failure in a row at 60
        assert!(m.liveness_failed("cid"));
        assert!(!m.startup_failed("cid"));
        assert_eq!(rx.try_recv().unwrap(), "pod-1");
        // On hold: the failed container is not probed again.
        at(200.0, start).await;
        assert_eq!(s.runs("live"), 7);
        // Without a readiness or startup probe the container counts as started and ready.
        assert!(m.started("cid"));
        assert_eq!(m.readiness("cid"), Some(true));
        m.remove_container("cid");
        assert!(!m.liveness_failed("cid"));
        assert_eq!(m.readiness("cid"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn readiness_waits_for_initial_delay_and_success_threshold() {
        let (s, m, mut rx, pod, c) = setup(serde_json::json!({
            "name": "c",
            "readinessProbe": probe("ready", serde_json::json!({
                "initialDelaySeconds": 15, "periodSeconds": 5,
                "successThreshold": 2, "failureThreshold": 2}))
        }));
        s.set("ready", &[true, true, false, false, true]);
        let start = tokio::time::Instant::now();
        m.add(&pod, &c, "cid", Some("10.0.0.5".into()));
        at(14.0, start).await;
        assert_eq!(s.runs("ready"), 0, "nothing before initialDelaySeconds");
        assert_eq!(m.readiness("cid"), None);
        at(16.0, start).await; // first run at 15: one success is not enough
        assert_eq!(s.runs("ready"), 1);
        assert_eq!(m.readiness("cid"), None);
        at(21.0, start).await; // second success at 20
        assert_eq!(m.readiness("cid"), Some(true));
        assert_eq!(rx.recv().await.unwrap(), "pod-1");
        at(26.0, start).await; // one failure at 25: still ready
        assert_eq!(m.readiness("cid"), Some(true));
        at(31.0, start).await; // second failure at 30
        assert_eq!(m.readiness("cid"), Some(false));
        assert_eq!(
            m.last_failure("cid").as_deref(),
            Some("Readiness probe failed: ready said no")
        );
        assert!(
            !m.liveness_failed("cid"),
            "readiness failures never restart"
        );
        at(41.0, start).await; // successes at 35 and 40
        assert_eq!(m.readiness("cid"), Some(true));
    }

    #[tokio::test(start_paused = true)]
    async fn liveness_and_readiness_wait_for_startup() {
        let (s, m, _rx, pod, c) = setup(serde_json::json!({
            "name": "c",
            "startupProbe": probe("startup", serde_json::json!({"periodSeconds": 1, "failureThreshold": 30})),
            "livenessProbe": probe("live", serde_json::json!({"periodSeconds": 1})),
            "readinessProbe": probe("ready", serde_json::json!({"periodSeconds": 1}))
        }));
        s.set("startup", &[false, false, false, true]);
        let start = tokio::time::Instant::now();
        m.add(&pod, &c, "cid", None);
        at(2.5, start).await; // startup failed at 0, 1, 2
        assert!(!m.started("cid"));
        assert_eq!(s.runs("live"), 0);
        assert_eq!(s.runs("ready"), 0);
        at(3.5, start).await; // startup succeeded at 3
        assert!(m.started("cid"));
        at(6.5, start).await;
        assert_eq!(
            s.runs("startup"),
            4,
            "startup is not probed once it succeeded"
        );
        assert!(s.runs("live") >= 3);
        assert_eq!(m.readiness("cid"), Some(true));
        assert!(!m.liveness_failed("cid"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_startup_probe_means_restart() {
        let (s, m, _rx, pod, c) = setup(serde_json::json!({
            "name": "c",
            "startupProbe": probe("startup", serde_json::json!({"periodSeconds": 2, "failureThreshold": 2}))
        }));
        s.set("startup", &[false]);
        let mut events = m.events();
        let start = tokio::time::Instant::now();
        m.add(&pod, &c, "cid", None);
        at(3.0, start).await;
        let e = events.try_recv().unwrap();
        assert_eq!(
            (e.pod_uid.as_str(), e.container_name.as_str(), e.reason()),
            ("pod-1", "c", "Unhealthy")
        );
        assert_eq!(e.message, "Startup probe failed: startup said no");
        assert!(events.try_recv().is_ok(), "one event per failed run");
        assert!(m.liveness_failed("cid"));
        assert!(m.startup_failed("cid"));
        assert!(!m.started("cid"));
        assert_eq!(m.readiness("cid"), Some(false));
        assert_eq!(
            m.last_failure("cid").as_deref(),
            Some("Startup probe failed: startup said no")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn remove_pod_stops_its_workers() {
        let (s, m, _rx, pod, c) = setup(serde_json::json!({
            "name": "c", "livenessProbe": probe("live", serde_json::json!({"periodSeconds": 1}))
        }));
        let start = tokio::time::Instant::now();
        m.add(&pod, &c, "a", None);
        m.add(&pod, &c, "b", None);
        at(0.5, start).await;
        assert_eq!(s.runs("live"), 2);
        m.remove_pod("pod-1");
        at(10.0, start).await;
        assert_eq!(s.runs("live"), 2);
        assert_eq!(m.readiness("a"), None);
    }

    /// Exec probes through the real prober with the exec seam faked: the command,
    /// container and timeout reach the runtime, and its answer becomes the result.
    #[tokio::test(start_paused = true)]
    async fn exec_probes_through_the_runtime_seam() {
        let fake = Arc::new(FakeExec::default());
        *fake.answers.lock().unwrap() = vec![
            Ok(ExecOutput {
                exit_code: 2,
                output: b"unhealthy\n".to_vec(),
            }),
            Err(ExecError::TimedOut),
        ];
        let (tx, _rx) = mpsc::unbounded_channel();
        let m = ProbeManager::with_prober(Arc::new(RealProber::new(fake.clone())), tx);
        let (pod, c) = pod_and_container(serde_json::json!({
            "name": "c",
            "livenessProbe": {"exec": {"command": ["cat", "/tmp/ok"]},
                              "periodSeconds": 5, "timeoutSeconds": 7, "failureThreshold": 2}
        }));
        let start = tokio::time::Instant::now();
        m.add(&pod, &c, "cid", None);
        at(1.0, start).await;
        assert_eq!(
            m.last_failure("cid").as_deref(),
            Some("Liveness probe failed: unhealthy\n")
        );
        assert!(!m.liveness_failed("cid"));
        at(6.0, start).await;
        assert!(m.liveness_failed("cid"));
        assert_eq!(
            m.last_failure("cid").as_deref(),
            Some("Liveness probe failed: command \"cat /tmp/ok\" timed out")
        );
        let calls = fake.calls.lock().unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].0, "cid");
        assert_eq!(calls[0].1, ["cat", "/tmp/ok"]);
        assert_eq!(calls[0].2, Duration::from_secs(7));
    }
}
