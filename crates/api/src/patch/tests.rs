//! Behaviour of the three patch formats, as tables of named cases. The strategic cases are
//! modelled on upstream's docs and on what kubectl sends.

use serde_json::{json, Value};

use super::*;

fn pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "p",
            "labels": {"app": "web", "tier": "front"},
            "finalizers": ["a", "b", "c"],
            "ownerReferences": [{"uid": "u1", "kind": "ReplicaSet", "name": "rs"}]
        },
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "app:1",
                    "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                    "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443}]
                },
                {"name": "sidecar", "image": "side:1"}
            ],
            "volumes": [
                {"name": "data", "emptyDir": {}},
                {"name": "cfg", "secret": {"secretName": "s"}}
            ],
            "tolerations": [{"key": "dedicated", "value": "test-team", "effect": "NoSchedule"}]
        }
    })
}

/// `pod()` with the value at a JSON pointer replaced.
fn pod_with(pointer: &str, value: Value) -> Value {
    let mut p = pod();
    if let Some(slot) = p.pointer_mut(pointer) {
        *slot = value;
    } else {
        panic!("no {pointer} in the test pod");
    }
    p
}

fn pod_without(parent: &str, key: &str) -> Value {
    let mut p = pod();
    if let Some(Value::Object(m)) = p.pointer_mut(parent) {
        m.remove(key);
    }
    p
}

struct Case {
    name: &'static str,
    kind: &'static str,
    original: Value,
    patch: Value,
    want: Value,
}

fn run(cases: Vec<Case>) {
    for c in cases {
        match strategic_merge(&c.original, &c.patch, c.kind) {
            Ok(got) => assert_eq!(
                got,
                c.want,
                "{}:\n got  {}\n want {}",
                c.name,
                serde_json::to_string_pretty(&got).unwrap_or_default(),
                serde_json::to_string_pretty(&c.want).unwrap_or_default()
            ),
            Err(e) => panic!("{}: {e}", c.name),
        }
    }
}

