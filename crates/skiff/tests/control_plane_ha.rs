//! Two `skiff server` processes on one etcd: one scheduler and one controller manager
//! act at a time, and the standby takes over when the leader dies.

mod support;

use std::time::{Duration, Instant};

use skiff_testkit::EtcdCluster;
use support::{eventually, HollowNodes, Server};

const LOOPS: [&str; 2] = ["kube-scheduler", "kube-controller-manager"];

/// The identity a server logged on becoming leader of `lease`, if it did.
fn led(server: &Server, lease: &str) -> Option<String> {
    server.log().lines().rev().find_map(|l| {
        let plain = strip_ansi(l);
        (plain.contains("became leader") && plain.contains(&format!("lease={lease} ")))
            .then(|| {
                plain
                    .split("identity=")
                    .nth(1)
                    .map(|s| s.split_whitespace().next().unwrap_or("").to_string())
            })
            .flatten()
    })
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn holder(server: &Server, lease: &str) -> String {
    server.ok(&[
        "get",
        "lease",
        lease,
        "-n",
        "kube-system",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ])
}

#[test]
fn one_leader_per_loop_and_the_standby_takes_over_within_15_seconds() {
    let etcd = EtcdCluster::start();
    let endpoints = etcd.endpoints().join(",");
    let args = ["--datastore-endpoint", endpoints.as_str()];
    let mut a = Server::start_with(&args);
    let mut b = Server::start_with(&args);
    for lease in LOOPS {
        eventually(
            Duration::from_secs(30),
            &format!("a holder of {lease}"),
            || !holder(&a, lease).is_empty(),
        );
    }
    // Both servers see the same Lease, and exactly one of them leads each loop.
    for lease in LOOPS {
        let holder_a = holder(&a, lease);
        assert_eq!(holder_a, holder(&b, lease));
        let leaders = [led(&a, lease), led(&b, lease)];
        assert_eq!(
            leaders.iter().filter(|l| l.is_some()).count(),
            1,
            "exactly one server leads {lease}: {leaders:?}"
        );
        assert!(leaders.contains(&Some(holder_a.clone())));
    }
    // Kill whichever server leads the controller manager; the other must take over.
    let a_leads = led(&a, "kube-controller-manager").is_some();
    let (dead, alive) = if a_leads {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    let old = holder(alive, "kube-controller-manager");
    dead.kill();
    let killed = Instant::now();
    eventually(
        Duration::from_secs(15),
        "the standby leading both loops",
        || {
            LOOPS.iter().all(|lease| led(alive, lease).is_some())
                && holder(alive, "kube-controller-manager") != old
        },
    );
    eprintln!("took over in {:?}", killed.elapsed());
    // The new leaders act: a Deployment gets its pods scheduled onto a node.
    let _nodes = HollowNodes::start(alive, 1, "ha-", 0, &[]);
    alive.wait_nodes_ready(1, Duration::from_secs(60));
    alive.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx",
        "--replicas=2",
    ]);
    eventually(Duration::from_secs(60), "2 Running pods", || {
        alive.running_pods("default", "app=web").len() == 2
    });
}
