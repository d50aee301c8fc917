//! Hooks of admissionregistration.k8s.io/v1: MutatingWebhookConfiguration and
//! ValidatingWebhookConfiguration. Upstream's defaults (failurePolicy Fail, matchPolicy
//! Equivalent, empty selectors, timeoutSeconds 10, rule scope `*`, service port 443,
//! reinvocationPolicy Never) and validation.

use std::collections::BTreeSet;

use serde_json::{json, Value};
use skiff_api::validation::{check, dns1123_subdomain};
use skiff_api::{FieldError, FieldErrors};

use super::common::{array_at, set_default, str_at, subdomain_name, validate_label_selector};
use super::{Column, Context, Hooks};
use crate::table::age;

pub struct WebhookConfigurations {
    pub mutating: bool,
}

fn default_webhooks(obj: &mut Value, mutating: bool) {
    let Some(hooks) = obj.get_mut("webhooks").and_then(Value::as_array_mut) else {
        return;
    };
    for hook in hooks {
        if !hook.is_object() {
            continue;
        }
        set_default(hook, "failurePolicy", json!("Fail"));
        set_default(hook, "matchPolicy", json!("Equivalent"));
        set_default(hook, "namespaceSelector", json!({}));
        set_default(hook, "objectSelector", json!({}));
        set_default(hook, "timeoutSeconds", json!(10));
        if mutating {
            set_default(hook, "reinvocationPolicy", json!("Never"));
        }
        if let Some(service) = hook
            .pointer_mut("/clientConfig/service")
            .filter(|s| s.is_object())
        {
            set_default(service, "port", json!(443));
        }
        if let Some(rules) = hook.get_mut("rules").and_then(Value::as_array_mut) {
            for rule in rules.iter_mut().filter(|r| r.is_object()) {
                set_default(rule, "scope", json!("*"));
            }
        }
    }
}

/// A webhook name: a DNS subdomain with at least three segments (`a.b.c`).
fn webhook_name_problems(name: &str) -> Vec<String> {
    let mut problems = dns1123_subdomain(name);
    if problems.is_empty() && name.split('.').count() < 3 {
        problems.push("should be a domain with at least three segments separated by dots".into());
    }
    problems
}

fn validate_strings(list: &[Value], path: &str, what: &str, errs: &mut FieldErrors) {
    if list.is_empty() {
        errs.push(FieldError::required(path, ""));
    }
    let has_star = list.iter().any(|v| v.as_str() == Some("*"));
    if has_star && list.len() > 1 {
        errs.push(FieldError::invalid(
            path,
            &Value::Array(list.to_vec()),
            format!("if '*' is present, must not specify other {what}"),
        ));
    }
}

fn validate_rule(rule: &Value, path: &str, errs: &mut FieldErrors) {
    let ops = array_at(rule, "/operations");
    validate_strings(ops, &format!("{path}.operations"), "operations", errs);
    for (i, op) in ops.iter().enumerate() {
        let op = op.as_str().unwrap_or("");
        if !matches!(op, "*" | "CREATE" | "UPDATE" | "DELETE" | "CONNECT") {
            errs.push(FieldError::not_supported(
                format!("{path}.operations[{i}]"),
                &json!(op),
                &["*", "CONNECT", "CREATE", "DELETE", "UPDATE"],
            ));
        }
    }
    validate_strings(
        array_at(rule, "/apiGroups"),
        &format!("{path}.apiGroups"),
        "apiGroups",
        errs,
    );
    validate_strings(
        array_at(rule, "/apiVersions"),
        &format!("{path}.apiVersions"),
        "apiVersions",
        errs,
    );
    let resources = array_at(rule, "/resources");
    if resources.is_empty() {
        errs.push(FieldError::required(format!("{path}.resources"), ""));
    }
    for (i, r) in resources.iter().enumerate() {
        let r = r.as_str().unwrap_or("");
        if r.is_empty() {
            errs.push(FieldError::required(format!("{path}.resources[{i}]"), ""));
        } else if r.matches('/').count() > 1 {
            errs.push(FieldError::invalid(
                format!("{path}.resources[{i}]"),
                &json!(r),
                "must be in the form of resource[/subresource]",
            ));
        }
    }
    let scope = str_at(rule, "/scope");
    if !matches!(scope, "" | "*" | "Cluster" | "Namespaced") {
        errs.push(FieldError::not_supported(
            format!("{path}.scope"),
            &json!(scope),
            &["*", "Cluster", "Namespaced"],
        ));
    }
}

