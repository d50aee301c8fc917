//! One pass over one pod (the kubelet's SyncPod / SyncTerminatingPod): read what the
//! runtime has for the pod, then do the next step — create the sandbox, run the next
//! init container, start or restart containers (with back-off), kill what must stop —
//! and post the status if it changed. Level-triggered: every pass starts from the
//! runtime's state, which is also how a restarted agent adopts running pods.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, PodStatus, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::Api;
use skiff_cri::api as cri;

use crate::env;
use crate::hooks;
use crate::manager::{Desired, Manager, PodMemory};
use crate::plugins::PodMounts;
use crate::pod::backoff;
use crate::pod::spec::{self, ContainerInputs};
use crate::pod::status::{self, CtrObs, CtrState};
use crate::runtime::{RuntimeError, SandboxObs};

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("pod {pod}: {source}")]
    Runtime {
        pod: String,
        #[source]
        source: RuntimeError,
    },
    #[error("pod {pod}: {op}: {source}")]
    Api {
        pod: String,
        op: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("pod {pod}: {message}")]
    Other { pod: String, message: String },
}

/// How often a pod that waits for nothing is looked at anyway (status refresh; the
/// relist wakes it sooner on any container change).
const RESYNC: Duration = Duration::from_secs(60);
/// How long an exit by SIGKILL may wait for the runtime's OOM verdict.
const OOM_EVENT_WAIT: Duration = Duration::from_millis(300);

fn pod_key(pod: &Pod) -> String {
    let (ns, name, _) = spec::meta(pod);
    format!("{ns}/{name}")
}

fn nanos_to_ts(n: i64) -> Option<Timestamp> {
    (n > 0)
        .then(|| Timestamp::from_nanosecond(i128::from(n)).ok())
        .flatten()
}

fn grace_of(pod: &Pod) -> Duration {
    let secs = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30)
        .max(0);
    Duration::from_secs(secs as u64)
}

fn is_terminal_phase(p: Option<&str>) -> bool {
    matches!(p, Some("Succeeded") | Some("Failed"))
}

/// Default pull policy: Always for `:latest` or untagged images, else IfNotPresent.
pub fn pull_policy(c: &Container) -> &str {
    if let Some(p) = c.image_pull_policy.as_deref().filter(|p| !p.is_empty()) {
        return p;
    }
    let image = c.image.as_deref().unwrap_or_default();
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    match last.split_once(':') {
        Some((_, "latest")) | None if !image.contains('@') => "Always",
        _ => "IfNotPresent",
    }
}

fn min_delay(a: Option<Duration>, b: Duration) -> Option<Duration> {
    Some(a.map_or(b, |a| a.min(b)))
}

