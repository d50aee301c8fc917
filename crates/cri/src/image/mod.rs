//! Images without downloads: a docker-archive writer, Skiff's sandbox image, the busybox
//! test image, and importing archives into containerd.

mod archive;
mod busybox;
mod elf;
mod import;
mod pause;

pub use archive::{write_docker_archive, ArchiveInfo, ImageConfig, Layer};
pub use busybox::{
    build_busybox_image, build_busybox_image_from, BUSYBOX_PATH, BUSYBOX_TEST_IMAGE,
};
pub use elf::is_static_elf;
pub use import::{
    image_id, image_present, import_dir, import_tarball, ImportReport, K8S_NAMESPACE,
};
pub use pause::{build_pause_image, ensure_pause_image, PAUSE_BINARY, PAUSE_IMAGE, PAUSE_VERSION};
