use super::*;
use k8s_openapi::api::core::v1::{PodSpec, Probe, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

fn t(s: u64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + s as i64).unwrap()
}

fn container(name: &str, delay: Option<i32>) -> Container {
    Container {
        name: name.into(),
        image: Some(format!("img-{name}")),
        readiness_probe: delay.map(|d| Probe {
            initial_delay_seconds: Some(d),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn pod_with(restart: &str, annotations: &[(&str, &str)], containers: Vec<Container>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("p".into()),
            namespace: Some("ns".into()),
            uid: Some("u1".into()),
            annotations: Some(
                annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some(restart.into()),
            containers,
            node_name: Some("hollow-node-0".into()),
            ..Default::default()
        }),
        status: None,
    }
}

fn rec(restart: &str, annotations: &[(&str, &str)]) -> PodRec {
    record(
        &pod_with(restart, annotations, vec![container("app", None)]),
        0,
    )
}

fn addrs() -> Addresses {
    Addresses {
        host_ip: "198.18.0.1".into(),
        pod_ip: "100.64.0.2".into(),
    }
}

/// Applies `advance` at `now` as the shell would after a successful write.
fn step(r: &mut PodRec, now: Timestamp) -> Action {
    let a = advance(r, now);
    match &a {
        Action::Write { life, .. } => r.life = *life,
        Action::Delete { .. } => {
            r.life = Life {
                state: State::Gone,
                ..Life::NEW
            }
        }
        _ => {}
    }
    a
}

fn cond<'a>(s: &'a PodStatus, type_: &str) -> &'a PodCondition {
    s.conditions
        .as_ref()
        .and_then(|c| c.iter().find(|c| c.type_ == type_))
        .unwrap_or_else(|| panic!("no {type_} condition"))
}

#[test]
fn a_new_pod_starts_running_and_ready_with_kubelet_shaped_status() {
    let mut r = rec("Always", &[]);
    let a = step(&mut r, t(0));
    assert!(matches!(a, Action::Write { wake: None, .. }), "{a:?}");
    let s = status(&r, &r.life, &addrs(), t(0));
    assert_eq!(s.phase.as_deref(), Some("Running"));
    for c in [
        "PodReadyToStartContainers",
        "Initialized",
        "ContainersReady",
        "Ready",
        "PodScheduled",
    ] {
        assert_eq!(cond(&s, c).status, "True", "{c}");
    }
    let cs = &s.container_statuses.as_ref().unwrap()[0];
    assert_eq!(cs.name, "app");
    assert_eq!(cs.image, "img-app");
    assert_eq!(cs.container_id.as_deref(), Some("hollow://u1-app"));
    assert!(cs.ready);
    assert_eq!(cs.started, Some(true));
    assert_eq!(cs.restart_count, 0);
    let running = cs.state.as_ref().unwrap().running.as_ref().unwrap();
    assert_eq!(running.started_at.as_ref().unwrap().0, t(0));
    assert_eq!(s.pod_ip.as_deref(), Some("100.64.0.2"));
    assert_eq!(s.pod_ips.as_ref().unwrap()[0].ip, "100.64.0.2");
    assert_eq!(s.host_ip.as_deref(), Some("198.18.0.1"));
    assert_eq!(s.start_time.as_ref().unwrap().0, t(0));
    assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
    assert!(s.init_container_statuses.is_none());
    // Nothing more to do for a long-running pod.
    assert_eq!(step(&mut r, t(100)), Action::Nothing);
}

