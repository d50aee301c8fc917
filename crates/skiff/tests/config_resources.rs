//! The non-workload resources through the real kubectl: each is created the way users
//! create it, `kubectl get` shows upstream's columns, the server fills upstream's
//! defaults, and invalid objects come back 422 with the offending field in the message.

mod support;

use support::Server;

/// The header line of `kubectl get <args>`, as words.
fn header(server: &Server, args: &[&str]) -> Vec<String> {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    let out = server.ok(&all);
    out.lines()
        .next()
        .unwrap_or_else(|| panic!("no output from kubectl get {args:?}"))
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn assert_header(server: &Server, args: &[&str], want: &str) {
    let got = header(server, args);
    let want: Vec<&str> = want.split_whitespace().collect();
    assert_eq!(got, want, "kubectl get {args:?}");
}

/// `kubectl apply -f -` of `manifest`, expected to fail; returns stderr.
fn apply_fails(server: &Server, manifest: &str) -> String {
    let out = server.kubectl_stdin(&["apply", "--validate=false", "-f", "-"], Some(manifest));
    assert!(
        !out.status.success(),
        "apply unexpectedly succeeded:\n{manifest}"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn apply(server: &Server, manifest: &str) {
    server.ok_stdin(&["apply", "-f", "-"], manifest);
}

/// Runs a `kubectl create <generator>` as a user would (its POST is protobuf).
fn kubectl_create(server: &Server, args: &[&str]) {
    let mut all = vec!["create"];
    all.extend_from_slice(args);
    server.ok(&all);
}

/// Like `kubectl_create`, expecting the server to refuse; returns stderr.
fn kubectl_create_fails(server: &Server, args: &[&str]) -> String {
    let mut all = vec!["create"];
    all.extend_from_slice(args);
    server.fails(&all)
}

#[test]
fn kubectl_create_makes_accounts_rbac_priority_classes_and_ingresses() {
    let server = Server::start();
    kubectl_create(&server, &["serviceaccount", "build"]);
    assert_header(&server, &["serviceaccounts", "build"], "NAME SECRETS AGE");

    kubectl_create(
        &server,
        &["role", "reader", "--verb=get,list", "--resource=pods"],
    );
    kubectl_create(
        &server,
        &[
            "rolebinding",
            "read-pods",
            "--role=reader",
            "--user=alice",
            "--serviceaccount=default:build",
        ],
    );
    kubectl_create(
        &server,
        &[
            "clusterrole",
            "node-reader",
            "--verb=get",
            "--resource=nodes",
        ],
    );
    kubectl_create(
        &server,
        &[
            "clusterrolebinding",
            "read-nodes",
            "--clusterrole=node-reader",
            "--group=devs",
        ],
    );
    assert_header(&server, &["roles"], "NAME CREATED AT");
    assert_header(&server, &["clusterroles", "node-reader"], "NAME CREATED AT");
    assert_header(&server, &["rolebindings"], "NAME ROLE AGE");
    assert_header(
        &server,
        &["rolebindings", "-o", "wide"],
        "NAME ROLE AGE USERS GROUPS SERVICEACCOUNTS",
    );
    assert_header(
        &server,
        &["clusterrolebindings", "read-nodes"],
        "NAME ROLE AGE",
    );
    let wide = server.ok(&["get", "rolebinding", "read-pods", "-o", "wide"]);
    let row: Vec<&str> = wide.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[1], "Role/reader", "{wide}");
    assert!(
        row.contains(&"alice") && row.contains(&"default/build"),
        "{wide}"
    );
    let crb = server.get_json(&["get", "clusterrolebinding", "read-nodes"]);
    assert_eq!(crb["roleRef"]["apiGroup"], "rbac.authorization.k8s.io");

    // The role a binding names is fixed once the binding exists.
    let err = server.fails(&[
        "patch",
        "rolebinding",
        "read-pods",
        "--type=merge",
        "-p",
        r#"{"roleRef":{"name":"other"}}"#,
    ]);
    assert!(err.contains("roleRef: Invalid value"), "{err}");
    assert!(err.contains("cannot change roleRef"), "{err}");

    kubectl_create(
        &server,
        &[
            "priorityclass",
            "high",
            "--value=1000",
            "--description=important",
        ],
    );
    assert_header(
        &server,
        &["priorityclasses", "high"],
        "NAME VALUE GLOBAL-DEFAULT AGE PREEMPTIONPOLICY",
    );
    let pc = server.get_json(&["get", "priorityclass", "high"]);
    assert_eq!(pc["preemptionPolicy"], "PreemptLowerPriority");
    let err = kubectl_create_fails(
        &server,
        &["priorityclass", "too-high", "--value=2000000000"],
    );
    assert!(
        err.contains(
            "value: Forbidden: maximum allowed value of a user defined priority is 1000000000"
        ),
        "{err}"
    );

    kubectl_create(
        &server,
        &[
            "ingress",
            "web",
            "--class=nginx",
            "--rule=shop.example.com/*=web:80",
        ],
    );
    assert_header(
        &server,
        &["ingresses"],
        "NAME CLASS HOSTS ADDRESS PORTS AGE",
    );
    let ing = server.get_json(&["get", "ingress", "web"]);
    assert_eq!(
        ing["spec"]["rules"][0]["http"]["paths"][0]["pathType"],
        "Prefix"
    );
    let table = server.ok(&["get", "ingress", "web"]);
    assert!(table.contains("shop.example.com"), "{table}");
}

#[test]
fn storage_manifests_get_upstream_defaults_and_columns() {
    let server = Server::start();
    apply(
        &server,
        r#"
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: local
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: rancher.io/local-path
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: pv1}
spec:
  capacity: {storage: 1.5Gi}
  accessModes: [ReadWriteOnce]
  storageClassName: local
  hostPath: {path: /tmp/pv1}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
"#,
    );
    let sc = server.get_json(&["get", "storageclass", "local"]);
    assert_eq!(sc["reclaimPolicy"], "Delete");
    assert_eq!(sc["volumeBindingMode"], "Immediate");
    assert_header(
        &server,
        &["storageclasses"],
        "NAME PROVISIONER RECLAIMPOLICY VOLUMEBINDINGMODE ALLOWVOLUMEEXPANSION AGE",
    );
    assert!(server.ok(&["get", "sc"]).contains("local (default)"));

    let pv = server.get_json(&["get", "pv", "pv1"]);
    assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
    assert_eq!(pv["spec"]["volumeMode"], "Filesystem");
    assert_eq!(pv["spec"]["capacity"]["storage"], "1536Mi");
    assert_eq!(pv["status"]["phase"], "Pending");
    assert_header(
        &server,
        &["pv"],
        "NAME CAPACITY ACCESS MODES RECLAIM POLICY STATUS CLAIM STORAGECLASS VOLUMEATTRIBUTESCLASS REASON AGE",
    );
    let pvs = server.ok(&["get", "pv", "pv1", "--no-headers"]);
    let cells: Vec<&str> = pvs.split_whitespace().collect();
    assert_eq!(
        &cells[..5],
        ["pv1", "1536Mi", "RWO", "Retain", "Pending"],
        "{pvs}"
    );

    let pvc = server.get_json(&["get", "pvc", "data"]);
    assert_eq!(pvc["spec"]["volumeMode"], "Filesystem");
    assert_eq!(pvc["status"]["phase"], "Pending");
    assert_header(
        &server,
        &["pvc"],
        "NAME STATUS VOLUME CAPACITY ACCESS MODES STORAGECLASS VOLUMEATTRIBUTESCLASS AGE",
    );

    let err = apply_fails(
        &server,
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: bad}\nspec: {resources: {requests: {cpu: '1'}}}\n",
    );
    assert!(
        err.contains("is invalid") && err.contains("spec.accessModes: Required value"),
        "{err}"
    );
    assert!(
        err.contains("spec.resources[storage]: Required value"),
        "{err}"
    );
    let err = apply_fails(
        &server,
        "apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: bad}\nspec: {capacity: {storage: lots}, accessModes: [ReadWriteOnce], hostPath: {path: /x}}\n",
    );
    assert!(
        err.contains("spec.capacity[storage]: Invalid value: \"lots\": quantities must match"),
        "{err}"
    );
}

