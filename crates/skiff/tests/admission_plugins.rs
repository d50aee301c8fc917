//! Built-in admission plugins end to end, as a user meets them through kubectl against
//! a real `skiff server`: LimitRanger, ResourceQuota (including racing creates),
//! PodSecurity (enforce and warn) and DefaultStorageClass.

mod support;

use std::time::{Duration, Instant};

use support::Server;

/// Retries `attempt` until it returns Some: plugins read LimitRanges, quotas, classes and
/// namespace labels from the watch cache, which follows a write by a moment.
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

fn pod(name: &str, ns: &str, resources: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  containers:\n  - name: c\n    image: busybox\n    resources: {resources}\n"
    )
}

#[test]
fn limit_ranges_default_and_bound_container_resources() {
    let s = Server::start_with(&["--disable-scheduler"]);
    s.ok(&["create", "namespace", "lr"]);
    s.ok_stdin(
        &["create", "-f", "-"],
        r#"
apiVersion: v1
kind: LimitRange
metadata: {name: limits, namespace: lr}
spec:
  limits:
  - type: Container
    default: {cpu: 500m, memory: 128Mi}
    defaultRequest: {cpu: 100m, memory: 64Mi}
    max: {cpu: "1"}
"#,
    );
    let mut n = 0;
    let defaulted = until(Duration::from_secs(10), "LimitRange defaults", || {
        n += 1;
        let name = format!("plain-{n}");
        s.ok_stdin(&["create", "-f", "-"], &pod(&name, "lr", "{}"));
        let p = s.get_json(&["get", "pod", &name, "-n", "lr"]);
        let r = p["spec"]["containers"][0]["resources"].clone();
        (r["limits"]["cpu"] == "500m").then_some(p)
    });
    let r = &defaulted["spec"]["containers"][0]["resources"];
    assert_eq!(r["limits"]["memory"], "128Mi");
    assert_eq!(r["requests"]["cpu"], "100m");
    assert_eq!(r["requests"]["memory"], "64Mi");
    assert!(
        defaulted["metadata"]["annotations"]["kubernetes.io/limit-ranger"]
            .as_str()
            .is_some_and(|a| a.starts_with("LimitRanger plugin set: "))
    );

    let err = s.fails_stdin(
        &["create", "-f", "-"],
        &pod(
            "greedy",
            "lr",
            "{limits: {cpu: \"2\"}, requests: {cpu: \"1\"}}",
        ),
    );
    assert!(
        err.contains(
            "pods \"greedy\" is forbidden: maximum cpu usage per Container is 1, but limit is 2"
        ),
        "{err}"
    );
}

/// Waits until the quota controller has filled the quota's status.
fn wait_quota_synced(s: &Server, ns: &str, name: &str) {
    until(Duration::from_secs(20), "the quota's status", || {
        let q = s.get_json(&["get", "resourcequota", name, "-n", ns]);
        q["status"]["used"].is_object().then_some(())
    });
}

#[test]
fn resource_quota_refuses_the_create_that_would_exceed_it() {
    let s = Server::start_with(&["--disable-scheduler"]);
    s.ok(&["create", "namespace", "rq"]);
    s.ok(&["create", "quota", "q", "-n", "rq", "--hard=pods=2"]);
    wait_quota_synced(&s, "rq", "q");
    for name in ["a", "b"] {
        s.ok_stdin(&["create", "-f", "-"], &pod(name, "rq", "{}"));
    }
    let err = s.fails_stdin(&["create", "-f", "-"], &pod("c", "rq", "{}"));
    assert!(
        err.contains("pods \"c\" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"),
        "{err}"
    );
    let used = s.get_json(&["get", "resourcequota", "q", "-n", "rq"]);
    assert_eq!(used["status"]["used"]["pods"], "2");

    // A quota on limits.cpu makes containers name their limit.
    s.ok(&["create", "quota", "cpu", "-n", "rq", "--hard=limits.cpu=4"]);
    wait_quota_synced(&s, "rq", "cpu");
    s.ok(&["delete", "quota", "q", "-n", "rq"]);
    let err = until(Duration::from_secs(10), "the cpu quota", || {
        let out = s.kubectl_stdin(&["create", "-f", "-"], Some(&pod("nolimit", "rq", "{}")));
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        err.contains("must specify").then_some(err)
    });
    assert!(
        err.contains(
            "pods \"nolimit\" is forbidden: failed quota: cpu: must specify limits.cpu for: c"
        ),
        "{err}"
    );
}

