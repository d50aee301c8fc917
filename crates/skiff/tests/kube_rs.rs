//! kube-rs 5, unmodified, against the real `skiff server`: typed CRUD, label selectors and
//! pagination, all four patch types, optimistic concurrency, NotFound, a watcher/reflector
//! that stays in sync while objects change, and raw requests that kubectl can't make
//! (no credentials, oversize and malformed bodies, unknown paths, expired watches).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, EnvVar, Namespace, Pod, PodSpec, PodTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::Client;
use serde_json::json;
use support::Server;

const NS: &str = "kube-rs";

/// Starts a server (blocking work off the async workers) and a namespace for the test.
async fn server_with_namespace() -> (Server, Client) {
    let server = tokio::task::block_in_place(Server::start);
    let client = server.kube().await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(NS.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    (server, client)
}

fn configmap(name: &str, labels: &[(&str, &str)], data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: (!labels.is_empty()).then(|| {
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            }),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..Default::default()
    }
}

fn pod(name: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some([("app".to_string(), "web".to_string())].into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![
                Container {
                    name: "web".into(),
                    image: Some("nginx:1.25".into()),
                    env: Some(vec![EnvVar {
                        name: "MODE".into(),
                        value: Some("prod".into()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                },
                Container {
                    name: "sidecar".into(),
                    image: Some("busybox:1.36".into()),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The `Status` of a failed call, or a test failure naming what came back instead.
fn api_error<T: std::fmt::Debug>(result: kube::Result<T>, what: &str) -> Box<kube::core::Status> {
    match result {
        Err(kube::Error::Api(status)) => status,
        other => panic!("{what}: expected a kube::Error::Api, got {other:?}"),
    }
}

fn data(cm: &ConfigMap) -> BTreeMap<String, String> {
    cm.data.clone().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_crud_with_typed_api() {
    let (_server, client) = server_with_namespace().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, NS);

    let created = cms
        .create(
            &PostParams::default(),
            &configmap("app", &[("tier", "web")], &[("k", "v")]),
        )
        .await
        .expect("create");
    assert_eq!(created.metadata.namespace.as_deref(), Some(NS));
    assert!(created.metadata.uid.is_some(), "uid set: {created:?}");
    assert!(created.metadata.creation_timestamp.is_some());
    let rv1 = created.metadata.resource_version.clone().expect("rv");

    let again = api_error(
        cms.create(&PostParams::default(), &configmap("app", &[], &[]))
            .await,
        "second create",
    );
    assert_eq!(
        (again.code, again.reason.as_str()),
        (409, "AlreadyExists"),
        "{again:?}"
    );

    let got = cms.get("app").await.expect("get");
    assert_eq!(got.metadata.uid, created.metadata.uid);
    assert_eq!(data(&got), BTreeMap::from([("k".into(), "v".into())]));

    let list = cms.list(&ListParams::default()).await.expect("list");
    assert!(list.metadata.resource_version.is_some(), "list has an rv");
    let names: Vec<_> = list
        .iter()
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    assert!(names.contains(&"app".to_string()), "{names:?}");

    let mut changed = got.clone();
    changed.data = Some(BTreeMap::from([("k".into(), "w".into())]));
    let replaced = cms
        .replace("app", &PostParams::default(), &changed)
        .await
        .expect("replace");
    assert_eq!(data(&replaced)["k"], "w");
    let rv2 = replaced.metadata.resource_version.clone().expect("rv");
    assert_ne!(rv1, rv2, "replace bumps the resourceVersion");
    assert_eq!(data(&cms.get("app").await.unwrap())["k"], "w");

    let deleted = cms
        .delete("app", &DeleteParams::default())
        .await
        .expect("delete");
    // A ConfigMap has no finalizers: the delete answers with the object, gone at once.
    if let Some(obj) = deleted.left() {
        assert_eq!(obj.metadata.name.as_deref(), Some("app"));
    }
    let gone = api_error(cms.get("app").await, "get after delete");
    assert_eq!((gone.code, gone.reason.as_str()), (404, "NotFound"));
    assert!(
        cms.get_opt("app").await.expect("get_opt").is_none(),
        "get_opt maps 404 to None"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_crud_with_typed_api() {
    let (_server, client) = server_with_namespace().await;
    let pods: Api<Pod> = Api::namespaced(client, NS);

    let created = pods
        .create(&PostParams::default(), &pod("web"))
        .await
        .expect("create pod");
    let spec = created.spec.clone().expect("spec");
    // Upstream defaulting, as kube-rs users see it.
    assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
    assert_eq!(spec.dns_policy.as_deref(), Some("ClusterFirst"));
    assert_eq!(spec.termination_grace_period_seconds, Some(30));
    assert_eq!(
        spec.containers[0].image_pull_policy.as_deref(),
        Some("IfNotPresent")
    );

    let got = pods.get("web").await.expect("get pod");
    assert_eq!(got.metadata.uid, created.metadata.uid);
    let listed = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("list pods");
    assert_eq!(listed.items.len(), 1);

    // Read-modify-write as clients do: the scheduler may write the pod's status (no node
    // fits here) between the read and the replace, which is a 409 to retry.
    let mut current = got.clone();
    let replaced = loop {
        let mut relabelled = current.clone();
        relabelled
            .metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert("version".into(), "2".into());
        match pods
            .replace("web", &PostParams::default(), &relabelled)
            .await
        {
            Ok(p) => break p,
            Err(kube::Error::Api(s)) if s.code == 409 => {
                current = pods.get("web").await.expect("get pod");
            }
            Err(e) => panic!("replace pod: {e}"),
        }
    };
    assert_eq!(
        replaced.metadata.labels.as_ref().unwrap()["version"],
        "2",
        "{replaced:?}"
    );

    pods.delete("web", &DeleteParams::default())
        .await
        .expect("delete pod");
    // An unscheduled pod has no kubelet to wait for: upstream removes it right away.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match pods.get_opt("web").await.expect("get pod") {
            None => break,
            Some(p) if Instant::now() > deadline => {
                panic!("pod still there 10 s after delete: {:?}", p.metadata)
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_with_label_selectors_and_pages() {
    let (_server, client) = server_with_namespace().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, NS);
    for i in 0..25 {
        let tier = ["a", "b", "c"][i % 3];
        let mut labels = vec![("tier", tier)];
        if i % 5 == 0 {
            labels.push(("special", "yes"));
        }
        cms.create(
            &PostParams::default(),
            &configmap(&format!("cm-{i:02}"), &labels, &[]),
        )
        .await
        .expect("create");
    }
    // Every namespace also holds the published cluster CA (kube-root-ca.crt), as upstream.
    let ours = |name: &String| name != "kube-root-ca.crt";
    let names = |list: &kube::core::ObjectList<ConfigMap>| -> BTreeSet<String> {
        list.iter()
            .filter_map(|c| c.metadata.name.clone())
            .filter(ours)
            .collect()
    };
    let expect = |f: &dyn Fn(usize) -> bool| -> BTreeSet<String> {
        (0..25)
            .filter(|i| f(*i))
            .map(|i| format!("cm-{i:02}"))
            .collect()
    };
    let cases: Vec<(&str, BTreeSet<String>)> = vec![
        ("tier=a", expect(&|i| i % 3 == 0)),
        ("tier!=a", expect(&|i| i % 3 != 0)),
        ("tier in (a,b)", expect(&|i| i % 3 != 2)),
        ("tier notin (a,b)", expect(&|i| i % 3 == 2)),
        ("special", expect(&|i| i % 5 == 0)),
        ("!special", expect(&|i| i % 5 != 0)),
        ("tier=b,special", expect(&|i| i % 3 == 1 && i % 5 == 0)),
    ];
    for (selector, want) in cases {
        let got = cms
            .list(&ListParams::default().labels(selector))
            .await
            .unwrap_or_else(|e| panic!("list -l {selector}: {e}"));
        assert_eq!(names(&got), want, "selector {selector}");
    }
    let fields = cms
        .list(&ListParams::default().fields("metadata.name=cm-07"))
        .await
        .expect("field selector");
    assert_eq!(names(&fields), BTreeSet::from(["cm-07".to_string()]));

    // Pages of 10 with continue tokens: every object once, in order, then no token.
    let mut seen = Vec::new();
    let mut params = ListParams::default().limit(10);
    let mut pages = 0;
    loop {
        let page = cms.list(&params).await.expect("page");
        pages += 1;
        assert!(page.items.len() <= 10, "page over the limit");
        assert!(
            page.metadata.resource_version.is_some(),
            "every page has a resourceVersion"
        );
        seen.extend(
            page.iter()
                .filter_map(|c| c.metadata.name.clone())
                .filter(ours),
        );
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = ListParams::default().limit(10).continue_token(&token),
            None => break,
        }
        assert!(pages < 10, "pagination does not end: {seen:?}");
    }
    assert_eq!(pages, 3, "25 (or 26) objects in pages of 10");
    let want: Vec<String> = (0..25).map(|i| format!("cm-{i:02}")).collect();
    assert_eq!(seen, want);

    // A selector with a limit pages over the matches only.
    let mut matched = Vec::new();
    let mut params = ListParams::default().labels("tier=a").limit(4);
    for _ in 0..10 {
        let page = cms.list(&params).await.expect("selector page");
        matched.extend(page.iter().filter_map(|c| c.metadata.name.clone()));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => {
                params = ListParams::default()
                    .labels("tier=a")
                    .limit(4)
                    .continue_token(&token)
            }
            None => break,
        }
    }
    let want: Vec<String> = expect(&|i| i % 3 == 0).into_iter().collect();
    assert_eq!(matched, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_patch_types() {
    let (_server, client) = server_with_namespace().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    cms.create(
        &PostParams::default(),
        &configmap("p", &[("a", "1")], &[("k", "v")]),
    )
    .await
    .expect("create");

    // JSON merge patch: null removes, other keys merge.
    let merged = cms
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"labels": {"a": null, "b": "2"}}, "data": {"x": "y"}}),
            ),
        )
        .await
        .expect("merge patch");
    assert_eq!(
        merged.metadata.labels.clone().unwrap_or_default(),
        BTreeMap::from([("b".into(), "2".into())])
    );
    assert_eq!(
        data(&merged),
        BTreeMap::from([("k".into(), "v".into()), ("x".into(), "y".into())])
    );

    // JSON patch (RFC 6902), with a passing and then a failing `test`.
    let ops = serde_json::from_value(json!([
        {"op": "test", "path": "/data/k", "value": "v"},
        {"op": "replace", "path": "/data/k", "value": "w"},
        {"op": "add", "path": "/data/new", "value": "n"},
        {"op": "remove", "path": "/data/x"}
    ]))
    .expect("json patch");
    let patched = cms
        .patch("p", &PatchParams::default(), &Patch::Json::<()>(ops))
        .await
        .expect("json patch");
    assert_eq!(
        data(&patched),
        BTreeMap::from([("k".into(), "w".into()), ("new".into(), "n".into())])
    );
    let failing = serde_json::from_value(json!([
        {"op": "test", "path": "/data/k", "value": "not-this"},
        {"op": "replace", "path": "/data/k", "value": "z"}
    ]))
    .unwrap();
    let err = api_error(
        cms.patch("p", &PatchParams::default(), &Patch::Json::<()>(failing))
            .await,
        "json patch with a failing test",
    );
    assert_eq!(err.code, 422, "{err:?}");
    assert_eq!(data(&cms.get("p").await.unwrap())["k"], "w", "not applied");

    // Strategic merge patch on a pod: containers merge by name (the image is one of the
    // few pod fields that may change).
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    pods.create(&PostParams::default(), &pod("smp"))
        .await
        .expect("create pod");
    let patched = pods
        .patch(
            "smp",
            &PatchParams::default(),
            &Patch::Strategic(json!({
                "metadata": {"labels": {"patched": "yes"}},
                "spec": {"containers": [{"name": "sidecar", "image": "busybox:1.37"}]}
            })),
        )
        .await
        .expect("strategic merge patch of a pod");
    let spec = patched.spec.expect("spec");
    let images: Vec<_> = spec
        .containers
        .iter()
        .map(|c| (c.name.as_str(), c.image.as_deref().unwrap_or_default()))
        .collect();
    assert_eq!(
        images,
        [("web", "nginx:1.25"), ("sidecar", "busybox:1.37")],
        "containers merged by name, none lost"
    );
    assert_eq!(
        spec.containers[0].env.clone().unwrap_or_default().len(),
        1,
        "untouched container keeps its env"
    );
    assert_eq!(
        patched.metadata.labels.unwrap_or_default()["patched"],
        "yes"
    );

    // On a Deployment's pod template: env merges by name, `$patch: delete` removes one.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let template = pod("tmpl");
    deployments
        .create(
            &PostParams::default(),
            &Deployment {
                metadata: ObjectMeta {
                    name: Some("smp".into()),
                    ..Default::default()
                },
                spec: Some(DeploymentSpec {
                    selector: LabelSelector {
                        match_labels: Some([("app".to_string(), "web".to_string())].into()),
                        ..Default::default()
                    },
                    template: PodTemplateSpec {
                        metadata: Some(template.metadata),
                        spec: template.spec,
                    },
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .expect("create deployment");
    let env_of = |d: &Deployment| -> BTreeMap<String, String> {
        d.spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0]
            .env
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.name, e.value.unwrap_or_default()))
            .collect()
    };
    let patched = deployments
        .patch(
            "smp",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "web", "env": [{"name": "EXTRA", "value": "1"}]}
            ]}}}})),
        )
        .await
        .expect("strategic merge patch of a deployment");
    assert_eq!(
        env_of(&patched),
        BTreeMap::from([("MODE".into(), "prod".into()), ("EXTRA".into(), "1".into())]),
        "env merged by name"
    );
    let containers = patched
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap();
    assert_eq!(containers.containers.len(), 2, "no container lost");
    assert_eq!(
        containers.containers[0].image.as_deref(),
        Some("nginx:1.25"),
        "image kept"
    );
    let patched = deployments
        .patch(
            "smp",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "web", "env": [{"name": "MODE", "$patch": "delete"}]}
            ]}}}})),
        )
        .await
        .expect("strategic delete directive");
    assert_eq!(
        env_of(&patched),
        BTreeMap::from([("EXTRA".into(), "1".into())])
    );

    // Server-side apply: creates, then updates the fields this manager owns.
    let applied_cm = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "applied", "labels": {"owner": "test"}},
        "data": {"one": "1"}
    });
    let ssa = PatchParams::apply("test");
    let first = cms
        .patch("applied", &ssa, &Patch::Apply(&applied_cm))
        .await
        .expect("apply creates");
    assert_eq!(data(&first), BTreeMap::from([("one".into(), "1".into())]));
    let uid = first.metadata.uid.clone();
    let second = cms
        .patch(
            "applied",
            &ssa,
            &Patch::Apply(json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "applied", "labels": {"owner": "test"}},
                "data": {"one": "1", "two": "2"}
            })),
        )
        .await
        .expect("apply updates");
    assert_eq!(second.metadata.uid, uid, "same object");
    assert_eq!(
        data(&second),
        BTreeMap::from([("one".into(), "1".into()), ("two".into(), "2".into())])
    );
    assert_eq!(second.metadata.labels.unwrap_or_default()["owner"], "test");
}

