//! A hollow pod's lifecycle, as a kubelet would report it, without running anything.
//! Pure: [`Pod`] is reduced to a compact [`PodRec`] (a few hundred bytes, so 50,000
//! pods fit in a few tens of MB), [`advance`] decides the next step at a given time,
//! and [`status`] builds the pods/status patch for a [`Life`].
//!
//! Lifecycle: Pending → Running (containers started; each Ready once its readiness
//! probe's initialDelaySeconds passed) → for restartPolicy Never/OnFailure, after
//! [`RUN_SECONDS`] the containers exit with [`EXIT_CODE`]: Succeeded on 0; non-zero is
//! Failed under Never, and a restart (restartCount + 1, running again) under OnFailure.
//! Deletion: containers stop and the pod is deleted with grace period 0.

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus,
    HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use std::collections::BTreeMap;
use std::time::Duration;

/// Pod annotation: seconds a Job pod's containers run before they exit (default 1;
/// fractions allowed). Read for restartPolicy Never and OnFailure only.
pub const RUN_SECONDS: &str = "hollow.skiff.dev/run-seconds";
/// Pod annotation: the exit code those containers exit with (default 0).
pub const EXIT_CODE: &str = "hollow.skiff.dev/exit-code";

/// Exit code of containers stopped because their pod is deleted: 128 + SIGTERM, what a
/// process without a SIGTERM handler reports.
pub const STOP_EXIT_CODE: i32 = 143;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    Always,
    OnFailure,
    Never,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ctr {
    pub name: Box<str>,
    pub image: Box<str>,
    /// readinessProbe.initialDelaySeconds (0 without a probe).
    pub ready_delay: u32,
}

/// What a hollow node keeps of a pod: enough to write every status it will post
/// (namespace and name are the map key it is kept under).
#[derive(Clone, Debug)]
pub struct PodRec {
    pub uid: Box<str>,
    /// Local index of the node it is bound to.
    pub node: u32,
    pub containers: Box<[Ctr]>,
    /// Init containers that run to completion first.
    pub init: Box<[Ctr]>,
    /// Init containers with restartPolicy Always (sidecars): they keep running.
    pub sidecars: Box<[Ctr]>,
    pub restart: Restart,
    pub host_network: bool,
    pub run_for: Duration,
    pub exit_code: i32,
    pub qos: &'static str,
    /// lastTransitionTime of the PodScheduled condition the scheduler wrote, if any.
    pub scheduled: Option<Timestamp>,
    pub deleting: bool,
    pub has_finalizers: bool,
    /// Pod address offset in the node's range (none for host-network pods).
    pub ip: Option<u16>,
    pub life: Life,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Not started by this node yet.
    Pending,
    Running,
    Succeeded,
    Failed,
    /// Deleted with grace period 0 (waiting for it to vanish).
    Gone,
}

/// The part of a pod's state that changes as it runs (small and `Copy`, so a worker
/// can decide on a copy and store it back only after its write succeeded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Life {
    pub state: State,
    /// status.startTime.
    pub started: Option<Timestamp>,
    /// When the containers' current run started (differs from `started` after restarts).
    pub run_started: Option<Timestamp>,
    pub restarts: u32,
    /// How the previous run ended: (exit code, started, finished); also the final one.
    pub last_exit: Option<(i32, Timestamp, Timestamp)>,
    /// How many containers the last written status showed ready.
    pub ready_written: u16,
}

impl Life {
    pub const NEW: Life = Life {
        state: State::Pending,
        started: None,
        run_started: None,
        restarts: 0,
        last_exit: None,
        ready_written: 0,
    };
}

/// What to do for a pod now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Nothing,
    /// Post the status of `life` (and keep it), then look again after `wake` if given.
    Write {
        life: Life,
        wake: Option<Duration>,
    },
    /// Delete with grace period 0; first post the stopped status of `stopped` when the
    /// pod has finalizers (someone waits to see how it ended).
    Delete {
        stopped: Option<Life>,
    },
    /// Nothing to write yet; look again after this long.
    Wait(Duration),
}

fn ctr(c: &Container) -> Ctr {
    Ctr {
        name: c.name.as_str().into(),
        image: c.image.as_deref().unwrap_or_default().into(),
        ready_delay: c
            .readiness_probe
            .as_ref()
            .and_then(|p| p.initial_delay_seconds)
            .map(|s| s.max(0) as u32)
            .unwrap_or(0),
    }
}

fn condition_time(pod: &Pod, type_: &str) -> Option<Timestamp> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")?
        .last_transition_time
        .as_ref()
        .map(|t| t.0)
}

