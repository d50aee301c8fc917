//! get and list. Lists come from the watch cache (after it has caught up with the store,
//! for a consistent read), except paginated and exact-revision lists, which read the store
//! at one revision page by page, as upstream does.

use std::sync::Arc;

use base64::Engine;
use bytes::{BufMut, Bytes, BytesMut};
use http::StatusCode;
use serde_json::{json, Value};
use skiff_api::selector::{FieldSelector, LabelSelector};
use skiff_api::ApiError;
use skiff_store::RangeRequest;

use super::Req;
use crate::http::{bytes_response, negotiate, object_response, ApiResult, Format};
use crate::storage::{decode, store_error};
use crate::watchcache::{CachedObject, Filter};

/// The label, field and namespace filter of a list or watch; unsupported field selectors
/// are a 400 with upstream's message.
pub fn filter(req: &Req) -> Result<Filter, ApiError> {
    let labels = match req.param("labelSelector") {
        Some(s) => LabelSelector::parse(s)
            .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?,
        None => LabelSelector::everything(),
    };
    let fields = match req.param("fieldSelector") {
        Some(s) => FieldSelector::parse(s).map_err(ApiError::bad_request)?,
        None => FieldSelector::default(),
    };
    let sample = crate::resources::selectable_fields(req.def.hooks.as_ref(), &json!({}));
    let supported: Vec<&str> = sample.keys().copied().collect();
    if let Some(bad) = fields.unsupported(&supported) {
        return Err(ApiError::bad_request(format!(
            "field label not supported: {bad}"
        )));
    }
    Ok(Filter {
        namespace: req.info.namespace.clone(),
        labels,
        fields,
    })
}

pub async fn get(req: &Req) -> ApiResult {
    let name = &req.info.name;
    let key = req.key(name);
    let obj = if req.param("resourceVersion") == Some("0") {
        let cache = req
            .app
            .cache
            .resource(req.def)
            .ok_or_else(ApiError::path_not_found)?;
        cache.get(&key).map(|o| o.value())
    } else {
        req.app.storage.get(&key).await?
    };
    let obj = obj.ok_or_else(|| ApiError::not_found(&req.def.group_resource(), name))?;
    Ok(render_one(req, StatusCode::OK, &obj))
}

/// One object in the format asked for (a Table has a single row).
pub fn render_one(req: &Req, code: StatusCode, obj: &Value) -> axum::response::Response {
    // A stored object goes out in the version the client asked for.
    let converted;
    let obj = if req.def.conversion.is_some() {
        converted = req.def.from_storage(obj.clone());
        &converted
    } else {
        obj
    };
    match negotiate(&req.headers) {
        Format::Table => {
            let include = req.param("includeObject").unwrap_or("Metadata");
            let meta = json!({"resourceVersion": skiff_api::meta::resource_version(obj)});
            let t = crate::table::table(req.def, std::slice::from_ref(obj), meta, include, true);
            object_response(code, Format::Json, &t)
        }
        f => object_response(code, f, obj),
    }
}

fn parse_rv(s: &str) -> Result<i64, ApiError> {
    s.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
        ApiError::bad_request(format!(
            "resourceVersion: Invalid value: \"{s}\": must be a non-negative integer"
        ))
    })
}

pub async fn list(req: &Req) -> ApiResult {
    let filter = filter(req)?;
    let limit = match req.param("limit") {
        Some(l) => l
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request(format!("limit: Invalid value: \"{l}\"")))?,
        None => 0,
    };
    let rv = req.param("resourceVersion");
    let exact = req.param("resourceVersionMatch") == Some("Exact");
    // Upstream serves resourceVersion=0 from the cache and ignores limit there.
    if req.param("continue").is_some()
        || (limit > 0 && rv != Some("0"))
        || (exact && rv.is_some_and(|v| v != "0"))
    {
        return store_list(req, &filter, limit).await;
    }
    let cache = req
        .app
        .cache
        .resource(req.def)
        .ok_or_else(ApiError::path_not_found)?;
    match rv {
        None => {
            req.app.cache.sync().await?;
        }
        Some("0") => {}
        Some(n) => req.app.cache.wait_for(parse_rv(n)?).await?,
    }
    let (objects, revision) = cache.list(&filter);
    Ok(render_list(
        req,
        Items::Cached(objects),
        revision,
        None,
        None,
    ))
}

/// A list's items, either straight from the cache (already serialized) or read from the store.
pub enum Items {
    Cached(Vec<Arc<CachedObject>>),
    Values(Vec<Value>),
}

