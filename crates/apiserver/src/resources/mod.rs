//! Every resource the server serves: its names, scope, subresources, how its objects are
//! decoded (`Codec`) and what is special about it (`Hooks`). Adding a resource is one entry
//! here plus, if it needs any, one small hooks module.

mod admissionregistration;
mod apiext;
mod apps;
mod autoscaling;
mod batch;
mod common;
mod config;
mod core;
mod cron;
mod events;
mod networking;
mod policy;
mod rbac;
mod storage_res;
mod strategy;
mod workload;

use std::sync::LazyLock;

use k8s_openapi::api;
pub use strategy::{
    selectable_fields, unknown_fields, Codec, Column, Context, Hooks, Plain, ScalePaths, Typed,
};

pub struct ResourceDef {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// `status`, `scale`, `binding`, `eviction`, `finalize`, `approval`.
    pub subresources: &'static [&'static str],
    pub codec: Box<dyn Codec>,
    pub hooks: Box<dyn Hooks>,
    /// Whether spec changes bump `metadata.generation` (types with a spec/status split).
    pub generation: bool,
    /// For a version that is not the one stored (autoscaling/v1 HPA, events.k8s.io/v1
    /// Event): how its objects convert to and from the storage version. Such a resource
    /// shares the storage version's plural, store keys and watch cache.
    pub conversion: Option<Conversion>,
    /// The store prefix segment: the plural for built-ins, `<group>/<plural>` for custom
    /// resources (upstream's etcd layout, so a CRD's plural never collides with a
    /// built-in's).
    pub storage_resource: &'static str,
}

/// Conversion between a served version and the storage version of the same objects.
pub struct Conversion {
    /// This version → storage form: applied to a request body right after decoding, so
    /// defaults, validation and the store all see the storage form.
    pub to_storage: ConvertFn,
    /// Storage form → this version: applied to every object a response or watch carries.
    pub from_storage: ConvertFn,
}

/// One direction of a conversion (a closure: custom resources' carry their versions).
pub type ConvertFn = Box<dyn Fn(serde_json::Value) -> serde_json::Value + Send + Sync>;

impl Conversion {
    pub fn new(
        to_storage: impl Fn(serde_json::Value) -> serde_json::Value + Send + Sync + 'static,
        from_storage: impl Fn(serde_json::Value) -> serde_json::Value + Send + Sync + 'static,
    ) -> Self {
        Self {
            to_storage: Box::new(to_storage),
            from_storage: Box::new(from_storage),
        }
    }
}

impl ResourceDef {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn has_subresource(&self, sub: &str) -> bool {
        self.subresources.contains(&sub)
    }

    pub fn group_resource(&self) -> skiff_api::GroupResource {
        skiff_api::GroupResource::new(self.group, self.plural)
    }

    pub fn group_kind(&self) -> skiff_api::GroupKind {
        skiff_api::GroupKind::new(self.group, self.kind)
    }

    /// An object as the storage version holds it (unchanged for a storage version).
    pub fn to_storage(&self, obj: serde_json::Value) -> serde_json::Value {
        match &self.conversion {
            Some(c) => (c.to_storage)(obj),
            None => obj,
        }
    }

    /// A stored object as this version shows it (unchanged for a storage version).
    pub fn from_storage(&self, obj: serde_json::Value) -> serde_json::Value {
        match &self.conversion {
            Some(c) => (c.from_storage)(obj),
            None => obj,
        }
    }

    /// Whether this resource comes from a CustomResourceDefinition (those are stored
    /// under their group).
    pub fn is_custom(&self) -> bool {
        self.storage_resource != self.plural
    }

    /// The store prefix of every object of this resource.
    pub fn storage_prefix(&self) -> String {
        format!("/registry/{}/", self.storage_resource)
    }
}

struct Def {
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
    subresources: &'static [&'static str],
    generation: bool,
}