/// Reduces a pod bound to local node `node` to what this node keeps. `life` and `ip`
/// start from what the pod's status already shows (a restarted process takes over
/// running pods without restarting them): see [`observed_life`].
pub fn record(pod: &Pod, node: u32) -> PodRec {
    let spec = pod.spec.clone().unwrap_or_default();
    let annotations = pod.metadata.annotations.as_ref();
    let annotation = |k: &str| annotations.and_then(|a| a.get(k)).map(|v| v.trim());
    let run_for = annotation(RUN_SECONDS)
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(1e9)))
        .unwrap_or(Duration::from_secs(1));
    let exit_code = annotation(EXIT_CODE)
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(0);
    let restart = match spec.restart_policy.as_deref() {
        Some("Never") => Restart::Never,
        Some("OnFailure") => Restart::OnFailure,
        _ => Restart::Always,
    };
    let inits = spec.init_containers.as_deref().unwrap_or_default();
    let is_sidecar = |c: &&Container| c.restart_policy.as_deref() == Some("Always");
    PodRec {
        uid: pod.metadata.uid.as_deref().unwrap_or_default().into(),
        node,
        containers: spec.containers.iter().map(ctr).collect(),
        init: inits.iter().filter(|c| !is_sidecar(c)).map(ctr).collect(),
        sidecars: inits.iter().filter(is_sidecar).map(ctr).collect(),
        restart,
        host_network: spec.host_network.unwrap_or(false),
        run_for,
        exit_code,
        qos: qos_class(&spec),
        scheduled: condition_time(pod, "PodScheduled"),
        deleting: pod.metadata.deletion_timestamp.is_some(),
        has_finalizers: pod
            .metadata
            .finalizers
            .as_ref()
            .is_some_and(|f| !f.is_empty()),
        ip: None,
        life: observed_life(pod),
    }
}

/// The lifecycle a pod's current status shows: a pod some hollow node already started
/// (Running with container statuses) is taken over as it is; anything else not
/// terminal starts from Pending.
pub fn observed_life(pod: &Pod) -> Life {
    let Some(status) = pod.status.as_ref() else {
        return Life::NEW;
    };
    let time = |t: &Option<Time>| t.as_ref().map(|t| t.0);
    match status.phase.as_deref() {
        Some("Succeeded") => Life {
            state: State::Succeeded,
            ..Life::NEW
        },
        Some("Failed") => Life {
            state: State::Failed,
            ..Life::NEW
        },
        Some("Running") => {
            let statuses = status.container_statuses.as_deref().unwrap_or_default();
            let Some(first) = statuses.first() else {
                return Life::NEW;
            };
            let run_started = first
                .state
                .as_ref()
                .and_then(|s| s.running.as_ref())
                .and_then(|r| time(&r.started_at))
                .or_else(|| time(&status.start_time));
            Life {
                state: State::Running,
                started: time(&status.start_time).or(run_started),
                run_started,
                restarts: first.restart_count.max(0) as u32,
                last_exit: None,
                ready_written: statuses.iter().filter(|c| c.ready).count() as u16,
            }
        }
        _ => Life::NEW,
    }
}

