//! The CRD controller inside the API server (upstream's naming, establishing and
//! finalizing controllers in one loop): it follows CustomResourceDefinitions through the
//! watch cache and, for each,
//!
//! 1. decides its names: `status.acceptedNames` and `NamesAccepted` (False with upstream's
//!    `PluralConflict`/`SingularConflict`/`ShortNamesConflict`/`KindConflict`/
//!    `ListKindConflict` reasons when another CRD of the group already holds a name);
//! 2. serves it (registry) and only then reports `Established`, so a client that sees the
//!    condition can use the API at once;
//! 3. when it is deleted: reports `Terminating`, deletes every object of it (objects with
//!    finalizers are marked and waited for), then drops the
//!    `customresourcecleanup.apiextensions.k8s.io` finalizer so the CRD goes, and stops
//!    serving it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use skiff_api::meta;
use skiff_store::RangeRequest;
use tokio::sync::broadcast::error::RecvError;

use crate::storage::{decode, object_key};
use crate::watchcache::{EventType, Filter};
use crate::App;

pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

fn crd_def() -> &'static crate::resources::ResourceDef {
    crate::resources::find("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        .expect("CRDs are a built-in resource")
}

/// Runs until the process ends.
pub async fn run(app: Arc<App>) {
    while !app.cache.is_ready() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cleaning: Arc<Mutex<HashSet<String>>> = Arc::default();
    loop {
        let Some(cache) = app.cache.resource(crd_def()) else {
            return;
        };
        let Ok(mut sub) = cache.subscribe(None, true) else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        for event in std::mem::take(&mut sub.initial) {
            handle(&app, &cleaning, event.kind, event.object.value()).await;
        }
        app.crds.mark_synced();
        loop {
            match sub.live.recv().await {
                Ok(event) if event.rv <= sub.revision => {}
                Ok(event) => handle(&app, &cleaning, event.kind, event.object.value()).await,
                // Fell behind or the cache re-listed: start over from the current state.
                Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => break,
            }
        }
        // Forget CRDs that vanished while we were not listening.
        let names: HashSet<String> = cache
            .list(&Filter::default())
            .0
            .iter()
            .map(|o| o.name.clone())
            .collect();
        for def in app.crds.all() {
            let crd_name = format!("{}.{}", def.plural, def.group);
            if !names.contains(&crd_name) {
                app.crds.remove(&crd_name);
            }
        }
    }
}

async fn handle(
    app: &Arc<App>,
    cleaning: &Arc<Mutex<HashSet<String>>>,
    kind: EventType,
    crd: Value,
) {
    let name = meta::name(&crd).to_string();
    if kind == EventType::Deleted {
        app.crds.remove(&name);
        if let Some((plural, group)) = name.split_once('.') {
            app.cache.end_custom_watches(&format!("{group}/{plural}"));
        }
        return;
    }
    if meta::deletion_timestamp(&crd).is_some() {
        app.crds.serve(&crd, true);
        let _ = write_status(app, &crd, terminating_status(&crd)).await;
        let start = cleaning
            .lock()
            .map(|mut set| set.insert(name.clone()))
            .unwrap_or(false);
        if start {
            let (app, cleaning) = (app.clone(), cleaning.clone());
            tokio::spawn(async move {
                cleanup(&app, &name).await;
                if let Ok(mut set) = cleaning.lock() {
                    set.remove(&name);
                }
            });
        }
        return;
    }
    let others: Vec<Value> = app
        .cache
        .resource(crd_def())
        .map(|c| c.list(&Filter::default()).0)
        .unwrap_or_default()
        .iter()
        .map(|o| o.value())
        .filter(|o| meta::name(o) != name)
        .collect();
    let status = names_status(&crd, &others);
    let accepted = condition_true(&status, "NamesAccepted");
    if accepted {
        app.crds.serve(&crd, false);
    }
    let _ = write_status(app, &crd, status).await;
}