#[test]
fn pod_lists_merge_by_key() {
    let app = pod()["spec"]["containers"][0].clone();
    let sidecar = pod()["spec"]["containers"][1].clone();
    run(vec![
        Case {
            name: "adding a container puts it before the original-only ones, as upstream",
            kind: "Pod",
            original: pod(),
            patch: json!({"spec": {"containers": [{"name": "log", "image": "log:1"}]}}),
            want: pod_with(
                "/spec/containers",
                json!([{"name": "log", "image": "log:1"}, app, sidecar]),
            ),
        },
        Case {
            name: "changing one container's image keeps the others",
            kind: "Pod",
            original: pod(),
            patch: json!({"spec": {"containers": [{"name": "sidecar", "image": "side:2"}]}}),
            want: pod_with(
                "/spec/containers",
                json!([app, {"name": "sidecar", "image": "side:2"}]),
            ),
        },
        Case {
            name: "$patch: delete removes the element with that key",
            kind: "Pod",
            original: pod(),
            patch: json!({"spec": {"containers": [{"name": "app", "$patch": "delete"}]}}),
            want: pod_with("/spec/containers", json!([sidecar])),
        },
        Case {
            name: "env merges by name inside the matched container",
            kind: "Pod",
            original: pod(),
            patch: json!({"spec": {"containers": [{"name": "app", "env": [
                {"name": "B", "value": "20"}, {"name": "C", "value": "3"}
            ]}]}}),
            want: pod_with(
                "/spec/containers/0/env",
                json!([
                    {"name": "A", "value": "1"},
                    {"name": "B", "value": "20"},
                    {"name": "C", "value": "3"}
                ]),
            ),
        },
        Case {
            name: "ports merge by containerPort, 443.0 matching 443 (no duplicate)",
            kind: "Pod",
            original: pod(),
            patch: json!({"spec": {"containers": [{"name": "app", "ports": [
                {"containerPort": 443.0, "name": "https"}, {"containerPort": 8080}
            ]}]}}),
            want: pod_with(
                "/spec/containers/0/ports",
                json!([
                    {"containerPort": 80, "protocol": "TCP"},
                    {"containerPort": 443.0, "name": "https"},
                    {"containerPort": 8080}
                ]),
            ),
        },
        Case {
            name: "ownerReferences merge by uid",
            kind: "Pod",
            original: pod(),
            patch: json!({"metadata": {"ownerReferences": [
                {"uid": "u1", "controller": true}, {"uid": "u2", "kind": "Node", "name": "n"}
            ]}}),
            want: pod_with(
                "/metadata/ownerReferences",
                json!([
                    {"uid": "u1", "kind": "ReplicaSet", "name": "rs", "controller": true},
                    {"uid": "u2", "kind": "Node", "name": "n"}
                ]),
            ),
        },
        Case {
            name: "$patch: replace in a list replaces the whole list",
            kind: "Pod",
            original: pod(),
            patch: json!({"spec": {"containers": [
                {"name": "only", "image": "x"}, {"$patch": "replace"}
            ]}}),
            want: pod_with("/spec/containers", json!([{"name": "only", "image": "x"}])),
        },
        Case {
            name: "tolerations have no strategy and are replaced",
            kind: "Pod",
            original: pod(),
            patch: json!({"spec": {"tolerations": [{"key": "other", "operator": "Exists"}]}}),
            want: pod_with(
                "/spec/tolerations",
                json!([{"key": "other", "operator": "Exists"}]),
            ),
        },
        Case {
            name: "$retainKeys on a volume switches emptyDir to configMap",
            kind: "Pod",
            original: pod(),
            patch: json!({"spec": {"volumes": [{
                "name": "data",
                "$retainKeys": ["configMap", "name"],
                "configMap": {"name": "cm"},
                "emptyDir": null
            }]}}),
            want: pod_with(
                "/spec/volumes",
                json!([
                    {"name": "data", "configMap": {"name": "cm"}},
                    {"name": "cfg", "secret": {"secretName": "s"}}
                ]),
            ),
        },
        Case {
            name: "a list the original lacks is built from the patch, directives applied",
            kind: "Pod",
            original: pod_without("/spec", "volumes"),
            patch: json!({"spec": {"volumes": [
                {"name": "v", "$retainKeys": ["emptyDir", "name"], "emptyDir": {}},
                {"name": "gone", "$patch": "delete"}
            ]}}),
            want: pod_with("/spec/volumes", json!([{"name": "v", "emptyDir": {}}])),
        },
    ]);
}

#[test]
fn maps_merge_and_directives_apply() {
    run(vec![
        Case {
            name: "null deletes a label",
            kind: "Pod",
            original: pod(),
            patch: json!({"metadata": {"labels": {"tier": null, "new": "x"}}}),
            want: pod_with("/metadata/labels", json!({"app": "web", "new": "x"})),
        },
        Case {
            name: "$patch: replace on a map replaces it",
            kind: "Pod",
            original: pod(),
            patch: json!({"metadata": {"labels": {"$patch": "replace", "only": "1"}}}),
            want: pod_with("/metadata/labels", json!({"only": "1"})),
        },
        Case {
            name: "$patch: delete on a map deletes it",
            kind: "Pod",
            original: pod(),
            patch: json!({"metadata": {"labels": {"$patch": "delete"}}}),
            want: pod_without("/metadata", "labels"),
        },
        Case {
            name: "nulls in a map the original lacks are dropped",
            kind: "Pod",
            original: pod(),
            patch: json!({"metadata": {"annotations": {"a": "1", "b": null}}}),
            want: {
                let mut p = pod();
                p["metadata"]["annotations"] = json!({"a": "1"});
                p
            },
        },
        Case {
            name: "built-in kinds without list metadata still merge maps",
            kind: "ConfigMap",
            original: json!({"kind": "ConfigMap", "data": {"a": "1", "b": "2"}}),
            patch: json!({"data": {"a": null, "c": "3"}}),
            want: json!({"kind": "ConfigMap", "data": {"b": "2", "c": "3"}}),
        },
    ]);
}