/// The pod's QoS class, as upstream computes it from the cpu and memory requests and
/// limits of all its containers (a request left out defaults to the limit).
pub fn qos_class(spec: &k8s_openapi::api::core::v1::PodSpec) -> &'static str {
    use skiff_api::quantity::Quantity as Q;
    let mut requests: BTreeMap<&str, Q> = BTreeMap::new();
    let mut limits: BTreeMap<&str, Q> = BTreeMap::new();
    let mut guaranteed = true;
    let all = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    let add = |m: &mut BTreeMap<&'static str, Q>, k: &'static str, q: Q| {
        let sum = match m.get(k) {
            Some(prev) => prev.checked_add(&q).unwrap_or(q),
            None => q,
        };
        m.insert(k, sum);
    };
    for c in all {
        let res = c.resources.as_ref();
        let get = |m: Option<
            &BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
        >,
                   k: &str| {
            m.and_then(|m| m.get(k))
                .and_then(|q| q.0.parse::<Q>().ok())
                .filter(|q| !q.is_zero())
        };
        let mut found = 0;
        for k in ["cpu", "memory"] {
            let limit = get(res.and_then(|r| r.limits.as_ref()), k);
            let request = get(res.and_then(|r| r.requests.as_ref()), k).or(limit);
            if let Some(r) = request {
                add(&mut requests, k, r);
            }
            if let Some(l) = limit {
                add(&mut limits, k, l);
                found += 1;
            }
        }
        if found < 2 {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if guaranteed && requests == limits {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

fn after(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX)
}

fn until(now: Timestamp, t: Timestamp) -> Duration {
    Duration::try_from(t.duration_since(now)).unwrap_or(Duration::ZERO)
}

/// Containers whose readiness counts (regular ones and sidecars) with their delays.
fn serving(rec: &PodRec) -> impl Iterator<Item = &Ctr> {
    rec.sidecars.iter().chain(rec.containers.iter())
}

/// How many containers are ready at `now` in the run that started at `run_started`.
fn ready_count(rec: &PodRec, run_started: Timestamp, now: Timestamp) -> u16 {
    serving(rec)
        .filter(|c| after(run_started, Duration::from_secs(c.ready_delay.into())) <= now)
        .count() as u16
}

/// When the next container becomes ready after `now`, if one is still to.
fn next_ready(rec: &PodRec, run_started: Timestamp, now: Timestamp) -> Option<Timestamp> {
    serving(rec)
        .map(|c| after(run_started, Duration::from_secs(c.ready_delay.into())))
        .filter(|t| *t > now)
        .min()
}

fn finishes(rec: &PodRec) -> bool {
    rec.restart != Restart::Always
}

/// The next time something changes for a running pod: a container becomes ready, or
/// (Job pods) the containers exit.
fn wake(rec: &PodRec, life: &Life, now: Timestamp) -> Option<Duration> {
    if life.state != State::Running {
        return None;
    }
    let run_started = life.run_started?;
    let exit = finishes(rec).then(|| after(run_started, rec.run_for));
    [next_ready(rec, run_started, now), exit]
        .into_iter()
        .flatten()
        .min()
        .map(|t| until(now, t))
}

/// Decides what to do for `rec` at `now`.
pub fn advance(rec: &PodRec, now: Timestamp) -> Action {
    let life = rec.life;
    if rec.deleting {
        return match life.state {
            State::Gone => Action::Nothing,
            State::Running if rec.has_finalizers => Action::Delete {
                stopped: Some(stopped(&life, STOP_EXIT_CODE, now)),
            },
            _ => Action::Delete { stopped: None },
        };
    }
    match life.state {
        State::Pending => {
            let mut next = Life {
                state: State::Running,
                started: Some(now),
                run_started: Some(now),
                ..Life::NEW
            };
            next.ready_written = ready_count(rec, now, now);
            Action::Write {
                life: next,
                wake: wake(rec, &next, now),
            }
        }
        State::Running => {
            let Some(run_started) = life.run_started else {
                // A Running pod without a run start cannot come from `observed_life`;
                // start it over rather than guess.
                return advance(
                    &PodRec {
                        life: Life::NEW,
                        ..rec.clone()
                    },
                    now,
                );
            };
            if finishes(rec) && after(run_started, rec.run_for) <= now {
                let code = rec.exit_code;
                let next = if code != 0 && rec.restart == Restart::OnFailure {
                    // The container restarts at once (no CrashLoopBackOff delay here).
                    let mut n = Life {
                        run_started: Some(now),
                        restarts: life.restarts.saturating_add(1),
                        last_exit: Some((code, run_started, now)),
                        ..life
                    };
                    n.ready_written = ready_count(rec, now, now);
                    n
                } else {
                    stopped(&life, code, now)
                };
                return Action::Write {
                    life: next,
                    wake: wake(rec, &next, now),
                };
            }
            let ready = ready_count(rec, run_started, now);
            if ready != life.ready_written {
                let next = Life {
                    ready_written: ready,
                    ..life
                };
                return Action::Write {
                    life: next,
                    wake: wake(rec, &next, now),
                };
            }
            match wake(rec, &life, now) {
                Some(d) => Action::Wait(d),
                None => Action::Nothing,
            }
        }
        State::Succeeded | State::Failed | State::Gone => Action::Nothing,
    }
}

/// The lifecycle after the containers exited with `code` at `now`.
fn stopped(life: &Life, code: i32, now: Timestamp) -> Life {
    Life {
        state: if code == 0 {
            State::Succeeded
        } else {
            State::Failed
        },
        last_exit: Some((code, life.run_started.unwrap_or(now), now)),
        ready_written: 0,
        ..*life
    }
}

/// Where the node and pod addresses come from, for [`status`].
pub struct Addresses {
    pub host_ip: String,
    pub pod_ip: String,
}

fn exit_reason(code: i32) -> &'static str {
    if code == 0 {
        "Completed"
    } else {
        "Error"
    }
}

fn container_id(rec: &PodRec, c: &Ctr) -> String {
    format!("hollow://{}-{}", rec.uid, c.name)
}

fn terminated(rec: &PodRec, c: &Ctr, code: i32, from: Timestamp, to: Timestamp) -> ContainerState {
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            container_id: Some(container_id(rec, c)),
            exit_code: code,
            reason: Some(exit_reason(code).into()),
            started_at: Some(Time(from)),
            finished_at: Some(Time(to)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn condition(
    type_: &str,
    ok: bool,
    at: Timestamp,
    reason: Option<&str>,
    msg: Option<String>,
) -> PodCondition {
    PodCondition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        last_transition_time: Some(Time(at)),
        reason: reason.map(Into::into),
        message: msg,
        ..Default::default()
    }
}

/// The pods/status a kubelet would post for `rec` in lifecycle `life` at `now`.
pub fn status(rec: &PodRec, life: &Life, addrs: &Addresses, now: Timestamp) -> PodStatus {
    let started = life.started.unwrap_or(now);
    let run_started = life.run_started.unwrap_or(started);
    let running = life.state == State::Running;
    let terminal = matches!(life.state, State::Succeeded | State::Failed | State::Gone);
    let final_exit = life.last_exit.filter(|_| terminal);
    let phase = match life.state {
        State::Pending => "Pending",
        State::Running => "Running",
        State::Succeeded => "Succeeded",
        State::Failed | State::Gone => "Failed",
    };
    let delay = |c: &Ctr| Duration::from_secs(c.ready_delay.into());
    let is_ready = |c: &Ctr| running && after(run_started, delay(c)) <= now;
    let mut unready: Vec<&str> = Vec::new();
    let mut ready_since = run_started;
    let mut statuses = Vec::with_capacity(rec.containers.len());
    let mut sidecar_statuses = Vec::with_capacity(rec.sidecars.len());
    for (sidecar, c) in rec
        .sidecars
        .iter()
        .map(|c| (true, c))
        .chain(rec.containers.iter().map(|c| (false, c)))
    {
        let ready = is_ready(c);
        if ready {
            ready_since = ready_since.max(after(run_started, delay(c)));
        } else {
            unready.push(&c.name);
        }
        let state = match final_exit {
            Some((code, from, to)) => terminated(rec, c, code, from, to),
            None => ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(Time(run_started)),
                }),
                ..Default::default()
            },
        };
        let last_state = match (running, life.last_exit) {
            (true, Some((code, from, to))) if !sidecar => Some(terminated(rec, c, code, from, to)),
            _ => None,
        };
        let s = ContainerStatus {
            name: c.name.to_string(),
            image: c.image.to_string(),
            image_id: format!("hollow://{}", c.image),
            container_id: Some(container_id(rec, c)),
            ready,
            started: Some(running),
            restart_count: if sidecar { 0 } else { life.restarts as i32 },
            state: Some(state),
            last_state,
            ..Default::default()
        };
        if sidecar {
            sidecar_statuses.push(s);
        } else {
            statuses.push(s);
        }
    }
    let mut init_statuses: Vec<ContainerStatus> = rec
        .init
        .iter()
        .map(|c| ContainerStatus {
            name: c.name.to_string(),
            image: c.image.to_string(),
            image_id: format!("hollow://{}", c.image),
            container_id: Some(container_id(rec, c)),
            ready: true,
            started: Some(false),
            restart_count: 0,
            state: Some(terminated(rec, c, 0, started, started)),
            ..Default::default()
        })
        .collect();
    init_statuses.extend(sidecar_statuses);

    let finished = final_exit.map(|(_, _, to)| to).unwrap_or(now);
    let (ready_ok, ready_at, ready_reason, ready_msg) = match life.state {
        State::Succeeded => (false, finished, Some("PodCompleted"), None),
        State::Failed | State::Gone => (false, finished, Some("PodFailed"), None),
        _ if unready.is_empty() => (true, ready_since, None, None),
        _ => (
            false,
            run_started,
            Some("ContainersNotReady"),
            Some(format!(
                "containers with unready status: [{}]",
                unready.join(" ")
            )),
        ),
    };
    let (init_reason, init_at) = match life.state {
        State::Succeeded => (Some("PodCompleted"), started),
        _ => (None, started),
    };
    let conditions = vec![
        condition(
            "PodReadyToStartContainers",
            !terminal,
            if terminal { finished } else { started },
            None,
            None,
        ),
        condition("Initialized", true, init_at, init_reason, None),
        condition("Ready", ready_ok, ready_at, ready_reason, ready_msg.clone()),
        condition(
            "ContainersReady",
            ready_ok,
            ready_at,
            ready_reason,
            ready_msg,
        ),
        condition(
            "PodScheduled",
            true,
            rec.scheduled.unwrap_or(started),
            None,
            None,
        ),
    ];
    PodStatus {
        phase: Some(phase.into()),
        conditions: Some(conditions),
        host_ip: Some(addrs.host_ip.clone()),
        host_ips: Some(vec![HostIP {
            ip: addrs.host_ip.clone(),
        }]),
        pod_ip: Some(addrs.pod_ip.clone()),
        pod_ips: Some(vec![PodIP {
            ip: addrs.pod_ip.clone(),
        }]),
        start_time: Some(Time(started)),
        qos_class: Some(rec.qos.into()),
        container_statuses: Some(statuses),
        init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
