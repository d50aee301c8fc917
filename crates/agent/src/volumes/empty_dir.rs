//! emptyDir volumes: a directory that lives as long as the pod, on the node's disk or,
//! with `medium: Memory`, on a tmpfs sized by `sizeLimit`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use k8s_openapi::api::core::v1::EmptyDirVolumeSource;
use skiff_api::quantity::Quantity;

use super::tmpfs;

/// Upstream makes emptyDir world-writable so any container user can use it.
const MODE: u32 = 0o777;

pub fn setup(dir: &Path, src: &EmptyDirVolumeSource) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    match src.medium.as_deref().unwrap_or("") {
        "" => {}
        "Memory" => {
            let size = src
                .size_limit
                .as_ref()
                .map(|q| {
                    q.0.parse::<Quantity>()
                        .map_err(|e| format!("sizeLimit: {e}"))
                })
                .transpose()?
                .map(|q| q.value().clamp(0, u64::MAX as i128) as u64)
                .filter(|&s| s > 0);
            tmpfs::ensure(dir, size, MODE)
                .map_err(|e| format!("mounting tmpfs on {}: {e}", dir.display()))?;
        }
        other => return Err(format!("unknown storage medium {other:?}")),
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(MODE))
        .map_err(|e| format!("chmod {}: {e}", dir.display()))
}