#[test]
fn networking_coordination_and_discovery_manifests() {
    let server = Server::start();
    apply(
        &server,
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db}
spec:
  podSelector: {matchLabels: {app: db}}
  egress: [{}]
  ingress:
  - ports: [{port: 5432}]
    from: [{podSelector: {matchLabels: {app: web}}}]
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: leader}
spec: {holderIdentity: node-1, leaseDurationSeconds: 15}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-abc}
addressType: IPv4
endpoints: [{addresses: [10.0.0.1]}, {addresses: [10.0.0.2]}]
ports: [{port: 80}]
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: nginx}
spec: {controller: k8s.io/ingress-nginx}
"#,
    );
    let np = server.get_json(&["get", "networkpolicy", "db"]);
    assert_eq!(
        np["spec"]["policyTypes"],
        serde_json::json!(["Ingress", "Egress"])
    );
    assert_eq!(np["spec"]["ingress"][0]["ports"][0]["protocol"], "TCP");
    assert_header(&server, &["networkpolicies"], "NAME POD-SELECTOR AGE");
    assert!(server.ok(&["get", "netpol", "db"]).contains("app=db"));

    assert_header(&server, &["leases", "leader"], "NAME HOLDER AGE");
    assert!(server.ok(&["get", "lease", "leader"]).contains("node-1"));

    let es = server.get_json(&["get", "endpointslice", "web-abc"]);
    assert_eq!(es["ports"][0]["protocol"], "TCP");
    assert_header(
        &server,
        &["endpointslices"],
        "NAME ADDRESSTYPE PORTS ENDPOINTS AGE",
    );
    assert!(server
        .ok(&["get", "endpointslice", "web-abc"])
        .contains("10.0.0.1,10.0.0.2"));

    assert_header(
        &server,
        &["ingressclasses"],
        "NAME CONTROLLER PARAMETERS AGE",
    );

    let err = apply_fails(
        &server,
        "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {name: bad}\nspec: {leaseDurationSeconds: 0}\n",
    );
    assert!(
        err.contains("spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"),
        "{err}"
    );
    let err = apply_fails(
        &server,
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: bad}\naddressType: IPv5\nendpoints: [{addresses: []}]\n",
    );
    assert!(
        err.contains("addressType: Unsupported value: \"IPv5\""),
        "{err}"
    );
    assert!(
        err.contains("endpoints[0].addresses: Required value: must contain at least 1 address"),
        "{err}"
    );
    let err = apply_fails(
        &server,
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: bad}\nspec:\n  rules:\n  - http:\n      paths:\n      - path: /\n        backend: {service: {name: web, port: {number: 80}}}\n",
    );
    assert!(
        err.contains(
            "spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified"
        ),
        "{err}"
    );
}

