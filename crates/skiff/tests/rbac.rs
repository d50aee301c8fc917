//! RBAC end to end: a real `skiff server`, real kubectl and kube-rs, per-user kubeconfigs
//! (client certificates issued with the cluster CA, and a static token). Users get exactly
//! what their roles say, escalation is refused, aggregation follows labels, and a node
//! identity reaches only its own pods' objects.

mod support;

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use support::{eventually, kubectl_with, Server};

/// A user with its own kubeconfig.
struct User {
    kubeconfig: PathBuf,
}

impl User {
    /// A client-certificate user (CN `name`, O `groups`) signed by the server's CA.
    fn cert(server: &Server, name: &str, groups: &[&str]) -> Self {
        let tls = server.data_dir.path().join("server").join("tls");
        let ca = std::fs::read_to_string(tls.join("ca.crt")).expect("CA certificate");
        let ca_key = std::fs::read_to_string(tls.join("ca.key")).expect("CA key");
        let (cert, key) =
            skiff_apiserver::pki::issue(&ca, &ca_key, name, groups, &[], false).expect("issue");
        let file = name.replace(':', "_");
        let dir = server.data_dir.path();
        let (cert_path, key_path) = (
            dir.join(format!("{file}.crt")),
            dir.join(format!("{file}.key")),
        );
        std::fs::write(&cert_path, cert).expect("write certificate");
        std::fs::write(&key_path, key).expect("write key");
        let yaml = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: s\n  cluster:\n    server: {}\n    certificate-authority: {}\ncontexts:\n- name: s\n  context:\n    cluster: s\n    user: u\ncurrent-context: s\nusers:\n- name: u\n  user:\n    client-certificate: {}\n    client-key: {}\n",
            server.url(),
            tls.join("ca.crt").display(),
            cert_path.display(),
            key_path.display()
        );
        let path = dir.join(format!("{file}.kubeconfig"));
        std::fs::write(&path, yaml).expect("write kubeconfig");
        User { kubeconfig: path }
    }

    /// A bearer-token user.
    fn token(server: &Server, name: &str, token: &str) -> Self {
        let ca = server.data_dir.path().join("server/tls/ca.crt");
        let yaml = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: s\n  cluster:\n    server: {}\n    certificate-authority: {}\ncontexts:\n- name: s\n  context:\n    cluster: s\n    user: {name}\ncurrent-context: s\nusers:\n- name: {name}\n  user:\n    token: {token}\n",
            server.url(),
            ca.display()
        );
        let path = server.data_dir.path().join(format!("{name}.kubeconfig"));
        std::fs::write(&path, yaml).expect("write kubeconfig");
        User { kubeconfig: path }
    }

    fn run(&self, args: &[&str]) -> Output {
        kubectl_with(&self.kubeconfig, args, None)
    }

    fn run_stdin(&self, args: &[&str], stdin: &str) -> Output {
        kubectl_with(&self.kubeconfig, args, Some(stdin))
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kubectl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "kubectl {} unexpectedly succeeded: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn can_i(&self, args: &[&str]) -> String {
        let mut all = vec!["auth", "can-i"];
        all.extend(args);
        // can-i exits 1 for "no": only stdout matters.
        String::from_utf8_lossy(&self.run(&all).stdout)
            .trim()
            .to_string()
    }
}

const SECOND: Duration = Duration::from_secs(5);

