//! Custom resources as kube-rs users write them: a `#[derive(CustomResource)]` type whose
//! generated CRD is installed through the API, then typed CRUD, the status subresource,
//! and a watcher-fed reflector that follows the objects, against the real `skiff server`.

mod support;

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{CustomResource, CustomResourceExt, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use support::Server;

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "kube-rs.example.com",
    version = "v1",
    kind = "Gadget",
    namespaced,
    status = "GadgetStatus",
    shortname = "gd",
    printcolumn = r#"{"name":"Count","type":"integer","jsonPath":".spec.count"}"#
)]
pub struct GadgetSpec {
    pub count: i32,
    pub label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct GadgetStatus {
    pub observed: i32,
}

fn gadget(name: &str, count: i32) -> Gadget {
    let mut g = Gadget::new(
        name,
        GadgetSpec {
            count,
            label: format!("gadget {name}"),
            note: None,
        },
    );
    g.metadata.namespace = Some("default".into());
    g
}

async fn install(client: &kube::Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &Gadget::crd())
        .await
        .expect("the derived CRD is accepted");
    tokio::time::timeout(
        Duration::from_secs(1),
        await_condition(
            crds,
            "gadgets.kube-rs.example.com",
            conditions::is_crd_established(),
        ),
    )
    .await
    .expect("established within a second")
    .expect("condition watch");
}

#[tokio::test(flavor = "multi_thread")]
async fn derived_custom_resources_round_trip_with_status() {
    let server = tokio::task::block_in_place(Server::start);
    let client = server.kube().await;
    install(&client).await;
    let gadgets: Api<Gadget> = Api::namespaced(client.clone(), "default");
    let created = gadgets
        .create(&PostParams::default(), &gadget("g1", 1))
        .await
        .expect("create");
    assert_eq!(created.spec.count, 1);
    assert!(created.metadata.uid.is_some());
    // The status subresource: writes through it change status only.
    let status = json!({"status": {"observed": 1}, "spec": {"count": 99}});
    let after = gadgets
        .patch_status("g1", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("patch status");
    assert_eq!(after.status, Some(GadgetStatus { observed: 1 }));
    assert_eq!(after.spec.count, 1);
    // Server-side apply from a typed object.
    let mut applied = gadget("g1", 2);
    applied.spec.note = Some("applied".into());
    let ssa = PatchParams::apply("crd-test").force();
    let out = gadgets
        .patch("g1", &ssa, &Patch::Apply(&applied))
        .await
        .expect("apply");
    assert_eq!(out.spec.count, 2);
    assert_eq!(out.spec.note.as_deref(), Some("applied"));
    assert_eq!(out.status, Some(GadgetStatus { observed: 1 }));
    // Schema validation reaches typed clients as a 422.
    let err = gadgets
        .patch(
            "g1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"count": "many"}})),
        )
        .await
        .expect_err("count must be an integer");
    match err {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 422);
            assert!(
                status.message.contains(
                    "spec.count: Invalid value: \"string\": spec.count in body must be of type integer: \"string\""
                ),
                "{}",
                status.message
            );
        }
        other => panic!("unexpected error {other:?}"),
    }
    let list = gadgets.list(&ListParams::default()).await.expect("list");
    assert_eq!(list.items.len(), 1);
    gadgets
        .delete("g1", &DeleteParams::default())
        .await
        .expect("delete");
    assert!(gadgets.get_opt("g1").await.expect("get").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn watcher_and_reflector_follow_custom_resources() {
    let server = tokio::task::block_in_place(Server::start);
    let client = server.kube().await;
    install(&client).await;
    let gadgets: Api<Gadget> = Api::namespaced(client.clone(), "default");
    gadgets
        .create(&PostParams::default(), &gadget("before", 1))
        .await
        .expect("create");
    let (reader, writer) = reflector::store::<Gadget>();
    let stream = reflector(writer, watcher(gadgets.clone(), watcher::Config::default()))
        .applied_objects()
        .boxed();
    let task = tokio::spawn(async move {
        let mut stream = stream;
        while let Some(item) = stream.next().await {
            item.expect("watch event");
        }
    });
    reader.wait_until_ready().await.expect("reflector ready");
    for i in 0..5 {
        gadgets
            .create(&PostParams::default(), &gadget(&format!("g{i}"), i))
            .await
            .expect("create");
    }
    gadgets
        .patch(
            "g0",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"count": 42}})),
        )
        .await
        .expect("patch");
    gadgets
        .delete("before", &DeleteParams::default())
        .await
        .expect("delete");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let state = reader.state();
        let mut names: Vec<String> = state.iter().map(|g| g.name_any()).collect();
        names.sort();
        let g0 = state
            .iter()
            .find(|g| g.name_any() == "g0")
            .map(|g| g.spec.count);
        if names == ["g0", "g1", "g2", "g3", "g4"] && g0 == Some(42) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "reflector did not converge: {names:?}, g0 count {g0:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    task.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn watches_end_when_the_crd_is_deleted() {
    let server = tokio::task::block_in_place(Server::start);
    let client = server.kube().await;
    install(&client).await;
    let gadgets: Api<Gadget> = Api::namespaced(client.clone(), "default");
    gadgets
        .create(&PostParams::default(), &gadget("g", 1))
        .await
        .expect("create");
    let mut events = gadgets
        .watch(&kube::api::WatchParams::default(), "0")
        .await
        .expect("watch")
        .boxed();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.delete("gadgets.kube-rs.example.com", &DeleteParams::default())
        .await
        .expect("delete CRD");
    // The object's deletion arrives, then the stream ends (instead of hanging forever).
    let mut deleted = false;
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(event) = events.next().await {
            if let Ok(kube::api::WatchEvent::Deleted(g)) = event {
                deleted |= g.name_any() == "g";
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the watch did not end");
    assert!(deleted, "the object's deletion was not seen");
    let gone = gadgets.list(&ListParams::default()).await.expect_err("404");
    assert!(matches!(gone, kube::Error::Api(s) if s.code == 404));
}
