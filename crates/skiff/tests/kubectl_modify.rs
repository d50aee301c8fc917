//! kubectl label / annotate / patch (all three types) / scale / delete (cascade modes) /
//! wait against the real `skiff server`.

mod support;

use std::time::Duration;

use support::{eventually, Server};

fn with_pod() -> Server {
    let server = Server::start();
    server.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels: {app: web, tier: front}\nspec:\n  containers:\n  - name: c\n    image: nginx:1.25\n    env:\n    - {name: A, value: '1'}\n  - name: side\n    image: busybox\n",
    );
    server
}

fn configmaps(server: &Server, names: &[&str], labels: &str) {
    let docs: Vec<String> = names
        .iter()
        .map(|n| {
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {n}\n  labels: {{{labels}}}\n"
            )
        })
        .collect();
    server.ok_stdin(&["create", "-f", "-"], &docs.join("---\n"));
}

fn jsonpath(server: &Server, what: &[&str], path: &str) -> String {
    let mut args = vec!["get"];
    args.extend(what);
    let expr = format!("jsonpath={path}");
    args.extend(["-o", &expr]);
    server.ok(&args)
}

#[test]
fn label_add_overwrite_and_remove() {
    let server = with_pod();
    assert_eq!(
        server.ok(&["label", "pod", "web", "new=1"]).trim(),
        "pod/web labeled"
    );
    let err = server.fails(&["label", "pod", "web", "app=other"]);
    assert!(
        err.contains("'app' already has a value (web), and --overwrite is false"),
        "{err}"
    );
    server.ok(&["label", "pod", "web", "app=other", "--overwrite"]);
    assert_eq!(
        server.ok(&["label", "pod", "web", "tier-"]).trim(),
        "pod/web unlabeled"
    );
    assert_eq!(
        jsonpath(&server, &["pod", "web"], "{.metadata.labels}"),
        r#"{"app":"other","new":"1"}"#
    );
}

#[test]
fn annotate_add_overwrite_and_remove() {
    let server = with_pod();
    assert_eq!(
        server.ok(&["annotate", "pod", "web", "note=hi"]).trim(),
        "pod/web annotated"
    );
    let err = server.fails(&["annotate", "pod", "web", "note=ho"]);
    assert!(
        err.contains("--overwrite is false but found the following declared annotation(s): 'note' already has a value (hi)"),
        "{err}"
    );
    server.ok(&["annotate", "pod", "web", "note=ho", "--overwrite"]);
    assert_eq!(
        jsonpath(&server, &["pod", "web"], "{.metadata.annotations.note}"),
        "ho"
    );
    server.ok(&["annotate", "pod", "web", "note-"]);
    assert_eq!(
        jsonpath(&server, &["pod", "web"], "{.metadata.annotations}"),
        ""
    );
}

fn with_rc() -> Server {
    let server = Server::start();
    server.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: ReplicationController\nmetadata:\n  name: rc\nspec:\n  replicas: 1\n  selector: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: c\n        image: nginx:1.25\n        env:\n        - {name: A, value: '1'}\n      - name: side\n        image: busybox\n",
    );
    server
}

#[test]
fn strategic_merge_patch_merges_containers_by_name() {
    let server = with_rc();
    let out = server.ok(&[
        "patch",
        "rc",
        "rc",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"c","image":"nginx:1.26","env":[{"name":"B","value":"2"}]}]}}}}"#,
    ]);
    assert_eq!(out.trim(), "replicationcontroller/rc patched");
    let obj = server.get_json(&["get", "rc", "rc"]);
    let containers = obj["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(containers.len(), 2, "the sidecar stays: {containers:?}");
    assert_eq!(containers[0]["image"], "nginx:1.26");
    assert_eq!(containers[1]["image"], "busybox");
    let env: Vec<&str> = containers[0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(env, ["B", "A"], "env merges by name");
    assert_eq!(
        obj["metadata"]["generation"], 2,
        "a spec change bumps generation"
    );
    // The same patch again changes nothing.
    let out = server.ok(&[
        "patch",
        "rc",
        "rc",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"c","image":"nginx:1.26"}]}}}}"#,
    ]);
    assert_eq!(out.trim(), "replicationcontroller/rc patched (no change)");
    // $patch: delete removes one container by its merge key.
    server.ok(&[
        "patch",
        "rc",
        "rc",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"side","$patch":"delete"}]}}}}"#,
    ]);
    assert_eq!(
        jsonpath(
            &server,
            &["rc", "rc"],
            "{.spec.template.spec.containers[*].name}"
        ),
        "c"
    );
}