/// Server-side apply as kube-rs controllers rely on it: the field manager is recorded,
/// a field the manager stops applying is removed, and another manager changing an owned
/// field without `force` is a 409 Conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_tracks_field_ownership() {
    let (_server, client) = server_with_namespace().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, NS);
    let config = |data: serde_json::Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owned"}, "data": data});
    let ssa = PatchParams::apply("test");
    let applied = cms
        .patch(
            "owned",
            &ssa,
            &Patch::Apply(config(json!({"one": "1", "two": "2"}))),
        )
        .await
        .expect("apply creates");
    let managers: Vec<_> = applied
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager.map(|n| (n, m.operation.unwrap_or_default())))
        .collect();
    assert!(
        managers.contains(&("test".to_string(), "Apply".to_string())),
        "PATCH application/apply-patch+yaml?fieldManager=test: managedFields should name \
         manager \"test\" with operation Apply; got {managers:?}"
    );
    let reapplied = cms
        .patch("owned", &ssa, &Patch::Apply(config(json!({"one": "1"}))))
        .await
        .expect("apply again without `two`");
    assert_eq!(
        data(&reapplied),
        BTreeMap::from([("one".into(), "1".into())]),
        "a field the manager no longer applies is removed"
    );
    let err = api_error(
        cms.patch(
            "owned",
            &PatchParams::apply("other"),
            &Patch::Apply(config(json!({"one": "changed"}))),
        )
        .await,
        "another manager changing an owned field without force",
    );
    assert_eq!(
        (err.code, err.reason.as_str()),
        (409, "Conflict"),
        "{err:?}"
    );
    let forced = cms
        .patch(
            "owned",
            &PatchParams::apply("other").force(),
            &Patch::Apply(config(json!({"one": "changed"}))),
        )
        .await
        .expect("forced apply");
    assert_eq!(data(&forced)["one"], "changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_replace_is_a_conflict_and_missing_is_not_found() {
    let (_server, client) = server_with_namespace().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, NS);
    let original = cms
        .create(
            &PostParams::default(),
            &configmap("occ", &[], &[("n", "0")]),
        )
        .await
        .expect("create");
    let mut first = original.clone();
    first.data = Some(BTreeMap::from([("n".into(), "1".into())]));
    cms.replace("occ", &PostParams::default(), &first)
        .await
        .expect("first replace");
    // Still carrying the original resourceVersion: stale.
    let mut stale = original.clone();
    stale.data = Some(BTreeMap::from([("n".into(), "2".into())]));
    let err = api_error(
        cms.replace("occ", &PostParams::default(), &stale).await,
        "replace with a stale resourceVersion",
    );
    assert_eq!(
        (err.code, err.reason.as_str()),
        (409, "Conflict"),
        "{err:?}"
    );
    assert!(
        err.message.contains(
            "the object has been modified; please apply your changes to the latest version and try again"
        ),
        "{}",
        err.message
    );
    assert!(err.is_conflict());
    assert_eq!(data(&cms.get("occ").await.unwrap())["n"], "1");

    let missing = api_error(cms.get("no-such-thing").await, "get a missing object");
    assert_eq!(
        (missing.code, missing.reason.as_str()),
        (404, "NotFound"),
        "{missing:?}"
    );
    assert!(missing.is_not_found());
    assert!(
        missing
            .message
            .contains("configmaps \"no-such-thing\" not found"),
        "{}",
        missing.message
    );
    let missing = api_error(
        cms.delete("no-such-thing", &DeleteParams::default()).await,
        "delete a missing object",
    );
    assert_eq!(missing.code, 404);
    let mut absent = configmap("no-such-thing", &[], &[]);
    absent.metadata.resource_version = stale.metadata.resource_version.clone();
    let missing = api_error(
        cms.replace("no-such-thing", &PostParams::default(), &absent)
            .await,
        "replace a missing object",
    );
    assert_eq!(missing.code, 404, "{missing:?}");
}

