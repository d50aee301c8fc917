//! ClusterRole aggregation (upstream's `clusterrole-aggregation` controller): a ClusterRole
//! with an `aggregationRule` gets as its rules the union of the rules of every other
//! ClusterRole its selectors match (e.g. `admin`/`edit`/`view` pick up roles labelled
//! `rbac.authorization.k8s.io/aggregate-to-*: "true"`). Any ClusterRole change requeues
//! every aggregated role, as upstream does: there are few of them.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use kube::api::{Patch, PatchParams};
use skiff_runtime::selector::Selector;
use skiff_runtime::{Informer, ObjectKey, WorkQueue};

use crate::{Ctx, Loop};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("updating the rules of ClusterRole {name}: {source}")]
    Update {
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// The rules `role` aggregates from `all`: matched roles in name order, each rule once.
pub fn aggregate(role: &ClusterRole, all: &[Arc<ClusterRole>]) -> Option<Vec<PolicyRule>> {
    let selectors: Vec<Selector> = role
        .aggregation_rule
        .as_ref()?
        .cluster_role_selectors
        .iter()
        .flatten()
        .filter_map(|s| Selector::new(Some(s)).ok())
        .collect();
    let mut sources: Vec<&Arc<ClusterRole>> = all
        .iter()
        .filter(|r| r.metadata.name != role.metadata.name)
        .filter(|r| {
            selectors
                .iter()
                .any(|s| !s.selects_nothing() && s.matches(r.metadata.labels.as_ref()))
        })
        .collect();
    sources.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut rules: Vec<PolicyRule> = Vec::new();
    for r in sources {
        for rule in r.rules.iter().flatten() {
            if !rules.contains(rule) {
                rules.push(rule.clone());
            }
        }
    }
    Some(rules)
}

struct State {
    roles: Informer<ClusterRole>,
}

impl State {
    async fn reconcile(&self, name: String) -> Result<Option<Duration>, Error> {
        let Some(role) = self.roles.get_named(None, &name) else {
            return Ok(None);
        };
        let Some(rules) = aggregate(&role, &self.roles.list()) else {
            return Ok(None);
        };
        if role.rules.clone().unwrap_or_default() == rules {
            return Ok(None);
        }
        let patch = serde_json::json!({"rules": rules});
        match self
            .roles
            .api()
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(None),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
            Err(source) => Err(Error::Update { name, source }),
        }
    }
}

pub fn controller(ctx: &Ctx) -> Loop {
    let queue: WorkQueue<String> =
        WorkQueue::new("clusterrole-aggregation", ctx.settings.max_retry_delay);
    let roles = ctx.informers.informer::<ClusterRole>();
    {
        let q = queue.clone();
        let all = roles.clone();
        roles.on_change(move |c| {
            let changed = ObjectKey::of(c.object().as_ref()).name;
            q.add(changed);
            for r in all.list() {
                if r.aggregation_rule.is_some() {
                    if let Some(n) = &r.metadata.name {
                        q.add(n.clone());
                    }
                }
            }
        });
    }
    let state = Arc::new(State { roles });
    ctx.run_workers(
        queue,
        1,
        state,
        |s, name| async move { s.reconcile(name).await },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn role(v: serde_json::Value) -> Arc<ClusterRole> {
        Arc::new(serde_json::from_value(v).unwrap())
    }

    #[test]
    fn aggregates_matching_roles_in_name_order_once() {
        let view = role(json!({"metadata": {"name": "view"},
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg": "view"}}]}}));
        let b = role(json!({"metadata": {"name": "b", "labels": {"agg": "view"}},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}));
        let a = role(json!({"metadata": {"name": "a", "labels": {"agg": "view"}},
            "rules": [{"apiGroups": ["x"], "resources": ["y"], "verbs": ["list"]},
                      {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}));
        let other = role(json!({"metadata": {"name": "c"},
            "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]}));
        let all = vec![view.clone(), b, a, other.clone()];
        let rules = aggregate(&view, &all).unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].api_groups.as_deref(), Some(&["x".to_string()][..]));
        assert!(aggregate(&other, &all).is_none());
    }
}
