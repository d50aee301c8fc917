//! Watches: a stream of `{"type": ..., "object": ...}` lines from the watch cache.
//!
//! Starting point, as upstream: resourceVersion unset or "0" (or sendInitialEvents=true)
//! first sends the current state as ADDED events; resourceVersion=N sends what changed
//! after N (410 Expired if that history is gone). Selectors are applied on both sides of a
//! change, so an object moving out of a watcher's selection is a DELETED to it. Bookmarks
//! carry the cache's revision when asked for. A watcher that falls behind is cut off.

use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::StatusCode;
use serde_json::{json, Value};
use skiff_api::ApiError;
use tokio::sync::broadcast::error::RecvError;

use super::Req;
use crate::http::{negotiate, ApiResult, Format};
use crate::resources::ResourceDef;
use crate::watchcache::{CacheEvent, CachedObject, EventType, Filter};

/// How often an idle watch with bookmarks enabled gets one.
const BOOKMARK_EVERY: Duration = Duration::from_secs(15);

struct Encoder {
    def: &'static ResourceDef,
    table: bool,
    include: String,
    columns_sent: bool,
}

impl Encoder {
    fn line(&mut self, kind: &str, object: &Value) -> Bytes {
        // Cached objects are in the storage version; send the one the client watches.
        let converted;
        let object = if self.def.conversion.is_some() && kind != "BOOKMARK" {
            converted = self.def.from_storage(object.clone());
            &converted
        } else {
            object
        };
        let object = if self.table && kind != "BOOKMARK" {
            let meta = json!({"resourceVersion": skiff_api::meta::resource_version(object)});
            let t = crate::table::table(
                self.def,
                std::slice::from_ref(object),
                meta,
                &self.include,
                !self.columns_sent,
            );
            self.columns_sent = true;
            t
        } else {
            object.clone()
        };
        let mut out =
            serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
        out.push(b'\n');
        Bytes::from(out)
    }

    /// One event line. The common case (JSON, stored version) splices the cached object's
    /// bytes: with many watchers, serializing once per event instead of once per watcher
    /// is most of the fan-out cost.
    fn emit(&mut self, kind: &str, obj: Obj<'_>) -> Bytes {
        match obj {
            Obj::Cached(o) if !self.table && self.def.conversion.is_none() => {
                let mut out = Vec::with_capacity(o.json.len() + 32);
                out.extend_from_slice(b"{\"type\":\"");
                out.extend_from_slice(kind.as_bytes());
                out.extend_from_slice(b"\",\"object\":");
                out.extend_from_slice(&o.json);
                out.extend_from_slice(b"}\n");
                Bytes::from(out)
            }
            Obj::Cached(o) => {
                let value = o.value();
                self.line(kind, &value)
            }
            Obj::Owned(v) => self.line(kind, &v),
        }
    }

    fn bookmark(&mut self, revision: i64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": revision.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj =
            json!({"kind": self.def.kind, "apiVersion": self.def.api_version(), "metadata": meta});
        self.line("BOOKMARK", &obj)
    }
}

/// What one change means to a watcher with this filter.
/// An event's object: the cached one (shared, already serialized) or one made for this
/// watcher.
enum Obj<'a> {
    Cached(&'a CachedObject),
    Owned(Value),
}

/// What one change means to a watcher with this filter.
fn translate<'a>(filter: &Filter, event: &'a CacheEvent) -> Option<(&'static str, Obj<'a>)> {
    let now = event.kind != EventType::Deleted && filter.matches(&event.object);
    let before = event.prev.as_ref().is_some_and(|p| filter.matches(p));
    let cached = Obj::Cached(&event.object);
    match (before, now, event.kind) {
        (_, _, EventType::Deleted) if before => Some(("DELETED", cached)),
        (false, true, _) => Some(("ADDED", cached)),
        (true, true, _) => Some(("MODIFIED", cached)),
        (true, false, _) => {
            // Left the selection: deleted as far as this watcher can see.
            let mut obj = event.object.value();
            skiff_api::meta::set_meta(&mut obj, "resourceVersion", event.rv.to_string());
            Some(("DELETED", Obj::Owned(obj)))
        }
        _ => None,
    }
}

fn stream_response(body: Body) -> axum::response::Response {
    let mut resp = axum::response::Response::new(body);
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-cache, private"),
    );
    resp
}

/// A watch that ends at once with an ERROR event.
fn error_event(err: &ApiError) -> axum::response::Response {
    let mut line = serde_json::to_vec(&json!({"type": "ERROR", "object": err.to_status()}))
        .unwrap_or_default();
    line.push(b'\n');
    stream_response(Body::from(line))
}