#[test]
fn pod_updates_are_limited_to_upstreams_mutable_fields() {
    let server = with_pod();
    server.ok(&[
        "patch",
        "pod",
        "web",
        "-p",
        r#"{"spec":{"containers":[{"name":"c","image":"nginx:1.26"}]}}"#,
    ]);
    assert_eq!(
        jsonpath(&server, &["pod", "web"], "{.spec.containers[*].image}"),
        "nginx:1.26 busybox"
    );
    let err = server.fails(&[
        "patch",
        "pod",
        "web",
        "-p",
        r#"{"spec":{"containers":[{"name":"c","env":[{"name":"B","value":"2"}]}]}}"#,
    ]);
    assert!(
        err.contains(r#"The Pod "web" is invalid: spec: Forbidden: pod updates may not change fields other than"#),
        "{err}"
    );
}

#[test]
fn merge_patch_replaces_lists_and_deletes_with_null() {
    let server = with_pod();
    server.ok(&[
        "patch",
        "pod",
        "web",
        "--type=merge",
        "-p",
        r#"{"metadata":{"labels":{"tier":null,"m":"1"}}}"#,
    ]);
    assert_eq!(
        jsonpath(&server, &["pod", "web"], "{.metadata.labels}"),
        r#"{"app":"web","m":"1"}"#
    );
}

#[test]
fn json_patch_with_a_test_op() {
    let server = with_pod();
    server.ok(&[
        "patch",
        "pod",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"test","path":"/metadata/labels/app","value":"web"},{"op":"add","path":"/metadata/labels/j","value":"1"},{"op":"replace","path":"/spec/containers/0/image","value":"nginx:2"}]"#,
    ]);
    assert_eq!(
        jsonpath(
            &server,
            &["pod", "web"],
            "{.metadata.labels.j} {.spec.containers[0].image}"
        ),
        "1 nginx:2"
    );
    let err = server.fails(&[
        "patch",
        "pod",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"test","path":"/metadata/labels/app","value":"nope"},{"op":"add","path":"/metadata/labels/k","value":"1"}]"#,
    ]);
    // Upstream: a 422 Invalid with an empty details block, which kubectl prints so.
    assert!(
        err.contains("The request is invalid: the server rejected our request due to an error in our request"),
        "{err}"
    );
    assert_eq!(
        jsonpath(&server, &["pod", "web"], "{.metadata.labels.k}"),
        "",
        "a failed test op applies nothing"
    );
    let err = server.fails(&[
        "patch",
        "pod",
        "web",
        "--type=json",
        "-p",
        r#"{"not":"a list"}"#,
    ]);
    assert!(err.contains("Error from server (BadRequest)"), "{err}");
}

#[test]
fn scale_a_replication_controller() {
    let server = Server::start();
    server.ok_stdin(
        &["create", "-f", "-"],
        &std::fs::read_to_string(support::nginx_rc_path()).unwrap(),
    );
    assert_eq!(
        server.ok(&["scale", "rc", "nginx", "--replicas=5"]).trim(),
        "replicationcontroller/nginx scaled"
    );
    assert_eq!(jsonpath(&server, &["rc", "nginx"], "{.spec.replicas}"), "5");
    let err = server.fails(&[
        "scale",
        "rc",
        "nginx",
        "--current-replicas=3",
        "--replicas=6",
    ]);
    assert!(err.contains("Expected replicas to be 3, was 5"), "{err}");
    assert_eq!(jsonpath(&server, &["rc", "nginx"], "{.spec.replicas}"), "5");
    server.ok(&[
        "scale",
        "rc",
        "nginx",
        "--current-replicas=5",
        "--replicas=2",
    ]);
    assert_eq!(jsonpath(&server, &["rc", "nginx"], "{.spec.replicas}"), "2");
    // The scale subresource as the autoscaler sees it.
    let scale: serde_json::Value = serde_json::from_str(&server.ok(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/replicationcontrollers/nginx/scale",
    ]))
    .unwrap();
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["apiVersion"], "autoscaling/v1");
    assert_eq!(scale["spec"]["replicas"], 2);
    assert_eq!(scale["status"]["selector"], "app=nginx");
}

