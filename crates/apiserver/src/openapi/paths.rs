//! The path items of the OpenAPI documents: one per collection, object and subresource of
//! every served resource, with upstream's operation ids, actions, group-version-kinds and
//! query parameters. kubectl looks for the `fieldValidation` parameter of a kind's PATCH
//! operation to decide whether the server validates fields itself.
//!
//! Operations are described once ([`Op`]) and rendered in Swagger 2.0 or OpenAPI 3.0 form.

use serde_json::{json, Map, Value};

use super::schemas::{self, KindSchema, V2_PREFIX, V3_PREFIX};
use crate::resources::ResourceDef;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Form {
    V2,
    V3,
}

struct Param {
    name: &'static str,
    ty: &'static str,
    description: &'static str,
}

const fn q(name: &'static str, ty: &'static str, description: &'static str) -> Param {
    Param {
        name,
        ty,
        description,
    }
}

const PRETTY: Param = q(
    "pretty",
    "string",
    "If 'true', the output is pretty printed.",
);
const DRY_RUN: Param = q(
    "dryRun",
    "string",
    "When present, the request is processed but nothing is persisted. The only valid value is All.",
);
const FIELD_MANAGER: Param = q(
    "fieldManager",
    "string",
    "The name of the actor or entity making these changes. Required for apply patches.",
);
const FIELD_VALIDATION: Param = q(
    "fieldValidation",
    "string",
    "How unknown or duplicate fields in the request body are handled: Ignore (drop them silently), Warn (drop them with a warning header, the default) or Strict (fail the request with BadRequest listing them).",
);
const FORCE: Param = q(
    "force",
    "boolean",
    "Whether an apply patch takes over fields owned by other managers. Must be unset for other patch types.",
);
const LIST: &[Param] = &[
    q("allowWatchBookmarks", "boolean", "Whether a watch may receive BOOKMARK events."),
    q("continue", "string", "The continue token of the previous page of a paged list."),
    q("fieldSelector", "string", "Restricts the objects by their fields. Defaults to everything."),
    q("labelSelector", "string", "Restricts the objects by their labels. Defaults to everything."),
    q("limit", "integer", "The most objects to return in one page; a continue token is returned when there are more."),
    q("resourceVersion", "string", "Which resource version the list or watch starts from."),
    q("resourceVersionMatch", "string", "How resourceVersion applies to a list: Exact or NotOlderThan."),
    q("sendInitialEvents", "boolean", "Whether a watch starts with synthetic ADDED events for the current objects, ended by a bookmark."),
    q("timeoutSeconds", "integer", "Time limit for the list or watch call."),
    q("watch", "boolean", "Watch for changes and return them as a stream of add, update and remove notifications."),
];
const DELETE: &[Param] = &[
    DRY_RUN,
    q(
        "gracePeriodSeconds",
        "integer",
        "Seconds before the object is deleted; zero deletes immediately.",
    ),
    q(
        "ignoreStoreReadErrorWithClusterBreakingPotential",
        "boolean",
        "Delete an object that cannot be read from storage (corrupt). Dangerous.",
    ),
    q(
        "orphanDependents",
        "boolean",
        "Deprecated: use propagationPolicy.",
    ),
    q(
        "propagationPolicy",
        "string",
        "Whether and how garbage collection is performed: Orphan, Background or Foreground.",
    ),
];

enum Body {
    Object(String),
    Patch,
}