#[test]
fn scalar_sets_and_ordering_directives() {
    let app = pod()["spec"]["containers"][0].clone();
    let sidecar = pod()["spec"]["containers"][1].clone();
    run(vec![
        Case {
            name: "finalizers union; new values go first, as upstream orders them",
            kind: "Pod",
            original: pod(),
            patch: json!({"metadata": {"finalizers": ["d", "a"]}}),
            want: pod_with("/metadata/finalizers", json!(["d", "a", "b", "c"])),
        },
        Case {
            name: "$deleteFromPrimitiveList/finalizers removes values",
            kind: "Pod",
            original: pod(),
            patch: json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b", "zz"]}}),
            want: pod_with("/metadata/finalizers", json!(["a", "c"])),
        },
        Case {
            name: "$setElementOrder reorders scalars",
            kind: "Pod",
            original: pod(),
            patch: json!({"metadata": {"$setElementOrder/finalizers": ["c", "a", "b"]}}),
            want: pod_with("/metadata/finalizers", json!(["c", "a", "b"])),
        },
        Case {
            name: "$setElementOrder reorders containers",
            kind: "Pod",
            original: pod(),
            patch: json!({"spec": {"$setElementOrder/containers": [
                {"name": "sidecar"}, {"name": "app"}
            ]}}),
            want: pod_with("/spec/containers", json!([sidecar, app])),
        },
        Case {
            name: "$setElementOrder with its list puts an added element where it says",
            kind: "Pod",
            original: pod(),
            patch: json!({"spec": {
                "$setElementOrder/containers": [{"name": "app"}, {"name": "log"}, {"name": "sidecar"}],
                "containers": [{"name": "log", "image": "log:1"}]
            }}),
            want: pod_with(
                "/spec/containers",
                json!([app, {"name": "log", "image": "log:1"}, sidecar]),
            ),
        },
        Case {
            name: "an element $setElementOrder does not name keeps its original slot",
            kind: "Pod",
            original: pod_with(
                "/spec/containers",
                json!([{"name": "a"}, {"name": "b"}, {"name": "c"}]),
            ),
            patch: json!({"spec": {
                "$setElementOrder/containers": [{"name": "a"}, {"name": "c"}],
                "containers": [{"name": "c", "image": "c:2"}]
            }}),
            want: pod_with(
                "/spec/containers",
                json!([{"name": "a"}, {"name": "b"}, {"name": "c", "image": "c:2"}]),
            ),
        },
    ]);
}

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "labels": {"app": "web"},
            "annotations": {
                "deployment.kubernetes.io/revision": "1",
                "kubectl.kubernetes.io/last-applied-configuration": "{\"old\":true}\n"
            }
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}
            },
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "nginx:1.25",
                            "imagePullPolicy": "IfNotPresent",
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                            "env": [{"name": "MODE", "value": "a"}, {"name": "OLD", "value": "x"}]
                        },
                        {"name": "metrics", "image": "exporter:1"}
                    ],
                    "restartPolicy": "Always"
                }
            }
        },
        "status": {
            "replicas": 2,
            "conditions": [
                {"type": "Available", "status": "True"},
                {"type": "Progressing", "status": "True"}
            ]
        }
    })
}

