use super::*;
use std::collections::HashSet;

// ---------------------------------------------------------------------------
// JSON names against k8s-openapi
// ---------------------------------------------------------------------------

/// A serde Deserializer that walks a path of JSON keys into a k8s-openapi type
/// and records the field names the struct at the end of the path passes to
/// `deserialize_struct`. Options, sequences and maps along the way are
/// transparent (one element / one entry).
mod probe {
    use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
    use std::cell::Cell;

    type Error = de::value::Error;
    pub type Found = Cell<Option<&'static [&'static str]>>;

    #[derive(Clone, Copy)]
    pub struct Probe<'p> {
        pub path: &'p [String],
        pub found: &'p Found,
    }

    fn stop<T>(why: &str) -> Result<T, Error> {
        Err(de::Error::custom(why))
    }

    impl<'de> Deserializer<'de> for Probe<'_> {
        type Error = Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
            stop("leaf")
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, Error> {
            match self.path.split_first() {
                None => {
                    self.found.set(Some(fields));
                    stop("recorded")
                }
                Some((key, rest)) => visitor.visit_map(Entry {
                    key: Some(key),
                    value: Probe {
                        path: rest,
                        found: self.found,
                    },
                }),
            }
        }

        fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.visit_map(Entry {
                key: Some("k"),
                value: self,
            })
        }

        fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.visit_seq(One(Some(self)))
        }

        fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.visit_some(self)
        }

        fn deserialize_newtype_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            visitor: V,
        ) -> Result<V::Value, Error> {
            visitor.visit_newtype_struct(self)
        }

        fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.visit_unit()
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf unit unit_struct tuple tuple_struct enum identifier
        }
    }

    struct Entry<'p, 'k> {
        key: Option<&'k str>,
        value: Probe<'p>,
    }

    impl<'de> MapAccess<'de> for Entry<'_, '_> {
        type Error = Error;

        fn next_key_seed<K: DeserializeSeed<'de>>(
            &mut self,
            seed: K,
        ) -> Result<Option<K::Value>, Error> {
            match self.key.take() {
                Some(k) => seed
                    .deserialize(de::value::StrDeserializer::<Error>::new(k))
                    .map(Some),
                None => Ok(None),
            }
        }

        fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
            seed.deserialize(self.value)
        }
    }

    struct One<'p>(Option<Probe<'p>>);

    impl<'de> SeqAccess<'de> for One<'_> {
        type Error = Error;

        fn next_element_seed<T: DeserializeSeed<'de>>(
            &mut self,
            seed: T,
        ) -> Result<Option<T::Value>, Error> {
            match self.0.take() {
                Some(p) => seed.deserialize(p).map(Some),
                None => Ok(None),
            }
        }
    }
}

type Prober = fn(&[String]) -> Option<&'static [&'static str]>;

fn fields_of<T: serde::de::DeserializeOwned>(path: &[String]) -> Option<&'static [&'static str]> {
    let found = probe::Found::new(None);
    let _ = T::deserialize(probe::Probe {
        path,
        found: &found,
    });
    found.get()
}

fn message_named(path: &str) -> &'static Message {
    let wanted: String = path.chars().filter(|c| !c.is_whitespace()).collect();
    let wanted = wanted.replace("::", ".");
    MESSAGES
        .iter()
        .find(|m| m.name.eq_ignore_ascii_case(&wanted))
        .unwrap_or_else(|| panic!("no message {wanted}"))
}

macro_rules! roots {
    ($($($seg:ident)::+),* $(,)?) => {
        vec![$((message_named(stringify!($($seg)::+)), fields_of::<k8s_openapi::$($seg)::+> as Prober)),*]
    };
}

/// Proto fields newer than the Kubernetes 1.33 API k8s-openapi is built for
/// here (k8s-pb 0.9 follows a later release), as "message.jsonName".
const NEWER_THAN_1_33: &[&str] = &[
    "Container.restartPolicyRules",
    "CSIDriverSpec.serviceAccountTokenInSecrets",
    "CustomResourceDefinitionCondition.observedGeneration",
    "CustomResourceDefinitionStatus.observedGeneration",
    "EnvVarSource.fileKeyRef",
    "EphemeralContainerCommon.restartPolicyRules",
    "NodeStatus.declaredFeatures",
    "PodSpec.hostnameOverride",
    "PodSpec.workloadRef",
    "PodStatus.allocatedResources",
    "PodStatus.extendedResourceClaimStatus",
    "PodStatus.resources",
    "VolumeProjection.podCertificate",
];

struct Walk {
    visited: HashSet<&'static str>,
    errors: Vec<String>,
    checked: usize,
}

