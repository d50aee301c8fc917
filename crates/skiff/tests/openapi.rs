//! OpenAPI as unmodified kubectl uses it: default (strict) validation of `create`/`apply`,
//! which downloads `/openapi/v3` to learn that the server validates fields itself;
//! `explain` from the v3 documents and, with `--output plaintext-openapiv2`, from the
//! protobuf v2 document; and the v3 index covering every served group-version.

mod support;

use support::Server;

/// The shared RC example (replicas 3, nginx with containerPort 80).
fn nginx_rc() -> String {
    let path = support::nginx_rc_path();
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn create_with_default_validation_uses_server_side_field_validation() {
    let server = Server::start();
    // Default validation, verbose enough to show which documents kubectl fetched and how
    // it then asked the server to validate.
    let out = server.kubectl_stdin(&["create", "-f", "-", "-v=6"], Some(&nginx_rc()));
    let log = stderr(&out);
    assert!(out.status.success(), "kubectl create failed:\n{log}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("replicationcontroller/nginx created"),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("/openapi/v3/api/v1?hash=") && l.contains("200 OK")),
        "kubectl did not read the core v3 document:\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("verb=\"POST\"") && l.contains("fieldValidation=Strict")),
        "kubectl did not hand validation to the server:\n{log}"
    );
    assert!(!log.contains("/openapi/v2"), "fell back to v2:\n{log}");
    let replicas = server.ok(&["get", "rc", "nginx", "-o", "jsonpath={.spec.replicas}"]);
    assert_eq!(replicas, "3");
}

#[test]
fn unknown_fields_are_rejected_by_strict_validation() {
    let server = Server::start();
    let original = nginx_rc();
    let manifest = original.replace("  replicas: 3", "  replicaz: 3");
    assert_ne!(manifest, original);
    let out = server.kubectl_stdin(&["create", "--validate=strict", "-f", "-"], Some(&manifest));
    let err = stderr(&out);
    assert!(!out.status.success(), "an unknown field was accepted");
    assert!(err.contains("unknown field \"spec.replicaz\""), "{err}");
    // Nothing was created.
    let out = server.kubectl(&["get", "rc", "nginx"]);
    assert!(!out.status.success());
}

#[test]
fn int_or_string_and_quantity_fields_pass_default_validation() {
    let server = Server::start();
    let manifest = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  strategy:
    rollingUpdate: {maxSurge: 1, maxUnavailable: "25%"}
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.25
        ports:
        - containerPort: 80
        resources:
          requests: {cpu: 100m, memory: 64Mi}
          limits: {cpu: 1, memory: 128Mi}
      - name: sidecar
        image: busybox
"#;
    server.ok_stdin(&["apply", "-f", "-"], manifest);
    // A second client-side apply computes its patch with the v3 document's merge keys:
    // only the first container changes.
    let changed = manifest.replace("nginx:1.25", "nginx:1.26");
    server.ok_stdin(&["apply", "-f", "-"], &changed);
    let images = server.ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[*].image}",
    ]);
    assert_eq!(images, "nginx:1.26 busybox");
}

#[test]
fn explain_prints_upstream_field_docs() {
    let server = Server::start();
    let containers = server.ok(&["explain", "pods.spec.containers"]);
    assert!(
        containers.contains("FIELD: containers <[]Container>"),
        "{containers}"
    );
    assert!(
        containers.contains("List of containers belonging to the pod."),
        "{containers}"
    );
    assert!(
        containers.contains("name\t<string> -required-"),
        "{containers}"
    );
    assert!(
        containers.contains("ports\t<[]ContainerPort>"),
        "{containers}"
    );

    let strategy = server.ok(&["explain", "deployment.spec.strategy"]);
    assert!(strategy.contains("GROUP:      apps"), "{strategy}");
    assert!(
        strategy.contains("rollingUpdate\t<RollingUpdateDeployment>"),
        "{strategy}"
    );

    let recursive = server.ok(&["explain", "deployment", "--recursive"]);
    for field in [
        "maxSurge\t<IntOrString>",
        "containerPort\t<integer> -required-",
        "ownerReferences\t<[]OwnerReference>",
    ] {
        assert!(recursive.contains(field), "{field} missing:\n{recursive}");
    }

    // The v2 document, which kubectl reads as protobuf.
    let v2 = server.ok(&[
        "explain",
        "deployment.spec.replicas",
        "--output",
        "plaintext-openapiv2",
    ]);
    assert!(v2.contains("FIELD:    replicas <integer>"), "{v2}");
    assert!(v2.contains("Number of desired pods."), "{v2}");
}

#[test]
fn v3_index_links_every_served_group_version() {
    let server = Server::start();
    let index: serde_json::Value =
        serde_json::from_str(&server.ok(&["get", "--raw", "/openapi/v3"])).expect("index is JSON");
    let versions = server.ok(&["api-versions"]);
    assert!(!versions.trim().is_empty());
    for gv in versions.lines() {
        let path = if gv.contains('/') {
            format!("apis/{gv}")
        } else {
            format!("api/{gv}")
        };
        let url = index["paths"][&path]["serverRelativeURL"]
            .as_str()
            .unwrap_or_else(|| panic!("{path} missing from the v3 index: {index}"));
        let doc: serde_json::Value =
            serde_json::from_str(&server.ok(&["get", "--raw", url])).expect("document is JSON");
        assert_eq!(doc["openapi"], "3.0.0", "{path}");
    }
    let missing = server.kubectl(&["get", "--raw", "/openapi/v3/apis/nothing.example.com/v1"]);
    assert!(!missing.status.success());
}