/// name -> resourceVersion of what the server lists in `NS`.
async fn server_state(cms: &Api<ConfigMap>) -> BTreeMap<String, String> {
    cms.list(&ListParams::default())
        .await
        .expect("list")
        .into_iter()
        .map(|c| {
            (
                c.metadata.name.unwrap_or_default(),
                c.metadata.resource_version.unwrap_or_default(),
            )
        })
        .collect()
}

fn store_state(store: &reflector::Store<ConfigMap>) -> BTreeMap<String, String> {
    store
        .state()
        .iter()
        .map(|c| {
            (
                c.metadata.name.clone().unwrap_or_default(),
                c.metadata.resource_version.clone().unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflector_stays_in_sync_while_objects_change() {
    let (_server, client) = server_with_namespace().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    // Some objects before the watcher starts, so its initial list has pages to follow.
    for i in 0..30 {
        cms.create(
            &PostParams::default(),
            &configmap(&format!("pre-{i}"), &[], &[]),
        )
        .await
        .expect("create");
    }
    let (store, writer) = reflector::store::<ConfigMap>();
    let config = watcher::Config::default().page_size(7);
    let errors = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let errs = errors.clone();
    let task = tokio::spawn(
        reflector(writer, watcher(cms.clone(), config)).for_each(move |ev| {
            if let Err(e) = ev {
                errs.lock().unwrap().push(e.to_string());
            }
            futures::future::ready(())
        }),
    );
    tokio::time::timeout(Duration::from_secs(10), store.wait_until_ready())
        .await
        .expect("reflector ready within 10 s")
        .expect("writer alive");
    assert_eq!(store_state(&store), server_state(&cms).await);

    // 200 objects, 8 writers at once: each object is created, most are updated, some
    // are deleted (the pre-existing ones partly too).
    let mut writers = Vec::new();
    for w in 0..8 {
        let cms = cms.clone();
        writers.push(tokio::spawn(async move {
            for n in 0..25 {
                let name = format!("obj-{w}-{n}");
                cms.create(
                    &PostParams::default(),
                    &configmap(&name, &[], &[("v", "0")]),
                )
                .await
                .expect("create");
                if n % 4 != 3 {
                    cms.patch(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"data": {"v": "1"}})),
                    )
                    .await
                    .expect("update");
                }
                if n % 3 == 0 {
                    cms.delete(&name, &DeleteParams::default())
                        .await
                        .expect("delete");
                }
                if n % 5 == 0 {
                    let pre = format!("pre-{}", (w * 25 + n) % 30);
                    let _ = cms.delete(&pre, &DeleteParams::default()).await;
                }
            }
        }));
    }
    for w in writers {
        w.await.expect("writer");
    }

    let want = server_state(&cms).await;
    assert!(want.len() > 100, "most objects remain: {}", want.len());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let have = store_state(&store);
        if have == want {
            break;
        }
        if Instant::now() > deadline {
            let missing: Vec<_> = want.keys().filter(|k| !have.contains_key(*k)).collect();
            let extra: Vec<_> = have.keys().filter(|k| !want.contains_key(*k)).collect();
            let stale: Vec<_> = want
                .iter()
                .filter(|(k, v)| have.get(*k).is_some_and(|h| h != *v))
                .collect();
            panic!(
                "reflector store did not converge to the server's list in 20 s:\n\
                 missing {missing:?}\nextra {extra:?}\nstale {stale:?}\nwatcher errors {:?}",
                errors.lock().unwrap()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Objects carry full content, not just names.
    let one = store
        .state()
        .into_iter()
        .find(|c| c.metadata.name.as_deref() == Some("obj-0-1"))
        .expect("obj-0-1 in the store");
    assert_eq!(data(&one)["v"], "1");
    task.abort();
}

/// A kubeconfig for the same server and CA with no user credentials at all.
fn anonymous_kubeconfig(server: &Server) -> std::path::PathBuf {
    let admin: serde_json::Value = {
        let out = server.ok(&["config", "view", "--raw", "-o", "json"]);
        serde_json::from_str(&out).expect("kubectl config view is JSON")
    };
    let ca = admin["clusters"][0]["cluster"]["certificate-authority-data"]
        .as_str()
        .expect("CA data in the admin kubeconfig")
        .to_string();
    let path = server.data_dir.path().join("no-credentials.yaml");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: s\n  cluster:\n    server: {}\n    certificate-authority-data: {ca}\ncontexts:\n- name: s\n  context: {{cluster: s, user: nobody}}\ncurrent-context: s\nusers:\n- name: nobody\n  user: {{}}\n",
            server.url()
        ),
    )
    .unwrap();
    path
}

fn request(method: &str, uri: &str, content_type: &str, body: Vec<u8>) -> http::Request<Vec<u8>> {
    http::Request::builder()
        .method(method)
        .uri(uri)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::ACCEPT, "application/json")
        .body(body)
        .unwrap()
}

