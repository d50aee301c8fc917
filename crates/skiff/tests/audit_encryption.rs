//! Audit log and encryption at rest, end to end: a real server on a real etcd with a
//! policy and an EncryptionConfiguration, driven by the real kubectl; etcd is then read
//! directly (as `etcdctl get` would) to see what is really stored.

mod support;

use std::time::Duration;

use serde_json::Value;
use skiff_store::Store;
use skiff_testkit::EtcdCluster;
use support::{eventually, Server};

const POLICY: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  userGroups: ["system:nodes"]
- level: None
  users: ["system:kube-scheduler", "system:kube-controller-manager"]
- level: Request
  resources:
  - group: ""
    resources: ["secrets"]
- level: RequestResponse
  resources:
  - group: ""
    resources: ["configmaps"]
- level: Metadata
  verbs: ["create", "delete"]
"#;

// 32 random bytes, base64 (test keys only).
const OLD_KEY: &str = "dGhpcnR5LXR3by1ieXRlcy1vZi1zZWNyZXQta2V5ISE=";
const NEW_KEY: &str = "bmV3LWtleS1mb3Itcm90YXRpb24tMzItYnl0ZXMtISE=";

fn encryption(keys: &[(&str, &str)]) -> String {
    let mut s = String::from(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - aescbc:\n      keys:\n",
    );
    for (name, secret) in keys {
        s.push_str(&format!("      - name: {name}\n        secret: {secret}\n"));
    }
    s.push_str("  - identity: {}\n");
    s
}

fn raw_value(etcd: &EtcdCluster, key: &str) -> Vec<u8> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store =
            skiff_store::EtcdStore::connect(skiff_store::EtcdOptions::new(etcd.endpoints()))
                .await
                .unwrap();
        store
            .get(key.as_bytes())
            .await
            .unwrap()
            .expect("key in etcd")
            .value
            .to_vec()
    })
}

fn audit_events(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each audit line is JSON"))
        .collect()
}

