//! Impersonation (`kubectl --as`, `--as-group`): the `Impersonate-User`,
//! `Impersonate-Group` and `Impersonate-Uid` headers make a request act as another user,
//! when the real user may `impersonate` that user (`users`), each group (`groups`), or
//! service account (`serviceaccounts` in its namespace), as upstream checks.

use http::HeaderMap;
use skiff_api::{ApiError, GroupResource};

use super::{Attributes, Authorizer, Decision, UserInfo};

const SA_PREFIX: &str = "system:serviceaccount:";

fn values<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect()
}

/// The user the request acts as: `user` itself without impersonation headers.
pub fn apply(
    authz: &dyn Authorizer,
    user: UserInfo,
    headers: &HeaderMap,
) -> Result<UserInfo, ApiError> {
    let names = values(headers, "impersonate-user");
    let groups = values(headers, "impersonate-group");
    let uids = values(headers, "impersonate-uid");
    if names.is_empty() && groups.is_empty() && uids.is_empty() {
        return Ok(user);
    }
    let Some(name) = names.first().copied() else {
        return Err(ApiError::internal(
            "requested impersonation without a user: Impersonate-User is required with Impersonate-Group or Impersonate-Uid",
        ));
    };
    let check = |resource: &str, namespace: &str, target: &str| {
        let attrs = Attributes {
            verb: "impersonate".into(),
            namespace: namespace.into(),
            resource: resource.into(),
            name: target.into(),
            ..Attributes::default()
        };
        match authz.authorize(&user, &attrs) {
            Decision::Allow => Ok(()),
            Decision::Deny(why) => Err(ApiError::forbidden(
                &GroupResource::new("", resource),
                target,
                &why,
            )),
        }
    };
    let mut as_groups: Vec<String> = Vec::new();
    match name.strip_prefix(SA_PREFIX).and_then(|r| r.split_once(':')) {
        Some((ns, sa)) => {
            check("serviceaccounts", ns, sa)?;
            if groups.is_empty() {
                as_groups.push("system:serviceaccounts".into());
                as_groups.push(format!("system:serviceaccounts:{ns}"));
            }
        }
        None => check("users", "", name)?,
    }
    for g in &groups {
        check("groups", "", g)?;
        as_groups.push(g.to_string());
    }
    for uid in &uids {
        check("uids", "", uid)?;
    }
    let group_refs: Vec<&str> = as_groups.iter().map(String::as_str).collect();
    let mut acting = UserInfo::new(name, &group_refs);
    acting.uid = uids.first().map(|u| u.to_string()).unwrap_or_default();
    Ok(acting)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::MastersOnly;

    #[test]
    fn admins_act_as_others_and_others_are_refused() {
        let mut headers = HeaderMap::new();
        headers.insert("impersonate-user", "alice".parse().unwrap());
        headers.append("impersonate-group", "dev".parse().unwrap());
        let admin = UserInfo::new("admin", &["system:masters"]);
        let acting = apply(&MastersOnly, admin.clone(), &headers).unwrap();
        assert_eq!(acting.name, "alice");
        assert!(acting.in_group("dev") && acting.in_group("system:authenticated"));
        assert!(!acting.in_group("system:masters"));
        let bob = UserInfo::new("bob", &[]);
        let err = apply(&MastersOnly, bob, &headers).unwrap_err();
        assert_eq!(
            err.message,
            "users \"alice\" is forbidden: User \"bob\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
        );
        assert_eq!(
            apply(&MastersOnly, admin.clone(), &HeaderMap::new()).unwrap(),
            admin
        );
    }
}