/// A raw request whose answer must be an error `Status` with this code and reason.
async fn expect_status(client: &Client, req: http::Request<Vec<u8>>, code: u16, reason: &str) {
    let what = format!("{} {}", req.method(), req.uri());
    match client.request_text(req).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(
                (status.code, status.reason.as_str()),
                (code, reason),
                "{what}: answered {status:?}"
            );
            // A reconstructed (non-JSON) body would have reason "Failed to parse error data".
            assert!(status.is_failure(), "{what}: status Failure: {status:?}");
            assert!(!status.message.is_empty(), "{what}: a message: {status:?}");
        }
        other => panic!("{what}: expected a {code} {reason} Status, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_requests_get_clear_status_errors() {
    let (server, client) = server_with_namespace().await;

    // No credentials at all: 401 Unauthorized, anonymous access refused.
    let anon_path = anonymous_kubeconfig(&server);
    let anon = support::kube_client(&anon_path).await;
    expect_status(
        &anon,
        request(
            "GET",
            "/api/v1/namespaces/default/configmaps",
            "application/json",
            vec![],
        ),
        401,
        "Unauthorized",
    )
    .await;
    let anon_cms: Api<ConfigMap> = Api::namespaced(anon, "default");
    let err = api_error(
        anon_cms.list(&ListParams::default()).await,
        "anonymous list",
    );
    assert_eq!(err.code, 401);

    // Malformed JSON.
    expect_status(
        &client,
        request(
            "POST",
            &format!("/api/v1/namespaces/{NS}/configmaps"),
            "application/json",
            br#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "#.to_vec(),
        ),
        400,
        "BadRequest",
    )
    .await;

    // Unknown paths: a resource that does not exist, and a path outside the API.
    expect_status(
        &client,
        request(
            "GET",
            &format!("/api/v1/namespaces/{NS}/no-such-resources"),
            "application/json",
            vec![],
        ),
        404,
        "NotFound",
    )
    .await;
    expect_status(
        &client,
        request("GET", "/no/such/path", "application/json", vec![]),
        404,
        "NotFound",
    )
    .await;

    // A 4 MiB body: over the 3 MiB limit.
    let big = "x".repeat(4 * 1024 * 1024);
    let body = serde_json::to_vec(&json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "big"}, "data": {"big": big}
    }))
    .unwrap();
    expect_status(
        &client,
        request(
            "POST",
            &format!("/api/v1/namespaces/{NS}/configmaps"),
            "application/json",
            body,
        ),
        413,
        "RequestEntityTooLarge",
    )
    .await;

    // The server keeps serving after all of that, and the same client's very next
    // request works: after answering 413 without reading the rest of the body, upstream
    // (Go's net/http) says `Connection: close`, so clients do not reuse that connection.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    if let Err(e) = cms.list(&ListParams::default()).await {
        panic!(
            "the request right after a 413 failed: {e}\n(the 413 response left a \
             connection the client reused and the server then closed)"
        );
    }
    cms.create(&PostParams::default(), &configmap("after", &[], &[]))
        .await
        .expect("server still serves");
    assert!(
        cms.get_opt("big").await.unwrap().is_none(),
        "nothing half-written"
    );
}

