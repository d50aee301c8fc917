//! The log backend: JSON lines appended by one writer thread, so requests never wait on
//! the disk beyond a bounded queue (upstream's "blocking" mode: a full queue makes the
//! request wait rather than drop an event). Rotation as kube-apiserver's (lumberjack):
//! past `max_size` the file is renamed `<name>-<UTC timestamp>.<ext>` and a new one
//! started; at most `max_backups` old files are kept, none older than `max_age` days.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use tokio::sync::mpsc;

#[derive(Clone, Debug)]
pub struct LogOptions {
    /// `-` writes to standard output.
    pub path: PathBuf,
    /// Megabytes before rotation; 0: never rotate.
    pub max_size_mb: u64,
    /// Old files kept; 0: keep all.
    pub max_backups: usize,
    /// Days old files are kept; 0: no age limit.
    pub max_age_days: u64,
}

#[derive(Clone)]
pub struct LogWriter {
    tx: mpsc::Sender<Vec<u8>>,
}

impl LogWriter {
    pub fn start(opts: LogOptions) -> Result<Self, String> {
        let mut sink = Sink::open(opts)?;
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(10_000);
        std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || {
                while let Some(line) = rx.blocking_recv() {
                    if let Err(err) = sink.write(&line) {
                        tracing::error!(%err, "writing the audit log failed");
                    }
                    // Flush when the queue is drained, not per event.
                    if rx.is_empty() {
                        let _ = sink.flush();
                    }
                }
                let _ = sink.flush();
            })
            .map_err(|e| format!("starting the audit log writer: {e}"))?;
        Ok(Self { tx })
    }

    pub async fn write(&self, mut line: Vec<u8>) {
        line.push(b'\n');
        let _ = self.tx.send(line).await;
    }

    /// From a context that cannot wait (a body's drop): queued if there is room.
    pub fn write_now(&self, mut line: Vec<u8>) {
        line.push(b'\n');
        if self.tx.try_send(line).is_err() {
            tracing::warn!("audit log queue full: an event was dropped");
        }
    }
}

/// A response body that runs a callback once when it ends or is dropped (the client went
/// away): the end of a streamed response.
pub struct OnEnd<F: FnOnce() + Send + 'static> {
    inner: axum::body::Body,
    done: Option<F>,
}

impl<F: FnOnce() + Send + 'static> OnEnd<F> {
    pub fn new(inner: axum::body::Body, done: F) -> Self {
        Self {
            inner,
            done: Some(done),
        }
    }
}

impl<F: FnOnce() + Send + Unpin + 'static> http_body::Body for OnEnd<F> {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if let std::task::Poll::Ready(None) = &polled {
            if let Some(done) = self.done.take() {
                done();
            }
        }
        polled
    }
}

impl<F: FnOnce() + Send + 'static> Drop for OnEnd<F> {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            done();
        }
    }
}

enum Target {
    Stdout,
    File(std::io::BufWriter<File>),
}

struct Sink {
    opts: LogOptions,
    target: Target,
    size: u64,
}

impl Sink {
    fn open(opts: LogOptions) -> Result<Self, String> {
        if opts.path.as_os_str() == "-" {
            return Ok(Self {
                opts,
                target: Target::Stdout,
                size: 0,
            });
        }
        if let Some(dir) = opts.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("creating the audit log directory {}: {e}", dir.display()))?;
        }
        let (file, size) = open_append(&opts.path)?;
        Ok(Self {
            opts,
            target: Target::File(std::io::BufWriter::new(file)),
            size,
        })
    }

    fn write(&mut self, line: &[u8]) -> std::io::Result<()> {
        let limit = self.opts.max_size_mb * 1024 * 1024;
        if matches!(self.target, Target::File(_))
            && limit > 0
            && self.size > 0
            && self.size + line.len() as u64 > limit
        {
            self.rotate()?;
        }
        self.size += line.len() as u64;
        match &mut self.target {
            Target::Stdout => std::io::stdout().write_all(line),
            Target::File(f) => f.write_all(line),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.target {
            Target::Stdout => std::io::stdout().flush(),
            Target::File(f) => f.flush(),
        }
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.flush()?;
        let path = self.opts.path.clone();
        let backup = backup_name(&path, jiff::Timestamp::now());
        std::fs::rename(&path, &backup)?;
        let (file, size) = open_append(&path).map_err(std::io::Error::other)?;
        self.target = Target::File(std::io::BufWriter::new(file));
        self.size = size;
        self.prune();
        Ok(())
    }

    /// Removes backups beyond the count and age limits (oldest first).
    fn prune(&self) {
        let mut backups = list_backups(&self.opts.path);
        backups.sort();
        let now = std::time::SystemTime::now();
        let max_age = std::time::Duration::from_secs(self.opts.max_age_days * 86_400);
        let keep_from = if self.opts.max_backups > 0 {
            backups.len().saturating_sub(self.opts.max_backups)
        } else {
            0
        };
        for (i, b) in backups.iter().enumerate() {
            let too_old = self.opts.max_age_days > 0
                && std::fs::metadata(b)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| now.duration_since(t).ok())
                    .is_some_and(|age| age > max_age);
            if i < keep_from || too_old {
                let _ = std::fs::remove_file(b);
            }
        }
    }
}

fn open_append(path: &Path) -> Result<(File, u64), String> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("opening the audit log {}: {e}", path.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    Ok((file, size))
}

fn split_name(path: &Path) -> (String, String) {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    (stem, ext)
}

/// `audit.log` → `audit-2026-11-24T06-30-00.123.log`, as lumberjack names backups.
fn backup_name(path: &Path, at: jiff::Timestamp) -> PathBuf {
    let (stem, ext) = split_name(path);
    let stamp = at.strftime("%Y-%m-%dT%H-%M-%S%.3f").to_string();
    path.with_file_name(format!("{stem}-{stamp}{ext}"))
}

fn list_backups(path: &Path) -> Vec<PathBuf> {
    let (stem, ext) = split_name(path);
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let prefix = format!("{stem}-");
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .map(|n| n.to_string_lossy())
                        .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(&ext))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rotates_past_the_size_and_keeps_the_newest_backups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut sink = Sink::open(LogOptions {
            path: path.clone(),
            max_size_mb: 1,
            max_backups: 2,
            max_age_days: 0,
        })
        .unwrap();
        let line = vec![b'x'; 300 * 1024];
        for _ in 0..14 {
            sink.write(&line).unwrap();
            // Backups are named by the millisecond.
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        sink.flush().unwrap();
        let backups = list_backups(&path);
        assert_eq!(backups.len(), 2, "{backups:?}");
        for b in &backups {
            assert!(std::fs::metadata(b).unwrap().len() <= 1024 * 1024);
        }
        assert!(std::fs::metadata(&path).unwrap().len() <= 1024 * 1024);
    }

    #[test]
    fn backup_names_follow_lumberjack() {
        let at: jiff::Timestamp = "2026-11-24T06:30:00.123Z".parse().unwrap();
        assert_eq!(
            backup_name(Path::new("/var/log/audit.log"), at),
            PathBuf::from("/var/log/audit-2026-11-24T06-30-00.123.log")
        );
    }
}