fn condition_true(status: &Value, kind: &str) -> bool {
    status
        .get("conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == kind && c["status"] == "True")
}

/// Replaces (or adds) a condition, keeping its transition time if the status is unchanged.
fn set_condition(status: &mut Value, cond: Value) {
    if !status["conditions"].is_array() {
        status["conditions"] = json!([]);
    }
    let Some(conds) = status["conditions"].as_array_mut() else {
        return;
    };
    let mut cond = cond;
    match conds.iter_mut().find(|c| c["type"] == cond["type"]) {
        Some(old) => {
            cond["lastTransitionTime"] = if old["status"] == cond["status"] {
                old["lastTransitionTime"].clone()
            } else {
                json!(crate::lifecycle::now_rfc3339())
            };
            *old = cond;
        }
        None => {
            cond["lastTransitionTime"] = json!(crate::lifecycle::now_rfc3339());
            conds.push(cond);
        }
    }
}

fn cond(kind: &str, status: &str, reason: &str, message: &str) -> Value {
    json!({"type": kind, "status": status, "reason": reason, "message": message})
}

/// The status the naming and establishing controllers give a CRD, given the other CRDs.
pub fn names_status(crd: &Value, others: &[Value]) -> Value {
    let group = crd.pointer("/spec/group").cloned().unwrap_or(Value::Null);
    let requested = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
    let mut status = crd.get("status").cloned().unwrap_or(json!({}));
    if !status.is_object() {
        status = json!({});
    }
    let mut accepted = status
        .get("acceptedNames")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or(json!({}));
    // Names the other CRDs of the group hold (accepted, as upstream compares).
    let mut taken_plural_singular = Vec::new();
    let mut taken_short = Vec::new();
    let mut taken_kinds = Vec::new();
    for o in others
        .iter()
        .filter(|o| o.pointer("/spec/group") == Some(&group))
    {
        let names = o
            .pointer("/status/acceptedNames")
            .cloned()
            .unwrap_or(json!({}));
        for f in ["plural", "singular"] {
            if let Some(s) = names.get(f).and_then(Value::as_str) {
                taken_plural_singular.push(s.to_string());
            }
        }
        for s in names
            .get("shortNames")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            taken_short.push(s.to_string());
        }
        for f in ["kind", "listKind"] {
            if let Some(s) = names.get(f).and_then(Value::as_str) {
                taken_kinds.push(s.to_string());
            }
        }
    }
    let mut problem: Option<(&str, String)> = None;
    let req_str = |f: &str| {
        requested
            .get(f)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let mut check = |field: &str, reason: &'static str, taken: &[String]| {
        let want = req_str(field);
        if taken.contains(&want) {
            problem.get_or_insert((reason, format!("{want:?} is already in use")));
        } else {
            accepted[field] = json!(want);
        }
    };
    check("plural", "PluralConflict", &taken_plural_singular);
    check("singular", "SingularConflict", &taken_plural_singular);
    let shorts: Vec<String> = requested
        .get("shortNames")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    match shorts
        .iter()
        .find(|s| taken_short.contains(s) || taken_plural_singular.contains(s))
    {
        Some(s) => {
            problem.get_or_insert(("ShortNamesConflict", format!("{s:?} is already in use")));
        }
        None => accepted["shortNames"] = json!(shorts),
    }
    let mut check = |field: &str, reason: &'static str| {
        let want = req_str(field);
        if taken_kinds.contains(&want) {
            problem.get_or_insert((reason, format!("{want:?} is already in use")));
        } else {
            accepted[field] = json!(want);
        }
    };
    check("kind", "KindConflict");
    check("listKind", "ListKindConflict");
    if let Some(c) = requested.get("categories") {
        accepted["categories"] = c.clone();
    }
    if shorts.is_empty() {
        if let Some(m) = accepted.as_object_mut() {
            m.remove("shortNames");
        }
    }
    status["acceptedNames"] = accepted;
    match problem {
        Some((reason, message)) => {
            set_condition(
                &mut status,
                cond("NamesAccepted", "False", reason, &message),
            );
            if !condition_true(&status, "Established") {
                set_condition(
                    &mut status,
                    cond(
                        "Established",
                        "False",
                        "NotAccepted",
                        "not all names are accepted",
                    ),
                );
            }
        }
        None => {
            set_condition(
                &mut status,
                cond("NamesAccepted", "True", "NoConflicts", "no conflicts found"),
            );
            set_condition(
                &mut status,
                cond(
                    "Established",
                    "True",
                    "InitialNamesAccepted",
                    "the initial names have been accepted",
                ),
            );
        }
    }
    status
}

fn terminating_status(crd: &Value) -> Value {
    let mut status = crd
        .get("status")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or(json!({}));
    set_condition(
        &mut status,
        cond(
            "Terminating",
            "True",
            "InstanceDeletionInProgress",
            "CustomResource deletion is in progress",
        ),
    );
    status
}

/// Writes a CRD's status if it changed (a lost race is retried by the next event).
async fn write_status(app: &App, crd: &Value, status: Value) -> Result<(), skiff_api::ApiError> {
    if crd.get("status") == Some(&status) {
        return Ok(());
    }
    let mut new = crd.clone();
    new["status"] = status;
    let key = object_key(crd_def(), "", meta::name(crd));
    let expected: i64 = meta::resource_version(crd).parse().unwrap_or(0);
    let _ = app.storage.update(&key, &new, expected, &[], &[]).await?;
    Ok(())
}

