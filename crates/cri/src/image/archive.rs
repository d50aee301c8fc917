//! A minimal docker-archive writer (the `docker save` format that `ctr images import`
//! reads): `manifest.json`, one image config JSON and one uncompressed `layer.tar`.
//!
//! Everything is deterministic (fixed mtimes, owners root, sorted by the caller's order), so
//! the same input gives the same image ID. The layer's sha256 is both its `diff_id` and, as
//! the layer is uncompressed, the digest containerd stores it under.

use std::io::Write;
use std::path::Path;

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::error::RuntimeError;

/// Modification time of every entry: the image's bytes depend only on its content.
const MTIME: u64 = 0;

/// One image layer's file tree, built in memory (Skiff's images are a few MB at most).
pub struct Layer {
    tar: tar::Builder<Vec<u8>>,
}

impl Default for Layer {
    fn default() -> Self {
        Self::new()
    }
}

impl Layer {
    pub fn new() -> Self {
        let mut tar = tar::Builder::new(Vec::new());
        tar.mode(tar::HeaderMode::Deterministic);
        Layer { tar }
    }

    /// A directory (path relative to the root, e.g. `tmp`).
    pub fn dir(&mut self, path: &str, mode: u32) -> Result<&mut Self, RuntimeError> {
        let mut h = header(tar::EntryType::Directory, mode, 0);
        let path = format!("{}/", path.trim_end_matches('/'));
        self.append(&mut h, &path, std::io::empty())
    }

    /// A regular file with the given content.
    pub fn file(
        &mut self,
        path: &str,
        mode: u32,
        content: &[u8],
    ) -> Result<&mut Self, RuntimeError> {
        let mut h = header(tar::EntryType::Regular, mode, content.len() as u64);
        self.append(&mut h, path, content)
    }

    /// A symbolic link at `path` pointing at `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<&mut Self, RuntimeError> {
        let mut h = header(tar::EntryType::Symlink, 0o777, 0);
        self.tar
            .append_link(&mut h, path, target)
            .map_err(|source| layer_error(path, source))?;
        Ok(self)
    }

    fn append(
        &mut self,
        h: &mut tar::Header,
        path: &str,
        data: impl std::io::Read,
    ) -> Result<&mut Self, RuntimeError> {
        self.tar
            .append_data(h, path, data)
            .map_err(|source| layer_error(path, source))?;
        Ok(self)
    }

    /// The finished layer tar.
    fn finish(self) -> Result<Vec<u8>, RuntimeError> {
        self.tar
            .into_inner()
            .map_err(|source| layer_error("(end of archive)", source))
    }
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(MTIME);
    h
}

fn layer_error(path: &str, source: std::io::Error) -> RuntimeError {
    RuntimeError::Image {
        what: format!("adding {path} to an image layer"),
        source,
    }
}

/// What the image runs and how (the `config` part of an image config).
#[derive(Clone, Debug, Default)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    /// `uid[:gid]` or a user name; empty means root.
    pub user: String,
}

/// Sizes and digests of a written archive, for logs and measurements.
#[derive(Clone, Debug)]
pub struct ArchiveInfo {
    /// `sha256:...` of the config: the image ID containerd and the CRI report.
    pub image_id: String,
    /// `sha256:...` of the uncompressed layer.
    pub diff_id: String,
    /// Bytes of the layer tar (the image's unpacked size, roughly).
    pub layer_bytes: u64,
    /// Bytes of the whole archive file.
    pub archive_bytes: u64,
}

/// Writes a one-layer docker-archive tar at `out`, tagged `name` (e.g.
/// `registry.skiff.local/pause:3.10`; a name without a registry is normalised by containerd
/// to `docker.io/library/...`, as for pulls).
pub fn write_docker_archive(
    out: &Path,
    name: &str,
    config: &ImageConfig,
    layer: Layer,
) -> Result<ArchiveInfo, RuntimeError> {
    let layer = layer.finish()?;
    let diff_hex = hex_sha256(&layer);
    let diff_id = format!("sha256:{diff_hex}");

    let config_json = serde_json::to_vec(&config_document(config, &diff_id)).map_err(|e| {
        RuntimeError::Image {
            what: "encoding the image config".into(),
            source: std::io::Error::other(e),
        }
    })?;
    let config_hex = hex_sha256(&config_json);
    let config_file = format!("{config_hex}.json");
    let layer_file = format!("{diff_hex}/layer.tar");
    let manifest = json!([{
        "Config": config_file,
        "RepoTags": [name],
        "Layers": [layer_file],
    }]);
    let manifest = serde_json::to_vec(&manifest).map_err(|e| RuntimeError::Image {
        what: "encoding manifest.json".into(),
        source: std::io::Error::other(e),
    })?;

    let io_err = |source| RuntimeError::Io {
        op: "writing image archive",
        path: out.to_path_buf(),
        source,
    };
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io_err)?;
    }
    // Written beside the target and renamed, so an importer never sees half an archive.
    let tmp = out.with_extension("tar.partial");
    let file = std::fs::File::create(&tmp).map_err(io_err)?;
    let mut outer = tar::Builder::new(std::io::BufWriter::new(file));
    outer.mode(tar::HeaderMode::Deterministic);
    let mut add = |path: &str, kind: tar::EntryType, data: &[u8]| {
        let mode = if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        };
        let mut h = header(kind, mode, data.len() as u64);
        outer.append_data(&mut h, path, data)
    };
    add(&format!("{diff_hex}/"), tar::EntryType::Directory, &[]).map_err(io_err)?;
    add(&layer_file, tar::EntryType::Regular, &layer).map_err(io_err)?;
    add(&config_file, tar::EntryType::Regular, &config_json).map_err(io_err)?;
    add("manifest.json", tar::EntryType::Regular, &manifest).map_err(io_err)?;
    let mut writer = outer.into_inner().map_err(io_err)?;
    writer.flush().map_err(io_err)?;
    drop(writer);
    std::fs::rename(&tmp, out).map_err(io_err)?;
    let archive_bytes = std::fs::metadata(out).map_err(io_err)?.len();

    Ok(ArchiveInfo {
        image_id: format!("sha256:{config_hex}"),
        diff_id,
        layer_bytes: layer.len() as u64,
        archive_bytes,
    })
}