#[test]
fn racing_creates_cannot_exceed_a_quota() {
    let s = Server::start_with(&["--disable-scheduler"]);
    s.ok(&["create", "namespace", "race"]);
    // Secrets: nothing else creates them in a new namespace (kube-root-ca.crt is a
    // ConfigMap published in every namespace, and would count).
    s.ok(&["create", "quota", "q", "-n", "race", "--hard=secrets=5"]);
    wait_quota_synced(&s, "race", "q");
    // 40 creates at once from 8 clients (own connections), so many reach the quota
    // check together; only the compare-and-swap of its usage keeps them honest.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let results: Vec<Result<(), kube::Error>> = rt.block_on(async {
        let mut clients = Vec::new();
        for _ in 0..8 {
            clients.push(support::kube_client(&s.kubeconfig).await);
        }
        let creates = (0..40).map(|i| {
            let api: kube::Api<k8s_openapi::api::core::v1::Secret> =
                kube::Api::namespaced(clients[i % clients.len()].clone(), "race");
            async move {
                let mut secret = k8s_openapi::api::core::v1::Secret::default();
                secret.metadata.name = Some(format!("s-{i}"));
                api.create(&Default::default(), &secret).await.map(|_| ())
            }
        });
        futures::future::join_all(creates).await
    });
    let created = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(created, 5, "{results:?}");
    for err in results.iter().filter_map(|r| r.as_ref().err()) {
        let text = err.to_string();
        assert!(text.contains("exceeded quota: q"), "{text}");
    }
    let stored = s.ok(&["get", "secrets", "-n", "race", "-o", "name"]);
    let ours = stored.lines().filter(|l| l.contains("/s-")).count();
    assert_eq!(ours, 5, "{stored}");
    // kubectl sees the same refusal once the quota is full.
    let err = s.fails(&["create", "secret", "generic", "one-more", "-n", "race"]);
    assert!(
        err.contains("secrets \"one-more\" is forbidden: exceeded quota: q, requested: secrets=1, used: secrets=5, limited: secrets=5"),
        "{err}"
    );
}

const PRIVILEGED_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: priv}
spec:
  containers:
  - name: c
    image: busybox
    securityContext: {privileged: true}
"#;

#[test]
fn pod_security_enforces_and_warns_per_namespace_labels() {
    let s = Server::start_with(&["--disable-scheduler", "--disable-controller-manager"]);
    s.ok(&["create", "namespace", "locked"]);
    s.ok(&[
        "label",
        "namespace",
        "locked",
        "pod-security.kubernetes.io/enforce=restricted",
    ]);
    let err = until(Duration::from_secs(10), "enforce=restricted", || {
        let out = s.kubectl_stdin(&["create", "-n", "locked", "-f", "-"], Some(PRIVILEGED_POD));
        (!out.status.success()).then(|| String::from_utf8_lossy(&out.stderr).into_owned())
    });
    let expected = "pods \"priv\" is forbidden: violates PodSecurity \"restricted:latest\": \
privileged (container \"c\" must not set securityContext.privileged=true), \
allowPrivilegeEscalation != false (container \"c\" must set securityContext.allowPrivilegeEscalation=false), \
unrestricted capabilities (container \"c\" must set securityContext.capabilities.drop=[\"ALL\"]), \
runAsNonRoot != true (pod or container \"c\" must set securityContext.runAsNonRoot=true), \
seccompProfile (pod or container \"c\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")";
    assert!(err.contains(expected), "{err}");

    // warn (with a pinned version) admits and tells kubectl, for pods and workloads.
    s.ok(&["create", "namespace", "watched"]);
    s.ok(&[
        "label",
        "namespace",
        "watched",
        "pod-security.kubernetes.io/warn=baseline",
        "pod-security.kubernetes.io/warn-version=v1.33",
    ]);
    let stderr = until(Duration::from_secs(10), "warn=baseline", || {
        let name = format!("p{}", rand::random::<u32>());
        let manifest = PRIVILEGED_POD.replace("name: priv", &format!("name: {name}"));
        let out = s.kubectl_stdin(&["create", "-n", "watched", "-f", "-"], Some(&manifest));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        stderr.contains("Warning:").then_some(stderr)
    });
    assert!(
        stderr.contains("Warning: would violate PodSecurity \"baseline:v1.33\": privileged (container \"c\" must not set securityContext.privileged=true)"),
        "{stderr}"
    );
    let out = s.kubectl_stdin(
        &["create", "-n", "watched", "-f", "-"],
        Some(
            r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: d}
spec:
  selector: {matchLabels: {app: d}}
  template:
    metadata: {labels: {app: d}}
    spec:
      hostNetwork: true
      containers: [{name: c, image: busybox}]
"#,
        ),
    );
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Warning: would violate PodSecurity \"baseline:v1.33\": host namespaces (hostNetwork=true)"),
        "{stderr}"
    );
}

#[test]
fn claims_without_a_class_get_the_default_storage_class() {
    let s = Server::start_with(&["--disable-scheduler", "--disable-controller-manager"]);
    s.ok_stdin(
        &["create", "-f", "-"],
        r#"
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: example.com/none
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: other}
provisioner: example.com/none
"#,
    );
    let claim = |name: &str, class: &str| {
        format!(
            "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {{requests: {{storage: 1Gi}}}}\n{class}"
        )
    };
    let mut n = 0;
    until(Duration::from_secs(10), "the default class", || {
        n += 1;
        let name = format!("data-{n}");
        s.ok_stdin(&["create", "-f", "-"], &claim(&name, ""));
        let pvc = s.get_json(&["get", "pvc", &name]);
        (pvc["spec"]["storageClassName"] == "standard").then_some(())
    });
    s.ok_stdin(
        &["create", "-f", "-"],
        &claim("explicit", "  storageClassName: other\n"),
    );
    assert_eq!(
        s.get_json(&["get", "pvc", "explicit"])["spec"]["storageClassName"],
        "other"
    );
    s.ok_stdin(
        &["create", "-f", "-"],
        &claim("none", "  storageClassName: \"\"\n"),
    );
    assert_eq!(
        s.get_json(&["get", "pvc", "none"])["spec"]["storageClassName"],
        ""
    );
}
