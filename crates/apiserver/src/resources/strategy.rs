//! The per-resource pipeline (upstream's RESTCreateStrategy/RESTUpdateStrategy): decode,
//! prepare (normalize, default, reset what the caller may not set), validate (changes
//! nothing), and print. One small `Hooks` impl per resource; `Codec` does the typed round
//! trip that every built-in resource shares.

use std::collections::BTreeMap;

use serde_json::Value;
use skiff_api::FieldErrors;

/// Decodes a request body into the resource's typed form and back: type errors are caught,
/// unknown fields dropped (and reported, for `fieldValidation=Strict`/`Warn`).
pub trait Codec: Send + Sync {
    /// Returns the normalized object and the paths of unknown fields that were dropped.
    fn normalize(&self, obj: Value) -> Result<(Value, Vec<String>), String>;
}

/// A built-in type from k8s-openapi.
pub struct Typed<T>(std::marker::PhantomData<fn() -> T>);

impl<T> Typed<T> {
    pub const fn new() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<T> Default for Typed<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Codec for Typed<T>
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    fn normalize(&self, obj: Value) -> Result<(Value, Vec<String>), String> {
        let typed: T = serde_json::from_value(obj.clone()).map_err(|e| e.to_string())?;
        let out = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
        let mut unknown = Vec::new();
        unknown_fields(&obj, &out, "", &mut unknown);
        Ok((out, unknown))
    }
}

/// Paths present in `input` (and not null) that the typed round trip dropped.
pub fn unknown_fields(input: &Value, output: &Value, path: &str, out: &mut Vec<String>) {
    match (input, output) {
        (Value::Object(i), Value::Object(o)) => {
            for (k, v) in i {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match o.get(k) {
                    Some(ov) => unknown_fields(v, ov, &p, out),
                    None if !v.is_null() && !is_empty_container(v) => out.push(p),
                    None => {}
                }
            }
        }
        (Value::Array(i), Value::Array(o)) => {
            for (n, (iv, ov)) in i.iter().zip(o).enumerate() {
                unknown_fields(iv, ov, &format!("{path}[{n}]"), out);
            }
        }
        _ => {}
    }
}

/// k8s-openapi leaves out empty optional lists/maps; their absence is not an unknown field.
fn is_empty_container(v: &Value) -> bool {
    matches!(v, Value::Array(a) if a.is_empty()) || matches!(v, Value::Object(o) if o.is_empty())
}

/// What a strategy may need to know about the request and the cluster.
pub struct Context<'a> {
    pub namespace: &'a str,
    pub service_cidr: Option<&'a crate::ipalloc::Cidr>,
}

/// A table column (upstream's `metav1.TableColumnDefinition`).
pub struct Column {
    pub name: &'static str,
    pub kind: &'static str,
    pub format: &'static str,
    pub description: &'static str,
    /// Shown only with `-o wide` (priority 1).
    pub wide: bool,
}

impl Column {
    pub const fn new(name: &'static str, kind: &'static str, description: &'static str) -> Self {
        Self {
            name,
            kind,
            format: "",
            description,
            wide: false,
        }
    }

    pub const fn wide(name: &'static str, kind: &'static str, description: &'static str) -> Self {
        Self {
            name,
            kind,
            format: "",
            description,
            wide: true,
        }
    }

    pub const fn name_column() -> Self {
        Self {
            name: "Name",
            kind: "string",
            format: "name",
            description: "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
            wide: false,
        }
    }

    pub const fn age_column() -> Self {
        Self {
            name: "Age",
            kind: "string",
            format: "",
            description: "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
            wide: false,
        }
    }
}

/// Where `/scale` reads and writes its numbers (JSON pointers into the object).
#[derive(Clone, Debug)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    pub selector: Option<String>,
    /// The selector is already a string (a CRD's `labelSelectorPath`), not a selector
    /// object as on built-in workloads.
    pub selector_is_string: bool,
}

