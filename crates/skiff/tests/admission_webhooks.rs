//! Dynamic admission end to end: a real `skiff server`, real kubectl, and a real HTTPS
//! webhook server in this process (its own CA; skiff_testkit::webhook). One mutating
//! webhook reached through a Service (resolved to its EndpointSlice endpoint, TLS name
//! `hooks.webhooks.svc`) adds a label; one validating webhook reached by URL refuses a
//! label. Selectors, dry run, failure policies with an unreachable and a slow webhook,
//! and configuration validation are checked against what the user sees.

mod support;

use std::time::{Duration, Instant};

use skiff_testkit::webhook::WebhookServer;
use support::Server;

fn server() -> Server {
    Server::start_with(&["--disable-controller-manager", "--disable-scheduler"])
}

/// Runs `attempt` until it returns Some or `timeout` passes: configuration changes reach
/// the server's watch cache a moment after they are written, as upstream's do.
fn until<T>(timeout: Duration, what: &str, mut attempt: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = attempt() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The namespace, Service and EndpointSlice that route `hooks.webhooks.svc:443` to the
/// test webhook server on loopback.
fn route_service(s: &Server, hooks: &WebhookServer) {
    s.ok(&["create", "namespace", "webhooks"]);
    let manifest = format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: hooks, namespace: webhooks}}
