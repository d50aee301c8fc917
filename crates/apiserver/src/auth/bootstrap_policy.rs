//! What joining and joined nodes may do with certificate requests before RBAC exists:
//! upstream's `system:node-bootstrapper` role (create/get/list/watch
//! CertificateSigningRequests), which kubeadm binds to bootstrap token users, and the same
//! for `system:nodes` (certificate renewal). Once RBAC serves these as ClusterRoles and
//! bindings, this authorizer can go.

use super::{Attributes, Authorizer, Decision, UserInfo};

const CSR_VERBS: &[&str] = &["create", "get", "list", "watch"];

/// Allows bootstrappers and nodes to request and follow certificates.
pub struct BootstrapPolicy;

impl Authorizer for BootstrapPolicy {
    fn authorize(&self, user: &UserInfo, attrs: &Attributes) -> Decision {
        let who = user.in_group(skiff_api::jointoken::GROUP) || user.in_group("system:nodes");
        let what = attrs.path.is_none()
            && attrs.group == "certificates.k8s.io"
            && attrs.resource == "certificatesigningrequests"
            && attrs.subresource.is_empty()
            && CSR_VERBS.contains(&attrs.verb.as_str());
        if who && what {
            Decision::Allow
        } else {
            Decision::Deny(super::authz::denial(user, attrs))
        }
    }
}

/// Several authorizers, asked in order: the first Allow wins; otherwise the last one's
/// denial is the answer (upstream's union authorizer, with its main mode last).
pub struct FirstAllow(pub Vec<Box<dyn Authorizer>>);

impl Authorizer for FirstAllow {
    fn authorize(&self, user: &UserInfo, attrs: &Attributes) -> Decision {
        let mut last = Decision::Deny(super::authz::denial(user, attrs));
        for a in &self.0 {
            match a.authorize(user, attrs) {
                Decision::Allow => return Decision::Allow,
                deny => last = deny,
            }
        }
        last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr(verb: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            group: "certificates.k8s.io".into(),
            resource: "certificatesigningrequests".into(),
            ..Default::default()
        }
    }

    #[test]
    fn bootstrappers_and_nodes_request_certificates_and_nothing_else() {
        let chain = FirstAllow(vec![
            Box::new(BootstrapPolicy),
            Box::new(super::super::MastersOnly),
        ]);
        let joiner = UserInfo::new("system:bootstrap:abcdef", &["system:bootstrappers"]);
        let node = UserInfo::new("system:node:n1", &["system:nodes"]);
        let bob = UserInfo::new("bob", &[]);
        for user in [&joiner, &node] {
            for verb in ["create", "get", "list", "watch"] {
                assert_eq!(chain.authorize(user, &csr(verb)), Decision::Allow);
            }
            assert!(matches!(
                chain.authorize(user, &csr("delete")),
                Decision::Deny(_)
            ));
            let mut approve = csr("update");
            approve.subresource = "approval".into();
            assert!(matches!(chain.authorize(user, &approve), Decision::Deny(_)));
            let pods = Attributes {
                verb: "list".into(),
                resource: "pods".into(),
                ..Default::default()
            };
            assert!(matches!(chain.authorize(user, &pods), Decision::Deny(_)));
        }
        assert_eq!(
            chain.authorize(&bob, &csr("create")),
            Decision::Deny("User \"bob\" cannot create resource \"certificatesigningrequests\" in API group \"certificates.k8s.io\" at the cluster scope".into())
        );
        let admin = UserInfo::new("admin", &["system:masters"]);
        assert_eq!(chain.authorize(&admin, &csr("delete")), Decision::Allow);
    }
}
