//! Dynamic admission: the MutatingAdmissionWebhook and ValidatingAdmissionWebhook
//! plugins, calling the webhooks of the cluster's Mutating/ValidatingWebhookConfigurations
//! (read from the watch cache) with AdmissionReview v1.
//!
//! - Which webhooks: `rules` ([`matching`]), then `namespaceSelector` (the namespace's
//!   labels; a Namespace's own labels) and `objectSelector` (the object's or old
//!   object's labels). Webhook configurations themselves are never sent to webhooks, so
//!   a broken webhook can always be removed.
//! - Mutating webhooks run one by one, ordered by configuration name, each seeing the
//!   previous one's result; a JSON patch answer changes the object. With
//!   `reinvocationPolicy: IfNeeded` a webhook runs once more if a later one changed the
//!   object. Validating webhooks run all at once.
//! - A webhook that cannot be reached, is slower than its `timeoutSeconds`, or answers
//!   nonsense follows its `failurePolicy`: `Ignore` lets the request through (noted in an
//!   audit annotation), `Fail` refuses it (`Internal error occurred: failed calling
//!   webhook "NAME": ...`). No call outlives its timeout.
//! - A denial is `admission webhook "NAME" denied the request: <message>`.
//! - Dry-run requests reach only webhooks declaring `sideEffects` None or NoneOnDryRun
//!   (others refuse the request, as upstream; v1 validation allows no others anyway).

mod client;
mod matching;
mod review;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use skiff_api::selector::LabelSelector;
use skiff_api::{meta, ApiError};

use super::{Attributes, Context, Operation, Plugin};

/// One webhook of a configuration.
#[derive(Clone, Debug)]
struct Hook {
    name: String,
    spec: Value,
}

impl Hook {
    fn str(&self, field: &str) -> &str {
        self.spec.get(field).and_then(Value::as_str).unwrap_or("")
    }

    fn ignore_failures(&self) -> bool {
        self.str("failurePolicy") == "Ignore"
    }

    fn timeout(&self) -> u64 {
        self.spec
            .get("timeoutSeconds")
            .and_then(Value::as_u64)
            .unwrap_or(10)
            .clamp(1, 30)
    }

    fn reinvoke(&self) -> bool {
        self.str("reinvocationPolicy") == "IfNeeded"
    }
}

/// The webhooks of every configuration of one kind, parsed once per change of the
/// cached configurations (the fingerprint is their keys and resourceVersions).
type Fingerprint = Vec<(String, i64)>;
type Parsed = (Fingerprint, Arc<Vec<Hook>>);

#[derive(Default)]
struct Configs {
    parsed: Mutex<Parsed>,
}

impl Configs {
    fn load(&self, ctx: &Context<'_>, plural: &str) -> Arc<Vec<Hook>> {
        let Some(cache) = crate::resources::find("admissionregistration.k8s.io", "v1", plural)
            .and_then(|def| ctx.app.cache.resource(def))
        else {
            return Arc::default();
        };
        let (objects, _) = cache.list(&crate::watchcache::Filter::default());
        let fingerprint: Fingerprint = objects.iter().map(|o| (o.name.clone(), o.rv)).collect();
        if let Ok(guard) = self.parsed.lock() {
            if guard.0 == fingerprint {
                return guard.1.clone();
            }
        }
        // Listed in key order, which is name order: upstream's order of configurations.
        let mut hooks = Vec::new();
        for obj in &objects {
            let value = obj.value();
            for spec in value
                .get("webhooks")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                hooks.push(Hook {
                    name: spec
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .into(),
                    spec: spec.clone(),
                });
            }
        }
        let hooks = Arc::new(hooks);
        if let Ok(mut guard) = self.parsed.lock() {
            *guard = (fingerprint, hooks.clone());
        }
        hooks
    }
}

fn selector_matches(
    sel: Option<&Value>,
    labels: &std::collections::BTreeMap<String, String>,
) -> bool {
    match sel.filter(|s| !s.is_null()) {
        None => true,
        Some(s) => LabelSelector::from_object(s).is_ok_and(|s| s.matches(labels)),
    }
}

/// Whether the webhook's selectors admit this request.
fn selectors_match(ctx: &Context<'_>, hook: &Hook, attrs: &Attributes, obj: &Value) -> bool {
    let ns_selector = hook.spec.get("namespaceSelector");
    let ns_ok = if attrs.is("", "namespaces") {
        selector_matches(ns_selector, &meta::labels(obj))
            || attrs
                .old_object
                .as_ref()
                .is_some_and(|o| selector_matches(ns_selector, &meta::labels(o)))
    } else if attrs.namespace.is_empty() {
        true
    } else {
        let labels = super::cached(ctx.app, ("", "v1", "namespaces"), None, &attrs.namespace)
            .map(|ns| meta::labels(&ns))
            .unwrap_or_default();
        selector_matches(ns_selector, &labels)
    };
    if !ns_ok {
        return false;
    }
    let obj_selector = hook.spec.get("objectSelector");
    selector_matches(obj_selector, &meta::labels(obj))
        || attrs
            .old_object
            .as_ref()
            .is_some_and(|o| selector_matches(obj_selector, &meta::labels(o)))
}

fn relevant(ctx: &Context<'_>, hooks: &[Hook], attrs: &Attributes, obj: &Value) -> Vec<Hook> {
    // Never the webhook configurations themselves: a broken webhook must stay removable.
    if attrs.group == "admissionregistration.k8s.io" {
        return Vec::new();
    }
    hooks
        .iter()
        .filter(|h| matching::webhook_matches(&h.spec, attrs))
        .filter(|h| selectors_match(ctx, h, attrs, obj))
        .cloned()
        .collect()
}

