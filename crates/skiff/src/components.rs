//! The control loops `skiff server` runs beside the API server: the scheduler and the
//! controller manager, each a Kubernetes client with its own identity (a client
//! certificate) and each behind leader election, so several servers sharing one store
//! run one active copy of each loop.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use skiff_runtime::leader;
use skiff_runtime::CancellationToken;

/// Leader election timing. Shorter than upstream's 15 s lease so a standby takes over
/// within about 12 s of a leader dying (the renew period is upstream's 2 s).
pub fn election(name: &str) -> leader::Config {
    let mut config = leader::Config::new(name);
    config.lease_duration = Duration::from_secs(10);
    config.renew_deadline = Duration::from_secs(7);
    config.retry_period = Duration::from_secs(2);
    config
}

/// Writes a kubeconfig for a component's own client certificate under
/// `<data-dir>/server/cred/` (mode 0600) and returns its path.
pub fn component_kubeconfig(
    running: &skiff_apiserver::Running,
    data_dir: &Path,
    file: &str,
    user: &str,
) -> Result<PathBuf> {
    // No groups: each component is authorized as its user by the default RBAC policy
    // (system:kube-scheduler, system:kube-controller-manager), not as a cluster admin.
    let (cert, key) = running
        .pki
        .issue_client(user, &[])
        .with_context(|| format!("issuing a client certificate for {user}"))?;
    let server = format!("https://{}", running.app.server_address);
    let yaml = running.pki.kubeconfig(&server, user, &cert, &key);
    let dir = data_dir.join("server").join("cred");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(file);
    write_private(&path, &yaml)?;
    Ok(path)
}

pub fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(contents.as_bytes())
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// Runs the scheduler under leader election until `shutdown`.
pub async fn scheduler(
    client: kube::Client,
    settings: skiff_scheduler::Settings,
    shutdown: CancellationToken,
) {
    leader::Elector::new(client.clone(), election("kube-scheduler"))
        .run(shutdown, move |leading| {
            skiff_scheduler::run(client.clone(), settings.clone(), leading)
        })
        .await;
}

/// Runs the controller manager's loops (`only` these, all when empty) under leader
/// election until `shutdown`.
pub async fn controller_manager(
    client: kube::Client,
    settings: skiff_controllers::Settings,
    only: Vec<String>,
    shutdown: CancellationToken,
) {
    leader::Elector::new(client.clone(), election("kube-controller-manager"))
        .run(shutdown, move |leading| {
            let client = client.clone();
            let settings = settings.clone();
            let only = only.clone();
            async move { skiff_controllers::run(client, settings, &only, leading).await }
        })
        .await;
}