/// Deletes every object of a terminating CRD, then lets the CRD go.
async fn cleanup(app: &App, crd_name: &str) {
    let Some((plural, group)) = crd_name.split_once('.') else {
        return;
    };
    let prefix = format!("/registry/{group}/{plural}/");
    loop {
        match delete_objects(app, &prefix).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(err) => tracing::warn!(%err, crd = crd_name, "deleting custom resources"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // All gone: drop our finalizer; with none left the CRD itself is deleted.
    let key = object_key(crd_def(), "", crd_name);
    for _ in 0..20 {
        let Ok(Some(crd)) = app.storage.get(&key).await else {
            return;
        };
        let mut new = crd.clone();
        let finalizers: Vec<String> = meta::finalizers(&crd)
            .into_iter()
            .filter(|f| f != CLEANUP_FINALIZER)
            .collect();
        let expected: i64 = meta::resource_version(&crd).parse().unwrap_or(0);
        let done = if finalizers.is_empty() {
            app.storage
                .delete(&key, expected, &[])
                .await
                .map(|r| r.is_ok())
        } else {
            meta::set_meta(&mut new, "finalizers", json!(finalizers));
            set_condition(
                &mut new["status"],
                cond(
                    "Terminating",
                    "False",
                    "InstanceDeletionCompleted",
                    "removed all instances",
                ),
            );
            app.storage
                .update(&key, &new, expected, &[], &[])
                .await
                .map(|r| r.is_ok())
        };
        if matches!(done, Ok(true)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One pass over the objects under `prefix`: deletes those without finalizers, marks the
/// others for deletion. Returns how many objects were there.
async fn delete_objects(app: &App, prefix: &str) -> Result<usize, skiff_api::ApiError> {
    let resp = app
        .storage
        .store
        .range(RangeRequest::prefix(prefix))
        .await
        .map_err(crate::storage::store_error)?;
    let count = resp.kvs.len();
    for kv in &resp.kvs {
        let key = String::from_utf8_lossy(&kv.key).into_owned();
        let obj = decode(kv)?;
        if meta::finalizers(&obj).is_empty() {
            let _ = app.storage.delete(&key, kv.mod_revision, &[]).await?;
        } else if meta::deletion_timestamp(&obj).is_none() {
            let mut marked = obj.clone();
            meta::set_meta(
                &mut marked,
                "deletionTimestamp",
                crate::lifecycle::now_rfc3339(),
            );
            meta::set_meta(&mut marked, "deletionGracePeriodSeconds", 0);
            let _ = app
                .storage
                .update(&key, &marked, kv.mod_revision, &[], &[])
                .await?;
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd(name: &str, plural: &str, kind: &str, short: &[&str]) -> Value {
        json!({"metadata": {"name": format!("{plural}.example.com")}, "spec": {
            "group": "example.com",
            "names": {"plural": plural, "singular": name, "kind": kind, "listKind": format!("{kind}List"), "shortNames": short}}})
    }

    #[test]
    fn free_names_are_accepted_and_established() {
        let status = names_status(&crd("widget", "widgets", "Widget", &["wd"]), &[]);
        assert_eq!(status["acceptedNames"]["plural"], "widgets");
        assert_eq!(status["acceptedNames"]["shortNames"], json!(["wd"]));
        assert!(condition_true(&status, "NamesAccepted"));
        assert!(condition_true(&status, "Established"));
    }

    #[test]
    fn names_another_crd_holds_are_refused_with_upstream_reasons() {
        let mut existing = crd("widget", "widgets", "Widget", &["wd"]);
        existing["status"] = names_status(&existing, &[]);
        let cases = [
            (
                crd("gadget", "gadgets", "Widget", &[]),
                "KindConflict",
                "\"Widget\" is already in use",
            ),
            (
                crd("gadget", "gadgets", "Gadget", &["wd"]),
                "ShortNamesConflict",
                "\"wd\" is already in use",
            ),
            (
                crd("widget", "gadgets", "Gadget", &[]),
                "SingularConflict",
                "\"widget\" is already in use",
            ),
        ];
        for (new, reason, message) in cases {
            let status = names_status(&new, std::slice::from_ref(&existing));
            let c = status["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == "NamesAccepted")
                .unwrap()
                .clone();
            assert_eq!(c["status"], "False");
            assert_eq!(c["reason"], reason);
            assert_eq!(c["message"], message);
            assert!(!condition_true(&status, "Established"));
        }
    }
}
