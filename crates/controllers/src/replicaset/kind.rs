//! The two kinds one implementation serves: apps/v1 ReplicaSet and core/v1
//! ReplicationController. They differ only in how the selector is written (a
//! LabelSelector, or a plain map that defaults to the template's labels) and in names.

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{PodTemplateSpec, ReplicationController};
use k8s_openapi::NamespaceResourceScope;
use serde::Serialize;
use skiff_runtime::informer::Object;
use skiff_runtime::selector::Selector;

use super::status::ReplicaStatus;

/// What the loop needs to know about a replicated kind.
pub trait Replicated: Object + kube::Resource<Scope = NamespaceResourceScope> + Serialize {
    /// The event source and queue name (upstream's controller names).
    const COMPONENT: &'static str;

    /// The pod selector; an unparsable one is an error naming it.
    fn selector(&self) -> Result<Selector, String>;
    /// spec.replicas (defaulted to 1 by the API server; 1 if somehow missing).
    fn replicas(&self) -> i32;
    fn min_ready_seconds(&self) -> i32;
    fn template(&self) -> Option<&PodTemplateSpec>;
    /// The status as the common shape both kinds share field for field.
    fn replica_status(&self) -> ReplicaStatus;
}

fn common_status<S: Serialize>(status: Option<&S>) -> ReplicaStatus {
    status
        .and_then(|s| serde_json::to_value(s).ok())
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default()
}

impl Replicated for ReplicaSet {
    const COMPONENT: &'static str = "replicaset-controller";

    fn selector(&self) -> Result<Selector, String> {
        Selector::new(self.spec.as_ref().map(|s| &s.selector))
    }
    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }
    fn replica_status(&self) -> ReplicaStatus {
        common_status(self.status.as_ref())
    }
}

impl Replicated for ReplicationController {
    const COMPONENT: &'static str = "replication-controller";

    fn selector(&self) -> Result<Selector, String> {
        let spec = self.spec.as_ref();
        // Upstream defaults an absent selector to the template's labels.
        let map = spec.and_then(|s| s.selector.as_ref()).or_else(|| {
            spec.and_then(|s| s.template.as_ref())
                .and_then(|t| t.metadata.as_ref())
                .and_then(|m| m.labels.as_ref())
        });
        Ok(Selector::from_map(map))
    }
    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }
    fn replica_status(&self) -> ReplicaStatus {
        common_status(self.status.as_ref())
    }
}
