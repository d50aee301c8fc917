//! A container's volumeMounts as CRI mounts: which node path, read-only or not, which
//! propagation, and `subPath`/`subPathExpr` resolved safely inside the volume.

use std::collections::HashMap;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, VolumeMount};
use skiff_cri::api::{Mount, MountPropagation};

use super::downward::field_value;
use super::{PodVolumes, VolumeError};

impl PodVolumes {
    /// The CRI mounts for `container`'s volumeMounts, in their order.
    pub fn mounts(&self, container: &Container) -> Result<Vec<Mount>, VolumeError> {
        let mut env: Option<HashMap<String, String>> = None;
        let mut out = Vec::new();
        for vm in container.volume_mounts.iter().flatten() {
            let volume = self.get(&vm.name).ok_or_else(|| {
                VolumeError::ContainerMount(format!(
                    "cannot find volume {:?} to mount into container {:?}",
                    vm.name, container.name
                ))
            })?;
            let sub_path = match vm.sub_path_expr.as_deref().filter(|s| !s.is_empty()) {
                Some(expr) => {
                    let env = env.get_or_insert_with(|| self.container_env(container));
                    expand(expr, env)
                }
                None => vm.sub_path.clone().unwrap_or_default(),
            };
            let host_path = if sub_path.is_empty() {
                volume.host_path.clone()
            } else {
                sub_path_on_host(&volume.host_path, &sub_path, vm, &container.name)?
            };
            out.push(Mount {
                container_path: vm.mount_path.clone(),
                host_path: host_path.to_string_lossy().into_owned(),
                readonly: volume.read_only || vm.read_only.unwrap_or(false),
                selinux_relabel: false,
                propagation: propagation(vm)? as i32,
                ..Default::default()
            });
        }
        Ok(out)
    }

    /// The container's env as `subPathExpr` sees it: plain values and pod fields (other
    /// sources resolve to nothing here and stay unexpanded).
    fn container_env(&self, container: &Container) -> HashMap<String, String> {
        let mut env = HashMap::new();
        for var in container.env.iter().flatten() {
            let value = if let Some(v) = &var.value {
                Some(expand(v, &env))
            } else {
                var.value_from
                    .as_ref()
                    .and_then(|f| f.field_ref.as_ref())
                    .and_then(|f| field_value(&self.pod, &f.field_path).ok())
            };
            if let Some(v) = value {
                env.insert(var.name.clone(), v);
            }
        }
        env
    }
}

fn propagation(vm: &VolumeMount) -> Result<MountPropagation, VolumeError> {
    Ok(match vm.mount_propagation.as_deref() {
        None | Some("None") | Some("") => MountPropagation::PropagationPrivate,
        Some("HostToContainer") => MountPropagation::PropagationHostToContainer,
        Some("Bidirectional") => MountPropagation::PropagationBidirectional,
        Some(other) => {
            return Err(VolumeError::ContainerMount(format!(
                "invalid propagation mode: {other}"
            )))
        }
    })
}

/// `volume/sub_path`, created as a directory when missing, and refused when it (through
/// symlinks) leads outside the volume.
fn sub_path_on_host(
    volume: &Path,
    sub_path: &str,
    vm: &VolumeMount,
    container: &str,
) -> Result<PathBuf, VolumeError> {
    if Path::new(sub_path).is_absolute() {
        return Err(VolumeError::ContainerMount(format!(
            "error SubPath `{sub_path}` must not be an absolute path"
        )));
    }
    if sub_path.split('/').any(|p| p == "..") {
        return Err(VolumeError::ContainerMount(format!(
            "unable to provision SubPath `{sub_path}`: must not contain '..'"
        )));
    }
    let joined = volume.join(sub_path);
    if std::fs::symlink_metadata(&joined).is_err() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(&joined)
            .map_err(|_| {
                VolumeError::ContainerMount(format!(
                    "failed to create subPath directory for volumeMount {:?} of container {container:?}",
                    vm.name
                ))
            })?;
    }
    let (Ok(real), Ok(root)) = (joined.canonicalize(), volume.canonicalize()) else {
        return Err(VolumeError::ContainerMount(format!(
            "could not resolve subPath {}",
            joined.display()
        )));
    };
    if !real.starts_with(&root) {
        return Err(VolumeError::ContainerMount(format!(
            "subpath {:?} not within volume path {:?}",
            real.display().to_string(),
            root.display().to_string()
        )));
    }
    Ok(real)
}