#[test]
fn readiness_waits_for_each_probes_initial_delay() {
    let p = pod_with(
        "Always",
        &[],
        vec![
            container("a", Some(5)),
            container("b", Some(10)),
            container("c", None),
        ],
    );
    let mut r = record(&p, 0);
    let a = step(&mut r, t(0));
    assert!(
        matches!(a, Action::Write { wake: Some(d), .. } if d == Duration::from_secs(5)),
        "{a:?}"
    );
    let s = status(&r, &r.life, &addrs(), t(0));
    let ready = cond(&s, "Ready");
    assert_eq!(ready.status, "False");
    assert_eq!(ready.reason.as_deref(), Some("ContainersNotReady"));
    assert_eq!(
        ready.message.as_deref(),
        Some("containers with unready status: [a b]")
    );
    assert_eq!(cond(&s, "ContainersReady").status, "False");

    assert_eq!(step(&mut r, t(3)), Action::Wait(Duration::from_secs(2)));
    let a = step(&mut r, t(5));
    assert!(
        matches!(a, Action::Write { wake: Some(d), .. } if d == Duration::from_secs(5)),
        "{a:?}"
    );
    let s = status(&r, &r.life, &addrs(), t(5));
    assert_eq!(
        cond(&s, "Ready").message.as_deref(),
        Some("containers with unready status: [b]")
    );
    assert!(matches!(
        step(&mut r, t(10)),
        Action::Write { wake: None, .. }
    ));
    let s = status(&r, &r.life, &addrs(), t(10));
    let ready = cond(&s, "Ready");
    assert_eq!(ready.status, "True");
    assert_eq!(ready.last_transition_time.as_ref().unwrap().0, t(10));
    assert_eq!(step(&mut r, t(11)), Action::Nothing);
}

#[test]
fn job_pods_finish_after_run_seconds_per_exit_code_and_restart_policy() {
    struct Case {
        name: &'static str,
        restart: &'static str,
        exit: &'static str,
        phase: &'static str,
        reason: &'static str,
        ready_reason: &'static str,
    }
    let cases = [
        Case {
            name: "never, exit 0",
            restart: "Never",
            exit: "0",
            phase: "Succeeded",
            reason: "Completed",
            ready_reason: "PodCompleted",
        },
        Case {
            name: "never, exit 1",
            restart: "Never",
            exit: "1",
            phase: "Failed",
            reason: "Error",
            ready_reason: "PodFailed",
        },
        Case {
            name: "on failure, exit 0",
            restart: "OnFailure",
            exit: "0",
            phase: "Succeeded",
            reason: "Completed",
            ready_reason: "PodCompleted",
        },
    ];
    for c in cases {
        let mut r = rec(c.restart, &[(RUN_SECONDS, "2"), (EXIT_CODE, c.exit)]);
        let a = step(&mut r, t(0));
        assert!(
            matches!(a, Action::Write { wake: Some(d), .. } if d == Duration::from_secs(2)),
            "{}: {a:?}",
            c.name
        );
        assert_eq!(
            step(&mut r, t(1)),
            Action::Wait(Duration::from_secs(1)),
            "{}",
            c.name
        );
        assert!(
            matches!(step(&mut r, t(2)), Action::Write { wake: None, .. }),
            "{}",
            c.name
        );
        let s = status(&r, &r.life, &addrs(), t(2));
        assert_eq!(s.phase.as_deref(), Some(c.phase), "{}", c.name);
        let term = s.container_statuses.as_ref().unwrap()[0]
            .state
            .as_ref()
            .unwrap()
            .terminated
            .clone()
            .unwrap();
        assert_eq!(term.exit_code, c.exit.parse::<i32>().unwrap(), "{}", c.name);
        assert_eq!(term.reason.as_deref(), Some(c.reason), "{}", c.name);
        assert_eq!(term.started_at.unwrap().0, t(0), "{}", c.name);
        assert_eq!(term.finished_at.unwrap().0, t(2), "{}", c.name);
        assert_eq!(
            cond(&s, "Ready").reason.as_deref(),
            Some(c.ready_reason),
            "{}",
            c.name
        );
        assert_eq!(cond(&s, "Ready").status, "False", "{}", c.name);
        assert_eq!(
            cond(&s, "PodReadyToStartContainers").status,
            "False",
            "{}",
            c.name
        );
        assert_eq!(
            step(&mut r, t(10)),
            Action::Nothing,
            "{}: terminal stays",
            c.name
        );
    }
}

