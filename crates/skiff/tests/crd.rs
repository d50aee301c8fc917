//! CustomResourceDefinitions served as APIs, driven with the real kubectl against the
//! real `skiff server`: establishment within a second, discovery and short names, CRUD
//! and apply of custom resources, schema validation messages, defaulting, pruning,
//! printer columns, the status and scale subresources, two versions, name conflicts,
//! validation of the CRD itself, namespace deletion, and deleting a CRD with its objects.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::{eventually, Server};

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names:
    plural: widgets
    singular: widget
    kind: Widget
    shortNames: [wd]
    categories: [all]
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
        labelSelectorPath: .status.selector
    additionalPrinterColumns:
    - name: Replicas
      type: integer
      jsonPath: .spec.replicas
    - name: Size
      type: string
      jsonPath: .spec.size
    - name: Ready
      type: string
      jsonPath: .status.conditions[?(@.type=="Ready")].status
    - name: Age
      type: date
      jsonPath: .metadata.creationTimestamp
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              replicas: {type: integer, minimum: 0, default: 1}
              size: {type: string, enum: [small, large]}
              color: {type: string, default: blue}
              name: {type: string, maxLength: 8, pattern: '^[a-z]+$'}
              config:
                type: object
                x-kubernetes-preserve-unknown-fields: true
          status:
            type: object
            properties:
              replicas: {type: integer}
              selector: {type: string}
              conditions:
                type: array
                items:
                  type: object
                  properties:
                    type: {type: string}
                    status: {type: string}
  - name: v1beta1
    served: true
    storage: false
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
  - name: v1alpha1
    served: false
    storage: false
    schema:
      openAPIV3Schema:
        type: object
"#;

fn widget(name: &str, body: &str) -> String {
    format!("apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: {name}\nspec:\n{body}")
}

