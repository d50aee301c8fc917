//! create, update, patch, delete, deletecollection: the generic registry's write paths.
//! Each runs the resource's strategy (decode, prepare, validate), then a guarded store
//! write; an optimistic-concurrency loss is a 409 when the client named a
//! resourceVersion, and a retry on fresh data when it did not.

use axum::body::Body;
use http::{HeaderValue, StatusCode};
use serde_json::{json, Value};
use skiff_api::{meta, ApiError, FieldErrors};

use super::read::render_one;
use super::Req;
use crate::http::{parse_body, read_body, ApiResult};
use crate::lifecycle::{self, DeletePlan, UpdateScope};
use crate::resources::Context;
use crate::storage::WriteConflict;

/// Attempts at a write that lost a race it may retry (patch, unconditional update).
const RETRIES: usize = 8;

fn context(req: &Req) -> Context<'_> {
    Context {
        namespace: &req.info.namespace,
        service_cidr: Some(&req.app.config.service_cidr),
    }
}

/// Checks apiVersion/kind/namespace of a body against the endpoint, then decodes it with
/// the resource's codec. Unknown fields fail with `fieldValidation=Strict`; otherwise they
/// are dropped and reported in Warning headers.
fn decode_object(req: &Req, mut obj: Value) -> Result<(Value, Vec<String>), ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON or YAML object",
        ));
    }
    // Clients may leave apiVersion and kind out (the Python client's models do); the
    // endpoint says what they are, as upstream's decoder defaults them.
    if let Some(map) = obj.as_object_mut() {
        for (field, value) in [
            ("apiVersion", req.def.api_version()),
            ("kind", req.def.kind.to_string()),
        ] {
            if map
                .get(field)
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                map.insert(field.to_string(), Value::String(value));
            }
        }
    }
    let kind = meta::kind(&obj).to_string();
    let api_version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if api_version != req.def.api_version() {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            req.def.api_version()
        )));
    }
    if kind != req.def.kind {
        return Err(ApiError::bad_request(format!(
            "{kind} in version \"{}\" cannot be handled as a {}: the kind in the data does not match the endpoint",
            req.def.version, req.def.kind
        )));
    }
    if req.def.namespaced {
        let ns = meta::namespace(&obj);
        if ns.is_empty() {
            meta::set_meta(&mut obj, "namespace", req.info.namespace.clone());
        } else if ns != req.info.namespace {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    }
    let (normalized, unknown) = req.def.codec.normalize(obj).map_err(|e| {
        ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: {e}",
            req.def.kind, req.def.version, req.def.kind
        ))
    })?;
    if !unknown.is_empty() && req.param("fieldValidation") == Some("Strict") {
        let list: Vec<String> = unknown
            .iter()
            .map(|f| format!("unknown field \"{f}\""))
            .collect();
        let (kind, version) = (req.def.kind, req.def.version);
        return Err(ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
            list.join(", ")
        )));
    }
    // Everything after decoding (defaults, validation, the store) sees the storage version.
    Ok((req.def.to_storage(normalized), unknown))
}

fn with_warnings(
    mut resp: axum::response::Response,
    unknown: &[String],
    req: &Req,
) -> axum::response::Response {
    if req.param("fieldValidation") == Some("Ignore") {
        return resp;
    }
    for field in unknown {
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"unknown field \\\"{field}\\\"\"")) {
            resp.headers_mut().append(http::header::WARNING, v);
        }
    }
    resp
}

/// Namespace lifecycle admission: no new objects in a missing or terminating namespace.
/// Priority admission: resolves a pod's priority from the cached PriorityClasses.
fn admit_priority(req: &Req, pod: &mut Value) -> Result<(), ApiError> {
    let Some(cache) = crate::resources::find("scheduling.k8s.io", "v1", "priorityclasses")
        .and_then(|def| req.app.cache.resource(def))
    else {
        return Ok(());
    };
    let class = |name: &str| {
        cache
            .get(&skiff_store::keys::object_key(
                "priorityclasses",
                None,
                name,
            ))
            .map(|o| o.value())
    };
    // Upstream picks the lowest-valued class when several claim globalDefault.
    let default_class = || {
        let (all, _) = cache.list(&crate::watchcache::Filter::default());
        all.iter()
            .map(|o| o.value())
            .filter(|pc| pc.get("globalDefault").and_then(Value::as_bool) == Some(true))
            .min_by_key(|pc| pc.get("value").and_then(Value::as_i64).unwrap_or(0))
    };
    crate::admission::resolve_priority(pod, class, default_class).map_err(|refused| {
        ApiError::forbidden(&req.def.group_resource(), meta::name(pod), &refused.0)
    })
}