impl Manager {
    fn rt_err(pod: &str) -> impl FnOnce(RuntimeError) -> SyncError + '_ {
        move |source| SyncError::Runtime {
            pod: pod.to_string(),
            source,
        }
    }

    /// One pass for the pod with `uid`: what it should be comes from `desired` (None:
    /// no source knows it any more).
    pub async fn sync(self: &Arc<Self>, uid: String) -> Result<Option<Duration>, SyncError> {
        let desired = self.desired(&uid);
        if desired.is_none() && !self.sources_synced() {
            // Not known yet because the sources have not delivered everything: never
            // take a running pod for an orphan (a restarted agent adopts it).
            return Ok(Some(Duration::from_millis(500)));
        }
        let mut mem = self.take_memory(&uid);
        let result = match &desired {
            None => {
                self.kill(&uid, None, Duration::from_secs(2), &mut mem)
                    .await?;
                self.remove(&uid, &mut mem).await?;
                self.forget(&uid);
                return Ok(None);
            }
            Some(d) if d.removed => {
                let grace = grace_of(&d.pod).min(Duration::from_secs(30));
                self.kill(&uid, Some(&d.pod), grace, &mut mem).await?;
                self.remove(&uid, &mut mem).await?;
                self.forget(&uid);
                return Ok(None);
            }
            Some(d) if d.pod.metadata.deletion_timestamp.is_some() => {
                self.terminate(d, &mut mem).await
            }
            Some(d) => self.sync_running(d, &mut mem).await,
        };
        self.put_memory(&uid, mem);
        result
    }

    /// Stops the pod's containers (preStop first, then SIGTERM, SIGKILL after the
    /// grace period) and its sandboxes.
    pub(crate) async fn kill(
        &self,
        uid: &str,
        pod: Option<&Pod>,
        grace: Duration,
        mem: &mut PodMemory,
    ) -> Result<(), SyncError> {
        let who = pod.map(pod_key).unwrap_or_else(|| uid.to_string());
        let observed = self
            .runtime
            .observe(uid)
            .await
            .map_err(Self::rt_err(&who))?;
        let running: Vec<&CtrObs> = observed
            .iter()
            .filter(|c| matches!(c.state, CtrState::Running | CtrState::Created))
            .collect();
        let stops = running.iter().map(|c| {
            let spec_c = pod.and_then(|p| find_container(p, &c.name));
            let ip = mem.pod_ip.clone();
            async move {
                let started = tokio::time::Instant::now();
                if let (Some(p), Some(sc)) = (pod, spec_c) {
                    self.recorder
                        .normal(p, "Killing", format!("Stopping container {}", sc.name));
                    if let Some(pre) = sc.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()) {
                        if c.state == CtrState::Running {
                            if let Err(e) =
                                hooks::run(&self.runtime, pre, sc, &c.id, ip.as_deref(), grace)
                                    .await
                            {
                                self.recorder.warning(
                                    p,
                                    "FailedPreStopHook",
                                    format!("PreStopHook failed: {e}"),
                                );
                            }
                        }
                    }
                }
                let left = grace.saturating_sub(started.elapsed());
                self.runtime.stop_container(&c.id, left).await
            }
        });
        for r in futures::future::join_all(stops).await {
            r.map_err(Self::rt_err(&who))?;
        }
        if let Some(p) = &self.probes {
            p.remove_pod(uid);
        }
        for sb in self
            .runtime
            .sandboxes(Some(uid))
            .await
            .map_err(Self::rt_err(&who))?
        {
            if sb.ready {
                self.runtime
                    .stop_sandbox(&sb.id)
                    .await
                    .map_err(Self::rt_err(&who))?;
            }
        }
        mem.killed = true;
        Ok(())
    }

    /// Removes the pod's containers, sandboxes, volumes and per-pod files.
    pub(crate) async fn remove(&self, uid: &str, mem: &mut PodMemory) -> Result<(), SyncError> {
        for c in self
            .runtime
            .list(Some(uid))
            .await
            .map_err(Self::rt_err(uid))?
        {
            self.runtime
                .remove_container(&c.id)
                .await
                .map_err(Self::rt_err(uid))?;
        }
        for sb in self
            .runtime
            .sandboxes(Some(uid))
            .await
            .map_err(Self::rt_err(uid))?
        {
            self.runtime
                .stop_sandbox(&sb.id)
                .await
                .map_err(Self::rt_err(uid))?;
            self.runtime
                .remove_sandbox(&sb.id)
                .await
                .map_err(Self::rt_err(uid))?;
        }
        if let Some(v) = &self.volumes {
            v.teardown(uid).await;
        }
        let _ = std::fs::remove_dir_all(self.config.pod_dir(uid).join("containers"));
        let _ = std::fs::remove_file(self.config.pod_dir(uid).join("etc-hosts"));
        crate::cgroups::remove_pod(uid);
        // The pod's log directory (`<ns>_<name>_<uid>`) goes with its containers.
        if let Ok(dirs) = std::fs::read_dir(self.config.agent_dir.join("logs").join("pods")) {
            let suffix = format!("_{uid}");
            for d in dirs.flatten() {
                if d.file_name().to_string_lossy().ends_with(&suffix) {
                    let _ = std::fs::remove_dir_all(d.path());
                }
            }
        }
        mem.killed = true;
        Ok(())
    }

    /// A pod being deleted: kill it within its grace period, post its final status,
    /// remove it from the runtime, then delete the object for good (grace 0).
    async fn terminate(
        &self,
        d: &Desired,
        mem: &mut PodMemory,
    ) -> Result<Option<Duration>, SyncError> {
        let pod = &d.pod;
        let (ns, name, uid) = spec::meta(pod);
        let who = pod_key(pod);
        if !mem.killed {
            self.kill(uid, Some(pod), grace_of(pod), mem).await?;
        }
        let observed = self.observe(pod).await?;
        self.write_status(d, mem, &observed, false, true).await?;
        self.remove(uid, mem).await?;
        if d.is_static {
            return Ok(None);
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(name, &params).await {
            Ok(_) => Ok(None),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(None),
            Err(source) => Err(SyncError::Api {
                pod: who,
                op: "deleting",
                source,
            }),
        }
    }

    /// The runtime's containers of the pod, with termination messages read from the
    /// files the containers wrote them to.
    async fn observe(&self, pod: &Pod) -> Result<Vec<CtrObs>, SyncError> {
        let (_, _, uid) = spec::meta(pod);
        let mut observed = self
            .runtime
            .observe(uid)
            .await
            .map_err(Self::rt_err(&pod_key(pod)))?;
        // containerd marks an OOM kill when the cgroup's OOM event arrives, which can
        // trail the exit itself; a container SIGKILLed a moment ago gets a second look
        // before it is reported as a plain "Error" (a terminal status is final).
        if observed
            .iter()
            .any(|c| status::maybe_unlabelled_oom(c, Timestamp::now()))
        {
            tokio::time::sleep(OOM_EVENT_WAIT).await;
            observed = self
                .runtime
                .observe(uid)
                .await
                .map_err(Self::rt_err(&pod_key(pod)))?;
        }
        for c in observed.iter_mut().filter(|c| c.state == CtrState::Exited) {
            let path = self.termination_log(uid, &c.name, c.attempt);
            if let Ok(text) = std::fs::read(&path) {
                if !text.is_empty() {
                    let text = &text[..text.len().min(4096)];
                    c.message = String::from_utf8_lossy(text).into_owned();
                }
            }
        }
        Ok(observed)
    }

    fn termination_log(&self, uid: &str, name: &str, attempt: u32) -> std::path::PathBuf {
        self.config
            .pod_dir(uid)
            .join("containers")
            .join(name)
            .join(attempt.to_string())
    }

    async fn sync_running(
        &self,
        d: &Desired,
        mem: &mut PodMemory,
    ) -> Result<Option<Duration>, SyncError> {
        let pod = &d.pod;
        let (_, _, uid) = spec::meta(pod);
        let who = pod_key(pod);
        let spec_ = pod.spec.clone().unwrap_or_default();
        let policy = spec_
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".into());
        let now = Timestamp::now();
        if mem.start_time.is_none() {
            mem.start_time = Some(
                pod.status
                    .as_ref()
                    .and_then(|s| s.start_time.as_ref())
                    .map(|t| t.0)
                    .unwrap_or(now),
            );
        }
        let posted_terminal =
            is_terminal_phase(pod.status.as_ref().and_then(|s| s.phase.as_deref()));
        // activeDeadlineSeconds: past it the pod is stopped and Failed (DeadlineExceeded).
        let mut deadline_left: Option<Duration> = None;
        if let (Some(secs), Some(start)) = (spec_.active_deadline_seconds, mem.start_time) {
            let active = Duration::try_from(now.duration_since(start)).unwrap_or(Duration::ZERO);
            let limit = Duration::from_secs(secs.max(0) as u64);
            if active >= limit && !posted_terminal && !mem.terminal {
                self.recorder.warning(
                    pod.as_ref(),
                    "DeadlineExceeded",
                    "Pod was active on the node longer than the specified deadline",
                );
                mem.deadline_exceeded = true;
                mem.terminal = true;
            } else {
                deadline_left = Some(limit.saturating_sub(active));
            }
        }
        if posted_terminal || mem.terminal {
            // Finished pods keep their containers (for logs) but release the network.
            if !mem.killed {
                self.kill(uid, Some(pod), grace_of(pod), mem).await?;
            }
            mem.terminal = true;
            // A terminal status is final: once posted it is never rewritten (the
            // containers it describes may be gone by now).
            if !posted_terminal {
                let observed = self.observe(pod).await?;
                self.write_status(d, mem, &observed, false, true).await?;
            }
            return Ok(None);
        }
        let mut observed = self.observe(pod).await?;
        let mut sandboxes = self
            .runtime
            .sandboxes(Some(uid))
            .await
            .map_err(Self::rt_err(&who))?;
        sandboxes.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        let host_dns = &self.host_dns;
        let sandbox_cfg_for =
            |attempt: u32| spec::sandbox_config(pod, attempt, &self.config, host_dns);
        let (sandbox_id, sandbox_cfg) = match sandboxes.iter().find(|s| s.ready) {
            Some(sb) => (sb.id.clone(), sandbox_cfg_for(sb.attempt)),
            None => {
                let attempt = sandboxes.iter().map(|s| s.attempt + 1).max().unwrap_or(0);
                if attempt > 0 && policy == "Never" && !observed.is_empty() {
                    // The sandbox died after containers ran: a Never pod does not start
                    // again; it is over.
                    mem.terminal = true;
                    self.write_status(d, mem, &observed, false, true).await?;
                    return Ok(None);
                }
                let id = self
                    .create_sandbox(pod, &sandboxes, attempt, &sandbox_cfg_for(attempt), mem)
                    .await?;
                (id, sandbox_cfg_for(attempt))
            }
        };
        if !spec_.host_network.unwrap_or(false) {
            mem.pod_ip = self
                .runtime
                .sandbox_ip(&sandbox_id)
                .await
                .map_err(Self::rt_err(&who))?;
        }
        self.prune_dead(&observed).await;
        let mut requeue: Option<Duration> = None;
        let mut mounts: Option<Arc<dyn PodMounts>> = None;
        let in_sandbox = |o: &CtrObs| o.sandbox_id == sandbox_id;

        // Init containers, one at a time, in order.
        let mut initialized = true;
        for c in spec_.init_containers.iter().flatten() {
            let sidecar = c.restart_policy.as_deref() == Some("Always");
            let hist: Vec<&CtrObs> = status::history(&observed, &c.name);
            let current = hist.iter().copied().find(|o| in_sandbox(o));
            match current.map(|o| (o.state, o.exit_code)) {
                Some((CtrState::Running, _)) if sidecar => continue,
                Some((CtrState::Running, _)) => {
                    initialized = false;
                    break;
                }
                Some((CtrState::Exited, 0)) if !sidecar => continue,
                Some(_) if !sidecar && policy == "Never" => {
                    initialized = false;
                    break;
                }
                _ => {
                    let previous = hist
                        .first()
                        .copied()
                        .filter(|o| o.state != CtrState::Running);
                    let delay = self
                        .start_with_backoff(
                            pod,
                            c,
                            previous,
                            &sandbox_id,
                            &sandbox_cfg,
                            mem,
                            &mut mounts,
                        )
                        .await?;
                    if let Some(dl) = delay {
                        requeue = min_delay(requeue, dl);
                    }
                    initialized = false;
                    break;
                }
            }
        }
        if initialized {
            for c in &spec_.containers {
                let hist: Vec<&CtrObs> = status::history(&observed, &c.name);
                let current = hist.iter().copied().find(|o| in_sandbox(o));
                if let Some(cur) = current.filter(|o| o.state == CtrState::Running) {
                    let failed = self
                        .probes
                        .as_ref()
                        .is_some_and(|p| p.liveness_failed(&cur.id));
                    if !failed {
                        continue;
                    }
                    self.recorder.normal(
                        pod.as_ref(),
                        "Killing",
                        format!(
                            "Container {} failed liveness probe, will be restarted",
                            c.name
                        ),
                    );
                    self.runtime
                        .stop_container(&cur.id, grace_of(pod))
                        .await
                        .map_err(Self::rt_err(&who))?;
                    // Looked at again when the relist sees it exited.
                    continue;
                }
                let should_start = match current {
                    None => true,
                    Some(o) => match policy.as_str() {
                        "Always" => true,
                        "OnFailure" => o.state != CtrState::Exited || o.exit_code != 0,
                        _ => false,
                    },
                };
                if !should_start {
                    mem.waiting.remove(&c.name);
                    continue;
                }
                let previous = hist.first().copied();
                let delay = self
                    .start_with_backoff(
                        pod,
                        c,
                        previous,
                        &sandbox_id,
                        &sandbox_cfg,
                        mem,
                        &mut mounts,
                    )
                    .await?;
                if let Some(dl) = delay {
                    requeue = min_delay(requeue, dl);
                }
            }
        }
        observed = self.observe(pod).await?;
        let phase = self.write_status(d, mem, &observed, true, false).await?;
        if is_terminal_phase(Some(phase.as_str())) {
            mem.terminal = true;
            return Ok(Some(Duration::ZERO));
        }
        let next = requeue.unwrap_or(RESYNC);
        Ok(Some(deadline_left.map_or(next, |d| d.min(next))))
    }

    async fn create_sandbox(
        &self,
        pod: &Pod,
        old: &[SandboxObs],
        attempt: u32,
        cfg: &cri::PodSandboxConfig,
        mem: &mut PodMemory,
    ) -> Result<String, SyncError> {
        let (ns, name, uid) = spec::meta(pod);
        let who = pod_key(pod);
        // Containers of an old sandbox die with it (the kubelet restarts them all).
        for sb in old {
            if let Ok(ctrs) = self.runtime.list(Some(uid)).await {
                for c in ctrs.iter().filter(|c| c.pod_sandbox_id == sb.id) {
                    let _ = self.runtime.stop_container(&c.id, Duration::ZERO).await;
                }
            }
        }
        let log_dir = self.config.pod_log_dir(ns, name, uid);
        std::fs::create_dir_all(&log_dir).map_err(|e| SyncError::Other {
            pod: who.clone(),
            message: format!("creating {}: {e}", log_dir.display()),
        })?;
        match self.runtime.run_sandbox(cfg.clone()).await {
            Ok(id) => {
                mem.killed = false;
                tracing::debug!(pod = %who, sandbox = %id, attempt, "created the pod sandbox");
                Ok(id)
            }
            Err(e) => {
                self.recorder.warning(
                    pod,
                    "FailedCreatePodSandBox",
                    format!("Failed to create pod sandbox: {}", e.message),
                );
                Err(Self::rt_err(&who)(e))
            }
        }
    }

    /// Removes exited containers beyond the two newest of each name (the newest shows
    /// as state, the one before as lastState), as the kubelet's container GC keeps.
    async fn prune_dead(&self, observed: &[CtrObs]) {
        let mut by_name: HashMap<&str, Vec<&CtrObs>> = HashMap::new();
        for o in observed {
            by_name.entry(o.name.as_str()).or_default().push(o);
        }
        for (_, mut list) in by_name {
            list.sort_by(|a, b| {
                b.attempt
                    .cmp(&a.attempt)
                    .then(b.created_at.cmp(&a.created_at))
            });
            for o in list.iter().skip(2).filter(|o| o.state == CtrState::Exited) {
                let _ = self.runtime.remove_container(&o.id).await;
            }
        }
    }

    /// Starts `c`, unless its previous run ended too recently (CrashLoopBackOff).
    /// Returns when to look again if it is waiting.
    #[allow(clippy::too_many_arguments)]
    async fn start_with_backoff(
        &self,
        pod: &Pod,
        c: &Container,
        previous: Option<&CtrObs>,
        sandbox_id: &str,
        sandbox_cfg: &cri::PodSandboxConfig,
        mem: &mut PodMemory,
        mounts: &mut Option<Arc<dyn PodMounts>>,
    ) -> Result<Option<Duration>, SyncError> {
        let (ns, name, uid) = spec::meta(pod);
        let now = Timestamp::now();
        let restart_count = previous.map(|p| p.attempt + 1).unwrap_or(0);
        if let Some(prev) = previous {
            let key = format!("{uid}/{}", c.name);
            let finished = nanos_to_ts(prev.finished_at).unwrap_or(now);
            if let Some(left) = mem.backoff.remaining(&key, finished, now) {
                let msg =
                    backoff::crash_loop_message(mem.backoff.get(&key), &c.name, name, ns, uid);
                let first =
                    mem.waiting.get(&c.name).map(|w| w.0.as_str()) != Some("CrashLoopBackOff");
                if first {
                    self.recorder.warning(
                        pod,
                        "BackOff",
                        format!(
                            "Back-off restarting failed container {} in pod {name}_{ns}({uid})",
                            c.name
                        ),
                    );
                }
                mem.waiting
                    .insert(c.name.clone(), ("CrashLoopBackOff".into(), msg));
                return Ok(Some(left));
            }
            mem.backoff.next(&key, finished);
        }
        self.start_container(pod, c, restart_count, sandbox_id, sandbox_cfg, mem, mounts)
            .await
    }

    async fn ensure_image(
        &self,
        pod: &Pod,
        c: &Container,
        sandbox_cfg: &cri::PodSandboxConfig,
        mem: &mut PodMemory,
    ) -> Result<String, (String, String, Option<Duration>)> {
        let image = c.image.clone().unwrap_or_default();
        let present = self.runtime.image_present(&image).await.map_err(|e| {
            (
                "ErrImagePull".to_string(),
                e.message,
                Some(Duration::from_secs(5)),
            )
        })?;
        let policy = pull_policy(c);
        match (policy, present) {
            ("Never", None) => {
                let msg =
                    format!("Container image \"{image}\" is not present with pull policy of Never");
                self.recorder.warning(pod, "ErrImageNeverPull", msg.clone());
                return Err(("ErrImageNeverPull".into(), msg, Some(RESYNC)));
            }
            ("Never", Some(id)) | ("IfNotPresent", Some(id)) => {
                if !mem.pulled_event.contains(&c.name) {
                    self.recorder.normal(
                        pod,
                        "Pulled",
                        format!("Container image \"{image}\" already present on machine"),
                    );
                    mem.pulled_event.insert(c.name.clone());
                }
                return Ok(id);
            }
            _ => {}
        }
        let now = Timestamp::now();
        if let Some(failed_at) = mem.pull_failed_at.get(&image) {
            if let Some(left) = mem.pull_backoff.remaining(&image, *failed_at, now) {
                let last = mem
                    .waiting
                    .get(&c.name)
                    .map(|w| w.1.clone())
                    .unwrap_or_default();
                let msg = if last.is_empty() || last.starts_with("Back-off pulling image") {
                    format!("Back-off pulling image \"{image}\"")
                } else {
                    format!("Back-off pulling image \"{image}\": ErrImagePull: {last}")
                };
                return Err(("ImagePullBackOff".into(), msg, Some(left)));
            }
        }
        self.recorder
            .normal(pod, "Pulling", format!("Pulling image \"{image}\""));
        let started = std::time::Instant::now();
        match self.runtime.pull(&image, sandbox_cfg).await {
            Ok(r) => {
                mem.pull_failed_at.remove(&image);
                self.recorder.normal(
                    pod,
                    "Pulled",
                    format!(
                        "Successfully pulled image \"{image}\" in {}ms",
                        started.elapsed().as_millis()
                    ),
                );
                Ok(r)
            }
            Err(e) => {
                mem.pull_backoff.next(&image, now);
                mem.pull_failed_at.insert(image.clone(), now);
                self.recorder.warning(
                    pod,
                    "Failed",
                    format!("Failed to pull image \"{image}\": {}", e.message),
                );
                let left = mem.pull_backoff.get(&image);
                Err(("ErrImagePull".into(), e.message, Some(left)))
            }
        }
    }

    async fn fetch_env_sources(&self, pod: &Pod, c: &Container) -> Result<env::Inputs, SyncError> {
        let (ns, _, _) = spec::meta(pod);
        let refs = env::references(c);
        let mut inputs = env::Inputs {
            host_ip: self.config.node_ip.to_string(),
            node_cpu_millis: (self.machine.cpus as i128) * 1000,
            node_memory_bytes: self.machine.memory_bytes as i128,
            ..Default::default()
        };
        let services = self.services.list();
        let refs_s: Vec<&k8s_openapi::api::core::v1::Service> =
            services.iter().map(|s| s.as_ref()).collect();
        let links = pod
            .spec
            .as_ref()
            .and_then(|s| s.enable_service_links)
            .unwrap_or(true);
        inputs.service_env = env::service_env(&refs_s, ns, links);
        let cms: Api<ConfigMap> = Api::namespaced(self.client.clone(), ns);
        for name in refs.config_maps {
            let got = cms.get_opt(&name).await.map_err(|source| SyncError::Api {
                pod: pod_key(pod),
                op: "reading a ConfigMap for",
                source,
            })?;
            if let Some(cm) = got {
                inputs.config_maps.insert(name, cm);
            }
        }
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        for name in refs.secrets {
            let got = secrets
                .get_opt(&name)
                .await
                .map_err(|source| SyncError::Api {
                    pod: pod_key(pod),
                    op: "reading a Secret for",
                    source,
                })?;
            if let Some(s) = got {
                inputs.secrets.insert(name, s);
            }
        }
        Ok(inputs)
    }

    #[allow(clippy::too_many_arguments)]
    async fn start_container(
        &self,
        pod: &Pod,
        c: &Container,
        restart_count: u32,
        sandbox_id: &str,
        sandbox_cfg: &cri::PodSandboxConfig,
        mem: &mut PodMemory,
        mounts: &mut Option<Arc<dyn PodMounts>>,
    ) -> Result<Option<Duration>, SyncError> {
        let (_, _, uid) = spec::meta(pod);
        let who = pod_key(pod);
        let image_ref = match self.ensure_image(pod, c, sandbox_cfg, mem).await {
            Ok(r) => r,
            Err((reason, message, retry)) => {
                mem.waiting.insert(c.name.clone(), (reason, message));
                return Ok(retry);
            }
        };
        if !self.services.is_synced() {
            // Every container gets the Service variables: wait for the list, as the
            // kubelet does, rather than start one without them.
            return Ok(Some(Duration::from_millis(200)));
        }
        let mut inputs = self.fetch_env_sources(pod, c).await?;
        inputs.pod_ip = mem.pod_ip.clone().unwrap_or_default();
        if pod.spec.as_ref().and_then(|s| s.host_network) == Some(true) {
            inputs.pod_ip = self.config.node_ip.to_string();
        }
        let env = match env::resolve(pod, c, &inputs) {
            Ok(e) => e,
            Err(e) => {
                self.recorder.warning(pod, "Failed", format!("Error: {e}"));
                mem.waiting.insert(
                    c.name.clone(),
                    ("CreateContainerConfigError".into(), e.to_string()),
                );
                return Ok(Some(Duration::from_secs(10)));
            }
        };
        let (command, args) = env::expand_command(c, &env);
        let mut all_mounts = Vec::new();
        if let Some(vols) = &self.volumes {
            if mounts.is_none() {
                match vols.setup(pod).await {
                    Ok(m) => *mounts = Some(m),
                    Err(e) => {
                        self.recorder.warning(pod, "FailedMount", e.clone());
                        mem.waiting
                            .insert(c.name.clone(), ("ContainerCreating".into(), String::new()));
                        return Ok(Some(Duration::from_secs(5)));
                    }
                }
            }
            if let Some(m) = mounts.as_ref() {
                match m.mounts(c) {
                    Ok(list) => all_mounts.extend(list),
                    Err(e) => {
                        mem.waiting
                            .insert(c.name.clone(), ("CreateContainerConfigError".into(), e));
                        return Ok(Some(Duration::from_secs(10)));
                    }
                }
            }
        }
        if pod.spec.as_ref().and_then(|s| s.host_network) != Some(true) {
            if let Some(hosts) = self.write_etc_hosts(pod, mem.pod_ip.as_deref()) {
                all_mounts.push(cri::Mount {
                    container_path: "/etc/hosts".into(),
                    host_path: hosts,
                    ..Default::default()
                });
            }
        }
        // The file the container may write its termination message to.
        let log = self.termination_log(uid, &c.name, restart_count);
        if let Some(dir) = log.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if std::fs::write(&log, b"").is_ok() {
            all_mounts.push(cri::Mount {
                container_path: c
                    .termination_message_path
                    .clone()
                    .unwrap_or_else(|| "/dev/termination-log".into()),
                host_path: log.display().to_string(),
                ..Default::default()
            });
        }
        let cfg = spec::container_config(
            pod,
            c,
            ContainerInputs {
                image_ref: &image_ref,
                restart_count,
                env,
                command,
                args,
                mounts: all_mounts,
                memory_capacity: self.machine.memory_bytes as i128,
            },
        );
        let id = match self
            .runtime
            .create_container(sandbox_id, cfg, sandbox_cfg)
            .await
        {
            Ok(id) => id,
            Err(e) => {
                self.recorder
                    .warning(pod, "Failed", format!("Error: {}", e.message));
                mem.waiting
                    .insert(c.name.clone(), ("CreateContainerError".into(), e.message));
                return Ok(Some(Duration::from_secs(10)));
            }
        };
        self.recorder
            .normal(pod, "Created", format!("Created container: {}", c.name));
        if let Err(e) = self.runtime.start_container(&id).await {
            self.recorder
                .warning(pod, "Failed", format!("Error: {}", e.message));
            mem.waiting
                .insert(c.name.clone(), ("RunContainerError".into(), e.message));
            return Ok(Some(Duration::from_secs(10)));
        }
        self.recorder
            .normal(pod, "Started", format!("Started container {}", c.name));
        mem.waiting.remove(&c.name);
        if let Some(post) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
            let timeout = grace_of(pod).max(Duration::from_secs(2));
            if let Err(e) =
                hooks::run(&self.runtime, post, c, &id, mem.pod_ip.as_deref(), timeout).await
            {
                self.recorder.warning(
                    pod,
                    "FailedPostStartHook",
                    format!("PostStartHook failed: {e}"),
                );
                self.runtime
                    .stop_container(&id, grace_of(pod))
                    .await
                    .map_err(Self::rt_err(&who))?;
                return Ok(Some(Duration::ZERO));
            }
        }
        if let Some(p) = &self.probes {
            p.add(pod, c, &id, mem.pod_ip.clone());
        }
        Ok(None)
    }

    /// Writes the pod's /etc/hosts (as the kubelet manages it: localhost, the pod's own
    /// address and name, hostAliases) and returns its path.
    fn write_etc_hosts(&self, pod: &Pod, pod_ip: Option<&str>) -> Option<String> {
        let (_, _, uid) = spec::meta(pod);
        let path = self.config.pod_dir(uid).join("etc-hosts");
        let text = etc_hosts(pod, pod_ip, &self.config.cluster_domain);
        std::fs::create_dir_all(path.parent()?).ok()?;
        std::fs::write(&path, text).ok()?;
        Some(path.display().to_string())
    }

    /// Computes the status and posts it if it differs from what was last posted (or,
    /// after a restart, from what the server holds). Returns the phase.
    async fn write_status(
        &self,
        d: &Desired,
        mem: &mut PodMemory,
        observed: &[CtrObs],
        sandbox_ready: bool,
        terminal: bool,
    ) -> Result<String, SyncError> {
        let pod = &d.pod;
        let probes = self.probes.clone();
        let ready = |c: &Container, o: &CtrObs| match &probes {
            Some(p) if c.readiness_probe.is_some() => p.readiness(&o.id) == Some(true),
            Some(p) if c.startup_probe.is_some() => p.started(&o.id),
            _ => true,
        };
        let started = |c: &Container, o: &CtrObs| match &probes {
            Some(p) if c.startup_probe.is_some() => p.started(&o.id),
            _ => true,
        };
        let waiting = if terminal {
            HashMap::new()
        } else {
            mem.waiting.clone()
        };
        let mut status = status::pod_status(&status::Inputs {
            pod,
            containers: observed,
            sandbox_ready,
            pod_ip: mem.pod_ip.clone(),
            host_ip: self.config.node_ip.to_string(),
            waiting: &waiting,
            ready: &ready,
            started: &started,
            start_time: mem.start_time.unwrap_or_else(Timestamp::now),
            now: Timestamp::now(),
        });
        if terminal {
            // A pod that is over (or being deleted) ends Succeeded only if every
            // container did; otherwise Failed, as the kubelet reports it.
            if mem.deadline_exceeded {
                status.phase = Some("Failed".into());
                status.reason = Some("DeadlineExceeded".into());
                status.message =
                    Some("Pod was active on the node longer than the specified deadline".into());
            }
            if !is_terminal_phase(status.phase.as_deref()) {
                let all_ok = status.container_statuses.iter().flatten().all(|s| {
                    s.state
                        .as_ref()
                        .and_then(|st| st.terminated.as_ref())
                        .is_some_and(|t| t.exit_code == 0)
                });
                status.phase = Some(if all_ok { "Succeeded" } else { "Failed" }.into());
            }
            for c in status.conditions.iter_mut().flatten() {
                if c.type_ == "Ready" || c.type_ == "ContainersReady" {
                    if c.status == "True" {
                        c.last_transition_time = Some(
                            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now()),
                        );
                    }
                    c.status = "False".into();
                    c.reason = Some("PodCompleted".into());
                    c.message = None;
                }
            }
        }
        let phase = status.phase.clone().unwrap_or_default();
        let previous: Option<&PodStatus> = mem.written.as_ref().or(pod.status.as_ref());
        if previous.is_some_and(|p| same_status(p, &status)) {
            return Ok(phase);
        }
        let (ns, name, _) = spec::meta(pod);
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let mut patch = serde_json::json!({ "status": status });
        // A strategic merge keeps fields a patch leaves out: clear a condition's reason
        // and message explicitly when it no longer has them.
        if let Some(conds) = patch["status"]["conditions"].as_array_mut() {
            for c in conds.iter_mut().filter_map(|c| c.as_object_mut()) {
                for k in ["reason", "message"] {
                    c.entry(k).or_insert(serde_json::Value::Null);
                }
            }
        }
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
        {
            Ok(_) => {
                mem.written = Some(status);
                Ok(phase)
            }
            // A static pod without its mirror yet, or a pod already gone.
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(phase),
            Err(source) => Err(SyncError::Api {
                pod: pod_key(pod),
                op: "posting the status of",
                source,
            }),
        }
    }
}