fn condition(crd: &Value, kind: &str) -> Option<Value> {
    crd["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
        .cloned()
}

/// Creates the CRD and waits until it is Established (which must take under a second).
fn install(server: &Server) {
    let started = Instant::now();
    server.ok_stdin(&["create", "-f", "-"], CRD);
    eventually(Duration::from_secs(1), "the CRD to be established", || {
        let crd = server.get_json(&["get", "crd", "widgets.example.com"]);
        condition(&crd, "Established").is_some_and(|c| c["status"] == "True")
    });
    // Served as soon as it is Established: discovery and the API itself.
    let resources = server.ok(&["api-resources", "--api-group=example.com"]);
    assert!(
        resources.contains("widgets") && resources.contains("wd"),
        "{resources}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn crd_is_established_with_accepted_names_and_discovery() {
    let server = Server::start();
    install(&server);
    let crd = server.get_json(&["get", "crd", "widgets.example.com"]);
    let names = condition(&crd, "NamesAccepted").unwrap();
    assert_eq!(names["status"], "True");
    assert_eq!(names["reason"], "NoConflicts");
    assert_eq!(crd["status"]["acceptedNames"]["kind"], "Widget");
    assert_eq!(crd["status"]["acceptedNames"]["shortNames"][0], "wd");
    assert_eq!(crd["status"]["storedVersions"], serde_json::json!(["v1"]));
    assert_eq!(
        crd["metadata"]["finalizers"][0],
        "customresourcecleanup.apiextensions.k8s.io"
    );
    let group: Value =
        serde_json::from_str(&server.ok(&["get", "--raw", "/apis/example.com"])).unwrap();
    assert_eq!(group["preferredVersion"]["version"], "v1");
    let versions: Vec<&str> = group["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["v1", "v1beta1"], "v1alpha1 is not served");
    let list: Value =
        serde_json::from_str(&server.ok(&["get", "--raw", "/apis/example.com/v1"])).unwrap();
    let names: Vec<&str> = list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["widgets", "widgets/status", "widgets/scale"]);
    server.fails(&["get", "--raw", "/apis/example.com/v1alpha1/widgets"]);
    // kubectl explain reads the OpenAPI v3 document built from the schema.
    let explain = server.ok(&["explain", "widget.spec.size"]);
    assert!(
        explain.contains("KIND:       Widget")
            && explain.contains("small")
            && explain.contains("large"),
        "{explain}"
    );
}

#[test]
fn custom_resources_are_validated_defaulted_and_pruned() {
    let server = Server::start();
    install(&server);
    // Client-side apply (server-side field validation: unknown fields are refused).
    let err = String::from_utf8_lossy(
        &server
            .kubectl_stdin(
                &["apply", "-f", "-"],
                Some(&widget("w1", "  size: small\n  bogus: 1\n")),
            )
            .stderr,
    )
    .into_owned();
    assert!(
        err.contains("strict decoding error: unknown field \"spec.bogus\""),
        "{err}"
    );
    // Without validation the unknown field is pruned; defaults are filled in.
    server.ok_stdin(
        &["create", "--validate=false", "-f", "-"],
        &widget(
            "w1",
            "  size: small\n  bogus: 1\n  config: {any: {thing: 1}}\n",
        ),
    );
    let w1 = server.get_json(&["get", "widget", "w1"]);
    assert!(w1["spec"].get("bogus").is_none(), "{w1}");
    assert_eq!(w1["spec"]["replicas"], 1);
    assert_eq!(w1["spec"]["color"], "blue");
    assert_eq!(w1["spec"]["config"]["any"]["thing"], 1, "preserved");
    // Schema violations, with upstream's messages.
    let err = server
        .kubectl_stdin(
            &["create", "-f", "-"],
            Some(&widget(
                "bad",
                "  size: huge\n  replicas: \"three\"\n  name: TooLongName\n",
            )),
        )
        .stderr;
    let err = String::from_utf8_lossy(&err);
    for want in [
        "The Widget \"bad\" is invalid",
        "spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\"",
        "spec.size: Unsupported value: \"huge\": supported values: \"small\", \"large\"",
        "spec.name: Too long: may not be more than 8 bytes",
        "spec.name: Invalid value: \"TooLongName\": spec.name in body should match '^[a-z]+$'",
    ] {
        assert!(err.contains(want), "{want}\nnot in\n{err}");
    }
    let err = server.fails(&[
        "patch",
        "widget",
        "w1",
        "--type=merge",
        "-p",
        r#"{"spec":{"replicas":-1}}"#,
    ]);
    assert!(
        err.contains("spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or equal to 0"),
        "{err}"
    );
    let err = String::from_utf8_lossy(
        &server
            .kubectl_stdin(
                &["create", "-f", "-"],
                Some(&widget("nosize", "  color: red\n")),
            )
            .stderr,
    )
    .into_owned();
    assert!(err.contains("spec.size: Required value"), "{err}");
    // Strategic merge patches are not for custom resources (as upstream: 415).
    let err = server.fails(&[
        "patch",
        "widget",
        "w1",
        "--type=strategic",
        "-p",
        r#"{"spec":{"size":"large"}}"#,
    ]);
    assert!(
        err.contains("UnsupportedMediaType")
            || err.contains("unknown format")
            || err.contains("not supported"),
        "{err}"
    );
}

#[test]
fn kubectl_get_shows_printer_columns_short_names_and_categories() {
    let server = Server::start();
    install(&server);
    server.ok_stdin(
        &["apply", "-f", "-"],
        &widget("w1", "  size: large\n  replicas: 3\n"),
    );
    let out = server.ok(&["get", "wd"]);
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "REPLICAS", "SIZE", "READY", "AGE"]);
    // READY has no value yet: an empty cell, as upstream's table leaves it.
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..3], ["w1", "3", "large"], "{out}");
    assert_eq!(row.len(), 4, "{out}");
    assert!(row[3].ends_with('s'), "{out}");
    let all = server.ok(&["get", "all"]);
    assert!(all.contains("widget.example.com/w1"), "{all}");
    // Apply again (a merge patch from kubectl) and server-side apply.
    server.ok_stdin(
        &["apply", "-f", "-"],
        &widget("w1", "  size: small\n  replicas: 2\n"),
    );
    server.ok_stdin(
        &["apply", "--server-side", "--field-manager=test", "-f", "-"],
        &widget("w2", "  size: small\n"),
    );
    let list = server.get_json(&["get", "widgets"]);
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["spec"]["size"], "small");
    assert_eq!(items[0]["spec"]["replicas"], 2);
    assert_eq!(items[1]["spec"]["replicas"], 1, "defaulted");
}

