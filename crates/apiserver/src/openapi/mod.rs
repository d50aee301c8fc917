//! OpenAPI documents: `/openapi/v2` (Swagger 2.0, every served kind) and `/openapi/v3`
//! (an index of group-versions, each linking to its own OpenAPI 3.0 document by
//! `?hash=`), shaped as upstream serves them so that kubectl's validation, `explain` and
//! client-side `apply` work unmodified.
//!
//! Custom resources get per-group-version v3 documents built from their CRDs' schemas
//! (`custom.rs`), listed in the index next to the built-in ones; the v2 document holds
//! built-in kinds only.
//!
//! Guarantees: each document is built once, on first request, and kept as serialized bytes
//! (they are large and asked for often). A v3 document's hash is the SHA-512 of its bytes,
//! so a client's cached copy is replaced exactly when the document changes.

mod custom;
mod paths;
mod proto;
mod schemas;

pub use custom::{v3_document_with, v3_index_with};

use std::collections::BTreeMap;
use std::sync::LazyLock;

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};
use serde_json::{json, Map, Value};
use skiff_api::ApiError;

use crate::http::{bytes_response, ErrorResponse};
use crate::resources::{ResourceDef, RESOURCES};
use paths::Form;
use schemas::KindSchema;

/// A document ready to send.
pub struct Served {
    bytes: Bytes,
    hash: String,
    content_type: &'static str,
}

impl Served {
    fn new(doc: &Value) -> Served {
        Served::from_bytes(
            serde_json::to_vec(doc).unwrap_or_default(),
            "application/json",
        )
    }

    fn from_bytes(bytes: Vec<u8>, content_type: &'static str) -> Served {
        let bytes = Bytes::from(bytes);
        let digest = ring::digest::digest(&ring::digest::SHA512, &bytes);
        let hash = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
        Served {
            bytes,
            hash,
            content_type,
        }
    }
}

/// The response for a document, or upstream's 404 when there is none.
pub fn respond(doc: Option<&Served>) -> Response {
    let Some(doc) = doc else {
        return ErrorResponse(ApiError::path_not_found()).into_response();
    };
    let mut resp = bytes_response(StatusCode::OK, doc.bytes.clone(), doc.content_type);
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", doc.hash)) {
        resp.headers_mut().insert(header::ETAG, etag);
    }
    resp
}

/// The served resources of a group-version (all when `None`) with their kinds' schemas.
fn served(gv: Option<(&str, &str)>) -> Vec<(&'static ResourceDef, &'static KindSchema)> {
    RESOURCES
        .iter()
        .filter(|r| gv.is_none_or(|(g, v)| r.group == g && r.version == v))
        .filter_map(|r| schemas::kind(r.group, r.version, r.kind).map(|k| (r, k)))
        .collect()
}

/// Definitions for `resources`: their kinds and lists, the kinds of their subresources,
/// and everything those refer to.
fn definitions(resources: &[(&ResourceDef, &'static KindSchema)]) -> Map<String, Value> {
    let kinds: Vec<&KindSchema> = resources.iter().map(|(_, k)| *k).collect();
    let defs: Vec<&ResourceDef> = resources.iter().map(|(r, _)| *r).collect();
    let sub = paths::subresource_kinds(&defs);
    schemas::definitions(&sub, &kinds)
}

fn info() -> Value {
    let version = crate::discovery::version()["gitVersion"].clone();
    json!({"title": "Kubernetes", "version": version})
}

fn security_scheme() -> Value {
    json!({
        "BearerToken": {
            "description": "Bearer Token authentication",
            "in": "header",
            "name": "authorization",
            "type": "apiKey",
        }
    })
}

/// The media type clients ask for the protobuf form of `/openapi/v2` by, and (without the
/// `@`, which Go's MIME parser rejects in a Content-Type) the one upstream answers with.
const V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
const V2_PROTOBUF_REPLY: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

struct V2 {
    json: Served,
    protobuf: Served,
}

fn build_v2() -> V2 {
    let resources = served(None);
    let doc = json!({
        "swagger": "2.0",
        "info": info(),
        "paths": paths::paths(Form::V2, &resources),
        "definitions": definitions(&resources),
        "securityDefinitions": security_scheme(),
        "security": [{"BearerToken": []}],
    });
    V2 {
        json: Served::new(&doc),
        protobuf: Served::from_bytes(proto::document(&doc), V2_PROTOBUF_REPLY),
    }
}

fn build_v3_document(group: &str, version: &str) -> Served {
    let resources = served(Some((group, version)));
    let mut defs = definitions(&resources);
    schemas::into_v3(&mut defs);
    let doc = json!({
        "openapi": "3.0.0",
        "info": info(),
        "paths": paths::paths(Form::V3, &resources),
        "components": {"schemas": defs, "securitySchemes": security_scheme()},
        "security": [{"BearerToken": []}],
    });
    Served::new(&doc)
}

/// `api/v1` for the core group, `apis/<group>/<version>` for the others.
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

struct V3 {
    index: Served,
    documents: BTreeMap<String, Served>,
}

fn build_v3() -> V3 {
    let mut documents = BTreeMap::new();
    for (group, version) in crate::resources::group_versions() {
        documents.insert(gv_path(group, version), build_v3_document(group, version));
    }
    let paths: Map<String, Value> = documents
        .iter()
        .map(|(path, doc)| {
            let url = format!("/openapi/v3/{path}?hash={}", doc.hash);
            (path.clone(), json!({"serverRelativeURL": url}))
        })
        .collect();
    V3 {
        index: Served::new(&json!({"paths": paths})),
        documents,
    }
}

static V2_DOCS: LazyLock<V2> = LazyLock::new(build_v2);
static V3_DOCS: LazyLock<V3> = LazyLock::new(build_v3);

/// `/openapi/v2`: protobuf when the client's `Accept` names it (kubectl always does, and
/// decodes the answer as protobuf whatever its type), JSON otherwise.
pub fn v2(accept: &str) -> Option<&'static Served> {
    if accept.contains(V2_PROTOBUF) || accept.contains(V2_PROTOBUF_REPLY) {
        Some(&V2_DOCS.protobuf)
    } else {
        Some(&V2_DOCS.json)
    }
}

/// `/openapi/v3`: `{"paths": {"api/v1": {"serverRelativeURL": ...}, ...}}`.
pub fn v3_index() -> Option<&'static Served> {
    Some(&V3_DOCS.index)
}

