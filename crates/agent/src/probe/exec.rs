//! exec probes: a command run in the container through CRI `ExecSync`; exit code 0 is
//! success, anything else a failure whose message is the command's output.

use std::time::Duration;

use skiff_cri::api::ExecSyncRequest;

use super::Outcome;

/// What an exec probe needs from the runtime: the seam that lets the probe logic be
/// tested without containerd.
#[async_trait::async_trait]
pub trait ExecRunner: Send + Sync {
    /// Runs `cmd` in the container; `Err` when it could not be run at all.
    async fn exec_sync(
        &self,
        container_id: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, ExecError>;
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i32,
    /// stdout followed by stderr, as the probe reports it.
    pub output: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExecError {
    TimedOut,
    Other(String),
}

/// The CRI runtime as an [`ExecRunner`].
pub struct CriExec(pub skiff_cri::Cri);

#[async_trait::async_trait]
impl ExecRunner for CriExec {
    async fn exec_sync(
        &self,
        container_id: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, ExecError> {
        let req = ExecSyncRequest {
            container_id: container_id.to_owned(),
            cmd: cmd.to_vec(),
            timeout: timeout.as_secs().max(1) as i64,
        };
        let mut runtime = self.0.runtime.clone();
        // The runtime enforces the timeout; the local guard (with slack) covers a
        // runtime that does not answer at all.
        let call = runtime.exec_sync(req);
        let resp = match tokio::time::timeout(timeout + Duration::from_secs(2), call).await {
            Err(_) => return Err(ExecError::TimedOut),
            Ok(Err(status)) if status.code() == tonic::Code::DeadlineExceeded => {
                return Err(ExecError::TimedOut)
            }
            Ok(Err(status)) if status.message().contains("timeout") => {
                return Err(ExecError::TimedOut)
            }
            Ok(Err(status)) => return Err(ExecError::Other(status.message().to_owned())),
            Ok(Ok(resp)) => resp.into_inner(),
        };
        let mut output = resp.stdout;
        output.extend_from_slice(&resp.stderr);
        Ok(ExecOutput {
            exit_code: resp.exit_code,
            output,
        })
    }
}

/// Runs an exec probe.
pub async fn probe(
    runner: &dyn ExecRunner,
    container_id: &str,
    cmd: &[String],
    timeout: Duration,
) -> Outcome {
    match runner.exec_sync(container_id, cmd, timeout).await {
        Ok(out) if out.exit_code == 0 => Outcome::Success,
        Ok(out) => Outcome::Failure(String::from_utf8_lossy(&out.output).into_owned()),
        Err(ExecError::TimedOut) => {
            Outcome::Failure(format!("command {:?} timed out", cmd.join(" ")))
        }
        Err(ExecError::Other(e)) => Outcome::Failure(e),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Answers exec calls from a script and records them.
    #[derive(Default)]
    pub struct FakeExec {
        pub answers: Mutex<Vec<Result<ExecOutput, ExecError>>>,
        pub calls: Mutex<Vec<(String, Vec<String>, Duration)>>,
    }

    #[async_trait::async_trait]
    impl ExecRunner for FakeExec {
        async fn exec_sync(
            &self,
            container_id: &str,
            cmd: &[String],
            timeout: Duration,
        ) -> Result<ExecOutput, ExecError> {
            self.calls
                .lock()
                .unwrap()
                .push((container_id.into(), cmd.to_vec(), timeout));
            let mut a = self.answers.lock().unwrap();
            if a.is_empty() {
                Err(ExecError::Other("no scripted answer".into()))
            } else {
                a.remove(0)
            }
        }
    }

    #[tokio::test]
    async fn exit_codes_output_and_timeouts() {
        let fake = FakeExec::default();
        *fake.answers.lock().unwrap() = vec![
            Ok(ExecOutput {
                exit_code: 0,
                output: b"fine".to_vec(),
            }),
            Ok(ExecOutput {
                exit_code: 1,
                output: b"not ready\n".to_vec(),
            }),
            Err(ExecError::TimedOut),
        ];
        let cmd = vec!["cat".to_string(), "/tmp/healthy".to_string()];
        let t = Duration::from_secs(3);
        assert_eq!(probe(&fake, "c1", &cmd, t).await, Outcome::Success);
        assert_eq!(
            probe(&fake, "c1", &cmd, t).await,
            Outcome::Failure("not ready\n".into())
        );
        assert_eq!(
            probe(&fake, "c1", &cmd, t).await,
            Outcome::Failure("command \"cat /tmp/healthy\" timed out".into())
        );
        let calls = fake.calls.lock().unwrap();
        assert_eq!(calls[0], ("c1".to_string(), cmd.clone(), t));
    }
}
