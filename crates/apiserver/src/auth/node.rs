//! The Node authorizer: a node identity (`system:node:<name>` in group `system:nodes`)
//! may read only the pods bound to it and the secrets, configmaps, claims and volumes
//! those pods reference, found in a graph fed by the watch cache (pods and claims);
//! everything else a node may do is upstream's `system:node` rule set. Writes to other
//! nodes' objects are refused by the NodeRestriction admission plugin.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde_json::Value;
use skiff_api::meta;

use super::rules::Rule;
use super::{Attributes, UserInfo};
use crate::watchcache::{EventType, WatchCache};

pub const NODES_GROUP: &str = "system:nodes";
pub const NODE_PREFIX: &str = "system:node:";

/// The node a user is, if it is one.
pub fn node_name(user: &UserInfo) -> Option<&str> {
    let name = user.name.strip_prefix(NODE_PREFIX)?;
    (!name.is_empty() && user.in_group(NODES_GROUP)).then_some(name)
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum Kind {
    Secret,
    ConfigMap,
    Claim,
    ServiceAccount,
}

type Ref = (Kind, String, String);

#[derive(Default)]
struct Graph {
    /// `ns/name` of a pod → its node and what it references.
    pods: HashMap<String, (String, Vec<Ref>)>,
    /// Node → referenced object → how many of its pods reference it.
    refs: HashMap<String, HashMap<Ref, usize>>,
    /// `ns/name` of a claim → the volume it is bound to.
    claims: HashMap<String, String>,
}

fn names_at<'a>(v: &'a Value, ptr: &str) -> impl Iterator<Item = &'a Value> {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn str_at(v: &Value, ptr: &str) -> Option<String> {
    v.pointer(ptr)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// What a pod references, as the kubelet needs it.
fn pod_refs(pod: &Value) -> Vec<(Kind, String)> {
    let mut out = Vec::new();
    let mut push = |k: Kind, n: Option<String>| {
        if let Some(n) = n {
            out.push((k, n));
        }
    };
    push(
        Kind::ServiceAccount,
        str_at(pod, "/spec/serviceAccountName"),
    );
    for s in names_at(pod, "/spec/imagePullSecrets") {
        push(Kind::Secret, str_at(s, "/name"));
    }
    let pod_name = meta::name(pod);
    for vol in names_at(pod, "/spec/volumes") {
        push(Kind::Secret, str_at(vol, "/secret/secretName"));
        push(Kind::ConfigMap, str_at(vol, "/configMap/name"));
        push(Kind::Claim, str_at(vol, "/persistentVolumeClaim/claimName"));
        if vol.get("ephemeral").is_some() {
            let name = str_at(vol, "/name").unwrap_or_default();
            push(Kind::Claim, Some(format!("{pod_name}-{name}")));
        }
        for src in names_at(vol, "/projected/sources") {
            push(Kind::Secret, str_at(src, "/secret/name"));
            push(Kind::ConfigMap, str_at(src, "/configMap/name"));
        }
    }
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        for c in names_at(pod, &format!("/spec/{list}")) {
            for e in names_at(c, "/env") {
                push(Kind::Secret, str_at(e, "/valueFrom/secretKeyRef/name"));
                push(
                    Kind::ConfigMap,
                    str_at(e, "/valueFrom/configMapKeyRef/name"),
                );
            }
            for e in names_at(c, "/envFrom") {
                push(Kind::Secret, str_at(e, "/secretRef/name"));
                push(Kind::ConfigMap, str_at(e, "/configMapRef/name"));
            }
        }
    }
    out
}

impl Graph {
    fn remove_pod(&mut self, id: &str) {
        let Some((node, refs)) = self.pods.remove(id) else {
            return;
        };
        if let Some(counts) = self.refs.get_mut(&node) {
            for r in refs {
                if let Some(c) = counts.get_mut(&r) {
                    *c -= 1;
                    if *c == 0 {
                        counts.remove(&r);
                    }
                }
            }
            if counts.is_empty() {
                self.refs.remove(&node);
            }
        }
    }

    fn put_pod(&mut self, id: String, pod: &Value) {
        self.remove_pod(&id);
        let Some(node) = str_at(pod, "/spec/nodeName") else {
            return;
        };
        let ns = meta::namespace(pod).to_string();
        let mut refs: Vec<Ref> = pod_refs(pod)
            .into_iter()
            .map(|(k, n)| (k, ns.clone(), n))
            .collect();
        refs.sort_by(|a, b| (a.1.as_str(), a.2.as_str()).cmp(&(b.1.as_str(), b.2.as_str())));
        refs.dedup();
        let counts = self.refs.entry(node.clone()).or_default();
        for r in &refs {
            *counts.entry(r.clone()).or_default() += 1;
        }
        self.pods.insert(id, (node, refs));
    }
}

pub struct NodeAuthorizer {
    graph: RwLock<Graph>,
    /// Upstream's `system:node` rules: what a node may do beyond the graph checks.
    rules: Vec<Rule>,
}

/// What the Node authorizer says: allow, or no opinion (with why, for the message).
#[derive(Debug, PartialEq, Eq)]
pub enum NodeDecision {
    Allow,
    NoOpinion(Option<String>),
}

