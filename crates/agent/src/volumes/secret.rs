//! secret volumes: a Secret's keys as files on a tmpfs (also used by projected volumes).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{KeyToPath, Secret, SecretVolumeSource};

use super::atomic::Payload;
use super::keys::{self, Source, DEFAULT_MODE};

/// The files of a secret volume.
pub async fn payload(
    client: &kube::Client,
    namespace: &str,
    src: &SecretVolumeSource,
) -> Result<Payload, String> {
    let default_mode = src
        .default_mode
        .map(keys::mode_bits)
        .unwrap_or(DEFAULT_MODE);
    let name = src.secret_name.as_deref().unwrap_or_default();
    project(
        client,
        namespace,
        name,
        src.items.as_deref(),
        default_mode,
        src.optional.unwrap_or(false),
    )
    .await
}

/// Reads Secret `name` and projects its keys; a missing Secret is an empty set when
/// `optional`, else upstream's `secret "name" not found`.
pub async fn project(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    items: Option<&[KeyToPath]>,
    default_mode: u32,
    optional: bool,
) -> Result<Payload, String> {
    let Some(secret) = keys::fetch::<Secret>(client, namespace, name, "secret", optional).await?
    else {
        return Ok(Payload::new());
    };
    let mut data: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    // stringData is folded into data by the API server; read it too in case a server
    // hands it back unfolded.
    for (k, v) in secret.string_data.unwrap_or_default() {
        data.insert(k, v.into_bytes());
    }
    for (k, v) in secret.data.unwrap_or_default() {
        data.insert(k, v.0);
    }
    keys::project(Source::Secret, &data, items, default_mode, optional)
}
