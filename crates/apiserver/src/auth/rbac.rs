//! The RBAC authorizer. Roles, ClusterRoles and their bindings are kept in memory, fed by
//! the watch cache (so a change applies as soon as the cache sees it), with bindings
//! indexed by subject: a request looks only at the bindings that name its user or one of
//! its groups, and each binding's role by name, however many other rules exist.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde_json::Value;
use skiff_api::meta;

use super::rules::{rules_of, Rule};
use super::{Attributes, UserInfo};
use crate::watchcache::{EventType, WatchCache};

const GROUP: &str = "rbac.authorization.k8s.io";

#[derive(Debug)]
struct Binding {
    /// Empty for a ClusterRoleBinding.
    namespace: String,
    /// `Role` (in the binding's namespace) or `ClusterRole`.
    cluster_role: bool,
    role: String,
    /// Index keys: `u:<user>` or `g:<group>`.
    subjects: Vec<String>,
}

#[derive(Default)]
struct Index {
    roles: HashMap<(String, String), Arc<Vec<Rule>>>,
    cluster_roles: HashMap<String, Arc<Vec<Rule>>>,
    /// Store key → binding.
    bindings: HashMap<String, Arc<Binding>>,
    /// Subject key → the store keys of the bindings naming it.
    by_subject: HashMap<String, Vec<String>>,
}

impl Index {
    fn remove_binding(&mut self, key: &str) {
        let Some(old) = self.bindings.remove(key) else {
            return;
        };
        for s in &old.subjects {
            if let Some(list) = self.by_subject.get_mut(s) {
                list.retain(|k| k != key);
                if list.is_empty() {
                    self.by_subject.remove(s);
                }
            }
        }
    }

    fn put_binding(&mut self, key: String, obj: &Value) {
        self.remove_binding(&key);
        let namespace = meta::namespace(obj).to_string();
        let subjects: Vec<String> = obj
            .get("subjects")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|s| subject_key(s, &namespace))
            .collect();
        let binding = Binding {
            cluster_role: obj.pointer("/roleRef/kind").and_then(Value::as_str)
                == Some("ClusterRole"),
            role: obj
                .pointer("/roleRef/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            namespace,
            subjects,
        };
        for s in &binding.subjects {
            self.by_subject
                .entry(s.clone())
                .or_default()
                .push(key.clone());
        }
        self.bindings.insert(key, Arc::new(binding));
    }

    fn role_rules(&self, b: &Binding) -> Option<&Arc<Vec<Rule>>> {
        if b.cluster_role {
            self.cluster_roles.get(&b.role)
        } else {
            self.roles.get(&(b.namespace.clone(), b.role.clone()))
        }
    }

    /// The bindings that apply to `user`, deduplicated.
    fn bindings_for(&self, user: &UserInfo) -> Vec<&Arc<Binding>> {
        let mut keys: Vec<&String> = Vec::new();
        let subjects = std::iter::once(format!("u:{}", user.name))
            .chain(user.groups.iter().map(|g| format!("g:{g}")));
        for s in subjects {
            if let Some(list) = self.by_subject.get(&s) {
                keys.extend(list.iter());
            }
        }
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .filter_map(|k| self.bindings.get(k))
            .collect()
    }
}

/// `u:<user>` for User and ServiceAccount subjects (an account's user name is
/// `system:serviceaccount:<ns>:<name>`), `g:<group>` for Group subjects.
fn subject_key(s: &Value, binding_ns: &str) -> Option<String> {
    let name = s.get("name").and_then(Value::as_str)?;
    match s.get("kind").and_then(Value::as_str)? {
        "User" => Some(format!("u:{name}")),
        "Group" => Some(format!("g:{name}")),
        "ServiceAccount" => {
            let ns = s
                .get("namespace")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .unwrap_or(binding_ns);
            Some(format!("u:system:serviceaccount:{ns}:{name}"))
        }
        _ => None,
    }
}

#[derive(Default)]
pub struct Rbac {
    index: RwLock<Index>,
}

impl Rbac {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether some binding of the user grants the request.
    pub fn allows(&self, user: &UserInfo, attrs: &Attributes) -> bool {
        let index = self.read();
        index.bindings_for(user).into_iter().any(|b| {
            // A RoleBinding grants only inside its namespace.
            (b.namespace.is_empty() || b.namespace == attrs.namespace)
                && index
                    .role_rules(b)
                    .is_some_and(|rules| rules.iter().any(|r| r.allows(attrs)))
        })
    }

    /// Every rule that applies to the user in `namespace` (cluster-wide rules included):
    /// what SelfSubjectRulesReview lists and what escalation checks compare against.
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> Vec<Rule> {
        let index = self.read();
        let mut out = Vec::new();
        for b in index.bindings_for(user) {
            if b.namespace.is_empty() || b.namespace == namespace {
                if let Some(rules) = index.role_rules(b) {
                    out.extend(rules.iter().cloned());
                }
            }
        }
        out
    }