#[test]
fn status_and_scale_subresources() {
    let server = Server::start();
    install(&server);
    server.ok_stdin(
        &["create", "-f", "-"],
        &widget("w1", "  size: small\n  replicas: 2\n"),
    );
    // Status ignores spec changes; the main resource ignores status changes.
    server.ok(&[
        "patch", "widget", "w1", "--subresource=status", "--type=merge", "-p",
        r#"{"spec":{"replicas":9},"status":{"replicas":2,"selector":"app=w1","conditions":[{"type":"Ready","status":"True"}]}}"#,
    ]);
    server.ok(&[
        "patch",
        "widget",
        "w1",
        "--type=merge",
        "-p",
        r#"{"spec":{"replicas":3},"status":{"replicas":7}}"#,
    ]);
    let w1 = server.get_json(&["get", "widget", "w1"]);
    assert_eq!(w1["spec"]["replicas"], 3);
    assert_eq!(w1["status"]["replicas"], 2);
    assert_eq!(
        w1["metadata"]["generation"], 2,
        "only the spec change counts"
    );
    let out = server.ok(&["get", "wd", "w1", "--no-headers"]);
    assert!(out.split_whitespace().nth(3) == Some("True"), "{out}");
    // Scale reads and writes the CRD's paths.
    server.ok(&["scale", "widget", "w1", "--replicas=5"]);
    let scale: Value = serde_json::from_str(&server.ok(&[
        "get",
        "--raw",
        "/apis/example.com/v1/namespaces/default/widgets/w1/scale",
    ]))
    .unwrap();
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 5);
    assert_eq!(scale["status"]["replicas"], 2);
    assert_eq!(scale["status"]["selector"], "app=w1");
    assert_eq!(
        server.get_json(&["get", "widget", "w1"])["spec"]["replicas"],
        5
    );
}

#[test]
fn versions_share_objects_and_convert_by_api_version() {
    let server = Server::start();
    install(&server);
    server.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: example.com/v1beta1\nkind: Widget\nmetadata:\n  name: old\nspec:\n  size: small\n  legacy: 5\n",
    );
    let beta = server.get_json(&["get", "widgets.v1beta1.example.com", "old"]);
    assert_eq!(beta["apiVersion"], "example.com/v1beta1");
    assert_eq!(
        beta["spec"]["legacy"], 5,
        "v1beta1 preserves unknown fields"
    );
    let v1 = server.get_json(&["get", "widgets.v1.example.com", "old"]);
    assert_eq!(v1["apiVersion"], "example.com/v1");
    assert!(
        v1["spec"].get("legacy").is_none(),
        "pruned by the v1 schema: {v1}"
    );
    assert_eq!(v1["spec"]["replicas"], 1, "defaulted on read");
    server.ok_stdin(&["create", "-f", "-"], &widget("new", "  size: large\n"));
    let beta_list = server.get_json(&["get", "widgets.v1beta1.example.com"]);
    assert_eq!(beta_list["items"].as_array().unwrap().len(), 2);
    assert!(beta_list["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["apiVersion"] == "example.com/v1beta1"));
}

#[test]
fn deleting_the_crd_deletes_its_objects_and_stops_serving() {
    let server = Server::start();
    install(&server);
    server.ok(&["create", "namespace", "other"]);
    server.ok_stdin(&["create", "-f", "-"], &widget("a", "  size: small\n"));
    server.ok_stdin(
        &["create", "-n", "other", "-f", "-"],
        &widget("b", "  size: small\n"),
    );
    server.ok(&["delete", "crd", "widgets.example.com", "--timeout=20s"]);
    let out = String::from_utf8_lossy(&server.kubectl(&["get", "crd"]).stderr).into_owned();
    assert!(out.contains("No resources found"), "{out}");
    let err = server.fails(&["get", "--raw", "/apis/example.com/v1/widgets"]);
    assert!(
        err.contains("NotFound") || err.contains("could not find"),
        "{err}"
    );
    // Recreated, it starts empty: the objects went with it.
    install(&server);
    let list = server.get_json(&["get", "widgets", "-A"]);
    assert_eq!(list["items"].as_array().unwrap().len(), 0, "{list}");
}

#[test]
fn deleting_a_namespace_deletes_its_custom_resources() {
    let server = Server::start();
    install(&server);
    server.ok(&["create", "namespace", "doomed"]);
    server.ok_stdin(
        &["create", "-n", "doomed", "-f", "-"],
        &widget("w", "  size: small\n"),
    );
    server.ok_stdin(&["create", "-f", "-"], &widget("keep", "  size: small\n"));
    server.ok(&["delete", "namespace", "doomed", "--timeout=60s"]);
    let list = server.get_json(&["get", "widgets", "-A"]);
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["keep"]);
}