/// Restarts the server, so its watch history starts after everything written so far.
async fn writes_then_restart(server: &mut Server, client: &Client) -> Client {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    for i in 0..20 {
        cms.create(
            &PostParams::default(),
            &configmap(&format!("w-{i}"), &[], &[]),
        )
        .await
        .expect("create");
    }
    tokio::task::block_in_place(|| server.restart());
    server.kube().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_watch_from_an_expired_resource_version_is_410_expired() {
    let (mut server, client) = server_with_namespace().await;
    let client = writes_then_restart(&mut server, &client).await;
    let req = request(
        "GET",
        &format!(
            "/api/v1/namespaces/{NS}/configmaps?watch=true&resourceVersion=1&timeoutSeconds=5"
        ),
        "application/json",
        vec![],
    );
    // Upstream answers 200 and one ERROR event carrying a 410 Expired Status; an HTTP 410
    // with the same Status is accepted here (kube-rs relisting is tested separately).
    match client.request_text(req).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(
                (status.code, status.reason.as_str()),
                (410, "Expired"),
                "{status:?}"
            );
        }
        Ok(text) => {
            let first = text.lines().next().unwrap_or_default();
            let event: serde_json::Value = serde_json::from_str(first)
                .unwrap_or_else(|e| panic!("watch line {first:?} is not JSON: {e}"));
            assert_eq!(event["type"], "ERROR", "{event}");
            assert_eq!(event["object"]["kind"], "Status", "{event}");
            assert_eq!(event["object"]["code"], 410, "{event}");
            assert_eq!(event["object"]["reason"], "Expired", "{event}");
        }
        Err(other) => panic!("watch from resourceVersion=1: {other:?}"),
    }
}