#[test]
fn workloads_merge_their_pod_templates() {
    let cronjob = json!({
        "kind": "CronJob",
        "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {
            "containers": [{"name": "job", "image": "job:1", "args": ["a"]}, {"name": "x", "image": "x"}]
        }}}}}
    });
    let mut cronjob_want = cronjob.clone();
    cronjob_want["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"] =
        json!([{"name": "job", "image": "job:2", "args": ["b"]}, {"name": "x", "image": "x"}]);

    let mut strategy_want = deployment();
    strategy_want["spec"]["strategy"] = json!({"type": "Recreate"});

    let mut nested_want = deployment();
    nested_want["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.27");

    let mut status_want = deployment();
    status_want["status"]["conditions"] = json!([
        {"type": "Available", "status": "True"},
        {"type": "Progressing", "status": "False", "reason": "Stuck"}
    ]);

    let mut apply_want = deployment();
    apply_want["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] =
        json!("{\"new\":true}\n");
    apply_want["spec"]["replicas"] = json!(3);
    apply_want["spec"]["template"]["spec"]["containers"] = json!([
        {
            "name": "web",
            "image": "nginx:1.27",
            "imagePullPolicy": "IfNotPresent",
            "ports": [{"containerPort": 80, "protocol": "TCP"}],
            "env": [{"name": "MODE", "value": "b"}]
        },
        {"name": "log", "image": "fluent:1"}
    ]);

    run(vec![
        Case {
            name: "containers merge under a Deployment's spec.template",
            kind: "Deployment",
            original: deployment(),
            patch: json!({"spec": {"template": {"spec": {"containers": [
                {"name": "web", "image": "nginx:1.27"}
            ]}}}}),
            want: nested_want,
        },
        Case {
            name: "containers merge under a CronJob's spec.jobTemplate.spec.template",
            kind: "CronJob",
            original: cronjob,
            patch: json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {
                "containers": [{"name": "job", "image": "job:2", "args": ["b"]}]
            }}}}}}),
            want: cronjob_want,
        },
        Case {
            name: "$retainKeys on spec.strategy: RollingUpdate to Recreate drops rollingUpdate",
            kind: "Deployment",
            original: deployment(),
            patch: json!({"spec": {"strategy": {
                "$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null
            }}}),
            want: strategy_want,
        },
        Case {
            name: "status conditions merge by type",
            kind: "Deployment",
            original: deployment(),
            patch: json!({"status": {"conditions": [
                {"type": "Progressing", "status": "False", "reason": "Stuck"}
            ]}}),
            want: status_want,
        },
        Case {
            name: "a kubectl apply patch: annotation, scalar, ordered and deleted elements",
            kind: "Deployment",
            original: deployment(),
            patch: json!({
                "metadata": {"annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": "{\"new\":true}\n"
                }},
                "spec": {
                    "replicas": 3,
                    "template": {"spec": {
                        "$setElementOrder/containers": [{"name": "web"}, {"name": "log"}],
                        "containers": [
                            {
                                "name": "web",
                                "image": "nginx:1.27",
                                "$setElementOrder/env": [{"name": "MODE"}],
                                "env": [
                                    {"name": "MODE", "value": "b"},
                                    {"name": "OLD", "$patch": "delete"}
                                ]
                            },
                            {"name": "log", "image": "fluent:1"},
                            {"name": "metrics", "$patch": "delete"}
                        ]
                    }}
                }
            }),
            want: apply_want,
        },
    ]);
}

#[test]
fn other_kinds_follow_their_tags() {
    let node = json!({
        "kind": "Node",
        "spec": {"taints": [{"key": "a", "effect": "NoSchedule"}, {"key": "b", "effect": "NoExecute"}]},
        "status": {
            "conditions": [{"type": "Ready", "status": "False"}, {"type": "MemoryPressure", "status": "False"}],
            "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": "n1"}]
        }
    });
    let mut node_status = node.clone();
    node_status["status"]["conditions"][0]["status"] = json!("True");
    node_status["status"]["addresses"][0]["address"] = json!("10.0.0.2");
    let mut node_taints = node.clone();
    node_taints["spec"]["taints"] = json!([{"key": "c", "effect": "NoSchedule"}]);

    let service = json!({"kind": "Service", "spec": {"ports": [
        {"name": "http", "port": 80, "targetPort": 8080},
        {"name": "https", "port": 443}
    ]}});
    let mut service_want = service.clone();
    service_want["spec"]["ports"][1]["targetPort"] = json!(8443);

    let ns = json!({"kind": "Namespace", "spec": {"finalizers": ["kubernetes", "x"]}});
    let mut ns_want = ns.clone();
    ns_want["spec"]["finalizers"] = json!(["kubernetes"]);

    run(vec![
        Case {
            name: "node conditions and addresses merge by type",
            kind: "Node",
            original: node.clone(),
            patch: json!({"status": {
                "conditions": [{"type": "Ready", "status": "True"}],
                "addresses": [{"type": "InternalIP", "address": "10.0.0.2"}]
            }}),
            want: node_status,
        },
        Case {
            name: "node taints have no strategy upstream and are replaced",
            kind: "Node",
            original: node,
            patch: json!({"spec": {"taints": [{"key": "c", "effect": "NoSchedule"}]}}),
            want: node_taints,
        },
        Case {
            name: "service ports merge by port",
            kind: "Service",
            original: service,
            patch: json!({"spec": {"ports": [{"port": 443, "targetPort": 8443}]}}),
            want: service_want,
        },
        Case {
            name: "namespace spec.finalizers are replaced",
            kind: "Namespace",
            original: ns,
            patch: json!({"spec": {"finalizers": ["kubernetes"]}}),
            want: ns_want,
        },
    ]);
}