#[test]
fn on_failure_pods_with_a_failing_exit_code_restart_and_exit_again() {
    let mut r = rec("OnFailure", &[(EXIT_CODE, "3")]);
    step(&mut r, t(0));
    assert!(matches!(
        step(&mut r, t(1)),
        Action::Write { wake: Some(_), .. }
    ));
    let s = status(&r, &r.life, &addrs(), t(1));
    assert_eq!(s.phase.as_deref(), Some("Running"));
    let cs = &s.container_statuses.as_ref().unwrap()[0];
    assert_eq!(cs.restart_count, 1);
    assert!(cs.state.as_ref().unwrap().running.is_some());
    let last = cs.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!(last.exit_code, 3);
    assert_eq!(last.reason.as_deref(), Some("Error"));
    assert!(matches!(step(&mut r, t(2)), Action::Write { .. }));
    assert_eq!(r.life.restarts, 2);
    assert_eq!(s.start_time.as_ref().unwrap().0, t(0));
}

#[test]
fn default_run_time_is_one_second_and_bad_annotations_fall_back_to_defaults() {
    let r = rec("Never", &[(RUN_SECONDS, "soon"), (EXIT_CODE, "x")]);
    assert_eq!(r.run_for, Duration::from_secs(1));
    assert_eq!(r.exit_code, 0);
    let r = rec("Never", &[(RUN_SECONDS, "0.5")]);
    assert_eq!(r.run_for, Duration::from_millis(500));
    let r = rec("Never", &[(RUN_SECONDS, "-1")]);
    assert_eq!(r.run_for, Duration::from_secs(1));
}

#[test]
fn deletion_deletes_at_once_posting_a_final_status_only_when_finalizers_wait_for_it() {
    let mut r = rec("Always", &[]);
    r.deleting = true;
    assert_eq!(
        advance(&r, t(0)),
        Action::Delete { stopped: None },
        "never started"
    );

    step(&mut { r.clone() }, t(0));
    let mut running = rec("Always", &[]);
    step(&mut running, t(0));
    running.deleting = true;
    assert_eq!(advance(&running, t(5)), Action::Delete { stopped: None });
    running.has_finalizers = true;
    let Action::Delete {
        stopped: Some(life),
    } = advance(&running, t(5))
    else {
        panic!("expected a final status first");
    };
    let s = status(&running, &life, &addrs(), t(5));
    assert_eq!(s.phase.as_deref(), Some("Failed"));
    let term = s.container_statuses.as_ref().unwrap()[0]
        .state
        .as_ref()
        .unwrap()
        .terminated
        .clone()
        .unwrap();
    assert_eq!(term.exit_code, STOP_EXIT_CODE);

    step(&mut running, t(5));
    assert_eq!(running.life.state, State::Gone);
    assert_eq!(advance(&running, t(6)), Action::Nothing, "deleted once");
}

#[test]
fn init_containers_completed_and_sidecars_running() {
    let mut p = pod_with("Always", &[], vec![container("app", None)]);
    let mut sidecar = container("proxy", None);
    sidecar.restart_policy = Some("Always".into());
    p.spec.as_mut().unwrap().init_containers = Some(vec![container("setup", None), sidecar]);
    let mut r = record(&p, 0);
    step(&mut r, t(0));
    let s = status(&r, &r.life, &addrs(), t(0));
    let inits = s.init_container_statuses.unwrap();
    assert_eq!(inits.len(), 2);
    let setup = &inits[0];
    assert_eq!(setup.name, "setup");
    let term = setup.state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!(
        (term.exit_code, term.reason.as_deref()),
        (0, Some("Completed"))
    );
    assert!(setup.ready);
    assert_eq!(inits[1].name, "proxy");
    assert!(inits[1].state.as_ref().unwrap().running.is_some());
    assert_eq!(s.container_statuses.unwrap().len(), 1);
}

