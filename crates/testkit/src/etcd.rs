use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

const INSTALL_HINT: &str =
    "the etcd binary was not found: install Debian's etcd-server (`apt-get install -y etcd-server`) or set SKIFF_ETCD_BIN";

/// One etcd member process. Killed (SIGKILL) and its data removed when dropped.
pub struct EtcdMember {
    pub name: String,
    pub client_url: String,
    pub peer_url: String,
    data_dir: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    log: PathBuf,
}

impl EtcdMember {
    /// Kills the process (as a crash would), keeping its data directory.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again on the same ports and data.
    pub fn restart(&mut self) {
        self.kill();
        self.child = Some(spawn(&self.args, &self.log));
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The member's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for EtcdMember {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running etcd cluster of one or more members on loopback.
pub struct EtcdCluster {
    pub members: Vec<EtcdMember>,
    _dir: tempfile::TempDir,
}

/// Settings for [`EtcdCluster::start_with`].
#[derive(Clone, Debug, Default)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// Require client certificates signed by `ca`.
    pub client_cert_auth: bool,
}

impl EtcdCluster {
    /// A single-member cluster: the usual test and benchmark peer.
    pub fn start() -> Self {
        Self::start_members(1, None)
    }

    /// `n` members (3 for a highly available cluster), all on loopback.
    pub fn start_members(n: usize, tls: Option<TlsFiles>) -> Self {
        let bin = etcd_binary();
        let dir = tempfile::Builder::new()
            .prefix("skiff-etcd-")
            .tempdir()
            .expect("temp dir");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let names: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
        let peer_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let client_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let initial_cluster = names
            .iter()
            .zip(&peer_ports)
            .map(|(name, port)| format!("{name}=http://127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!("skiff-{}", std::process::id());
        let members = (0..n)
            .map(|i| {
                let data_dir = dir.path().join(&names[i]);
                let client_url = format!("{scheme}://127.0.0.1:{}", client_ports[i]);
                let peer_url = format!("http://127.0.0.1:{}", peer_ports[i]);
                let mut args = vec![
                    bin.clone(),
                    format!("--name={}", names[i]),
                    format!("--data-dir={}", data_dir.display()),
                    format!("--listen-client-urls={client_url}"),
                    format!("--advertise-client-urls={client_url}"),
                    format!("--listen-peer-urls={peer_url}"),
                    format!("--initial-advertise-peer-urls={peer_url}"),
                    format!("--initial-cluster={initial_cluster}"),
                    format!("--initial-cluster-token={token}"),
                    "--initial-cluster-state=new".into(),
                    // Quieter logs; nothing that changes durability.
                    "--log-level=warn".into(),
                    "--logger=zap".into(),
                ];
                if let Some(tls) = &tls {
                    args.push(format!("--trusted-ca-file={}", tls.ca.display()));
                    args.push(format!("--cert-file={}", tls.server_cert.display()));
                    args.push(format!("--key-file={}", tls.server_key.display()));
                    if tls.client_cert_auth {
                        args.push("--client-cert-auth".into());
                    }
                }
                let log = dir.path().join(format!("{}.log", names[i]));
                let child = spawn(&args, &log);
                EtcdMember {
                    name: names[i].clone(),
                    client_url,
                    peer_url,
                    data_dir,
                    args,
                    child: Some(child),
                    log,
                }
            })
            .collect();
        let cluster = EtcdCluster { members, _dir: dir };
        cluster.wait_ready(Duration::from_secs(30));
        cluster
    }

    /// Client URLs of all members.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// Waits until every running member accepts TCP connections on its client port and
    /// (for plain HTTP) answers `/health` with `"health":"true"`.
    pub fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for member in self.members.iter().filter(|m| m.is_running()) {
            let addr = member
                .client_url
                .rsplit("://")
                .next()
                .unwrap_or_default()
                .to_string();
            let https = member.client_url.starts_with("https");
            loop {
                if healthy(&addr, https) {
                    break;
                }
                if Instant::now() > deadline {
                    panic!(
                        "etcd member {} did not become ready within {:?}; its log:\n{}",
                        member.name,
                        timeout,
                        member.log()
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn healthy(addr: &str, https: bool) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return false;
    };
    if https {
        // Port open is all we can check without a TLS client here; the store client retries.
        return true;
    }
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET /health HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    if stream.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut body = String::new();
    let _ = stream.read_to_string(&mut body);
    body.contains("\"health\":\"true\"")
}

fn etcd_binary() -> String {
    if let Ok(bin) = std::env::var("SKIFF_ETCD_BIN") {
        return bin;
    }
    for candidate in ["/usr/bin/etcd", "/usr/local/bin/etcd"] {
        if Path::new(candidate).exists() {
            return candidate.to_string();
        }
    }
    panic!("{INSTALL_HINT}");
}

fn spawn(args: &[String], log: &Path) -> Child {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("etcd log");
    let err = out.try_clone().expect("etcd log");
    Command::new(&args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("could not start {}: {e}; {INSTALL_HINT}", args[0]))
}