impl NodeAuthorizer {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            graph: RwLock::default(),
            rules: super::policy::node_rules()
                .iter()
                .map(Rule::from_value)
                .collect(),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Graph> {
        self.graph.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Graph> {
        self.graph.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The rules the Node authorizer grants a node (for SelfSubjectRulesReview).
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Whether `pod` (namespace, name) is bound to `node`.
    pub fn pod_on_node(&self, node: &str, namespace: &str, name: &str) -> bool {
        self.read()
            .pods
            .get(&format!("{namespace}/{name}"))
            .is_some_and(|(n, _)| n == node)
    }

    fn related(&self, node: &str, kind: Kind, namespace: &str, name: &str) -> bool {
        let graph = self.read();
        let Some(refs) = graph.refs.get(node) else {
            return false;
        };
        refs.contains_key(&(kind, namespace.to_string(), name.to_string()))
    }

    /// A volume is related when a claim a pod on the node uses is bound to it.
    fn volume_related(&self, node: &str, volume: &str) -> bool {
        let graph = self.read();
        let Some(refs) = graph.refs.get(node) else {
            return false;
        };
        refs.keys().any(|(k, ns, claim)| {
            *k == Kind::Claim
                && graph
                    .claims
                    .get(&format!("{ns}/{claim}"))
                    .map(String::as_str)
                    == Some(volume)
        })
    }

    pub fn decide(&self, user: &UserInfo, attrs: &Attributes) -> NodeDecision {
        let Some(node) = node_name(user) else {
            return NodeDecision::NoOpinion(None);
        };
        if attrs.path.is_some() {
            return NodeDecision::NoOpinion(None);
        }
        let no_relation = || {
            NodeDecision::NoOpinion(Some(format!(
                "no relationship found between node '{node}' and this object"
            )))
        };
        let verdict = |ok: bool| {
            if ok {
                NodeDecision::Allow
            } else {
                no_relation()
            }
        };
        // A list or watch of one object by name (`metadata.name=` field selector) is a get.
        let single = if attrs.name.is_empty() && matches!(attrs.verb.as_str(), "list" | "watch") {
            field_value(&attrs.field_selector, "metadata.name")
        } else {
            None
        };
        let name = single.unwrap_or(attrs.name.as_str());
        let reads_one = attrs.verb == "get" || single.is_some();
        let (ns, sub) = (attrs.namespace.as_str(), attrs.subresource.as_str());
        if attrs.group == "coordination.k8s.io" && attrs.resource == "leases" {
            // Its own Lease only (a create names it in the body: NodeRestriction checks).
            if ns != "kube-node-lease" || (attrs.verb != "create" && attrs.name != node) {
                return NodeDecision::NoOpinion(Some(
                    "can only access node lease with the same name as the requesting node".into(),
                ));
            }
        }
        if !attrs.group.is_empty() {
            return self.static_rules(attrs);
        }
        match (attrs.resource.as_str(), sub) {
            ("secrets", "")
            | ("configmaps", "")
            | ("persistentvolumeclaims", "")
            | ("persistentvolumes", "") => {
                if !reads_one || name.is_empty() {
                    return NodeDecision::NoOpinion(Some(
                        "can only read individual resources of this type".into(),
                    ));
                }
                verdict(match attrs.resource.as_str() {
                    "secrets" => self.related(node, Kind::Secret, ns, name),
                    "configmaps" => self.related(node, Kind::ConfigMap, ns, name),
                    "persistentvolumeclaims" => self.related(node, Kind::Claim, ns, name),
                    _ => self.volume_related(node, name),
                })
            }
            ("persistentvolumeclaims", "status") => {
                verdict(self.related(node, Kind::Claim, ns, name))
            }
            ("serviceaccounts", "token") if attrs.verb == "create" => {
                verdict(self.related(node, Kind::ServiceAccount, ns, name))
            }
            ("pods", "") => match attrs.verb.as_str() {
                "list" | "watch" => {
                    if field_value(&attrs.field_selector, "spec.nodeName") == Some(node) {
                        NodeDecision::Allow
                    } else {
                        NodeDecision::NoOpinion(Some(
                            "can only list/watch pods with spec.nodeName field selector".into(),
                        ))
                    }
                }
                // NodeRestriction checks what a node creates.
                "create" => NodeDecision::Allow,
                "get" | "delete" => verdict(self.pod_on_node(node, ns, name)),
                _ => NodeDecision::NoOpinion(None),
            },
            ("pods", "status" | "eviction") => {
                if self.rules.iter().any(|r| r.allows(attrs)) {
                    verdict(self.pod_on_node(node, ns, name))
                } else {
                    NodeDecision::NoOpinion(None)
                }
            }
            _ => self.static_rules(attrs),
        }
    }

    fn static_rules(&self, attrs: &Attributes) -> NodeDecision {
        if self.rules.iter().any(|r| r.allows(attrs)) {
            NodeDecision::Allow
        } else {
            NodeDecision::NoOpinion(None)
        }
    }

    /// Follows the pods and claims caches forever.
    pub fn spawn_feed(self: &Arc<Self>, cache: Arc<WatchCache>) {
        for plural in ["pods", "persistentvolumeclaims"] {
            let this = self.clone();
            let cache = cache.clone();
            tokio::spawn(async move { this.follow(cache, plural).await });
        }
    }

    fn apply(&self, plural: &str, key: &str, obj: Option<&Value>) {
        let mut graph = self.write();
        // `/registry/<plural>/<ns>/<name>` → `<ns>/<name>`.
        let id = key.splitn(4, '/').nth(3).unwrap_or(key).to_string();
        match (plural, obj) {
            ("pods", Some(pod)) => graph.put_pod(id, pod),
            ("pods", None) => graph.remove_pod(&id),
            (_, Some(claim)) => match str_at(claim, "/spec/volumeName") {
                Some(v) => {
                    graph.claims.insert(id, v);
                }
                None => {
                    graph.claims.remove(&id);
                }
            },
            (_, None) => {
                graph.claims.remove(&id);
            }
        }
    }

    async fn follow(&self, cache: Arc<WatchCache>, plural: &'static str) {
        let Some(def) = crate::resources::find("", "v1", plural) else {
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
            {
                let mut graph = self.write();
                if plural == "pods" {
                    graph.pods.clear();
                    graph.refs.clear();
                } else {
                    graph.claims.clear();
                }
            }
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

/// The value a field selector requires for `field` (`a=b`, `a==b`), if it names one.
fn field_value<'a>(selector: &'a str, field: &str) -> Option<&'a str> {
    selector.split(',').find_map(|term| {
        let (k, v) = term.split_once('=')?;
        if k.ends_with('!') {
            return None;
        }
        (k.trim() == field).then(|| v.trim_start_matches('=').trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str) -> UserInfo {
        UserInfo::new(&format!("system:node:{name}"), &[NODES_GROUP])
    }

    fn get(resource: &str, ns: &str, name: &str) -> Attributes {
        Attributes {
            verb: "get".into(),
            namespace: ns.into(),
            resource: resource.into(),
            name: name.into(),
            ..Attributes::default()
        }
    }

    #[test]
    fn a_node_reads_only_what_its_pods_use() {
        let authz = NodeAuthorizer::new();
        authz.apply(
            "pods",
            "/registry/pods/default/web",
            Some(&json!({"metadata": {"name": "web", "namespace": "default"},
                "spec": {"nodeName": "a", "volumes": [{"name": "s", "secret": {"secretName": "tls"}},
                    {"name": "d", "persistentVolumeClaim": {"claimName": "data"}}],
                    "containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "cfg"}}]}]}})),
        );
        authz.apply(
            "persistentvolumeclaims",
            "/registry/persistentvolumeclaims/default/data",
            Some(&json!({"metadata": {"name": "data", "namespace": "default"}, "spec": {"volumeName": "pv1"}})),
        );
        let (a, b) = (node("a"), node("b"));
        assert_eq!(
            authz.decide(&a, &get("secrets", "default", "tls")),
            NodeDecision::Allow
        );
        assert_eq!(
            authz.decide(&a, &get("configmaps", "default", "cfg")),
            NodeDecision::Allow
        );
        assert_eq!(
            authz.decide(&a, &get("persistentvolumes", "", "pv1")),
            NodeDecision::Allow
        );
        assert_eq!(
            authz.decide(&a, &get("pods", "default", "web")),
            NodeDecision::Allow
        );
        assert!(
            matches!(authz.decide(&b, &get("secrets", "default", "tls")), NodeDecision::NoOpinion(Some(m)) if m.contains("node 'b'"))
        );
        assert_ne!(
            authz.decide(&b, &get("pods", "default", "web")),
            NodeDecision::Allow
        );
        assert_ne!(
            authz.decide(&a, &get("secrets", "default", "other")),
            NodeDecision::Allow
        );
        let mut list = get("pods", "", "");
        list.verb = "list".into();
        assert_ne!(authz.decide(&a, &list), NodeDecision::Allow);
        list.field_selector = "spec.nodeName=a".into();
        assert_eq!(authz.decide(&a, &list), NodeDecision::Allow);
        assert_eq!(
            authz.decide(&a, &get("nodes", "", "b")),
            NodeDecision::Allow
        );
        let mut lease = get("leases", "kube-node-lease", "a");
        lease.group = "coordination.k8s.io".into();
        assert_eq!(authz.decide(&a, &lease), NodeDecision::Allow);
        lease.name = "b".into();
        assert_ne!(authz.decide(&a, &lease), NodeDecision::Allow);
        // Not a node: no opinion at all.
        let user = UserInfo::new("system:node:a", &[]);
        assert_eq!(
            authz.decide(&user, &get("nodes", "", "a")),
            NodeDecision::NoOpinion(None)
        );
        // The pod leaves the node: so do its secrets.
        authz.apply("pods", "/registry/pods/default/web", None);
        assert_ne!(
            authz.decide(&a, &get("secrets", "default", "tls")),
            NodeDecision::Allow
        );
    }
}
