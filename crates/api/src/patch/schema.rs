//! The patch metadata of built-in types: which fields merge instead of being replaced, and
//! by which key. Upstream reads this from Go struct tags (`patchStrategy`, `patchMergeKey`);
//! here it is a small hand-written type graph holding only the types on a path to such a
//! field. Walking a top-level kind's JSON (list elements are transparent) yields the type at
//! each level; a field not in the table has the default strategy: maps merge, lists are
//! replaced, and its subtree is untyped (nothing below it merges by key).
//!
//! Checked against k8s.io/api v1.33 tags. Where upstream differs from intuition it wins:
//! `NodeSpec.taints`, `PodSpec.tolerations`, `Container.envFrom`/`resizePolicy`,
//! `NamespaceSpec.finalizers` and the `*Statuses` lists of a pod have no strategy (replace);
//! only `DeploymentSpec.strategy` and the volume-shaped lists carry `retainKeys`.

/// How a list-valued field combines with the patch's list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListStrategy {
    /// The patch's list replaces the original (upstream's default).
    Replace,
    /// Elements are merged: objects matched by `key` and merged recursively, scalars
    /// (`key: None`) unioned.
    Merge { key: Option<&'static str> },
}

/// The patch metadata of one field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// The type of the field's value (of its elements, for a list); `None` = untyped.
    pub ty: Option<Ty>,
    pub list: ListStrategy,
    /// Upstream's `retainKeys` strategy: clients send `$retainKeys` to clear the other
    /// members of a union. Informational: the merge honours `$retainKeys` wherever a
    /// patch carries it, as upstream does.
    pub retain_keys: bool,
}

impl Field {
    /// A field not in the table.
    pub const UNTYPED: Field = Field {
        ty: None,
        list: ListStrategy::Replace,
        retain_keys: false,
    };

    const fn of(ty: Ty) -> Field {
        Field {
            ty: Some(ty),
            list: ListStrategy::Replace,
            retain_keys: false,
        }
    }

    const fn merge_by(key: &'static str) -> Field {
        Field {
            ty: None,
            list: ListStrategy::Merge { key: Some(key) },
            retain_keys: false,
        }
    }

    const fn merge_of(ty: Ty, key: &'static str) -> Field {
        Field {
            ty: Some(ty),
            list: ListStrategy::Merge { key: Some(key) },
            retain_keys: false,
        }
    }

    /// A list of scalars merged as a set.
    const SET: Field = Field {
        ty: None,
        list: ListStrategy::Merge { key: None },
        retain_keys: false,
    };

    const fn retaining(self) -> Field {
        Field {
            retain_keys: true,
            ..self
        }
    }
}

/// The types of the graph. Several upstream types share a node when they agree on every
/// field that matters here (e.g. every workload spec whose only merging lies under
/// `template`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    /// A built-in object with nothing special below `metadata`.
    Object,
    /// A built-in object whose `status.conditions` merge by `type`.
    ObjectWithConditions,
    ObjectMeta,
    ConditionsStatus,
    Pod,
    PodSpec,
    PodStatus,
    Container,
    PodTemplate,
    PodTemplateSpec,
    Deployment,
    DeploymentSpec,
    /// ReplicaSet, ReplicationController, StatefulSet, DaemonSet, Job.
    Workload,
    WorkloadSpec,
    CronJob,
    CronJobSpec,
    JobTemplateSpec,
    Node,
    NodeSpec,
    NodeStatus,
    Service,
    ServiceSpec,
    ServiceAccount,
    WebhookConfiguration,
    ComponentStatus,
}

/// The type of a top-level kind, or `None` when the kind is not built in (custom
/// resources have no patch metadata, and upstream refuses strategic merge patches for them).
pub fn root(kind: &str) -> Option<Ty> {
    use Ty::*;
    let ty = match kind {
        "Pod" => Pod,
        "PodTemplate" => PodTemplate,
        "Deployment" => Deployment,
        "ReplicaSet" | "ReplicationController" | "StatefulSet" | "DaemonSet" | "Job" => Workload,
        "CronJob" => CronJob,
        "Node" => Node,
        "Service" => Service,
        "ServiceAccount" => ServiceAccount,
        "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration" => WebhookConfiguration,
        "ComponentStatus" => ComponentStatus,
        "Namespace"
        | "PersistentVolumeClaim"
        | "HorizontalPodAutoscaler"
        | "PodDisruptionBudget"
        | "APIService"
        | "FlowSchema"
        | "PriorityLevelConfiguration" => ObjectWithConditions,
        "ConfigMap"
        | "Secret"
        | "Endpoints"
        | "EndpointSlice"
        | "Event"
        | "LimitRange"
        | "ResourceQuota"
        | "PersistentVolume"
        | "Binding"
        | "Scale"
        | "Role"
        | "ClusterRole"
        | "RoleBinding"
        | "ClusterRoleBinding"
        | "Ingress"
        | "IngressClass"
        | "NetworkPolicy"
        | "Lease"
        | "StorageClass"
        | "CSIDriver"
        | "CSINode"
        | "CSIStorageCapacity"
        | "VolumeAttachment"
        | "PriorityClass"
        | "RuntimeClass"
        | "CertificateSigningRequest"
        | "ControllerRevision"
        | "CustomResourceDefinition"
        | "ValidatingAdmissionPolicy"
        | "ValidatingAdmissionPolicyBinding"
        | "IPAddress"
        | "ServiceCIDR"
        | "DeviceClass"
        | "ResourceClaim"
        | "ResourceClaimTemplate"
        | "ResourceSlice" => Object,
        _ => return None,
    };
    Some(ty)
}

