//! Hollow nodes against a real API server: registration, heartbeats, pod lifecycles,
//! restarts and a 200-node scale check.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Api;
use skiff_hollow::Config;
use support::{eventually, Server};

const WAIT: Duration = Duration::from_secs(60);

fn config(count: u32) -> Config {
    Config {
        count,
        heartbeat_interval: Duration::from_millis(500),
        status_update_interval: Duration::from_secs(2),
        labels: [("zone".to_string(), "z1".to_string())].into(),
        taints: skiff_hollow::parse_taints("hollow=yes:NoSchedule").unwrap(),
        ..Config::default()
    }
}

fn condition(node: &Node, type_: &str) -> Option<String> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
}

fn renew_time(lease: &Lease) -> Option<Timestamp> {
    lease.spec.as_ref()?.renew_time.as_ref().map(|t| t.0)
}

async fn ready_node(nodes: &Api<Node>, name: &str) -> Node {
    eventually(&format!("{name} Ready"), WAIT, || async {
        let n = nodes.get_opt(name).await.ok().flatten()?;
        (condition(&n, "Ready").as_deref() == Some("True")).then_some(n)
    })
    .await
}

async fn lease_renewed_after(leases: &Api<Lease>, name: &str, after: Timestamp) -> Timestamp {
    eventually(&format!("lease {name} renewed"), WAIT, || async {
        let l = leases.get_opt(name).await.ok().flatten()?;
        renew_time(&l).filter(|t| *t > after)
    })
    .await
}

/// A pod with one container, bound to `node` through the binding subresource (what
/// the scheduler does).
async fn bound_pod(
    pods: &Api<Pod>,
    name: &str,
    node: &str,
    restart: &str,
    annotations: &[(&str, &str)],
) -> Pod {
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name,
            "annotations": annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
        },
        "spec": {
            "restartPolicy": restart,
            "tolerations": [{"key": "hollow", "operator": "Exists"}],
            "containers": [{"name": "app", "image": "registry.local/app:1",
                "resources": {"limits": {"cpu": "100m", "memory": "64Mi"}}}],
        },
    }))
    .unwrap();
    let created = pods
        .create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
    let binding = serde_json::json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": name},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    pods.create_subresource::<_, serde_json::Value>(
        "binding",
        name,
        &PostParams::default(),
        &binding,
    )
    .await
    .expect("bind pod");
    created
}

async fn phase_of(pods: &Api<Pod>, name: &str, phase: &str) -> Pod {
    eventually(&format!("pod {name} {phase}"), WAIT, || async {
        let p = pods.get_opt(name).await.ok().flatten()?;
        (p.status.as_ref()?.phase.as_deref() == Some(phase)).then_some(p)
    })
    .await
}

