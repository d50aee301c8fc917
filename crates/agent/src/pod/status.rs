//! A pod's status as the kubelet reports it, from what the runtime shows: phase,
//! conditions, container statuses (state, lastState, restartCount, ready, started,
//! image, imageID, containerID), addresses, startTime and qosClass. Pure: everything it
//! reads is passed in, the clock included.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::pod::qos;

/// Prefix of container IDs in statuses (the runtime's name).
pub const RUNTIME_PREFIX: &str = "containerd://";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtrState {
    Created,
    Running,
    Exited,
    Unknown,
}

/// One runtime container of the pod, as the runtime reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtrObs {
    pub id: String,
    pub name: String,
    /// The restart count it was started with (its CRI attempt).
    pub attempt: u32,
    pub sandbox_id: String,
    pub state: CtrState,
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    pub image_ref: String,
}

impl CtrObs {
    pub fn terminated(&self) -> ContainerStateTerminated {
        let reason = if !self.reason.is_empty() {
            self.reason.clone()
        } else if self.exit_code == 0 {
            "Completed".into()
        } else {
            "Error".into()
        };
        ContainerStateTerminated {
            exit_code: self.exit_code,
            reason: Some(reason),
            message: Some(self.message.clone()).filter(|m| !m.is_empty()),
            started_at: time(self.started_at),
            finished_at: time(self.finished_at),
            container_id: Some(format!("{RUNTIME_PREFIX}{}", self.id)),
            signal: None,
        }
    }
}

/// An exit by SIGKILL (137) within the last two seconds that the runtime has not (yet)
/// called OOMKilled: the runtime's OOM event may still be on its way.
pub fn maybe_unlabelled_oom(c: &CtrObs, now: Timestamp) -> bool {
    let recent = now.as_nanosecond() - i128::from(c.finished_at) < 2_000_000_000;
    c.state == CtrState::Exited
        && c.exit_code == 137
        && (c.reason.is_empty() || c.reason == "Error")
        && c.finished_at > 0
        && recent
}

fn time(nanos: i64) -> Option<Time> {
    (nanos > 0)
        .then(|| Timestamp::from_nanosecond(i128::from(nanos)).ok())
        .flatten()
        .map(|t| Time(t.round(k8s_openapi::jiff::Unit::Second).unwrap_or(t)))
}

/// The runtime containers named `name`, newest first.
pub fn history<'a>(all: &'a [CtrObs], name: &str) -> Vec<&'a CtrObs> {
    let mut v: Vec<&CtrObs> = all.iter().filter(|c| c.name == name).collect();
    v.sort_by(|a, b| {
        b.attempt
            .cmp(&a.attempt)
            .then(b.created_at.cmp(&a.created_at))
    });
    v
}

/// What the status is built from.
pub struct Inputs<'a> {
    pub pod: &'a Pod,
    pub containers: &'a [CtrObs],
    /// A ready sandbox with its network set up.
    pub sandbox_ready: bool,
    pub pod_ip: Option<String>,
    pub host_ip: String,
    /// Why a container is waiting (ErrImagePull, CrashLoopBackOff, ...), by name.
    pub waiting: &'a HashMap<String, (String, String)>,
    /// Whether a running container is ready (its readiness probe passed, or it has none).
    pub ready: &'a dyn Fn(&Container, &CtrObs) -> bool,
    /// Whether a running container has started (its startup probe passed, or none).
    pub started: &'a dyn Fn(&Container, &CtrObs) -> bool,
    pub start_time: Timestamp,
    pub now: Timestamp,
}

