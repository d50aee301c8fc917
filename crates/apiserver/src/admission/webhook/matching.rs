//! Which webhooks a request goes to (pure): a webhook's `rules` (operations, groups,
//! versions, resources with subresources and `*`, scope) and `matchPolicy`. Selectors
//! are applied by the caller, which knows the namespace's labels.

use serde_json::Value;

use crate::admission::Attributes;

fn strings(v: &Value, field: &str) -> Vec<String> {
    v.get(field)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

fn any_or(list: &[String], value: &str) -> bool {
    list.iter().any(|v| v == "*" || v == value)
}

/// Whether a rule's resource entry covers `resource` with `subresource`: `pods` (the
/// main resource only), `pods/status`, `pods/*`, `*` (every main resource), `*/status`,
/// `*/*` (everything).
pub fn resource_matches(entry: &str, resource: &str, subresource: &str) -> bool {
    let (r, s) = match entry.split_once('/') {
        Some((r, s)) => (r, Some(s)),
        None => (entry, None),
    };
    let resource_ok = r == "*" || r == resource;
    match (s, subresource.is_empty()) {
        (None, true) => resource_ok,
        (None, false) => false,
        // `pods/*` and `*/*` include the main resource, as upstream.
        (Some(s), true) => s == "*" && resource_ok,
        (Some(s), false) => resource_ok && (s == "*" || s == subresource),
    }
}

/// Whether one rule (`RuleWithOperations`) covers the request.
pub fn rule_matches(rule: &Value, attrs: &Attributes, equivalent: bool) -> bool {
    let scope = rule.get("scope").and_then(Value::as_str).unwrap_or("*");
    let namespaced = !attrs.namespace.is_empty();
    let scope_ok = match scope {
        "Cluster" => !namespaced,
        "Namespaced" => namespaced,
        _ => true,
    };
    scope_ok
        && any_or(&strings(rule, "operations"), attrs.operation.as_str())
        && any_or(&strings(rule, "apiGroups"), &attrs.group)
        // Equivalent: the same resource reached through another version matches too.
        && (equivalent || any_or(&strings(rule, "apiVersions"), &attrs.version))
        && strings(rule, "resources")
            .iter()
            .any(|e| resource_matches(e, &attrs.resource, &attrs.subresource))
}

/// Whether any of a webhook's rules covers the request.
pub fn webhook_matches(hook: &Value, attrs: &Attributes) -> bool {
    let equivalent = hook.get("matchPolicy").and_then(Value::as_str) != Some("Exact");
    hook.get("rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|r| rule_matches(r, attrs, equivalent))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::Operation;
    use crate::auth::UserInfo;
    use serde_json::json;

    fn attrs(op: Operation, version: &str, resource: &str, sub: &str, ns: &str) -> Attributes {
        Attributes {
            operation: op,
            group: "apps".into(),
            version: version.into(),
            resource: resource.into(),
            subresource: sub.into(),
            kind: "Deployment".into(),
            namespace: ns.into(),
            name: "d".into(),
            user: UserInfo::new("u", &[]),
            old_object: None,
            dry_run: false,
            options: Value::Null,
        }
    }

    #[test]
    fn resource_entries_cover_subresources_as_upstream() {
        let cases = [
            ("pods", "pods", "", true),
            ("pods", "pods", "status", false),
            ("pods/status", "pods", "status", true),
            ("pods/status", "pods", "", false),
            ("pods/*", "pods", "", true),
            ("pods/*", "pods", "log", true),
            ("*", "pods", "", true),
            ("*", "pods", "status", false),
            ("*/status", "deployments", "status", true),
            ("*/*", "deployments", "scale", true),
            ("services", "pods", "", false),
        ];
        for (entry, r, s, want) in cases {
            assert_eq!(resource_matches(entry, r, s), want, "{entry} vs {r}/{s}");
        }
    }

    #[test]
    fn rules_check_operation_group_version_and_scope() {
        let rule = json!({"operations": ["CREATE"], "apiGroups": ["apps"], "apiVersions": ["v1beta1"],
            "resources": ["deployments"], "scope": "Namespaced"});
        let create = attrs(Operation::Create, "v1", "deployments", "", "ns");
        assert!(rule_matches(&rule, &create, true));
        assert!(
            !rule_matches(&rule, &create, false),
            "Exact needs the version"
        );
        let update = attrs(Operation::Update, "v1", "deployments", "", "ns");
        assert!(!rule_matches(&rule, &update, true));
        let cluster = attrs(Operation::Create, "v1", "deployments", "", "");
        assert!(!rule_matches(&rule, &cluster, true));
    }
}
