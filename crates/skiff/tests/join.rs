//! Node join and certificates against a real `skiff server`: a node joins with the
//! server's token (CA pinned by hash, CSR auto-approved and signed) and its certificate
//! authenticates as system:node:<name>; a wrong CA hash stops the join before the token
//! is sent; `kubectl certificate approve|deny` decide other requests; ServiceAccount
//! admission gives pods their token volume.

mod support;

use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use serde_json::Value;
use support::{eventually, Server};

/// The user named in the 403 for listing pods.
async fn identity(client: &kube::Client) -> String {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    match pods.list(&Default::default()).await {
        Err(kube::Error::Api(e)) if e.code == 403 => e
            .message
            .split_once("User \"")
            .and_then(|(_, rest)| rest.split('"').next())
            .unwrap_or_else(|| panic!("403 names no user: {}", e.message))
            .to_string(),
        other => panic!("expected a 403, got {other:?}"),
    }
}

fn server_token(server: &Server) -> String {
    server.join_token_file().trim().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn node_joins_with_the_server_token() {
    let server = Server::start_with(&["--disable-scheduler"]);
    let token = server_token(&server);
    let dir = tempfile::tempdir().unwrap();
    let creds = skiff_runtime::join::join(&server.url(), &token, "node-1", dir.path())
        .await
        .expect("join");
    assert!(!creds.reused);
    for f in [
        &creds.ca_cert,
        &creds.client_cert,
        &creds.client_key,
        &creds.kubeconfig,
    ] {
        assert!(f.exists(), "{}", f.display());
    }
    let client = support::kube_client(&creds.kubeconfig).await;
    assert_eq!(identity(&client).await, "system:node:node-1");

    // The request was made by the bootstrap token user, approved automatically, signed.
    let csrs = server.get_json(&["get", "csr"]);
    let csr = &csrs["items"][0];
    let id = token.split("::").nth(1).unwrap().split('.').next().unwrap();
    assert_eq!(csr["spec"]["username"], format!("system:bootstrap:{id}"));
    let groups = csr["spec"]["groups"].to_string();
    assert!(groups.contains("system:bootstrappers"), "{groups}");
    assert!(
        groups.contains("system:bootstrappers:skiff:default-node-token"),
        "{groups}"
    );
    assert_eq!(csr["status"]["conditions"][0]["type"], "Approved");
    assert_eq!(csr["status"]["conditions"][0]["reason"], "AutoApproved");
    let table = server.ok(&["get", "csr"]);
    assert!(table.contains("Approved,Issued"), "{table}");

    // The next start reuses the certificate instead of asking again.
    let again = skiff_runtime::join::join(&server.url(), &token, "node-1", dir.path())
        .await
        .expect("rejoin");
    assert!(again.reused);
    assert_eq!(
        server.get_json(&["get", "csr"])["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // With a bare token the CA must already be there (pinned by an earlier join).
    let pinned = tempfile::tempdir().unwrap();
    std::fs::copy(&creds.ca_cert, pinned.path().join("ca.crt")).unwrap();
    let bare = token.split("::").nth(1).unwrap();
    let other = skiff_runtime::join::join(&server.url(), bare, "node-2", pinned.path())
        .await
        .expect("join with a bare token and a pinned CA");
    let node2 = support::kube_client(&other.kubeconfig).await;
    assert_eq!(identity(&node2).await, "system:node:node-2");

    // A joined node renews its own certificate: approved as a self request.
    use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
    let (pem, _) = request_pem("system:node:node-2", &["system:nodes"]);
    let csr: CertificateSigningRequest = serde_json::from_value(csr_json(
        "renew",
        &pem,
        "kubernetes.io/kube-apiserver-client-kubelet",
    ))
    .unwrap();
    let api: Api<CertificateSigningRequest> = Api::all(node2);
    api.create(&Default::default(), &csr)
        .await
        .expect("a node may request certificates");
    eventually(Duration::from_secs(20), "renewal issued", || {
        server
            .ok(&["get", "csr", "renew"])
            .contains("Approved,Issued")
    });
    let renew = server.get_json(&["get", "csr", "renew"]);
    assert_eq!(renew["spec"]["username"], "system:node:node-2");
    let message = renew["status"]["conditions"][0]["message"]
        .as_str()
        .unwrap();
    assert!(
        message.contains("self kubelet client certificate"),
        "{message}"
    );
    // A node may not ask for another node's certificate.
    let (pem, _) = request_pem("system:node:node-1", &["system:nodes"]);
    let mut steal = csr.clone();
    steal.metadata.name = Some("steal".into());
    steal.spec.request = k8s_openapi::ByteString(pem.into_bytes());
    api.create(&Default::default(), &steal).await.unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(server.ok(&["get", "csr", "steal"]).contains("Pending"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_ca_hash_stops_the_join() {
    let server = Server::start_with(&["--disable-scheduler"]);
    let token = server_token(&server);
    let bare = token.split("::").nth(1).unwrap();
    let wrong = format!("K10{}::{bare}", "0".repeat(64));
    let dir = tempfile::tempdir().unwrap();
    let err = skiff_runtime::join::join(&server.url(), &wrong, "node-1", dir.path())
        .await
        .unwrap_err();
    assert!(
        matches!(err, skiff_runtime::join::JoinError::CaMismatch { .. }),
        "{err}"
    );
    assert!(server.get_json(&["get", "csr"])["items"]
        .as_array()
        .unwrap()
        .is_empty());
    // A bare token with no CA at hand says what to use instead.
    let err = skiff_runtime::join::join(&server.url(), bare, "node-1", dir.path())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("K10"), "{err}");
    // A token the server does not know is refused when the request is sent.
    let ca_hash = token.split("::").next().unwrap();
    let unknown = format!("{ca_hash}::zzzzzz.0123456789abcdef");
    let err = skiff_runtime::join::join(&server.url(), &unknown, "node-1", dir.path())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("Unauthorized") || err.to_string().contains("401"),
        "{err}"
    );
}

fn request_pem(cn: &str, orgs: &[&str]) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    for o in orgs {
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, *o);
    }
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    (csr, key.serialize_pem())
}

/// A CertificateSigningRequest for client certificates, as JSON (kubectl takes it too).
fn csr_json(name: &str, pem: &str, signer: &str) -> Value {
    serde_json::json!({
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {
            "request": base64::engine::general_purpose::STANDARD.encode(pem),
            "signerName": signer, "expirationSeconds": 3600,
            "usages": ["digital signature", "client auth"],
        },
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_certificate_approve_and_deny() {
    let server = Server::start_with(&["--disable-scheduler"]);
    let (alice_csr, alice_key) = request_pem("alice", &["dev"]);
    let (bob_csr, _) = request_pem("bob", &[]);
    let signer = "kubernetes.io/kube-apiserver-client";
    server.ok_stdin(
        &["create", "-f", "-"],
        &csr_json("alice", &alice_csr, signer).to_string(),
    );
    server.ok_stdin(
        &["create", "-f", "-"],
        &csr_json("bob", &bob_csr, signer).to_string(),
    );
    let alice = server.get_json(&["get", "csr", "alice"]);
    assert_eq!(
        alice["spec"]["username"], "admin",
        "the requester is recorded"
    );
    // Nothing approves a plain client certificate by itself.
    std::thread::sleep(Duration::from_secs(2));
    assert!(server.ok(&["get", "csr", "alice"]).contains("Pending"));

    server.ok(&["certificate", "approve", "alice"]);
    eventually(Duration::from_secs(20), "alice's certificate", || {
        server
            .ok(&["get", "csr", "alice"])
            .contains("Approved,Issued")
    });
    let alice = server.get_json(&["get", "csr", "alice"]);
    let cert_b64 = alice["status"]["certificate"].as_str().unwrap();
    let cert = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(cert_b64)
            .unwrap(),
    )
    .unwrap();
    // The certificate authenticates as alice.
    let ca = std::fs::read_to_string(server.data_dir.path().join("server/tls/ca.crt")).unwrap();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let kubeconfig = server.write_file(
        "alice.kubeconfig",
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority-data: {}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\nusers:\n- name: u\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
            server.url(),
            b64(&ca),
            b64(&cert),
            b64(&alice_key)
        ),
    );
    let client = support::kube_client(&kubeconfig).await;
    assert_eq!(identity(&client).await, "alice");

    server.ok(&["certificate", "deny", "bob"]);
    let bob: Value = server.get_json(&["get", "csr", "bob"]);
    assert_eq!(bob["status"]["conditions"][0]["type"], "Denied");
    std::thread::sleep(Duration::from_secs(1));
    let bob: Value = server.get_json(&["get", "csr", "bob"]);
    assert!(
        bob["status"].get("certificate").is_none(),
        "a denied request is not signed"
    );
    assert!(server.ok(&["get", "csr", "bob"]).contains("Denied"));
    // Approving a denied request is invalid.
    let err = server.fails(&["certificate", "approve", "bob"]);
    assert!(
        err.contains("mutually exclusive") || err.contains("Denied"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn service_account_admission_mounts_the_token() {
    let server = Server::start_with(&["--disable-scheduler"]);
    eventually(Duration::from_secs(20), "default ServiceAccount", || {
        server
            .kubectl(&["get", "serviceaccount", "default"])
            .status
            .success()
    });
    server.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  initContainers: [{name: init, image: busybox}]\n  containers: [{name: c, image: busybox}, {name: d, image: busybox}]\n",
    );
    let pod = server.get_json(&["get", "pod", "p"]);
    assert_eq!(pod["spec"]["serviceAccountName"], "default");
    let volume = &pod["spec"]["volumes"][0];
    let name = volume["name"].as_str().unwrap();
    assert!(
        name.starts_with("kube-api-access-") && name.len() == "kube-api-access-".len() + 5,
        "{name}"
    );
    let sources = &volume["projected"]["sources"];
    assert_eq!(sources[0]["serviceAccountToken"]["expirationSeconds"], 3607);
    assert_eq!(sources[0]["serviceAccountToken"]["path"], "token");
    assert_eq!(sources[1]["configMap"]["name"], "kube-root-ca.crt");
    assert_eq!(sources[2]["downwardAPI"]["items"][0]["path"], "namespace");
    for list in ["initContainers", "containers"] {
        for c in pod["spec"][list].as_array().unwrap() {
            let m = &c["volumeMounts"][0];
            assert_eq!(m["name"], name);
            assert_eq!(
                m["mountPath"],
                "/var/run/secrets/kubernetes.io/serviceaccount"
            );
            assert_eq!(m["readOnly"], true);
        }
    }
    // The CA the volume refers to is published in the namespace.
    eventually(Duration::from_secs(20), "kube-root-ca.crt", || {
        server
            .kubectl(&["get", "configmap", "kube-root-ca.crt"])
            .status
            .success()
    });
    let cm = server.get_json(&["get", "configmap", "kube-root-ca.crt"]);
    let ca = std::fs::read_to_string(server.data_dir.path().join("server/tls/ca.crt")).unwrap();
    assert_eq!(cm["data"]["ca.crt"], ca);

    // automountServiceAccountToken: false keeps the token out.
    server.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: Pod\nmetadata: {name: q}\nspec:\n  automountServiceAccountToken: false\n  containers: [{name: c, image: busybox}]\n",
    );
    let q = server.get_json(&["get", "pod", "q"]);
    assert!(q["spec"].get("volumes").is_none(), "{}", q["spec"]);

    // A pod naming a missing account is refused with upstream's message.
    let err = server.fails_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: Pod\nmetadata: {name: r}\nspec:\n  serviceAccountName: ghost\n  containers: [{name: c, image: busybox}]\n",
    );
    assert!(
        err.contains("pods \"r\" is forbidden: error looking up service account default/ghost: serviceaccount \"ghost\" not found"),
        "{err}"
    );
}
