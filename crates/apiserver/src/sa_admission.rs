//! ServiceAccount admission (upstream's `ServiceAccount` plugin), for pods being created:
//! - `serviceAccountName` defaults to `default`;
//! - a pod naming an account that does not exist is refused with upstream's message
//!   (except `default`, which the serviceaccount controller creates a moment after its
//!   namespace: refusing it would fail pods created right after their namespace when no
//!   controller manager runs; upstream refuses those too);
//! - the account's `imagePullSecrets` are copied to a pod that has none;
//! - unless `automountServiceAccountToken` is false (pod first, then account), a projected
//!   `kube-api-access-<5 random>` volume (a 3607 s bound token, the cluster CA from the
//!   `kube-root-ca.crt` ConfigMap, the namespace) is mounted read-only at
//!   /var/run/secrets/kubernetes.io/serviceaccount in every container and init container.

use serde_json::{json, Value};
use skiff_api::{meta, ApiError, GroupResource};

use crate::auth::Objects;

pub const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const VOLUME_PREFIX: &str = "kube-api-access-";
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// Mutates (and may refuse) a pod being created.
pub async fn admit(objects: &dyn Objects, pod: &mut Value) -> Result<(), ApiError> {
    if pod
        .pointer(&format!(
            "/metadata/annotations/{}",
            MIRROR_ANNOTATION.replace('/', "~1")
        ))
        .is_some()
    {
        return Ok(()); // static pods' mirrors keep what their node wrote
    }
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    let name = spec
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .or_else(|| {
            spec.get("serviceAccount")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        })
        .unwrap_or("default")
        .to_string();
    spec.insert("serviceAccountName".into(), json!(name));
    spec.insert("serviceAccount".into(), json!(name));
    let namespace = meta::namespace(pod).to_string();
    let account = objects
        .get_object("serviceaccounts", &namespace, &name)
        .await;
    if account.is_none() && name != "default" {
        return Err(ApiError::forbidden(
            &GroupResource::new("", "pods"),
            meta::name(pod),
            &format!(
                "error looking up service account {namespace}/{name}: serviceaccount \"{name}\" not found"
            ),
        ));
    }
    mutate(
        pod,
        account.as_ref(),
        &crate::lifecycle::generated_name(VOLUME_PREFIX),
    );
    Ok(())
}

/// The pure part: image pull secrets and the token volume. `volume_name` is used when the
/// pod has no `kube-api-access-` volume yet.
pub fn mutate(pod: &mut Value, account: Option<&Value>, volume_name: &str) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let pull_secrets = account
        .and_then(|a| a.get("imagePullSecrets"))
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty());
    let pod_has_pull_secrets = spec
        .get("imagePullSecrets")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if let (Some(secrets), false) = (pull_secrets, pod_has_pull_secrets) {
        spec.insert("imagePullSecrets".into(), json!(secrets));
    }
    let automount = spec
        .get("automountServiceAccountToken")
        .and_then(Value::as_bool)
        .or_else(|| {
            account
                .and_then(|a| a.get("automountServiceAccountToken"))
                .and_then(Value::as_bool)
        })
        .unwrap_or(true);
    if !automount {
        return;
    }
    let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
    if !volumes.is_array() {
        *volumes = json!([]);
    }
    let Some(volumes) = volumes.as_array_mut() else {
        return;
    };
    let existing = volumes.iter().find_map(|v| {
        v.get("name")
            .and_then(Value::as_str)
            .filter(|n| n.starts_with(VOLUME_PREFIX))
            .map(str::to_string)
    });
    let volume = match existing {
        Some(name) => name,
        None => {
            volumes.push(token_volume(volume_name));
            volume_name.to_string()
        }
    };
    for list in ["initContainers", "containers"] {
        for c in spec
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let Some(c) = c.as_object_mut() else { continue };
            let mounts = c.entry("volumeMounts").or_insert_with(|| json!([]));
            let Some(mounts) = mounts.as_array_mut() else {
                continue;
            };
            let mounted = mounts
                .iter()
                .any(|m| m.get("mountPath").and_then(Value::as_str) == Some(MOUNT_PATH));
            if !mounted {
                mounts.push(json!({"name": volume, "readOnly": true, "mountPath": MOUNT_PATH}));
            }
        }
    }
}

fn token_volume(name: &str) -> Value {
    json!({
        "name": name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {
                    "expirationSeconds": crate::handlers::ADMISSION_TOKEN_EXPIRATION,
                    "path": "token",
                }},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Value {
        json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {
            "initContainers": [{"name": "i", "image": "busybox"}],
            "containers": [{"name": "c", "image": "busybox"},
                           {"name": "own", "image": "busybox", "volumeMounts": [{"name": "mine", "mountPath": MOUNT_PATH}]}],
        }})
    }

    #[test]
    fn token_volume_is_mounted_everywhere_once() {
        let mut p = pod();
        mutate(&mut p, None, "kube-api-access-abcde");
        let vols = p["spec"]["volumes"].as_array().unwrap();
        assert_eq!(vols.len(), 1);
        assert_eq!(vols[0]["name"], "kube-api-access-abcde");
        let sources = &vols[0]["projected"]["sources"];
        assert_eq!(sources[0]["serviceAccountToken"]["expirationSeconds"], 3607);
        assert_eq!(sources[1]["configMap"]["name"], "kube-root-ca.crt");
        assert_eq!(
            sources[2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"],
            "metadata.namespace"
        );
        let mount =
            json!({"name": "kube-api-access-abcde", "readOnly": true, "mountPath": MOUNT_PATH});
        assert_eq!(
            p["spec"]["initContainers"][0]["volumeMounts"],
            json!([mount])
        );
        assert_eq!(p["spec"]["containers"][0]["volumeMounts"], json!([mount]));
        // A container that mounts something there already keeps its own.
        assert_eq!(
            p["spec"]["containers"][1]["volumeMounts"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        // Admitting again adds nothing.
        let before = p.clone();
        mutate(&mut p, None, "kube-api-access-zzzzz");
        assert_eq!(p, before);
    }

    #[test]
    fn automount_false_on_pod_or_account() {
        let mut p = pod();
        p["spec"]["automountServiceAccountToken"] = json!(false);
        mutate(&mut p, None, "kube-api-access-abcde");
        assert!(p["spec"].get("volumes").is_none());

        let account =
            json!({"automountServiceAccountToken": false, "imagePullSecrets": [{"name": "reg"}]});
        let mut p = pod();
        mutate(&mut p, Some(&account), "kube-api-access-abcde");
        assert!(p["spec"].get("volumes").is_none());
        assert_eq!(p["spec"]["imagePullSecrets"], json!([{"name": "reg"}]));

        // The pod's own setting wins over the account's.
        let mut p = pod();
        p["spec"]["automountServiceAccountToken"] = json!(true);
        mutate(&mut p, Some(&account), "kube-api-access-abcde");
        assert_eq!(p["spec"]["volumes"].as_array().unwrap().len(), 1);
    }
}