async fn admit_namespace(req: &Req) -> Result<(), ApiError> {
    if !req.def.namespaced {
        return Ok(());
    }
    let ns = &req.info.namespace;
    let key = skiff_store::keys::object_key("namespaces", None, ns);
    let namespaces =
        crate::resources::find("", "v1", "namespaces").ok_or_else(ApiError::path_not_found)?;
    // The phase is what upstream's NamespaceLifecycle checks, and the cache indexes it
    // (a field selector), so the common case parses nothing.
    let cached = req
        .app
        .cache
        .resource(namespaces)
        .and_then(|c| c.get(&key))
        .map(|o| o.fields.get("status.phase").cloned().unwrap_or_default());
    // The cache may lag a namespace created a moment ago: confirm a miss in the store.
    let phase = match cached {
        Some(phase) => Some(phase),
        None => req.app.storage.get(&key).await?.map(|n| {
            n.pointer("/status/phase")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        }),
    };
    match phase.as_deref() {
        None => Err(ApiError::not_found(
            &skiff_api::GroupResource::new("", "namespaces"),
            ns,
        )),
        Some("Terminating") => Err(ApiError::forbidden(
            &req.def.group_resource(),
            ns,
            &format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ),
        )),
        Some(_) => Ok(()),
    }
}

fn invalid(req: &Req, name: &str, errs: FieldErrors) -> Result<(), ApiError> {
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(&req.def.group_kind(), name, &errs))
    }
}

pub async fn create(req: &Req, body: Body) -> ApiResult {
    let bytes = read_body(body).await?;
    let raw = parse_body(&req.headers, &bytes)?;
    let (obj, unknown) = decode_object(req, raw)?;
    let (code, stored) = create_object(req, obj).await?;
    Ok(with_warnings(render_one(req, code, &stored), &unknown, req))
}

/// The create pipeline after decoding: admission, prepare, validate, store.
pub async fn create_object(req: &Req, obj: Value) -> Result<(StatusCode, Value), ApiError> {
    admit_namespace(req).await?;
    let generate = meta::name(&obj).is_empty() && !meta::generate_name(&obj).is_empty();
    let ctx = context(req);
    for _ in 0..RETRIES {
        let mut candidate = obj.clone();
        if generate {
            let prefix = meta::generate_name(&candidate).to_string();
            meta::set_meta(&mut candidate, "name", lifecycle::generated_name(&prefix));
        }
        lifecycle::prepare_create(req.def, &mut candidate, &req.info.namespace);
        req.def.hooks.prepare_create(&mut candidate, &ctx);
        if req.def.group.is_empty() && req.def.plural == "pods" {
            crate::admission::default_toleration_seconds(
                &mut candidate,
                req.app.config.default_toleration_seconds,
            );
            admit_priority(req, &mut candidate)?;
        }
        let mut errs = lifecycle::validate_metadata(req.def, &candidate);
        if errs.is_empty() {
            errs.extend(req.def.hooks.validate(&candidate, &ctx));
        }
        let name = meta::name(&candidate).to_string();
        invalid(req, &name, errs)?;
        if req.dry_run() {
            return Ok((StatusCode::CREATED, candidate));
        }
        let key = req.key(&name);
        let claims = req.def.hooks.claims(&candidate);
        match req.app.storage.create(&key, &candidate, &claims).await? {
            Ok(stored) => return Ok((StatusCode::CREATED, stored)),
            // A generated name or an allocated address collided: draw again.
            Err(WriteConflict::Object(_)) if generate => continue,
            Err(WriteConflict::Object(_)) => {
                return Err(ApiError::already_exists(&req.def.group_resource(), &name))
            }
            Err(WriteConflict::Claim) if req.def.hooks.allocates(&obj) => continue,
            Err(WriteConflict::Claim) => {
                let taken = taken_claims(req, &claims, &key).await?;
                return Err(ApiError::invalid(
                    &req.def.group_kind(),
                    &name,
                    &req.def.hooks.claim_conflict(&candidate, &taken),
                ));
            }
        }
    }
    Err(ApiError::internal(
        "could not pick a free name or address after several attempts; try again",
    ))
}

