//! Which resource types the garbage collector and the namespace controller work on,
//! from the API server's discovery (aggregated when served, else per group).

use std::collections::HashMap;

use kube::discovery::{verbs, ApiCapabilities, ApiResource, Discovery, Scope};

/// Types the garbage collector never watches (upstream's ignored resources: events are
/// numerous, short-lived and never owners).
const GC_IGNORED: &[(&str, &str)] = &[("", "events"), ("events.k8s.io", "events")];

/// One discovered type: how to reach it and what it supports.
#[derive(Clone, Debug)]
pub struct Type {
    pub resource: ApiResource,
    pub namespaced: bool,
    pub verbs: Vec<String>,
}

impl Type {
    pub fn supports(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }

    /// `resource.group` as upstream's GroupResource prints it (`pods`, `deployments.apps`).
    pub fn group_resource(&self) -> String {
        if self.resource.group.is_empty() {
            self.resource.plural.clone()
        } else {
            format!("{}.{}", self.resource.plural, self.resource.group)
        }
    }

    /// A stable key: group/version/plural.
    pub fn key(&self) -> String {
        format!(
            "{}/{}/{}",
            self.resource.group, self.resource.version, self.resource.plural
        )
    }
}

fn to_type((resource, caps): (ApiResource, ApiCapabilities)) -> Type {
    Type {
        resource,
        namespaced: caps.scope == Scope::Namespaced,
        verbs: caps.operations,
    }
}

/// What discovery found: each group's preferred version, and every served version (to
/// resolve an ownerReference's apiVersion and kind).
#[derive(Clone, Debug, Default)]
pub struct Resources {
    pub preferred: Vec<Type>,
    by_kind: HashMap<(String, String), Type>,
    by_group_kind: HashMap<(String, String), Type>,
}

impl Resources {
    /// Builds from (preferred, all served versions) lists.
    pub fn new(preferred: Vec<Type>, all: Vec<Type>) -> Self {
        let mut by_kind = HashMap::new();
        let mut by_group_kind = HashMap::new();
        for t in preferred.iter().chain(all.iter()) {
            by_kind
                .entry((t.resource.api_version.clone(), t.resource.kind.clone()))
                .or_insert_with(|| t.clone());
            by_group_kind
                .entry((t.resource.group.clone(), t.resource.kind.clone()))
                .or_insert_with(|| t.clone());
        }
        Self {
            preferred,
            by_kind,
            by_group_kind,
        }
    }

    /// The type an ownerReference names: its exact apiVersion when served, else the
    /// same group and kind at another version (the object is the same at every version).
    pub fn resolve(&self, api_version: &str, kind: &str) -> Option<&Type> {
        self.by_kind
            .get(&(api_version.to_string(), kind.to_string()))
            .or_else(|| {
                let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
                self.by_group_kind
                    .get(&(group.to_string(), kind.to_string()))
            })
    }

    /// Types the garbage collector watches: list, watch and delete supported.
    pub fn garbage_collectable(&self) -> Vec<Type> {
        self.preferred
            .iter()
            .filter(|t| {
                !GC_IGNORED
                    .iter()
                    .any(|(g, r)| t.resource.group == *g && t.resource.plural == *r)
            })
            .filter(|t| {
                t.supports(verbs::LIST) && t.supports(verbs::WATCH) && t.supports(verbs::DELETE)
            })
            .cloned()
            .collect()
    }

    /// Namespaced types whose objects a namespace deletion removes: listable, and
    /// deletable one by one or as a collection.
    pub fn namespaced_deletable(&self) -> Vec<Type> {
        self.preferred
            .iter()
            .filter(|t| t.namespaced && t.supports(verbs::LIST))
            .filter(|t| t.supports(verbs::DELETE) || t.supports(verbs::DELETE_COLLECTION))
            .cloned()
            .collect()
    }
}

/// Runs discovery against the server.
pub async fn discover(client: &kube::Client) -> Result<Resources, kube::Error> {
    let discovery = match Discovery::new(client.clone()).run_aggregated().await {
        Ok(d) => d,
        Err(_) => Discovery::new(client.clone()).run().await?,
    };
    let mut preferred = Vec::new();
    let mut all = Vec::new();
    for group in discovery.groups() {
        preferred.extend(group.recommended_resources().into_iter().map(to_type));
        for v in group.versions() {
            all.extend(group.versioned_resources(v).into_iter().map(to_type));
        }
    }
    Ok(Resources::new(preferred, all))
}

#[cfg(test)]
pub(crate) fn test_type(
    api_version: &str,
    kind: &str,
    plural: &str,
    namespaced: bool,
    verbs: &[&str],
) -> Type {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    Type {
        resource: ApiResource {
            group: group.into(),
            version: version.into(),
            api_version: api_version.into(),
            kind: kind.into(),
            plural: plural.into(),
        },
        namespaced,
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: &[&str] = &["list", "watch", "delete", "deletecollection", "get"];

    fn resources() -> Resources {
        let preferred = vec![
            test_type("v1", "Pod", "pods", true, ALL),
            test_type("v1", "Event", "events", true, ALL),
            test_type("v1", "Node", "nodes", false, ALL),
            test_type("apps/v1", "ReplicaSet", "replicasets", true, ALL),
            test_type("v1", "Binding", "bindings", true, &["create"]),
            test_type(
                "authorization.k8s.io/v1",
                "SelfSubjectReview",
                "selfsubjectreviews",
                false,
                &["create"],
            ),
            test_type(
                "stable.example.com/v1",
                "Widget",
                "widgets",
                true,
                &["list", "delete"],
            ),
        ];
        let all = vec![test_type(
            "stable.example.com/v2",
            "Widget",
            "widgets",
            true,
            &["list", "delete"],
        )];
        Resources::new(preferred, all)
    }

    fn plurals(ts: &[Type]) -> Vec<&str> {
        ts.iter().map(|t| t.resource.plural.as_str()).collect()
    }

    #[test]
    fn garbage_collectable_needs_list_watch_delete_and_skips_events() {
        assert_eq!(
            plurals(&resources().garbage_collectable()),
            vec!["pods", "nodes", "replicasets"]
        );
    }

    #[test]
    fn namespaced_deletable_skips_cluster_scoped_and_create_only() {
        assert_eq!(
            plurals(&resources().namespaced_deletable()),
            vec!["pods", "events", "replicasets", "widgets"]
        );
    }

    #[test]
    fn resolve_cases() {
        let r = resources();
        let cases: &[(&str, &str, &str, Option<&str>)] = &[
            ("exact core", "v1", "Pod", Some("pods")),
            ("exact group", "apps/v1", "ReplicaSet", Some("replicasets")),
            (
                "other served version",
                "stable.example.com/v2",
                "Widget",
                Some("widgets"),
            ),
            (
                "unserved version of a known kind",
                "apps/v1beta2",
                "ReplicaSet",
                Some("replicasets"),
            ),
            ("unknown kind", "v1", "Gizmo", None),
        ];
        for (name, av, kind, want) in cases {
            assert_eq!(
                r.resolve(av, kind).map(|t| t.resource.plural.as_str()),
                *want,
                "{name}"
            );
        }
        assert_eq!(
            r.resolve("apps/v1", "ReplicaSet")
                .map(Type::group_resource)
                .as_deref(),
            Some("replicasets.apps")
        );
    }
}