#[test]
fn users_get_exactly_what_their_roles_grant() {
    let tokens = tempfile::tempdir().unwrap();
    let token_file = tokens.path().join("tokens.csv");
    std::fs::write(&token_file, "bobtoken,bob,1002,\"dev-team\"\n").unwrap();
    let server = Server::start_with(&[
        "--token-auth-file",
        token_file.to_str().unwrap(),
        "--disable-scheduler",
    ]);
    let alice = User::cert(&server, "alice", &[]);
    let bob = User::token(&server, "bob", "bobtoken");

    // Nothing granted yet: upstream's message, for a resource and for a path.
    let err = alice.fails(&["get", "pods", "-n", "default"]);
    assert!(
        err.contains("Error from server (Forbidden): pods is forbidden: User \"alice\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""),
        "{err}"
    );
    let err = alice.fails(&["get", "--raw", "/metrics"]);
    assert!(
        err.contains("forbidden: User \"alice\" cannot get path \"/metrics\""),
        "{err}"
    );
    // The default policy: discovery and public info for every authenticated user.
    assert!(alice
        .ok(&["get", "--raw", "/version"])
        .contains("gitVersion"));
    assert!(alice.ok(&["api-resources"]).contains("pods"));
    let who = alice.ok(&["auth", "whoami"]);
    assert!(
        who.contains("alice") && who.contains("system:authenticated"),
        "{who}"
    );
    assert!(bob.ok(&["auth", "whoami"]).contains("dev-team"));

    // A Role and RoleBinding grant exactly what they say, in their namespace only.
    server.ok(&["create", "namespace", "team"]);
    server.ok(&["create", "configmap", "one", "-n", "team"]);
    server.ok(&["create", "configmap", "two", "-n", "team"]);
    server.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pod-reader, namespace: team}
rules:
- apiGroups: [""]
  resources: ["pods", "pods/log"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["configmaps"]
  resourceNames: ["one"]
  verbs: ["get"]
- apiGroups: ["*"]
  resources: ["*/scale"]
  verbs: ["update"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: alice-reads, namespace: team}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}
"#,
    );
    eventually(SECOND, "alice may list pods in team", || {
        alice.run(&["get", "pods", "-n", "team"]).status.success()
    });
    alice.fails(&["get", "pods", "-n", "default"]);
    let err = alice.fails(&["delete", "pod", "x", "-n", "team"]);
    assert!(err.contains("cannot delete resource \"pods\""), "{err}");
    assert!(alice
        .ok(&["get", "configmap", "one", "-n", "team"])
        .contains("one"));
    let err = alice.fails(&["get", "configmap", "two", "-n", "team"]);
    assert!(err.contains("cannot get resource \"configmaps\""), "{err}");
    assert_eq!(alice.can_i(&["list", "pods", "-n", "team"]), "yes");
    assert_eq!(alice.can_i(&["list", "pods", "-n", "default"]), "no");
    assert_eq!(
        alice.can_i(&["get", "pods", "--subresource=log", "-n", "team"]),
        "yes"
    );
    assert_eq!(
        alice.can_i(&["get", "pods", "--subresource=exec", "-n", "team"]),
        "no"
    );
    assert_eq!(
        alice.can_i(&[
            "update",
            "deployments.apps",
            "--subresource=scale",
            "-n",
            "team"
        ]),
        "yes"
    );
    assert_eq!(
        alice.can_i(&["update", "deployments.apps", "-n", "team"]),
        "no"
    );
    let list = alice.ok(&["auth", "can-i", "--list", "-n", "team"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("pods ") && l.contains("[get list watch]")),
        "{list}"
    );
    assert!(list.contains("[one]"), "{list}");
    assert!(
        list.contains("selfsubjectaccessreviews.authorization.k8s.io"),
        "{list}"
    );
    // SubjectAccessReview / LocalSubjectAccessReview: the admin asks about alice.
    let review = |kind: &str, ns: &str, verb: &str| {
        let manifest = format!(
            "{{\"apiVersion\": \"authorization.k8s.io/v1\", \"kind\": \"{kind}\", \"spec\": {{\"user\": \"alice\", \"resourceAttributes\": {{\"namespace\": \"{ns}\", \"verb\": \"{verb}\", \"resource\": \"pods\"}}}}}}"
        );
        let path = if kind == "SubjectAccessReview" {
            "/apis/authorization.k8s.io/v1/subjectaccessreviews".to_string()
        } else {
            format!("/apis/authorization.k8s.io/v1/namespaces/{ns}/localsubjectaccessreviews")
        };
        let out = server.ok_stdin(&["create", "--raw", &path, "-f", "-"], &manifest);
        let v: serde_json::Value = serde_json::from_str(&out).expect("review JSON");
        assert_eq!(v["kind"], kind);
        v["status"]["allowed"].as_bool()
    };
    assert_eq!(review("SubjectAccessReview", "team", "list"), Some(true));
    assert_eq!(review("SubjectAccessReview", "team", "delete"), Some(false));
    assert_eq!(
        review("LocalSubjectAccessReview", "team", "get"),
        Some(true)
    );
    // Impersonation: the admin may act as alice (and sees her limits); alice may not
    // act as anyone.
    let as_alice = |ns: &str| {
        let out = server.kubectl(&["auth", "can-i", "list", "pods", "-n", ns, "--as", "alice"]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(
        (as_alice("team").as_str(), as_alice("default").as_str()),
        ("yes", "no")
    );
    let err = alice.fails(&["get", "pods", "-n", "team", "--as", "bob"]);
    assert!(
        err.contains("users \"bob\" is forbidden: User \"alice\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"),
        "{err}"
    );

    // A ClusterRoleBinding to a group: bob reads through the aggregated `view` role
    // everywhere, but may not write, nor read secrets.
    server.ok(&[
        "create",
        "clusterrolebinding",
        "devs-view",
        "--clusterrole=view",
        "--group=dev-team",
    ]);
    eventually(Duration::from_secs(20), "bob may list deployments", || {
        bob.run(&["get", "deployments", "-A"]).status.success()
    });
    let err = bob.fails(&["get", "secrets", "-n", "default"]);
    assert!(
        err.contains("User \"bob\" cannot list resource \"secrets\""),
        "{err}"
    );
    let err = bob.fails(&["create", "configmap", "x", "-n", "default"]);
    assert!(
        err.contains("User \"bob\" cannot create resource \"configmaps\""),
        "{err}"
    );

    // A removed binding takes the grant away as quickly.
    server.ok(&["delete", "rolebinding", "alice-reads", "-n", "team"]);
    eventually(SECOND, "alice loses pods in team", || {
        !alice.run(&["get", "pods", "-n", "team"]).status.success()
    });

    // kube-rs sees upstream's Status for a denial.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = support::kube_client(&alice.kubeconfig).await;
        let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
            kube::Api::namespaced(client, "default");
        match secrets.list(&Default::default()).await {
            Err(kube::Error::Api(e)) => {
                assert_eq!((e.code, e.reason.as_str()), (403, "Forbidden"));
                assert!(e
                    .message
                    .contains("User \"alice\" cannot list resource \"secrets\""));
            }
            other => panic!("expected 403, got {other:?}"),
        }
    });
}