/// Whether `old` already shows everything `new` says (fields the agent does not own,
/// such as the scheduler's PodScheduled condition, are left out of the comparison).
fn same_status(old: &PodStatus, new: &PodStatus) -> bool {
    let mut old = old.clone();
    if let Some(conds) = old.conditions.as_mut() {
        conds.retain(|c| new.conditions.iter().flatten().any(|n| n.type_ == c.type_));
    }
    old.nominated_node_name = None;
    old.resize = None;
    old.observed_generation = None;
    old.message = new.message.clone();
    old.reason = new.reason.clone();
    old == *new
}

/// The kubelet's managed hosts file for a pod.
pub fn etc_hosts(pod: &Pod, pod_ip: Option<&str>, domain: &str) -> String {
    let (ns, name, _) = spec::meta(pod);
    let spec_ = pod.spec.clone().unwrap_or_default();
    let mut out = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    if let Some(ip) = pod_ip.filter(|ip| !ip.is_empty()) {
        let host = spec_.hostname.clone().unwrap_or_else(|| name.to_string());
        match spec_.subdomain.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => out.push_str(&format!("{ip}\t{host}.{sub}.{ns}.svc.{domain}\t{host}\n")),
            None => out.push_str(&format!("{ip}\t{host}\n")),
        }
    }
    for alias in spec_.host_aliases.iter().flatten() {
        let names = alias.hostnames.clone().unwrap_or_default();
        if !names.is_empty() {
            out.push_str(&format!(
                "\n# Entries added by HostAliases.\n{}\t{}\n",
                alias.ip,
                names.join("\t")
            ));
        }
    }
    out
}

