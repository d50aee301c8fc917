//! The ownership graph: every watched object by uid, with its owners, and the reverse
//! index (owner uid → dependents). Pure: applying a change answers which uids the
//! collector must look at again.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::discovery::Type;

pub const FOREGROUND: &str = "foregroundDeletion";
pub const ORPHAN: &str = "orphan";

/// What the graph keeps of one object.
#[derive(Clone, Debug)]
pub struct Node {
    pub kind: Arc<Type>,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
    pub owners: Vec<OwnerReference>,
    pub deleting: bool,
    pub finalizers: Vec<String>,
}

impl Node {
    pub fn has_finalizer(&self, f: &str) -> bool {
        self.finalizers.iter().any(|x| x == f)
    }

    /// Being deleted in the foreground: its dependents go first.
    pub fn deleting_dependents(&self) -> bool {
        self.deleting && self.has_finalizer(FOREGROUND)
    }

    /// Being deleted with its dependents orphaned.
    pub fn orphaning(&self) -> bool {
        self.deleting && self.has_finalizer(ORPHAN)
    }

    /// The reference to `owner` blocks the owner's foreground deletion.
    pub fn blocks(&self, owner: &str) -> bool {
        self.owners
            .iter()
            .any(|r| r.uid == owner && r.block_owner_deletion == Some(true))
    }
}

#[derive(Default)]
pub struct Graph {
    nodes: HashMap<String, Node>,
    dependents: HashMap<String, HashSet<String>>,
}

impl Graph {
    pub fn get(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The observed dependents of `owner`.
    pub fn dependents(&self, owner: &str) -> Vec<&Node> {
        let mut out: Vec<&Node> = self
            .dependents
            .get(owner)
            .into_iter()
            .flatten()
            .filter_map(|d| self.nodes.get(d))
            .collect();
        out.sort_by(|a, b| a.uid.cmp(&b.uid));
        out
    }

    /// Uids of the nodes of type `key` (to drop those a relist no longer shows).
    pub fn uids_of_type(&self, key: &str) -> Vec<String> {
        self.nodes
            .values()
            .filter(|n| n.kind.key() == key)
            .map(|n| n.uid.clone())
            .collect()
    }

    fn unlink(&mut self, node: &Node) {
        for r in &node.owners {
            if let Some(set) = self.dependents.get_mut(&r.uid) {
                set.remove(&node.uid);
                if set.is_empty() {
                    self.dependents.remove(&r.uid);
                }
            }
        }
    }

    /// Adds or updates a node; returns the uids to look at.
    pub fn upsert(&mut self, node: Node) -> Vec<String> {
        let mut wake: Vec<String> = Vec::new();
        let old = self.nodes.remove(&node.uid);
        if let Some(old) = &old {
            self.unlink(old);
            // Owners this node no longer references may be waiting on it (foreground).
            for r in &old.owners {
                if !node.owners.iter().any(|n| n.uid == r.uid) {
                    wake.push(r.uid.clone());
                }
            }
        }
        for r in &node.owners {
            self.dependents
                .entry(r.uid.clone())
                .or_default()
                .insert(node.uid.clone());
        }
        let became = |f: fn(&Node) -> bool| f(&node) && old.as_ref().is_none_or(|o| !f(o));
        // An owner whose deletion now waits on the collector.
        if became(Node::deleting_dependents) || became(Node::orphaning) {
            wake.push(node.uid.clone());
        } else if node.deleting_dependents() || node.orphaning() {
            // Still waiting: a changed dependent set or finalizers may let it finish.
            wake.push(node.uid.clone());
        }
        // A dependent with an owner not (or no longer) observed, or observed in
        // another namespace, or waiting on its dependents: check its owners.
        let needs_check = node.owners.iter().any(|r| match self.nodes.get(&r.uid) {
            None => true,
            Some(o) => {
                o.deleting_dependents() || (o.kind.namespaced && o.namespace != node.namespace)
            }
        });
        if needs_check && !node.deleting {
            wake.push(node.uid.clone());
        }
        // Its dependents may have been waiting for it to show up or to start deleting.
        if became(Node::deleting_dependents) {
            wake.extend(
                self.dependents
                    .get(&node.uid)
                    .into_iter()
                    .flatten()
                    .cloned(),
            );
        }
        self.nodes.insert(node.uid.clone(), node);
        dedup(wake)
    }

    /// Removes a node; returns the uids to look at: its dependents (their owner is
    /// gone) and its owners (one may be waiting for it to go).
    pub fn remove(&mut self, uid: &str) -> Vec<String> {
        let Some(node) = self.nodes.remove(uid) else {
            return Vec::new();
        };
        self.unlink(&node);
        let mut wake: Vec<String> = node.owners.iter().map(|r| r.uid.clone()).collect();
        wake.extend(self.dependents.get(uid).into_iter().flatten().cloned());
        dedup(wake)
    }
}

fn dedup(mut v: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::new();
    v.retain(|x| seen.insert(x.clone()));
    v
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::garbagecollector::discovery::test_type;

    pub fn owner_ref(uid: &str, block: bool) -> OwnerReference {
        OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: format!("name-{uid}"),
            uid: uid.into(),
            controller: None,
            block_owner_deletion: block.then_some(true),
        }
    }

