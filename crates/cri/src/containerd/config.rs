//! containerd's config.toml for a node agent's own containerd: every path under the agent's
//! directory (so several agents, or tests, run side by side), the CRI plugin set up for
//! these machines, nothing that needs the network.

use std::path::{Path, PathBuf};

/// What goes into the config, resolved to absolute paths.
#[derive(Clone, Debug)]
pub struct ConfigPaths {
    pub root: PathBuf,
    pub state: PathBuf,
    pub socket: PathBuf,
    pub runc_root: PathBuf,
    pub cni_bin_dir: PathBuf,
    pub cni_conf_dir: PathBuf,
    pub sandbox_image: String,
}

/// Renders config.toml (containerd 1.6, config version 2).
pub fn render(p: &ConfigPaths) -> String {
    let q = |path: &Path| toml_str(&path.to_string_lossy());
    let mut ttrpc = p.socket.clone().into_os_string();
    ttrpc.push(".ttrpc");
    format!(
        r#"# Written by skiff: this node agent's own containerd. Edits are overwritten at start.
version = 2
root = {root}
state = {state}
# Never below the agent: the kernel should not prefer killing containerd.
oom_score = 0
# Snapshotters that cannot work here only add noise to the log.
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]

[grpc]
  address = {socket}

[ttrpc]
  address = {ttrpc}

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = {sandbox}
    # Without CAP_SYS_RESOURCE a negative oom_score_adj fails sandbox creation.
    restrict_oom_score_adj = true
    disable_apparmor = true
    enable_selinux = false
    # Exec/attach/port-forward streams: loopback only, any free port.
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    enable_tls_streaming = false
    max_container_log_line_size = 16384

    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      disable_snapshot_annotations = true

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"

        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          # cgroup v1 / hybrid machines managed with cgroupfs, not systemd.
          SystemdCgroup = false
          # runc's state per agent, not the machine-wide /run/containerd/runc.
          Root = {runc_root}

    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = {cni_bin}
      conf_dir = {cni_conf}
      max_conf_num = 1

    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = ""
"#,
        root = q(&p.root),
        state = q(&p.state),
        socket = q(&p.socket),
        ttrpc = toml_str(&ttrpc.to_string_lossy()),
        sandbox = toml_str(&p.sandbox_image),
        runc_root = q(&p.runc_root),
        cni_bin = q(&p.cni_bin_dir),
        cni_conf = q(&p.cni_conf_dir),
    )
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04X}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths() -> ConfigPaths {
        ConfigPaths {
            root: "/a/containerd/root".into(),
            state: "/a/containerd/state".into(),
            socket: "/a/containerd/containerd.sock".into(),
            runc_root: "/a/containerd/state/runc".into(),
            cni_bin_dir: "/usr/lib/cni".into(),
            cni_conf_dir: "/a/cni/net.d".into(),
            sandbox_image: "registry.skiff.local/pause:3.10".into(),
        }
    }

    #[test]
    fn config_points_every_path_at_the_agent_dir() {
        let c = render(&paths());
        for line in [
            r#"root = "/a/containerd/root""#,
            r#"state = "/a/containerd/state""#,
            r#"address = "/a/containerd/containerd.sock""#,
            r#"address = "/a/containerd/containerd.sock.ttrpc""#,
            r#"sandbox_image = "registry.skiff.local/pause:3.10""#,
            r#"Root = "/a/containerd/state/runc""#,
            r#"conf_dir = "/a/cni/net.d""#,
            r#"bin_dir = "/usr/lib/cni""#,
            "restrict_oom_score_adj = true",
            "SystemdCgroup = false",
        ] {
            assert!(c.contains(line), "missing {line:?} in\n{c}");
        }
        assert!(!c.contains("disabled_plugins = [\"io.containerd.grpc.v1.cri\""));
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(toml_str(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(toml_str("x\ny"), r#""x\u000Ay""#);
    }
}