#[test]
fn invalid_crds_are_refused_with_upstream_messages() {
    let server = Server::start();
    let base = |name: &str, group: &str, versions: &str, extra: &str| {
        format!(
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: {name}\nspec:\n  group: {group}\n  scope: Namespaced\n  names: {{plural: gadgets, kind: Gadget}}\n{extra}  versions:\n{versions}"
        )
    };
    let schema = "    schema: {openAPIV3Schema: {type: object}}\n";
    let v = |name: &str, storage: bool| {
        format!("  - name: {name}\n    served: true\n    storage: {storage}\n{schema}")
    };
    let cases = [
        (
            base("gadgets.example.org", "example.com", &v("v1", true), ""),
            "metadata.name: Invalid value: \"gadgets.example.org\": must be spec.names.plural+\".\"+spec.group",
        ),
        (
            base("gadgets.example.com", "example.com", &(v("v1", true) + &v("v2", true)), ""),
            "must have exactly one version marked as storage version",
        ),
        (
            base("gadgets.example.com", "example.com", &v("v1", false), ""),
            "must have exactly one version marked as storage version",
        ),
        (
            base(
                "gadgets.example.com",
                "example.com",
                "  - name: v1\n    served: true\n    storage: true\n    schema: {openAPIV3Schema: {type: object, properties: {spec: {properties: {a: {type: string}}}}}}\n",
                "",
            ),
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].type: Required value: must not be empty for specified object fields",
        ),
        (
            base(
                "gadgets.example.com",
                "example.com",
                &v("v1", true),
                "  conversion: {strategy: Webhook}\n",
            ),
            "spec.conversion.strategy: Forbidden: Webhook conversion is not supported",
        ),
    ];
    for (manifest, want) in cases {
        let out = server.kubectl_stdin(&["create", "-f", "-"], Some(&manifest));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "accepted:\n{manifest}");
        assert!(err.contains(want), "{want}\nnot in\n{err}");
    }
}

#[test]
fn conflicting_names_are_not_accepted() {
    let server = Server::start();
    install(&server);
    let clash = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: gizmos.example.com\nspec:\n  group: example.com\n  scope: Namespaced\n  names: {plural: gizmos, singular: gizmo, kind: Widget}\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema: {openAPIV3Schema: {type: object}}\n";
    server.ok_stdin(&["create", "-f", "-"], clash);
    eventually(Duration::from_secs(5), "NamesAccepted=False", || {
        let crd = server.get_json(&["get", "crd", "gizmos.example.com"]);
        condition(&crd, "NamesAccepted").is_some_and(|c| {
            c["status"] == "False"
                && c["reason"] == "KindConflict"
                && c["message"] == "\"Widget\" is already in use"
        })
    });
    let crd = server.get_json(&["get", "crd", "gizmos.example.com"]);
    let established = condition(&crd, "Established").unwrap();
    assert_eq!(established["status"], "False");
    assert_eq!(established["reason"], "NotAccepted");
    server.fails(&["get", "--raw", "/apis/example.com/v1/gizmos"]);
}