#[test]
fn bad_patches_are_errors() {
    type Check = fn(&PatchError) -> bool;
    let cases: Vec<(&str, &str, Value, Check)> = vec![
        (
            "a container without its merge key",
            "Pod",
            json!({"spec": {"containers": [{"image": "x"}]}}),
            |e| matches!(e, PatchError::MissingMergeKey { path, key, .. } if path == "spec.containers" && key == "name"),
        ),
        (
            "a $patch: delete element without its merge key",
            "Pod",
            json!({"spec": {"containers": [{"$patch": "delete"}]}}),
            |e| matches!(e, PatchError::MissingMergeKey { .. }),
        ),
        (
            "$patch: bogus on a map",
            "Pod",
            json!({"metadata": {"labels": {"$patch": "bogus"}}}),
            |e| matches!(e, PatchError::UnknownPatchType { path, .. } if path == "metadata.labels"),
        ),
        (
            "$patch: bogus in a list",
            "Pod",
            json!({"spec": {"containers": [{"name": "app", "$patch": "bogus"}]}}),
            |e| matches!(e, PatchError::UnknownPatchType { .. }),
        ),
        (
            "$patch: merge in a list",
            "Pod",
            json!({"spec": {"containers": [{"$patch": "merge"}]}}),
            |e| matches!(e, PatchError::Invalid { .. }),
        ),
        (
            "$patch at the top level that is not a string",
            "Pod",
            json!({"$patch": 1}),
            |e| matches!(e, PatchError::UnknownPatchType { path, .. } if path == "<root>"),
        ),
        (
            "a patch that is not an object",
            "Pod",
            json!([{"op": "add"}]),
            |e| *e == PatchError::NotAnObject("patch"),
        ),
        ("a kind that is not built in", "Widget", json!({}), |e| {
            *e == PatchError::UnsupportedKind("Widget".into())
        }),
        (
            "$retainKeys that is not a list",
            "Deployment",
            json!({"spec": {"strategy": {"$retainKeys": "type"}}}),
            |e| matches!(e, PatchError::BadDirective { .. }),
        ),
        (
            "$retainKeys that omits a field the patch sets",
            "Deployment",
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {"maxSurge": 1}}}}),
            |e| matches!(e, PatchError::Invalid { path, .. } if path == "spec.strategy"),
        ),
        (
            "$setElementOrder that is not a list",
            "Pod",
            json!({"spec": {"$setElementOrder/containers": {"name": "app"}}}),
            |e| matches!(e, PatchError::BadDirective { .. }),
        ),
        (
            "$setElementOrder entries without the merge key",
            "Pod",
            json!({"spec": {"$setElementOrder/containers": [{"image": "x"}]}}),
            |e| matches!(e, PatchError::MissingMergeKey { .. }),
        ),
        (
            "$setElementOrder that disagrees with the patch list",
            "Pod",
            json!({"spec": {
                "$setElementOrder/containers": [{"name": "app"}],
                "containers": [{"name": "sidecar", "image": "x"}]
            }}),
            |e| matches!(e, PatchError::Invalid { .. }),
        ),
        (
            "$deleteFromPrimitiveList that is not a list",
            "Pod",
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}),
            |e| matches!(e, PatchError::BadDirective { .. }),
        ),
        (
            "a list of lists in a merging list",
            "Pod",
            json!({"metadata": {"finalizers": [["a"]]}}),
            |e| matches!(e, PatchError::Invalid { .. }),
        ),
        (
            "objects in a list of scalars",
            "Pod",
            json!({"metadata": {"finalizers": [{"x": 1}]}}),
            |e| matches!(e, PatchError::Invalid { .. }),
        ),
    ];
    for (name, kind, patch, check) in cases {
        match strategic_merge(&pod(), &patch, kind) {
            Ok(v) => panic!("{name}: applied, giving {v}"),
            Err(e) => assert!(check(&e), "{name}: unexpected error {e:?}"),
        }
    }
    assert_eq!(
        strategic_merge(&json!("x"), &json!({}), "Pod"),
        Err(PatchError::NotAnObject("original object"))
    );
}

