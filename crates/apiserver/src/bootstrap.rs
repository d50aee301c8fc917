//! What exists from the start, as on upstream clusters: the namespaces `default`,
//! `kube-system`, `kube-public` and `kube-node-lease`, the `kubernetes` Service in
//! `default` (the first service address), and the system PriorityClasses
//! `system-cluster-critical` and `system-node-critical`; the default RBAC policy
//! (`auth/reconcile.rs`). Created if missing, on every start, through the
//! same prepare/validate path as API requests; retried until the store answers.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use skiff_api::ApiError;

use crate::resources::{find, Context};
use crate::storage::object_key;
use crate::{lifecycle, App};

pub(crate) async fn ensure(
    app: &App,
    group: &str,
    plural: &str,
    namespace: &str,
    obj: Value,
) -> Result<(), ApiError> {
    let def = find(group, "v1", plural).ok_or_else(ApiError::path_not_found)?;
    let mut obj = obj;
    let name = skiff_api::meta::name(&obj).to_string();
    let key = object_key(def, namespace, &name);
    if app.storage.get(&key).await?.is_some() {
        return Ok(());
    }
    lifecycle::prepare_create(def, &mut obj, namespace);
    let ctx = Context {
        namespace,
        service_cidr: Some(&app.config.service_cidr),
    };
    def.hooks.prepare_create(&mut obj, &ctx);
    let claims = def.hooks.claims(&obj);
    // Lost a race with another server doing the same: fine either way.
    let _ = app.storage.create(&key, &obj, &claims).await?;
    Ok(())
}

async fn bootstrap(app: &App) -> Result<(), ApiError> {
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        ensure(
            app,
            "",
            "namespaces",
            "",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )
        .await?;
    }
    let ip = app.config.service_cidr.nth(1).to_string();
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"clusterIP": ip, "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": app.config.https_port}]},
    });
    ensure(app, "", "services", "default", service).await?;
    for (name, value, description) in crate::admission::SYSTEM_PRIORITY_CLASSES {
        let class = json!({
            "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": name},
            "value": value,
            "description": description,
        });
        ensure(app, "scheduling.k8s.io", "priorityclasses", "", class).await?;
    }
    crate::auth::reconcile::bootstrap(app).await?;
    Ok(())
}

pub async fn run(app: Arc<App>) {
    let mut delay = Duration::from_millis(50);
    loop {
        match bootstrap(&app).await {
            Ok(()) => {
                app.bootstrapped.store(true, Ordering::Release);
                return;
            }
            Err(err) => {
                tracing::warn!(%err, "bootstrap objects not created yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}
