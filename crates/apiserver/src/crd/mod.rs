//! Custom resources: what a CustomResourceDefinition turns into once established.
//!
//! - [`Registry`]: the resource definitions added at runtime, consulted after the static
//!   table (`resources::RESOURCES`) by request routing, discovery and OpenAPI.
//! - [`controller`]: follows the CRDs in the watch cache, decides their names and
//!   conditions (`NamesAccepted`, `Established`, `Terminating`), keeps the registry in
//!   step, and deletes a deleted CRD's objects before letting the CRD go.
//! - [`schema`], [`columns`], [`hooks`]: the per-version strategy (structural schema
//!   validation, defaulting, pruning; printer columns; scale paths).
//!
//! Assumptions: definitions are leaked (`&'static`, as the static table's are) once per
//! distinct CRD spec; CRDs change rarely, so the leak is bounded by the number of CRD
//! edits a server sees.

mod columns;
pub mod controller;
mod hooks;
pub mod schema;

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock, RwLock};

use serde_json::{json, Value};

use crate::resources::{Conversion, Plain, ResourceDef, ScalePaths, Typed};

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

fn leak_list(items: &[&str]) -> &'static [&'static str] {
    Box::leak(
        items
            .iter()
            .map(|s| leak(s))
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    )
}

/// The definition the watch cache indexes custom objects with before (or without) their
/// CRD: no selectable fields beyond name and namespace.
pub fn cache_def() -> &'static ResourceDef {
    static DEF: LazyLock<ResourceDef> = LazyLock::new(|| ResourceDef {
        group: "",
        version: "",
        plural: "",
        singular: "",
        kind: "",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
        codec: Box::new(Typed::<Value>::new()),
        hooks: Box::new(Plain),
        generation: true,
        conversion: None,
        storage_resource: "",
    });
    &DEF
}

/// Kubernetes' version order (`v2 > v1 > v1beta2 > v1beta1 > v1alpha1 > other`): the
/// first is the preferred version in discovery.
pub fn version_rank(v: &str) -> (u8, u64, u64, String) {
    let parse = || -> Option<(u8, u64, u64)> {
        let rest = v.strip_prefix('v')?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let major: u64 = digits.parse().ok()?;
        let tail = &rest[digits.len()..];
        if tail.is_empty() {
            return Some((3, major, 0));
        }
        for (word, rank) in [("beta", 2u8), ("alpha", 1u8)] {
            if let Some(n) = tail.strip_prefix(word) {
                return Some((rank, major, n.parse().ok()?));
            }
        }
        None
    };
    match parse() {
        Some((rank, major, minor)) => (rank, major, minor, String::new()),
        None => (0, 0, 0, v.to_string()),
    }
}

