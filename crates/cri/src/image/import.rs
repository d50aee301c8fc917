//! Getting archives into containerd's CRI namespace, and asking what is there.

use std::path::{Path, PathBuf};

use crate::api::{ImageSpec, ImageStatusRequest};
use crate::connect::Cri;
use crate::error::RuntimeError;

/// The containerd namespace the CRI plugin keeps its images and containers in.
pub const K8S_NAMESPACE: &str = "k8s.io";

/// Debian's containerd ships `ctr`.
const CTR: &str = "ctr";

/// Imports one image archive (docker or OCI format) with `ctr images import`, unpacked for
/// the CRI's snapshotter.
pub async fn import_tarball(socket: &Path, path: &Path) -> Result<(), RuntimeError> {
    let out = tokio::process::Command::new(CTR)
        .arg("--address")
        .arg(socket)
        .args(["--namespace", K8S_NAMESPACE, "images", "import"])
        .arg(path)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| RuntimeError::Import {
            path: path.to_path_buf(),
            status: "not run".into(),
            stderr: format!("running {CTR}: {e} (it comes with Debian's `containerd` package)"),
        })?;
    if !out.status.success() {
        return Err(RuntimeError::Import {
            path: path.to_path_buf(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// What [`import_dir`] did.
#[derive(Debug, Default)]
pub struct ImportReport {
    pub imported: Vec<PathBuf>,
    /// A broken archive does not stop the others (nor the agent); it is logged and listed.
    pub failed: Vec<(PathBuf, RuntimeError)>,
}

/// Imports every `*.tar` in `dir` (sorted by name), as k3s does with its images directory
/// for air-gapped nodes. A missing directory imports nothing.
pub async fn import_dir(socket: &Path, dir: &Path) -> Result<ImportReport, RuntimeError> {
    let mut report = ImportReport::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(report),
        Err(source) => {
            return Err(RuntimeError::Io {
                op: "reading",
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    let mut tars: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "tar"))
        .collect();
    tars.sort();
    for tar in tars {
        let started = std::time::Instant::now();
        match import_tarball(socket, &tar).await {
            Ok(()) => {
                tracing::info!(
                    archive = %tar.display(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "imported image archive"
                );
                report.imported.push(tar);
            }
            Err(e) => {
                tracing::error!(archive = %tar.display(), error = %e, "image archive not imported");
                report.failed.push((tar, e));
            }
        }
    }
    Ok(report)
}

/// The ID (`sha256:...` of its config) of the image `name` if the runtime has it.
pub async fn image_id(cri: &Cri, name: &str) -> Result<Option<String>, RuntimeError> {
    let req = ImageStatusRequest {
        image: Some(ImageSpec {
            image: name.to_string(),
            ..Default::default()
        }),
        verbose: false,
    };
    let resp = cri
        .images
        .clone()
        .image_status(req)
        .await
        .map_err(|status| RuntimeError::Cri {
            op: "ImageStatus",
            status,
        })?;
    Ok(resp.into_inner().image.map(|i| i.id))
}

/// Whether the runtime has the image `name` (as the kubelet checks before pulling).
pub async fn image_present(cri: &Cri, name: &str) -> Result<bool, RuntimeError> {
    Ok(image_id(cri, name).await?.is_some())
}
