//! `GET /containerLogs/{ns}/{pod}/{container}`: the container's CRI log file, selected and
//! formatted by [`logfile`], streamed as it is read. With `follow` the file is tailed
//! until the container stops (then drained), or until the client goes away.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

use super::logfile::{self, Budget, Joiner, LogOptions};
use super::{lookup, Body, Failure, ServerConfig};

/// How often a followed file is checked for more output.
const POLL: Duration = Duration::from_millis(100);
/// How often a followed container is asked whether it is still running.
const STATE_EVERY: u32 = 10;

pub async fn serve(
    config: &ServerConfig,
    ns: &str,
    pod: &str,
    container: &str,
    query: &str,
) -> Result<Response<Body>, Failure> {
    let q: HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let opts = LogOptions::from_query(&q, jiff::Timestamp::now()).map_err(Failure::bad_request)?;
    let all = lookup::instances(&config.cri, ns, pod, container).await?;
    let instance = match lookup::choose(all, opts.previous) {
        Some(i) => i,
        None if opts.previous => {
            return Err(Failure::bad_request(format!(
                "previous terminated container {container:?} in pod {pod:?} not found"
            )))
        }
        None => {
            return Err(Failure::bad_request(format!(
                "container {container:?} in pod {pod:?} is waiting to start: ContainerCreating"
            )))
        }
    };
    let (path, running) = lookup::status(&config.cri, &instance.id).await?;
    if path.is_empty() {
        return Err(Failure::internal(format!(
            "container {container:?} in pod {pod:?} has no log file"
        )));
    }
    // A previous instance never writes again, so there is nothing to follow.
    let follow = opts.follow && running && !opts.previous;
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let cri = config.cri.clone();
    let id = instance.id.clone();
    tokio::spawn(async move {
        if let Err(err) = pump(&path, &opts, follow, &cri, &id, &tx).await {
            tracing::debug!(%err, path, "log stream ended");
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::io::Error>(Frame::data(b)), rx))
    });
    let mut resp = Response::new(StreamBody::new(stream).boxed());
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    Ok(resp)
}

/// Why sending stopped early: the client left, or limitBytes was reached.
struct Stop;

async fn send(tx: &mpsc::Sender<Bytes>, budget: &mut Budget, bytes: Vec<u8>) -> Result<(), Stop> {
    let bytes = budget.take(bytes).ok_or(Stop)?;
    if !bytes.is_empty() {
        tx.send(Bytes::from(bytes)).await.map_err(|_| Stop)?;
    }
    if budget.exhausted() {
        return Err(Stop);
    }
    Ok(())
}

async fn pump(
    path: &str,
    opts: &LogOptions,
    follow: bool,
    cri: &skiff_cri::Cri,
    id: &str,
    tx: &mpsc::Sender<Bytes>,
) -> std::io::Result<()> {
    let mut file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        // No file yet: the container wrote nothing.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !follow => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut content = Vec::new();
    file.read_to_end(&mut content).await?;
    let mut budget = Budget::new(opts.limit_bytes);
    // What is already there: the last file line may be unfinished; keep it for following.
    let mut pending = Vec::new();
    if follow {
        if let Some(end) = content.iter().rposition(|b| *b == b'\n') {
            pending = content.split_off(end + 1);
        } else {
            pending = std::mem::take(&mut content);
        }
    }
    // When following, partial records at the end continue in what is read next, so only
    // finished lines are sent now; the joiner carries the rest.
    let mut joiner = Joiner::default();
    let lines = logfile::select(&content, opts, &mut joiner, !follow);
    for line in &lines {
        if send(tx, &mut budget, line.render(opts.timestamps))
            .await
            .is_err()
        {
            return Ok(());
        }
    }
    if !follow {
        return Ok(());
    }
    // `pending` already holds the unfinished tail; reading resumes at the file's end.
    let mut position = file.stream_position().await?;
    let mut ticks = 0u32;
    let mut running = true;
    loop {
        file.seek(std::io::SeekFrom::Start(position)).await?;
        let mut more = Vec::new();
        file.read_to_end(&mut more).await?;
        position += more.len() as u64;
        pending.extend_from_slice(&more);
        for raw in logfile::take_lines(&mut pending) {
            if let Some(line) = joiner.push(&raw) {
                if opts.since.is_some_and(|s| line.time < s) {
                    continue;
                }
                if send(tx, &mut budget, line.render(opts.timestamps))
                    .await
                    .is_err()
                {
                    return Ok(());
                }
            }
        }
        if !running {
            // The container has stopped and its file has been drained.
            for line in joiner.finish() {
                if send(tx, &mut budget, line.render(opts.timestamps))
                    .await
                    .is_err()
                {
                    return Ok(());
                }
            }
            return Ok(());
        }
        if more.is_empty() {
            if tx.is_closed() {
                return Ok(());
            }
            tokio::time::sleep(POLL).await;
            ticks += 1;
            if ticks.is_multiple_of(STATE_EVERY) {
                // Read once more after it stopped, so its last words are not lost.
                running = matches!(lookup::status(cri, id).await, Ok((_, true)));
            }
        }
    }
}
