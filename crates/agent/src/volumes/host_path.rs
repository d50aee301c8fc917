//! hostPath volumes (and hostPath persistent volumes): a node path given to the
//! container as is, after upstream's type check.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Runs upstream's check for `type` on `path`, creating the path for the `...OrCreate`
/// types. The error text is upstream's.
pub fn check_type(path: &str, kind: Option<&str>) -> Result<(), String> {
    let p = Path::new(path);
    let meta = fs::metadata(p).ok();
    let ft = meta.as_ref().map(|m| m.file_type());
    let is = |f: fn(&fs::FileType) -> bool| ft.as_ref().is_some_and(f);
    match kind.unwrap_or("") {
        // No check: whatever is (or is not) there is mounted.
        "" => Ok(()),
        "DirectoryOrCreate" if meta.is_none() => fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(p)
            .map_err(|e| format!("hostPath type check failed: creating {path}: {e}")),
        "DirectoryOrCreate" | "Directory" => is(fs::FileType::is_dir)
            .then_some(())
            .ok_or_else(|| format!("hostPath type check failed: {path} is not a directory")),
        "FileOrCreate" if meta.is_none() => {
            create_file(p).map_err(|e| format!("hostPath type check failed: creating {path}: {e}"))
        }
        "FileOrCreate" | "File" => is(fs::FileType::is_file)
            .then_some(())
            .ok_or_else(|| format!("hostPath type check failed: {path} is not a file")),
        "Socket" => is(FileTypeExt::is_socket)
            .then_some(())
            .ok_or_else(|| format!("hostPath type check failed: {path} is not a socket file")),
        "CharDevice" => is(FileTypeExt::is_char_device)
            .then_some(())
            .ok_or_else(|| format!("hostPath type check failed: {path} is not a character device")),
        "BlockDevice" => is(FileTypeExt::is_block_device)
            .then_some(())
            .ok_or_else(|| format!("hostPath type check failed: {path} is not a block device")),
        other => Err(format!("{other} is an invalid volume type")),
    }
}

fn create_file(p: &Path) -> io::Result<()> {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o644)
        .open(p)
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_type_checks_as_upstream() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap().to_owned();
        let file = format!("{d}/f");
        fs::write(&file, "x").unwrap();
        let sock = format!("{d}/s.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();

        // (path, type, expected error or None)
        let cases: Vec<(String, &str, Option<String>)> = vec![
            (format!("{d}/nothing"), "", None),
            (d.clone(), "Directory", None),
            (
                file.clone(),
                "Directory",
                Some(format!(
                    "hostPath type check failed: {file} is not a directory"
                )),
            ),
            (
                format!("{d}/missing"),
                "Directory",
                Some(format!(
                    "hostPath type check failed: {d}/missing is not a directory"
                )),
            ),
            (file.clone(), "File", None),
            (
                d.clone(),
                "File",
                Some(format!("hostPath type check failed: {d} is not a file")),
            ),
            (
                file.clone(),
                "DirectoryOrCreate",
                Some(format!(
                    "hostPath type check failed: {file} is not a directory"
                )),
            ),
            (sock.clone(), "Socket", None),
            (
                file.clone(),
                "Socket",
                Some(format!(
                    "hostPath type check failed: {file} is not a socket file"
                )),
            ),
            ("/dev/null".into(), "CharDevice", None),
            (
                file.clone(),
                "CharDevice",
                Some(format!(
                    "hostPath type check failed: {file} is not a character device"
                )),
            ),
            (
                "/dev/null".into(),
                "BlockDevice",
                Some("hostPath type check failed: /dev/null is not a block device".into()),
            ),
            (
                d.clone(),
                "Weird",
                Some("Weird is an invalid volume type".into()),
            ),
        ];
        for (path, kind, want) in cases {
            assert_eq!(check_type(&path, Some(kind)).err(), want, "{path} {kind}");
        }
    }

    #[test]
    fn or_create_types_create_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let new_dir = dir.path().join("a/b/c");
        check_type(new_dir.to_str().unwrap(), Some("DirectoryOrCreate")).unwrap();
        assert!(new_dir.is_dir());
        let new_file = dir.path().join("a/file");
        check_type(new_file.to_str().unwrap(), Some("FileOrCreate")).unwrap();
        assert!(new_file.is_file());
        // An existing file is left as it is.
        fs::write(&new_file, "keep").unwrap();
        check_type(new_file.to_str().unwrap(), Some("FileOrCreate")).unwrap();
        assert_eq!(fs::read_to_string(&new_file).unwrap(), "keep");
    }
}
