//! Creating and deleting pods on behalf of a controller (upstream's PodControl).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::Api;

/// A pod built from `template`, owned by `owner`, named `<prefix>` + random suffix by
/// the API server (`generateName`), or exactly `name` when given.
pub fn pod_from_template(
    template: &PodTemplateSpec,
    namespace: &str,
    owner: OwnerReference,
    generate_name: &str,
    name: Option<String>,
    extra_labels: &BTreeMap<String, String>,
) -> Pod {
    let tmeta = template.metadata.clone().unwrap_or_default();
    let mut labels = tmeta.labels.unwrap_or_default();
    labels.extend(extra_labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    Pod {
        metadata: ObjectMeta {
            generate_name: name.is_none().then(|| generate_name.to_string()),
            name,
            namespace: Some(namespace.to_string()),
            labels: (!labels.is_empty()).then_some(labels),
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// Creates `pod`. `Ok(None)` when the namespace is being deleted (upstream ignores that
/// failure: the pod would be deleted anyway).
pub async fn create(client: &kube::Client, pod: &Pod) -> Result<Option<Pod>, kube::Error> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    match api.create(&PostParams::default(), pod).await {
        Ok(p) => Ok(Some(p)),
        Err(kube::Error::Api(s))
            if s.code == 403 && s.message.contains("because it is being terminated") =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Deletes the pod with `uid` as precondition (so a same-named replacement is safe);
/// already gone counts as done.
pub async fn delete(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    uid: Option<&str>,
) -> Result<(), kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let params = DeleteParams {
        preconditions: uid.map(|u| Preconditions {
            uid: Some(u.to_string()),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}
