//! configMap volumes: a ConfigMap's keys as files (also used by projected volumes).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, ConfigMapVolumeSource, KeyToPath};

use super::atomic::Payload;
use super::keys::{self, Source, DEFAULT_MODE};

/// The files of a configMap volume.
pub async fn payload(
    client: &kube::Client,
    namespace: &str,
    src: &ConfigMapVolumeSource,
) -> Result<Payload, String> {
    let default_mode = src
        .default_mode
        .map(keys::mode_bits)
        .unwrap_or(DEFAULT_MODE);
    project(
        client,
        namespace,
        &src.name,
        src.items.as_deref(),
        default_mode,
        src.optional.unwrap_or(false),
    )
    .await
}

/// Reads ConfigMap `name` and projects its keys; a missing ConfigMap is an empty set
/// when `optional`, else upstream's `configmap "name" not found`.
pub async fn project(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    items: Option<&[KeyToPath]>,
    default_mode: u32,
    optional: bool,
) -> Result<Payload, String> {
    let Some(cm) = keys::fetch::<ConfigMap>(client, namespace, name, "configmap", optional).await?
    else {
        return Ok(Payload::new());
    };
    let mut data: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (k, v) in cm.data.unwrap_or_default() {
        data.insert(k, v.into_bytes());
    }
    for (k, v) in cm.binary_data.unwrap_or_default() {
        data.insert(k, v.0);
    }
    keys::project(Source::ConfigMap, &data, items, default_mode, optional)
}