/// The patch metadata of field `name` of type `ty`.
pub fn field(ty: Ty, name: &str) -> Field {
    use Ty::*;
    match (ty, name) {
        (_, "metadata") if ty != ObjectMeta => Field::of(ObjectMeta),

        (ObjectMeta, "finalizers") => Field::SET,
        (ObjectMeta, "ownerReferences") => Field::merge_by("uid"),

        (ObjectWithConditions | Deployment | Workload | Service, "status") => {
            Field::of(ConditionsStatus)
        }
        (ConditionsStatus, "conditions") => Field::merge_by("type"),

        (Pod, "spec") => Field::of(PodSpec),
        (Pod, "status") => Field::of(PodStatus),
        (PodSpec, "containers" | "initContainers" | "ephemeralContainers") => {
            Field::merge_of(Container, "name")
        }
        (PodSpec, "volumes") => Field::merge_by("name").retaining(),
        (PodSpec, "imagePullSecrets" | "schedulingGates") => Field::merge_by("name"),
        (PodSpec, "resourceClaims") => Field::merge_by("name").retaining(),
        (PodSpec, "hostAliases") => Field::merge_by("ip"),
        (PodSpec, "topologySpreadConstraints") => Field::merge_by("topologyKey"),
        (PodSpec, "tolerations" | "readinessGates") => Field::UNTYPED,
        (PodStatus, "conditions") => Field::merge_by("type"),
        (PodStatus, "podIPs" | "hostIPs") => Field::merge_by("ip"),
        (PodStatus, "resourceClaimStatuses") => Field::merge_by("name").retaining(),
        (
            PodStatus,
            "containerStatuses" | "initContainerStatuses" | "ephemeralContainerStatuses",
        ) => Field::UNTYPED,
        (Container, "env") => Field::merge_by("name"),
        (Container, "ports") => Field::merge_by("containerPort"),
        (Container, "volumeMounts") => Field::merge_by("mountPath"),
        (Container, "volumeDevices") => Field::merge_by("devicePath"),
        (Container, "envFrom" | "resizePolicy") => Field::UNTYPED,

        (PodTemplate, "template") => Field::of(PodTemplateSpec),
        (PodTemplateSpec, "spec") => Field::of(PodSpec),

        (Deployment, "spec") => Field::of(DeploymentSpec),
        (DeploymentSpec, "strategy") => Field::UNTYPED.retaining(),
        (DeploymentSpec | WorkloadSpec, "template") => Field::of(PodTemplateSpec),
        (Workload, "spec") => Field::of(WorkloadSpec),
        (CronJob, "spec") => Field::of(CronJobSpec),
        (CronJobSpec, "jobTemplate") => Field::of(JobTemplateSpec),
        (JobTemplateSpec, "spec") => Field::of(WorkloadSpec),

        (Node, "spec") => Field::of(NodeSpec),
        (Node, "status") => Field::of(NodeStatus),
        (NodeSpec, "podCIDRs") => Field::SET,
        (NodeSpec, "taints") => Field::UNTYPED,
        (NodeStatus, "conditions" | "addresses") => Field::merge_by("type"),

        (Service, "spec") => Field::of(ServiceSpec),
        (ServiceSpec, "ports") => Field::merge_by("port"),

        (ServiceAccount, "secrets") => Field::merge_by("name"),
        (WebhookConfiguration, "webhooks") => Field::merge_by("name"),
        (ComponentStatus, "conditions") => Field::merge_by("type"),

        _ => Field::UNTYPED,
    }
}