impl Walk {
    fn message(&mut self, msg: &'static Message, path: &[String], probe: Prober) {
        // A message without fields has nothing to name (k8s-openapi models
        // some, such as CustomResourceSubresourceStatus, as plain JSON).
        if msg.special != Special::None || msg.fields.is_empty() || !self.visited.insert(msg.name) {
            return;
        }
        let Some(known) = probe(path) else {
            self.errors.push(format!(
                "{}: k8s-openapi has no struct at .{}",
                msg.name,
                path.join(".")
            ));
            return;
        };
        self.fields(msg, known, path, probe);
    }

    fn fields(&mut self, msg: &'static Message, known: &[&str], path: &[String], probe: Prober) {
        for f in msg.fields {
            let target = match f.kind {
                Kind::Message(i) => Some(&MESSAGES[i]),
                Kind::Map(Kind::Message(i)) => Some(&MESSAGES[*i]),
                _ => None,
            };
            if f.inline {
                if let Some(inner) = target {
                    self.fields(inner, known, path, probe);
                }
                continue;
            }
            let short = msg.name.rsplit('.').next().unwrap_or("");
            if NEWER_THAN_1_33.contains(&format!("{short}.{}", f.json).as_str()) {
                continue;
            }
            self.checked += 1;
            if !known.contains(&f.json) {
                self.errors.push(format!(
                    "{} tag {}: JSON name {:?} is not a field of k8s-openapi's struct at .{} ({known:?})",
                    msg.name,
                    f.tag,
                    f.json,
                    path.join(".")
                ));
                continue;
            }
            if let Some(inner) = target {
                let mut p = path.to_vec();
                p.push(f.json.to_string());
                self.message(inner, &p, probe);
            }
        }
    }
}

#[test]
fn json_names_match_k8s_openapi() {
    let roots = roots![
        api::core::v1::Pod,
        api::core::v1::Service,
        api::core::v1::Namespace,
        api::core::v1::Secret,
        api::core::v1::ConfigMap,
        api::core::v1::ServiceAccount,
        api::core::v1::ResourceQuota,
        api::core::v1::LimitRange,
        api::core::v1::PersistentVolume,
        api::core::v1::PersistentVolumeClaim,
        api::core::v1::Node,
        api::core::v1::Endpoints,
        api::core::v1::Event,
        api::core::v1::PodTemplate,
        api::core::v1::ReplicationController,
        api::core::v1::Binding,
        api::core::v1::ComponentStatus,
        api::apps::v1::Deployment,
        api::apps::v1::StatefulSet,
        api::apps::v1::DaemonSet,
        api::apps::v1::ReplicaSet,
        api::apps::v1::ControllerRevision,
        api::batch::v1::Job,
        api::batch::v1::CronJob,
        api::rbac::v1::Role,
        api::rbac::v1::RoleBinding,
        api::rbac::v1::ClusterRole,
        api::rbac::v1::ClusterRoleBinding,
        api::scheduling::v1::PriorityClass,
        api::networking::v1::Ingress,
        api::networking::v1::IngressClass,
        api::networking::v1::NetworkPolicy,
        api::autoscaling::v1::HorizontalPodAutoscaler,
        api::autoscaling::v1::Scale,
        api::autoscaling::v2::HorizontalPodAutoscaler,
        api::policy::v1::PodDisruptionBudget,
        api::policy::v1::Eviction,
        api::discovery::v1::EndpointSlice,
        api::events::v1::Event,
        api::coordination::v1::Lease,
        api::certificates::v1::CertificateSigningRequest,
        api::storage::v1::StorageClass,
        api::storage::v1::CSIDriver,
        api::storage::v1::CSINode,
        api::storage::v1::VolumeAttachment,
        api::node::v1::RuntimeClass,
        api::admissionregistration::v1::ValidatingWebhookConfiguration,
        api::admissionregistration::v1::MutatingWebhookConfiguration,
        api::admissionregistration::v1::ValidatingAdmissionPolicy,
        api::admissionregistration::v1::ValidatingAdmissionPolicyBinding,
        api::authentication::v1::TokenRequest,
        api::authentication::v1::TokenReview,
        api::authorization::v1::SubjectAccessReview,
        api::authorization::v1::SelfSubjectAccessReview,
        api::authorization::v1::SelfSubjectRulesReview,
        api::flowcontrol::v1::FlowSchema,
        api::flowcontrol::v1::PriorityLevelConfiguration,
        apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
        kube_aggregator::pkg::apis::apiregistration::v1::APIService,
        apimachinery::pkg::apis::meta::v1::DeleteOptions,
        apimachinery::pkg::apis::meta::v1::Status,
        apimachinery::pkg::apis::meta::v1::ObjectMeta,
        apimachinery::pkg::apis::meta::v1::APIResourceList,
        apimachinery::pkg::apis::meta::v1::APIGroupList,
    ];
    let mut walk = Walk {
        visited: HashSet::new(),
        errors: Vec::new(),
        checked: 0,
    };
    for (msg, probe) in roots {
        walk.message(msg, &[], probe);
    }
    assert!(
        walk.errors.is_empty(),
        "{} of {} names wrong:\n{}",
        walk.errors.len(),
        walk.checked,
        walk.errors.join("\n")
    );
    // Wide coverage, not a handful of types.
    assert!(
        walk.visited.len() > 300,
        "only {} messages checked",
        walk.visited.len()
    );
    assert!(walk.checked > 1500, "only {} names checked", walk.checked);
}