#[test]
fn core_config_objects_quotas_limits_and_endpoints() {
    let server = Server::start();
    apply(
        &server,
        r#"
apiVersion: v1
kind: ResourceQuota
metadata: {name: compute}
spec: {hard: {requests.cpu: "2", limits.memory: 2048Mi, pods: "10"}}
---
apiVersion: v1
kind: LimitRange
metadata: {name: defaults}
spec:
  limits:
  - type: Container
    max: {cpu: "2"}
    default: {memory: 512Mi}
---
# Hand-written Endpoints belong to a Service without a selector: the endpoints
# controller deletes Endpoints that have no Service at all, as upstream's does.
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  ports: [{port: 8080}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: web}
subsets:
- addresses: [{ip: 10.0.0.1}]
  ports: [{port: 8080}]
"#,
    );
    let rq = server.get_json(&["get", "resourcequota", "compute"]);
    assert_eq!(rq["spec"]["hard"]["limits.memory"], "2Gi");
    assert_header(&server, &["resourcequotas"], "NAME AGE REQUEST LIMIT");
    let lr = server.get_json(&["get", "limitrange", "defaults"]);
    assert_eq!(lr["spec"]["limits"][0]["default"]["cpu"], "2");
    assert_eq!(lr["spec"]["limits"][0]["defaultRequest"]["memory"], "512Mi");
    assert_header(&server, &["limitranges"], "NAME CREATED AT");
    let ep = server.get_json(&["get", "endpoints", "web"]);
    assert_eq!(ep["subsets"][0]["ports"][0]["protocol"], "TCP");
    assert_header(&server, &["endpoints", "web"], "NAME ENDPOINTS AGE");
    assert!(server.ok(&["get", "ep", "web"]).contains("10.0.0.1:8080"));

    let err = apply_fails(
        &server,
        "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: bad}\nspec: {hard: {cpu: many}}\n",
    );
    assert!(
        err.contains("spec.hard[cpu]: Invalid value: \"many\""),
        "{err}"
    );

    // Secrets: stringData folds into data, and each type needs its keys.
    kubectl_create(
        &server,
        &["secret", "generic", "plain", "--from-literal=user=admin"],
    );
    apply(
        &server,
        "apiVersion: v1\nkind: Secret\nmetadata: {name: sd}\nstringData: {token: abc}\n",
    );
    let sd = server.get_json(&["get", "secret", "sd"]);
    assert_eq!(sd["data"]["token"], "YWJj");
    assert!(sd.get("stringData").is_none());
    let err = apply_fails(
        &server,
        "apiVersion: v1\nkind: Secret\nmetadata: {name: tls}\ntype: kubernetes.io/tls\ndata: {tls.crt: YQ==}\n",
    );
    assert!(err.contains("data[tls.key]: Required value"), "{err}");
    let err = apply_fails(
        &server,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\ndata: {'bad key': x}\n",
    );
    assert!(err.contains("data[bad key]: Invalid value"), "{err}");
}