fn sort_versions(versions: &mut [Value]) {
    versions.sort_by(|a, b| {
        let name = |v: &Value| {
            v.get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let (ra, rb) = (version_rank(&name(a)), version_rank(&name(b)));
        // Higher rank first; among non-matching versions, alphabetical.
        (rb.0, rb.1, rb.2)
            .cmp(&(ra.0, ra.1, ra.2))
            .then_with(|| ra.3.cmp(&rb.3))
    });
}

fn str_of<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// A `.spec.replicas`-style path as a JSON pointer.
fn pointer_of(path: &str) -> String {
    path.trim_start_matches('.')
        .split('.')
        .fold(String::new(), |mut p, seg| {
            p.push('/');
            p.push_str(seg);
            p
        })
}

/// The served versions of a CRD as resource definitions (best version first).
pub fn definitions(crd: &Value, terminating: bool) -> Vec<ResourceDef> {
    let spec = crd.get("spec").cloned().unwrap_or(Value::Null);
    let group = leak(str_of(&spec, "/group"));
    let names = spec.get("names").cloned().unwrap_or(json!({}));
    let plural = leak(str_of(&names, "/plural"));
    let singular = str_of(&names, "/singular");
    let kind = leak(str_of(&names, "/kind"));
    let singular = leak(&if singular.is_empty() {
        kind.to_lowercase()
    } else {
        singular.to_string()
    });
    let list_of = |field: &str| -> Vec<&str> {
        names
            .get(field)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect()
    };
    let short_names = leak_list(&list_of("shortNames"));
    let categories = leak_list(&list_of("categories"));
    let namespaced = str_of(&spec, "/scope") != "Cluster";
    let storage_resource = leak(&format!("{group}/{plural}"));
    let mut versions: Vec<Value> = spec
        .get("versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    sort_versions(&mut versions);
    let Some(storage) = versions
        .iter()
        .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .map(|v| str_of(v, "/name").to_string())
    else {
        return Vec::new();
    };
    let storage_api_version = format!("{group}/{storage}");
    versions
        .iter()
        .filter(|v| v.get("served").and_then(Value::as_bool) == Some(true))
        .map(|v| {
            let version = leak(str_of(v, "/name"));
            let schema = Arc::new(v.pointer("/schema/openAPIV3Schema").cloned().unwrap_or(
                json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
            ));
            let mut subs = Vec::new();
            if v.pointer("/subresources/status")
                .is_some_and(Value::is_object)
            {
                subs.push("status");
            }
            let scale = v
                .pointer("/subresources/scale")
                .filter(|s| s.is_object())
                .map(|s| {
                    subs.push("scale");
                    let selector = str_of(s, "/labelSelectorPath");
                    ScalePaths {
                        spec_replicas: pointer_of(str_of(s, "/specReplicasPath")),
                        status_replicas: pointer_of(str_of(s, "/statusReplicasPath")),
                        selector: (!selector.is_empty()).then(|| pointer_of(selector)),
                        selector_is_string: true,
                    }
                });
            let this_api_version = format!("{group}/{version}");
            let to_storage = storage_api_version.clone();
            let read_schema = schema.clone();
            // Conversion strategy None: only apiVersion changes between versions. Every
            // version converts, so objects read from storage are pruned to this version's
            // schema and get its defaults, as upstream reads custom resources.
            let conversion = Conversion::new(
                move |mut obj| {
                    obj["apiVersion"] = json!(to_storage);
                    obj
                },
                move |mut obj| {
                    obj["apiVersion"] = json!(this_api_version);
                    schema::prune(&read_schema, &mut obj, &mut Vec::new());
                    schema::default(&read_schema, &mut obj);
                    obj
                },
            );
            ResourceDef {
                group,
                version,
                plural,
                singular,
                kind,
                namespaced,
                short_names,
                categories,
                subresources: leak_list(&subs),
                codec: Box::new(hooks::CustomCodec {
                    schema: schema.clone(),
                }),
                hooks: Box::new(hooks::CustomHooks::new(
                    schema,
                    columns::from_version(v),
                    scale,
                    terminating,
                )),
                generation: true,
                conversion: Some(conversion),
                storage_resource,
            }
        })
        .collect()
}

/// Checks of a CRD version beyond its schema: printer column paths and scale paths.
pub fn validate_version_extras(version: &Value, path: &str) -> skiff_api::FieldErrors {
    use skiff_api::FieldError;
    let mut errs = skiff_api::FieldErrors::default();
    let columns = version
        .get("additionalPrinterColumns")
        .and_then(Value::as_array);
    for (i, c) in columns.into_iter().flatten().enumerate() {
        let p = format!("{path}.additionalPrinterColumns[{i}]");
        let json_path = str_of(c, "/jsonPath");
        if json_path.is_empty() {
            errs.push(FieldError::required(format!("{p}.jsonPath"), ""));
        } else if !json_path.starts_with('.') || columns::parse_path(json_path).is_none() {
            errs.push(FieldError::invalid(
                format!("{p}.jsonPath"),
                &json!(json_path),
                "must be a simple json path starting with .",
            ));
        }
        const TYPES: &[&str] = &["integer", "number", "string", "boolean", "date"];
        let ty = str_of(c, "/type");
        if !TYPES.contains(&ty) {
            errs.push(FieldError::not_supported(
                format!("{p}.type"),
                &json!(ty),
                TYPES,
            ));
        }
    }
    if let Some(scale) = version
        .pointer("/subresources/scale")
        .filter(|s| s.is_object())
    {
        let p = format!("{path}.subresources.scale");
        for (field, under) in [
            ("specReplicasPath", ".spec"),
            ("statusReplicasPath", ".status"),
        ] {
            let value = str_of(scale, &format!("/{field}"));
            if value.is_empty() {
                errs.push(FieldError::required(format!("{p}.{field}"), ""));
            } else if !value.starts_with(&format!("{under}.")) {
                errs.push(FieldError::invalid(
                    format!("{p}.{field}"),
                    &json!(value),
                    format!("should be a json path under {under}"),
                ));
            }
        }
        let selector = str_of(scale, "/labelSelectorPath");
        if !selector.is_empty()
            && !selector.starts_with(".spec.")
            && !selector.starts_with(".status.")
        {
            errs.push(FieldError::invalid(
                format!("{p}.labelSelectorPath"),
                &json!(selector),
                "should be a json path under either .spec or .status",
            ));
        }
    }
    errs
}

struct Entry {
    fingerprint: String,
    defs: Vec<&'static ResourceDef>,
}

/// The custom resources being served, by CRD name.
#[derive(Default)]
pub struct Registry {
    entries: RwLock<BTreeMap<String, Entry>>,
    /// The controller has served every CRD that existed at start (upstream's
    /// `crd-informer-synced` readiness check): until then `/readyz` fails, so clients
    /// resuming after a restart do not meet 404s for resources that exist.
    synced: std::sync::atomic::AtomicBool,
}

impl Registry {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Entry>> {
        self.entries.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The served definition of `group/version` `plural`.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&'static ResourceDef> {
        self.read()
            .values()
            .flat_map(|e| e.defs.iter())
            .find(|d| d.group == group && d.version == version && d.plural == plural)
            .copied()
    }

    /// Every served definition, ordered by group and then by version preference.
    pub fn all(&self) -> Vec<&'static ResourceDef> {
        let mut out: Vec<&'static ResourceDef> = self
            .read()
            .values()
            .flat_map(|e| e.defs.iter().copied())
            .collect();
        out.sort_by(|a, b| {
            let (ra, rb) = (version_rank(a.version), version_rank(b.version));
            a.group
                .cmp(b.group)
                .then_with(|| (rb.0, rb.1, rb.2).cmp(&(ra.0, ra.1, ra.2)))
                .then_with(|| ra.3.cmp(&rb.3))
                .then_with(|| a.plural.cmp(b.plural))
        });
        out
    }

    /// Serves a CRD's versions (rebuilt only when what they are built from changed).
    pub fn serve(&self, crd: &Value, terminating: bool) {
        let name = skiff_api::meta::name(crd).to_string();
        let fingerprint = format!("{}|{terminating}", crd.get("spec").unwrap_or(&Value::Null));
        if self
            .read()
            .get(&name)
            .is_some_and(|e| e.fingerprint == fingerprint)
        {
            return;
        }
        let defs: Vec<&'static ResourceDef> = definitions(crd, terminating)
            .into_iter()
            .map(|d| &*Box::leak(Box::new(d)))
            .collect();
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        entries.insert(name, Entry { fingerprint, defs });
    }

    /// Stops serving a CRD's resources.
    pub fn remove(&self, crd_name: &str) {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        entries.remove(crd_name);
    }

    pub fn is_synced(&self) -> bool {
        self.synced.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn mark_synced(&self) {
        self.synced
            .store(true, std::sync::atomic::Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd() -> Value {
        json!({"metadata": {"name": "widgets.example.com"}, "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"], "categories": ["all"]},
            "versions": [
                {"name": "v1beta1", "served": true, "storage": false,
                 "schema": {"openAPIV3Schema": {"type": "object"}}},
                {"name": "v1", "served": true, "storage": true,
                 "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "properties": {"size": {"type": "integer", "default": 2}}}}}},
                 "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.size", "statusReplicasPath": ".status.size", "labelSelectorPath": ".status.selector"}}},
                {"name": "v0", "served": false, "storage": false}]}})
    }

    #[test]
    fn served_versions_become_definitions_best_first() {
        let defs = definitions(&crd(), false);
        let versions: Vec<&str> = defs.iter().map(|d| d.version).collect();
        assert_eq!(versions, ["v1", "v1beta1"]);
        let v1 = &defs[0];
        assert_eq!(v1.storage_prefix(), "/registry/example.com/widgets/");
        assert_eq!(v1.subresources, ["status", "scale"]);
        assert_eq!(v1.hooks.scale_paths().spec_replicas, "/spec/size");
        let beta = &defs[1];
        let stored = beta.to_storage(json!({"apiVersion": "example.com/v1beta1", "spec": {}}));
        assert_eq!(stored["apiVersion"], "example.com/v1");
        let read = v1.from_storage(json!({"apiVersion": "example.com/v1", "spec": {}}));
        assert_eq!(read["spec"]["size"], 2);
    }

    #[test]
    fn printer_columns_and_scale_paths_are_checked() {
        let v = json!({"name": "v1",
            "additionalPrinterColumns": [{"name": "A", "type": "string", "jsonPath": "spec.a"},
                                         {"name": "B", "type": "text", "jsonPath": ".spec.b"}],
            "subresources": {"scale": {"specReplicasPath": ".status.n", "statusReplicasPath": ".status.n", "labelSelectorPath": ".metadata.x"}}});
        let errs = validate_version_extras(&v, "spec.versions[0]").to_string();
        for want in [
            "spec.versions[0].additionalPrinterColumns[0].jsonPath: Invalid value: \"spec.a\": must be a simple json path starting with .",
            "spec.versions[0].additionalPrinterColumns[1].type: Unsupported value: \"text\"",
            "spec.versions[0].subresources.scale.specReplicasPath: Invalid value: \".status.n\": should be a json path under .spec",
            "spec.versions[0].subresources.scale.labelSelectorPath: Invalid value: \".metadata.x\": should be a json path under either .spec or .status",
        ] {
            assert!(errs.contains(want), "{want}\n not in {errs}");
        }
        assert!(validate_version_extras(&crd()["spec"]["versions"][1], "v").is_empty());
    }

    #[test]
    fn registry_finds_and_forgets() {
        let reg = Registry::default();
        reg.serve(&crd(), false);
        assert!(reg.find("example.com", "v1beta1", "widgets").is_some());
        assert!(reg.find("example.com", "v0", "widgets").is_none());
        assert_eq!(reg.all().len(), 2);
        reg.remove("widgets.example.com");
        assert!(reg.find("example.com", "v1", "widgets").is_none());
    }

    #[test]
    fn versions_rank_as_kubernetes_orders_them() {
        let mut vs = vec!["v1alpha1", "foo", "v2", "v1beta2", "v1", "v1beta1", "bar"];
        vs.sort_by(|a, b| {
            let (ra, rb) = (version_rank(a), version_rank(b));
            (rb.0, rb.1, rb.2)
                .cmp(&(ra.0, ra.1, ra.2))
                .then_with(|| ra.3.cmp(&rb.3))
        });
        assert_eq!(
            vs,
            ["v2", "v1", "v1beta2", "v1beta1", "v1alpha1", "bar", "foo"]
        );
    }
}