    /// Applies one object of `plural` (a store key and the object, or None when deleted).
    pub fn apply(&self, plural: &str, key: &str, obj: Option<&Value>) {
        let mut index = self.write();
        match (plural, obj) {
            ("roles", Some(o)) => {
                let id = (meta::namespace(o).to_string(), meta::name(o).to_string());
                index.roles.insert(id, Arc::new(rules_of(o)));
            }
            ("roles", None) => {
                if let Some((ns, name)) = namespaced_id(key) {
                    index.roles.remove(&(ns, name));
                }
            }
            ("clusterroles", Some(o)) => {
                index
                    .cluster_roles
                    .insert(meta::name(o).to_string(), Arc::new(rules_of(o)));
            }
            ("clusterroles", None) => {
                if let Some(name) = key.rsplit('/').next() {
                    index.cluster_roles.remove(name);
                }
            }
            ("rolebindings" | "clusterrolebindings", Some(o)) => {
                index.put_binding(key.to_string(), o)
            }
            ("rolebindings" | "clusterrolebindings", None) => index.remove_binding(key),
            _ => {}
        }
    }

    /// Forgets every object of `plural` (before a re-list refills it).
    fn clear(&self, plural: &str) {
        let mut index = self.write();
        match plural {
            "roles" => index.roles.clear(),
            "clusterroles" => index.cluster_roles.clear(),
            _ => {
                let cluster = plural == "clusterrolebindings";
                let keys: Vec<String> = index
                    .bindings
                    .iter()
                    .filter(|(_, b)| b.namespace.is_empty() == cluster)
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in keys {
                    index.remove_binding(&k);
                }
            }
        }
    }

    /// Follows the four RBAC caches forever.
    pub fn spawn_feed(self: &Arc<Self>, cache: Arc<WatchCache>) {
        for plural in [
            "roles",
            "clusterroles",
            "rolebindings",
            "clusterrolebindings",
        ] {
            let this = self.clone();
            let cache = cache.clone();
            tokio::spawn(async move { this.follow(cache, plural).await });
        }
    }

    async fn follow(&self, cache: Arc<WatchCache>, plural: &'static str) {
        let Some(def) = crate::resources::find(GROUP, "v1", plural) else {
            return;
        };
        let Some(rc) = cache.resource(def) else {
            return;
        };
        loop {
            let Ok(mut sub) = rc.subscribe(None, true) else {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            };
            self.clear(plural);
            for e in &sub.initial {
                self.apply(plural, &e.object.key, Some(&e.object.value()));
            }
            // Ends when the cache re-lists (closed) or this follower fell behind
            // (lagged): either way, start over from the cache's state.
            while let Ok(e) = sub.live.recv().await {
                let value = (e.kind != EventType::Deleted).then(|| e.object.value());
                self.apply(plural, &e.object.key, value.as_ref());
            }
        }
    }
}

/// `(namespace, name)` from a namespaced store key `/registry/<plural>/<ns>/<name>`.
fn namespaced_id(key: &str) -> Option<(String, String)> {
    let mut parts = key.rsplit('/');
    let name = parts.next()?.to_string();
    let ns = parts.next()?.to_string();
    Some((ns, name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs(verb: &str, ns: &str, resource: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            namespace: ns.into(),
            resource: resource.into(),
            ..Attributes::default()
        }
    }

    #[test]
    fn bindings_by_user_group_and_service_account_grant_in_their_scope() {
        let rbac = Rbac::default();
        rbac.apply(
            "roles",
            "/registry/roles/dev/reader",
            Some(&json!({"metadata": {"name": "reader", "namespace": "dev"},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]})),
        );
        rbac.apply(
            "clusterroles",
            "/registry/clusterroles/nodes-reader",
            Some(&json!({"metadata": {"name": "nodes-reader"},
                "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]})),
        );
        rbac.apply(
            "rolebindings",
            "/registry/rolebindings/dev/b",
            Some(&json!({"metadata": {"name": "b", "namespace": "dev"},
                "roleRef": {"kind": "Role", "name": "reader"},
                "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "bot"}]})),
        );
        rbac.apply(
            "clusterrolebindings",
            "/registry/clusterrolebindings/c",
            Some(&json!({"metadata": {"name": "c"},
                "roleRef": {"kind": "ClusterRole", "name": "nodes-reader"},
                "subjects": [{"kind": "Group", "name": "ops"}]})),
        );
        let alice = UserInfo::new("alice", &[]);
        let bot = UserInfo::new("system:serviceaccount:dev:bot", &[]);
        let olga = UserInfo::new("olga", &["ops"]);
        assert!(rbac.allows(&alice, &attrs("get", "dev", "pods")));
        assert!(rbac.allows(&bot, &attrs("list", "dev", "pods")));
        assert!(!rbac.allows(&alice, &attrs("get", "prod", "pods")));
        assert!(!rbac.allows(&alice, &attrs("delete", "dev", "pods")));
        assert!(!rbac.allows(&alice, &attrs("get", "", "nodes")));
        assert!(rbac.allows(&olga, &attrs("get", "", "nodes")));
        assert_eq!(rbac.rules_for(&alice, "dev").len(), 1);
        assert!(rbac.rules_for(&alice, "prod").is_empty());
        // A deleted binding or role takes its grant with it.
        rbac.apply("rolebindings", "/registry/rolebindings/dev/b", None);
        assert!(!rbac.allows(&alice, &attrs("get", "dev", "pods")));
        rbac.apply("clusterroles", "/registry/clusterroles/nodes-reader", None);
        assert!(!rbac.allows(&olga, &attrs("get", "", "nodes")));
    }
}