#[test]
fn secrets_are_ciphertext_in_etcd_and_requests_are_audited() {
    let etcd = EtcdCluster::start();
    let endpoints = etcd.endpoints().join(",");
    let files = tempfile::tempdir().unwrap();
    let policy = files.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let enc = files.path().join("encryption.yaml");
    std::fs::write(&enc, encryption(&[("key1", OLD_KEY)])).unwrap();
    let log = files.path().join("audit").join("audit.log");
    let mut server = Server::start_with(&[
        "--datastore-endpoint",
        &endpoints,
        "--encryption-provider-config",
        enc.to_str().unwrap(),
        "--audit-policy-file",
        policy.to_str().unwrap(),
        "--audit-log-path",
        log.to_str().unwrap(),
    ]);

    server.ok(&[
        "create",
        "secret",
        "generic",
        "db",
        "--from-literal=password=hunter2-s3cret",
    ]);
    server.ok(&[
        "create",
        "configmap",
        "settings",
        "--from-literal=mode=fast",
    ]);
    // The API shows plaintext; etcd holds only ciphertext under upstream's prefix.
    let shown = server.ok(&["get", "secret", "db", "-o", "jsonpath={.data.password}"]);
    assert_eq!(shown.trim(), "aHVudGVyMi1zM2NyZXQ="); // base64("hunter2-s3cret")
    let stored = raw_value(&etcd, "/registry/secrets/default/db");
    assert!(
        stored.starts_with(b"k8s:enc:aescbc:v1:key1:"),
        "{:?}",
        String::from_utf8_lossy(&stored[..40.min(stored.len())])
    );
    let text = String::from_utf8_lossy(&stored);
    assert!(!text.contains("aHVudGVyMi1zM2NyZXQ=") && !text.contains("hunter2"));
    // Not configured: stored as is.
    let cm = raw_value(&etcd, "/registry/configmaps/default/settings");
    assert!(String::from_utf8_lossy(&cm).contains("fast"));

    // Key rotation: a new first key, the old one still listed; rewriting moves the
    // secret to the new key; the old key can then be dropped.
    std::fs::write(&enc, encryption(&[("key2", NEW_KEY), ("key1", OLD_KEY)])).unwrap();
    server.restart();
    assert_eq!(
        server
            .ok(&["get", "secret", "db", "-o", "jsonpath={.data.password}"])
            .trim(),
        "aHVudGVyMi1zM2NyZXQ="
    );
    let all = server.ok(&["get", "secrets", "-A", "-o", "json"]);
    server.ok_stdin(&["replace", "-f", "-"], &all);
    assert!(
        raw_value(&etcd, "/registry/secrets/default/db").starts_with(b"k8s:enc:aescbc:v1:key2:")
    );
    std::fs::write(&enc, encryption(&[("key2", NEW_KEY)])).unwrap();
    server.restart();
    assert_eq!(
        server
            .ok(&["get", "secret", "db", "-o", "jsonpath={.data.password}"])
            .trim(),
        "aHVudGVyMi1zM2NyZXQ="
    );

    // The audit log: JSON lines as audit.k8s.io/v1 Events.
    let mut events = Vec::new();
    eventually(Duration::from_secs(5), "audit events written", || {
        events = audit_events(&log);
        events
            .iter()
            .any(|e| e["objectRef"]["resource"] == "configmaps")
    });
    for e in &events {
        assert_eq!(e["apiVersion"], "audit.k8s.io/v1");
        assert_eq!(e["kind"], "Event");
        assert_ne!(e["stage"], "RequestReceived", "omitted by the policy");
        assert!(e["auditID"].as_str().is_some_and(|id| !id.is_empty()));
        assert_ne!(e["user"]["username"], "system:kube-scheduler");
    }
    let secret_create = events
        .iter()
        .find(|e| e["verb"] == "create" && e["objectRef"]["resource"] == "secrets")
        .expect("the secret create is audited");
    assert_eq!(secret_create["level"], "Request");
    assert_eq!(
        secret_create["objectRef"]["name"],
        Value::Null,
        "create names no object in the URL"
    );
    assert_eq!(secret_create["responseStatus"]["code"], 201);
    assert!(secret_create["user"]["groups"]
        .to_string()
        .contains("system:masters"));
    assert!(secret_create["sourceIPs"][0] == "127.0.0.1");
    // Secrets' contents never appear below RequestResponse.
    let whole = std::fs::read_to_string(&log).unwrap();
    assert!(!whole.contains("aHVudGVyMi1zM2NyZXQ=") && !whole.contains("hunter2"));
    // RequestResponse for configmaps: request and response objects are both there.
    let cm_create = events
        .iter()
        .find(|e| e["verb"] == "create" && e["objectRef"]["resource"] == "configmaps")
        .unwrap();
    assert_eq!(cm_create["level"], "RequestResponse");
    assert_eq!(cm_create["requestObject"]["data"]["mode"], "fast");
    assert_eq!(cm_create["responseObject"]["metadata"]["name"], "settings");
    // A failed request carries its Status.
    server.fails(&[
        "create",
        "configmap",
        "settings",
        "--from-literal=mode=slow",
    ]);
    eventually(Duration::from_secs(5), "the conflict audited", || {
        audit_events(&log).iter().any(|e| {
            e["objectRef"]["resource"] == "configmaps"
                && e["responseStatus"]["code"] == 409
                && e["responseStatus"]["reason"] == "AlreadyExists"
        })
    });
}

#[test]
fn bad_configuration_files_stop_the_server_with_a_message() {
    let files = tempfile::tempdir().unwrap();
    let enc = files.path().join("encryption.yaml");
    std::fs::write(
        &enc,
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - aesgcm:\n      keys:\n      - name: k\n        secret: c2hvcnQ=\n",
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args([
            "server",
            "--disable-scheduler",
            "--disable-controller-manager",
            "--https-listen-port",
            "0",
            "--data-dir",
        ])
        .arg(data.path())
        .arg("--encryption-provider-config")
        .arg(&enc)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("16, 24 or 32 bytes"), "{err}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["server", "--https-listen-port", "0", "--data-dir"])
        .arg(data.path())
        .args(["--audit-policy-file", "/nonexistent.yaml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--audit-log-path"));
}