#[test]
fn probe_sees_nested_structs() {
    let path = ["spec".to_string(), "containers".to_string()];
    let fields = fields_of::<k8s_openapi::api::core::v1::Pod>(&path).expect("container");
    assert!(fields.contains(&"imagePullPolicy"));
    assert!(fields_of::<k8s_openapi::api::core::v1::Pod>(&["nope".to_string()]).is_none());
}

// ---------------------------------------------------------------------------
// Round trips: objects encoded with k8s-pb's prost types
// ---------------------------------------------------------------------------

mod pb {
    pub use k8s_pb::api::apps::v1 as apps;
    pub use k8s_pb::api::batch::v1 as batch;
    pub use k8s_pb::api::coordination::v1 as coordination;
    pub use k8s_pb::api::core::v1 as core;
    pub use k8s_pb::api::networking::v1 as networking;
    pub use k8s_pb::api::rbac::v1 as rbac;
    pub use k8s_pb::apimachinery::pkg::api::resource::Quantity;
    pub use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
    pub use k8s_pb::apimachinery::pkg::runtime;
    pub use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
}

use prost::Message as _;
use serde_json::json;

/// The body a Go client sends: the prefix and a runtime.Unknown around `raw`.
fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = pb::runtime::Unknown {
        type_meta: Some(pb::runtime::TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut body = MAGIC.to_vec();
    body.extend(unknown.encode_to_vec());
    body
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

/// ObjectMeta as Go writes it for a new object: every non-pointer field
/// present, creationTimestamp as Go's zero time.
fn new_meta(name: &str, namespace: &str) -> pb::meta::ObjectMeta {
    pb::meta::ObjectMeta {
        name: s(name),
        generate_name: s(""),
        namespace: s(namespace),
        self_link: s(""),
        uid: s(""),
        resource_version: s(""),
        generation: Some(0),
        creation_timestamp: Some(pb::meta::Time {
            seconds: Some(GO_ZERO_TIME_SECONDS),
            nanos: Some(0),
        }),
        ..Default::default()
    }
}

fn quantity(v: &str) -> pb::Quantity {
    pb::Quantity { string: s(v) }
}

#[test]
fn namespace_as_kubectl_sends_it() {
    let ns = pb::core::Namespace {
        metadata: Some(new_meta("pbtest", "")),
        spec: Some(Default::default()),
        status: Some(pb::core::NamespaceStatus {
            phase: s(""),
            ..Default::default()
        }),
    };
    let v = decode_body(&envelope("v1", "Namespace", ns.encode_to_vec())).unwrap();
    assert_eq!(
        v,
        json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "pbtest"},
            "spec": {},
            "status": {},
        })
    );
}