fn def<T>(d: Def, hooks: impl Hooks + 'static) -> ResourceDef
where
    T: serde::de::DeserializeOwned + serde::Serialize + 'static,
{
    ResourceDef {
        group: d.group,
        version: d.version,
        plural: d.plural,
        singular: d.singular,
        kind: d.kind,
        namespaced: d.namespaced,
        short_names: d.short_names,
        categories: d.categories,
        subresources: d.subresources,
        codec: Box::new(Typed::<T>::new()),
        hooks: Box::new(hooks),
        generation: d.generation,
        conversion: None,
        storage_resource: d.plural,
    }
}

impl ResourceDef {
    /// Serves this entry as a converted view of the storage version with the same plural
    /// (which must be listed before it in `RESOURCES`).
    fn stored_as(mut self, conversion: Conversion) -> Self {
        self.conversion = Some(conversion);
        self
    }
}

const NONE: &[&str] = &[];
const ALL: &[&str] = &["all"];
const STATUS: &[&str] = &["status"];
const STATUS_SCALE: &[&str] = &["status", "scale"];

macro_rules! d {
    ($g:expr, $v:expr, $plural:expr, $singular:expr, $kind:expr, ns=$ns:expr, short=$short:expr, cat=$cat:expr, sub=$sub:expr, gen=$gen:expr) => {
        Def {
            group: $g,
            version: $v,
            plural: $plural,
            singular: $singular,
            kind: $kind,
            namespaced: $ns,
            short_names: $short,
            categories: $cat,
            subresources: $sub,
            generation: $gen,
        }
    };
}

/// The context strategy tests run with: a namespaced request, no service range.
#[cfg(test)]
pub(crate) fn test_ctx() -> Context<'static> {
    Context {
        namespace: "default",
        service_cidr: None,
    }
}