/// Upstream's `$(VAR)` expansion: defined names are replaced, undefined ones are left as
/// written, and `$$` is a literal `$`.
pub(crate) fn expand(input: &str, env: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match env.get(name) {
                        Some(v) => out.push_str(v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = inner;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volumes::ReadyVolume;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn expansion_as_upstream() {
        let e = env(&[("A", "x"), ("B", "y")]);
        let cases = [
            ("$(A)/$(B)", "x/y"),
            ("$(MISSING)", "$(MISSING)"),
            ("$$(A)", "$(A)"),
            ("a$b", "a$b"),
            ("$(A", "$(A"),
            ("plain", "plain"),
        ];
        for (input, want) in cases {
            assert_eq!(expand(input, &e), want, "{input}");
        }
    }

    fn volumes(dir: &Path) -> PodVolumes {
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-0", "namespace": "ns", "uid": "u1"},
            "spec": {"containers": []}
        }))
        .unwrap();
        let mut v = BTreeMap::new();
        v.insert(
            "data".to_string(),
            ReadyVolume {
                host_path: dir.to_path_buf(),
                read_only: false,
            },
        );
        v.insert(
            "cfg".to_string(),
            ReadyVolume {
                host_path: dir.join("cfg"),
                read_only: true,
            },
        );
        PodVolumes {
            pod: Arc::new(pod),
            volumes: v,
            refresh_at: None,
        }
    }

    fn container(mounts: serde_json::Value) -> Container {
        serde_json::from_value(serde_json::json!({
            "name": "c", "image": "i",
            "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            "volumeMounts": mounts
        }))
        .unwrap()
    }

    #[test]
    fn mounts_carry_paths_modes_and_propagation() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("cfg")).unwrap();
        let pv = volumes(dir.path());
        let c = container(serde_json::json!([
            {"name": "data", "mountPath": "/data", "mountPropagation": "HostToContainer"},
            {"name": "cfg", "mountPath": "/etc/cfg"},
            {"name": "data", "mountPath": "/ro", "readOnly": true, "subPath": "a/b"},
            {"name": "data", "mountPath": "/per-pod", "subPathExpr": "logs/$(POD)"}
        ]));
        let m = pv.mounts(&c).unwrap();
        assert_eq!(m.len(), 4);
        assert_eq!(m[0].host_path, dir.path().to_str().unwrap());
        assert!(!m[0].readonly);
        assert_eq!(
            m[0].propagation,
            MountPropagation::PropagationHostToContainer as i32
        );
        assert!(m[1].readonly, "configMap-like volumes are always read-only");
        assert!(m[2].readonly);
        let real = dir.path().canonicalize().unwrap();
        assert_eq!(m[2].host_path, real.join("a/b").to_str().unwrap());
        assert!(
            dir.path().join("a/b").is_dir(),
            "a missing subPath is created"
        );
        assert_eq!(m[3].host_path, real.join("logs/web-0").to_str().unwrap());
    }

    #[test]
    fn bad_mounts_are_config_errors() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("escape")).unwrap();
        let pv = volumes(dir.path());
        let cases = [
            (
                serde_json::json!([{"name": "nope", "mountPath": "/x"}]),
                "cannot find volume \"nope\" to mount into container \"c\"",
            ),
            (
                serde_json::json!([{"name": "data", "mountPath": "/x", "subPath": "/abs"}]),
                "error SubPath `/abs` must not be an absolute path",
            ),
            (
                serde_json::json!([{"name": "data", "mountPath": "/x", "subPath": "a/../.."}]),
                "unable to provision SubPath `a/../..`: must not contain '..'",
            ),
            (
                serde_json::json!([{"name": "data", "mountPath": "/x", "subPath": "escape"}]),
                "not within volume path",
            ),
        ];
        for (mounts, want) in cases {
            let err = pv.mounts(&container(mounts)).unwrap_err();
            assert_eq!(err.reason(), "CreateContainerConfigError");
            assert!(err.to_string().contains(want), "{err} vs {want}");
        }
    }
}