pub async fn watch(req: &Req) -> ApiResult {
    let filter = super::read::filter(req)?;
    let rv = req.param("resourceVersion").map(str::to_string);
    let send_initial = match req.param("sendInitialEvents") {
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "sendInitialEvents: Invalid value: \"{other}\""
            ))
            .into())
        }
        None => None,
    };
    let bookmarks = matches!(req.param("allowWatchBookmarks"), Some("true" | "1"));
    let timeout = req
        .param("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let initial_state = send_initial.unwrap_or(matches!(rv.as_deref(), None | Some("0")));
    let from = match rv.as_deref() {
        None | Some("") | Some("0") => None,
        Some(n) => Some(n.parse::<i64>().map_err(|_| {
            ApiError::bad_request(format!("resourceVersion: Invalid value: \"{n}\""))
        })?),
    };
    // A consistent start: the cache has seen everything written before this request.
    match from {
        None if rv.is_none() => {
            req.app.cache.sync().await?;
        }
        Some(n) => req.app.cache.wait_for(n).await?,
        None => {}
    }
    let cache = req
        .app
        .cache
        .resource(req.def)
        .ok_or_else(ApiError::path_not_found)?
        .clone();
    let sub = match cache.subscribe(from, initial_state) {
        Ok(sub) => sub,
        // Too old: upstream answers 200 with one ERROR event carrying the 410 Status,
        // which is what makes clients (kube-rs, client-go) re-list.
        Err(err) if err.code == 410 => return Ok(error_event(&err)),
        Err(err) => return Err(err.into()),
    };
    let mut enc = Encoder {
        def: req.def,
        table: negotiate(&req.headers) == Format::Table,
        include: req.param("includeObject").unwrap_or("Metadata").to_string(),
        columns_sent: false,
    };
    let announce_initial_end = send_initial == Some(true) && bookmarks;
    let app_cache = req.app.cache.clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    tokio::spawn(async move {
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut last = sub.revision;
        let send = |b: Bytes| {
            let tx = tx.clone();
            async move { tx.send(Ok(b)).await.is_ok() }
        };
        for event in &sub.initial {
            let line = if initial_state {
                filter
                    .matches(&event.object)
                    .then(|| enc.emit("ADDED", Obj::Cached(&event.object)))
            } else {
                translate(&filter, event).map(|(kind, obj)| enc.emit(kind, obj))
            };
            if let Some(line) = line {
                if !send(line).await {
                    return;
                }
            }
            if !initial_state {
                last = last.max(event.rv);
            }
        }
        if announce_initial_end && !send(enc.bookmark(sub.revision, true)).await {
            return;
        }
        let mut live = sub.live;
        let mut ticker = tokio::time::interval(BOOKMARK_EVERY);
        ticker.tick().await;
        let mut bookmarked = last;
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = tx.closed() => return,
                _ = ticker.tick(), if bookmarks => {
                    let rev = app_cache.revision().max(last);
                    if rev > bookmarked {
                        bookmarked = rev;
                        if !send(enc.bookmark(rev, false)).await {
                            return;
                        }
                    }
                }
                event = live.recv() => match event {
                    Ok(event) => {
                        if event.rv <= last {
                            continue;
                        }
                        last = event.rv;
                        if let Some((kind, obj)) = translate(&filter, &event) {
                            if !send(enc.emit(kind, obj)).await {
                                return;
                            }
                        }
                    }
                    // Fallen behind, or the cache re-listed: end the stream; the client
                    // re-watches from the last resourceVersion it saw.
                    Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => return,
                },
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    Ok(stream_response(Body::from_stream(stream)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use skiff_api::selector::LabelSelector;
    use std::sync::Arc;

    fn obj(labels: Value, rv: i64) -> Arc<CachedObject> {
        let def = crate::resources::find("", "v1", "configmaps").unwrap();
        let v = json!({"metadata": {"name": "c", "namespace": "d", "labels": labels, "resourceVersion": rv.to_string()}});
        Arc::new(CachedObject::for_test(def, v, rv))
    }

    #[test]
    fn selection_changes_become_added_and_deleted() {
        let filter = Filter {
            labels: LabelSelector::parse("app=web").unwrap(),
            ..Default::default()
        };
        let web = obj(json!({"app": "web"}), 2);
        let db = obj(json!({"app": "db"}), 3);
        let ev = |kind, object: &Arc<CachedObject>, prev: Option<&Arc<CachedObject>>| CacheEvent {
            rv: object.rv,
            kind,
            object: object.clone(),
            prev: prev.cloned(),
        };
        assert_eq!(
            translate(&filter, &ev(EventType::Added, &web, None))
                .unwrap()
                .0,
            "ADDED"
        );
        assert_eq!(
            translate(&filter, &ev(EventType::Modified, &db, Some(&web)))
                .unwrap()
                .0,
            "DELETED"
        );
        assert_eq!(
            translate(&filter, &ev(EventType::Modified, &web, Some(&db)))
                .unwrap()
                .0,
            "ADDED"
        );
        assert!(translate(&filter, &ev(EventType::Added, &db, None)).is_none());
        assert_eq!(
            translate(&filter, &ev(EventType::Deleted, &web, Some(&web)))
                .unwrap()
                .0,
            "DELETED"
        );
        assert!(translate(&filter, &ev(EventType::Deleted, &db, Some(&db))).is_none());
    }
}
