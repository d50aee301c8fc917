//! OpenAPI v3 documents of custom resources: one per served custom group-version, built
//! on request from the CRDs' schemas (they change at runtime, and are small), with the
//! same operations as built-in kinds — so `kubectl explain` describes custom kinds and
//! kubectl finds the `fieldValidation` parameter that makes it validate on the server.

use serde_json::{json, Map, Value};

use super::paths::{self, Form};
use super::schemas::{self, V2_PREFIX};
use super::{gv_path, info, security_scheme, Served, V3_DOCS};
use crate::resources::ResourceDef;

/// Upstream's definition name of a custom kind: the group reversed, version, kind
/// (`com.example.v1.Widget`).
fn definition_name(def: &ResourceDef) -> String {
    let mut parts: Vec<&str> = def.group.split('.').collect();
    parts.reverse();
    format!("{}.{}.{}", parts.join("."), def.version, def.kind)
}

/// The kind's schema: the CRD's, with `apiVersion`, `kind` and `metadata` described as
/// upstream adds them, and its group-version-kind.
fn kind_schema(def: &ResourceDef) -> Value {
    let mut schema = def
        .hooks
        .openapi_schema()
        .cloned()
        .unwrap_or(json!({"type": "object"}));
    if !schema.is_object() {
        schema = json!({"type": "object"});
    }
    let props = schema
        .as_object_mut()
        .map(|m| m.entry("properties").or_insert_with(|| json!({})));
    if let Some(Value::Object(props)) = props {
        props.insert("apiVersion".into(), json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources"}));
        props.insert("kind".into(), json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"}));
        props.insert("metadata".into(), json!({"$ref": format!("{V2_PREFIX}{}", schemas::object_meta_name()), "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"}));
    }
    schema["x-kubernetes-group-version-kind"] =
        json!([{"group": def.group, "kind": def.kind, "version": def.version}]);
    schema
}

fn list_schema(def: &ResourceDef, item: &str) -> Value {
    json!({
        "description": format!("{}List is a list of {}", def.kind, def.kind),
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "items": {"type": "array", "items": {"$ref": format!("{V2_PREFIX}{item}")},
                      "description": format!("List of {}. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md", def.plural)},
            "metadata": {"$ref": format!("{V2_PREFIX}{}", schemas::list_meta_name()), "description": "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"},
        },
        "x-kubernetes-group-version-kind": [{"group": def.group, "kind": format!("{}List", def.kind), "version": def.version}],
    })
}

/// A served document shares its bytes (reference counted), so this copies no content.
fn copy(doc: &Served) -> Served {
    Served {
        bytes: doc.bytes.clone(),
        hash: doc.hash.clone(),
        content_type: doc.content_type,
    }
}

fn document(defs: &[&ResourceDef]) -> Served {
    let named: Vec<(&ResourceDef, String)> =
        defs.iter().map(|d| (*d, definition_name(d))).collect();
    let sub = paths::subresource_kinds(defs);
    let mut components: Map<String, Value> = schemas::definitions(&sub, &[]);
    for (def, name) in &named {
        components.insert(name.clone(), kind_schema(def));
        components.insert(format!("{name}List"), list_schema(def, name));
    }
    schemas::into_v3(&mut components);
    let mut paths = paths::paths_named(Form::V3, &named);
    // No strategic merge for custom resources (upstream refuses it with 415): kubectl
    // reads the PATCH operation's media types to choose a JSON merge patch instead.
    for item in paths.values_mut() {
        if let Some(Value::Object(content)) = item.pointer_mut("/patch/requestBody/content") {
            content.remove("application/strategic-merge-patch+json");
        }
    }
    let doc = json!({
        "openapi": "3.0.0",
        "info": info(),
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": security_scheme()},
        "security": [{"BearerToken": []}],
    });
    Served::new(&doc)
}

/// The custom group-versions' paths (`apis/<group>/<version>`) and their documents.
fn documents(custom: &[&'static ResourceDef]) -> Vec<(String, Served)> {
    let mut gvs: Vec<(&str, &str)> = Vec::new();
    for d in custom {
        if !gvs.contains(&(d.group, d.version)) {
            gvs.push((d.group, d.version));
        }
    }
    gvs.into_iter()
        .map(|(g, v)| {
            let defs: Vec<&ResourceDef> = custom
                .iter()
                .copied()
                .filter(|d| d.group == g && d.version == v)
                .collect();
            (gv_path(g, v), document(&defs))
        })
        .collect()
}

/// `/openapi/v3`: the built-in group-versions and the custom ones.
pub fn v3_index_with(custom: &[&'static ResourceDef]) -> Served {
    if custom.is_empty() {
        return super::v3_index()
            .map(copy)
            .unwrap_or_else(|| Served::new(&json!({})));
    }
    let mut paths: Map<String, Value> = Map::new();
    let builtin = V3_DOCS
        .documents
        .iter()
        .map(|(p, d)| (p.clone(), d.hash.clone()));
    let custom = documents(custom).into_iter().map(|(p, d)| (p, d.hash));
    for (path, hash) in builtin.chain(custom) {
        let url = format!("/openapi/v3/{path}?hash={hash}");
        paths
            .entry(path)
            .or_insert_with(|| json!({"serverRelativeURL": url}));
    }
    Served::new(&json!({"paths": paths}))
}

/// `/openapi/v3/<path>`: a built-in group-version's document, else a custom one's.
pub fn v3_document_with(path: &str, custom: &[&'static ResourceDef]) -> Option<Served> {
    if let Some(doc) = super::v3_group_version(path) {
        return Some(copy(doc));
    }
    documents(custom)
        .into_iter()
        .find(|(p, _)| p == path)
        .map(|(_, d)| d)
}