#[test]
fn escalation_is_refused_unless_escalate_or_bind_is_held() {
    let server = Server::start_with(&["--disable-scheduler", "--disable-controller-manager"]);
    let alice = User::cert(&server, "alice", &[]);
    server.ok(&["create", "namespace", "team"]);
    server.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: rbac-editor, namespace: team}
rules:
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["create", "get", "list", "update"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: alice-rbac, namespace: team}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: rbac-editor}
subjects: [{kind: User, name: alice}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: secret-reader, namespace: team}
rules:
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
"#,
    );
    eventually(SECOND, "alice may list roles", || {
        alice.run(&["get", "roles", "-n", "team"]).status.success()
    });
    // Granting what she holds is fine; more is refused with upstream's text.
    alice.ok(&[
        "create",
        "role",
        "cm",
        "--verb=get",
        "--resource=configmaps",
        "-n",
        "team",
    ]);
    let err = alice.fails(&[
        "create",
        "role",
        "sec",
        "--verb=get",
        "--resource=secrets",
        "-n",
        "team",
    ]);
    assert!(
        err.contains("roles.rbac.authorization.k8s.io \"sec\" is forbidden: user \"alice\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\"]}"),
        "{err}"
    );
    let bind = [
        "create",
        "rolebinding",
        "me-secrets",
        "--role=secret-reader",
        "--user=alice",
        "-n",
        "team",
    ];
    let err = alice.fails(&bind);
    assert!(
        err.contains("attempting to grant RBAC permissions not currently held"),
        "{err}"
    );
    // `bind` on that role lets her bind it; `escalate` lets her write any rules.
    server.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: rbac-powers, namespace: team}
rules:
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles"]
  resourceNames: ["secret-reader"]
  verbs: ["bind"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles"]
  verbs: ["escalate"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: alice-powers, namespace: team}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: rbac-powers}
subjects: [{kind: User, name: alice}]
"#,
    );
    eventually(SECOND, "alice may bind secret-reader", || {
        alice.run(&bind).status.success()
    });
    alice.ok(&[
        "create",
        "role",
        "sec",
        "--verb=get",
        "--resource=secrets",
        "-n",
        "team",
    ]);
    // The binding is in force: she reads secrets now.
    server.ok(&["create", "secret", "generic", "s", "-n", "team"]);
    eventually(SECOND, "alice may read a secret", || {
        alice
            .run(&["get", "secret", "s", "-n", "team"])
            .status
            .success()
    });
    // Admins are never refused.
    server.ok(&["create", "clusterrole", "big", "--verb=*", "--resource=*"]);
}

