//! Who is asking (authentication) and whether they may (authorization). Both are steps
//! of the request pipeline; the authorizer is a trait so RBAC can replace the built-in one.

mod authn;
mod authz;
mod bootstrap_policy;
pub mod bootstrap_token;
pub mod oidc;
pub mod sa_token;

pub use authn::{identity_from_cert, Authenticator, Objects, ServiceAccountTokens, TokenFile};
pub use authz::{Attributes, Authorizer, Decision, MastersOnly};
pub use bootstrap_policy::{BootstrapPolicy, FirstAllow};

/// An authenticated user, as upstream's `user.Info`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    /// Extra attributes (service account tokens' pod and credential ids, as upstream).
    pub extra: std::collections::BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    pub fn new(name: &str, groups: &[&str]) -> Self {
        let mut groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        // Every authenticated user is in system:authenticated, as upstream adds it.
        if !groups.iter().any(|g| g == "system:authenticated") {
            groups.push("system:authenticated".into());
        }
        Self {
            name: name.to_string(),
            uid: String::new(),
            groups,
            extra: Default::default(),
        }
    }

    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}