#[test]
fn custom_resources_are_served_right_after_a_restart() {
    let mut server = Server::start();
    install(&server);
    server.ok_stdin(&["create", "-f", "-"], &widget("w1", "  size: small\n"));
    // Ready means the CRDs are served again: the first request after it finds them.
    server.restart();
    let w1 = server.get_json(&["get", "widget", "w1"]);
    assert_eq!(w1["spec"]["size"], "small");
    assert_eq!(w1["spec"]["replicas"], 1);
}

#[test]
fn cluster_scoped_custom_resources() {
    let server = Server::start();
    let crd = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: regions.geo.example.com\nspec:\n  group: geo.example.com\n  scope: Cluster\n  names: {plural: regions, singular: region, kind: Region, shortNames: [rg]}\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema:\n        type: object\n        properties:\n          spec: {type: object, properties: {zones: {type: integer, default: 3}}}\n";
    server.ok_stdin(&["create", "-f", "-"], crd);
    eventually(Duration::from_secs(1), "the CRD to be established", || {
        let crd = server.get_json(&["get", "crd", "regions.geo.example.com"]);
        condition(&crd, "Established").is_some_and(|c| c["status"] == "True")
    });
    server.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: geo.example.com/v1\nkind: Region\nmetadata:\n  name: north\nspec: {}\n",
    );
    let north = server.get_json(&["get", "rg", "north"]);
    assert!(north["metadata"].get("namespace").is_none(), "{north}");
    assert_eq!(north["spec"]["zones"], 3);
    let out = server.ok(&["get", "regions"]);
    assert!(
        out.starts_with("NAME") && out.contains("AGE") && out.contains("north"),
        "{out}"
    );
    server.fails(&[
        "get",
        "--raw",
        "/apis/geo.example.com/v1/namespaces/default/regions",
    ]);
    server.ok(&["delete", "region", "north"]);
    assert!(server.get_json(&["get", "regions"])["items"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[test]
fn garbage_collector_deletes_dependents_of_custom_resources() {
    let server = Server::start();
    install(&server);
    server.ok_stdin(&["create", "-f", "-"], &widget("owner", "  size: small\n"));
    let uid = server.get_json(&["get", "widget", "owner"])["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    server.ok_stdin(
        &["create", "-f", "-"],
        &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: child\n  ownerReferences:\n  - apiVersion: example.com/v1\n    kind: Widget\n    name: owner\n    uid: {uid}\n"),
    );
    server.ok(&["delete", "widget", "owner"]);
    // The collector learns of the new type at its next discovery (every 30 s).
    eventually(
        Duration::from_secs(90),
        "the dependent to be collected",
        || {
            !server
                .kubectl(&["get", "configmap", "child"])
                .status
                .success()
        },
    );
}

#[test]
fn crd_changes_take_effect_at_once() {
    let server = Server::start();
    install(&server);
    // A new enum value and a new printer column, through a JSON patch of the CRD.
    server.ok(&[
        "patch", "crd", "widgets.example.com", "--type=json", "-p",
        r#"[{"op":"add","path":"/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/size/enum/-","value":"medium"},
            {"op":"add","path":"/spec/versions/0/additionalPrinterColumns/0","value":{"name":"Color","type":"string","jsonPath":".spec.color"}}]"#,
    ]);
    server.ok_stdin(&["create", "-f", "-"], &widget("m", "  size: medium\n"));
    let header = server.ok(&["get", "widgets"]);
    assert!(header.starts_with("NAME   COLOR"), "{header}");
    assert!(header.contains("blue"), "{header}");
    // The version objects are stored in cannot be dropped.
    let err = server.fails(&[
        "patch",
        "crd",
        "widgets.example.com",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/versions/0/name","value":"v2"}]"#,
    ]);
    assert!(
        err.contains(
            "status.storedVersions[0]: Invalid value: \"v1\": must appear in spec.versions"
        ),
        "{err}"
    );
}
