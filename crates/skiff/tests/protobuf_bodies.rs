//! kubectl's imperative commands (`create namespace|deployment|secret|...`, `expose`,
//! `autoscale`) use typed Go clients that POST protobuf bodies
//! (`Content-Type: application/vnd.kubernetes.protobuf`). The real kubectl against the
//! real `skiff server`: every command succeeds and stores what kubectl generated.

mod support;

use support::Server;

fn jsonpath(server: &Server, args: &[&str], path: &str) -> String {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    let expr = format!("jsonpath={path}");
    all.extend(["-o", expr.as_str()]);
    server.ok(&all)
}

#[test]
fn kubectl_sends_protobuf_and_the_server_decodes_it() {
    let server = Server::start();
    let out = server.kubectl(&["create", "namespace", "pbtest", "-v=8"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // The body really was protobuf (not a JSON fallback).
    assert!(
        stderr.contains("Content-Type: application/vnd.kubernetes.protobuf"),
        "kubectl did not send protobuf:\n{stderr}"
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "namespace/pbtest created"
    );
    let ns = server.get_json(&["get", "namespace", "pbtest"]);
    assert_eq!(ns["metadata"]["name"], "pbtest");
    assert_eq!(ns["status"]["phase"], "Active");
    // Go's zero creationTimestamp on the wire is not stored as 0001-01-01.
    let created = ns["metadata"]["creationTimestamp"].as_str().unwrap();
    assert!(!created.starts_with("0001"), "{created}");
}

#[test]
fn workloads_from_imperative_commands() {
    let server = Server::start();
    let out = server.ok(&[
        "create",
        "deployment",
        "d",
        "--image=nginx",
        "--replicas=2",
        "--port=8080",
    ]);
    assert_eq!(out.trim(), "deployment.apps/d created");
    assert_eq!(jsonpath(&server, &["deploy", "d"], "{.spec.replicas}"), "2");
    let deploy = server.get_json(&["get", "deploy", "d"]);
    let container = &deploy["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "nginx");
    assert_eq!(container["name"], "nginx");
    assert_eq!(container["ports"][0]["containerPort"], 8080);
    assert_eq!(deploy["spec"]["selector"]["matchLabels"]["app"], "d");
    assert_eq!(deploy["spec"]["template"]["metadata"]["labels"]["app"], "d");

    let out = server.ok(&["expose", "deployment", "d", "--port=80"]);
    assert_eq!(out.trim(), "service/d exposed");
    let svc = server.get_json(&["get", "service", "d"]);
    assert_eq!(svc["spec"]["ports"][0]["port"], 80);
    assert_eq!(svc["spec"]["selector"]["app"], "d");

    let out = server.ok(&["create", "service", "clusterip", "s", "--tcp=80:8080"]);
    assert_eq!(out.trim(), "service/s created");
    let svc = server.get_json(&["get", "service", "s"]);
    assert_eq!(svc["spec"]["ports"][0]["port"], 80);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);

    let out = server.ok(&["create", "job", "j", "--image=busybox"]);
    assert_eq!(out.trim(), "job.batch/j created");
    assert_eq!(
        jsonpath(
            &server,
            &["job", "j"],
            "{.spec.template.spec.containers[0].image}"
        ),
        "busybox"
    );

    let out = server.ok(&[
        "create",
        "cronjob",
        "c",
        "--image=busybox",
        "--schedule=*/5 * * * *",
    ]);
    assert_eq!(out.trim(), "cronjob.batch/c created");
    let cj = server.get_json(&["get", "cronjob", "c"]);
    assert_eq!(cj["spec"]["schedule"], "*/5 * * * *");
    assert_eq!(
        cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"],
        "OnFailure"
    );

    let out = server.ok(&["autoscale", "deployment", "d", "--max=5", "--min=2"]);
    assert_eq!(
        out.trim(),
        "horizontalpodautoscaler.autoscaling/d autoscaled"
    );
    assert_eq!(
        jsonpath(
            &server,
            &["hpa", "d"],
            "{.spec.maxReplicas}/{.spec.minReplicas}"
        ),
        "5/2"
    );
}

#[test]
fn config_and_access_objects_from_imperative_commands() {
    let server = Server::start();
    let out = server.ok(&["create", "secret", "generic", "s", "--from-literal=a=b"]);
    assert_eq!(out.trim(), "secret/s created");
    // Bytes travel as raw bytes in protobuf and as base64 in JSON.
    assert_eq!(jsonpath(&server, &["secret", "s"], "{.data.a}"), "Yg==");
    assert_eq!(jsonpath(&server, &["secret", "s"], "{.type}"), "Opaque");

    let out = server.ok(&[
        "create",
        "configmap",
        "cm",
        "--from-literal=k=v",
        "--from-literal=empty=",
    ]);
    assert_eq!(out.trim(), "configmap/cm created");
    let cm = server.get_json(&["get", "configmap", "cm"]);
    assert_eq!(cm["data"], serde_json::json!({"k": "v", "empty": ""}));

    let out = server.ok(&["create", "serviceaccount", "sa"]);
    assert_eq!(out.trim(), "serviceaccount/sa created");

    let out = server.ok(&["create", "role", "r", "--verb=get", "--resource=pods"]);
    assert_eq!(out.trim(), "role.rbac.authorization.k8s.io/r created");
    let role = server.get_json(&["get", "role", "r"]);
    assert_eq!(role["rules"][0]["verbs"], serde_json::json!(["get"]));
    assert_eq!(role["rules"][0]["resources"], serde_json::json!(["pods"]));
    assert_eq!(role["rules"][0]["apiGroups"], serde_json::json!([""]));

    let out = server.ok(&[
        "create",
        "rolebinding",
        "rb",
        "--role=r",
        "--serviceaccount=default:sa",
        "--user=alice",
    ]);
    assert_eq!(
        out.trim(),
        "rolebinding.rbac.authorization.k8s.io/rb created"
    );
    let rb = server.get_json(&["get", "rolebinding", "rb"]);
    assert_eq!(rb["roleRef"]["name"], "r");
    assert_eq!(rb["roleRef"]["kind"], "Role");
    let subjects = rb["subjects"].as_array().unwrap();
    assert_eq!(subjects.len(), 2, "{rb}");

    let out = server.ok(&["create", "priorityclass", "p", "--value=1000"]);
    assert_eq!(out.trim(), "priorityclass.scheduling.k8s.io/p created");
    assert_eq!(
        jsonpath(&server, &["priorityclass", "p"], "{.value}"),
        "1000"
    );

    // IngressRule's value is a Go struct inlined into the rule's JSON; a port
    // given by name leaves the (non-pointer) port number 0, which JSON omits.
    let out = server.ok(&[
        "create",
        "ingress",
        "ing",
        "--rule=example.com/web=svc:http",
        "--rule=example.com/api*=svc:8080",
    ]);
    assert_eq!(out.trim(), "ingress.networking.k8s.io/ing created");
    let ing = server.get_json(&["get", "ingress", "ing"]);
    let paths = &ing["spec"]["rules"][0]["http"]["paths"];
    assert_eq!(ing["spec"]["rules"][0]["host"], "example.com");
    assert_eq!(
        paths[0]["backend"]["service"],
        serde_json::json!({"name": "svc", "port": {"name": "http"}})
    );
    assert_eq!(paths[0]["pathType"], "Exact");
    assert_eq!(
        paths[1]["backend"]["service"],
        serde_json::json!({"name": "svc", "port": {"number": 8080}})
    );
    assert_eq!(paths[1]["pathType"], "Prefix");

    let out = server.ok(&["create", "quota", "q", "--hard=pods=10,cpu=2"]);
    assert_eq!(out.trim(), "resourcequota/q created");
    let q = server.get_json(&["get", "quota", "q"]);
    assert_eq!(q["spec"]["hard"]["pods"], "10");
    assert_eq!(q["spec"]["hard"]["cpu"], "2");
}