/// Which of `claims` another object holds (a claim's value is its holder's key).
async fn taken_claims(
    req: &Req,
    claims: &[String],
    own_key: &str,
) -> Result<Vec<String>, ApiError> {
    let mut taken = Vec::new();
    for claim in claims {
        if let Some(holder) = req
            .app
            .storage
            .store
            .get(claim.as_bytes())
            .await
            .map_err(crate::storage::store_error)?
        {
            if holder.value.as_ref() != own_key.as_bytes() {
                taken.push(claim.clone());
            }
        }
    }
    Ok(taken)
}

fn scope(req: &Req) -> UpdateScope {
    match req.info.subresource.as_str() {
        "status" | "approval" => UpdateScope::Status,
        _ => UpdateScope::Main,
    }
}

pub async fn update(req: &Req, body: Body) -> ApiResult {
    let bytes = read_body(body).await?;
    let raw = parse_body(&req.headers, &bytes)?;
    let (obj, unknown) = decode_object(req, raw)?;
    let body_name = meta::name(&obj);
    if !body_name.is_empty() && body_name != req.info.name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({})",
            req.info.name
        ))
        .into());
    }
    let precondition = meta::resource_version(&obj).to_string();
    let stored = write_with(
        req,
        |_current| Ok(obj.clone()),
        (!precondition.is_empty()).then_some(precondition),
    )
    .await?;
    Ok(with_warnings(
        render_one(req, StatusCode::OK, &stored),
        &unknown,
        req,
    ))
}

/// Reads the current object, derives the new one with `change`, and writes it guarded by
/// the read revision; retries on a lost race unless the client pinned `precondition`.
pub async fn write_with(
    req: &Req,
    change: impl Fn(&Value) -> Result<Value, ApiError>,
    precondition: Option<String>,
) -> Result<Value, ApiError> {
    let key = req.key(&req.info.name);
    let gr = req.def.group_resource();
    let ctx = context(req);
    for _ in 0..RETRIES {
        let current = req
            .app
            .storage
            .get(&key)
            .await?
            .ok_or_else(|| ApiError::not_found(&gr, &req.info.name))?;
        let current_rv = meta::resource_version(&current).to_string();
        if let Some(want) = &precondition {
            if *want != current_rv {
                return Err(ApiError::stale(&gr, &req.info.name));
            }
        }
        let mut new = change(&current)?;
        if req.info.subresource == "finalize" {
            // /finalize changes only spec.finalizers.
            let finalizers = new
                .pointer("/spec/finalizers")
                .cloned()
                .unwrap_or(json!([]));
            new = current.clone();
            new["spec"]["finalizers"] = finalizers;
        } else {
            lifecycle::prepare_update(req.def, &mut new, &current, scope(req));
            if scope(req) == UpdateScope::Main {
                req.def.hooks.prepare_update(&mut new, &current);
            }
        }
        let mut errs = lifecycle::validate_metadata(req.def, &new);
        if errs.is_empty() {
            errs.extend(req.def.hooks.validate_update(&new, &current, &ctx));
        }
        invalid(req, &req.info.name, errs)?;
        if lifecycle::unchanged(&new, &current) && !req.app.storage.stale(&key).await {
            return Ok(current);
        }
        if req.dry_run() {
            return Ok(new);
        }
        let expected: i64 = current_rv.parse().unwrap_or(0);
        let old_claims = req.def.hooks.claims(&current);
        let new_claims = req.def.hooks.claims(&new);
        let add: Vec<String> = new_claims
            .iter()
            .filter(|c| !old_claims.contains(c))
            .cloned()
            .collect();
        let drop: Vec<String> = old_claims
            .iter()
            .filter(|c| !new_claims.contains(c))
            .cloned()
            .collect();
        // The last finalizer gone from an object being deleted: the delete completes now.
        if lifecycle::finalized(req.def, &new) {
            match req.app.storage.delete(&key, expected, &old_claims).await? {
                Ok(()) => return Ok(new),
                Err(_) if precondition.is_none() => continue,
                Err(_) => return Err(ApiError::stale(&gr, &req.info.name)),
            }
        }
        match req
            .app
            .storage
            .update(&key, &new, expected, &add, &drop)
            .await?
        {
            Ok(stored) => return Ok(stored),
            Err(WriteConflict::Object(None)) => {
                return Err(ApiError::not_found(&gr, &req.info.name))
            }
            Err(WriteConflict::Object(Some(_))) if precondition.is_none() => continue,
            Err(WriteConflict::Object(Some(_))) => {
                return Err(ApiError::stale(&gr, &req.info.name))
            }
            Err(WriteConflict::Claim) => {
                let taken = taken_claims(req, &add, &key).await?;
                return Err(ApiError::invalid(
                    &req.def.group_kind(),
                    &req.info.name,
                    &req.def.hooks.claim_conflict(&new, &taken),
                ));
            }
        }
    }
    Err(ApiError::conflict(
        &gr,
        &req.info.name,
        "too many concurrent writers; try again",
    ))
}

