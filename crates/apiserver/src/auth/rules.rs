//! RBAC policy rules: parsing from Role/ClusterRole objects, whether a rule allows a
//! request (upstream's `RuleAllows`), and whether a set of rules covers another rule
//! (escalation prevention, upstream's `Covers`).

use serde_json::Value;

use super::Attributes;

/// One `rules[]` entry of a Role or ClusterRole.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    pub verbs: Vec<String>,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
    pub non_resource_urls: Vec<String>,
}

fn strings(v: &Value, field: &str) -> Vec<String> {
    v.get(field)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

impl Rule {
    pub fn from_value(v: &Value) -> Self {
        Self {
            verbs: strings(v, "verbs"),
            api_groups: strings(v, "apiGroups"),
            resources: strings(v, "resources"),
            resource_names: strings(v, "resourceNames"),
            non_resource_urls: strings(v, "nonResourceURLs"),
        }
    }

    pub fn to_value(&self) -> Value {
        let mut m = serde_json::Map::new();
        for (k, list) in [
            ("verbs", &self.verbs),
            ("apiGroups", &self.api_groups),
            ("resources", &self.resources),
            ("resourceNames", &self.resource_names),
            ("nonResourceURLs", &self.non_resource_urls),
        ] {
            if !list.is_empty() || k == "verbs" {
                m.insert(k.into(), Value::from(list.clone()));
            }
        }
        Value::Object(m)
    }

    /// Whether this rule allows the request.
    pub fn allows(&self, attrs: &Attributes) -> bool {
        if !has(&self.verbs, &attrs.verb) {
            return false;
        }
        match &attrs.path {
            Some(path) => self.non_resource_urls.iter().any(|u| url_matches(u, path)),
            None => {
                has(&self.api_groups, &attrs.group)
                    && resource_matches(&self.resources, &attrs.resource, &attrs.subresource)
                    && (self.resource_names.is_empty() || self.resource_names.contains(&attrs.name))
            }
        }
    }

    /// upstream's CompactString: `{APIGroups:[""], Resources:["pods"], Verbs:["get"]}`.
    pub fn compact(&self) -> String {
        let q = |list: &[String]| {
            let parts: Vec<String> = list.iter().map(|s| format!("{s:?}")).collect();
            format!("[{}]", parts.join(" "))
        };
        let mut parts = Vec::new();
        for (label, list) in [
            ("APIGroups", &self.api_groups),
            ("Resources", &self.resources),
            ("NonResourceURLs", &self.non_resource_urls),
            ("ResourceNames", &self.resource_names),
            ("Verbs", &self.verbs),
        ] {
            if !list.is_empty() {
                parts.push(format!("{label}:{}", q(list)));
            }
        }
        format!("{{{}}}", parts.join(", "))
    }
}

/// The rules of a Role/ClusterRole object.
pub fn rules_of(obj: &Value) -> Vec<Rule> {
    obj.get("rules")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(Rule::from_value).collect())
        .unwrap_or_default()
}

fn has(list: &[String], want: &str) -> bool {
    list.iter().any(|v| v == "*" || v == want)
}

fn resource_matches(rules: &[String], resource: &str, sub: &str) -> bool {
    let combined = if sub.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}/{sub}")
    };
    rules.iter().any(|r| {
        r == "*"
            || *r == combined
            // `*/scale` means the scale subresource of every resource.
            || (!sub.is_empty() && r.strip_prefix("*/") == Some(sub))
    })
}

fn url_matches(rule: &str, path: &str) -> bool {
    if rule == "*" || rule == path {
        return true;
    }
    rule.strip_suffix('*')
        .is_some_and(|prefix| path.starts_with(prefix))
}

/// Whether `owner` covers one atomic grant (one verb, group, resource or URL, name).
fn covered(owner: &[Rule], verb: &str, target: Atom<'_>) -> bool {
    owner.iter().any(|o| {
        if !has(&o.verbs, verb) {
            return false;
        }
        match target {
            Atom::Url(url) => o
                .non_resource_urls
                .iter()
                .any(|u| u == "*" || u == url || url_covers(u, url)),
            Atom::Resource {
                group,
                resource,
                name,
            } => {
                has(&o.api_groups, group)
                    && o.resources.iter().any(|r| {
                        r == "*"
                            || r == resource
                            || resource
                                .split_once('/')
                                .is_some_and(|(_, sub)| r.strip_prefix("*/") == Some(sub))
                    })
                    && (o.resource_names.is_empty()
                        || name.is_some_and(|n| o.resource_names.iter().any(|x| x == n)))
            }
        }
    })
}

/// An owner URL `/a/*` covers `/a/b` and `/a/*`.
fn url_covers(owner: &str, url: &str) -> bool {
    owner
        .strip_suffix('*')
        .is_some_and(|prefix| url.starts_with(prefix))
}

#[derive(Clone, Copy)]
enum Atom<'a> {
    Url(&'a str),
    Resource {
        group: &'a str,
        resource: &'a str,
        name: Option<&'a str>,
    },
}