/// The OCI/docker image config document.
fn config_document(c: &ImageConfig, diff_id: &str) -> serde_json::Value {
    let mut cfg = serde_json::Map::new();
    if !c.entrypoint.is_empty() {
        cfg.insert("Entrypoint".into(), json!(c.entrypoint));
    }
    if !c.cmd.is_empty() {
        cfg.insert("Cmd".into(), json!(c.cmd));
    }
    if !c.env.is_empty() {
        cfg.insert("Env".into(), json!(c.env));
    }
    if !c.working_dir.is_empty() {
        cfg.insert("WorkingDir".into(), json!(c.working_dir));
    }
    if !c.user.is_empty() {
        cfg.insert("User".into(), json!(c.user));
    }
    json!({
        "architecture": goarch(),
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": cfg,
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        "history": [{ "created": "1970-01-01T00:00:00Z", "created_by": "skiff-cri" }],
    })
}

/// The image platform's architecture in Go's spelling, which image configs use.
fn goarch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn hex_sha256(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    let mut s = String::with_capacity(64);
    for b in digest {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn entries(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut a = tar::Archive::new(archive);
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let path = e.path().unwrap().to_string_lossy().into_owned();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (path, data)
            })
            .collect()
    }

    #[test]
    fn archive_has_manifest_config_and_layer_whose_digest_is_the_diff_id() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("img.tar");
        let mut layer = Layer::new();
        layer.dir("bin", 0o755).unwrap();
        layer.file("bin/hello", 0o755, b"#!/bin/sh\n").unwrap();
        layer.symlink("bin/hi", "hello").unwrap();
        let config = ImageConfig {
            entrypoint: vec!["/bin/hello".into()],
            env: vec!["PATH=/bin".into()],
            ..Default::default()
        };
        let info = write_docker_archive(&out, "example.test/hello:1", &config, layer).unwrap();

        let bytes = std::fs::read(&out).unwrap();
        assert_eq!(info.archive_bytes, bytes.len() as u64);
        let files = entries(&bytes);
        let get = |name: &str| {
            files
                .iter()
                .find(|(p, _)| p == name)
                .map(|(_, d)| d.clone())
        };

        let manifest: serde_json::Value =
            serde_json::from_slice(&get("manifest.json").unwrap()).unwrap();
        assert_eq!(manifest[0]["RepoTags"], json!(["example.test/hello:1"]));
        let config_name = manifest[0]["Config"].as_str().unwrap();
        let config_bytes = get(config_name).unwrap();
        assert_eq!(
            format!("sha256:{}", hex_sha256(&config_bytes)),
            info.image_id
        );
        let config: serde_json::Value = serde_json::from_slice(&config_bytes).unwrap();
        assert_eq!(config["config"]["Entrypoint"], json!(["/bin/hello"]));
        assert_eq!(config["rootfs"]["diff_ids"], json!([info.diff_id]));

        let layer_name = manifest[0]["Layers"][0].as_str().unwrap();
        let layer = get(layer_name).unwrap();
        assert_eq!(format!("sha256:{}", hex_sha256(&layer)), info.diff_id);
        let inner: Vec<String> = entries(&layer).into_iter().map(|(p, _)| p).collect();
        assert_eq!(inner, ["bin/", "bin/hello", "bin/hi"]);
        assert!(!dir.path().join("img.tar.partial").exists());
    }

    #[test]
    fn same_content_gives_the_same_image_id() {
        let dir = tempfile::tempdir().unwrap();
        let build = |file: &str| {
            let mut layer = Layer::new();
            layer.file("a", 0o644, b"x").unwrap();
            write_docker_archive(
                &dir.path().join(file),
                "t:1",
                &ImageConfig::default(),
                layer,
            )
            .unwrap()
        };
        let (a, b) = (build("a.tar"), build("b.tar"));
        assert_eq!(a.image_id, b.image_id);
        assert_eq!(
            std::fs::read(dir.path().join("a.tar")).unwrap(),
            std::fs::read(dir.path().join("b.tar")).unwrap()
        );
    }
}