pub async fn patch(req: &Req, body: Body) -> ApiResult {
    let bytes = read_body(body).await?;
    let content_type = req
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let kind = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let patch_body: Value = if kind == "application/apply-patch+yaml" {
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| ApiError::bad_request("the apply patch is not valid UTF-8"))?;
        serde_saphyr::from_str(text)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?
    } else {
        serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad_request(format!("the patch is not valid JSON: {e}")))?
    };
    if kind == "application/apply-patch+yaml" {
        return apply(req, patch_body).await;
    }
    let patch_kind = kind.clone();
    let pinned = match &patch_body {
        Value::Object(_) => patch_body
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string),
        _ => None,
    };
    let stored = write_with(
        req,
        |current| {
            // The patch is written against the version the client uses.
            let current = req.def.from_storage(current.clone());
            let patched =
                crate::patch::apply_patch(&patch_kind, req.def.kind, &current, &patch_body)?;
            let (obj, _) = decode_object(req, patched)?;
            Ok(obj)
        },
        pinned,
    )
    .await?;
    Ok(render_one(req, StatusCode::OK, &stored))
}

/// Server-side apply: the applied configuration creates the object or is merged onto it
/// (strategic merge), with field ownership per manager in `managedFields` (see `ssa.rs`):
/// conflicts are a 409 unless `force=true`, and fields a manager stops applying go.
async fn apply(req: &Req, config: Value) -> ApiResult {
    if req.param("fieldManager").is_none() {
        return Err(ApiError::invalid(
            &skiff_api::GroupKind::new("meta.k8s.io", "PatchOptions"),
            "",
            &FieldErrors(vec![skiff_api::FieldError::required(
                "fieldManager",
                "is required for apply patch",
            )]),
        )
        .into());
    }
    let manager = req.param("fieldManager").unwrap_or_default().to_string();
    let force = req.param("force") == Some("true");
    let now = lifecycle::now_rfc3339();
    let (kind, api_version) = (req.def.kind, req.def.api_version());
    let key = req.key(&req.info.name);
    if req.app.storage.get(&key).await?.is_none() {
        let mut obj = config.clone();
        crate::ssa::record(None, &mut obj, &config, &manager, kind, &api_version, &now);
        let (obj, unknown) = decode_object(req, obj)?;
        let (code, stored) = create_object(req, obj).await?;
        return Ok(with_warnings(render_one(req, code, &stored), &unknown, req));
    }
    let stored = write_with(
        req,
        |current| {
            // The applied configuration is in the version the client uses.
            let current = req.def.from_storage(current.clone());
            if !force {
                let conflicts = crate::ssa::conflicts(&current, &config, &manager, kind);
                if !conflicts.is_empty() {
                    return Err(crate::ssa::conflict_error(
                        &req.def.group_resource(),
                        &req.info.name,
                        &conflicts,
                    ));
                }
            }
            let mut merged = crate::patch::apply_patch(
                "application/strategic-merge-patch+json",
                req.def.kind,
                &current,
                &config,
            )?;
            crate::ssa::record(
                Some(&current),
                &mut merged,
                &config,
                &manager,
                kind,
                &api_version,
                &now,
            );
            Ok(decode_object(req, merged)?.0)
        },
        None,
    )
    .await?;
    Ok(render_one(req, StatusCode::OK, &stored))
}

/// DeleteOptions from the body (if any) and the query.
struct DeleteOptions {
    grace: Option<i64>,
    propagation: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
}

