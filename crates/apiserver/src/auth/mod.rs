//! Who is asking (authentication) and whether they may (authorization). Both are steps
//! of the request pipeline; the authorizer is a trait, and the server uses the chain of
//! `--authorization-mode` (Node, RBAC, ...) behind it.

mod authn;
mod authz;
pub mod chain;
pub mod escalation;
pub mod impersonate;
pub mod node;
pub mod policy;
pub mod rbac;
pub mod reconcile;
pub mod review;
pub mod rules;

pub use authn::{identity_from_cert, Authenticator, TokenFile};
pub use authz::{denial, Attributes, Authorizer, Decision, MastersOnly};
pub use chain::{Chain, Mode};
pub use node::NodeAuthorizer;
pub use rbac::Rbac;
pub mod bootstrap_token;
pub mod oidc;
pub mod sa_token;

pub use authn::{Objects, ServiceAccountTokens};

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
