//! The authorizer chain, as kube-apiserver's `--authorization-mode`: `system:masters` is
//! always allowed, then each mode in order may allow; a request no mode allows is denied
//! with upstream's message (and the Node authorizer's reason, when it had one).

use std::sync::Arc;

use super::authz::denial;
use super::node::{NodeAuthorizer, NodeDecision};
use super::rbac::Rbac;
use super::{Attributes, Authorizer, Decision, UserInfo};

/// One `--authorization-mode` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    AlwaysAllow,
    AlwaysDeny,
    Node,
    Rbac,
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "AlwaysAllow" => Ok(Mode::AlwaysAllow),
            "AlwaysDeny" => Ok(Mode::AlwaysDeny),
            "Node" => Ok(Mode::Node),
            "RBAC" => Ok(Mode::Rbac),
            other => Err(format!(
                "unknown authorization mode {other:?} (known: AlwaysAllow, AlwaysDeny, Node, RBAC)"
            )),
        }
    }
}

/// Parses `Node,RBAC`.
pub fn parse_modes(s: &str) -> Result<Vec<Mode>, String> {
    s.split(',')
        .filter(|m| !m.trim().is_empty())
        .map(str::parse)
        .collect()
}

/// The default, as kubeadm configures kube-apiserver.
pub fn default_modes() -> Vec<Mode> {
    vec![Mode::Node, Mode::Rbac]
}

pub struct Chain {
    pub modes: Vec<Mode>,
    pub node: Arc<NodeAuthorizer>,
    pub rbac: Arc<Rbac>,
}

impl Authorizer for Chain {
    fn authorize(&self, user: &UserInfo, attrs: &Attributes) -> Decision {
        if user.in_group("system:masters") {
            return Decision::Allow;
        }
        let mut reason = None;
        for mode in &self.modes {
            match mode {
                Mode::AlwaysAllow => return Decision::Allow,
                Mode::AlwaysDeny => break,
                Mode::Node => match self.node.decide(user, attrs) {
                    NodeDecision::Allow => return Decision::Allow,
                    NodeDecision::NoOpinion(why) => reason = reason.or(why),
                },
                Mode::Rbac => {
                    if self.rbac.allows(user, attrs) {
                        return Decision::Allow;
                    }
                }
            }
        }
        let mut msg = denial(user, attrs);
        if let Some(why) = reason {
            msg.push_str(": ");
            msg.push_str(&why);
        }
        Decision::Deny(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_masters_skip_the_chain() {
        assert_eq!(
            parse_modes("Node,RBAC").unwrap(),
            vec![Mode::Node, Mode::Rbac]
        );
        assert!(parse_modes("ABAC").is_err());
        let chain = Chain {
            modes: default_modes(),
            node: NodeAuthorizer::new(),
            rbac: Rbac::new(),
        };
        let attrs = Attributes {
            verb: "get".into(),
            resource: "secrets".into(),
            namespace: "default".into(),
            name: "s".into(),
            ..Attributes::default()
        };
        let admin = UserInfo::new("admin", &["system:masters"]);
        assert_eq!(chain.authorize(&admin, &attrs), Decision::Allow);
        let node = UserInfo::new("system:node:a", &["system:nodes"]);
        assert_eq!(
            chain.authorize(&node, &attrs),
            Decision::Deny("User \"system:node:a\" cannot get resource \"secrets\" in API group \"\" in the namespace \"default\": no relationship found between node 'a' and this object".into())
        );
        let open = Chain {
            modes: vec![Mode::AlwaysAllow],
            ..chain
        };
        assert_eq!(open.authorize(&node, &attrs), Decision::Allow);
    }
}
