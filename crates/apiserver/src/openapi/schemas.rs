//! The schema definitions of the OpenAPI documents: k8s-openapi's generated JSON Schemas
//! (upstream's names and field descriptions), completed with what upstream's documents
//! carry and the generated ones do not: `x-kubernetes-group-version-kind` on top-level
//! kinds, `<Kind>List` types, strategic-merge-patch extensions from
//! [`skiff_api::patch::schema`], and upstream's string forms of `IntOrString` and
//! `Quantity`.
//!
//! Definitions come out in Swagger 2.0 form (`#/definitions/...` references with sibling
//! `description`s); [`to_v3`] turns a schema into the OpenAPI 3.0 form upstream serves.

use std::collections::HashSet;

use k8s_openapi::api;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_openapi::schemars::generate::SchemaSettings;
use k8s_openapi::schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{json, Map, Value};
use skiff_api::patch::schema::{self as patch, ListStrategy, Ty};

pub const V2_PREFIX: &str = "#/definitions/";
pub const V3_PREFIX: &str = "#/components/schemas/";

/// A kind whose schema the documents can carry.
pub struct KindSchema {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// Upstream's definition name (`io.k8s.api.core.v1.Pod`).
    pub name: fn() -> std::borrow::Cow<'static, str>,
    add: fn(&mut SchemaGenerator) -> Schema,
}

fn k<T: JsonSchema>(group: &'static str, version: &'static str, kind: &'static str) -> KindSchema {
    KindSchema {
        group,
        version,
        kind,
        name: T::schema_name,
        add: SchemaGenerator::subschema_for::<T>,
    }
}

/// Every kind with a schema: the served resources' kinds (and some the issue lists that
/// are not served yet), plus the kinds of subresources.
pub static KINDS: std::sync::LazyLock<Vec<KindSchema>> = std::sync::LazyLock::new(|| {
    use api::*;
    vec![
        k::<core::v1::Namespace>("", "v1", "Namespace"),
        k::<core::v1::Pod>("", "v1", "Pod"),
        k::<core::v1::Node>("", "v1", "Node"),
        k::<core::v1::Service>("", "v1", "Service"),
        k::<core::v1::Endpoints>("", "v1", "Endpoints"),
        k::<core::v1::ConfigMap>("", "v1", "ConfigMap"),
        k::<core::v1::Secret>("", "v1", "Secret"),
        k::<core::v1::ServiceAccount>("", "v1", "ServiceAccount"),
        k::<core::v1::Event>("", "v1", "Event"),
        k::<core::v1::ReplicationController>("", "v1", "ReplicationController"),
        k::<core::v1::PersistentVolume>("", "v1", "PersistentVolume"),
        k::<core::v1::PersistentVolumeClaim>("", "v1", "PersistentVolumeClaim"),
        k::<core::v1::LimitRange>("", "v1", "LimitRange"),
        k::<core::v1::ResourceQuota>("", "v1", "ResourceQuota"),
        k::<core::v1::PodTemplate>("", "v1", "PodTemplate"),
        k::<core::v1::Binding>("", "v1", "Binding"),
        k::<apps::v1::Deployment>("apps", "v1", "Deployment"),
        k::<apps::v1::ReplicaSet>("apps", "v1", "ReplicaSet"),
        k::<apps::v1::StatefulSet>("apps", "v1", "StatefulSet"),
        k::<apps::v1::DaemonSet>("apps", "v1", "DaemonSet"),
        k::<apps::v1::ControllerRevision>("apps", "v1", "ControllerRevision"),
        k::<batch::v1::Job>("batch", "v1", "Job"),
        k::<batch::v1::CronJob>("batch", "v1", "CronJob"),
        k::<autoscaling::v1::HorizontalPodAutoscaler>("autoscaling", "v1", "HorizontalPodAutoscaler"),
        k::<autoscaling::v1::Scale>("autoscaling", "v1", "Scale"),
        k::<autoscaling::v2::HorizontalPodAutoscaler>("autoscaling", "v2", "HorizontalPodAutoscaler"),
        k::<coordination::v1::Lease>("coordination.k8s.io", "v1", "Lease"),
        k::<discovery::v1::EndpointSlice>("discovery.k8s.io", "v1", "EndpointSlice"),
        k::<events::v1::Event>("events.k8s.io", "v1", "Event"),
        k::<policy::v1::PodDisruptionBudget>("policy", "v1", "PodDisruptionBudget"),
        k::<policy::v1::Eviction>("policy", "v1", "Eviction"),
        k::<scheduling::v1::PriorityClass>("scheduling.k8s.io", "v1", "PriorityClass"),
        k::<storage::v1::StorageClass>("storage.k8s.io", "v1", "StorageClass"),
        k::<networking::v1::Ingress>("networking.k8s.io", "v1", "Ingress"),
        k::<networking::v1::IngressClass>("networking.k8s.io", "v1", "IngressClass"),
        k::<networking::v1::NetworkPolicy>("networking.k8s.io", "v1", "NetworkPolicy"),
        k::<rbac::v1::Role>("rbac.authorization.k8s.io", "v1", "Role"),
        k::<rbac::v1::RoleBinding>("rbac.authorization.k8s.io", "v1", "RoleBinding"),
        k::<rbac::v1::ClusterRole>("rbac.authorization.k8s.io", "v1", "ClusterRole"),
        k::<rbac::v1::ClusterRoleBinding>("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding"),
        k::<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
        ),
        k::<admissionregistration::v1::MutatingWebhookConfiguration>("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration"),
        k::<admissionregistration::v1::ValidatingWebhookConfiguration>("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration"),
        k::<certificates::v1::CertificateSigningRequest>("certificates.k8s.io", "v1", "CertificateSigningRequest"),
    ]
});

