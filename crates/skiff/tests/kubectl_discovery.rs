//! Discovery and non-resource endpoints through kubectl (api-resources, api-versions,
//! explain, version, /metrics), and malformed input: every bad request gets a clear
//! Status and the server keeps serving.

mod support;

use support::Server;

#[test]
fn api_resources_list_names_short_names_and_categories() {
    let server = Server::start();
    let out = server.ok(&["api-resources"]);
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"],
        "{out}"
    );
    let row = |name: &str| -> Vec<String> {
        out.lines()
            .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .find(|r| r[0] == name)
            .unwrap_or_else(|| panic!("{name} missing from:\n{out}"))
    };
    assert_eq!(row("pods"), ["pods", "po", "v1", "true", "Pod"]);
    assert_eq!(
        row("replicationcontrollers"),
        [
            "replicationcontrollers",
            "rc",
            "v1",
            "true",
            "ReplicationController"
        ]
    );
    assert_eq!(
        row("namespaces"),
        ["namespaces", "ns", "v1", "false", "Namespace"]
    );
    assert_eq!(
        row("deployments"),
        ["deployments", "deploy", "apps/v1", "true", "Deployment"]
    );
    assert_eq!(
        row("services"),
        ["services", "svc", "v1", "true", "Service"]
    );
    for name in [
        "configmaps",
        "secrets",
        "nodes",
        "jobs",
        "cronjobs",
        "leases",
        "endpointslices",
        "customresourcedefinitions",
        "horizontalpodautoscalers",
    ] {
        row(name);
    }
    // The `all` category is what `kubectl get all` expands.
    let all = server.ok(&["api-resources", "--categories=all", "-o", "name"]);
    for name in [
        "pods",
        "services",
        "replicationcontrollers",
        "deployments.apps",
        "replicasets.apps",
        "statefulsets.apps",
        "daemonsets.apps",
        "jobs.batch",
        "cronjobs.batch",
    ] {
        assert!(all.lines().any(|l| l == name), "{name} not in all:\n{all}");
    }
    assert!(!all.lines().any(|l| l == "configmaps"), "{all}");
    let wide = server.ok(&["api-resources", "-o", "wide"]);
    let pods = wide.lines().find(|l| l.starts_with("pods ")).unwrap();
    for verb in [
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    ] {
        assert!(pods.contains(verb), "{verb} missing: {pods}");
    }
    assert!(pods.trim_end().ends_with("all"), "{pods}");
    let out = server.kubectl(&["get", "all"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn api_versions_and_version() {
    let server = Server::start();
    let out = server.ok(&["api-versions"]);
    let versions: Vec<&str> = out.lines().collect();
    for want in [
        "v1",
        "apps/v1",
        "batch/v1",
        "autoscaling/v1",
        "autoscaling/v2",
        "coordination.k8s.io/v1",
        "discovery.k8s.io/v1",
        "events.k8s.io/v1",
        "networking.k8s.io/v1",
        "policy/v1",
        "rbac.authorization.k8s.io/v1",
        "scheduling.k8s.io/v1",
        "storage.k8s.io/v1",
        "apiextensions.k8s.io/v1",
        "certificates.k8s.io/v1",
        "admissionregistration.k8s.io/v1",
    ] {
        assert!(versions.contains(&want), "{want} missing from:\n{out}");
    }
    let out = server.ok(&["version"]);
    assert!(out.contains("Server Version: v1.33."), "{out}");
    let v: serde_json::Value =
        serde_json::from_str(&server.ok(&["version", "-o", "json"])).unwrap();
    assert_eq!(v["serverVersion"]["major"], "1");
    assert_eq!(v["serverVersion"]["minor"], "33");
    assert!(v["serverVersion"]["platform"]
        .as_str()
        .unwrap()
        .starts_with("linux/"));
}

#[test]
fn explain_prints_field_docs() {
    let server = Server::start();
    let out = server.ok(&["explain", "pods.spec.containers"]);
    assert!(out.contains("KIND:       Pod"), "{out}");
    assert!(out.contains("FIELD: containers <[]Container>"), "{out}");
    assert!(
        out.contains("image\t<string>") || out.contains("image <string>"),
        "{out}"
    );
    let out = server.ok(&["explain", "deployment.spec.strategy"]);
    assert!(out.contains("GROUP:      apps"), "{out}");
}

#[test]
fn metrics_count_requests() {
    let server = Server::start();
    server.ok(&["get", "pods"]);
    let out = server.ok(&["get", "--raw", "/metrics"]);
    let listed = out.lines().any(|l| {
        l.starts_with("apiserver_request_total{")
            && l.contains(r#"verb="LIST""#)
            && l.contains(r#"resource="pods""#)
            && l.contains(r#"code="200""#)
    });
    assert!(listed, "{out}");
    // Prometheus text format: the TYPE line names the sample (`..._total` for a counter).
    assert!(
        out.lines()
            .any(|l| l == "# TYPE apiserver_request_total counter"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("apiserver_request_duration_seconds_bucket{")),
        "{out}"
    );
}

fn serving(server: &Server) {
    assert_eq!(server.ok(&["get", "--raw", "/readyz"]).trim(), "ok");
    server.ok(&["get", "pods"]);
}

#[test]
fn malformed_bodies_get_a_bad_request_status() {
    let server = Server::start();
    let bad_json = server.write_file("bad.json", r#"{"apiVersion":"v1","kind":"ConfigMap","#);
    let err = server.fails(&[
        "create",
        "--raw",
        "/api/v1/namespaces/default/configmaps",
        "-f",
        bad_json.to_str().unwrap(),
    ]);
    assert!(err.starts_with("Error from server (BadRequest):"), "{err}");
    // A broken YAML file is kubectl's own error, before any request.
    let bad_yaml = server.write_file(
        "bad.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [oops\n",
    );
    let err = server.fails(&["create", "-f", bad_yaml.to_str().unwrap()]);
    assert!(err.contains("error converting YAML to JSON"), "{err}");
    // Not an object at all.
    let list = server.write_file("list.json", "[1,2,3]");
    let err = server.fails(&[
        "create",
        "--raw",
        "/api/v1/namespaces/default/configmaps",
        "-f",
        list.to_str().unwrap(),
    ]);
    assert!(err.starts_with("Error from server (BadRequest):"), "{err}");
    serving(&server);
}

#[test]
fn wrong_api_version_or_kind_for_the_endpoint() {
    let server = Server::start();
    let wrong_version = server.write_file(
        "v.json",
        r#"{"apiVersion":"apps/v1","kind":"ConfigMap","metadata":{"name":"z"}}"#,
    );
    let err = server.fails(&[
        "create",
        "--raw",
        "/api/v1/namespaces/default/configmaps",
        "-f",
        wrong_version.to_str().unwrap(),
    ]);
    assert!(
        err.contains("Error from server (BadRequest)")
            && err.contains("the API version in the data (apps/v1) does not match the expected API version (v1)"),
        "{err}"
    );
    let wrong_kind = server.write_file(
        "k.json",
        r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"z"}}"#,
    );
    let err = server.fails(&[
        "create",
        "--raw",
        "/api/v1/namespaces/default/configmaps",
        "-f",
        wrong_kind.to_str().unwrap(),
    ]);
    assert!(
        err.contains("Error from server (BadRequest)")
            && err.contains("cannot be handled as a ConfigMap"),
        "{err}"
    );
    // An unknown kind in a manifest: kubectl cannot map it to a resource.
    let err = server.fails_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: Foo\nmetadata:\n  name: z\n",
    );
    assert!(
        err.contains(r#"no matches for kind "Foo" in version "v1""#),
        "{err}"
    );
    let err = server.fails(&["get", "foos"]);
    assert!(
        err.contains(r#"the server doesn't have a resource type "foos""#),
        "{err}"
    );
    // A path that names no resource is a 404 Status.
    let err = server.fails(&["get", "--raw", "/api/v1/namespaces/default/foos"]);
    assert!(
        err.contains(
            "Error from server (NotFound): the server could not find the requested resource"
        ),
        "{err}"
    );
    serving(&server);
}

#[test]
fn oversize_bodies_are_413_and_the_server_keeps_serving() {
    let server = Server::start();
    let big = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "big"},
        "data": {"k": "x".repeat(3 * 1024 * 1024 + 16)},
    });
    let file = server.write_file("big.json", big.to_string());
    let err = server.fails(&[
        "create",
        "--raw",
        "/api/v1/namespaces/default/configmaps",
        "-f",
        file.to_str().unwrap(),
    ]);
    assert!(
        err.contains("Error from server (RequestEntityTooLarge)"),
        "{err}"
    );
    let err = server.fails(&["create", "-f", file.to_str().unwrap()]);
    assert!(
        err.contains("Error from server (RequestEntityTooLarge)"),
        "{err}"
    );
    assert!(server.fails(&["get", "cm", "big"]).contains("not found"));
    serving(&server);
}

/// `kubectl auth can-i` (SelfSubjectAccessReview) and `kubectl auth whoami`
/// (SelfSubjectReview): how users check what the admin kubeconfig may do.
#[test]
fn auth_can_i_and_whoami() {
    let server = Server::start();
    assert_eq!(
        server.ok(&["auth", "can-i", "create", "pods"]).trim(),
        "yes"
    );
    assert_eq!(server.ok(&["auth", "can-i", "*", "*"]).trim(), "yes");
    let out = server.ok(&["auth", "whoami"]);
    assert!(
        out.contains("admin") && out.contains("system:masters"),
        "{out}"
    );
}
