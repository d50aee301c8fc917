//! `skiff server` comes up on an empty data dir, writes a working admin kubeconfig, and
//! refuses requests with bad credentials (401).

mod support;

use support::Server;

#[test]
fn fresh_server_is_ready_with_a_working_admin_kubeconfig() {
    let server = Server::start();
    let meta = std::fs::metadata(&server.kubeconfig).expect("kubeconfig written");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "kubeconfig must be private"
    );
    let namespaces = server.ok(&["get", "namespaces", "-o", "name"]);
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(
            namespaces.contains(&format!("namespace/{ns}")),
            "{ns} missing from:\n{namespaces}"
        );
    }
    let version = server.ok(&["version", "-o", "json"]);
    assert!(version.contains("\"minor\": \"33\""), "{version}");
}

#[test]
fn requests_with_bad_credentials_are_refused() {
    let server = Server::start();
    let anon = server.data_dir.path().join("anon.yaml");
    std::fs::write(
        &anon,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: s\n  cluster:\n    server: {}\n    insecure-skip-tls-verify: true\ncontexts:\n- name: s\n  context: {{cluster: s, user: nobody}}\ncurrent-context: s\nusers:\n- name: nobody\n  user:\n    token: not-a-real-token\n",
            server.url()
        ),
    )
    .unwrap();
    // -v=6 logs each response's status: assert what the server answered, not kubectl's
    // wording of it (the 1.32 and 1.33 kubectl the dispatcher may pick word it differently).
    let out = support::kubectl_with(&anon, &["get", "pods", "-v=6"], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("401 Unauthorized"), "{err}");
    assert!(
        !err.contains("200 OK"),
        "no request may succeed with a bad token:\n{err}"
    );
}