#[test]
fn default_policy_and_aggregation_follow_labels() {
    let server = Server::start_with(&["--disable-scheduler"]);
    let admin_role = server.get_json(&["get", "clusterrole", "cluster-admin"]);
    assert_eq!(
        admin_role["metadata"]["labels"]["kubernetes.io/bootstrapping"],
        "rbac-defaults"
    );
    assert_eq!(
        admin_role["metadata"]["annotations"]["rbac.authorization.kubernetes.io/autoupdate"],
        "true"
    );
    let binding = server.get_json(&["get", "clusterrolebinding", "system:kube-scheduler"]);
    assert_eq!(binding["subjects"][0]["name"], "system:kube-scheduler");
    for name in [
        "system:basic-user",
        "system:discovery",
        "system:public-info-viewer",
        "system:node-proxier",
    ] {
        server.ok(&["get", "clusterrolebinding", name]);
    }
    // The aggregation loop fills admin/edit/view from the aggregate-to-* roles, and
    // edit's rules flow on into admin.
    let rules_of = |role: &str| server.get_json(&["get", "clusterrole", role])["rules"].to_string();
    eventually(Duration::from_secs(20), "view aggregates pods", || {
        rules_of("view").contains("pods")
    });
    eventually(Duration::from_secs(20), "admin aggregates edit", || {
        let admin = rules_of("admin");
        admin.contains("rolebindings") && admin.contains("pods/exec")
    });
    server.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: widgets-view
  labels: {rbac.authorization.k8s.io/aggregate-to-view: "true"}
rules:
- apiGroups: ["example.com"]
  resources: ["widgets"]
  verbs: ["get", "list", "watch"]
"#,
    );
    eventually(SECOND, "view picks up widgets", || {
        rules_of("view").contains("widgets")
    });
    eventually(SECOND, "admin picks up widgets through edit", || {
        rules_of("admin").contains("widgets")
    });
    // A role that stops matching leaves.
    server.ok(&[
        "label",
        "clusterrole",
        "widgets-view",
        "rbac.authorization.k8s.io/aggregate-to-view-",
    ]);
    eventually(SECOND, "view drops widgets", || {
        !rules_of("view").contains("widgets")
    });
    // A default role loses a rule: the next start puts it back (autoupdate).
    server.ok(&[
        "patch", "clusterrole", "system:basic-user", "--type=json",
        "-p", r#"[{"op": "replace", "path": "/rules", "value": [{"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"], "verbs": ["create"]}]}]"#,
    ]);
    let mut server = server;
    server.restart();
    let rules = server.get_json(&["get", "clusterrole", "system:basic-user"])["rules"].to_string();
    assert!(rules.contains("selfsubjectaccessreviews"), "{rules}");
}

const NODE_OBJECTS: &str = r#"
apiVersion: v1
kind: Node
metadata: {name: n1}
---
apiVersion: v1
kind: Node
metadata: {name: n2}
---
apiVersion: v1
kind: Secret
metadata: {name: s1, namespace: default}
---
apiVersion: v1
kind: Secret
metadata: {name: s2, namespace: default}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: c1, namespace: default}
---
apiVersion: v1
kind: Pod
metadata: {name: p1, namespace: default}
spec:
  nodeName: n1
  volumes: [{name: s, secret: {secretName: s1}}]
  containers:
  - name: c
    image: busybox
    envFrom: [{configMapRef: {name: c1}}]
---
apiVersion: v1
kind: Pod
metadata: {name: p2, namespace: default}
spec:
  nodeName: n2
  volumes: [{name: s, secret: {secretName: s2}}]
  containers: [{name: c, image: busybox}]
"#;