/// The patch metadata at a dotted path under a top-level kind (list elements are
/// transparent: `spec.template.spec.containers.env`), or `None` for an unknown kind.
pub fn lookup(kind: &str, path: &str) -> Option<Field> {
    let mut current = Field::of(root(kind)?);
    for name in path.split('.').filter(|s| !s.is_empty()) {
        current = match current.ty {
            Some(ty) => field(ty, name),
            None => Field::UNTYPED,
        };
    }
    Some(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: ListStrategy = ListStrategy::Merge { key: Some("name") };
    const TYPE: ListStrategy = ListStrategy::Merge { key: Some("type") };
    const SET: ListStrategy = ListStrategy::Merge { key: None };
    const REPLACE: ListStrategy = ListStrategy::Replace;

    #[test]
    fn list_strategies_match_upstream_tags() {
        let merge = |key| ListStrategy::Merge { key: Some(key) };
        let cases = [
            ("Pod", "metadata.finalizers", SET),
            ("Pod", "metadata.ownerReferences", merge("uid")),
            ("Pod", "metadata.managedFields", REPLACE),
            ("Pod", "spec.containers", NAME),
            ("Pod", "spec.initContainers", NAME),
            ("Pod", "spec.ephemeralContainers", NAME),
            ("Pod", "spec.volumes", NAME),
            ("Pod", "spec.imagePullSecrets", NAME),
            ("Pod", "spec.hostAliases", merge("ip")),
            ("Pod", "spec.tolerations", REPLACE),
            (
                "Pod",
                "spec.topologySpreadConstraints",
                merge("topologyKey"),
            ),
            ("Pod", "spec.containers.env", NAME),
            ("Pod", "spec.containers.ports", merge("containerPort")),
            ("Pod", "spec.containers.volumeMounts", merge("mountPath")),
            (
                "Pod",
                "spec.initContainers.volumeDevices",
                merge("devicePath"),
            ),
            ("Pod", "spec.containers.envFrom", REPLACE),
            ("Pod", "spec.containers.resizePolicy", REPLACE),
            ("Pod", "spec.containers.command", REPLACE),
            ("Pod", "status.conditions", TYPE),
            ("Pod", "status.podIPs", merge("ip")),
            ("Pod", "status.containerStatuses", REPLACE),
            ("PodTemplate", "template.spec.containers.env", NAME),
            ("PodTemplate", "template.metadata.finalizers", SET),
            ("Deployment", "spec.template.spec.containers", NAME),
            ("Deployment", "status.conditions", TYPE),
            ("ReplicaSet", "spec.template.spec.volumes", NAME),
            ("ReplicationController", "status.conditions", TYPE),
            (
                "StatefulSet",
                "spec.template.spec.containers.ports",
                merge("containerPort"),
            ),
            ("StatefulSet", "spec.volumeClaimTemplates", REPLACE),
            ("DaemonSet", "spec.template.spec.initContainers", NAME),
            ("Job", "spec.template.spec.containers", NAME),
            ("Job", "status.conditions", TYPE),
            (
                "CronJob",
                "spec.jobTemplate.spec.template.spec.containers",
                NAME,
            ),
            (
                "CronJob",
                "spec.jobTemplate.metadata.ownerReferences",
                merge("uid"),
            ),
            ("Service", "spec.ports", merge("port")),
            ("Service", "status.conditions", TYPE),
            ("Node", "spec.taints", REPLACE),
            ("Node", "spec.podCIDRs", SET),
            ("Node", "status.conditions", TYPE),
            ("Node", "status.addresses", TYPE),
            ("Node", "status.images", REPLACE),
            ("Namespace", "spec.finalizers", REPLACE),
            ("Namespace", "status.conditions", TYPE),
            ("ServiceAccount", "secrets", NAME),
            ("MutatingWebhookConfiguration", "webhooks", NAME),
            ("EndpointSlice", "endpoints", REPLACE),
            ("EndpointSlice", "metadata.finalizers", SET),
            ("ClusterRole", "rules", REPLACE),
            ("RoleBinding", "subjects", REPLACE),
            ("ConfigMap", "data", REPLACE),
        ];
        for (kind, path, want) in cases {
            let got = lookup(kind, path).unwrap_or_else(|| panic!("{kind} is built in"));
            assert_eq!(got.list, want, "{kind} {path}");
        }
    }

    #[test]
    fn retain_keys_only_where_upstream_declares_it() {
        let cases = [
            ("Deployment", "spec.strategy", true),
            ("Pod", "spec.volumes", true),
            ("Deployment", "spec.template.spec.volumes", true),
            ("DaemonSet", "spec.updateStrategy", false),
            ("StatefulSet", "spec.updateStrategy", false),
            ("Pod", "spec.containers", false),
        ];
        for (kind, path, want) in cases {
            let got = lookup(kind, path).map(|f| f.retain_keys);
            assert_eq!(got, Some(want), "{kind} {path}");
        }
    }

    #[test]
    fn custom_kinds_have_no_metadata() {
        for kind in ["Widget", "Certificate", "", "pod"] {
            assert_eq!(root(kind), None, "{kind:?}");
            assert_eq!(lookup(kind, "spec"), None, "{kind:?}");
        }
    }

    #[test]
    fn fields_below_an_untyped_field_are_untyped() {
        // `spec.strategy.rollingUpdate` and anything inside an env var have no metadata.
        let got = lookup("Deployment", "spec.strategy.rollingUpdate");
        assert_eq!(got, Some(Field::UNTYPED));
        let got = lookup("Pod", "spec.containers.env.valueFrom.containers");
        assert_eq!(got, Some(Field::UNTYPED));
    }
}