/// What of `requested` the `owner` rules do not cover, as compact one-resource rules
/// (verbs merged), in a stable order: upstream's escalation check.
pub fn uncovered(owner: &[Rule], requested: &[Rule]) -> Vec<Rule> {
    let mut missing: Vec<Rule> = Vec::new();
    let mut add = |group: Option<&str>, res_or_url: &str, name: Option<&str>, verb: &str| {
        let url = group.is_none();
        let found = missing.iter_mut().find(|m| {
            if url {
                m.non_resource_urls.first().map(String::as_str) == Some(res_or_url)
            } else {
                m.api_groups.first().map(String::as_str) == group
                    && m.resources.first().map(String::as_str) == Some(res_or_url)
                    && m.resource_names.first().map(String::as_str) == name
            }
        });
        match found {
            Some(m) => {
                if !m.verbs.iter().any(|v| v == verb) {
                    m.verbs.push(verb.to_string());
                }
            }
            None => missing.push(Rule {
                verbs: vec![verb.to_string()],
                api_groups: group.map(|g| vec![g.to_string()]).unwrap_or_default(),
                resources: if url {
                    vec![]
                } else {
                    vec![res_or_url.to_string()]
                },
                resource_names: name.map(|n| vec![n.to_string()]).unwrap_or_default(),
                non_resource_urls: if url {
                    vec![res_or_url.to_string()]
                } else {
                    vec![]
                },
            }),
        }
    };
    for rule in requested {
        for verb in &rule.verbs {
            for url in &rule.non_resource_urls {
                if !covered(owner, verb, Atom::Url(url)) {
                    add(None, url, None, verb);
                }
            }
            for group in &rule.api_groups {
                for resource in &rule.resources {
                    let names: Vec<Option<&str>> = if rule.resource_names.is_empty() {
                        vec![None]
                    } else {
                        rule.resource_names
                            .iter()
                            .map(|n| Some(n.as_str()))
                            .collect()
                    };
                    for name in names {
                        let atom = Atom::Resource {
                            group,
                            resource,
                            name,
                        };
                        if !covered(owner, verb, atom) {
                            add(Some(group), resource, name, verb);
                        }
                    }
                }
            }
        }
    }
    for m in &mut missing {
        m.verbs.sort();
    }
    missing.sort_by_key(Rule::compact);
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> Rule {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        Rule {
            verbs: v(verbs),
            api_groups: v(groups),
            resources: v(resources),
            ..Rule::default()
        }
    }

    fn attrs(verb: &str, group: &str, resource: &str, sub: &str, name: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            name: name.into(),
            ..Attributes::default()
        }
    }

    #[test]
    fn resource_rules_match_verbs_groups_subresources_and_names() {
        let r = rule(&["get", "list"], &[""], &["pods", "pods/log"]);
        assert!(r.allows(&attrs("get", "", "pods", "", "a")));
        assert!(r.allows(&attrs("get", "", "pods", "log", "a")));
        assert!(!r.allows(&attrs("get", "", "pods", "exec", "a")));
        assert!(!r.allows(&attrs("delete", "", "pods", "", "a")));
        assert!(!r.allows(&attrs("get", "apps", "pods", "", "a")));
        let scale = rule(&["*"], &["*"], &["*/scale"]);
        assert!(scale.allows(&attrs("update", "apps", "deployments", "scale", "d")));
        assert!(!scale.allows(&attrs("update", "apps", "deployments", "", "d")));
        let mut named = rule(&["get"], &[""], &["configmaps"]);
        named.resource_names = vec!["one".into()];
        assert!(named.allows(&attrs("get", "", "configmaps", "", "one")));
        assert!(!named.allows(&attrs("get", "", "configmaps", "", "two")));
        assert!(!named.allows(&attrs("list", "", "configmaps", "", "")));
    }

    #[test]
    fn non_resource_urls_with_trailing_star() {
        let r = Rule {
            verbs: vec!["get".into()],
            non_resource_urls: vec!["/apis/*".into(), "/version".into()],
            ..Rule::default()
        };
        let p = |path: &str| Attributes {
            verb: "get".into(),
            path: Some(path.into()),
            ..Attributes::default()
        };
        assert!(r.allows(&p("/apis/apps/v1")));
        assert!(r.allows(&p("/version")));
        assert!(!r.allows(&p("/versionz")));
        assert!(!r.allows(&p("/api")));
        assert!(!r.allows(&attrs("get", "", "pods", "", "")));
    }

    #[test]
    fn coverage_reports_what_is_missing_in_upstreams_format() {
        let owner = vec![rule(&["get", "list"], &[""], &["pods"])];
        assert!(uncovered(&owner, &[rule(&["get"], &[""], &["pods"])]).is_empty());
        let missing = uncovered(
            &owner,
            &[rule(&["get", "delete"], &["", "apps"], &["pods"])],
        );
        let text: Vec<String> = missing.iter().map(Rule::compact).collect();
        assert_eq!(
            text,
            vec![
                "{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\"]}",
                "{APIGroups:[\"apps\"], Resources:[\"pods\"], Verbs:[\"delete\" \"get\"]}",
            ]
        );
        let admin = vec![rule(&["*"], &["*"], &["*"])];
        assert!(uncovered(&admin, &[rule(&["escalate"], &["x"], &["y/z"])]).is_empty());
        // A wildcard request needs a wildcard owner.
        assert!(!uncovered(&owner, &[rule(&["get"], &[""], &["*"])]).is_empty());
    }
}