/// The schema of a kind, if it has one.
pub fn kind(group: &str, version: &str, kind: &str) -> Option<&'static KindSchema> {
    KINDS
        .iter()
        .find(|k| k.group == group && k.version == version && k.kind == kind)
}

/// Meta types every document's operations refer to.
fn add_meta(gen: &mut SchemaGenerator) {
    gen.subschema_for::<meta::Status>();
    gen.subschema_for::<meta::DeleteOptions>();
    gen.subschema_for::<meta::Patch>();
    gen.subschema_for::<meta::WatchEvent<meta::Status>>();
}

/// The names of the meta types [`add_meta`] adds, for operations to refer to.
pub fn status_name() -> String {
    meta::Status::schema_name().into_owned()
}
pub fn delete_options_name() -> String {
    meta::DeleteOptions::schema_name().into_owned()
}
pub fn patch_name() -> String {
    meta::Patch::schema_name().into_owned()
}
pub fn object_meta_name() -> String {
    meta::ObjectMeta::schema_name().into_owned()
}
pub fn list_meta_name() -> String {
    meta::ListMeta::schema_name().into_owned()
}

/// The name of a kind's list type.
pub fn list_name(k: &KindSchema) -> String {
    format!("{}List", (k.name)())
}

/// The Swagger 2.0 definitions of `kinds` (with a `<Kind>List` for each of `listed`) and of
/// every type they refer to.
pub fn definitions(kinds: &[&KindSchema], listed: &[&KindSchema]) -> Map<String, Value> {
    let mut gen = SchemaSettings::draft07()
        .with(|s| {
            s.transforms.clear();
            s.meta_schema = None;
        })
        .into_generator();
    for k in kinds.iter().chain(listed) {
        (k.add)(&mut gen);
    }
    add_meta(&mut gen);
    gen.subschema_for::<meta::ListMeta>();
    gen.subschema_for::<meta::ObjectMeta>();
    let mut defs = gen.take_definitions(false);

    let gvk = |group: &str, version: &str, kind: &str| json!({"group": group, "kind": kind, "version": version});
    for k in kinds.iter().chain(listed) {
        let name = (k.name)();
        let Some(Value::Object(schema)) = defs.get_mut(name.as_ref()) else {
            continue;
        };
        // k8s-openapi requires `metadata` because its field is not optional; upstream does
        // not, and `kubectl explain` would mark it required.
        if let Some(Value::Array(required)) = schema.get_mut("required") {
            required.retain(|r| r != "metadata");
            if required.is_empty() {
                schema.remove("required");
            }
        }
        let list = schema
            .entry("x-kubernetes-group-version-kind")
            .or_insert_with(|| json!([]));
        let entry = gvk(k.group, k.version, k.kind);
        if let Value::Array(list) = list {
            if !list.contains(&entry) {
                list.push(entry);
            }
        }
    }
    for k in listed {
        let item = (k.name)();
        let Some(Value::Object(schema)) = defs.get(item.as_ref()) else {
            continue;
        };
        let list = list_schema(k, schema);
        defs.insert(list_name(k), list);
    }
    for k in kinds.iter().chain(listed) {
        if let Some(ty) = patch::root(k.kind) {
            let mut seen = HashSet::new();
            annotate_patch(&mut defs, &(k.name)(), ty, &mut seen);
        }
    }
    string_forms(&mut defs);
    defs
}