fn validate_client_config(cc: &Value, path: &str, errs: &mut FieldErrors) {
    let url = cc.get("url").and_then(Value::as_str);
    let service = cc.get("service").filter(|s| !s.is_null());
    match (url, service) {
        (Some(_), Some(_)) => errs.push(FieldError::required(
            path,
            "exactly one of url or service is required",
        )),
        (None, None) => errs.push(FieldError::required(
            path,
            "exactly one of url or service is required",
        )),
        (Some(url), None) => {
            let p = format!("{path}.url");
            match url.strip_prefix("https://") {
                None => errs.push(FieldError::invalid(
                    &p,
                    &json!(url),
                    "'https' is the only allowed URL scheme",
                )),
                Some(rest) => {
                    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
                    if host.is_empty() {
                        errs.push(FieldError::invalid(
                            &p,
                            &json!(url),
                            "host must be specified",
                        ));
                    }
                    if url.contains('#') {
                        errs.push(FieldError::invalid(
                            &p,
                            &json!(url),
                            "fragments are not permitted",
                        ));
                    }
                    if url.contains('?') {
                        errs.push(FieldError::invalid(
                            &p,
                            &json!(url),
                            "query parameters are not permitted",
                        ));
                    }
                    if host.contains('@') {
                        errs.push(FieldError::invalid(
                            &p,
                            &json!(url),
                            "user information is not permitted in the URL",
                        ));
                    }
                }
            }
        }
        (None, Some(svc)) => {
            let p = format!("{path}.service");
            if str_at(svc, "/name").is_empty() {
                errs.push(FieldError::required(
                    format!("{p}.name"),
                    "service name is required",
                ));
            }
            if str_at(svc, "/namespace").is_empty() {
                errs.push(FieldError::required(
                    format!("{p}.namespace"),
                    "service namespace is required",
                ));
            }
            if let Some(port) = svc.get("port").and_then(Value::as_i64) {
                if !(1..=65535).contains(&port) {
                    errs.push(FieldError::invalid(
                        format!("{p}.port"),
                        &json!(port),
                        "port is not valid: must be between 1 and 65535, inclusive",
                    ));
                }
            }
            if let Some(sub) = svc.get("path").and_then(Value::as_str) {
                if !sub.starts_with('/') {
                    errs.push(FieldError::invalid(
                        format!("{p}.path"),
                        &json!(sub),
                        "must start with a '/'",
                    ));
                }
            }
        }
    }
}

