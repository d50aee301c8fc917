//! What a benchmark report says about where it ran, and how it prints figures: shared by
//! the store benchmark and the API server load program so both tables read the same.

use std::time::Duration;

/// A `Name:   123 kB` field of a /proc file, in KiB.
pub fn proc_kib(text: &str, field: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// VmRSS from a `/proc/<pid>/status` (or `/proc/self/status`) file, in bytes.
pub fn vm_rss_bytes(status_path: &str) -> Option<u64> {
    let text = std::fs::read_to_string(status_path).ok()?;
    proc_kib(&text, "VmRSS:").map(|kib| kib * 1024)
}

/// CPU count and model, memory and kernel, from /proc.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| proc_kib(&t, "MemTotal:"))
        .map_or(0.0, |kib| kib as f64 / (1024.0 * 1024.0));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    format!("{cpus} CPUs ({model}), {mem_gib:.1} GiB memory, Linux {kernel}")
}

/// The 1-minute load average from /proc/loadavg.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

/// The etcd server's own version line, from the binary the test kit starts.
pub fn etcd_version() -> String {
    let bin = std::env::var("SKIFF_ETCD_BIN").unwrap_or_else(|_| "etcd".into());
    std::process::Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout).lines().find_map(|l| {
                l.strip_prefix("etcd Version:")
                    .map(|v| format!("etcd {}", v.trim()))
            })
        })
        .unwrap_or_else(|| "etcd (version unknown)".into())
}

/// The commit measured code comes from (`dir` is inside the repository), flagged when the
/// given paths have uncommitted changes: then the figures describe code no commit holds.
pub fn git_revision(dir: &std::path::Path, pathspecs: &[&str]) -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let Some(commit) = git(&["rev-parse", "--short=12", "HEAD"]) else {
        return "an unknown commit".into();
    };
    let mut status = vec!["status", "--porcelain", "--untracked-files=all", "--"];
    status.extend_from_slice(pathspecs);
    if git(&status).is_some_and(|s| !s.is_empty()) {
        format!("`{commit}` plus uncommitted changes")
    } else {
        format!("`{commit}`")
    }
}

pub fn ratio_of(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

pub fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

/// A rounded number with thousands separators: 12345.6 -> "12,346".
pub fn thousands(n: f64) -> String {
    let digits = format!("{:.0}", n.round());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_print_as_the_tables_show_them() {
        assert_eq!(thousands(12345.6), "12,346");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1_000_000.0), "1,000,000");
        assert_eq!(ms(Duration::from_micros(1500)), "1.50 ms");
        assert_eq!(mib(3 * 1024 * 1024 / 2), "1.5");
        assert_eq!(proc_kib("VmRSS:\t  2048 kB\n", "VmRSS:"), Some(2048));
        assert!(vm_rss_bytes("/proc/self/status").is_some_and(|b| b > 0));
    }
}