#[test]
fn odd_values_anywhere_never_panic() {
    let odd = [
        json!(null),
        json!(true),
        json!(1.5),
        json!("s"),
        json!([]),
        json!({}),
        json!([null]),
        json!([1, "a"]),
        json!([[1]]),
        json!([{"$patch": 1}]),
        json!([{"$patch": "replace"}, 1]),
        json!({"$patch": null}),
        json!({"$retainKeys": [1]}),
        json!({"$setElementOrder/x": [null]}),
        json!([{"name": null}, {"name": {"a": 1}}]),
    ];
    let keys = [
        "spec",
        "metadata",
        "$patch",
        "$retainKeys",
        "$setElementOrder/containers",
        "$deleteFromPrimitiveList/finalizers",
    ];
    let nested = [
        "/spec/containers",
        "/spec/volumes",
        "/spec/tolerations",
        "/metadata/finalizers",
        "/metadata/labels",
        "/spec/containers/0/env",
        "/spec/containers/0/ports",
    ];
    for v in &odd {
        for k in keys {
            let _ = strategic_merge(&pod(), &json!({ k: v }), "Pod");
            let _ = strategic_merge(&pod(), &json!({"spec": { k: v }}), "Pod");
            let _ = strategic_merge(&pod(), &json!({"metadata": { k: v }}), "Pod");
        }
        for p in nested {
            // The same odd value both as the patch and as the stored original.
            let mut patch = pod();
            if let Some(slot) = patch.pointer_mut(p) {
                *slot = v.clone();
            }
            let _ = strategic_merge(&pod(), &patch, "Pod");
            let _ = strategic_merge(&patch, &pod(), "Pod");
        }
    }
}

#[test]
fn json_merge_patch_replaces_lists() {
    let cases = [
        (
            "objects merge and null deletes",
            json!({"a": {"b": 1, "c": 2}}),
            json!({"a": {"b": null, "d": 3}}),
            json!({"a": {"c": 2, "d": 3}}),
        ),
        (
            "lists are replaced",
            json!({"containers": [{"name": "a"}, {"name": "b"}]}),
            json!({"containers": [{"name": "c"}]}),
            json!({"containers": [{"name": "c"}]}),
        ),
        (
            "a non-object patch replaces the document",
            json!({"a": 1}),
            json!(5),
            json!(5),
        ),
    ];
    for (name, original, patch, want) in cases {
        assert_eq!(json_merge_patch(&original, &patch), want, "{name}");
    }
}

#[test]
fn json_patch_applies_operations_or_nothing() {
    let doc = json!({"spec": {"replicas": 1, "list": ["a"]}});
    let ok = json!([
        {"op": "replace", "path": "/spec/replicas", "value": 3},
        {"op": "add", "path": "/spec/list/-", "value": "b"}
    ]);
    assert_eq!(
        json_patch(&doc, &ok),
        Ok(json!({"spec": {"replicas": 3, "list": ["a", "b"]}}))
    );
    let failing_test = json!([
        {"op": "replace", "path": "/spec/replicas", "value": 3},
        {"op": "test", "path": "/spec/replicas", "value": 1}
    ]);
    assert!(matches!(
        json_patch(&doc, &failing_test),
        Err(PatchError::JsonPatch(_))
    ));
    assert!(matches!(
        json_patch(&doc, &json!({"op": "add"})),
        Err(PatchError::JsonPatch(_))
    ));
}