fn container_status(c: &Container, inputs: &Inputs<'_>, default_waiting: &str) -> ContainerStatus {
    let hist = history(inputs.containers, &c.name);
    let latest = hist.first().copied();
    let previous = hist.get(1).copied();
    let waiting = inputs.waiting.get(&c.name);
    let mut last_state = previous
        .filter(|p| p.state == CtrState::Exited)
        .map(|p| ContainerState {
            terminated: Some(p.terminated()),
            ..Default::default()
        });
    let state = match (latest, waiting) {
        (Some(l), _) if l.state == CtrState::Running => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: time(l.started_at),
            }),
            ..Default::default()
        },
        (latest, Some((reason, message))) => {
            if let Some(l) = latest.filter(|l| l.state == CtrState::Exited) {
                last_state = Some(ContainerState {
                    terminated: Some(l.terminated()),
                    ..Default::default()
                });
            }
            ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.clone()),
                    message: Some(message.clone()).filter(|m| !m.is_empty()),
                }),
                ..Default::default()
            }
        }
        (Some(l), None) if l.state == CtrState::Exited => ContainerState {
            terminated: Some(l.terminated()),
            ..Default::default()
        },
        _ => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(default_waiting.into()),
                message: None,
            }),
            ..Default::default()
        },
    };
    let running = state.running.is_some();
    let l = latest.filter(|_| running);
    ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone().unwrap_or_default(),
        image_id: latest.map(|l| l.image_ref.clone()).unwrap_or_default(),
        container_id: latest.map(|l| format!("{RUNTIME_PREFIX}{}", l.id)),
        restart_count: latest.map(|l| l.attempt as i32).unwrap_or(0),
        ready: l.is_some_and(|l| (inputs.ready)(c, l)),
        started: Some(l.is_some_and(|l| (inputs.started)(c, l))),
        state: Some(state),
        last_state: Some(last_state.unwrap_or_default()),
        ..Default::default()
    }
}

fn terminated_code(s: &ContainerStatus) -> Option<i32> {
    s.state.as_ref()?.terminated.as_ref().map(|t| t.exit_code)
}

fn last_code(s: &ContainerStatus) -> Option<i32> {
    s.last_state
        .as_ref()?
        .terminated
        .as_ref()
        .map(|t| t.exit_code)
}

fn is_waiting(s: &ContainerStatus) -> bool {
    s.state.as_ref().is_some_and(|st| st.waiting.is_some())
}

/// Whether every init container (sidecars: started) is done, and which are not.
pub fn init_progress(pod: &Pod, statuses: &[ContainerStatus]) -> (Vec<String>, bool) {
    let spec = pod.spec.clone().unwrap_or_default();
    let mut incomplete = Vec::new();
    let mut failed = false;
    for c in spec.init_containers.iter().flatten() {
        let s = statuses.iter().find(|s| s.name == c.name);
        let sidecar = c.restart_policy.as_deref() == Some("Always");
        let done = match s {
            Some(s) if sidecar => s.started == Some(true),
            Some(s) => terminated_code(s) == Some(0),
            None => false,
        };
        if !done {
            incomplete.push(c.name.clone());
            if let Some(s) = s {
                if terminated_code(s).is_some_and(|c| c != 0)
                    || (is_waiting(s) && last_code(s).is_some_and(|c| c != 0))
                {
                    failed = true;
                }
            }
        }
    }
    (incomplete, failed)
}

/// Upstream's getPhase.
pub fn phase(pod: &Pod, init: &[ContainerStatus], containers: &[ContainerStatus]) -> &'static str {
    let policy = pod
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always");
    let (incomplete, failed_init) = init_progress(pod, init);
    if !incomplete.is_empty() {
        return if failed_init && policy == "Never" {
            "Failed"
        } else {
            "Pending"
        };
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for s in containers {
        let st = s.state.clone().unwrap_or_default();
        if st.running.is_some() {
            running += 1;
        } else if let Some(t) = st.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if let Some(code) = last_code(s) {
            stopped += 1;
            if code == 0 {
                succeeded += 1;
            }
        } else {
            waiting += 1;
        }
    }
    if waiting > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if stopped > 0 {
        match policy {
            "Always" => "Running",
            _ if stopped == succeeded => "Succeeded",
            "Never" => "Failed",
            _ => "Running",
        }
    } else {
        "Pending"
    }
}

fn condition(
    pod: &Pod,
    now: Timestamp,
    type_: &str,
    ok: bool,
    reason: Option<String>,
    message: Option<String>,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    // Keep the transition time while the status stays the same.
    let since = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_ && c.status == status))
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    PodCondition {
        type_: type_.into(),
        status: status.into(),
        reason: if ok { None } else { reason },
        message: if ok { None } else { message },
        last_transition_time: Some(since),
        last_probe_time: None,
        observed_generation: None,
    }
}