const CSR_REQUEST: &str = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0KTUlIYk1JR0JBZ0VBTUI4eERqQU1CZ05WQkFNTUJXRnNhV05sTVEwd0N3WURWUVFLREFSa1pYWnpNRmt3RXdZSApLb1pJemowQ0FRWUlLb1pJemowREFRY0RRZ0FFbTZ1ZnNOalU4VU5tNkNrNXRsQWtUQ1BuVUJpbW5jK2V1bHdlClJNMXN6eXVPTWVyQkw5QitJMFFnVEJvTnM4MHRCU280Qk8vMCt3SXV2c1BlODVWRXNhQUFNQW9HQ0NxR1NNNDkKQkFNQ0Ewa0FNRVlDSVFEdlRGVjZEVTJqTkYvbTc1RW9pRVlBaWtMNFY2SUcvcVdKakh1bWJJQ1d1QUloQUxocQp3UjlQb1JTeFh3WUw1R3FkLzM5VUc5dU4vWS9TdHpLdDJIa2hLQ3JVCi0tLS0tRU5EIENFUlRJRklDQVRFIFJFUVVFU1QtLS0tLQo=";

#[test]
fn crds_and_csrs_are_checked_and_listed() {
    let server = Server::start();
    apply(
        &server,
        r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object}}
"#,
    );
    let crd = server.get_json(&["get", "crd", "widgets.example.com"]);
    assert_eq!(crd["spec"]["names"]["singular"], "widget");
    assert_eq!(crd["spec"]["names"]["listKind"], "WidgetList");
    assert_eq!(crd["status"]["acceptedNames"]["kind"], "Widget");
    assert_eq!(crd["status"]["storedVersions"], serde_json::json!(["v1"]));
    assert_header(&server, &["crds"], "NAME CREATED AT");

    let err = apply_fails(
        &server,
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: gadgets.example}\nspec:\n  group: example\n  scope: Namespaced\n  names: {plural: gadgets, kind: Gadget}\n  versions: [{name: v1, served: true, storage: false, schema: {openAPIV3Schema: {type: object}}}]\n",
    );
    assert!(
        err.contains(
            "spec.group: Invalid value: \"example\": should be a domain with at least one dot"
        ),
        "{err}"
    );
    assert!(
        err.contains("must have exactly one version marked as storage version"),
        "{err}"
    );

    apply(
        &server,
        &format!(
            "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata: {{name: alice}}\nspec:\n  request: {CSR_REQUEST}\n  signerName: kubernetes.io/kube-apiserver-client\n  expirationSeconds: 86400\n  usages: [client auth]\n"
        ),
    );
    assert_header(
        &server,
        &["csr"],
        "NAME AGE SIGNERNAME REQUESTOR REQUESTEDDURATION CONDITION",
    );
    let row = server.ok(&["get", "csr", "alice", "--no-headers"]);
    assert!(row.contains("kubernetes.io/kube-apiserver-client"), "{row}");
    assert!(
        row.contains("24h") && row.trim_end().ends_with("Pending"),
        "{row}"
    );
    let csrs = server.ok(&[
        "get",
        "csr",
        "--field-selector=spec.signerName=kubernetes.io/kube-apiserver-client",
        "-o",
        "name",
    ]);
    assert_eq!(
        csrs.trim(),
        "certificatesigningrequest.certificates.k8s.io/alice"
    );

    let err = apply_fails(
        &server,
        "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata: {name: empty}\nspec: {usages: [client auth]}\n",
    );
    assert!(
        err.contains("spec.request: Invalid value")
            && err.contains("PEM block type must be CERTIFICATE REQUEST"),
        "{err}"
    );
    assert!(err.contains("spec.signerName: Required value"), "{err}");
}