/// What one call produced: nothing to do, or a patched object.
enum Outcome {
    Allowed,
    Patched(Value),
}

/// Calls one webhook, applying its failure policy to anything that is not an answer.
async fn call(
    ctx: &Context<'_>,
    hook: &Hook,
    attrs: &Attributes,
    obj: &Value,
    mutating: bool,
) -> Result<Outcome, ApiError> {
    if attrs.dry_run && !matches!(hook.str("sideEffects"), "None" | "NoneOnDryRun") {
        return Err(ApiError::bad_request(format!(
            "admission webhook {:?} does not support dry run",
            hook.name
        )));
    }
    let uid = uuid::Uuid::new_v4().to_string();
    let body = Bytes::from(review::request(&uid, attrs, Some(obj)).to_string());
    let timeout = hook.timeout();
    let ca = hook
        .spec
        .pointer("/clientConfig/caBundle")
        .and_then(Value::as_str)
        .unwrap_or("");
    let exchange = async {
        let target = client::resolve(ctx.app, &hook.spec["clientConfig"]).await?;
        let answer = client::post(&target, ca, timeout, body).await?;
        review::parse_response(&answer, &uid)
    };
    let result = match tokio::time::timeout(Duration::from_secs(timeout), exchange).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "failed to call webhook: context deadline exceeded (timeout {timeout}s)"
        )),
    };
    let response = match result {
        Ok(r) => r,
        Err(why) if hook.ignore_failures() => {
            tracing::warn!(webhook = %hook.name, "failed calling webhook, failing open: {why}");
            let phase = if mutating { "mutation" } else { "validation" };
            ctx.annotate(
                format!("failed-open.{phase}.webhook.admission.k8s.io/{}", hook.name),
                hook.name.clone(),
            );
            return Ok(Outcome::Allowed);
        }
        Err(why) => {
            return Err(ApiError::internal(format!(
                "failed calling webhook {:?}: {why}",
                hook.name
            )))
        }
    };
    for w in &response.warnings {
        ctx.warn(w.clone());
    }
    for (k, v) in &response.audit_annotations {
        ctx.annotate(format!("{}/{k}", hook.name), v.clone());
    }
    if !response.allowed {
        return Err(review::denied(&hook.name, &response.status));
    }
    match (mutating, response.patch) {
        (true, Some(patch)) => {
            let mut patched = obj.clone();
            json_patch::patch(&mut patched, &patch).map_err(|e| {
                ApiError::internal(format!(
                    "failed calling webhook {:?}: the patch could not be applied: {e}",
                    hook.name
                ))
            })?;
            Ok(Outcome::Patched(patched))
        }
        _ => Ok(Outcome::Allowed),
    }
}

/// Decodes a patched object with the resource's codec, so a webhook cannot store a
/// malformed object.
fn normalize(attrs: &Attributes, hook: &Hook, obj: Value) -> Result<Value, ApiError> {
    let Some(def) = crate::resources::find(&attrs.group, &attrs.version, &attrs.resource) else {
        return Ok(obj);
    };
    def.codec.normalize(obj).map(|(v, _)| v).map_err(|e| {
        ApiError::internal(format!(
            "failed calling webhook {:?}: the patched object is not a valid {}: {e}",
            hook.name, attrs.kind
        ))
    })
}

#[derive(Default)]
pub struct MutatingWebhooks {
    configs: Configs,
}

#[async_trait::async_trait]
impl Plugin for MutatingWebhooks {
    fn name(&self) -> &'static str {
        "MutatingAdmissionWebhook"
    }

    async fn mutate(
        &self,
        ctx: &Context<'_>,
        attrs: &Attributes,
        obj: &mut Value,
    ) -> Result<(), ApiError> {
        let all = self.configs.load(ctx, "mutatingwebhookconfigurations");
        if all.is_empty() {
            return Ok(());
        }
        let hooks = relevant(ctx, &all, attrs, obj);
        // For each IfNeeded webhook that ran: whether the object changed after it.
        let mut changed_after: Vec<(usize, bool)> = Vec::new();
        for (i, hook) in hooks.iter().enumerate() {
            if let Outcome::Patched(new) = call(ctx, hook, attrs, obj, true).await? {
                let new = normalize(attrs, hook, new)?;
                if new != *obj {
                    *obj = new;
                    for entry in changed_after.iter_mut() {
                        entry.1 = true;
                    }
                }
            }
            if hook.reinvoke() {
                changed_after.push((i, false));
            }
        }
        for (i, changed) in changed_after {
            if !changed {
                continue;
            }
            let hook = &hooks[i];
            if let Outcome::Patched(new) = call(ctx, hook, attrs, obj, true).await? {
                *obj = normalize(attrs, hook, new)?;
            }
        }
        Ok(())
    }
}

#[derive(Default)]
pub struct ValidatingWebhooks {
    configs: Configs,
}

#[async_trait::async_trait]
impl Plugin for ValidatingWebhooks {
    fn name(&self) -> &'static str {
        "ValidatingAdmissionWebhook"
    }

    async fn validate(
        &self,
        ctx: &Context<'_>,
        attrs: &Attributes,
        obj: &Value,
    ) -> Result<(), ApiError> {
        let all = self.configs.load(ctx, "validatingwebhookconfigurations");
        if all.is_empty() {
            return Ok(());
        }
        // A DELETE's selectors and review look at the object being deleted.
        let subject = match (attrs.operation, &attrs.old_object) {
            (Operation::Delete, Some(old)) => old,
            _ => obj,
        };
        let hooks = relevant(ctx, &all, attrs, subject);
        let calls = hooks.iter().map(|h| call(ctx, h, attrs, obj, false));
        for result in futures::future::join_all(calls).await {
            result?;
        }
        Ok(())
    }
}