/// `<Kind>List`: `apiVersion` and `kind` as the item's, `items`, and list metadata.
fn list_schema(k: &KindSchema, item: &Map<String, Value>) -> Value {
    let prop = |name: &str| {
        item.get("properties")
            .and_then(|p| p.get(name))
            .cloned()
            .unwrap_or_else(|| json!({"type": "string"}))
    };
    let item_ref = format!("{V2_PREFIX}{}", (k.name)());
    let list_meta = format!("{V2_PREFIX}{}", meta::ListMeta::schema_name());
    json!({
        "description": format!("{}List is a list of {} objects.", k.kind, k.kind),
        "type": "object",
        "properties": {
            "apiVersion": prop("apiVersion"),
            "kind": prop("kind"),
            "items": {
                "description": format!("The {} objects of the list.", k.kind),
                "type": "array",
                "items": {"$ref": item_ref},
            },
            "metadata": {
                "$ref": list_meta,
                "description": "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
            },
        },
        "required": ["items"],
        "x-kubernetes-group-version-kind": [
            {"group": k.group, "kind": format!("{}List", k.kind), "version": k.version},
        ],
    })
}

/// The definition a property refers to, directly or through its array's items.
fn referenced(prop: &Value) -> Option<&str> {
    let r = prop
        .get("$ref")
        .or_else(|| prop.get("items").and_then(|i| i.get("$ref")))?;
    r.as_str()?.strip_prefix(V2_PREFIX)
}

/// Adds `x-kubernetes-patch-strategy` / `x-kubernetes-patch-merge-key` to the properties of
/// definition `name` (reached as patch type `ty`) and, recursively, of the definitions its
/// typed fields refer to. Definitions are shared between kinds, as upstream's Go types are,
/// so the annotations are per type, not per path.
fn annotate_patch(
    defs: &mut Map<String, Value>,
    name: &str,
    ty: Ty,
    seen: &mut HashSet<(String, String)>,
) {
    if !seen.insert((name.to_string(), format!("{ty:?}"))) {
        return;
    }
    let mut next: Vec<(String, Ty)> = Vec::new();
    let Some(props) = defs
        .get_mut(name)
        .and_then(|d| d.get_mut("properties"))
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    for (field, prop) in props.iter_mut() {
        let meta = patch::field(ty, field);
        let mut strategies = Vec::new();
        if let ListStrategy::Merge { key } = meta.list {
            strategies.push("merge");
            if let Some(key) = key {
                prop["x-kubernetes-patch-merge-key"] = json!(key);
            }
        }
        if meta.retain_keys {
            strategies.push("retainKeys");
        }
        if !strategies.is_empty() {
            prop["x-kubernetes-patch-strategy"] = json!(strategies.join(","));
        }
        if let (Some(sub), Some(target)) = (meta.ty, referenced(prop)) {
            next.push((target.to_string(), sub));
        }
    }
    for (target, sub) in next {
        annotate_patch(defs, &target, sub, seen);
    }
}

