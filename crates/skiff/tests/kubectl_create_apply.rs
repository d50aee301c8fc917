//! kubectl create / apply (client-side and server-side) / diff / replace / edit against the
//! real `skiff server`, as a user types them (no `--validate=false`: kubectl validates
//! against the server's OpenAPI like it does against upstream).

mod support;

use support::Server;

fn pod(name: &str, image: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels:\n    app: web\nspec:\n  containers:\n  - name: c\n    image: {image}\n"
    )
}

fn configmap(name: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  k: v\n")
}

fn image(server: &Server, pod: &str) -> String {
    server.ok(&[
        "get",
        "pod",
        pod,
        "-o",
        "jsonpath={.spec.containers[0].image}",
    ])
}

#[test]
fn create_from_file_then_create_again_is_already_exists() {
    let server = Server::start();
    let file = server.write_file("web.yaml", pod("web", "nginx:1.25"));
    let out = server.ok(&["create", "-f", file.to_str().unwrap()]);
    assert_eq!(out.trim(), "pod/web created");
    let err = server.fails(&["create", "-f", file.to_str().unwrap()]);
    assert!(
        err.contains(r#"Error from server (AlreadyExists): error when creating"#)
            && err.contains(r#"pods "web" already exists"#),
        "{err}"
    );
}

#[test]
fn apply_twice_records_last_applied_and_merges_the_new_image() {
    let server = Server::start();
    let out = server.ok_stdin(&["apply", "-f", "-"], &pod("web", "nginx:1.25"));
    assert_eq!(out.trim(), "pod/web created");
    // Something else changes a field apply does not manage: the second apply keeps it.
    server.ok(&["label", "pod", "web", "extra=kept"]);
    let out = server.ok_stdin(&["apply", "-f", "-"], &pod("web", "nginx:1.26"));
    assert_eq!(out.trim(), "pod/web configured");
    assert_eq!(image(&server, "web"), "nginx:1.26");
    let obj = server.get_json(&["get", "pod", "web"]);
    let last = obj["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
        .as_str()
        .expect("last-applied annotation");
    let last: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(last["spec"]["containers"][0]["image"], "nginx:1.26");
    assert_eq!(obj["metadata"]["labels"]["extra"], "kept");
    assert_eq!(obj["metadata"]["labels"]["app"], "web");
    // Applying the same thing again changes nothing.
    let out = server.ok_stdin(&["apply", "-f", "-"], &pod("web", "nginx:1.26"));
    assert_eq!(out.trim(), "pod/web unchanged");
}

#[test]
fn server_side_apply_creates_and_updates() {
    let server = Server::start();
    let out = server.ok_stdin(
        &["apply", "--server-side", "-f", "-"],
        &pod("ssa", "nginx:1.25"),
    );
    assert_eq!(out.trim(), "pod/ssa serverside-applied");
    let out = server.ok_stdin(
        &["apply", "--server-side", "-f", "-"],
        &pod("ssa", "nginx:1.27"),
    );
    assert_eq!(out.trim(), "pod/ssa serverside-applied");
    assert_eq!(image(&server, "ssa"), "nginx:1.27");
}

#[test]
fn server_side_apply_records_the_field_manager() {
    let server = Server::start();
    server.ok_stdin(
        &["apply", "--server-side", "-f", "-"],
        &pod("ssa", "nginx:1.25"),
    );
    let obj = server.get_json(&["get", "pod", "ssa", "--show-managed-fields"]);
    let managers = obj["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        managers
            .iter()
            .any(|m| m["manager"] == "kubectl" && m["operation"] == "Apply"),
        "kubectl's default field manager missing from managedFields: {managers:?}"
    );
}

#[test]
fn server_side_apply_by_another_manager_conflicts() {
    let server = Server::start();
    server.ok_stdin(
        &["apply", "--server-side", "-f", "-"],
        &pod("ssa", "nginx:1.25"),
    );
    let out = server.kubectl_stdin(
        &["apply", "--server-side", "--field-manager=other", "-f", "-"],
        Some(&pod("ssa", "nginx:9")),
    );
    assert!(!out.status.success(), "a conflicting apply must fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("conflict") && err.contains(".spec.containers"),
        "{err}"
    );
    assert_eq!(image(&server, "ssa"), "nginx:1.25");
    // --force-conflicts takes the field over.
    server.ok_stdin(
        &[
            "apply",
            "--server-side",
            "--field-manager=other",
            "--force-conflicts",
            "-f",
            "-",
        ],
        &pod("ssa", "nginx:9"),
    );
    assert_eq!(image(&server, "ssa"), "nginx:9");
}

#[test]
fn dry_run_server_creates_nothing() {
    let server = Server::start();
    let out = server.ok_stdin(
        &["create", "--dry-run=server", "-f", "-"],
        &configmap("ghost"),
    );
    assert_eq!(out.trim(), "configmap/ghost created (server dry run)");
    let err = server.fails(&["get", "configmap", "ghost"]);
    assert!(err.contains(r#"configmaps "ghost" not found"#), "{err}");
}

#[test]
fn generate_name_gets_a_suffix() {
    let server = Server::start();
    let manifest =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  generateName: gen-\ndata:\n  k: v\n";
    let a = server.ok_stdin(&["create", "-f", "-"], manifest);
    let b = server.ok_stdin(&["create", "-f", "-"], manifest);
    for out in [&a, &b] {
        let name = out
            .trim()
            .strip_prefix("configmap/gen-")
            .and_then(|s| s.strip_suffix(" created"))
            .unwrap_or_else(|| panic!("unexpected output {out:?}"));
        assert_eq!(name.len(), 5, "upstream appends 5 random characters: {out}");
    }
    assert_ne!(a, b);
}

#[test]
fn kubectl_create_namespace_then_create_in_it() {
    let server = Server::start();
    let out = server.ok(&["create", "namespace", "x"]);
    assert_eq!(out.trim(), "namespace/x created");
    server.ok_stdin(&["create", "-n", "x", "-f", "-"], &configmap("in-x"));
    server.ok(&["get", "configmap", "in-x", "-n", "x"]);
}

#[test]
fn creating_in_a_missing_namespace_is_not_found() {
    let server = Server::start();
    let out = server.kubectl_stdin(&["create", "-n", "nope", "-f", "-"], Some(&configmap("c")));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Error from server (NotFound)")
            && err.contains(r#"namespaces "nope" not found"#),
        "{err}"
    );
    // A namespace made from a manifest works at once.
    server.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: nope\n",
    );
    server.ok_stdin(&["create", "-n", "nope", "-f", "-"], &configmap("c"));
}

/// `kubectl create configmap|secret|deployment|service ...`: kubectl's typed clients send
/// protobuf bodies (Content-Type application/vnd.kubernetes.protobuf).
#[test]
fn imperative_create_commands_work() {
    let server = Server::start();
    let out = server.ok(&["create", "configmap", "cfg", "--from-literal=k=v"]);
    assert_eq!(out.trim(), "configmap/cfg created");
    assert_eq!(
        server.ok(&["get", "cm", "cfg", "-o", "jsonpath={.data.k}"]),
        "v"
    );
    let out = server.ok(&["create", "secret", "generic", "s", "--from-literal=p=q"]);
    assert_eq!(out.trim(), "secret/s created");
    let out = server.ok(&["create", "deployment", "d", "--image=nginx"]);
    assert_eq!(out.trim(), "deployment.apps/d created");
    let out = server.ok(&["create", "service", "clusterip", "svc", "--tcp=80:8080"]);
    assert_eq!(out.trim(), "service/svc created");
}

#[test]
fn diff_exits_1_with_a_diff_when_changed_and_0_when_same() {
    let server = Server::start();
    server.ok_stdin(&["apply", "-f", "-"], &pod("web", "nginx:1.25"));
    let same = server.write_file("same.yaml", pod("web", "nginx:1.25"));
    let out = server.kubectl(&["diff", "-f", same.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "no change: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let changed = server.write_file("changed.yaml", pod("web", "nginx:1.26"));
    let out = server.kubectl(&["diff", "-f", changed.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a change: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("-  - image: nginx:1.25") && stdout.contains("+  - image: nginx:1.26"),
        "{stdout}"
    );
    // diff is a dry run: nothing changed.
    assert_eq!(image(&server, "web"), "nginx:1.25");
}

#[test]
fn replace_updates_and_a_stale_resource_version_conflicts() {
    // No scheduler: its status write (no node fits) would make the first replace a
    // legitimate conflict too; this checks the API server's optimistic concurrency.
    let server = Server::start_with(&["--disable-scheduler"]);
    server.ok_stdin(&["create", "-f", "-"], &pod("web", "nginx:1.25"));
    let live = server.ok(&["get", "pod", "web", "-o", "yaml"]);
    let out = server.ok_stdin(
        &["replace", "-f", "-"],
        &live.replace("nginx:1.25", "nginx:1.26"),
    );
    assert_eq!(out.trim(), "pod/web replaced");
    assert_eq!(image(&server, "web"), "nginx:1.26");
    // `live` still carries the old resourceVersion.
    let out = server.kubectl_stdin(
        &["replace", "-f", "-"],
        Some(&live.replace("nginx:1.25", "nginx:1.27")),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Error from server (Conflict)")
            && err.contains(r#"Operation cannot be fulfilled on pods "web": the object has been modified; please apply your changes to the latest version and try again"#),
        "{err}"
    );
    assert_eq!(image(&server, "web"), "nginx:1.26");
}

#[test]
fn edit_with_a_non_interactive_editor() {
    let server = Server::start();
    server.ok_stdin(&["create", "-f", "-"], &pod("web", "nginx:1.25"));
    let out = server.kubectl_env(
        &["edit", "pod", "web"],
        &[("EDITOR", "sed -i s/nginx:1.25/nginx:1.26/")],
    );
    assert!(
        out.status.success(),
        "kubectl edit failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "pod/web edited"
    );
    assert_eq!(image(&server, "web"), "nginx:1.26");
    // An editor that changes nothing: kubectl says so and writes nothing.
    let out = server.kubectl_env(&["edit", "pod", "web"], &[("EDITOR", "true")]);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Edit cancelled, no changes made."),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The ReplicationController from the user's notes, exactly as written.
#[test]
fn the_nginx_rc_example_works_as_written() {
    let server = Server::start();
    let out = server.ok(&["create", "-f", &support::nginx_rc_path()]);
    assert_eq!(out.trim(), "replicationcontroller/nginx created");
    let rc = server.ok(&["get", "rc"]);
    let mut lines = rc.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "DESIRED", "CURRENT", "READY", "AGE"],
        "{rc}"
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(row[0], "nginx", "{rc}");
    assert_eq!(row[1], "3", "{rc}");
    // The controller manager creates the pods; with no node they stay Pending.
    support::eventually(
        std::time::Duration::from_secs(30),
        "3 current replicas",
        || {
            let rc = server.ok(&["get", "rc", "nginx", "--no-headers"]);
            rc.split_whitespace().take(4).collect::<Vec<_>>() == ["nginx", "3", "3", "0"]
        },
    );
    let pods = server.ok(&["get", "pods", "-l", "app=nginx", "--no-headers"]);
    assert_eq!(pods.lines().count(), 3, "{pods}");
    assert!(
        pods.lines()
            .all(|l| l.starts_with("nginx-") && l.contains("Pending")),
        "{pods}"
    );
}

/// Namespace lifecycle admission: nothing new goes into a namespace being deleted.
#[test]
fn no_new_objects_in_a_terminating_namespace() {
    // The API server alone: without the namespace controller the namespace stays
    // Terminating, which is the state under test.
    let server = Server::start_with(&["--disable-controller-manager"]);
    server.ok(&["create", "namespace", "going"]);
    server.ok(&["create", "configmap", "before", "-n", "going"]);
    server.ok(&["delete", "namespace", "going", "--wait=false"]);
    let phase = server.ok(&[
        "get",
        "namespace",
        "going",
        "-o",
        "jsonpath={.status.phase}",
    ]);
    assert_eq!(phase, "Terminating");
    let err = server.fails(&["create", "configmap", "after", "-n", "going"]);
    assert!(
        err.contains(
            "unable to create new content in namespace going because it is being terminated"
        ),
        "{err}"
    );
    // What was there before is still readable.
    server.ok(&["get", "configmap", "before", "-n", "going"]);
}

/// A namespace whose `spec.finalizers` are already empty goes at once when deleted: there
/// is nothing for the namespace controller to do (here none runs).
#[test]
fn a_namespace_without_finalizers_is_deleted_at_once() {
    let server = Server::start_with(&["--disable-controller-manager"]);
    server.ok(&["create", "namespace", "light"]);
    server.ok_stdin(
        &["replace", "--raw", "/api/v1/namespaces/light/finalize", "-f", "-"],
        r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"light"},"spec":{"finalizers":[]}}"#,
    );
    server.ok(&["delete", "namespace", "light", "--wait=false"]);
    let err = server.fails(&["get", "namespace", "light"]);
    assert!(err.contains(r#"namespaces "light" not found"#), "{err}");
}