fn delete_options(req: &Req, body: &[u8]) -> Result<DeleteOptions, ApiError> {
    // Typed Go clients send DeleteOptions as protobuf; parse_body reads every format.
    let opts: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        parse_body(&req.headers, body).map_err(|mut e| {
            e.message = format!("DeleteOptions: {}", e.message);
            e
        })?
    };
    let grace = opts["gracePeriodSeconds"]
        .as_i64()
        .or_else(|| req.param("gracePeriodSeconds").and_then(|g| g.parse().ok()));
    let mut propagation = opts["propagationPolicy"]
        .as_str()
        .or(req.param("propagationPolicy"))
        .map(str::to_string);
    if opts["orphanDependents"] == json!(true) || req.param("orphanDependents") == Some("true") {
        propagation = Some("Orphan".into());
    }
    if let Some(p) = &propagation {
        if !matches!(p.as_str(), "Orphan" | "Background" | "Foreground") {
            return Err(ApiError::invalid(
                &skiff_api::GroupKind::new("meta.k8s.io", "DeleteOptions"),
                "",
                &FieldErrors(vec![skiff_api::FieldError::not_supported(
                    "propagationPolicy",
                    &json!(p),
                    &["Foreground", "Background", "Orphan"],
                )]),
            ));
        }
    }
    Ok(DeleteOptions {
        grace,
        propagation,
        uid: opts
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string),
        resource_version: opts
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

pub async fn delete(req: &Req, body: Body) -> ApiResult {
    let bytes = read_body(body).await?;
    let opts = delete_options(req, &bytes)?;
    let obj = delete_one(req, &req.info.name, &opts).await?;
    Ok(render_one(req, StatusCode::OK, &obj))
}

async fn delete_one(req: &Req, name: &str, opts: &DeleteOptions) -> Result<Value, ApiError> {
    let key = req.key(name);
    let gr = req.def.group_resource();
    for _ in 0..RETRIES {
        let current = req
            .app
            .storage
            .get(&key)
            .await?
            .ok_or_else(|| ApiError::not_found(&gr, name))?;
        if let Some(uid) = &opts.uid {
            if uid != meta::uid(&current) {
                return Err(ApiError::conflict(
                    &gr,
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        meta::uid(&current)
                    ),
                ));
            }
        }
        let rv = meta::resource_version(&current).to_string();
        if let Some(want) = &opts.resource_version {
            if *want != rv {
                return Err(ApiError::conflict(&gr, name, &format!("Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {rv}")));
            }
        }
        if req.dry_run() {
            return Ok(current);
        }
        let expected: i64 = rv.parse().unwrap_or(0);
        match lifecycle::plan_delete(req.def, &current, opts.grace, opts.propagation.as_deref()) {
            DeletePlan::Now => {
                let claims = req.def.hooks.claims(&current);
                match req.app.storage.delete(&key, expected, &claims).await? {
                    Ok(()) => return Ok(current),
                    Err(WriteConflict::Object(None)) => return Err(ApiError::not_found(&gr, name)),
                    Err(_) => continue,
                }
            }
            // Marked, but nothing is left to wait for (e.g. a namespace whose
            // spec.finalizers are already empty): gone at once, as upstream.
            DeletePlan::Mark(marked) if lifecycle::finalized(req.def, &marked) => {
                let claims = req.def.hooks.claims(&current);
                match req.app.storage.delete(&key, expected, &claims).await? {
                    Ok(()) => return Ok(marked),
                    Err(WriteConflict::Object(None)) => return Err(ApiError::not_found(&gr, name)),
                    Err(_) => continue,
                }
            }
            DeletePlan::Mark(marked) => {
                if marked == current {
                    return Ok(current);
                }
                match req
                    .app
                    .storage
                    .update(&key, &marked, expected, &[], &[])
                    .await?
                {
                    Ok(stored) => return Ok(stored),
                    Err(WriteConflict::Object(None)) => return Err(ApiError::not_found(&gr, name)),
                    Err(_) => continue,
                }
            }
        }
    }
    Err(ApiError::conflict(
        &gr,
        name,
        "too many concurrent writers; try again",
    ))
}

pub async fn delete_collection(req: &Req, body: Body) -> ApiResult {
    let bytes = read_body(body).await?;
    let opts = delete_options(req, &bytes)?;
    let filter = super::read::filter(req)?;
    req.app.cache.sync().await?;
    let cache = req
        .app
        .cache
        .resource(req.def)
        .ok_or_else(ApiError::path_not_found)?;
    let (objects, revision) = cache.list(&filter);
    let mut deleted = Vec::with_capacity(objects.len());
    for obj in objects {
        let name = obj.name.clone();
        match delete_one(req, &name, &opts).await {
            Ok(v) => deleted.push(v),
            // Gone meanwhile: that is what was asked.
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(super::read::render_list(
        req,
        super::read::Items::Values(deleted),
        revision,
        None,
        None,
    ))
}