/// `/openapi/v3/<path>` for a served group-version path (`api/v1`, `apis/apps/v1`).
pub fn v3_group_version(path: &str) -> Option<&'static Served> {
    V3_DOCS.documents.get(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(doc: &Served) -> Value {
        serde_json::from_slice(&doc.bytes).expect("document is JSON")
    }

    #[test]
    fn every_served_resource_has_a_schema() {
        for r in RESOURCES.iter() {
            assert!(
                schemas::kind(r.group, r.version, r.kind).is_some(),
                "{}/{} {} has no schema: add it to openapi::schemas::KINDS",
                r.group,
                r.version,
                r.kind
            );
        }
    }

    #[test]
    fn v3_index_lists_every_served_group_version() {
        let index = parse(v3_index().expect("index"));
        let paths = index["paths"].as_object().expect("paths");
        let gvs = crate::resources::group_versions();
        assert_eq!(paths.len(), gvs.len(), "{paths:?}");
        for (group, version) in gvs {
            let path = gv_path(group, version);
            let url = paths[&path]["serverRelativeURL"].as_str().expect("url");
            let hash = url
                .strip_prefix(&format!("/openapi/v3/{path}?hash="))
                .unwrap_or_else(|| panic!("{url}"));
            let doc = v3_group_version(&path).expect("document served");
            assert_eq!(hash, doc.hash);
            assert_eq!(hash.len(), 128);
        }
        assert!(v3_group_version("apis/nope/v1").is_none());
    }

    #[test]
    fn v3_core_document_describes_pods_as_upstream() {
        let doc = parse(v3_group_version("api/v1").expect("core"));
        assert_eq!(doc["openapi"], "3.0.0");
        let schemas = &doc["components"]["schemas"];
        let pod = &schemas["io.k8s.api.core.v1.Pod"];
        assert_eq!(
            pod["x-kubernetes-group-version-kind"],
            json!([{"group": "", "kind": "Pod", "version": "v1"}])
        );
        assert_eq!(
            pod["properties"]["spec"]["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.api.core.v1.PodSpec"
        );
        let containers = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert!(containers["description"]
            .as_str()
            .is_some_and(|d| d.starts_with("List of containers belonging to the pod.")));
        // The patch operation kubectl inspects for server-side field validation.
        let patch = &doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"],
            json!({"group": "", "kind": "Pod", "version": "v1"})
        );
        let names: Vec<&str> = patch["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .filter(|p| p["in"] == "query")
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert!(names.contains(&"fieldValidation"), "{names:?}");
        assert!(names.contains(&"dryRun"), "{names:?}");
        // Every reference resolves inside the document.
        let text = serde_json::to_string(&doc).expect("json");
        for part in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = &part[..part.find('"').expect("end of ref")];
            assert!(schemas.get(name).is_some(), "dangling {name}");
        }
        // Other groups' kinds stay in their own documents.
        assert!(schemas.get("io.k8s.api.apps.v1.Deployment").is_none());
    }

    #[test]
    fn v3_apps_document_carries_scale_for_the_scale_subresource() {
        let doc = parse(v3_group_version("apis/apps/v1").expect("apps"));
        let scale = &doc["components"]["schemas"]["io.k8s.api.autoscaling.v1.Scale"];
        assert_eq!(
            scale["x-kubernetes-group-version-kind"],
            json!([{"group": "autoscaling", "kind": "Scale", "version": "v1"}])
        );
        let put =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["put"];
        assert_eq!(put["operationId"], "replaceAppsV1NamespacedDeploymentScale");
    }

    #[test]
    fn v2_document_uses_definitions() {
        let doc = parse(v2("application/json").expect("v2"));
        assert_eq!(doc["swagger"], "2.0");
        let deploy = &doc["definitions"]["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            deploy["properties"]["spec"]["$ref"],
            "#/definitions/io.k8s.api.apps.v1.DeploymentSpec"
        );
        let post = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"]["post"];
        let body = post["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .find(|p| p["in"] == "body")
            .expect("body parameter");
        assert_eq!(
            body["schema"]["$ref"],
            "#/definitions/io.k8s.api.apps.v1.Deployment"
        );
    }
}
