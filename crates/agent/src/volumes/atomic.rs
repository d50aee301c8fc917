//! Writing a volume's files so that readers never see a half-updated set, as the
//! kubelet's atomic writer does for configMap, secret, downwardAPI and projected volumes.
//!
//! Layout inside the volume directory:
//!
//! ```text
//! ..2026_11_24_05_51_14.123456789/   the payload, one directory per version
//! ..data -> ..2026_11_24_05_51_14.123456789
//! key -> ..data/key                  one symlink per top-level entry
//! ```
//!
//! An update writes a new version directory, then swaps `..data` with a `rename(2)` of a
//! fresh symlink (atomic), then fixes the top-level symlinks and removes the old version.
//! A reader that opens `key` therefore sees either the whole old or the whole new set.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{symlink, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// One file of a volume's payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileProjection {
    pub data: Vec<u8>,
    pub mode: u32,
}

/// Relative path → file: everything a volume shows.
pub type Payload = BTreeMap<String, FileProjection>;

const DATA_LINK: &str = "..data";
const DATA_TMP_LINK: &str = "..data_tmp";

/// Checks a payload path as upstream does: relative, no `..` element, and not starting
/// with `..` (those names are the writer's own).
pub fn validate_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("invalid path: must not be empty".into());
    }
    if Path::new(path).is_absolute() {
        return Err(format!("invalid path: must be relative path: {path}"));
    }
    if path.split('/').any(|part| part == "..") {
        return Err(format!("invalid path: must not contain '..': {path}"));
    }
    if path.starts_with("..") {
        return Err(format!("invalid path: must not start with '..': {path}"));
    }
    Ok(())
}

/// Makes `dir` show exactly `payload`, its files and directories owned by group `gid`
/// when given (the pod's fsGroup). Returns whether anything changed.
pub fn write(dir: &Path, payload: &Payload, gid: Option<u32>) -> io::Result<bool> {
    for path in payload.keys() {
        validate_path(path).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    }
    fs::create_dir_all(dir)?;
    let data_link = dir.join(DATA_LINK);
    let old_version = fs::read_link(&data_link).ok();
    if let Some(old) = &old_version {
        if read_payload(&dir.join(old))? == *payload {
            // Still fix the visible symlinks: a crash between swap and link update
            // could have left them behind.
            update_user_links(dir, payload)?;
            return Ok(false);
        }
    }

    let version = new_version_name(dir);
    let version_dir = dir.join(&version);
    fs::create_dir(&version_dir)?;
    if let Err(e) = write_files(&version_dir, payload).and_then(|()| chown_tree(&version_dir, gid))
    {
        let _ = fs::remove_dir_all(&version_dir);
        return Err(e);
    }

    let tmp_link = dir.join(DATA_TMP_LINK);
    let _ = fs::remove_file(&tmp_link);
    symlink(&version, &tmp_link)?;
    fs::rename(&tmp_link, &data_link)?;

    update_user_links(dir, payload)?;
    if let Some(old) = old_version {
        if old != Path::new(&version) {
            fs::remove_dir_all(dir.join(old))?;
        }
    }
    Ok(true)
}

/// Gives `root` and everything below it (not following symlinks) to group `gid`.
fn chown_tree(root: &Path, gid: Option<u32>) -> io::Result<()> {
    let Some(gid) = gid else {
        return Ok(());
    };
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        std::os::unix::fs::lchown(&p, None, Some(gid))?;
        if fs::symlink_metadata(&p)?.is_dir() {
            for entry in fs::read_dir(&p)? {
                stack.push(entry?.path());
            }
        }
    }
    Ok(())
}

fn write_files(version_dir: &Path, payload: &Payload) -> io::Result<()> {
    for (path, file) in payload {
        let target = version_dir.join(path);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)?;
        }
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(file.mode)
            .open(&target)?;
        f.write_all(&file.data)?;
        f.sync_all()?;
        // The umask may have cut bits off the mode asked for.
        fs::set_permissions(&target, fs::Permissions::from_mode(file.mode))?;
    }
    Ok(())
}

/// Top-level names a payload shows (`a/b/c` shows `a`).
fn top_level(payload: &Payload) -> std::collections::BTreeSet<String> {
    payload
        .keys()
        .filter_map(|p| p.split('/').next().map(str::to_owned))
        .collect()
}

