//! Running `nft -f -`: each script is one kernel transaction, all or nothing.

use std::process::Stdio;

use tokio::io::AsyncWriteExt;

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("running {cmd}: {source} (is the nftables package installed?)")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("nft refused the update: {stderr}")]
    Refused { stderr: String },
}

/// How to run nft: plain, or inside a network namespace (`ip netns exec NS nft`).
#[derive(Clone, Debug)]
pub struct Nft {
    argv: Vec<String>,
}

impl Default for Nft {
    fn default() -> Self {
        Self {
            argv: vec!["nft".into()],
        }
    }
}

impl Nft {
    pub fn in_netns(ns: &str) -> Self {
        Self {
            argv: vec![
                "ip".into(),
                "netns".into(),
                "exec".into(),
                ns.into(),
                "nft".into(),
            ],
        }
    }

    pub async fn apply(&self, script: &str) -> Result<(), NftError> {
        self.run(&["-f", "-"], Some(script)).await.map(|_| ())
    }

    /// `nft list table ip <table>` (for tests and diagnostics).
    pub async fn list_table(&self, table: &str) -> Result<String, NftError> {
        self.run(&["list", "table", "ip", table], None).await
    }

    pub async fn delete_table(&self, table: &str) -> Result<(), NftError> {
        self.apply(&format!("add table ip {table}\ndelete table ip {table}\n"))
            .await
    }

    async fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<String, NftError> {
        let cmd = self.argv.join(" ");
        let mut child = tokio::process::Command::new(&self.argv[0])
            .args(&self.argv[1..])
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| NftError::Spawn {
                cmd: cmd.clone(),
                source,
            })?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes())
                .await
                .map_err(|source| NftError::Spawn {
                    cmd: cmd.clone(),
                    source,
                })?;
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|source| NftError::Spawn { cmd, source })?;
        if !out.status.success() {
            return Err(NftError::Refused {
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}
