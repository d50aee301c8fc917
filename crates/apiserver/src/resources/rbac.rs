//! Hooks of rbac.authorization.k8s.io/v1: Role, ClusterRole, RoleBinding and
//! ClusterRoleBinding. Stored and checked as upstream; enforcement comes with the RBAC
//! authorizer. RBAC names need only be valid path segments (the generic metadata check).

use serde_json::{json, Value};
use skiff_api::validation::{check, dns1123_subdomain};
use skiff_api::{FieldError, FieldErrors};

use super::common::{
    array_at, created_at_columns, created_at_row, name_cell, set_default, str_at,
    validate_label_selector,
};
use super::{Column, Context, Hooks};
use crate::table::age;

const GROUP: &str = "rbac.authorization.k8s.io";

/// Problems with a name used inside RBAC objects (upstream's `ValidateRBACName`).
fn path_segment_problems(name: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if name == "." || name == ".." {
        errs.push(format!("may not be '{name}'"));
    }
    for bad in ["/", "%"] {
        if name.contains(bad) {
            errs.push(format!("may not contain '{bad}'"));
        }
    }
    errs
}

fn validate_rules(obj: &Value, namespaced: bool, errs: &mut FieldErrors) {
    for (i, rule) in array_at(obj, "/rules").iter().enumerate() {
        let p = format!("rules[{i}]");
        if array_at(rule, "/verbs").is_empty() {
            errs.push(FieldError::required(
                format!("{p}.verbs"),
                "verbs must contain at least one value",
            ));
        }
        let urls = array_at(rule, "/nonResourceURLs");
        if !urls.is_empty() {
            if namespaced {
                errs.push(FieldError::invalid(
                    format!("{p}.nonResourceURLs"),
                    &json!(urls),
                    "namespaced rules cannot apply to non-resource URLs",
                ));
            }
            let resource_parts = ["apiGroups", "resources", "resourceNames"]
                .iter()
                .any(|k| !array_at(rule, &format!("/{k}")).is_empty());
            if resource_parts {
                errs.push(FieldError::invalid(
                    format!("{p}.nonResourceURLs"),
                    &json!(urls),
                    "rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
            continue;
        }
        if array_at(rule, "/apiGroups").is_empty() {
            errs.push(FieldError::required(
                format!("{p}.apiGroups"),
                "resource rules must supply at least one api group",
            ));
        }
        if array_at(rule, "/resources").is_empty() {
            errs.push(FieldError::required(
                format!("{p}.resources"),
                "resource rules must supply at least one resource",
            ));
        }
    }
}

pub struct Roles;

impl Hooks for Roles {
    fn validate(&self, obj: &Value, _ctx: &Context<'_>) -> FieldErrors {
        let mut errs = FieldErrors::default();
        validate_rules(obj, true, &mut errs);
        errs
    }

    fn columns(&self) -> Vec<Column> {
        created_at_columns()
    }

    fn row(&self, obj: &Value) -> Vec<Value> {
        created_at_row(obj)
    }
}

pub struct ClusterRoles;

impl Hooks for ClusterRoles {
    fn validate(&self, obj: &Value, _ctx: &Context<'_>) -> FieldErrors {
        let mut errs = FieldErrors::default();
        validate_rules(obj, false, &mut errs);
        if let Some(rule) = obj.get("aggregationRule").filter(|r| !r.is_null()) {
            let selectors = array_at(rule, "/clusterRoleSelectors");
            if selectors.is_empty() {
                errs.push(FieldError::required(
                    "aggregationRule.clusterRoleSelectors",
                    "at least one clusterRoleSelector required if aggregationRule is non-nil",
                ));
            }
            for (i, sel) in selectors.iter().enumerate() {
                validate_label_selector(
                    sel,
                    &format!("aggregationRule.clusterRoleSelectors[{i}]"),
                    &mut errs,
                );
            }
        }
        errs
    }

    fn columns(&self) -> Vec<Column> {
        created_at_columns()
    }

    fn row(&self, obj: &Value) -> Vec<Value> {
        created_at_row(obj)
    }
}

/// Upstream's v1 defaults: the roleRef's group, and User/Group subjects' group.
fn default_binding(obj: &mut Value) {
    set_default(obj, "roleRef", json!({}));
    if str_at(obj, "/roleRef/apiGroup").is_empty() {
        obj["roleRef"]["apiGroup"] = json!(GROUP);
    }
    for s in obj
        .get_mut("subjects")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if str_at(s, "/apiGroup").is_empty() {
            let group = match str_at(s, "/kind") {
                "User" | "Group" => GROUP,
                _ => "",
            };
            s["apiGroup"] = json!(group);
        }
    }
}

fn validate_binding(obj: &Value, namespaced: bool, errs: &mut FieldErrors) {
    let role_ref = obj.get("roleRef").unwrap_or(&Value::Null);
    let group = str_at(role_ref, "/apiGroup");
    if group != GROUP {
        errs.push(FieldError::not_supported(
            "roleRef.apiGroup",
            &json!(group),
            &[GROUP],
        ));
    }
    let kind = str_at(role_ref, "/kind");
    let kinds: &[&str] = if namespaced {
        &["Role", "ClusterRole"]
    } else {
        &["ClusterRole"]
    };
    if !kinds.contains(&kind) {
        errs.push(FieldError::not_supported(
            "roleRef.kind",
            &json!(kind),
            kinds,
        ));
    }
    let name = str_at(role_ref, "/name");
    if name.is_empty() {
        errs.push(FieldError::required("roleRef.name", ""));
    } else {
        errs.extend(check("roleRef.name", name, path_segment_problems(name)));
    }
    for (i, s) in array_at(obj, "/subjects").iter().enumerate() {
        let p = format!("subjects[{i}]");
        let name = str_at(s, "/name");
        if name.is_empty() {
            errs.push(FieldError::required(format!("{p}.name"), ""));
        }
        let group = str_at(s, "/apiGroup");
        match str_at(s, "/kind") {
            "ServiceAccount" => {
                if !name.is_empty() {
                    errs.extend(check(&format!("{p}.name"), name, dns1123_subdomain(name)));
                }
                if !group.is_empty() {
                    errs.push(FieldError::not_supported(
                        format!("{p}.apiGroup"),
                        &json!(group),
                        &[""],
                    ));
                }
                if !namespaced && str_at(s, "/namespace").is_empty() {
                    errs.push(FieldError::required(format!("{p}.namespace"), ""));
                }
            }
            "User" | "Group" => {
                if group != GROUP {
                    errs.push(FieldError::not_supported(
                        format!("{p}.apiGroup"),
                        &json!(group),
                        &[GROUP],
                    ));
                }
            }
            other => errs.push(FieldError::not_supported(
                format!("{p}.kind"),
                &json!(other),
                &["ServiceAccount", "User", "Group"],
            )),
        }
    }
}

fn validate_binding_update(new: &Value, old: &Value, errs: &mut FieldErrors) {
    let (n, o) = (
        new.get("roleRef").unwrap_or(&Value::Null),
        old.get("roleRef").unwrap_or(&Value::Null),
    );
    if n != o {
        errs.push(FieldError::invalid("roleRef", n, "cannot change roleRef"));
    }
}

fn binding_columns(cluster: bool) -> Vec<Column> {
    let [users, groups, sas] = if cluster {
        [
            "Users in the clusterRoleBinding",
            "Groups in the clusterRoleBinding",
            "ServiceAccounts in the clusterRoleBinding",
        ]
    } else {
        [
            "Users in the roleBinding",
            "Groups in the roleBinding",
            "ServiceAccounts in the roleBinding",
        ]
    };
    vec![
        Column::name_column(),
        Column::new("Role", "string", "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace. If the RoleRef cannot be resolved, the Authorizer must return an error."),
        Column::age_column(),
        Column::wide("Users", "string", users),
        Column::wide("Groups", "string", groups),
        Column::wide("ServiceAccounts", "string", sas),
    ]
}

fn binding_row(obj: &Value) -> Vec<Value> {
    let subjects = array_at(obj, "/subjects");
    let of_kind = |kind: &str| -> String {
        subjects
            .iter()
            .filter(|s| str_at(s, "/kind") == kind)
            .map(|s| {
                if kind == "ServiceAccount" {
                    format!("{}/{}", str_at(s, "/namespace"), str_at(s, "/name"))
                } else {
                    str_at(s, "/name").to_string()
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    vec![
        name_cell(obj),
        json!(format!(
            "{}/{}",
            str_at(obj, "/roleRef/kind"),
            str_at(obj, "/roleRef/name")
        )),
        json!(age(obj)),
        json!(of_kind("User")),
        json!(of_kind("Group")),
        json!(of_kind("ServiceAccount")),
    ]
}

/// Role bindings (`cluster: false`) and cluster role bindings (`cluster: true`): the
/// same rules, but a cluster-wide binding may only refer to a ClusterRole.
pub struct Bindings {
    pub cluster: bool,
}

impl Hooks for Bindings {
    fn prepare_create(&self, obj: &mut Value, _ctx: &Context<'_>) {
        default_binding(obj);
    }

    fn prepare_update(&self, new: &mut Value, _old: &Value) {
        default_binding(new);
    }

    fn validate(&self, obj: &Value, _ctx: &Context<'_>) -> FieldErrors {
        let mut errs = FieldErrors::default();
        validate_binding(obj, !self.cluster, &mut errs);
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value, ctx: &Context<'_>) -> FieldErrors {
        let mut errs = self.validate(new, ctx);
        validate_binding_update(new, old, &mut errs);
        errs
    }

    fn columns(&self) -> Vec<Column> {
        binding_columns(self.cluster)
    }

    fn row(&self, obj: &Value) -> Vec<Value> {
        binding_row(obj)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CTX: Context<'static> = Context {
        namespace: "default",
        service_cidr: None,
    };

    #[test]
    fn role_rules_need_verbs_groups_and_resources() {
        let ok = json!({"metadata": {"name": "reader"}, "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]});
        assert!(Roles.validate(&ok, &CTX).is_empty());
        let bad = json!({"metadata": {"name": "r"}, "rules": [{}, {"verbs": ["get"], "nonResourceURLs": ["/healthz"]}]});
        let errs = Roles.validate(&bad, &CTX).to_string();
        for want in [
            "rules[0].verbs: Required value: verbs must contain at least one value",
            "rules[0].apiGroups: Required value: resource rules must supply at least one api group",
            "rules[0].resources: Required value: resource rules must supply at least one resource",
            "rules[1].nonResourceURLs: Invalid value: [\"/healthz\"]: namespaced rules cannot apply to non-resource URLs",
        ] {
            assert!(errs.contains(want), "{want} not in {errs}");
        }
        let cluster = json!({"metadata": {"name": "health"}, "rules": [{"verbs": ["get"], "nonResourceURLs": ["/healthz"]}]});
        assert!(ClusterRoles.validate(&cluster, &CTX).is_empty());
    }

    #[test]
    fn cluster_role_aggregation_needs_selectors() {
        let obj =
            json!({"metadata": {"name": "agg"}, "aggregationRule": {"clusterRoleSelectors": []}});
        assert_eq!(
            ClusterRoles.validate(&obj, &CTX).to_string(),
            "aggregationRule.clusterRoleSelectors: Required value: at least one clusterRoleSelector required if aggregationRule is non-nil"
        );
        let ok = json!({"metadata": {"name": "agg"}, "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"rbac.example.com/aggregate-to-monitoring": "true"}}]}});
        assert!(ClusterRoles.validate(&ok, &CTX).is_empty());
    }

    #[test]
    fn bindings_default_groups_and_check_subjects() {
        let mut rb = json!({"metadata": {"name": "rb"}, "roleRef": {"kind": "Role", "name": "reader"},
            "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "build", "namespace": "ci"}]});
        Bindings { cluster: false }.prepare_create(&mut rb, &CTX);
        assert_eq!(rb["roleRef"]["apiGroup"], GROUP);
        assert_eq!(rb["subjects"][0]["apiGroup"], GROUP);
        assert_eq!(rb["subjects"][1]["apiGroup"], "");
        assert!(Bindings { cluster: false }.validate(&rb, &CTX).is_empty());
        let row = Bindings { cluster: false }.row(&rb);
        assert_eq!(row[1], "Role/reader");
        assert_eq!(
            (row[3].as_str(), row[4].as_str(), row[5].as_str()),
            (Some("alice"), Some(""), Some("ci/build"))
        );

        let bad = json!({"metadata": {"name": "rb"}, "roleRef": {"apiGroup": GROUP, "kind": "Role"},
            "subjects": [{"kind": "Robot", "name": "r2"}, {"kind": "ServiceAccount", "name": "sa", "apiGroup": ""}]});
        let errs = Bindings { cluster: true }.validate(&bad, &CTX).to_string();
        for want in [
            "roleRef.kind: Unsupported value: \"Role\": supported values: \"ClusterRole\"",
            "roleRef.name: Required value",
            "subjects[0].kind: Unsupported value: \"Robot\": supported values: \"ServiceAccount\", \"User\", \"Group\"",
            "subjects[1].namespace: Required value",
        ] {
            assert!(errs.contains(want), "{want} not in {errs}");
        }
    }

    #[test]
    fn role_ref_cannot_change() {
        let old = json!({"metadata": {"name": "rb"}, "roleRef": {"apiGroup": GROUP, "kind": "Role", "name": "a"}});
        let mut new = old.clone();
        new["roleRef"]["name"] = json!("b");
        let errs = Bindings { cluster: false }
            .validate_update(&new, &old, &CTX)
            .to_string();
        assert!(
            errs.starts_with("roleRef: Invalid value: ") && errs.ends_with("cannot change roleRef"),
            "{errs}"
        );
        assert!(Bindings { cluster: false }
            .validate_update(&old, &old, &CTX)
            .is_empty());
    }

    #[test]
    fn wide_binding_columns_are_priority_one() {
        let cols = Bindings { cluster: true }.columns();
        let names: Vec<(&str, bool)> = cols.iter().map(|c| (c.name, c.wide)).collect();
        assert_eq!(
            names,
            [
                ("Name", false),
                ("Role", false),
                ("Age", false),
                ("Users", true),
                ("Groups", true),
                ("ServiceAccounts", true)
            ]
        );
        assert_eq!(cols[3].description, "Users in the clusterRoleBinding");
    }
}