impl Default for ScalePaths {
    /// The built-in workloads' paths.
    fn default() -> Self {
        Self {
            spec_replicas: "/spec/replicas".into(),
            status_replicas: "/status/replicas".into(),
            selector: Some("/spec/selector".into()),
            selector_is_string: false,
        }
    }
}

/// Per-resource behaviour. Every method has the generic default; a resource overrides
/// what it needs.
pub trait Hooks: Send + Sync {
    /// Set server-owned fields and defaults on create (status reset happens before this).
    fn prepare_create(&self, _obj: &mut Value, _ctx: &Context<'_>) {}

    /// Adjust an update (defaults for newly added parts, immutable fields carried over).
    fn prepare_update(&self, _new: &mut Value, _old: &Value) {}

    fn validate(&self, _obj: &Value, _ctx: &Context<'_>) -> FieldErrors {
        FieldErrors::default()
    }

    fn validate_update(&self, new: &Value, _old: &Value, ctx: &Context<'_>) -> FieldErrors {
        self.validate(new, ctx)
    }

    /// Store keys this object holds exclusively (allocated Service IPs and node ports),
    /// written and removed in the same transaction as the object.
    fn claims(&self, _obj: &Value) -> Vec<String> {
        Vec::new()
    }

    /// Whether the server chose some claimed value for this request (then a collision
    /// means "choose again", not "invalid").
    fn allocates(&self, _request: &Value) -> bool {
        false
    }

    /// The field errors for `taken`: the claims of `obj` another object already holds.
    fn claim_conflict(&self, _obj: &Value, _taken: &[String]) -> FieldErrors {
        FieldErrors::default()
    }

    /// Extra field-selector fields beyond `metadata.name` and `metadata.namespace`.
    fn fields(&self, _obj: &Value) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// Table columns after NAME (AGE is added by the default row if listed here).
    fn columns(&self) -> Vec<Column> {
        vec![Column::name_column(), Column::age_column()]
    }

    /// Cells matching `columns()`.
    fn row(&self, obj: &Value) -> Vec<Value> {
        vec![
            Value::String(skiff_api::meta::name(obj).to_string()),
            Value::String(crate::table::age(obj)),
        ]
    }

    /// Where `/scale` finds replicas and the selector (for resources that have it).
    fn scale_paths(&self) -> ScalePaths {
        ScalePaths::default()
    }

    /// The kind's OpenAPI v3 schema when it comes from a CRD (built-in kinds' come from
    /// k8s-openapi).
    fn openapi_schema(&self) -> Option<&Value> {
        None
    }
}

/// Hooks for resources with nothing special.
pub struct Plain;

impl Hooks for Plain {}

/// The selectable fields of an object: `metadata.name`, `metadata.namespace`, and the
/// resource's own.
pub fn selectable_fields(hooks: &dyn Hooks, obj: &Value) -> BTreeMap<&'static str, String> {
    let mut fields = BTreeMap::new();
    fields.insert("metadata.name", skiff_api::meta::name(obj).to_string());
    fields.insert(
        "metadata.namespace",
        skiff_api::meta::namespace(obj).to_string(),
    );
    fields.extend(hooks.fields(obj));
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn typed_round_trip_reports_unknown_fields_and_type_errors() {
        let codec = Typed::<k8s_openapi::api::core::v1::ConfigMap>::new();
        let (out, unknown) = codec
            .normalize(json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "c", "labels": {}, "bogus": 1},
                "data": {"a": "b"}, "extra": {"x": 1}, "binaryData": null
            }))
            .unwrap();
        assert_eq!(out["data"]["a"], "b");
        assert!(out.get("extra").is_none());
        assert_eq!(
            unknown,
            vec!["extra".to_string(), "metadata.bogus".to_string()]
        );
        let err =
            codec.normalize(json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": 1}}));
        assert!(err.is_err());
    }
}