/// What kube-rs needs to recover from an expired resourceVersion: its watcher only
/// re-lists on a 410 that arrives as an ERROR event (an HTTP 410 at watch start makes
/// `kube::runtime::watcher` retry the same resourceVersion forever), which is what
/// upstream's watch cache sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_watch_from_an_expired_resource_version_gets_an_error_event() {
    let (mut server, client) = server_with_namespace().await;
    let client = writes_then_restart(&mut server, &client).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, NS);
    let stream = cms
        .watch(&WatchParams::default().timeout(5), "1")
        .await
        .unwrap_or_else(|e| {
            panic!(
                "GET .../configmaps?watch=true&resourceVersion=1 (history expired): \
                 expected HTTP 200 with an ERROR event (410 Expired), as upstream; got {e}"
            )
        });
    let mut stream = Box::pin(stream);
    let first = tokio::time::timeout(Duration::from_secs(10), stream.try_next())
        .await
        .expect("an event within 10 s")
        .expect("a watch event");
    match first {
        Some(WatchEvent::Error(status)) => {
            assert_eq!(
                (status.code, status.reason.as_str()),
                (410, "Expired"),
                "{status:?}"
            )
        }
        other => panic!("expected an ERROR 410 event first, got {other:?}"),
    }
}

/// The same, end to end: a kube-rs reflector whose resourceVersion expired across a
/// restart re-lists and converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflector_relists_after_its_resource_version_expires() {
    let (mut server, client) = server_with_namespace().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let (store, writer) = reflector::store::<ConfigMap>();
    let errors = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let errs = errors.clone();
    let task = tokio::spawn(
        reflector(writer, watcher(cms.clone(), watcher::Config::default()))
            .backoff(support::QuickBackoff)
            .for_each(move |ev| {
                if let Err(e) = ev {
                    errs.lock().unwrap().push(e.to_string());
                }
                futures::future::ready(())
            }),
    );
    tokio::time::timeout(Duration::from_secs(10), store.wait_until_ready())
        .await
        .expect("reflector ready")
        .expect("writer alive");
    // Writes in another namespace move the store revision past anything this watcher saw.
    let others: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for i in 0..10 {
        others
            .create(
                &PostParams::default(),
                &configmap(&format!("elsewhere-{i}"), &[], &[]),
            )
            .await
            .expect("create");
    }
    tokio::task::block_in_place(|| server.restart());
    let cms: Api<ConfigMap> = Api::namespaced(server.kube().await, NS);
    cms.create(
        &PostParams::default(),
        &configmap("after-restart", &[], &[]),
    )
    .await
    .expect("create after restart");
    let want = server_state(&cms).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while store_state(&store) != want {
        if Instant::now() > deadline {
            panic!(
                "reflector did not recover after restart in 20 s: store {:?}, server {want:?}; \
                 watcher errors (last 5): {:?}",
                store_state(&store),
                errors
                    .lock()
                    .unwrap()
                    .iter()
                    .rev()
                    .take(5)
                    .collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    task.abort();
}