fn nginx_deployment() -> pb::apps::Deployment {
    let mut labels = std::collections::BTreeMap::new();
    labels.insert("app".to_string(), "d".to_string());
    let mut meta = new_meta("d", "default");
    meta.labels = labels.clone();
    meta.creation_timestamp = Some(pb::meta::Time {
        seconds: Some(1_700_000_000),
        nanos: Some(0),
    });
    let mut limits = std::collections::BTreeMap::new();
    limits.insert("cpu".to_string(), quantity("500m"));
    limits.insert("memory".to_string(), quantity("128Mi"));
    pb::apps::Deployment {
        metadata: Some(meta),
        spec: Some(pb::apps::DeploymentSpec {
            replicas: Some(0),
            selector: Some(pb::meta::LabelSelector {
                match_labels: labels.clone(),
                ..Default::default()
            }),
            template: Some(pb::core::PodTemplateSpec {
                metadata: Some(pb::meta::ObjectMeta {
                    labels,
                    ..Default::default()
                }),
                spec: Some(pb::core::PodSpec {
                    containers: vec![pb::core::Container {
                        name: s("nginx"),
                        image: s("nginx"),
                        image_pull_policy: s(""),
                        ports: vec![pb::core::ContainerPort {
                            container_port: Some(80),
                            host_port: Some(0),
                            protocol: s("TCP"),
                            ..Default::default()
                        }],
                        resources: Some(pb::core::ResourceRequirements {
                            limits,
                            ..Default::default()
                        }),
                        env: vec![pb::core::EnvVar {
                            name: s("CFG"),
                            value_from: Some(pb::core::EnvVarSource {
                                config_map_key_ref: Some(pb::core::ConfigMapKeySelector {
                                    local_object_reference: Some(pb::core::LocalObjectReference {
                                        name: s("cm"),
                                    }),
                                    key: s("k"),
                                    optional: Some(false),
                                }),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }],
                        liveness_probe: Some(pb::core::Probe {
                            handler: Some(pb::core::ProbeHandler {
                                http_get: Some(pb::core::HttpGetAction {
                                    path: s("/healthz"),
                                    port: Some(pb::IntOrString {
                                        r#type: Some(1),
                                        int_val: Some(0),
                                        str_val: s("http"),
                                    }),
                                    ..Default::default()
                                }),
                                ..Default::default()
                            }),
                            period_seconds: Some(10),
                            timeout_seconds: Some(0),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }],
                    termination_grace_period_seconds: Some(0),
                    ..Default::default()
                }),
            }),
            strategy: Some(Default::default()),
            ..Default::default()
        }),
        status: None,
    }
}

#[test]
fn deployment_round_trip() {
    let body = envelope("apps/v1", "Deployment", nginx_deployment().encode_to_vec());
    let v = decode_body(&body).unwrap();
    assert_eq!(v["apiVersion"], "apps/v1");
    assert_eq!(v["kind"], "Deployment");
    assert_eq!(
        v["metadata"],
        json!({
            "name": "d",
            "namespace": "default",
            "labels": {"app": "d"},
            "creationTimestamp": "2023-11-14T22:13:20Z",
        })
    );
    // replicas 0 and terminationGracePeriodSeconds 0 are Go pointers set to 0:
    // they stay. hostPort and timeoutSeconds 0 are Go's "unset": left out.
    assert_eq!(v["spec"]["replicas"], 0);
    assert_eq!(v["spec"]["selector"], json!({"matchLabels": {"app": "d"}}));
    assert_eq!(v["spec"]["strategy"], json!({}));
    let pod = &v["spec"]["template"]["spec"];
    assert_eq!(pod["terminationGracePeriodSeconds"], 0);
    assert_eq!(
        pod["containers"],
        json!([{
            "name": "nginx",
            "image": "nginx",
            "ports": [{"containerPort": 80, "protocol": "TCP"}],
            "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}},
            "env": [{"name": "CFG", "valueFrom": {"configMapKeyRef": {
                "name": "cm", "key": "k", "optional": false
            }}}],
            "livenessProbe": {
                "httpGet": {"path": "/healthz", "port": "http"},
                "periodSeconds": 10
            },
        }])
    );
    // The same object through k8s-openapi's JSON types: our JSON is valid input.
    let typed: k8s_openapi::api::apps::v1::Deployment =
        serde_json::from_value(v.clone()).expect("k8s-openapi accepts the JSON");
    let spec = typed.spec.unwrap();
    assert_eq!(spec.replicas, Some(0));
    assert_eq!(
        spec.template.spec.unwrap().containers[0].image.as_deref(),
        Some("nginx")
    );
}

#[test]
fn service_target_ports_are_int_or_string() {
    let port = |name: &str, port: i32, target: pb::IntOrString| pb::core::ServicePort {
        name: s(name),
        protocol: s("TCP"),
        port: Some(port),
        target_port: Some(target),
        node_port: Some(0),
        ..Default::default()
    };
    let svc = pb::core::Service {
        metadata: Some(new_meta("s", "")),
        spec: Some(pb::core::ServiceSpec {
            ports: vec![
                port(
                    "a",
                    80,
                    pb::IntOrString {
                        r#type: Some(0),
                        int_val: Some(8080),
                        str_val: s(""),
                    },
                ),
                port(
                    "b",
                    443,
                    pb::IntOrString {
                        r#type: Some(1),
                        int_val: Some(0),
                        str_val: s("https"),
                    },
                ),
            ],
            selector: [("app".to_string(), "s".to_string())].into(),
            cluster_ip: s(""),
            r#type: s("ClusterIP"),
            health_check_node_port: Some(0),
            ..Default::default()
        }),
        status: Some(Default::default()),
    };
    let v = decode_body(&envelope("v1", "Service", svc.encode_to_vec())).unwrap();
    assert_eq!(
        v["spec"],
        json!({
            "ports": [
                {"name": "a", "protocol": "TCP", "port": 80, "targetPort": 8080},
                {"name": "b", "protocol": "TCP", "port": 443, "targetPort": "https"},
            ],
            "selector": {"app": "s"},
            "type": "ClusterIP",
        })
    );
}

#[test]
fn secret_bytes_are_base64_as_in_json() {
    let secret = pb::core::Secret {
        metadata: Some(new_meta("s", "default")),
        immutable: None,
        data: [
            ("a".to_string(), b"b".to_vec()),
            ("bin".to_string(), vec![0, 255, 16]),
            ("empty".to_string(), vec![]),
        ]
        .into(),
        string_data: [("plain".to_string(), "text".to_string())].into(),
        r#type: s("Opaque"),
    };
    let v = decode_body(&envelope("v1", "Secret", secret.encode_to_vec())).unwrap();
    assert_eq!(v["data"], json!({"a": "Yg==", "bin": "AP8Q", "empty": ""}));
    assert_eq!(v["stringData"], json!({"plain": "text"}));
    assert_eq!(v["type"], "Opaque");
}

#[test]
fn job_and_cronjob_round_trip() {
    let template = || pb::core::PodTemplateSpec {
        metadata: Some(Default::default()),
        spec: Some(pb::core::PodSpec {
            containers: vec![pb::core::Container {
                name: s("j"),
                image: s("busybox"),
                command: vec!["sh".into(), "-c".into(), "date".into()],
                ..Default::default()
            }],
            restart_policy: s("OnFailure"),
            ..Default::default()
        }),
    };
    let job = pb::batch::Job {
        metadata: Some(new_meta("j", "default")),
        spec: Some(pb::batch::JobSpec {
            backoff_limit: Some(0),
            template: Some(template()),
            ..Default::default()
        }),
        status: Some(Default::default()),
    };
    let v = decode_body(&envelope("batch/v1", "Job", job.encode_to_vec())).unwrap();
    assert_eq!(v["spec"]["backoffLimit"], 0);
    assert_eq!(v["spec"]["template"]["metadata"], json!({}));
    assert_eq!(
        v["spec"]["template"]["spec"],
        json!({
            "containers": [{"name": "j", "image": "busybox", "command": ["sh", "-c", "date"]}],
            "restartPolicy": "OnFailure",
        })
    );

    let cron = pb::batch::CronJob {
        metadata: Some(new_meta("c", "default")),
        spec: Some(pb::batch::CronJobSpec {
            schedule: s("*/5 * * * *"),
            suspend: Some(false),
            job_template: Some(pb::batch::JobTemplateSpec {
                metadata: Some(new_meta("c", "")),
                spec: Some(pb::batch::JobSpec {
                    template: Some(template()),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
        status: Some(Default::default()),
    };
    let v = decode_body(&envelope("batch/v1", "CronJob", cron.encode_to_vec())).unwrap();
    assert_eq!(v["kind"], "CronJob");
    assert_eq!(v["spec"]["schedule"], "*/5 * * * *");
    assert_eq!(v["spec"]["suspend"], false);
    assert_eq!(
        v["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"],
        "busybox"
    );
}

#[test]
fn rolebinding_and_role_round_trip() {
    let rb = pb::rbac::RoleBinding {
        metadata: Some(new_meta("rb", "default")),
        subjects: vec![
            pb::rbac::Subject {
                kind: s("User"),
                api_group: s("rbac.authorization.k8s.io"),
                name: s("alice"),
                namespace: s(""),
            },
            pb::rbac::Subject {
                kind: s("ServiceAccount"),
                api_group: s(""),
                name: s("default"),
                namespace: s("default"),
            },
        ],
        role_ref: Some(pb::rbac::RoleRef {
            api_group: s("rbac.authorization.k8s.io"),
            kind: s("Role"),
            name: s("r"),
        }),
    };
    let v = decode_body(&envelope(
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        rb.encode_to_vec(),
    ))
    .unwrap();
    assert_eq!(v["apiVersion"], "rbac.authorization.k8s.io/v1");
    assert_eq!(
        v["subjects"],
        json!([
            {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice"},
            {"kind": "ServiceAccount", "name": "default", "namespace": "default"},
        ])
    );
    assert_eq!(
        v["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"})
    );

    let role = pb::rbac::Role {
        metadata: Some(new_meta("r", "default")),
        rules: vec![pb::rbac::PolicyRule {
            verbs: vec!["get".into()],
            api_groups: vec!["".into()],
            resources: vec!["pods".into()],
            ..Default::default()
        }],
    };
    let v = decode_body(&envelope(
        "rbac.authorization.k8s.io/v1",
        "Role",
        role.encode_to_vec(),
    ))
    .unwrap();
    // Empty strings inside lists are values, not unset fields.
    assert_eq!(
        v["rules"],
        json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}])
    );
}

#[test]
fn inline_ingress_rule_value_and_volume_source() {
    let ing = pb::networking::Ingress {
        metadata: Some(new_meta("i", "default")),
        spec: Some(pb::networking::IngressSpec {
            rules: vec![pb::networking::IngressRule {
                host: s("example.com"),
                ingress_rule_value: Some(pb::networking::IngressRuleValue {
                    http: Some(pb::networking::HttpIngressRuleValue {
                        paths: vec![pb::networking::HttpIngressPath {
                            path: s("/"),
                            path_type: s("Prefix"),
                            backend: Some(pb::networking::IngressBackend {
                                service: Some(pb::networking::IngressServiceBackend {
                                    name: s("svc"),
                                    port: Some(pb::networking::ServiceBackendPort {
                                        name: s(""),
                                        number: Some(80),
                                    }),
                                }),
                                resource: None,
                            }),
                        }],
                    }),
                }),
            }],
            ..Default::default()
        }),
        status: None,
    };
    let v = decode_body(&envelope(
        "networking.k8s.io/v1",
        "Ingress",
        ing.encode_to_vec(),
    ))
    .unwrap();
    assert_eq!(
        v["spec"]["rules"],
        json!([{"host": "example.com", "http": {"paths": [{
            "path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": "svc", "port": {"number": 80}}}
        }]}}])
    );

    let pod = pb::core::Pod {
        metadata: Some(new_meta("p", "default")),
        spec: Some(pb::core::PodSpec {
            volumes: vec![pb::core::Volume {
                name: s("cfg"),
                volume_source: Some(pb::core::VolumeSource {
                    config_map: Some(pb::core::ConfigMapVolumeSource {
                        local_object_reference: Some(pb::core::LocalObjectReference {
                            name: s("cm"),
                        }),
                        default_mode: Some(0o644),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            }],
            ..Default::default()
        }),
        status: None,
    };
    let v = decode_body(&envelope("v1", "Pod", pod.encode_to_vec())).unwrap();
    assert_eq!(
        v["spec"]["volumes"],
        json!([{"name": "cfg", "configMap": {"name": "cm", "defaultMode": 420}}])
    );
}

#[test]
fn times_micro_times_and_raw_extensions() {
    let lease = pb::coordination::Lease {
        metadata: Some(new_meta("l", "kube-system")),
        spec: Some(pb::coordination::LeaseSpec {
            holder_identity: s("node-1"),
            lease_duration_seconds: Some(40),
            acquire_time: Some(pb::meta::MicroTime {
                seconds: Some(1_700_000_000),
                nanos: Some(123_456_789),
            }),
            renew_time: Some(pb::meta::MicroTime {
                seconds: Some(GO_ZERO_TIME_SECONDS),
                nanos: Some(0),
            }),
            ..Default::default()
        }),
    };
    let v = decode_body(&envelope(
        "coordination.k8s.io/v1",
        "Lease",
        lease.encode_to_vec(),
    ))
    .unwrap();
    assert_eq!(v["spec"]["acquireTime"], "2023-11-14T22:13:20.123456Z");
    assert!(v["spec"].get("renewTime").is_none(), "{v}");
    assert!(v["metadata"].get("creationTimestamp").is_none());

    let rev = pb::apps::ControllerRevision {
        metadata: Some(new_meta("r", "default")),
        data: Some(pb::runtime::RawExtension {
            raw: Some(br#"{"spec":{"template":{"a":[1,2]}}}"#.to_vec()),
        }),
        revision: Some(3),
    };
    let v = decode_body(&envelope(
        "apps/v1",
        "ControllerRevision",
        rev.encode_to_vec(),
    ))
    .unwrap();
    assert_eq!(v["data"], json!({"spec": {"template": {"a": [1, 2]}}}));
    assert_eq!(v["revision"], 3);

    // An embedded object in protobuf form is decoded too.
    let inner = envelope("v1", "ConfigMap", {
        pb::core::ConfigMap {
            metadata: Some(new_meta("cm", "")),
            data: [("k".to_string(), "v".to_string())].into(),
            ..Default::default()
        }
        .encode_to_vec()
    });
    let rev = pb::apps::ControllerRevision {
        metadata: Some(new_meta("r", "default")),
        data: Some(pb::runtime::RawExtension { raw: Some(inner) }),
        revision: Some(4),
    };
    let v = decode_body(&envelope(
        "apps/v1",
        "ControllerRevision",
        rev.encode_to_vec(),
    ))
    .unwrap();
    assert_eq!(v["data"]["kind"], "ConfigMap");
    assert_eq!(v["data"]["data"], json!({"k": "v"}));
}

#[test]
fn kinds_resolve_across_groups() {
    for (api_version, kind) in [
        ("v1", "Namespace"),
        ("v1", "ServiceAccount"),
        ("v1", "ResourceQuota"),
        ("v1", "DeleteOptions"),
        ("apps/v1", "DeleteOptions"),
        ("meta.k8s.io/v1", "DeleteOptions"),
        ("scheduling.k8s.io/v1", "PriorityClass"),
        ("storage.k8s.io/v1", "CSIDriver"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
        ("policy/v1", "PodDisruptionBudget"),
        ("policy/v1", "Eviction"),
        ("authentication.k8s.io/v1", "TokenRequest"),
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
        ("apiregistration.k8s.io/v1", "APIService"),
        ("flowcontrol.apiserver.k8s.io/v1", "FlowSchema"),
        ("internal.apiserver.k8s.io/v1alpha1", "StorageVersion"),
    ] {
        assert!(knows(api_version, kind), "{api_version} {kind}");
    }
    for (api_version, kind) in [
        ("v1", "Nope"),
        ("v1", "Time"),
        ("v1", "Quantity"),
        ("example.com/v1", "Widget"),
        ("", "Pod"),
        ("v1", ""),
    ] {
        assert!(!knows(api_version, kind), "{api_version} {kind}");
    }
}

#[test]
fn delete_options_decode() {
    let opts = pb::meta::DeleteOptions {
        grace_period_seconds: Some(0),
        propagation_policy: s("Foreground"),
        dry_run: vec!["All".into()],
        preconditions: Some(pb::meta::Preconditions {
            uid: s("abc"),
            resource_version: None,
        }),
        ..Default::default()
    };
    let v = decode_body(&envelope("v1", "DeleteOptions", opts.encode_to_vec())).unwrap();
    assert_eq!(
        v,
        json!({
            "apiVersion": "v1", "kind": "DeleteOptions",
            "gracePeriodSeconds": 0, "propagationPolicy": "Foreground",
            "dryRun": ["All"], "preconditions": {"uid": "abc"},
        })
    );
}

// ---------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------

#[test]
fn wrong_magic_and_envelope_errors() {
    assert_eq!(decode_body(b""), Err(DecodeError::BadMagic));
    assert_eq!(decode_body(b"k8s"), Err(DecodeError::BadMagic));
    assert_eq!(
        decode_body(b"{\"kind\":\"Pod\"}"),
        Err(DecodeError::BadMagic)
    );
    assert_eq!(
        decode_body(b"k8s\0"),
        Err(DecodeError::MissingKind {
            api_version: String::new()
        })
    );
    let err = decode_body(&envelope("example.com/v1", "Widget", vec![])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no protobuf schema for apiVersion \"example.com/v1\", kind \"Widget\""
    );
    let mut gz = MAGIC.to_vec();
    gz.extend(
        pb::runtime::Unknown {
            type_meta: Some(pb::runtime::TypeMeta {
                api_version: s("v1"),
                kind: s("Pod"),
            }),
            raw: Some(vec![]),
            content_encoding: s("gzip"),
            content_type: s(""),
        }
        .encode_to_vec(),
    );
    assert_eq!(
        decode_body(&gz),
        Err(DecodeError::UnsupportedEncoding("gzip".into()))
    );
}

#[test]
fn truncated_bodies_are_errors() {
    let body = envelope("apps/v1", "Deployment", nginx_deployment().encode_to_vec());
    for cut in 4..body.len() {
        // Every strict prefix either fails cleanly or (when the cut falls on
        // a field boundary of the envelope) decodes what is there.
        let _ = decode_body(&body[..cut]);
    }
    let err = decode_body(&body[..body.len() - 3]).unwrap_err();
    assert!(matches!(err, DecodeError::Malformed { .. }), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn wire_type_mismatches_name_the_field() {
    // metadata (field 1 of Pod) as a varint instead of a message.
    let err = decode_object("v1", "Pod", &[0x08, 0x01]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "malformed protobuf at metadata: field 1 has wire type varint, expected length-delimited"
    );
    // metadata.name (field 1 of ObjectMeta) as a varint.
    let err = decode_object("v1", "Pod", &[0x0a, 0x02, 0x08, 0x01]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "malformed protobuf at metadata.name: field 1 has wire type varint, expected length-delimited"
    );
    // Invalid UTF-8 in a string.
    let err = decode_object("v1", "Pod", &[0x0a, 0x03, 0x0a, 0x01, 0xff]).unwrap_err();
    assert!(err.to_string().contains("UTF-8"), "{err}");
    // Unknown fields are skipped, as protobuf requires.
    let v = decode_object("v1", "Namespace", &[0xf8, 0x07, 0x05, 0x0a, 0x00]).unwrap();
    assert_eq!(v, json!({"metadata": {}}));
    // Wire types 3 and 4 (groups) and 6/7 are refused.
    assert!(decode_object("v1", "Namespace", &[0xfb, 0x07]).is_err());
    assert!(decode_object("v1", "Namespace", &[0xfe, 0x07]).is_err());
}

#[test]
fn deep_nesting_is_bounded() {
    // JSONSchemaProps.not (tag 28) nested far deeper than MAX_DEPTH.
    let mut inner: Vec<u8> = Vec::new();
    for _ in 0..(MAX_DEPTH + 20) {
        let mut outer = vec![0xe2, 0x01]; // tag 28, wire type 2
        let mut n = inner.len();
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                outer.push(b);
                break;
            }
            outer.push(b | 0x80);
        }
        outer.extend(&inner);
        inner = outer;
    }
    let msg = find_kind(
        "apiextensions_apiserver.pkg.apis.apiextensions.v1.",
        "JSONSchemaProps",
    )
    .expect("JSONSchemaProps");
    assert_eq!(decode_message(msg, &inner, 1), Err(DecodeError::TooDeep));
}

#[test]
fn random_bytes_never_panic() {
    // A small xorshift generator: deterministic, no extra dependency.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let valid = envelope("apps/v1", "Deployment", nginx_deployment().encode_to_vec());
    let mut errors = 0;
    for i in 0..20_000 {
        let len = (next() % 300) as usize;
        let mut body: Vec<u8> = if i % 2 == 0 {
            let mut b = MAGIC.to_vec();
            b.extend((0..len).map(|_| next() as u8));
            b
        } else {
            // Mutate a valid body: flip, drop or insert a few bytes.
            let mut b = valid.clone();
            for _ in 0..(1 + next() % 4) {
                let at = 4 + (next() as usize) % (b.len() - 4);
                match next() % 3 {
                    0 => b[at] ^= 1 << (next() % 8),
                    1 => {
                        b.remove(at);
                    }
                    _ => b.insert(at, next() as u8),
                }
            }
            b
        };
        if i % 7 == 0 {
            body.truncate(4 + len.min(body.len() - 4));
        }
        if decode_body(&body).is_err() {
            errors += 1;
        }
        // Arbitrary bytes as the object of every kind of a few groups.
        let raw = &body[4..];
        for (a, k) in [
            ("v1", "Pod"),
            ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
        ] {
            let _ = decode_object(a, k, raw);
        }
    }
    assert!(errors > 1000, "random input should mostly fail ({errors})");
}

#[test]
fn go_formats() {
    assert_eq!(rfc3339(0, 0, false).unwrap(), "1970-01-01T00:00:00Z");
    assert_eq!(
        rfc3339(951_782_400, 0, false).unwrap(),
        "2000-02-29T00:00:00Z"
    );
    assert_eq!(
        rfc3339(-1, 999_999_999, true).unwrap(),
        "1969-12-31T23:59:59.999999Z"
    );
    assert_eq!(
        rfc3339(253_402_300_799, 0, false).unwrap(),
        "9999-12-31T23:59:59Z"
    );
    assert!(rfc3339(253_402_300_800, 0, false).is_err());
    assert!(rfc3339(0, -1, false).is_err());
    assert!(rfc3339(i64::MIN, 0, false).is_err());
    assert!(rfc3339(i64::MAX, 0, false).is_err());
    assert_eq!(go_duration(0), "0s");
    assert_eq!(go_duration(1), "1ns");
    assert_eq!(go_duration(1_500), "1.5µs");
    assert_eq!(go_duration(1_500_000), "1.5ms");
    assert_eq!(go_duration(30_000_000_000), "30s");
    assert_eq!(go_duration(3_723_500_000_000), "1h2m3.5s");
    assert_eq!(go_duration(-60_000_000_000), "-1m0s");
    assert_eq!(go_duration(i64::MIN), "-2562047h47m16.854775808s");
}
