//! Admission: the chain of plugins every write passes after authorization, in upstream's
//! order: all mutating steps first (each may change the object), then all validating
//! steps (none may). A plugin is one module here implementing [`Plugin`]; the chain is
//! the list in [`plugins`] — adding a plugin is one module and one line there.
//!
//! Where it runs (handlers/write.rs): on create and update after the resource's own
//! prepare step and before its validation (mutating), then after validation and just
//! before the store write (validating); on delete, validating only, with the object being
//! deleted as `old_object`.
//!
//! Errors are `ApiError`s as upstream's plugins return them (mostly 403 Forbidden);
//! warnings (`Warning:` headers) and audit annotations are collected on the [`Context`].

mod limitranger;
mod namespace;
mod podsecurity;
mod priority;
mod quota;
mod storageclass;
mod tolerations;
mod webhook;

use std::collections::BTreeMap;
use std::sync::{LazyLock, Mutex};

use serde_json::Value;
use skiff_api::ApiError;

use crate::auth::UserInfo;
use crate::App;

pub use namespace::check_namespace;
pub use priority::SYSTEM_PRIORITY_CLASSES;
pub use tolerations::{DefaultTolerationSeconds, NOT_READY_TAINT, UNREACHABLE_TAINT};

/// The chain, in upstream's recommended `--enable-admission-plugins` order. Mutating
/// plugins run in this order, then validating plugins in this order.
fn plugins() -> Vec<Box<dyn Plugin>> {
    vec![
        Box::new(namespace::NamespaceLifecycle),
        Box::new(limitranger::LimitRanger),
        // ServiceAccount goes here.
        // NodeRestriction goes here.
        Box::new(podsecurity::PodSecurity),
        Box::new(priority::Priority),
        Box::new(tolerations::DefaultTolerations),
        Box::new(storageclass::DefaultStorageClass),
        Box::new(webhook::MutatingWebhooks::default()),
        Box::new(webhook::ValidatingWebhooks::default()),
        Box::new(quota::ResourceQuota),
    ]
}

static CHAIN: LazyLock<Vec<Box<dyn Plugin>>> = LazyLock::new(plugins);

/// `admission.Operation`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

impl Operation {
    /// The upper-case name webhooks and rules use.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }
}

/// What is being admitted (upstream's `admission.Attributes`).
#[derive(Clone, Debug)]
pub struct Attributes {
    pub operation: Operation,
    pub group: String,
    pub version: String,
    /// Plural resource (`pods`) and subresource (`status`, or empty).
    pub resource: String,
    pub subresource: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub user: UserInfo,
    /// The stored object for UPDATE and DELETE.
    pub old_object: Option<Value>,
    pub dry_run: bool,
    /// CreateOptions / UpdateOptions / DeleteOptions as a JSON object.
    pub options: Value,
}

impl Attributes {
    /// Whether this is the main resource (not a subresource) of `group`/`resource`.
    pub fn is(&self, group: &str, resource: &str) -> bool {
        self.group == group && self.resource == resource && self.subresource.is_empty()
    }

    /// `pods "x"`-style name for messages: the object's name or, before one is generated,
    /// empty.
    fn group_resource(&self) -> skiff_api::GroupResource {
        skiff_api::GroupResource::new(&self.group, &self.resource)
    }

    /// A 403 about this request, as upstream's `admission.NewForbidden`.
    pub fn forbidden(&self, why: &str) -> ApiError {
        ApiError::forbidden(&self.group_resource(), &self.name, why)
    }
}

/// What plugins may reach while admitting one request, and what they leave behind.
pub struct Context<'a> {
    pub app: &'a App,
    warnings: Mutex<Vec<String>>,
    annotations: Mutex<BTreeMap<String, String>>,
}

impl<'a> Context<'a> {
    pub fn new(app: &'a App) -> Self {
        Self {
            app,
            warnings: Mutex::new(Vec::new()),
            annotations: Mutex::new(BTreeMap::new()),
        }
    }

    /// Adds a warning the client sees as a `Warning:` header.
    pub fn warn(&self, text: impl Into<String>) {
        if let Ok(mut w) = self.warnings.lock() {
            w.push(text.into());
        }
    }

    /// Records an audit annotation (kept until an audit backend consumes it).
    pub fn annotate(&self, key: impl Into<String>, value: impl Into<String>) {
        if let Ok(mut a) = self.annotations.lock() {
            a.insert(key.into(), value.into());
        }
    }

    pub fn warnings(&self) -> Vec<String> {
        self.warnings.lock().map(|w| w.clone()).unwrap_or_default()
    }

    pub fn annotations(&self) -> BTreeMap<String, String> {
        self.annotations
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default()
    }
}

/// One admission plugin. Both steps default to "nothing to do".
#[async_trait::async_trait]
pub trait Plugin: Send + Sync {
    fn name(&self) -> &'static str;

    /// Mutating step: may change `obj` (the object to be stored).
    async fn mutate(
        &self,
        _ctx: &Context<'_>,
        _attrs: &Attributes,
        _obj: &mut Value,
    ) -> Result<(), ApiError> {
        Ok(())
    }

    /// Validating step: may only refuse. `obj` is `Null` for DELETE.
    async fn validate(
        &self,
        _ctx: &Context<'_>,
        _attrs: &Attributes,
        _obj: &Value,
    ) -> Result<(), ApiError> {
        Ok(())
    }
}

/// Runs every plugin's mutating step, in order.
pub async fn mutate(
    ctx: &Context<'_>,
    attrs: &Attributes,
    obj: &mut Value,
) -> Result<(), ApiError> {
    for plugin in CHAIN.iter() {
        plugin.mutate(ctx, attrs, obj).await?;
    }
    Ok(())
}

/// Runs every plugin's validating step, in order.
pub async fn validate(ctx: &Context<'_>, attrs: &Attributes, obj: &Value) -> Result<(), ApiError> {
    for plugin in CHAIN.iter() {
        plugin.validate(ctx, attrs, obj).await?;
    }
    Ok(())
}

/// The names of the plugins in the chain, in order (for `/metrics` and tests).
pub fn plugin_names() -> Vec<&'static str> {
    CHAIN.iter().map(|p| p.name()).collect()
}

/// Looks an object up in the watch cache: `(group, version, plural)`, namespace, name.
pub(crate) fn cached(
    app: &App,
    gvr: (&str, &str, &str),
    namespace: Option<&str>,
    name: &str,
) -> Option<Value> {
    let def = crate::resources::find(gvr.0, gvr.1, gvr.2)?;
    let cache = app.cache.resource(def)?;
    let key = skiff_store::keys::object_key(def.plural, namespace, name);
    cache.get(&key).map(|o| o.value())
}

/// Every cached object of a resource in one namespace (all namespaces with `None`).
pub(crate) fn cached_list(
    app: &App,
    gvr: (&str, &str, &str),
    namespace: Option<&str>,
) -> Vec<Value> {
    let Some(cache) =
        crate::resources::find(gvr.0, gvr.1, gvr.2).and_then(|def| app.cache.resource(def))
    else {
        return Vec::new();
    };
    let filter = crate::watchcache::Filter {
        namespace: namespace.unwrap_or("").to_string(),
        ..Default::default()
    };
    let (all, _) = cache.list(&filter);
    all.iter().map(|o| o.value()).collect()
}