    pub fn node(uid: &str, owners: &[OwnerReference], deleting: bool, finalizers: &[&str]) -> Node {
        Node {
            kind: Arc::new(test_type("v1", "ConfigMap", "configmaps", true, &["list"])),
            namespace: Some("ns".into()),
            name: format!("name-{uid}"),
            uid: uid.into(),
            owners: owners.to_vec(),
            deleting,
            finalizers: finalizers.iter().map(|f| f.to_string()).collect(),
        }
    }

    #[test]
    fn upsert_and_remove_wake_the_right_uids() {
        let mut g = Graph::default();
        assert_eq!(
            g.upsert(node("owner", &[], false, &[])),
            Vec::<String>::new(),
            "plain owner: nothing to do"
        );
        assert_eq!(
            g.upsert(node("dep", &[owner_ref("owner", true)], false, &[])),
            Vec::<String>::new(),
            "dependent of an observed live owner: nothing to do"
        );
        assert_eq!(
            g.upsert(node("stray", &[owner_ref("missing", false)], false, &[])),
            vec!["stray"],
            "dependent of an unobserved owner is checked"
        );
        assert_eq!(g.dependents("owner").len(), 1);
        assert_eq!(
            g.upsert(node("owner", &[], true, &[FOREGROUND])),
            vec!["owner", "dep"],
            "foreground deletion wakes the owner and its dependents"
        );
        assert_eq!(
            g.upsert(node("dep", &[], false, &[])),
            vec!["owner"],
            "a dependent dropping its reference wakes the owner"
        );
        assert!(g.dependents("owner").is_empty());
        g.upsert(node("dep", &[owner_ref("owner", true)], false, &[]));
        assert_eq!(
            g.remove("dep"),
            vec!["owner"],
            "a removed dependent wakes its owner"
        );
        g.upsert(node("dep2", &[owner_ref("owner2", false)], false, &[]));
        g.upsert(node("owner2", &[], false, &[]));
        assert_eq!(
            g.remove("owner2"),
            vec!["dep2"],
            "a removed owner wakes its dependents"
        );
        assert_eq!(
            g.upsert(node("o3", &[], true, &[ORPHAN])),
            vec!["o3"],
            "orphaning wakes the owner"
        );
        assert!(g.remove("nope").is_empty());
    }

    #[test]
    fn owner_in_another_namespace_is_checked() {
        let mut g = Graph::default();
        let mut owner = node("owner", &[], false, &[]);
        owner.namespace = Some("other".into());
        g.upsert(owner);
        assert_eq!(
            g.upsert(node("dep", &[owner_ref("owner", false)], false, &[])),
            vec!["dep"]
        );
    }

    #[test]
    fn blocks_reads_block_owner_deletion() {
        let n = node(
            "d",
            &[owner_ref("a", true), owner_ref("b", false)],
            false,
            &[],
        );
        assert!(n.blocks("a"));
        assert!(!n.blocks("b"));
        assert!(!n.blocks("c"));
    }
}