#[test]
fn a_restarted_process_takes_over_running_and_finished_pods_as_they_are() {
    let mut r = rec("Always", &[]);
    step(&mut r, t(0));
    let mut p = pod_with("Always", &[], vec![container("app", None)]);
    p.status = Some(status(&r, &r.life, &addrs(), t(0)));
    let life = observed_life(&p);
    assert_eq!(life.state, State::Running);
    assert_eq!(life.run_started, Some(t(0)));
    assert_eq!(life.ready_written, 1);
    assert_eq!(advance(&record(&p, 0), t(50)), Action::Nothing);

    p.status.as_mut().unwrap().phase = Some("Succeeded".into());
    assert_eq!(observed_life(&p).state, State::Succeeded);
    p.status = Some(PodStatus {
        phase: Some("Pending".into()),
        ..Default::default()
    });
    assert_eq!(observed_life(&p), Life::NEW);
}

#[test]
fn pod_scheduled_keeps_the_schedulers_transition_time() {
    let mut p = pod_with("Always", &[], vec![container("app", None)]);
    p.status = Some(PodStatus {
        phase: Some("Pending".into()),
        conditions: Some(vec![PodCondition {
            type_: "PodScheduled".into(),
            status: "True".into(),
            last_transition_time: Some(Time(t(0))),
            ..Default::default()
        }]),
        ..Default::default()
    });
    let mut r = record(&p, 0);
    step(&mut r, t(7));
    let s = status(&r, &r.life, &addrs(), t(7));
    assert_eq!(
        cond(&s, "PodScheduled")
            .last_transition_time
            .as_ref()
            .unwrap()
            .0,
        t(0)
    );
    assert_eq!(
        cond(&s, "Initialized")
            .last_transition_time
            .as_ref()
            .unwrap()
            .0,
        t(7)
    );
}

fn resources(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Option<ResourceRequirements> {
    let m = |v: &[(&str, &str)]| {
        (!v.is_empty()).then(|| {
            v.iter()
                .map(|(k, q)| (k.to_string(), Quantity(q.to_string())))
                .collect()
        })
    };
    Some(ResourceRequirements {
        requests: m(requests),
        limits: m(limits),
        ..Default::default()
    })
}

#[test]
fn qos_class_follows_upstreams_rules() {
    type R<'a> = &'a [(&'a str, &'a str)];
    type Case<'a> = (&'a str, Vec<(R<'a>, R<'a>)>, &'a str);
    let cases: [Case; 7] = [
        ("nothing set", vec![(&[], &[])], "BestEffort"),
        (
            "limits only, both",
            vec![(&[], &[("cpu", "1"), ("memory", "1Gi")])],
            "Guaranteed",
        ),
        (
            "equal requests and limits",
            vec![(
                &[("cpu", "1000m"), ("memory", "1Gi")],
                &[("cpu", "1"), ("memory", "1024Mi")],
            )],
            "Guaranteed",
        ),
        (
            "request below limit",
            vec![(&[("cpu", "500m")], &[("cpu", "1"), ("memory", "1Gi")])],
            "Burstable",
        ),
        ("cpu limit only", vec![(&[], &[("cpu", "1")])], "Burstable"),
        (
            "requests only",
            vec![(&[("memory", "1Gi")], &[])],
            "Burstable",
        ),
        (
            "one container guaranteed, one best effort",
            vec![(&[], &[("cpu", "1"), ("memory", "1Gi")]), (&[], &[])],
            "Burstable",
        ),
    ];
    for (name, containers, want) in cases {
        let spec = PodSpec {
            containers: containers
                .into_iter()
                .enumerate()
                .map(|(i, (req, lim))| Container {
                    name: format!("c{i}"),
                    resources: resources(req, lim),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        assert_eq!(qos_class(&spec), want, "{name}");
    }
}