fn find_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_file_names_the_pod_and_its_aliases() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "prod"},
            "spec": {"containers": [], "hostname": "h", "subdomain": "sub",
                     "hostAliases": [{"ip": "192.0.2.9", "hostnames": ["a", "b"]}]},
        }))
        .unwrap();
        let text = etc_hosts(&pod, Some("10.42.0.5"), "cluster.local");
        assert!(text.contains("127.0.0.1\tlocalhost\n"));
        assert!(text.contains("10.42.0.5\th.sub.prod.svc.cluster.local\th\n"));
        assert!(text.contains("192.0.2.9\ta\tb\n"));
        let plain: Pod = serde_json::from_value(
            serde_json::json!({"metadata": {"name": "web"}, "spec": {"containers": []}}),
        )
        .unwrap();
        assert!(etc_hosts(&plain, Some("10.42.0.6"), "cluster.local").ends_with("10.42.0.6\tweb\n"));
    }

    #[test]
    fn pull_policy_defaults_by_tag() {
        let c = |image: &str, policy: Option<&str>| Container {
            name: "c".into(),
            image: Some(image.into()),
            image_pull_policy: policy.map(str::to_string),
            ..Default::default()
        };
        assert_eq!(pull_policy(&c("nginx", None)), "Always");
        assert_eq!(pull_policy(&c("nginx:latest", None)), "Always");
        assert_eq!(pull_policy(&c("nginx:1.25", None)), "IfNotPresent");
        assert_eq!(pull_policy(&c("localhost:5000/app", None)), "Always");
        assert_eq!(
            pull_policy(&c("localhost:5000/app:v1", None)),
            "IfNotPresent"
        );
        assert_eq!(pull_policy(&c("app@sha256:abc", None)), "IfNotPresent");
        assert_eq!(pull_policy(&c("nginx", Some("Never"))), "Never");
    }
}