fn validate_webhook(hook: &Value, path: &str, mutating: bool, errs: &mut FieldErrors) {
    errs.extend(check(
        &format!("{path}.name"),
        str_at(hook, "/name"),
        webhook_name_problems(str_at(hook, "/name")),
    ));
    for (i, rule) in array_at(hook, "/rules").iter().enumerate() {
        validate_rule(rule, &format!("{path}.rules[{i}]"), errs);
    }
    let one_of = |field: &str, value: &str, allowed: &[&str], errs: &mut FieldErrors| {
        if !value.is_empty() && !allowed.contains(&value) {
            errs.push(FieldError::not_supported(
                format!("{path}.{field}"),
                &json!(value),
                allowed,
            ));
        }
    };
    one_of(
        "failurePolicy",
        str_at(hook, "/failurePolicy"),
        &["Fail", "Ignore"],
        errs,
    );
    one_of(
        "matchPolicy",
        str_at(hook, "/matchPolicy"),
        &["Equivalent", "Exact"],
        errs,
    );
    if mutating {
        one_of(
            "reinvocationPolicy",
            str_at(hook, "/reinvocationPolicy"),
            &["IfNeeded", "Never"],
            errs,
        );
    }
    let side = str_at(hook, "/sideEffects");
    if side.is_empty() {
        errs.push(FieldError::required(
            format!("{path}.sideEffects"),
            "must specify one of None, NoneOnDryRun",
        ));
    } else {
        one_of("sideEffects", side, &["None", "NoneOnDryRun"], errs);
    }
    let versions = array_at(hook, "/admissionReviewVersions");
    if versions.is_empty() {
        errs.push(FieldError::required(
            format!("{path}.admissionReviewVersions"),
            "must specify one of v1, v1beta1",
        ));
    } else if !versions
        .iter()
        .any(|v| matches!(v.as_str(), Some("v1" | "v1beta1")))
    {
        errs.push(FieldError::invalid(
            format!("{path}.admissionReviewVersions"),
            &Value::Array(versions.to_vec()),
            "must include at least one of v1, v1beta1",
        ));
    }
    if let Some(t) = hook.get("timeoutSeconds").and_then(Value::as_i64) {
        if !(1..=30).contains(&t) {
            errs.push(FieldError::invalid(
                format!("{path}.timeoutSeconds"),
                &json!(t),
                "the timeout value must be between 1 and 30 seconds",
            ));
        }
    }
    for sel in ["namespaceSelector", "objectSelector"] {
        if let Some(s) = hook.get(sel).filter(|s| !s.is_null()) {
            validate_label_selector(s, &format!("{path}.{sel}"), errs);
        }
    }
    match hook.get("clientConfig") {
        Some(cc) if cc.is_object() => {
            validate_client_config(cc, &format!("{path}.clientConfig"), errs)
        }
        _ => errs.push(FieldError::required(format!("{path}.clientConfig"), "")),
    }
}

impl Hooks for WebhookConfigurations {
    fn prepare_create(&self, obj: &mut Value, _ctx: &Context<'_>) {
        default_webhooks(obj, self.mutating);
    }

    fn prepare_update(&self, new: &mut Value, _old: &Value) {
        default_webhooks(new, self.mutating);
    }

    fn validate(&self, obj: &Value, _ctx: &Context<'_>) -> FieldErrors {
        let mut errs = subdomain_name(obj);
        let mut seen = BTreeSet::new();
        for (i, hook) in array_at(obj, "/webhooks").iter().enumerate() {
            let path = format!("webhooks[{i}]");
            let name = str_at(hook, "/name");
            if !name.is_empty() && !seen.insert(name.to_string()) {
                errs.push(FieldError::duplicate(format!("{path}.name"), &json!(name)));
            }
            validate_webhook(hook, &path, self.mutating, &mut errs);
        }
        errs
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name_column(),
            Column::new(
                "Webhooks",
                "integer",
                "Webhooks is a list of webhooks and the affected resources and operations.",
            ),
            Column::age_column(),
        ]
    }

    fn row(&self, obj: &Value) -> Vec<Value> {
        vec![
            json!(skiff_api::meta::name(obj)),
            json!(array_at(obj, "/webhooks").len()),
            json!(age(obj)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(hook: Value) -> Value {
        json!({"metadata": {"name": "cfg"}, "webhooks": [hook]})
    }

    #[test]
    fn defaults_fill_what_upstream_fills() {
        let mut obj = config(
            json!({"name": "a.b.c", "clientConfig": {"service": {"namespace": "n", "name": "s"}},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]}),
        );
        default_webhooks(&mut obj, true);
        let h = &obj["webhooks"][0];
        assert_eq!(h["failurePolicy"], "Fail");
        assert_eq!(h["timeoutSeconds"], 10);
        assert_eq!(h["reinvocationPolicy"], "Never");
        assert_eq!(h["clientConfig"]["service"]["port"], 443);
        assert_eq!(h["rules"][0]["scope"], "*");
    }

    #[test]
    fn validation_names_the_broken_fields() {
        let hooks = WebhookConfigurations { mutating: false };
        let obj = config(json!({"name": "short", "clientConfig": {"url": "http://x"},
            "timeoutSeconds": 31, "rules": [{"operations": ["EAT"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]}));
        let errs = hooks.validate(&obj, &crate::resources::test_ctx());
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "webhooks[0].name",
                "webhooks[0].rules[0].operations[0]",
                "webhooks[0].sideEffects",
                "webhooks[0].admissionReviewVersions",
                "webhooks[0].timeoutSeconds",
                "webhooks[0].clientConfig.url",
            ]
        );
    }
}