fn update_user_links(dir: &Path, payload: &Payload) -> io::Result<()> {
    let wanted = top_level(payload);
    for name in &wanted {
        let link = dir.join(name);
        let target = Path::new(DATA_LINK).join(name);
        match fs::read_link(&link) {
            Ok(existing) if existing == target => continue,
            Ok(_) => fs::remove_file(&link)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            // Not a symlink: something else sits there; replace it.
            Err(_) => remove_any(&link)?,
        }
        symlink(&target, &link)?;
    }
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("..") || wanted.contains(&name) {
            continue;
        }
        remove_any(&entry.path())?;
    }
    Ok(())
}

fn remove_any(path: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if meta.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
}

/// Reads back what a version directory holds, to tell whether a rewrite is needed.
fn read_payload(version_dir: &Path) -> io::Result<Payload> {
    let mut out = Payload::new();
    if !version_dir.is_dir() {
        return Ok(out);
    }
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in fs::read_dir(version_dir.join(&rel))? {
            let entry = entry?;
            let rel_child = rel.join(entry.file_name());
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push(rel_child);
            } else {
                let key = rel_child
                    .components()
                    .filter_map(|c| match c {
                        Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
                    .join("/");
                out.insert(
                    key,
                    FileProjection {
                        data: fs::read(entry.path())?,
                        mode: meta.permissions().mode() & 0o7777,
                    },
                );
            }
        }
    }
    Ok(out)
}

/// A fresh `..<timestamp>` name, unique within `dir`.
fn new_version_name(dir: &Path) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut n = 0u32;
    loop {
        let name = format!("..{}.{:09}_{n}", now.as_secs(), now.subsec_nanos());
        if !dir.join(&name).exists() {
            return name;
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(s: &str, mode: u32) -> FileProjection {
        FileProjection {
            data: s.as_bytes().to_vec(),
            mode,
        }
    }

    #[test]
    fn writes_links_through_data_and_only_rewrites_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Payload::new();
        p.insert("a".into(), file("one", 0o644));
        p.insert("sub/b".into(), file("two", 0o400));
        assert!(write(dir.path(), &p, None).unwrap());
        assert_eq!(fs::read_to_string(dir.path().join("a")).unwrap(), "one");
        assert_eq!(fs::read_to_string(dir.path().join("sub/b")).unwrap(), "two");
        assert_eq!(
            fs::read_link(dir.path().join("a")).unwrap(),
            Path::new("..data/a")
        );
        let mode = fs::metadata(dir.path().join("sub/b"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o400);
        let version = fs::read_link(dir.path().join("..data")).unwrap();

        // Same payload: nothing is rewritten.
        assert!(!write(dir.path(), &p, None).unwrap());
        assert_eq!(fs::read_link(dir.path().join("..data")).unwrap(), version);

        // A changed payload: new version, old one and dropped keys gone.
        let mut q = Payload::new();
        q.insert("a".into(), file("three", 0o644));
        assert!(write(dir.path(), &q, None).unwrap());
        assert_eq!(fs::read_to_string(dir.path().join("a")).unwrap(), "three");
        assert!(!dir.path().join("sub").exists());
        assert!(!dir.path().join(&version).exists());
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}"); // a, ..data, ..<version>
    }

    #[test]
    fn files_belong_to_the_fs_group() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let mut p = Payload::new();
        p.insert("sub/key".into(), file("v", 0o440));
        write(dir.path(), &p, Some(4321)).unwrap();
        let meta = fs::metadata(dir.path().join("sub/key")).unwrap();
        assert_eq!(meta.gid(), 4321);
        assert_eq!(fs::metadata(dir.path().join("sub")).unwrap().gid(), 4321);
    }

    #[test]
    fn refuses_paths_that_escape() {
        for bad in ["/etc/passwd", "../x", "a/../../x", "..data", ""] {
            assert!(validate_path(bad).is_err(), "{bad}");
        }
        let dir = tempfile::tempdir().unwrap();
        let mut p = Payload::new();
        p.insert("../x".into(), file("no", 0o644));
        assert!(write(dir.path(), &p, None).is_err());
    }
}
