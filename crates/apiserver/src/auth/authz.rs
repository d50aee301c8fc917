//! Authorization. The built-in authorizer lets `system:masters` do everything and denies
//! everyone else with upstream's message; RBAC plugs in behind the same trait later.

use super::UserInfo;

/// What a request wants to do (upstream's `authorizer.Attributes`).
#[derive(Clone, Debug, Default)]
pub struct Attributes {
    pub verb: String,
    pub namespace: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
    /// Set for requests that are not about a resource (`/healthz`, `/version`).
    pub path: Option<String>,
    /// A list or watch's field selector (the Node authorizer lets a node list only its
    /// own pods, and read one secret by a `metadata.name` selector).
    pub field_selector: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Denied, with the reason upstream prints after "is forbidden: ".
    Deny(String),
}

pub trait Authorizer: Send + Sync {
    fn authorize(&self, user: &UserInfo, attrs: &Attributes) -> Decision;
}

/// `system:masters` only.
pub struct MastersOnly;

impl Authorizer for MastersOnly {
    fn authorize(&self, user: &UserInfo, attrs: &Attributes) -> Decision {
        if user.in_group("system:masters") {
            Decision::Allow
        } else {
            Decision::Deny(denial(user, attrs))
        }
    }
}

/// Upstream's denial text: `User "x" cannot list resource "pods" in API group "" in the
/// namespace "default"`.
pub fn denial(user: &UserInfo, attrs: &Attributes) -> String {
    if let Some(path) = &attrs.path {
        return format!(
            "User \"{}\" cannot {} path \"{}\"",
            user.name, attrs.verb, path
        );
    }
    let resource = if attrs.subresource.is_empty() {
        attrs.resource.clone()
    } else {
        format!("{}/{}", attrs.resource, attrs.subresource)
    };
    let mut msg = format!(
        "User \"{}\" cannot {} resource \"{}\" in API group \"{}\"",
        user.name, attrs.verb, resource, attrs.group
    );
    if attrs.namespace.is_empty() {
        msg.push_str(" at the cluster scope");
    } else {
        msg.push_str(&format!(" in the namespace \"{}\"", attrs.namespace));
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masters_may_everyone_else_is_told_why_not() {
        let admin = UserInfo::new("admin", &["system:masters"]);
        let bob = UserInfo::new("bob", &[]);
        let attrs = Attributes {
            verb: "list".into(),
            namespace: "y".into(),
            resource: "configmaps".into(),
            ..Attributes::default()
        };
        assert_eq!(MastersOnly.authorize(&admin, &attrs), Decision::Allow);
        assert_eq!(
            MastersOnly.authorize(&bob, &attrs),
            Decision::Deny("User \"bob\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"y\"".into())
        );
        let nodes = Attributes {
            verb: "get".into(),
            resource: "nodes".into(),
            ..Attributes::default()
        };
        assert!(
            matches!(MastersOnly.authorize(&bob, &nodes), Decision::Deny(m) if m.ends_with("at the cluster scope"))
        );
    }
}