fn int_or_string_name() -> String {
    <k8s_openapi::apimachinery::pkg::util::intstr::IntOrString as JsonSchema>::schema_name()
        .into_owned()
}

fn quantity_name() -> String {
    <k8s_openapi::apimachinery::pkg::api::resource::Quantity as JsonSchema>::schema_name()
        .into_owned()
}

/// In Swagger 2.0 upstream serves `IntOrString` and `Quantity` as strings (the former with
/// format `int-or-string`); clients' validation accepts numbers for both.
fn string_forms(defs: &mut Map<String, Value>) {
    for (name, format) in [
        (int_or_string_name(), Some("int-or-string")),
        (quantity_name(), None),
    ] {
        if let Some(Value::Object(schema)) = defs.get_mut(&name) {
            schema.remove("x-kubernetes-int-or-string");
            schema.insert("type".into(), json!("string"));
            if let Some(format) = format {
                schema.insert("format".into(), json!(format));
            }
        }
    }
}

/// Swagger 2.0 definitions in OpenAPI 3.0 form ([`to_v3`]), where upstream spells the two
/// scalar unions with `oneOf` (so `kubectl explain` shows `<IntOrString>`).
pub fn into_v3(defs: &mut Map<String, Value>) {
    defs.values_mut().for_each(to_v3);
    for (name, types) in [
        (int_or_string_name(), ["integer", "string"]),
        (quantity_name(), ["string", "number"]),
    ] {
        if let Some(Value::Object(schema)) = defs.get_mut(&name) {
            schema.remove("type");
            schema.insert(
                "oneOf".into(),
                Value::Array(types.iter().map(|t| json!({"type": t})).collect()),
            );
        }
    }
}