pub fn render_list(
    req: &Req,
    items: Items,
    revision: i64,
    cont: Option<String>,
    remaining: Option<i64>,
) -> axum::response::Response {
    let mut list_meta = json!({"resourceVersion": revision.to_string()});
    if let Some(c) = &cont {
        list_meta["continue"] = json!(c);
    }
    if let Some(r) = remaining {
        list_meta["remainingItemCount"] = json!(r);
    }
    // Stored objects go out in the version the client asked for (the cache's serialized
    // JSON is the storage form, so a converted list is built from values).
    let items = match items {
        Items::Cached(objs) if req.def.conversion.is_some() => Items::Values(
            objs.iter()
                .map(|o| req.def.from_storage(o.value()))
                .collect(),
        ),
        Items::Values(values) if req.def.conversion.is_some() => Items::Values(
            values
                .into_iter()
                .map(|v| req.def.from_storage(v))
                .collect(),
        ),
        other => other,
    };
    let format = negotiate(&req.headers);
    if format == Format::Table || format == Format::Yaml {
        let values: Vec<Value> = match items {
            Items::Cached(objs) => objs.iter().map(|o| o.value()).collect(),
            Items::Values(v) => v,
        };
        if format == Format::Table {
            let include = req.param("includeObject").unwrap_or("Metadata");
            let t = crate::table::table(req.def, &values, list_meta, include, true);
            return object_response(StatusCode::OK, Format::Json, &t);
        }
        let list = json!({"kind": format!("{}List", req.def.kind), "apiVersion": req.def.api_version(), "metadata": list_meta, "items": values});
        return object_response(StatusCode::OK, Format::Yaml, &list);
    }
    // Lists are assembled from each object's cached JSON: no re-serialization per request.
    let head = json!({"kind": format!("{}List", req.def.kind), "apiVersion": req.def.api_version(), "metadata": list_meta});
    let head = serde_json::to_vec(&head).unwrap_or_default();
    let mut out = BytesMut::with_capacity(head.len() + 64);
    out.put_slice(&head[..head.len() - 1]);
    out.put_slice(b",\"items\":[");
    let mut first = true;
    let mut push = |bytes: &[u8]| {
        if !first {
            out.put_u8(b',');
        }
        first = false;
        out.put_slice(bytes);
    };
    match items {
        Items::Cached(objs) => objs.iter().for_each(|o| push(&o.json)),
        Items::Values(values) => values
            .iter()
            .for_each(|v| push(&serde_json::to_vec(v).unwrap_or_default())),
    }
    out.put_slice(b"]}");
    bytes_response(StatusCode::OK, Bytes::from(out), "application/json")
}

fn encode_continue(revision: i64, start: &str) -> String {
    let token = json!({"v": "meta.k8s.io/v1", "rv": revision, "start": start});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
}

fn decode_continue(token: &str) -> Result<(i64, String), ApiError> {
    let bad = || ApiError::bad_request("continue key is not valid: invalid continue token");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = v["rv"].as_i64().ok_or_else(bad)?;
    let start = v["start"].as_str().ok_or_else(bad)?.to_string();
    if start.contains("..") || start.starts_with('/') {
        return Err(bad());
    }
    Ok((rv, start))
}

async fn store_list(req: &Req, filter: &Filter, limit: i64) -> ApiResult {
    let prefix = match (req.def.namespaced, req.info.namespace.is_empty()) {
        (true, false) => format!("{}{}/", req.def.storage_prefix(), req.info.namespace),
        _ => req.def.storage_prefix(),
    };
    let (mut revision, mut start) = match req.param("continue") {
        Some(token) => {
            let (rv, start) = decode_continue(token)?;
            (rv, format!("{prefix}{start}").into_bytes())
        }
        None => (
            req.param("resourceVersion")
                .map(parse_rv)
                .transpose()?
                .unwrap_or(0),
            prefix.clone().into_bytes(),
        ),
    };
    let end = skiff_store::keys::prefix_end(prefix.as_bytes());
    let want = if limit > 0 {
        limit as usize
    } else {
        usize::MAX
    };
    let mut items = Vec::new();
    let unfiltered = filter.labels.is_empty() && filter.fields.is_empty();
    let mut remaining = None;
    let mut next: Option<String> = None;
    loop {
        let page = if want == usize::MAX {
            0
        } else {
            (want - items.len()).max(100) as i64
        };
        let mut range = RangeRequest::prefix(&prefix)
            .limit(page)
            .at_revision(revision);
        range.key = start.clone();
        range.range_end = end.clone();
        let resp = req
            .app
            .storage
            .store
            .range(range)
            .await
            .map_err(|e| match e {
                skiff_store::StoreError::Compacted { .. } if req.param("continue").is_some() => {
                    ApiError::expired_continue()
                }
                other => store_error(other),
            })?;
        if revision == 0 {
            revision = resp.revision;
        }
        let fetched = resp.kvs.len();
        for (i, kv) in resp.kvs.iter().enumerate() {
            let obj = decode(kv)?;
            if filter.matches_value(req.def, &obj) {
                items.push(obj);
            }
            if items.len() == want {
                let more_here = i + 1 < fetched;
                if more_here || resp.more {
                    let last = String::from_utf8_lossy(&kv.key).into_owned();
                    next = Some(format!("{}\u{0}", &last[prefix.len()..]));
                    if unfiltered {
                        remaining = Some(resp.count - (i as i64 + 1));
                    }
                }
                break;
            }
        }
        if next.is_some() || !resp.more || items.len() == want {
            break;
        }
        match resp.kvs.last() {
            Some(last) => start = skiff_store::keys::key_after(&last.key),
            None => break,
        }
    }
    let cont = next.map(|start| encode_continue(revision, &start));
    Ok(render_list(
        req,
        Items::Values(items),
        revision,
        cont,
        remaining,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_refuse_garbage() {
        let t = encode_continue(42, "default/web-1\u{0}");
        assert_eq!(
            decode_continue(&t).unwrap(),
            (42, "default/web-1\u{0}".to_string())
        );
        assert!(decode_continue("!!").is_err());
        let sneaky = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(r#"{"rv":1,"start":"../secrets/x"}"#);
        assert!(decode_continue(&sneaky).is_err());
    }
}
