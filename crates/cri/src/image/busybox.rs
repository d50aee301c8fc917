//! A small test image from Debian's `busybox-static`: `/bin/busybox`, a link for each of its
//! applets where `busybox --install` would put it, and the few files a shell image needs.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use super::archive::{write_docker_archive, ArchiveInfo, ImageConfig, Layer};
use super::elf::is_static_elf;
use crate::error::RuntimeError;

/// Where Debian's `busybox-static` installs the binary.
pub const BUSYBOX_PATH: &str = "/bin/busybox";

/// The name tests and docs use for the image (containerd stores it as
/// `docker.io/library/busybox:skiff`; pods may say `busybox:skiff`).
pub const BUSYBOX_TEST_IMAGE: &str = "busybox:skiff";

const PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                      nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\nnobody:x:65534:\n";

/// Builds the image from [`BUSYBOX_PATH`] into a docker archive at `out`, tagged `name`.
pub fn build_busybox_image(out: &Path, name: &str) -> Result<ArchiveInfo, RuntimeError> {
    build_busybox_image_from(Path::new(BUSYBOX_PATH), out, name)
}

/// As [`build_busybox_image`] from another static busybox binary.
pub fn build_busybox_image_from(
    busybox: &Path,
    out: &Path,
    name: &str,
) -> Result<ArchiveInfo, RuntimeError> {
    let binary = match std::fs::read(busybox) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(RuntimeError::BusyboxMissing {
                path: busybox.to_path_buf(),
            });
        }
        Err(source) => {
            return Err(RuntimeError::Io {
                op: "reading",
                path: busybox.to_path_buf(),
                source,
            });
        }
    };
    // Debian's dynamically linked `busybox` package would give an image that cannot start.
    is_static_elf(&binary).map_err(|why| RuntimeError::BusyboxNotStatic {
        path: busybox.to_path_buf(),
        why,
    })?;
    let applets = applet_paths(busybox)?;

    let mut layer = Layer::new();
    let mut dirs = BTreeSet::from([
        "bin", "dev", "etc", "proc", "root", "sbin", "sys", "usr", "usr/bin", "usr/sbin", "var",
        "var/www",
    ]);
    // Every ancestor of every link, parents first (the set is sorted).
    for a in &applets {
        for (i, c) in a.char_indices() {
            if c == '/' {
                dirs.insert(&a[..i]);
            }
        }
    }
    for d in &dirs {
        let mode = if *d == "root" { 0o700 } else { 0o755 };
        layer.dir(d, mode)?;
    }
    layer.dir("tmp", 0o1777)?;
    layer.file("bin/busybox", 0o755, &binary)?;
    layer.file("etc/passwd", 0o644, PASSWD.as_bytes())?;
    layer.file("etc/group", 0o644, GROUP.as_bytes())?;
    for a in &applets {
        if a != "bin/busybox" {
            layer.symlink(a, "/bin/busybox")?;
        }
    }
    let config = ImageConfig {
        cmd: vec!["sh".into()],
        env: vec![PATH.into()],
        working_dir: "/".into(),
        ..Default::default()
    };
    write_docker_archive(out, name, &config, layer)
}

/// Where each applet goes (`bin/sh`, `usr/bin/wget`, ...), as busybox itself lists them.
fn applet_paths(busybox: &Path) -> Result<Vec<String>, RuntimeError> {
    let out = Command::new(busybox)
        .arg("--list-full")
        .output()
        .map_err(|source| RuntimeError::Io {
            op: "running",
            path: busybox.to_path_buf(),
            source,
        })?;
    if !out.status.success() {
        return Err(RuntimeError::BusyboxNotStatic {
            path: busybox.to_path_buf(),
            why: format!("`busybox --list-full` failed ({})", out.status),
        });
    }
    let list = String::from_utf8_lossy(&out.stdout);
    Ok(parse_applet_list(&list))
}

/// Keeps relative, plain paths only: the list comes from a binary we are about to package
/// and must not place files outside the image's root.
fn parse_applet_list(list: &str) -> Vec<String> {
    let mut seen = BTreeSet::new();
    list.lines()
        .map(|l| l.trim().trim_start_matches('/'))
        .filter(|l| !l.is_empty() && l.split('/').all(|c| !c.is_empty() && c != "." && c != ".."))
        .filter(|l| seen.insert(l.to_string()))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applet_list_keeps_plain_relative_paths() {
        let list = "bin/sh\nusr/bin/wget\n/sbin/ifconfig\n../etc/x\nbin/./y\n\nbin/sh\n";
        assert_eq!(
            parse_applet_list(list),
            ["bin/sh", "usr/bin/wget", "sbin/ifconfig"]
        );
    }

    #[test]
    fn a_missing_busybox_names_the_package() {
        let dir = tempfile::tempdir().unwrap();
        let err = build_busybox_image_from(
            &dir.path().join("busybox"),
            &dir.path().join("out.tar"),
            "busybox:t",
        )
        .unwrap_err();
        assert!(err.to_string().contains("busybox-static"), "{err}");
    }

    #[test]
    fn a_dynamic_binary_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = build_busybox_image_from(
            Path::new("/bin/ls"),
            &dir.path().join("out.tar"),
            "busybox:t",
        )
        .unwrap_err();
        assert!(
            matches!(err, RuntimeError::BusyboxNotStatic { .. }),
            "{err}"
        );
    }
}