/// A Swagger 2.0 schema in OpenAPI 3.0 form: references point into
/// `#/components/schemas/`, and a reference with siblings (a field's description) is
/// wrapped in `allOf`, since siblings of `$ref` are ignored in 3.0.
pub fn to_v3(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get_mut("$ref") {
                if let Some(rest) = r.strip_prefix(V2_PREFIX) {
                    *r = format!("{V3_PREFIX}{rest}");
                }
                if map.len() > 1 {
                    let r = map.remove("$ref").unwrap_or_default();
                    map.insert("allOf".into(), json!([{"$ref": r}]));
                }
            }
            for v in map.values_mut() {
                to_v3(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(to_v3),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_definitions() -> Map<String, Value> {
        let kinds: Vec<&KindSchema> = KINDS.iter().collect();
        definitions(&kinds, &kinds)
    }

    #[test]
    fn pod_containers_merge_by_name_and_ports_by_container_port() {
        let defs = all_definitions();
        let containers = &defs["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(
            containers["items"]["$ref"],
            "#/definitions/io.k8s.api.core.v1.Container"
        );
        let container = &defs["io.k8s.api.core.v1.Container"]["properties"];
        assert_eq!(
            container["ports"]["x-kubernetes-patch-merge-key"],
            "containerPort"
        );
        assert_eq!(container["env"]["x-kubernetes-patch-merge-key"], "name");
        // Upstream leaves these without a strategy.
        assert!(container["envFrom"]
            .get("x-kubernetes-patch-strategy")
            .is_none());
        let spec = &defs["io.k8s.api.core.v1.PodSpec"]["properties"];
        assert!(spec["tolerations"]
            .get("x-kubernetes-patch-strategy")
            .is_none());
        assert_eq!(
            spec["volumes"]["x-kubernetes-patch-strategy"],
            "merge,retainKeys"
        );
        let deploy = &defs["io.k8s.api.apps.v1.DeploymentSpec"]["properties"];
        assert_eq!(
            deploy["strategy"]["x-kubernetes-patch-strategy"],
            "retainKeys"
        );
        let meta = &defs["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"];
        assert_eq!(
            meta["ownerReferences"]["x-kubernetes-patch-merge-key"],
            "uid"
        );
        assert_eq!(meta["finalizers"]["x-kubernetes-patch-strategy"], "merge");
        assert!(meta["finalizers"]
            .get("x-kubernetes-patch-merge-key")
            .is_none());
    }

    #[test]
    fn kinds_and_lists_carry_their_group_version_kind() {
        let defs = all_definitions();
        let cases = [
            ("io.k8s.api.core.v1.Pod", "", "v1", "Pod"),
            ("io.k8s.api.core.v1.PodList", "", "v1", "PodList"),
            ("io.k8s.api.apps.v1.Deployment", "apps", "v1", "Deployment"),
            (
                "io.k8s.api.apps.v1.DeploymentList",
                "apps",
                "v1",
                "DeploymentList",
            ),
            (
                "io.k8s.api.autoscaling.v1.Scale",
                "autoscaling",
                "v1",
                "Scale",
            ),
            (
                "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition",
                "apiextensions.k8s.io",
                "v1",
                "CustomResourceDefinition",
            ),
        ];
        for (name, group, version, kind) in cases {
            let gvk = &defs[name]["x-kubernetes-group-version-kind"];
            assert_eq!(
                gvk,
                &json!([{"group": group, "kind": kind, "version": version}]),
                "{name}"
            );
        }
        // Non-top-level types have none.
        assert!(defs["io.k8s.api.core.v1.PodSpec"]
            .get("x-kubernetes-group-version-kind")
            .is_none());
        // Upstream does not require metadata.
        assert!(defs["io.k8s.api.core.v1.Pod"].get("required").is_none());
        assert_eq!(
            defs["io.k8s.api.core.v1.PodList"]["required"],
            json!(["items"])
        );
    }

    #[test]
    fn int_or_string_and_quantity_are_strings() {
        let defs = all_definitions();
        let ios = &defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"];
        assert_eq!(ios["type"], "string");
        assert_eq!(ios["format"], "int-or-string");
        assert_eq!(
            defs["io.k8s.apimachinery.pkg.api.resource.Quantity"]["type"],
            "string"
        );
    }

    #[test]
    fn every_reference_resolves() {
        let defs = all_definitions();
        fn refs(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        out.push(r.clone());
                    }
                    m.values().for_each(|v| refs(v, out));
                }
                Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let mut all = Vec::new();
        refs(&Value::Object(defs.clone()), &mut all);
        assert!(!all.is_empty());
        for r in all {
            let name = r.strip_prefix(V2_PREFIX).unwrap_or_else(|| panic!("{r}"));
            assert!(defs.contains_key(name), "dangling {r}");
        }
        // schemars numbers a second type of the same name (`...WatchEvent2`); none may exist.
        for name in defs.keys() {
            let base = name.trim_end_matches(|c: char| c.is_ascii_digit());
            assert!(base == name || !defs.contains_key(base), "duplicate {name}");
        }
    }

    #[test]
    fn v3_spells_int_or_string_and_quantity_with_one_of() {
        let mut defs = all_definitions();
        into_v3(&mut defs);
        let ios = &defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"];
        assert_eq!(
            ios["oneOf"],
            json!([{"type": "integer"}, {"type": "string"}])
        );
        assert_eq!(ios["format"], "int-or-string");
        assert!(ios.get("type").is_none());
        let q = &defs["io.k8s.apimachinery.pkg.api.resource.Quantity"];
        assert_eq!(q["oneOf"], json!([{"type": "string"}, {"type": "number"}]));
        assert!(q.get("type").is_none());
    }

    #[test]
    fn v3_form_wraps_described_references() {
        let mut v = json!({
            "properties": {
                "metadata": {"$ref": "#/definitions/a.B", "description": "d"},
                "items": {"type": "array", "items": {"$ref": "#/definitions/a.C"}},
            }
        });
        to_v3(&mut v);
        assert_eq!(
            v["properties"]["metadata"],
            json!({"allOf": [{"$ref": "#/components/schemas/a.B"}], "description": "d"})
        );
        assert_eq!(
            v["properties"]["items"]["items"],
            json!({"$ref": "#/components/schemas/a.C"})
        );
    }
}
