//! The audit Policy file (`--audit-policy-file`, audit.k8s.io/v1): rules checked in order,
//! the first that matches a request gives its level; no match means the request is not
//! logged.

use serde::Deserialize;

use crate::auth::UserInfo;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum Level {
    None,
    Metadata,
    Request,
    RequestResponse,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::None => "None",
            Level::Metadata => "Metadata",
            Level::Request => "Request",
            Level::RequestResponse => "RequestResponse",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum Stage {
    RequestReceived,
    ResponseStarted,
    ResponseComplete,
    Panic,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::RequestReceived => "RequestReceived",
            Stage::ResponseStarted => "ResponseStarted",
            Stage::ResponseComplete => "ResponseComplete",
            Stage::Panic => "Panic",
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct File {
    api_version: Option<String>,
    kind: Option<String>,
    #[serde(default)]
    rules: Vec<Rule>,
    #[serde(default)]
    omit_stages: Vec<Stage>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    level: Level,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    user_groups: Vec<String>,
    #[serde(default)]
    verbs: Vec<String>,
    #[serde(default)]
    resources: Vec<GroupResources>,
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default, rename = "nonResourceURLs")]
    non_resource_urls: Vec<String>,
    #[serde(default)]
    omit_stages: Vec<Stage>,
    #[serde(default)]
    omit_managed_fields: Option<bool>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GroupResources {
    #[serde(default)]
    group: String,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    resource_names: Vec<String>,
}

/// What a request is, for matching.
pub struct Request<'a> {
    pub user: &'a UserInfo,
    pub verb: &'a str,
    pub is_resource: bool,
    pub group: &'a str,
    pub resource: &'a str,
    pub subresource: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub path: &'a str,
}

pub struct Policy {
    rules: Vec<Rule>,
    omit_stages: Vec<Stage>,
}

/// The outcome for one request.
pub struct Decision {
    pub level: Level,
    pub omit_stages: Vec<Stage>,
}

impl Policy {
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: File = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        if file.kind.as_deref() != Some("Policy") {
            return Err("kind must be Policy".into());
        }
        if !matches!(
            file.api_version.as_deref(),
            Some("audit.k8s.io/v1") | Some("audit.k8s.io/v1beta1")
        ) {
            return Err("apiVersion must be audit.k8s.io/v1".into());
        }
        for (i, rule) in file.rules.iter().enumerate() {
            if !rule.non_resource_urls.is_empty()
                && (!rule.resources.is_empty() || !rule.namespaces.is_empty())
            {
                return Err(format!(
                    "rules[{i}]: nonResourceURLs cannot be combined with resources or namespaces"
                ));
            }
        }
        Ok(Self {
            rules: file.rules,
            omit_stages: file.omit_stages,
        })
    }

    pub fn decide(&self, req: &Request) -> Decision {
        for rule in &self.rules {
            if rule.matches(req) {
                let mut omit = self.omit_stages.clone();
                omit.extend(rule.omit_stages.iter().copied());
                return Decision {
                    level: rule.level,
                    omit_stages: omit,
                };
            }
        }
        Decision {
            level: Level::None,
            omit_stages: Vec::new(),
        }
    }
}

impl Rule {
    fn matches(&self, req: &Request) -> bool {
        let _ = self.omit_managed_fields;
        if !self.users.is_empty() && !self.users.iter().any(|u| u == &req.user.name) {
            return false;
        }
        if !self.user_groups.is_empty() && !self.user_groups.iter().any(|g| req.user.in_group(g)) {
            return false;
        }
        if !self.verbs.is_empty() && !self.verbs.iter().any(|v| v == req.verb || v == "*") {
            return false;
        }
        if req.is_resource {
            if !self.non_resource_urls.is_empty() {
                return false;
            }
            if !self.namespaces.is_empty() && !self.namespaces.iter().any(|n| n == req.namespace) {
                return false;
            }
            if !self.resources.is_empty() && !self.resources.iter().any(|gr| gr.matches(req)) {
                return false;
            }
            true
        } else {
            if !self.resources.is_empty() || !self.namespaces.is_empty() {
                return false;
            }
            self.non_resource_urls.is_empty()
                || self
                    .non_resource_urls
                    .iter()
                    .any(|u| match u.strip_suffix('*') {
                        Some(prefix) => req.path.starts_with(prefix),
                        None => u == req.path,
                    })
        }
    }
}

impl GroupResources {
    /// Upstream's notation: `pods` (the resource only), `pods/log`, `pods/*` (every
    /// subresource), `*/scale`, `*` (everything, subresources included).
    fn matches(&self, req: &Request) -> bool {
        if self.group != req.group {
            return false;
        }
        if !self.resource_names.is_empty() && !self.resource_names.iter().any(|n| n == req.name) {
            return false;
        }
        if self.resources.is_empty() {
            return true;
        }
        self.resources.iter().any(|r| {
            if r == "*" {
                return true;
            }
            match r.split_once('/') {
                None => req.subresource.is_empty() && r == req.resource,
                Some((res, sub)) => {
                    !req.subresource.is_empty()
                        && (res == "*" || res == req.resource)
                        && (sub == "*" || sub == req.subresource)
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(user: &'a UserInfo, verb: &'a str, resource: &'a str, sub: &'a str) -> Request<'a> {
        Request {
            user,
            verb,
            is_resource: true,
            group: "",
            resource,
            subresource: sub,
            namespace: "default",
            name: "x",
            path: "",
        }
    }

    #[test]
    fn first_matching_rule_wins() {
        let policy = Policy::parse(
            r#"
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  users: ["system:kube-scheduler"]
- level: Metadata
  resources:
  - group: ""
    resources: ["secrets", "configmaps"]
- level: RequestResponse
  resources:
  - group: ""
    resources: ["pods/log", "*/status"]
- level: Request
  verbs: ["create", "update"]
- level: Metadata
  nonResourceURLs: ["/healthz*", "/version"]
"#,
        )
        .unwrap();
        let alice = UserInfo::new("alice", &[]);
        let sched = UserInfo::new("system:kube-scheduler", &[]);
        let level = |r: &Request| policy.decide(r).level;
        assert_eq!(level(&req(&sched, "get", "pods", "")), Level::None);
        assert_eq!(
            level(&req(&alice, "create", "secrets", "")),
            Level::Metadata
        );
        assert_eq!(
            level(&req(&alice, "get", "pods", "log")),
            Level::RequestResponse
        );
        assert_eq!(
            level(&req(&alice, "update", "nodes", "status")),
            Level::RequestResponse
        );
        assert_eq!(level(&req(&alice, "create", "pods", "")), Level::Request);
        assert_eq!(level(&req(&alice, "get", "pods", "")), Level::None);
        // `secrets` does not cover a subresource of secrets.
        assert_eq!(level(&req(&alice, "get", "pods", "exec")), Level::None);
        let health = Request {
            is_resource: false,
            path: "/healthz/ready",
            ..req(&alice, "get", "", "")
        };
        assert_eq!(level(&health), Level::Metadata);
        assert_eq!(
            policy
                .decide(&req(&alice, "create", "secrets", ""))
                .omit_stages,
            vec![Stage::RequestReceived]
        );
    }

    #[test]
    fn bad_policies_are_refused() {
        assert!(Policy::parse("apiVersion: audit.k8s.io/v1\nkind: Pod\n").is_err());
        assert!(Policy::parse(
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Loud\n"
        )
        .is_err());
        assert!(Policy::parse("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n  nonResourceURLs: [/x]\n  namespaces: [a]\n").is_err());
    }
}