/// The pod's status from `inputs`.
pub fn pod_status(inputs: &Inputs<'_>) -> PodStatus {
    let pod = inputs.pod;
    let spec = pod.spec.clone().unwrap_or_default();
    let init: Vec<ContainerStatus> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| container_status(c, inputs, "PodInitializing"))
        .collect();
    let (incomplete, _) = init_progress(pod, &init);
    let regular_waiting = if incomplete.is_empty() {
        "ContainerCreating"
    } else {
        "PodInitializing"
    };
    let containers: Vec<ContainerStatus> = spec
        .containers
        .iter()
        .map(|c| container_status(c, inputs, regular_waiting))
        .collect();
    let phase = phase(pod, &init, &containers);
    let terminal = phase == "Succeeded" || phase == "Failed";
    let unready: Vec<String> = containers
        .iter()
        .chain(init.iter().filter(|s| {
            spec.init_containers
                .iter()
                .flatten()
                .any(|c| c.name == s.name && c.restart_policy.as_deref() == Some("Always"))
        }))
        .filter(|s| !s.ready)
        .map(|s| s.name.clone())
        .collect();
    let (ready_reason, ready_message) = if terminal {
        (Some("PodCompleted".to_string()), None)
    } else {
        (
            Some("ContainersNotReady".to_string()),
            Some(format!(
                "containers with unready status: [{}]",
                unready.join(" ")
            )),
        )
    };
    let all_ready = unready.is_empty() && !terminal;
    let initialized = incomplete.is_empty();
    let now = inputs.now;
    let conditions = vec![
        condition(
            pod,
            now,
            "PodReadyToStartContainers",
            inputs.sandbox_ready,
            None,
            None,
        ),
        condition(
            pod,
            now,
            "Initialized",
            initialized || (terminal && spec.init_containers.is_none()),
            Some(
                if terminal {
                    "PodCompleted"
                } else {
                    "ContainersNotInitialized"
                }
                .into(),
            ),
            Some(format!(
                "containers with incomplete status: [{}]",
                incomplete.join(" ")
            )),
        ),
        condition(
            pod,
            now,
            "Ready",
            all_ready,
            ready_reason.clone(),
            ready_message.clone(),
        ),
        condition(
            pod,
            now,
            "ContainersReady",
            all_ready,
            ready_reason,
            ready_message,
        ),
    ];
    let host_network = spec.host_network.unwrap_or(false);
    let pod_ip = if host_network {
        Some(inputs.host_ip.clone())
    } else {
        inputs.pod_ip.clone().filter(|ip| !ip.is_empty())
    };
    let start = pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.clone())
        .unwrap_or(Time(inputs.start_time));
    PodStatus {
        phase: Some(phase.into()),
        conditions: Some(conditions),
        host_ip: Some(inputs.host_ip.clone()),
        host_ips: Some(vec![HostIP {
            ip: inputs.host_ip.clone(),
        }]),
        pod_ip: pod_ip.clone(),
        pod_ips: pod_ip.map(|ip| vec![PodIP { ip }]),
        start_time: Some(start),
        init_container_statuses: (!init.is_empty()).then_some(init),
        container_statuses: Some(containers),
        qos_class: Some(qos::class(&spec).as_str().into()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": "d", "uid": "u"}, "spec": spec}),
        )
        .unwrap()
    }

    fn obs(name: &str, attempt: u32, state: CtrState, code: i32) -> CtrObs {
        CtrObs {
            id: format!("{name}{attempt}"),
            name: name.into(),
            attempt,
            sandbox_id: "s".into(),
            state,
            created_at: 1_700_000_000_000_000_000 + i64::from(attempt),
            started_at: 1_700_000_001_000_000_000,
            finished_at: if state == CtrState::Exited {
                1_700_000_002_000_000_000
            } else {
                0
            },
            exit_code: code,
            reason: String::new(),
            message: String::new(),
            image_ref: "sha256:img".into(),
        }
    }

    fn status(p: &Pod, ctrs: &[CtrObs], waiting: &[(&str, &str)]) -> PodStatus {
        let waiting: HashMap<String, (String, String)> = waiting
            .iter()
            .map(|(n, r)| (n.to_string(), (r.to_string(), format!("{r} msg"))))
            .collect();
        let t: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        pod_status(&Inputs {
            pod: p,
            containers: ctrs,
            sandbox_ready: true,
            pod_ip: Some("10.42.0.9".into()),
            host_ip: "127.0.0.1".into(),
            waiting: &waiting,
            ready: &|_, _| true,
            started: &|_, _| true,
            start_time: t,
            now: t,
        })
    }

    fn cond<'a>(s: &'a PodStatus, t: &str) -> &'a PodCondition {
        s.conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == t)
            .unwrap()
    }

    #[test]
    fn phases_by_restart_policy_and_container_states() {
        use CtrState::*;
        // (case, restart policy, runtime containers, waiting reasons, phase)
        type Case = (
            &'static str,
            &'static str,
            Vec<CtrObs>,
            Vec<(&'static str, &'static str)>,
            &'static str,
        );
        let cases: Vec<Case> = vec![
            ("nothing started yet", "Always", vec![], vec![], "Pending"),
            (
                "running",
                "Always",
                vec![obs("a", 0, Running, 0)],
                vec![],
                "Running",
            ),
            (
                "exited under Always restarts",
                "Always",
                vec![obs("a", 0, Exited, 1)],
                vec![],
                "Running",
            ),
            (
                "crash loop is Running",
                "Always",
                vec![obs("a", 2, Exited, 1)],
                vec![("a", "CrashLoopBackOff")],
                "Running",
            ),
            (
                "Never and exit 0",
                "Never",
                vec![obs("a", 0, Exited, 0)],
                vec![],
                "Succeeded",
            ),
            (
                "Never and exit 1",
                "Never",
                vec![obs("a", 0, Exited, 1)],
                vec![],
                "Failed",
            ),
            (
                "OnFailure and exit 0",
                "OnFailure",
                vec![obs("a", 0, Exited, 0)],
                vec![],
                "Succeeded",
            ),
            (
                "OnFailure and exit 1",
                "OnFailure",
                vec![obs("a", 0, Exited, 1)],
                vec![],
                "Running",
            ),
            (
                "image pull error",
                "Always",
                vec![],
                vec![("a", "ErrImagePull")],
                "Pending",
            ),
        ];
        for (name, policy, ctrs, waiting, want) in cases {
            let p =
                pod(json!({"restartPolicy": policy, "containers": [{"name": "a", "image": "i"}]}));
            assert_eq!(
                status(&p, &ctrs, &waiting).phase.as_deref(),
                Some(want),
                "{name}"
            );
        }
    }

    #[test]
    fn container_status_shows_state_last_state_and_restarts() {
        use CtrState::*;
        let p = pod(json!({"containers": [{"name": "a", "image": "busybox:1"}]}));
        let s = status(
            &p,
            &[obs("a", 0, Exited, 137), obs("a", 1, Running, 0)],
            &[],
        );
        let cs = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(cs.restart_count, 1);
        assert!(cs.ready);
        assert_eq!(cs.started, Some(true));
        assert_eq!(cs.image, "busybox:1");
        assert_eq!(cs.image_id, "sha256:img");
        assert_eq!(cs.container_id.as_deref(), Some("containerd://a1"));
        assert!(cs.state.as_ref().unwrap().running.is_some());
        let last = cs.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!(
            (last.exit_code, last.reason.as_deref()),
            (137, Some("Error"))
        );
        assert_eq!(s.pod_ip.as_deref(), Some("10.42.0.9"));
        assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
        assert_eq!(cond(&s, "Ready").status, "True");

        let s = status(&p, &[obs("a", 3, Exited, 1)], &[("a", "CrashLoopBackOff")]);
        let cs = &s.container_statuses.as_ref().unwrap()[0];
        let w = cs.state.as_ref().unwrap().waiting.as_ref().unwrap();
        assert_eq!(w.reason.as_deref(), Some("CrashLoopBackOff"));
        assert_eq!(
            cs.last_state
                .as_ref()
                .unwrap()
                .terminated
                .as_ref()
                .unwrap()
                .exit_code,
            1
        );
        assert_eq!(cs.restart_count, 3);
        assert!(!cs.ready);
        let ready = cond(&s, "Ready");
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason.as_deref(), Some("ContainersNotReady"));
        assert_eq!(
            ready.message.as_deref(),
            Some("containers with unready status: [a]")
        );

        let mut oom = obs("a", 0, Exited, 137);
        oom.reason = "OOMKilled".into();
        let p = pod(json!({"restartPolicy": "Never", "containers": [{"name": "a"}]}));
        let s = status(&p, &[oom], &[]);
        let t = s.container_statuses.as_ref().unwrap()[0]
            .state
            .as_ref()
            .unwrap()
            .terminated
            .clone()
            .unwrap();
        assert_eq!(t.reason.as_deref(), Some("OOMKilled"));
        assert_eq!(s.phase.as_deref(), Some("Failed"));
        assert_eq!(cond(&s, "Ready").reason.as_deref(), Some("PodCompleted"));
    }

    #[test]
    fn a_fresh_sigkill_exit_waits_for_the_oom_verdict() {
        let finished = Timestamp::from_nanosecond(1_700_000_002_000_000_000).unwrap();
        let soon = finished + std::time::Duration::from_millis(500);
        let later = finished + std::time::Duration::from_secs(3);
        let mut killed = obs("a", 0, CtrState::Exited, 137);
        assert!(maybe_unlabelled_oom(&killed, soon));
        killed.reason = "Error".into();
        assert!(maybe_unlabelled_oom(&killed, soon));
        assert!(!maybe_unlabelled_oom(&killed, later));
        killed.reason = "OOMKilled".into();
        assert!(!maybe_unlabelled_oom(&killed, soon));
        assert!(!maybe_unlabelled_oom(
            &obs("a", 0, CtrState::Exited, 1),
            soon
        ));
        assert!(!maybe_unlabelled_oom(
            &obs("a", 0, CtrState::Running, 0),
            soon
        ));
    }

    #[test]
    fn init_containers_gate_the_pod() {
        use CtrState::*;
        let p = pod(
            json!({"restartPolicy": "Never", "initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "a"}]}),
        );
        let s = status(
            &p,
            &[obs("i1", 0, Exited, 0), obs("i2", 0, Running, 0)],
            &[],
        );
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        let init = cond(&s, "Initialized");
        assert_eq!(init.status, "False");
        assert_eq!(
            init.message.as_deref(),
            Some("containers with incomplete status: [i2]")
        );
        let a = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(
            a.state
                .as_ref()
                .unwrap()
                .waiting
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("PodInitializing")
        );
        let s = status(&p, &[obs("i1", 0, Exited, 1)], &[]);
        assert_eq!(s.phase.as_deref(), Some("Failed"));
        let s = status(
            &p,
            &[
                obs("i1", 0, Exited, 0),
                obs("i2", 0, Exited, 0),
                obs("a", 0, Running, 0),
            ],
            &[],
        );
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(cond(&s, "Initialized").status, "True");
    }

    #[test]
    fn transition_times_are_kept_while_a_condition_holds() {
        let mut p = pod(json!({"containers": [{"name": "a"}]}));
        p.status = Some(PodStatus {
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                last_transition_time: Some(Time("2025-01-01T00:00:00Z".parse().unwrap())),
                ..Default::default()
            }]),
            ..Default::default()
        });
        let s = status(&p, &[obs("a", 0, CtrState::Running, 0)], &[]);
        assert_eq!(
            cond(&s, "Ready")
                .last_transition_time
                .as_ref()
                .unwrap()
                .0
                .to_string(),
            "2025-01-01T00:00:00Z"
        );
        assert_eq!(
            cond(&s, "ContainersReady")
                .last_transition_time
                .as_ref()
                .unwrap()
                .0
                .to_string(),
            "2026-01-01T00:00:00Z"
        );
    }
}
