//! PodSecurity: the Pod Security Standards (privileged, baseline, restricted) a
//! namespace asks for with its labels `pod-security.kubernetes.io/<mode>` (and
//! `<mode>-version`), as upstream's built-in admission:
//!
//! - `enforce`: a pod that breaks the level is refused (403, `violates PodSecurity
//!   "restricted:latest": reason (detail), ...`);
//! - `warn`: the client gets a `Warning:` (`would violate PodSecurity ...`);
//! - `audit`: the request gets the audit annotation `pod-security.kubernetes.io/audit-violations`.
//!
//! Pods are checked on create; workload resources with a pod template (Deployments,
//! Jobs, CronJobs, ...) on create and update in warn and audit mode only, as upstream
//! (their pods are what enforce refuses). Every version label value is evaluated with
//! the latest checks and echoed back in messages (`restricted:v1.30`).

pub mod checks;

use serde_json::Value;
use skiff_api::{meta, ApiError};

use super::{Attributes, Context, Operation, Plugin};
use checks::{describe, violations, Level};

pub struct PodSecurity;

const LABEL_PREFIX: &str = "pod-security.kubernetes.io/";

/// The level and version one mode of a namespace asks for. A value that is not a level
/// means the most restrictive one, as upstream treats invalid labels.
fn policy(
    labels: &std::collections::BTreeMap<String, String>,
    mode: &str,
) -> Option<(Level, String)> {
    let level = labels.get(&format!("{LABEL_PREFIX}{mode}"))?;
    let level = Level::parse(level).unwrap_or(Level::Restricted);
    let version = labels
        .get(&format!("{LABEL_PREFIX}{mode}-version"))
        .filter(|v| !v.is_empty())
        .cloned()
        .unwrap_or_else(|| "latest".to_string());
    Some((level, version))
}

/// Where the pod template of a workload resource is.
fn template_path(group: &str, resource: &str) -> Option<&'static str> {
    match (group, resource) {
        ("", "replicationcontrollers") | ("", "podtemplates") => {
            Some(if resource == "podtemplates" {
                "/template"
            } else {
                "/spec/template"
            })
        }
        ("apps", "deployments" | "replicasets" | "statefulsets" | "daemonsets") => {
            Some("/spec/template")
        }
        ("batch", "jobs") => Some("/spec/template"),
        ("batch", "cronjobs") => Some("/spec/jobTemplate/spec/template"),
        _ => None,
    }
}

/// `restricted:latest` and what breaks it, or None when the pod complies.
fn evaluate(level: Level, version: &str, spec: &Value, annotations: &Value) -> Option<String> {
    let broken = violations(level, spec, annotations);
    (!broken.is_empty()).then(|| {
        format!(
            "PodSecurity \"{}:{version}\": {}",
            level.as_str(),
            describe(&broken)
        )
    })
}

#[async_trait::async_trait]
impl Plugin for PodSecurity {
    fn name(&self) -> &'static str {
        "PodSecurity"
    }

    async fn validate(
        &self,
        ctx: &Context<'_>,
        attrs: &Attributes,
        obj: &Value,
    ) -> Result<(), ApiError> {
        let is_pod = attrs.is("", "pods");
        let template = template_path(&attrs.group, &attrs.resource);
        let wanted = match attrs.operation {
            Operation::Create => is_pod || template.is_some(),
            Operation::Update => template.is_some() && attrs.subresource.is_empty(),
            _ => false,
        };
        if !wanted || attrs.namespace.is_empty() {
            return Ok(());
        }
        let Some(ns) = super::cached(ctx.app, ("", "v1", "namespaces"), None, &attrs.namespace)
        else {
            return Ok(());
        };
        let labels = meta::labels(&ns);
        if !labels.keys().any(|k| k.starts_with(LABEL_PREFIX)) {
            return Ok(());
        }
        let pod_like = if is_pod {
            Some(obj)
        } else {
            template.and_then(|p| obj.pointer(p))
        };
        let Some(pod_like) = pod_like else {
            return Ok(());
        };
        let spec = pod_like.get("spec").cloned().unwrap_or(Value::Null);
        let annotations = pod_like
            .pointer("/metadata/annotations")
            .cloned()
            .unwrap_or(Value::Null);
        if is_pod {
            if let Some((level, version)) = policy(&labels, "enforce") {
                if let Some(why) = evaluate(level, &version, &spec, &annotations) {
                    return Err(attrs.forbidden(&format!("violates {why}")));
                }
            }
        }
        if let Some((level, version)) = policy(&labels, "warn") {
            if let Some(why) = evaluate(level, &version, &spec, &annotations) {
                ctx.warn(format!("would violate {why}"));
            }
        }
        if let Some((level, version)) = policy(&labels, "audit") {
            if let Some(why) = evaluate(level, &version, &spec, &annotations) {
                ctx.annotate(
                    "pod-security.kubernetes.io/audit-violations",
                    format!("would violate {why}"),
                );
            }
        }
        Ok(())
    }
}