spec:
  ports: [{{name: https, port: 443, targetPort: {port}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: hooks-1
  namespace: webhooks
  labels: {{kubernetes.io/service-name: hooks}}
addressType: IPv4
ports: [{{name: https, port: {port}, protocol: TCP}}]
endpoints: [{{addresses: ["127.0.0.1"], conditions: {{ready: true}}}}]
"#,
        port = hooks.addr.port()
    );
    s.ok_stdin(&["create", "-f", "-"], &manifest);
}

fn labels(s: &Server, ns: &str, name: &str) -> serde_json::Value {
    s.get_json(&["get", "configmap", name, "-n", ns])["metadata"]["labels"].clone()
}

#[test]
fn webhooks_mutate_and_validate_with_selectors_and_dry_run() {
    let s = server();
    let hooks = WebhookServer::start(&["hooks.webhooks.svc"]);
    route_service(&s, &hooks);
    s.ok(&["create", "namespace", "guarded"]);
    s.ok(&["label", "namespace", "guarded", "webhooks=on"]);
    s.ok(&["create", "namespace", "free"]);
    let configs = format!(
        r#"
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {{name: add-label}}
webhooks:
- name: add-label.skiff.test
  clientConfig:
    service: {{namespace: webhooks, name: hooks, path: /add-label/mutated/yes}}
    caBundle: {ca}
  rules: [{{operations: [CREATE], apiGroups: [""], apiVersions: [v1], resources: [configmaps]}}]
  namespaceSelector: {{matchLabels: {{webhooks: "on"}}}}
  objectSelector: {{matchExpressions: [{{key: skip-mutation, operator: DoesNotExist}}]}}
  sideEffects: None
  admissionReviewVersions: [v1]
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {{name: deny-label}}
webhooks:
- name: deny-label.skiff.test
  clientConfig:
    url: {url}
    caBundle: {ca}
  rules: [{{operations: [CREATE, UPDATE], apiGroups: [""], apiVersions: [v1], resources: [configmaps]}}]
  namespaceSelector: {{matchLabels: {{webhooks: "on"}}}}
  sideEffects: NoneOnDryRun
  admissionReviewVersions: [v1]
"#,
        ca = hooks.ca_bundle(),
        url = hooks.url("/deny-label/forbidden/true"),
    );
    s.ok_stdin(&["create", "-f", "-"], &configs);
    // Defaults as upstream.
    let m = s.get_json(&["get", "mutatingwebhookconfiguration", "add-label"]);
    assert_eq!(m["webhooks"][0]["failurePolicy"], "Fail");
    assert_eq!(m["webhooks"][0]["timeoutSeconds"], 10);
    assert_eq!(m["webhooks"][0]["clientConfig"]["service"]["port"], 443);

    // Mutating: the label arrives through the Service's endpoint.
    let mut n = 0;
    until(Duration::from_secs(10), "the mutating webhook", || {
        n += 1;
        let name = format!("probe-{n}");
        s.ok(&["create", "configmap", &name, "-n", "guarded"]);
        (labels(&s, "guarded", &name)["mutated"] == "yes").then_some(())
    });
    let seen = hooks.received("/add-label");
    let last = &seen.last().expect("a review").1;
    assert_eq!(last["operation"], "CREATE");
    assert_eq!(last["resource"]["resource"], "configmaps");
    assert_eq!(last["namespace"], "guarded");
    // The admin kubeconfig's user, as authentication saw it.
    assert_eq!(last["userInfo"]["username"], "admin");
    assert!(last["userInfo"]["groups"]
        .as_array()
        .is_some_and(|g| g.iter().any(|g| g == "system:masters")));
    assert!(last["uid"].as_str().is_some_and(|u| !u.is_empty()));

    // Selectors: another namespace, or an object opting out, is left alone.
    s.ok(&["create", "configmap", "elsewhere", "-n", "free"]);
    assert!(labels(&s, "free", "elsewhere").get("mutated").is_none());
    s.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: opted-out, namespace: guarded, labels: {skip-mutation: \"1\"}}\n",
    );
    assert!(labels(&s, "guarded", "opted-out").get("mutated").is_none());

    // Validating: kubectl shows the denial; nothing is stored.
    let denied = until(Duration::from_secs(10), "the validating webhook", || {
        let out = s.kubectl_stdin(
            &["create", "-f", "-"],
            Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bad, namespace: guarded, labels: {forbidden: \"true\"}}\n"),
        );
        (!out.status.success()).then(|| String::from_utf8_lossy(&out.stderr).into_owned())
    });
    assert!(
        denied.contains(
            "admission webhook \"deny-label.skiff.test\" denied the request: objects labelled forbidden=true are not allowed here"
        ),
        "{denied}"
    );
    assert!(
        s.kubectl(&["get", "configmap", "bad", "-n", "guarded"])
            .status
            .code()
            == Some(1)
    );
    // The same label elsewhere passes (namespaceSelector), and updates are reviewed too.
    s.ok(&["create", "configmap", "bad", "-n", "free"]);
    s.ok(&["label", "configmap", "bad", "-n", "free", "forbidden=true"]);
    let upd = s.kubectl(&[
        "label",
        "configmap",
        "opted-out",
        "-n",
        "guarded",
        "forbidden=true",
    ]);
    assert!(!upd.status.success());
    // Warnings from the webhook reach kubectl.
    let ok = s.kubectl(&["create", "configmap", "warned", "-n", "guarded"]);
    assert!(ok.status.success());
    let stderr = String::from_utf8_lossy(&ok.stderr);
    assert!(
        stderr.contains("Warning: checked by deny-label forbidden=true"),
        "{stderr}"
    );

    // Dry run: webhooks that declare no side effects are called with dryRun, nothing
    // is stored.
    let before = hooks.received("/deny-label").len();
    s.ok(&[
        "create",
        "configmap",
        "dry",
        "-n",
        "guarded",
        "--dry-run=server",
    ]);
    let reviews = hooks.received("/deny-label");
    assert_eq!(reviews.len(), before + 1);
    assert_eq!(reviews.last().unwrap().1["dryRun"], true);
    assert!(
        s.kubectl(&["get", "configmap", "dry", "-n", "guarded"])
            .status
            .code()
            == Some(1)
    );
}

#[test]
fn failure_policies_and_timeouts_decide_for_unreachable_and_slow_webhooks() {
    let s = server();
    let hooks = WebhookServer::start(&[]);
    let closed_port = skiff_testkit::free_port();
    let mut configs = String::new();
    for (mode, url, policy, timeout) in [
        (
            "down-ignore",
            format!("https://127.0.0.1:{closed_port}/"),
            "Ignore",
            10,
        ),
        (
            "down-fail",
            format!("https://127.0.0.1:{closed_port}/"),
            "Fail",
            10,
        ),
        ("slow-ignore", hooks.url("/slow/5000"), "Ignore", 1),
        ("slow-fail", hooks.url("/slow/5000"), "Fail", 1),
    ] {
        s.ok(&["create", "namespace", mode]);
        s.ok(&["label", "namespace", mode, &format!("mode={mode}")]);
        configs.push_str(&format!(
            r#"---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {{name: {mode}}}
webhooks:
- name: {mode}.skiff.test
  clientConfig: {{url: "{url}", caBundle: {ca}}}
  rules: [{{operations: [CREATE], apiGroups: [""], apiVersions: [v1], resources: [configmaps]}}]
  namespaceSelector: {{matchLabels: {{mode: {mode}}}}}
  failurePolicy: {policy}
  timeoutSeconds: {timeout}
  sideEffects: None
  admissionReviewVersions: [v1]
"#,
            ca = hooks.ca_bundle()
        ));
    }
    s.ok_stdin(&["create", "-f", "-"], &configs);

    // Fail closes: an unreachable webhook refuses the request with upstream's words.
    let mut n = 0;
    let err = until(Duration::from_secs(10), "the failing webhook", || {
        n += 1;
        let out = s.kubectl(&["create", "configmap", &format!("c{n}"), "-n", "down-fail"]);
        (!out.status.success()).then(|| String::from_utf8_lossy(&out.stderr).into_owned())
    });
    assert!(
        err.contains("Internal error occurred: failed calling webhook \"down-fail.skiff.test\""),
        "{err}"
    );
    // Ignore opens.
    s.ok(&["create", "configmap", "c", "-n", "down-ignore"]);

    // A webhook slower than its timeout follows its policy within about the timeout.
    let started = Instant::now();
    let out = s.kubectl(&["create", "configmap", "c", "-n", "slow-fail"]);
    let took = started.elapsed();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("failed calling webhook \"slow-fail.skiff.test\""),
        "{err}"
    );
    assert!(err.contains("deadline exceeded"), "{err}");
    assert!(took < Duration::from_secs(4), "took {took:?}");
    let started = Instant::now();
    s.ok(&["create", "configmap", "c", "-n", "slow-ignore"]);
    assert!(started.elapsed() < Duration::from_secs(4));
    assert!(!hooks.received("/slow").is_empty());

    // The server still answers everything else promptly.
    s.ok(&["get", "namespaces"]);
}

#[test]
fn webhook_configurations_are_validated() {
    let s = server();
    let err = s.fails_stdin(
        &["create", "-f", "-"],
        r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: broken}
webhooks:
- name: nodots
  clientConfig: {url: "http://example.com/x"}
  timeoutSeconds: 60
  sideEffects: Some
  admissionReviewVersions: [v1]
"#,
    );
    for expected in [
        "webhooks[0].name: Invalid value: \"nodots\"",
        "webhooks[0].sideEffects: Unsupported value: \"Some\"",
        "webhooks[0].timeoutSeconds: Invalid value: 60: the timeout value must be between 1 and 30 seconds",
        "webhooks[0].clientConfig.url: Invalid value: \"http://example.com/x\": 'https' is the only allowed URL scheme",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in {err}");
    }
}
