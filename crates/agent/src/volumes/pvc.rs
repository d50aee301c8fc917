//! persistentVolumeClaim volumes: claim → bound PersistentVolume → a node path. This
//! node serves PVs of type hostPath and local (both are paths on the node).

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::Api;

use super::host_path;

/// The node path behind claim `claim` in `namespace`, with upstream's errors for a
/// missing or unbound claim.
pub async fn resolve(
    client: &kube::Client,
    namespace: &str,
    claim: &str,
) -> Result<String, String> {
    let pvc = Api::<PersistentVolumeClaim>::namespaced(client.clone(), namespace)
        .get_opt(claim)
        .await
        .map_err(|e| format!("error processing PVC {namespace}/{claim}: {e}"))?
        .ok_or_else(|| {
            format!(
                "error processing PVC {namespace}/{claim}: failed to fetch PVC from API server: \
                 persistentvolumeclaims \"{claim}\" not found"
            )
        })?;
    let phase = pvc
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    let volume_name = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .unwrap_or_default();
    if phase != "Bound" || volume_name.is_empty() {
        return Err(format!(
            "error processing PVC {namespace}/{claim}: PVC is not bound \
             (phase {phase:?}, volumeName {volume_name:?})"
        ));
    }
    let pv = Api::<PersistentVolume>::all(client.clone())
        .get_opt(&volume_name)
        .await
        .map_err(|e| format!("error processing PVC {namespace}/{claim}: {e}"))?
        .ok_or_else(|| {
            format!(
                "error processing PVC {namespace}/{claim}: persistentvolume \"{volume_name}\" not found"
            )
        })?;
    let spec = pv.spec.unwrap_or_default();
    if let Some(hp) = spec.host_path {
        host_path::check_type(&hp.path, hp.type_.as_deref())?;
        Ok(hp.path)
    } else if let Some(local) = spec.local {
        if !std::path::Path::new(&local.path).exists() {
            return Err(format!(
                "path \"{}\" does not exist on the node",
                local.path
            ));
        }
        Ok(local.path)
    } else {
        Err(format!(
            "persistentvolume \"{volume_name}\" is of a type this node cannot mount \
             (only hostPath and local are supported)"
        ))
    }
}
