//! tmpfs mounts: emptyDir with `medium: Memory`, and the secret and projected volumes
//! (kept in memory so their contents never reach the node's disk, as upstream does).

use std::ffi::CString;
use std::io;
use std::path::Path;

use rustix::mount::{MountFlags, UnmountFlags};

/// Mounts a tmpfs on `dir` unless one is already there. `size` is in bytes (None: the
/// kernel's default, half of RAM); `mode` is the root directory's.
pub fn ensure(dir: &Path, size: Option<u64>, mode: u32) -> io::Result<()> {
    if is_mount_point(dir)? {
        return Ok(());
    }
    let mut options = format!("mode={mode:o}");
    if let Some(size) = size {
        options.push_str(&format!(",size={size}"));
    }
    let data = CString::new(options).map_err(io::Error::other)?;
    rustix::mount::mount(
        "tmpfs",
        dir,
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV,
        Some(data.as_c_str()),
    )
    .map_err(io::Error::from)
}

/// Unmounts whatever is mounted on `dir`; a busy mount is detached lazily so teardown
/// never hangs on a process that still holds a file open.
pub fn unmount(dir: &Path) -> io::Result<()> {
    while is_mount_point(dir)? {
        match rustix::mount::unmount(dir, UnmountFlags::empty()) {
            Ok(()) => {}
            Err(rustix::io::Errno::BUSY) => {
                rustix::mount::unmount(dir, UnmountFlags::DETACH).map_err(io::Error::from)?
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Whether something is mounted exactly on `dir` (per /proc/self/mountinfo).
pub fn is_mount_point(dir: &Path) -> io::Result<bool> {
    let canonical = match dir.canonicalize() {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let info = read_mountinfo()?;
    let found = mount_points(&info).any(|p| Path::new(&p) == canonical);
    Ok(found)
}

/// Mount points at or below `dir`, deepest first (so they can be unmounted in order).
pub fn mounts_under(dir: &Path) -> io::Result<Vec<std::path::PathBuf>> {
    let canonical = match dir.canonicalize() {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let info = read_mountinfo()?;
    let mut found: Vec<_> = mount_points(&info)
        .map(std::path::PathBuf::from)
        .filter(|p| p.starts_with(&canonical))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    Ok(found)
}

/// /proc/self/mountinfo, read until two reads agree: the kernel serves it in pieces,
/// and a mount or unmount elsewhere between two pieces can drop a line from one read
/// (kubelet's mount utilities guard against the same thing).
fn read_mountinfo() -> io::Result<String> {
    let mut last = std::fs::read_to_string("/proc/self/mountinfo")?;
    for _ in 0..4 {
        let next = std::fs::read_to_string("/proc/self/mountinfo")?;
        if next == last {
            return Ok(next);
        }
        last = next;
    }
    Err(io::Error::other(
        "/proc/self/mountinfo kept changing while being read; try again",
    ))
}

/// The mount point field (5th) of each mountinfo line, with octal escapes decoded.
fn mount_points(info: &str) -> impl Iterator<Item = String> + '_ {
    info.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape)
}

fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            if let Some(v) = std::str::from_utf8(&bytes[i + 1..i + 4])
                .ok()
                .and_then(|oct| u8::from_str_radix(oct, 8).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape(r"/a\040b"), "/a b");
        assert_eq!(unescape(r"/plain"), "/plain");
        assert_eq!(unescape(r"/end\04"), r"/end\04");
    }

    #[test]
    fn mounts_and_unmounts_a_sized_tmpfs() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("mem");
        std::fs::create_dir(&target).unwrap();
        assert!(!is_mount_point(&target).unwrap());
        ensure(&target, Some(1024 * 1024), 0o755).unwrap();
        ensure(&target, Some(1024 * 1024), 0o755).unwrap(); // idempotent: no second mount
        assert!(is_mount_point(&target).unwrap());
        assert_eq!(mounts_under(dir.path()).unwrap().len(), 1);
        let stat = rustix::fs::statfs(&target).unwrap();
        assert_eq!(stat.f_blocks as u64 * stat.f_bsize as u64, 1024 * 1024);
        unmount(&target).unwrap();
        assert!(!is_mount_point(&target).unwrap());
    }
}