fn pod_condition(p: &Pod, type_: &str) -> Option<String> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_register_with_capacity_and_ready_and_their_leases_renew() {
    let server = Server::start().await;
    let _hollow = server.hollow(config(3));
    let nodes: Api<Node> = Api::all(server.client.clone());
    let leases: Api<Lease> = Api::namespaced(server.client.clone(), "kube-node-lease");
    for i in 0..3 {
        let name = format!("hollow-node-{i}");
        let n = ready_node(&nodes, &name).await;
        let labels = n.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get("kubernetes.io/hostname"), Some(&name));
        assert_eq!(
            labels.get("kubernetes.io/os").map(String::as_str),
            Some("linux")
        );
        assert_eq!(labels.get("type").map(String::as_str), Some("hollow"));
        assert_eq!(labels.get("zone").map(String::as_str), Some("z1"));
        let taints = n
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        assert_eq!(taints.len(), 1);
        assert_eq!(taints[0].key, "hollow");
        let status = n.status.as_ref().unwrap();
        let cap = status.capacity.as_ref().unwrap();
        assert_eq!(cap["cpu"].0, "4");
        assert_eq!(cap["memory"].0, "16Gi");
        assert_eq!(cap["pods"].0, "110");
        assert_eq!(status.allocatable.as_ref().unwrap()["pods"].0, "110");
        assert_eq!(condition(&n, "MemoryPressure").as_deref(), Some("False"));
        let addrs = status.addresses.as_ref().unwrap();
        assert_eq!(addrs[0].address, format!("198.18.0.{}", i + 1));
        let info = status.node_info.as_ref().unwrap();
        assert_eq!(info.kubelet_version, "v1.33.0-skiff-hollow");

        let first = eventually(&format!("lease of {name}"), WAIT, || async {
            leases.get_opt(&name).await.ok().flatten()
        })
        .await;
        let spec = first.spec.clone().unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some(name.as_str()));
        assert_eq!(spec.lease_duration_seconds, Some(40));
        let first_renew = renew_time(&first).expect("renewTime");
        lease_renewed_after(&leases, &name, first_renew).await;
        // Owned by its Node (once the Node's uid is known, the next renewal sets it).
        eventually(
            &format!("lease of {name} owned by its node"),
            WAIT,
            || async {
                let l = leases.get_opt(&name).await.ok().flatten()?;
                let owner = l.metadata.owner_references?.into_iter().next()?;
                (owner.kind == "Node" && Some(&owner.uid) == n.metadata.uid.as_ref()).then_some(())
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_run_finish_and_are_deleted_as_a_kubelet_would_report() {
    let server = Server::start().await;
    let _hollow = server.hollow(config(3));
    let nodes: Api<Node> = Api::all(server.client.clone());
    ready_node(&nodes, "hollow-node-1").await;
    let pods: Api<Pod> = Api::namespaced(server.client.clone(), "default");

    // A long-running pod: Running and Ready, address from node 1's 100.64.2.0/23.
    let created = bound_pod(&pods, "web", "hollow-node-1", "Always", &[]).await;
    let p = eventually("web Running and Ready", WAIT, || async {
        let p = pods.get_opt("web").await.ok().flatten()?;
        (p.status.as_ref()?.phase.as_deref() == Some("Running")
            && pod_condition(&p, "Ready").as_deref() == Some("True"))
        .then_some(p)
    })
    .await;
    let s = p.status.clone().unwrap();
    let ip: std::net::Ipv4Addr = s.pod_ip.as_deref().unwrap().parse().unwrap();
    let o = ip.octets();
    assert_eq!(
        (o[0], o[1], o[2] & !1),
        (100, 64, 2),
        "pod IP {ip} in 100.64.2.0/23"
    );
    assert_eq!(s.host_ip.as_deref(), Some("198.18.0.2"));
    assert_eq!(s.qos_class.as_deref(), Some("Guaranteed"));
    for c in [
        "PodReadyToStartContainers",
        "Initialized",
        "ContainersReady",
        "PodScheduled",
    ] {
        assert_eq!(pod_condition(&p, c).as_deref(), Some("True"), "{c}");
    }
    let cs = &s.container_statuses.unwrap()[0];
    let uid = created.metadata.uid.unwrap();
    assert_eq!(
        cs.container_id.as_deref(),
        Some(format!("hollow://{uid}-app").as_str())
    );
    assert!(cs.ready && cs.started == Some(true));
    assert!(cs.state.as_ref().unwrap().running.is_some());

    // Job-like pods finish per their annotations.
    bound_pod(
        &pods,
        "ok",
        "hollow-node-0",
        "Never",
        &[("hollow.skiff.dev/run-seconds", "0.2")],
    )
    .await;
    bound_pod(
        &pods,
        "bad",
        "hollow-node-2",
        "Never",
        &[
            ("hollow.skiff.dev/run-seconds", "0.2"),
            ("hollow.skiff.dev/exit-code", "1"),
        ],
    )
    .await;
    let ok = phase_of(&pods, "ok", "Succeeded").await;
    let term = ok.status.unwrap().container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(
        (term.exit_code, term.reason.as_deref()),
        (0, Some("Completed"))
    );
    let bad = phase_of(&pods, "bad", "Failed").await;
    let term = bad.status.unwrap().container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!((term.exit_code, term.reason.as_deref()), (1, Some("Error")));

    // OnFailure with a failing exit code: the container restarts, the pod stays Running.
    bound_pod(
        &pods,
        "crash",
        "hollow-node-0",
        "OnFailure",
        &[
            ("hollow.skiff.dev/run-seconds", "0.2"),
            ("hollow.skiff.dev/exit-code", "2"),
        ],
    )
    .await;
    let crashed = eventually("crash restarted", WAIT, || async {
        let p = pods.get_opt("crash").await.ok().flatten()?;
        let cs = p
            .status
            .as_ref()?
            .container_statuses
            .as_ref()?
            .first()?
            .clone();
        (cs.restart_count >= 1).then_some((p, cs))
    })
    .await;
    assert_eq!(crashed.0.status.unwrap().phase.as_deref(), Some("Running"));
    let last = crashed.1.last_state.unwrap().terminated.unwrap();
    assert_eq!((last.exit_code, last.reason.as_deref()), (2, Some("Error")));

    // A host-network pod gets the node's address.
    let mut host: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "host"},
        "spec": {"hostNetwork": true, "nodeName": "hollow-node-2",
                 "tolerations": [{"key": "hollow", "operator": "Exists"}],
                 "containers": [{"name": "app", "image": "x"}]},
    }))
    .unwrap();
    host = pods
        .create(&PostParams::default(), &host)
        .await
        .expect("create host pod");
    let host = phase_of(&pods, host.metadata.name.as_deref().unwrap(), "Running").await;
    assert_eq!(host.status.unwrap().pod_ip.as_deref(), Some("198.18.0.3"));

    // Deleting with the default grace period: gone promptly, not after 30 s.
    pods.delete("web", &DeleteParams::default())
        .await
        .expect("delete web");
    eventually("web gone", Duration::from_secs(20), || async {
        pods.get_opt("web").await.ok()?.is_none().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_process_takes_its_nodes_and_pods_back_and_a_stopped_one_stops_renewing() {
    let server = Server::start().await;
    let nodes: Api<Node> = Api::all(server.client.clone());
    let leases: Api<Lease> = Api::namespaced(server.client.clone(), "kube-node-lease");
    let pods: Api<Pod> = Api::namespaced(server.client.clone(), "default");

    let first = server.hollow(config(3));
    let node = ready_node(&nodes, "hollow-node-0").await;
    bound_pod(&pods, "web", "hollow-node-0", "Always", &[]).await;
    let running = phase_of(&pods, "web", "Running").await;
    let ip = running.status.as_ref().unwrap().pod_ip.clone();
    let l = eventually("lease", WAIT, || async {
        leases.get_opt("hollow-node-0").await.ok().flatten()
    })
    .await;
    lease_renewed_after(&leases, "hollow-node-0", renew_time(&l).unwrap()).await;
    first.stop().await;

    // Stopped: no more renewals (well past several heartbeat intervals).
    let last = renew_time(&leases.get("hollow-node-0").await.unwrap()).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = renew_time(&leases.get("hollow-node-0").await.unwrap()).unwrap();
    assert_eq!(last, after, "a stopped process renewed a lease");

    // Meanwhile someone marks the node Unknown (the node lifecycle controller would).
    nodes
        .patch_status(
            "hollow-node-0",
            &PatchParams::default(),
            &Patch::Strategic(serde_json::json!({"status": {"conditions": [
                {"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown"}
            ]}})),
        )
        .await
        .expect("mark unknown");

    let _second = server.hollow(config(3));
    lease_renewed_after(&leases, "hollow-node-0", after).await;
    let taken = ready_node(&nodes, "hollow-node-0").await;
    assert_eq!(
        taken.metadata.uid, node.metadata.uid,
        "the same Node, taken back"
    );
    // The running pod is left as it is; a new one gets another address.
    let still = pods.get("web").await.unwrap();
    assert_eq!(still.status.as_ref().unwrap().pod_ip, ip);
    assert_eq!(
        still.metadata.resource_version,
        running.metadata.resource_version
    );
    bound_pod(&pods, "web2", "hollow-node-0", "Always", &[]).await;
    let web2 = phase_of(&pods, "web2", "Running").await;
    assert_ne!(web2.status.unwrap().pod_ip, ip);

    // A deleted Node is registered again.
    nodes
        .delete("hollow-node-0", &DeleteParams::default())
        .await
        .expect("delete node");
    eventually("node registered again", WAIT, || async {
        let n = nodes.get_opt("hollow-node-0").await.ok().flatten()?;
        (n.metadata.uid != node.metadata.uid && condition(&n, "Ready").as_deref() == Some("True"))
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_nodes_register_and_all_their_leases_renew() {
    let server = Server::start().await;
    let count = 200;
    let _hollow = server.hollow(Config {
        count,
        start_index: 1000,
        heartbeat_interval: Duration::from_secs(2),
        ..Config::default()
    });
    let nodes: Api<Node> = Api::all(server.client.clone());
    let leases: Api<Lease> = Api::namespaced(server.client.clone(), "kube-node-lease");
    eventually("200 Ready nodes", Duration::from_secs(120), || async {
        let list = nodes
            .list(&ListParams::default().labels("type=hollow"))
            .await
            .ok()?;
        let ready = list
            .items
            .iter()
            .filter(|n| condition(n, "Ready").as_deref() == Some("True"))
            .count();
        (ready == count as usize).then_some(())
    })
    .await;
    let first: BTreeMap<String, Timestamp> =
        eventually("200 leases", Duration::from_secs(120), || async {
            let list = leases.list(&ListParams::default()).await.ok()?;
            let m: BTreeMap<_, _> = list
                .items
                .iter()
                .filter_map(|l| Some((l.metadata.name.clone()?, renew_time(l)?)))
                .collect();
            (m.len() == count as usize).then_some(m)
        })
        .await;
    assert!(first.contains_key("hollow-node-1000") && first.contains_key("hollow-node-1199"));
    eventually("every lease renewed", Duration::from_secs(120), || async {
        let list = leases.list(&ListParams::default()).await.ok()?;
        let renewed = list
            .items
            .iter()
            .filter(|l| {
                let name = l.metadata.name.clone().unwrap_or_default();
                matches!((renew_time(l), first.get(&name)), (Some(now), Some(before)) if now > *before)
            })
            .count();
        (renewed == count as usize).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditions_someone_changed_are_reasserted_at_once_and_readiness_waits_for_the_probe_delay()
{
    let server = Server::start().await;
    let _hollow = server.hollow(Config {
        // Far beyond the test: only the watch can explain a prompt re-post.
        status_update_interval: Duration::from_secs(600),
        ..config(1)
    });
    let nodes: Api<Node> = Api::all(server.client.clone());
    ready_node(&nodes, "hollow-node-0").await;
    nodes
        .patch_status(
            "hollow-node-0",
            &PatchParams::default(),
            &Patch::Strategic(serde_json::json!({"status": {"conditions": [
                {"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown"}
            ]}})),
        )
        .await
        .expect("mark unknown");
    let n = ready_node(&nodes, "hollow-node-0").await;
    let reason = n
        .status
        .and_then(|s| s.conditions)
        .and_then(|c| c.into_iter().find(|c| c.type_ == "Ready"))
        .and_then(|c| c.reason);
    assert_eq!(reason.as_deref(), Some("KubeletReady"));

    let pods: Api<Pod> = Api::namespaced(server.client.clone(), "default");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "slow"},
        "spec": {"nodeName": "hollow-node-0",
                 "tolerations": [{"key": "hollow", "operator": "Exists"}],
                 "containers": [{"name": "app", "image": "x",
                    "readinessProbe": {"initialDelaySeconds": 3, "tcpSocket": {"port": 80}}}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create");
    let running = phase_of(&pods, "slow", "Running").await;
    assert_eq!(pod_condition(&running, "Ready").as_deref(), Some("False"));
    let started = running.status.unwrap().start_time.unwrap().0;
    let ready = eventually("slow Ready", WAIT, || async {
        let p = pods.get_opt("slow").await.ok().flatten()?;
        (pod_condition(&p, "Ready").as_deref() == Some("True")).then_some(p)
    })
    .await;
    let became = ready
        .status
        .and_then(|s| s.conditions)
        .and_then(|c| c.into_iter().find(|c| c.type_ == "Ready"))
        .and_then(|c| c.last_transition_time)
        .unwrap()
        .0;
    assert!(
        became.duration_since(started).as_secs_f64() >= 3.0,
        "Ready at {became}, started at {started}"
    );
}