#[test]
fn a_node_reaches_only_its_own_pods_and_their_objects() {
    let server = Server::start_with(&["--disable-scheduler", "--disable-controller-manager"]);
    server.ok_stdin(&["apply", "-f", "-"], NODE_OBJECTS);
    let node = User::cert(&server, "system:node:n1", &["system:nodes"]);
    eventually(SECOND, "n1 may read its pod's secret", || {
        node.run(&["get", "secret", "s1", "-n", "default"])
            .status
            .success()
    });
    node.ok(&["get", "configmap", "c1", "-n", "default"]);
    node.ok(&["get", "pod", "p1", "-n", "default"]);
    let err = node.fails(&["get", "secret", "s2", "-n", "default"]);
    assert!(
        err.contains("secrets \"s2\" is forbidden: User \"system:node:n1\" cannot get resource \"secrets\" in API group \"\" in the namespace \"default\": no relationship found between node 'n1' and this object"),
        "{err}"
    );
    node.fails(&["get", "pod", "p2", "-n", "default"]);
    node.fails(&["get", "pods", "-A"]);
    let mine = node.ok(&[
        "get",
        "pods",
        "-A",
        "--field-selector",
        "spec.nodeName=n1",
        "-o",
        "name",
    ]);
    assert_eq!(mine.trim(), "pod/p1");
    node.ok(&["get", "nodes"]);
    // Its own Node and Lease, nobody else's.
    node.ok(&["label", "node", "n1", "zone=a"]);
    let err = node.fails(&["label", "node", "n2", "zone=a"]);
    assert!(
        err.contains("nodes \"n2\" is forbidden: node \"n1\" is not allowed to modify node \"n2\""),
        "{err}"
    );
    // Labels kept for administrators to steer workloads, and taints, are not the node's.
    let err = node.fails(&[
        "label",
        "node",
        "n1",
        "node-restriction.kubernetes.io/db=yes",
    ]);
    assert!(
        err.contains("nodes \"n1\" is forbidden: is not allowed to modify labels: node-restriction.kubernetes.io/db"),
        "{err}"
    );
    let err = node.fails(&["taint", "node", "n1", "dedicated=db:NoSchedule"]);
    assert!(
        err.contains("node \"n1\" is not allowed to modify taints"),
        "{err}"
    );
    server.ok(&[
        "label",
        "node",
        "n1",
        "node-restriction.kubernetes.io/db=yes",
    ]);
    let lease = |name: &str| {
        format!("apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {{name: {name}, namespace: kube-node-lease}}\nspec: {{holderIdentity: {name}}}\n")
    };
    assert!(node
        .run_stdin(&["create", "-f", "-"], &lease("n1"))
        .status
        .success());
    let out = node.run_stdin(&["create", "-f", "-"], &lease("n2"));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("can only access node lease with the same name as the requesting node"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    node.ok(&["get", "lease", "n1", "-n", "kube-node-lease"]);
    let err = node.fails(&["delete", "lease", "n2", "-n", "kube-node-lease"]);
    assert!(
        err.contains("can only access node lease with the same name"),
        "{err}"
    );
    // Pods: only mirror pods bound to itself; its pods' status; deletes of its pods.
    let pod = |name: &str, node: &str, mirror: bool| {
        let ann = if mirror {
            "annotations: {kubernetes.io/config.mirror: abc}, "
        } else {
            ""
        };
        format!("apiVersion: v1\nkind: Pod\nmetadata: {{{ann}name: {name}, namespace: default}}\nspec: {{nodeName: {node}, containers: [{{name: c, image: busybox}}]}}\n")
    };
    let out = node.run_stdin(&["create", "-f", "-"], &pod("m0", "n1", false));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("node \"n1\" can only create mirror pods")
    );
    let out = node.run_stdin(&["create", "-f", "-"], &pod("m2", "n2", true));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("can only create pods with spec.nodeName set to itself"));
    assert!(node
        .run_stdin(&["create", "-f", "-"], &pod("m1", "n1", true))
        .status
        .success());
    node.fails(&["delete", "pod", "p2", "-n", "default", "--wait=false"]);
    node.ok(&["delete", "pod", "m1", "-n", "default", "--wait=false"]);
    // Once p1 is gone, so is n1's access to its secret.
    server.ok(&[
        "delete",
        "pod",
        "p1",
        "-n",
        "default",
        "--grace-period=0",
        "--force",
    ]);
    eventually(SECOND, "n1 loses s1", || {
        !node
            .run(&["get", "secret", "s1", "-n", "default"])
            .status
            .success()
    });
}
