//! Skiff's sandbox image: the pause program (pause/pause.rs, compiled by build.rs) alone in
//! one layer.

use std::path::Path;

use super::archive::{write_docker_archive, ArchiveInfo, ImageConfig, Layer};
use super::import::{image_id, import_tarball};
use crate::connect::Cri;
use crate::error::RuntimeError;

/// The pause program's version, also the sandbox image's tag.
pub const PAUSE_VERSION: &str = env!("SKIFF_PAUSE_VERSION");

/// The sandbox image every pod runs (containerd's `sandbox_image`).
pub const PAUSE_IMAGE: &str = concat!("registry.skiff.local/pause:", env!("SKIFF_PAUSE_VERSION"));

/// The static pause executable.
pub const PAUSE_BINARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/skiff-pause"));

/// Writes the sandbox image as a docker archive tagged [`PAUSE_IMAGE`].
pub fn build_pause_image(out: &Path) -> Result<ArchiveInfo, RuntimeError> {
    let mut layer = Layer::new();
    layer.file("pause", 0o755, PAUSE_BINARY)?;
    let config = ImageConfig {
        entrypoint: vec!["/pause".into()],
        // As upstream's pause image: nobody's business to run as root.
        user: "65535:65535".into(),
        working_dir: "/".into(),
        ..Default::default()
    };
    write_docker_archive(out, PAUSE_IMAGE, &config, layer)
}

/// Makes sure containerd has this build's sandbox image: builds it in `work_dir` and
/// imports it unless containerd already has an image of that name with the same ID.
pub async fn ensure_pause_image(cri: &Cri, work_dir: &Path) -> Result<(), RuntimeError> {
    let tarball = work_dir.join("skiff-pause.tar");
    let info = build_pause_image(&tarball)?;
    let present = image_id(cri, PAUSE_IMAGE).await?;
    if present.as_deref() != Some(info.image_id.as_str()) {
        import_tarball(&cri.socket, &tarball).await?;
        tracing::info!(image = PAUSE_IMAGE, id = %info.image_id, "imported the sandbox image");
    }
    let _ = std::fs::remove_file(&tarball);
    Ok(())
}
