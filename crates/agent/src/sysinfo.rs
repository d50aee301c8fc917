//! What the node reports about its machine: CPUs, memory, disk, kernel, OS, ids. Read
//! from /proc, /etc and statvfs; a value that cannot be read is reported as unknown
//! rather than failing registration.

use std::path::Path;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Machine {
    pub cpus: usize,
    pub memory_bytes: u64,
    pub ephemeral_storage_bytes: u64,
    pub kernel_version: String,
    pub os_image: String,
    pub machine_id: String,
    pub system_uuid: String,
    pub boot_id: String,
    pub architecture: String,
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// MemTotal from /proc/meminfo, in bytes.
pub fn parse_meminfo(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// PRETTY_NAME from os-release.
pub fn parse_os_release(text: &str) -> Option<String> {
    let line = text.lines().find(|l| l.starts_with("PRETTY_NAME="))?;
    Some(line["PRETTY_NAME=".len()..].trim_matches('"').to_string())
}

/// Go's name for the architecture (what nodes report and images are built for).
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        other => other,
    }
}

/// Reads the machine's facts; `storage` is the directory whose filesystem holds pod data.
pub fn machine(storage: &Path) -> Machine {
    let storage_bytes = rustix::fs::statvfs(storage)
        .map(|s| s.f_blocks.saturating_mul(s.f_frsize))
        .unwrap_or(0);
    Machine {
        cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        memory_bytes: std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| parse_meminfo(&m))
            .unwrap_or(0),
        ephemeral_storage_bytes: storage_bytes,
        kernel_version: read_trimmed("/proc/sys/kernel/osrelease"),
        os_image: std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|t| parse_os_release(&t))
            .unwrap_or_else(|| "Linux".into()),
        machine_id: read_trimmed("/etc/machine-id"),
        system_uuid: read_trimmed("/sys/class/dmi/id/product_uuid"),
        boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
        architecture: go_arch().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_and_os_release_parse() {
        let m = "MemTotal:       24576000 kB\nMemFree: 1 kB\n";
        assert_eq!(parse_meminfo(m), Some(24576000 * 1024));
        assert_eq!(parse_meminfo("nothing"), None);
        let os = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";
        assert_eq!(
            parse_os_release(os).as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
    }

    #[test]
    fn this_machine_reports_cpus_memory_and_a_kernel() {
        let m = machine(Path::new("/"));
        assert!(m.cpus >= 1);
        assert!(m.memory_bytes > 0);
        assert!(m.ephemeral_storage_bytes > 0);
        assert!(!m.kernel_version.is_empty());
    }
}
