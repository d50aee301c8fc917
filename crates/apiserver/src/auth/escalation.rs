//! RBAC escalation prevention, as upstream's RBAC storage: a user may create or update a
//! Role/ClusterRole only with every permission it grants already held (or the `escalate`
//! verb on it), and bind a role only holding its permissions (or `bind` on it).

use serde_json::Value;
use skiff_api::{meta, ApiError, GroupResource};

use super::rules::{rules_of, uncovered, Rule};
use super::{node, Attributes, Decision, UserInfo};
use crate::resources::ResourceDef;
use crate::App;

const GROUP: &str = "rbac.authorization.k8s.io";

/// Checks a Role/ClusterRole/binding about to be written by `user`.
pub async fn check(
    app: &App,
    user: &UserInfo,
    def: &ResourceDef,
    obj: &Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    if def.group != GROUP || user.in_group("system:masters") {
        return Ok(());
    }
    // An update that grants nothing new (metadata only: labels, finalizers, owners)
    // needs no check, as upstream skips bindings whose roleRef is unchanged.
    if let Some(old) = old {
        let field = if def.plural.ends_with("bindings") {
            "roleRef"
        } else {
            "rules"
        };
        if old.get(field) == obj.get(field) {
            return Ok(());
        }
    }
    let namespace = meta::namespace(obj);
    let name = meta::name(obj);
    let may = |verb: &str, resource: &str, role: &str| {
        let attrs = Attributes {
            verb: verb.into(),
            namespace: namespace.into(),
            group: GROUP.into(),
            resource: resource.into(),
            name: role.into(),
            ..Attributes::default()
        };
        app.authz.authorize(user, &attrs) == Decision::Allow
    };
    let granted: Vec<Rule> = match def.plural {
        "roles" | "clusterroles" => {
            if may("escalate", def.plural, name) {
                return Ok(());
            }
            rules_of(obj)
        }
        "rolebindings" | "clusterrolebindings" => {
            let kind = obj
                .pointer("/roleRef/kind")
                .and_then(Value::as_str)
                .unwrap_or("");
            let role = obj
                .pointer("/roleRef/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            let (plural, role_ns) = if kind == "Role" {
                ("roles", namespace)
            } else {
                ("clusterroles", "")
            };
            if may("bind", plural, role) {
                return Ok(());
            }
            let Some(role_def) = crate::resources::find(GROUP, "v1", plural) else {
                return Ok(());
            };
            let key = crate::storage::object_key(role_def, role_ns, role);
            match app.storage.get(&key).await? {
                Some(r) => rules_of(&r),
                None => {
                    return Err(ApiError::not_found(
                        &GroupResource::new(GROUP, plural),
                        role,
                    ))
                }
            }
        }
        _ => return Ok(()),
    };
    let mut owned = app.rbac.rules_for(user, namespace);
    if node::node_name(user).is_some() {
        owned.extend(app.node_authz.rules().iter().cloned());
    }
    let missing = uncovered(&owned, &granted);
    if missing.is_empty() {
        return Ok(());
    }
    Err(ApiError::forbidden(
        &def.group_resource(),
        name,
        &not_held(user, &missing),
    ))
}

/// upstream's text: `user "x" (groups=["a" "b"]) is attempting to grant RBAC permissions
/// not currently held:` and one compact rule a line.
fn not_held(user: &UserInfo, missing: &[Rule]) -> String {
    let groups: Vec<String> = user.groups.iter().map(|g| format!("{g:?}")).collect();
    let rules: Vec<String> = missing.iter().map(Rule::compact).collect();
    format!(
        "user {:?} (groups=[{}]) is attempting to grant RBAC permissions not currently held:\n{}",
        user.name,
        groups.join(" "),
        rules.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_lists_groups_and_rules_as_upstream() {
        let user = UserInfo::new("bob", &["dev"]);
        let rule = Rule {
            verbs: vec!["get".into()],
            api_groups: vec!["".into()],
            resources: vec!["pods".into()],
            ..Rule::default()
        };
        assert_eq!(
            not_held(&user, &[rule]),
            "user \"bob\" (groups=[\"dev\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"get\"]}"
        );
    }
}