#[test]
fn delete_by_name_selector_and_all() {
    let server = Server::start();
    configmaps(&server, &["a", "b"], "grp: one");
    configmaps(&server, &["c", "d"], "grp: two");
    assert_eq!(
        server.ok(&["delete", "configmap", "a"]).trim(),
        r#"configmap "a" deleted"#
    );
    let err = server.fails(&["delete", "configmap", "a"]);
    assert!(
        err.contains(r#"Error from server (NotFound): configmaps "a" not found"#),
        "{err}"
    );
    let out = server.ok(&["delete", "configmap", "-l", "grp=two"]);
    assert_eq!(out, "configmap \"c\" deleted\nconfigmap \"d\" deleted\n");
    // kube-root-ca.crt is published in every namespace, as upstream.
    assert_eq!(
        server.ok(&[
            "get",
            "cm",
            "-o",
            "name",
            "--field-selector",
            "metadata.name!=kube-root-ca.crt"
        ]),
        "configmap/b\n"
    );
    server.ok(&["delete", "configmap", "--all"]);
    // (The publisher puts kube-root-ca.crt back at once, as upstream's does.)
    let out = server.kubectl(&[
        "get",
        "cm",
        "--field-selector",
        "metadata.name!=kube-root-ca.crt",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "No resources found in default namespace."
    );
}

#[test]
fn delete_cascade_modes() {
    // What the API server does alone; the garbage collector's part is tested in
    // control_loops.rs and the controllers' own tests.
    let server = Server::start_with(&["--disable-controller-manager"]);
    configmaps(&server, &["bg", "fg", "orph"], "x: z");
    // Background (the default): gone at once.
    server.ok(&["delete", "cm", "bg", "--cascade=background"]);
    assert!(server
        .fails(&["get", "cm", "bg"])
        .contains(r#"configmaps "bg" not found"#));
    // Foreground and orphan: with no garbage collector running, the object stays with
    // the finalizer that asks for it and a deletionTimestamp.
    server.ok(&["delete", "cm", "fg", "--cascade=foreground", "--wait=false"]);
    assert_eq!(
        jsonpath(&server, &["cm", "fg"], "{.metadata.finalizers}"),
        r#"["foregroundDeletion"]"#
    );
    assert!(!jsonpath(&server, &["cm", "fg"], "{.metadata.deletionTimestamp}").is_empty());
    server.ok(&["delete", "cm", "orph", "--cascade=orphan", "--wait=false"]);
    assert_eq!(
        jsonpath(&server, &["cm", "orph"], "{.metadata.finalizers}"),
        r#"["orphan"]"#
    );
    assert!(!jsonpath(&server, &["cm", "orph"], "{.metadata.deletionTimestamp}").is_empty());
    // Removing the finalizer completes the delete.
    server.ok(&[
        "patch",
        "cm",
        "fg",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    assert!(server
        .fails(&["get", "cm", "fg"])
        .contains(r#"configmaps "fg" not found"#));
}

#[test]
fn wait_for_delete_and_for_jsonpath() {
    let server = Server::start();
    configmaps(&server, &["w"], "x: z");
    let mut waiter =
        server.kubectl_background(&["wait", "--for=delete", "configmap/w", "--timeout=20s"]);
    server.ok(&["delete", "configmap", "w", "--wait=false"]);
    eventually(
        Duration::from_secs(20),
        "kubectl wait --for=delete to end",
        || waiter.try_wait().is_some(),
    );
    assert!(waiter.try_wait().unwrap().success(), "{}", waiter.stderr());
    // Waiting for something already gone succeeds at once.
    server.ok(&["wait", "--for=delete", "configmap/w", "--timeout=5s"]);

    configmaps(&server, &["j"], "x: z");
    let mut waiter = server.kubectl_background(&[
        "wait",
        "--for=jsonpath={.data.ready}=yes",
        "configmap/j",
        "--timeout=20s",
    ]);
    server.ok(&[
        "patch",
        "cm",
        "j",
        "--type=merge",
        "-p",
        r#"{"data":{"ready":"yes"}}"#,
    ]);
    eventually(
        Duration::from_secs(20),
        "kubectl wait --for=jsonpath to end",
        || waiter.try_wait().is_some(),
    );
    assert!(waiter.try_wait().unwrap().success(), "{}", waiter.stderr());
    assert_eq!(waiter.stdout().trim(), "configmap/j condition met");
    let err = server.fails(&[
        "wait",
        "--for=jsonpath={.data.ready}=no",
        "configmap/j",
        "--timeout=1s",
    ]);
    assert!(err.contains("timed out waiting for the condition"), "{err}");
}