struct Op {
    method: &'static str,
    action: &'static str,
    operation_id: String,
    description: String,
    params: Vec<&'static Param>,
    body: Option<Body>,
    /// The definition the response carries and the success codes.
    response: String,
    codes: &'static [(&'static str, &'static str)],
    gvk: (&'static str, &'static str, &'static str),
}

const OK: &[(&str, &str)] = &[("200", "OK")];
const WRITTEN: &[(&str, &str)] = &[("200", "OK"), ("201", "Created")];
const CREATED: &[(&str, &str)] = &[("200", "OK"), ("201", "Created"), ("202", "Accepted")];
const DELETED: &[(&str, &str)] = &[("200", "OK"), ("202", "Accepted")];

/// `""` → `Core`, `rbac.authorization.k8s.io` → `RbacAuthorization`, as in upstream's ids.
fn group_camel(group: &str) -> String {
    if group.is_empty() {
        return "Core".into();
    }
    group
        .trim_end_matches(".k8s.io")
        .split('.')
        .map(capitalize)
        .collect()
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The path items of one resource, keyed by path.
fn resource_paths(r: &ResourceDef, name: &str) -> Vec<(String, Vec<&'static str>, Vec<Op>)> {
    let base = if r.group.is_empty() {
        format!("/api/{}", r.version)
    } else {
        format!("/apis/{}/{}", r.group, r.version)
    };
    let ns_path = if r.namespaced {
        "/namespaces/{namespace}"
    } else {
        ""
    };
    let collection = format!("{base}{ns_path}/{}", r.plural);
    let item = format!("{collection}/{{name}}");
    let id = |verb: &str, suffix: &str| {
        format!(
            "{verb}{}{}{}{}{suffix}",
            group_camel(r.group),
            capitalize(r.version),
            if r.namespaced { "Namespaced" } else { "" },
            r.kind
        )
    };
    let gvk = (r.group, r.version, r.kind);
    let name = name.to_string();
    let list = format!("{name}List");
    let status = schemas::status_name();
    let write = || vec![&DRY_RUN, &FIELD_MANAGER, &FIELD_VALIDATION];
    let patch_params = || vec![&DRY_RUN, &FIELD_MANAGER, &FIELD_VALIDATION, &FORCE];
    let scope: Vec<&'static str> = if r.namespaced {
        vec!["namespace", "pretty"]
    } else {
        vec!["pretty"]
    };
    let mut item_scope = vec!["name"];
    item_scope.extend(&scope);

    let op =
        |method, action, operation_id, description: String, params, body, response, codes, gvk| {
            Op {
                method,
                action,
                operation_id,
                description,
                params,
                body,
                response,
                codes,
                gvk,
            }
        };
    let mut out = vec![
        (
            collection.clone(),
            scope.clone(),
            vec![
                op(
                    "get",
                    "list",
                    id("list", ""),
                    format!("list or watch objects of kind {}", r.kind),
                    LIST.iter().collect(),
                    None,
                    list.clone(),
                    OK,
                    gvk,
                ),
                op(
                    "post",
                    "post",
                    id("create", ""),
                    format!("create a {}", r.kind),
                    write(),
                    Some(Body::Object(name.clone())),
                    name.clone(),
                    CREATED,
                    gvk,
                ),
                op(
                    "delete",
                    "deletecollection",
                    id("deleteCollection", ""),
                    format!("delete collection of {}", r.kind),
                    LIST.iter().chain(DELETE).collect(),
                    Some(Body::Object(schemas::delete_options_name())),
                    status.clone(),
                    OK,
                    gvk,
                ),
            ],
        ),
        (
            item.clone(),
            item_scope.clone(),
            vec![
                op(
                    "get",
                    "get",
                    id("read", ""),
                    format!("read the specified {}", r.kind),
                    vec![],
                    None,
                    name.clone(),
                    OK,
                    gvk,
                ),
                op(
                    "put",
                    "put",
                    id("replace", ""),
                    format!("replace the specified {}", r.kind),
                    write(),
                    Some(Body::Object(name.clone())),
                    name.clone(),
                    WRITTEN,
                    gvk,
                ),
                op(
                    "patch",
                    "patch",
                    id("patch", ""),
                    format!("partially update the specified {}", r.kind),
                    patch_params(),
                    Some(Body::Patch),
                    name.clone(),
                    WRITTEN,
                    gvk,
                ),
                op(
                    "delete",
                    "delete",
                    id("delete", ""),
                    format!("delete a {}", r.kind),
                    DELETE.iter().collect(),
                    Some(Body::Object(schemas::delete_options_name())),
                    status.clone(),
                    DELETED,
                    gvk,
                ),
            ],
        ),
    ];
    if r.namespaced {
        out.push((
            format!("{base}/{}", r.plural),
            vec!["pretty"],
            vec![op(
                "get",
                "list",
                format!("{}ForAllNamespaces", id("list", "")).replace("Namespaced", ""),
                format!("list or watch objects of kind {}", r.kind),
                LIST.iter().collect(),
                None,
                list,
                OK,
                gvk,
            )],
        ));
    }
    for sub in r.subresources {
        let path = format!("{item}/{sub}");
        let suffix = capitalize(sub);
        let (sub_kind, sub_name) = match *sub {
            "scale" => match schemas::kind("autoscaling", "v1", "Scale") {
                Some(s) => (("autoscaling", "v1", "Scale"), (s.name)().into_owned()),
                None => continue,
            },
            "binding" => match schemas::kind("", "v1", "Binding") {
                Some(s) => (("", "v1", "Binding"), (s.name)().into_owned()),
                None => continue,
            },
            "eviction" => match schemas::kind("policy", "v1", "Eviction") {
                Some(s) => (("policy", "v1", "Eviction"), (s.name)().into_owned()),
                None => continue,
            },
            _ => (gvk, name.clone()),
        };
        let ops = match *sub {
            "binding" | "eviction" => vec![op(
                "post",
                "post",
                id("create", &suffix),
                format!("create {sub} of a {}", r.kind),
                write(),
                Some(Body::Object(sub_name.clone())),
                sub_name,
                CREATED,
                sub_kind,
            )],
            "finalize" => vec![op(
                "put",
                "put",
                id("replace", &suffix),
                format!("replace finalize of the specified {}", r.kind),
                write(),
                Some(Body::Object(sub_name.clone())),
                sub_name,
                WRITTEN,
                sub_kind,
            )],
            _ => vec![
                op(
                    "get",
                    "get",
                    id("read", &suffix),
                    format!("read {sub} of the specified {}", r.kind),
                    vec![],
                    None,
                    sub_name.clone(),
                    OK,
                    sub_kind,
                ),
                op(
                    "put",
                    "put",
                    id("replace", &suffix),
                    format!("replace {sub} of the specified {}", r.kind),
                    write(),
                    Some(Body::Object(sub_name.clone())),
                    sub_name.clone(),
                    WRITTEN,
                    sub_kind,
                ),
                op(
                    "patch",
                    "patch",
                    id("patch", &suffix),
                    format!("partially update {sub} of the specified {}", r.kind),
                    patch_params(),
                    Some(Body::Patch),
                    sub_name,
                    WRITTEN,
                    sub_kind,
                ),
            ],
        };
        out.push((path, item_scope.clone(), ops));
    }
    out
}

fn scope_param(name: &str, kind: &str) -> (Value, &'static str) {
    match name {
        "name" => (json!(format!("name of the {kind}")), "path"),
        "namespace" => (
            json!("object name and auth scope, such as for teams and projects"),
            "path",
        ),
        _ => (json!(PRETTY.description), "query"),
    }
}

fn param(form: Form, name: &str, location: &str, ty: &str, description: Value) -> Value {
    let mut p = json!({"name": name, "in": location, "description": description});
    if location == "path" {
        p["required"] = json!(true);
    }
    match form {
        Form::V2 => {
            p["type"] = json!(ty);
            p["uniqueItems"] = json!(true);
        }
        Form::V3 => p["schema"] = json!({"type": ty, "uniqueItems": true}),
    }
    p
}

fn reference(form: Form, name: &str) -> Value {
    let prefix = match form {
        Form::V2 => V2_PREFIX,
        Form::V3 => V3_PREFIX,
    };
    json!({"$ref": format!("{prefix}{name}")})
}

const PATCH_TYPES: [&str; 4] = [
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];
const PRODUCES: [&str; 3] = [
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
];

fn render_op(form: Form, op: &Op, tag: &str) -> Value {
    let mut params: Vec<Value> = op
        .params
        .iter()
        .map(|p| param(form, p.name, "query", p.ty, json!(p.description)))
        .collect();
    let mut out = json!({
        "description": op.description,
        "operationId": op.operation_id,
        "tags": [tag],
        "x-kubernetes-action": op.action,
        "x-kubernetes-group-version-kind": {"group": op.gvk.0, "kind": op.gvk.2, "version": op.gvk.1},
    });
    let mut responses = Map::new();
    for (code, text) in op.codes {
        let mut r = json!({"description": text});
        match form {
            Form::V2 => r["schema"] = reference(form, &op.response),
            Form::V3 => {
                let content: Map<String, Value> = PRODUCES
                    .iter()
                    .map(|t| {
                        (
                            t.to_string(),
                            json!({"schema": reference(form, &op.response)}),
                        )
                    })
                    .collect();
                r["content"] = Value::Object(content);
            }
        }
        responses.insert(code.to_string(), r);
    }
    responses.insert("401".into(), json!({"description": "Unauthorized"}));
    out["responses"] = Value::Object(responses);
    let (body_schema, body_types): (Option<String>, Vec<&str>) = match &op.body {
        None => (None, vec![]),
        Some(Body::Object(name)) => (Some(name.clone()), vec!["*/*"]),
        Some(Body::Patch) => (Some(schemas::patch_name()), PATCH_TYPES.to_vec()),
    };
    match form {
        Form::V2 => {
            if let Some(schema) = &body_schema {
                params.push(json!({
                    "name": "body", "in": "body", "required": true,
                    "schema": reference(form, schema),
                }));
            }
            out["consumes"] = json!(if body_types.is_empty() {
                vec!["*/*"]
            } else {
                body_types
            });
            out["produces"] = json!(PRODUCES);
            out["schemes"] = json!(["https"]);
        }
        Form::V3 => {
            if let Some(schema) = &body_schema {
                let content: Map<String, Value> = body_types
                    .iter()
                    .map(|t| (t.to_string(), json!({"schema": reference(form, schema)})))
                    .collect();
                out["requestBody"] = json!({"content": content, "required": true});
            }
        }
    }
    if !params.is_empty() {
        out["parameters"] = Value::Array(params);
    }
    out
}

/// The path items of `resources` (each with its kind's schema), in `form`.
pub fn paths(form: Form, resources: &[(&ResourceDef, &KindSchema)]) -> Map<String, Value> {
    let named: Vec<(&ResourceDef, String)> = resources
        .iter()
        .map(|(r, k)| (*r, (k.name)().into_owned()))
        .collect();
    paths_named(form, &named)
}

/// The path items of `resources`, each with the definition name of its kind.
pub fn paths_named(form: Form, resources: &[(&ResourceDef, String)]) -> Map<String, Value> {
    let mut out = Map::new();
    for (r, name) in resources {
        let tag = format!(
            "{}_{}",
            if r.group.is_empty() {
                "core".to_string()
            } else {
                group_camel(r.group).to_ascii_lowercase()
            },
            r.version
        );
        for (path, scope, ops) in resource_paths(r, name) {
            let mut item = Map::new();
            let params: Vec<Value> = scope
                .iter()
                .map(|p| {
                    let (description, location) = scope_param(p, r.kind);
                    param(form, p, location, "string", description)
                })
                .collect();
            item.insert("parameters".into(), Value::Array(params));
            for op in &ops {
                item.insert(op.method.into(), render_op(form, op, &tag));
            }
            out.insert(path, Value::Object(item));
        }
    }
    out
}

/// The definition names the operations of `resources` refer to besides kinds and lists.
pub fn subresource_kinds(resources: &[&ResourceDef]) -> Vec<&'static KindSchema> {
    let mut out: Vec<&'static KindSchema> = Vec::new();
    for r in resources {
        for sub in r.subresources {
            let k = match *sub {
                "scale" => schemas::kind("autoscaling", "v1", "Scale"),
                "binding" => schemas::kind("", "v1", "Binding"),
                "eviction" => schemas::kind("policy", "v1", "Eviction"),
                _ => None,
            };
            if let Some(k) = k {
                if !out.iter().any(|o| std::ptr::eq(*o, k)) {
                    out.push(k);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_ids_follow_upstream() {
        assert_eq!(group_camel(""), "Core");
        assert_eq!(group_camel("apps"), "Apps");
        assert_eq!(
            group_camel("rbac.authorization.k8s.io"),
            "RbacAuthorization"
        );
        assert_eq!(group_camel("networking.k8s.io"), "Networking");
        let pods = crate::resources::find("", "v1", "pods").expect("pods served");
        let k = schemas::kind("", "v1", "Pod").expect("pod schema");
        let paths = paths(Form::V3, &[(pods, k)]);
        let ops: Vec<&str> = paths
            .values()
            .flat_map(|item| item.as_object().into_iter().flat_map(|m| m.values()))
            .filter_map(|op| op.get("operationId").and_then(Value::as_str))
            .collect();
        for want in [
            "listCoreV1NamespacedPod",
            "createCoreV1NamespacedPod",
            "patchCoreV1NamespacedPod",
            "listCoreV1PodForAllNamespaces",
            "patchCoreV1NamespacedPodStatus",
            "createCoreV1NamespacedPodEviction",
            "createCoreV1NamespacedPodBinding",
        ] {
            assert!(ops.contains(&want), "{want} missing from {ops:?}");
        }
    }
}
