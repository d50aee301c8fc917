//! projected volumes: configMap, secret, downwardAPI and serviceAccountToken sources
//! merged into one directory (on a tmpfs, as upstream keeps them in memory).

use std::time::Instant;

use k8s_openapi::api::core::v1::{Pod, ProjectedVolumeSource};

use super::atomic::{validate_path, FileProjection, Payload};
use super::downward::{self, Allocatable};
use super::keys::{mode_bits, DEFAULT_MODE};
use super::token::{TokenCache, TokenKey, DEFAULT_EXPIRATION_SECONDS};
use super::{configmap, secret};

/// The merged files, and when the earliest token in them is due for renewal.
pub async fn payload(
    client: &kube::Client,
    tokens: &TokenCache,
    pod: &Pod,
    src: &ProjectedVolumeSource,
    allocatable: &Allocatable,
) -> Result<(Payload, Option<Instant>), String> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let default_mode = src.default_mode.map(mode_bits).unwrap_or(DEFAULT_MODE);
    let mut out = Payload::new();
    let mut refresh_at: Option<Instant> = None;
    for source in src.sources.iter().flatten() {
        let part = if let Some(cm) = &source.config_map {
            configmap::project(
                client,
                namespace,
                &cm.name,
                cm.items.as_deref(),
                default_mode,
                cm.optional.unwrap_or(false),
            )
            .await?
        } else if let Some(s) = &source.secret {
            secret::project(
                client,
                namespace,
                &s.name,
                s.items.as_deref(),
                default_mode,
                s.optional.unwrap_or(false),
            )
            .await?
        } else if let Some(d) = &source.downward_api {
            downward::payload(
                pod,
                d.items.as_deref().unwrap_or(&[]),
                default_mode,
                allocatable,
            )?
        } else if let Some(t) = &source.service_account_token {
            validate_path(&t.path)?;
            let key = TokenKey {
                pod_uid: pod.metadata.uid.clone().unwrap_or_default(),
                namespace: namespace.to_owned(),
                service_account: service_account(pod),
                audience: t.audience.clone().unwrap_or_default(),
                expiration_seconds: t.expiration_seconds.unwrap_or(DEFAULT_EXPIRATION_SECONDS),
            };
            let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
            let (token, due) = tokens.get(client, &key, pod_name).await?;
            refresh_at = Some(refresh_at.map_or(due, |r| r.min(due)));
            let mut p = Payload::new();
            p.insert(
                t.path.clone(),
                FileProjection {
                    data: token.into_bytes(),
                    mode: default_mode,
                },
            );
            p
        } else {
            // clusterTrustBundle and sources this node does not know: nothing to show.
            Payload::new()
        };
        out.extend(part);
    }
    Ok((out, refresh_at))
}

/// Whether the projection reads container resources (so the node's allocatable may be
/// needed).
pub fn reads_resources(src: &ProjectedVolumeSource) -> bool {
    src.sources.iter().flatten().any(|s| {
        s.downward_api
            .as_ref()
            .is_some_and(|d| downward::reads_resources(d.items.as_deref().unwrap_or(&[])))
    })
}

fn service_account(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".into())
}
