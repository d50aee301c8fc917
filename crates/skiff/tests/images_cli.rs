//! `skiff images build-*`: the archives a user drops into the agent's images directory.

use std::process::Command;

fn skiff(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(args)
        .output()
        .expect("running skiff")
}

/// A member of a tar archive, read with the system's tar.
fn member(archive: &std::path::Path, name: &str) -> String {
    let out = Command::new("tar")
        .arg("-xOf")
        .arg(archive)
        .arg(name)
        .output()
        .expect("running tar");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn build_busybox_writes_a_tagged_docker_archive() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("images/busybox.tar");
    let run = skiff(&[
        "images",
        "build-busybox",
        "--output",
        out.to_str().unwrap(),
        "--name",
        "example.test/busybox:1",
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("example.test/busybox:1"), "{stdout}");
    let manifest: serde_json::Value = serde_json::from_str(&member(&out, "manifest.json")).unwrap();
    assert_eq!(manifest[0]["RepoTags"][0], "example.test/busybox:1");
    let layer = manifest[0]["Layers"][0].as_str().unwrap();
    let listing = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tar -xOf '{}' '{layer}' | tar -tvf -",
            out.display()
        ))
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    for path in [
        "bin/busybox",
        "bin/sh -> /bin/busybox",
        "etc/passwd",
        "tmp/",
    ] {
        assert!(
            listing.contains(path),
            "{path} missing from the layer:\n{listing}"
        );
    }
}

#[test]
fn build_busybox_without_busybox_names_the_package() {
    let dir = tempfile::tempdir().unwrap();
    let run = skiff(&[
        "images",
        "build-busybox",
        "--output",
        dir.path().join("b.tar").to_str().unwrap(),
        "--busybox",
        dir.path().join("missing").to_str().unwrap(),
    ]);
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("busybox-static"), "{stderr}");
}

#[test]
fn build_pause_writes_the_sandbox_image() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pause.tar");
    let run = skiff(&["images", "build-pause", "--output", out.to_str().unwrap()]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let manifest: serde_json::Value = serde_json::from_str(&member(&out, "manifest.json")).unwrap();
    assert_eq!(manifest[0]["RepoTags"][0], skiff_cri_pause_image());
}

/// The name the binary's crate exports, spelled out: a rename must show up here.
fn skiff_cri_pause_image() -> &'static str {
    "registry.skiff.local/pause:3.10"
}
