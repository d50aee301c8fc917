//! The ServiceAccount controller against a real API server: every active namespace gets
//! a `default` ServiceAccount, which comes back when deleted.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::DeleteParams;
use support::{eventually, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_service_account_appears_and_comes_back() {
    let cluster = Cluster::start(&["serviceaccount"]).await;
    cluster.namespace("team-a").await;
    let sas = cluster.api::<ServiceAccount>("team-a");
    let first = eventually(
        "default ServiceAccount in team-a",
        Duration::from_secs(20),
        || async { sas.get_opt("default").await.ok().flatten() },
    )
    .await;
    // Existing namespaces are covered too.
    let kube_default = cluster.api::<ServiceAccount>("default");
    eventually(
        "default ServiceAccount in default",
        Duration::from_secs(20),
        || async { kube_default.get_opt("default").await.ok().flatten() },
    )
    .await;

    sas.delete("default", &DeleteParams::default())
        .await
        .unwrap();
    let again = eventually(
        "default ServiceAccount re-created",
        Duration::from_secs(20),
        || async {
            let sa = sas.get_opt("default").await.ok().flatten()?;
            (sa.metadata.uid != first.metadata.uid).then_some(sa)
        },
    )
    .await;
    assert_ne!(again.metadata.uid, first.metadata.uid);
}