pub static RESOURCES: LazyLock<Vec<ResourceDef>> = LazyLock::new(|| {
    use api::*;
    vec![
        def::<core::v1::Namespace>(d!("", "v1", "namespaces", "namespace", "Namespace", ns=false, short=&["ns"], cat=NONE, sub=&["status", "finalize"], gen=false), self::core::Namespaces),
        def::<core::v1::Pod>(d!("", "v1", "pods", "pod", "Pod", ns=true, short=&["po"], cat=ALL, sub=&["status", "binding", "eviction", "log", "exec", "attach", "portforward"], gen=false), self::core::Pods),
        def::<core::v1::Node>(d!("", "v1", "nodes", "node", "Node", ns=false, short=&["no"], cat=NONE, sub=&["status", "proxy"], gen=false), self::core::Nodes),
        def::<core::v1::Service>(d!("", "v1", "services", "service", "Service", ns=true, short=&["svc"], cat=ALL, sub=STATUS, gen=false), self::core::Services),
        def::<core::v1::Endpoints>(d!("", "v1", "endpoints", "endpoints", "Endpoints", ns=true, short=&["ep"], cat=NONE, sub=NONE, gen=false), self::config::Endpoints),
        def::<core::v1::ConfigMap>(d!("", "v1", "configmaps", "configmap", "ConfigMap", ns=true, short=&["cm"], cat=NONE, sub=NONE, gen=false), self::core::ConfigMaps),
        def::<core::v1::Secret>(d!("", "v1", "secrets", "secret", "Secret", ns=true, short=NONE, cat=NONE, sub=NONE, gen=false), self::core::Secrets),
        def::<core::v1::ServiceAccount>(d!("", "v1", "serviceaccounts", "serviceaccount", "ServiceAccount", ns=true, short=&["sa"], cat=NONE, sub=&["token"], gen=false), self::config::ServiceAccounts),
        def::<core::v1::Event>(d!("", "v1", "events", "event", "Event", ns=true, short=&["ev"], cat=NONE, sub=NONE, gen=false), self::events::Events),
        def::<core::v1::ReplicationController>(d!("", "v1", "replicationcontrollers", "replicationcontroller", "ReplicationController", ns=true, short=&["rc"], cat=ALL, sub=STATUS_SCALE, gen=true), self::apps::ReplicationControllers),
        def::<core::v1::PersistentVolume>(d!("", "v1", "persistentvolumes", "persistentvolume", "PersistentVolume", ns=false, short=&["pv"], cat=NONE, sub=STATUS, gen=false), self::storage_res::PersistentVolumes),
        def::<core::v1::PersistentVolumeClaim>(d!("", "v1", "persistentvolumeclaims", "persistentvolumeclaim", "PersistentVolumeClaim", ns=true, short=&["pvc"], cat=NONE, sub=STATUS, gen=false), self::storage_res::PersistentVolumeClaims),
        def::<core::v1::LimitRange>(d!("", "v1", "limitranges", "limitrange", "LimitRange", ns=true, short=&["limits"], cat=NONE, sub=NONE, gen=false), self::config::LimitRanges),
        def::<core::v1::ResourceQuota>(d!("", "v1", "resourcequotas", "resourcequota", "ResourceQuota", ns=true, short=&["quota"], cat=NONE, sub=STATUS, gen=false), self::config::ResourceQuotas),
        def::<apps::v1::Deployment>(d!("apps", "v1", "deployments", "deployment", "Deployment", ns=true, short=&["deploy"], cat=ALL, sub=STATUS_SCALE, gen=true), self::apps::Deployments),
        def::<apps::v1::ReplicaSet>(d!("apps", "v1", "replicasets", "replicaset", "ReplicaSet", ns=true, short=&["rs"], cat=ALL, sub=STATUS_SCALE, gen=true), self::apps::ReplicaSets),
        def::<apps::v1::StatefulSet>(d!("apps", "v1", "statefulsets", "statefulset", "StatefulSet", ns=true, short=&["sts"], cat=ALL, sub=STATUS_SCALE, gen=true), self::apps::StatefulSets),
        def::<apps::v1::DaemonSet>(d!("apps", "v1", "daemonsets", "daemonset", "DaemonSet", ns=true, short=&["ds"], cat=ALL, sub=STATUS, gen=true), self::apps::DaemonSets),
        def::<apps::v1::ControllerRevision>(d!("apps", "v1", "controllerrevisions", "controllerrevision", "ControllerRevision", ns=true, short=NONE, cat=NONE, sub=NONE, gen=false), self::apps::ControllerRevisions),
        def::<batch::v1::Job>(d!("batch", "v1", "jobs", "job", "Job", ns=true, short=NONE, cat=ALL, sub=STATUS, gen=true), self::batch::Jobs),
        def::<batch::v1::CronJob>(d!("batch", "v1", "cronjobs", "cronjob", "CronJob", ns=true, short=&["cj"], cat=ALL, sub=STATUS, gen=true), self::batch::CronJobs),
        def::<autoscaling::v2::HorizontalPodAutoscaler>(d!("autoscaling", "v2", "horizontalpodautoscalers", "horizontalpodautoscaler", "HorizontalPodAutoscaler", ns=true, short=&["hpa"], cat=ALL, sub=STATUS, gen=true), self::autoscaling::HorizontalPodAutoscalers),
        // Served from the autoscaling/v2 objects above (after them: v2 stays preferred).
        def::<autoscaling::v1::HorizontalPodAutoscaler>(d!("autoscaling", "v1", "horizontalpodautoscalers", "horizontalpodautoscaler", "HorizontalPodAutoscaler", ns=true, short=&["hpa"], cat=ALL, sub=STATUS, gen=true), self::autoscaling::HorizontalPodAutoscalersV1)
            .stored_as(Conversion::new(self::autoscaling::v1_to_v2, self::autoscaling::v2_to_v1)),
        def::<coordination::v1::Lease>(d!("coordination.k8s.io", "v1", "leases", "lease", "Lease", ns=true, short=NONE, cat=NONE, sub=NONE, gen=false), self::config::Leases),
        def::<discovery::v1::EndpointSlice>(d!("discovery.k8s.io", "v1", "endpointslices", "endpointslice", "EndpointSlice", ns=true, short=NONE, cat=NONE, sub=NONE, gen=false), self::config::EndpointSlices),
        def::<policy::v1::PodDisruptionBudget>(d!("policy", "v1", "poddisruptionbudgets", "poddisruptionbudget", "PodDisruptionBudget", ns=true, short=&["pdb"], cat=NONE, sub=STATUS, gen=true), self::policy::PodDisruptionBudgets),
        // Served from the core/v1 Events above.
        def::<events::v1::Event>(d!("events.k8s.io", "v1", "events", "event", "Event", ns=true, short=&["ev"], cat=NONE, sub=NONE, gen=false), self::events::EventsV1)
            .stored_as(Conversion::new(self::events::events_to_core, self::events::core_to_events)),
        def::<scheduling::v1::PriorityClass>(d!("scheduling.k8s.io", "v1", "priorityclasses", "priorityclass", "PriorityClass", ns=false, short=&["pc"], cat=NONE, sub=NONE, gen=false), self::config::PriorityClasses),
        def::<storage::v1::StorageClass>(d!("storage.k8s.io", "v1", "storageclasses", "storageclass", "StorageClass", ns=false, short=&["sc"], cat=NONE, sub=NONE, gen=false), self::storage_res::StorageClasses),
        def::<networking::v1::Ingress>(d!("networking.k8s.io", "v1", "ingresses", "ingress", "Ingress", ns=true, short=&["ing"], cat=NONE, sub=STATUS, gen=true), self::networking::Ingresses),
        def::<networking::v1::IngressClass>(d!("networking.k8s.io", "v1", "ingressclasses", "ingressclass", "IngressClass", ns=false, short=NONE, cat=NONE, sub=NONE, gen=false), self::networking::IngressClasses),
        def::<networking::v1::NetworkPolicy>(d!("networking.k8s.io", "v1", "networkpolicies", "networkpolicy", "NetworkPolicy", ns=true, short=&["netpol"], cat=NONE, sub=NONE, gen=true), self::networking::NetworkPolicies),
        def::<rbac::v1::Role>(d!("rbac.authorization.k8s.io", "v1", "roles", "role", "Role", ns=true, short=NONE, cat=NONE, sub=NONE, gen=false), self::rbac::Roles),
        def::<rbac::v1::RoleBinding>(d!("rbac.authorization.k8s.io", "v1", "rolebindings", "rolebinding", "RoleBinding", ns=true, short=NONE, cat=NONE, sub=NONE, gen=false), self::rbac::Bindings { cluster: false }),
        def::<rbac::v1::ClusterRole>(d!("rbac.authorization.k8s.io", "v1", "clusterroles", "clusterrole", "ClusterRole", ns=false, short=NONE, cat=NONE, sub=NONE, gen=false), self::rbac::ClusterRoles),
        def::<rbac::v1::ClusterRoleBinding>(d!("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "clusterrolebinding", "ClusterRoleBinding", ns=false, short=NONE, cat=NONE, sub=NONE, gen=false), self::rbac::Bindings { cluster: true }),
        def::<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>(d!("apiextensions.k8s.io", "v1", "customresourcedefinitions", "customresourcedefinition", "CustomResourceDefinition", ns=false, short=&["crd", "crds"], cat=&["api-extensions"], sub=STATUS, gen=true), self::apiext::CustomResourceDefinitions),
        def::<admissionregistration::v1::MutatingWebhookConfiguration>(d!("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations", "mutatingwebhookconfiguration", "MutatingWebhookConfiguration", ns=false, short=NONE, cat=&["api-extensions"], sub=NONE, gen=true), self::admissionregistration::WebhookConfigurations { mutating: true }),
        def::<admissionregistration::v1::ValidatingWebhookConfiguration>(d!("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations", "validatingwebhookconfiguration", "ValidatingWebhookConfiguration", ns=false, short=NONE, cat=&["api-extensions"], sub=NONE, gen=true), self::admissionregistration::WebhookConfigurations { mutating: false }),
        def::<certificates::v1::CertificateSigningRequest>(d!("certificates.k8s.io", "v1", "certificatesigningrequests", "certificatesigningrequest", "CertificateSigningRequest", ns=false, short=&["csr"], cat=NONE, sub=&["status", "approval"], gen=false), self::apiext::CertificateSigningRequests),
    ]
});

/// Finds a resource by group, version and plural.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceDef> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Finds the resource whose objects live under a store prefix segment (`pods`): the
/// storage version where several versions share the plural.
pub fn by_storage(plural: &str) -> Option<&'static ResourceDef> {
    RESOURCES
        .iter()
        .find(|r| r.plural == plural && r.conversion.is_none())
}

/// Group/versions served, in discovery order (core first).
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES.iter() {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}
