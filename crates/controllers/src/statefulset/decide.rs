//! The StatefulSet controller's decisions, free of IO: which pods and claims to create
//! or delete in this pass (ordered, one at a time, or all at once in Parallel), and the
//! status to write.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;

use super::revision::HASH_LABEL;
use crate::util::{owner, podcontrol, pods};

pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// A template revision: the hash pods carry and the template it stands for.
#[derive(Clone, Debug)]
pub struct Rev {
    pub hash: String,
    pub template: PodTemplateSpec,
}

pub struct Input<'a> {
    pub set: &'a StatefulSet,
    /// Pods the set controls.
    pub pods: &'a [Arc<Pod>],
    pub current: &'a Rev,
    pub update: &'a Rev,
    /// Names of the PersistentVolumeClaims that exist in the namespace.
    pub claims: &'a BTreeSet<String>,
    pub now: Timestamp,
}

#[derive(Debug, Default)]
pub struct Plan {
    /// Claims to create before the pods (they must exist when a pod is created).
    pub create_claims: Vec<PersistentVolumeClaim>,
    pub create_pods: Vec<Pod>,
    /// Pods to delete: name and uid.
    pub delete_pods: Vec<(String, Option<String>)>,
    /// Claims of removed ordinals (retention policy `whenScaled: Delete`).
    pub delete_claims: Vec<String>,
    pub status: StatefulSetStatus,
    pub requeue: Option<Duration>,
}

/// `<set>-<ordinal>` → ordinal.
pub fn ordinal_of(set_name: &str, pod_name: &str) -> Option<i32> {
    let rest = pod_name.strip_prefix(set_name)?.strip_prefix('-')?;
    rest.parse()
        .ok()
        .filter(|n: &i32| *n >= 0 && rest == n.to_string())
}

fn revision_of(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(HASH_LABEL)
        .map(String::as_str)
}

pub fn claim_name(template: &str, set: &str, ordinal: i32) -> String {
    format!("{template}-{set}-{ordinal}")
}

struct Shape {
    name: String,
    start: i32,
    replicas: i32,
    monotonic: bool,
    min_ready: i32,
}

fn shape(set: &StatefulSet) -> Shape {
    let spec = set.spec.clone().unwrap_or_default();
    Shape {
        name: set.metadata.name.clone().unwrap_or_default(),
        start: spec.ordinals.and_then(|o| o.start).unwrap_or(0),
        replicas: spec.replicas.unwrap_or(1).max(0),
        monotonic: spec.pod_management_policy.as_deref() != Some("Parallel"),
        min_ready: spec.min_ready_seconds.unwrap_or(0),
    }
}

pub fn decide(input: &Input<'_>) -> Plan {
    let set = input.set;
    let s = shape(set);
    let spec = set.spec.clone().unwrap_or_default();
    let mut plan = Plan::default();

    let mut by_ordinal: BTreeMap<i32, &Arc<Pod>> = BTreeMap::new();
    for p in input.pods {
        if let Some(o) = p
            .metadata
            .name
            .as_deref()
            .and_then(|n| ordinal_of(&s.name, n))
        {
            by_ordinal.insert(o, p);
        }
    }
    let end = s.start + s.replicas;
    let healthy = |p: &Pod| {
        pods::phase(p) == "Running"
            && !pods::is_terminating(p)
            && pods::is_available(p, s.min_ready, input.now)
    };

    plan.status = status(input, &s, &by_ordinal);
    for p in by_ordinal.values() {
        if let Some(wait) = pods::available_in(p, s.min_ready, input.now) {
            plan.requeue = Some(plan.requeue.map_or(wait, |r| r.min(wait)));
        }
    }

    // Partition: ordinals below it are (re)created at the current revision.
    let rolling = spec
        .update_strategy
        .as_ref()
        .and_then(|u| u.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate";
    let partition = spec
        .update_strategy
        .as_ref()
        .and_then(|u| u.rolling_update.as_ref())
        .and_then(|r| r.partition)
        .unwrap_or(0);
    let rev_for = |ordinal: i32| {
        if rolling && ordinal < s.start + partition {
            input.current
        } else {
            input.update
        }
    };

    // Claims of existing pods that went missing are recreated too (upstream does).
    for (&o, _) in by_ordinal.iter().filter(|(&o, _)| o >= s.start && o < end) {
        plan.create_claims.extend(missing_claims(input, o));
    }

    // 1. Replicas in ordinal order.
    for ordinal in s.start..end {
        match by_ordinal.get(&ordinal) {
            None => {
                plan.create_claims.extend(missing_claims(input, ordinal));
                plan.create_pods
                    .push(pod_for(set, rev_for(ordinal), ordinal));
                if s.monotonic {
                    return dedup(plan);
                }
            }
            Some(p) if pods::is_terminal(p) && !pods::is_terminating(p) => {
                // A finished pod of a set is replaced: deleted now, recreated next pass.
                plan.delete_pods.push(pod_ref(p));
                if s.monotonic {
                    return dedup(plan);
                }
            }
            Some(p) if !healthy(p) && s.monotonic => return dedup(plan),
            Some(_) => {}
        }
    }

    // 2. Ordinals beyond the replicas, highest first.
    let condemned: Vec<&Arc<Pod>> = by_ordinal
        .iter()
        .rev()
        .filter(|(&o, _)| o >= end || o < s.start)
        .map(|(_, p)| *p)
        .collect();
    for p in &condemned {
        if pods::is_terminating(p) {
            if s.monotonic {
                return dedup(plan);
            }
            continue;
        }
        plan.delete_pods.push(pod_ref(p));
        if s.monotonic {
            return dedup(plan);
        }
    }
    if !condemned.is_empty() {
        return dedup(plan);
    }
    // Claims of ordinals gone for good, when the policy says so.
    let scaled_delete = spec
        .persistent_volume_claim_retention_policy
        .as_ref()
        .and_then(|p| p.when_scaled.as_deref())
        == Some("Delete");
    if scaled_delete {
        for t in spec.volume_claim_templates.iter().flatten() {
            let tname = t.metadata.name.clone().unwrap_or_default();
            let prefix = format!("{tname}-");
            for c in input.claims {
                let ord = c
                    .strip_prefix(&prefix)
                    .and_then(|rest| ordinal_of(&s.name, rest));
                if ord.is_some_and(|o| o >= end || o < s.start) {
                    plan.delete_claims.push(c.clone());
                }
            }
        }
    }

    // 3. Rolling update: highest ordinal first, down to the partition, one at a time
    //    and only while every replica is healthy.
    if rolling {
        for ordinal in (s.start + partition.max(0)..end).rev() {
            let Some(p) = by_ordinal.get(&ordinal) else {
                return dedup(plan);
            };
            if revision_of(p) != Some(input.update.hash.as_str()) && !pods::is_terminating(p) {
                let all_healthy =
                    (s.start..end).all(|o| by_ordinal.get(&o).is_some_and(|q| healthy(q)));
                if all_healthy {
                    plan.delete_pods.push(pod_ref(p));
                }
                return dedup(plan);
            }
            if !healthy(p) {
                return dedup(plan);
            }
        }
    }
    dedup(plan)
}

fn dedup(mut plan: Plan) -> Plan {
    let mut seen = BTreeSet::new();
    plan.create_claims
        .retain(|c| seen.insert(c.metadata.name.clone().unwrap_or_default()));
    plan
}

fn pod_ref(p: &Pod) -> (String, Option<String>) {
    (
        p.metadata.name.clone().unwrap_or_default(),
        p.metadata.uid.clone(),
    )
}

fn status(
    input: &Input<'_>,
    s: &Shape,
    by_ordinal: &BTreeMap<i32, &Arc<Pod>>,
) -> StatefulSetStatus {
    let set = input.set;
    let old = set.status.clone().unwrap_or_default();
    let live: Vec<&&Arc<Pod>> = by_ordinal
        .values()
        .filter(|p| !pods::is_terminating(p))
        .collect();
    let count = |f: &dyn Fn(&Pod) -> bool| live.iter().filter(|p| f(p)).count() as i32;
    let replicas = live.len() as i32;
    let ready = count(&|p| pods::phase(p) == "Running" && pods::is_ready(p));
    let available =
        count(&|p| pods::phase(p) == "Running" && pods::is_available(p, s.min_ready, input.now));
    let current = count(&|p| revision_of(p) == Some(input.current.hash.as_str()));
    let updated = count(&|p| revision_of(p) == Some(input.update.hash.as_str()));
    let mut status = StatefulSetStatus {
        observed_generation: set.metadata.generation,
        replicas,
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        current_replicas: Some(current),
        updated_replicas: Some(updated),
        current_revision: Some(input.current.hash.clone()),
        update_revision: Some(input.update.hash.clone()),
        collision_count: old.collision_count,
        conditions: old.conditions,
    };
    // A finished rolling update makes the update revision current.
    let rolling = set
        .spec
        .as_ref()
        .and_then(|sp| sp.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate";
    if rolling && updated == s.replicas && ready == s.replicas && replicas == s.replicas {
        status.current_revision = status.update_revision.clone();
        status.current_replicas = Some(updated);
    }
    status
}

fn missing_claims(input: &Input<'_>, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    claims_for(input.set, ordinal)
        .into_iter()
        .filter(|c| {
            let n = c.metadata.name.clone().unwrap_or_default();
            !input.claims.contains(&n)
        })
        .collect()
}

/// The claims `volumeClaimTemplates` give `ordinal`.
pub fn claims_for(set: &StatefulSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let spec = set.spec.clone().unwrap_or_default();
    let name = set.metadata.name.clone().unwrap_or_default();
    let selector_labels = spec.selector.match_labels.clone().unwrap_or_default();
    let delete_with_set = spec
        .persistent_volume_claim_retention_policy
        .as_ref()
        .and_then(|p| p.when_deleted.as_deref())
        == Some("Delete");
    spec.volume_claim_templates
        .iter()
        .flatten()
        .map(|t| {
            let tname = t.metadata.name.clone().unwrap_or_default();
            let mut labels = t.metadata.labels.clone().unwrap_or_default();
            labels.extend(selector_labels.clone());
            PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(claim_name(&tname, &name, ordinal)),
                    namespace: set.metadata.namespace.clone(),
                    labels: Some(labels),
                    annotations: t.metadata.annotations.clone(),
                    // whenDeleted: Delete → the set owns its claims, so they go with it.
                    owner_references: delete_with_set.then(|| vec![owner::controller_ref(set)]),
                    ..Default::default()
                },
                spec: t.spec.clone(),
                status: None,
            }
        })
        .collect()
}

/// Pod `<set>-<ordinal>` from `rev`'s template: identity labels, stable hostname in the
/// governing service's subdomain, and its claims mounted in place of template volumes.
pub fn pod_for(set: &StatefulSet, rev: &Rev, ordinal: i32) -> Pod {
    let name = set.metadata.name.clone().unwrap_or_default();
    let pod_name = format!("{name}-{ordinal}");
    let labels = BTreeMap::from([
        (POD_NAME_LABEL.to_string(), pod_name.clone()),
        (POD_INDEX_LABEL.to_string(), ordinal.to_string()),
        (HASH_LABEL.to_string(), rev.hash.clone()),
    ]);
    let mut pod = podcontrol::pod_from_template(
        &rev.template,
        set.metadata.namespace.as_deref().unwrap_or("default"),
        owner::controller_ref(set),
        "",
        Some(pod_name.clone()),
        &labels,
    );
    let service = set
        .spec
        .as_ref()
        .and_then(|s| s.service_name.clone())
        .filter(|s| !s.is_empty());
    let templates = set
        .spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.clone())
        .unwrap_or_default();
    if let Some(spec) = pod.spec.as_mut() {
        spec.hostname = Some(pod_name);
        spec.subdomain = service;
        let volumes = spec.volumes.get_or_insert_with(Vec::new);
        for t in &templates {
            let tname = t.metadata.name.clone().unwrap_or_default();
            volumes.retain(|v| v.name != tname);
            volumes.push(Volume {
                name: tname.clone(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim_name(&tname, &name, ordinal),
                    read_only: None,
                }),
                ..Default::default()
            });
        }
        if volumes.is_empty() {
            spec.volumes = None;
        }
    }
    pod
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(replicas: i32, extra: serde_json::Value) -> StatefulSet {
        let mut spec = json!({
            "replicas": replicas, "serviceName": "svc",
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c"}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {"accessModes": ["ReadWriteOnce"]}}],
        });
        if let (Some(a), Some(b)) = (spec.as_object_mut(), extra.as_object()) {
            a.extend(b.clone());
        }
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "ns", "uid": "u", "generation": 4}, "spec": spec}))
            .unwrap()
    }

    #[derive(Clone, Copy)]
    enum S {
        Ready,
        Pending,
        Failed,
        Terminating,
    }

    fn pod(ordinal: i32, rev: &str, s: S) -> Arc<Pod> {
        let (phase, ready) = match s {
            S::Ready | S::Terminating => ("Running", "True"),
            S::Pending => ("Pending", "False"),
            S::Failed => ("Failed", "False"),
        };
        let deletion = matches!(s, S::Terminating).then_some("2026-01-01T00:00:00Z");
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": format!("web-{ordinal}"), "uid": format!("u{ordinal}"),
                    "labels": {HASH_LABEL: rev}, "deletionTimestamp": deletion},
                "status": {"phase": phase, "conditions": [{"type": "Ready", "status": ready, "lastTransitionTime": "2026-01-01T00:00:00Z"}]},
            }))
            .unwrap(),
        )
    }

    fn rev(hash: &str) -> Rev {
        Rev {
            hash: hash.into(),
            template: serde_json::from_value(json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": hash}]}}))
                .unwrap(),
        }
    }

    struct Case {
        name: &'static str,
        set: StatefulSet,
        pods: Vec<Arc<Pod>>,
        claims: Vec<&'static str>,
        create: Vec<&'static str>,
        claims_created: Vec<&'static str>,
        delete: Vec<&'static str>,
        claims_deleted: Vec<&'static str>,
    }

    fn case(name: &'static str, set: StatefulSet, pods: Vec<Arc<Pod>>) -> Case {
        Case {
            name,
            set,
            pods,
            claims: vec![],
            create: vec![],
            claims_created: vec![],
            delete: vec![],
            claims_deleted: vec![],
        }
    }

    #[test]
    fn passes() {
        let parallel = || json!({"podManagementPolicy": "Parallel"});
        let partition = |p: i32| json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": p}}});
        let cases = vec![
            Case {
                create: vec!["web-0"],
                claims_created: vec!["www-web-0"],
                ..case(
                    "ordered: the first pod and its claim",
                    set(3, json!({})),
                    vec![],
                )
            },
            Case {
                create: vec!["web-1"],
                claims_created: vec!["www-web-1"],
                claims: vec!["www-web-0"],
                ..case(
                    "ordered: the next pod once the previous is ready",
                    set(3, json!({})),
                    vec![pod(0, "r1", S::Ready)],
                )
            },
            Case {
                claims: vec!["www-web-0"],
                ..case(
                    "ordered: wait while the previous is not ready",
                    set(3, json!({})),
                    vec![pod(0, "r1", S::Pending)],
                )
            },
            Case {
                claims_created: vec!["www-web-0"],
                ..case(
                    "a running pod's lost claim is recreated",
                    set(1, json!({})),
                    vec![pod(0, "r2", S::Ready)],
                )
            },
            Case {
                create: vec!["web-0", "web-1", "web-2"],
                claims_created: vec!["www-web-0", "www-web-1", "www-web-2"],
                ..case("parallel: all at once", set(3, parallel()), vec![])
            },
            Case {
                delete: vec!["web-0"],
                claims: vec!["www-web-0"],
                ..case(
                    "a failed pod is deleted to be recreated",
                    set(1, json!({})),
                    vec![pod(0, "r1", S::Failed)],
                )
            },
            Case {
                delete: vec!["web-2"],
                claims: vec!["www-web-0", "www-web-1", "www-web-2"],
                ..case(
                    "scale down: highest ordinal first",
                    set(1, json!({})),
                    vec![
                        pod(0, "r1", S::Ready),
                        pod(1, "r1", S::Ready),
                        pod(2, "r1", S::Ready),
                    ],
                )
            },
            Case {
                claims: vec!["www-web-0", "www-web-1", "www-web-2"],
                ..case(
                    "scale down: one at a time",
                    set(1, json!({})),
                    vec![
                        pod(0, "r1", S::Ready),
                        pod(1, "r1", S::Ready),
                        pod(2, "r1", S::Terminating),
                    ],
                )
            },
            Case {
                delete: vec!["web-2", "web-1"],
                claims: vec!["www-web-0", "www-web-1", "www-web-2"],
                ..case(
                    "parallel scale down: all at once",
                    set(1, parallel()),
                    vec![
                        pod(0, "r1", S::Ready),
                        pod(1, "r1", S::Ready),
                        pod(2, "r1", S::Ready),
                    ],
                )
            },
            Case {
                claims: vec!["www-web-0", "www-web-1"],
                claims_deleted: vec!["www-web-1"],
                ..case(
                    "whenScaled Delete removes claims of removed ordinals",
                    set(
                        1,
                        json!({"persistentVolumeClaimRetentionPolicy": {"whenScaled": "Delete", "whenDeleted": "Retain"}}),
                    ),
                    vec![pod(0, "r2", S::Ready)],
                )
            },
            Case {
                delete: vec!["web-2"],
                claims: vec!["www-web-0", "www-web-1", "www-web-2"],
                ..case(
                    "rolling update: highest ordinal first",
                    set(3, json!({})),
                    vec![
                        pod(0, "r1", S::Ready),
                        pod(1, "r1", S::Ready),
                        pod(2, "r1", S::Ready),
                    ],
                )
            },
            Case {
                delete: vec!["web-1"],
                claims: vec!["www-web-0", "www-web-1", "www-web-2"],
                ..case(
                    "rolling update: next once the updated pod is ready",
                    set(3, json!({})),
                    vec![
                        pod(0, "r1", S::Ready),
                        pod(1, "r1", S::Ready),
                        pod(2, "r2", S::Ready),
                    ],
                )
            },
            Case {
                claims: vec!["www-web-0", "www-web-1", "www-web-2"],
                ..case(
                    "rolling update: stops at the partition",
                    set(3, partition(1)),
                    vec![
                        pod(0, "r1", S::Ready),
                        pod(1, "r2", S::Ready),
                        pod(2, "r2", S::Ready),
                    ],
                )
            },
            Case {
                create: vec!["web-0"],
                claims: vec!["www-web-0", "www-web-1", "www-web-2"],
                ..case(
                    "below the partition a pod is recreated at the current revision",
                    set(3, partition(1)),
                    vec![pod(1, "r2", S::Ready), pod(2, "r2", S::Ready)],
                )
            },
            Case {
                claims: vec!["www-web-0", "www-web-1"],
                ..case(
                    "OnDelete: old pods stay",
                    set(2, json!({"updateStrategy": {"type": "OnDelete"}})),
                    vec![pod(0, "r1", S::Ready), pod(1, "r1", S::Ready)],
                )
            },
        ];
        for c in cases {
            let claims: BTreeSet<String> = c.claims.iter().map(|s| s.to_string()).collect();
            let plan = decide(&Input {
                set: &c.set,
                pods: &c.pods,
                current: &rev("r1"),
                update: &rev("r2"),
                claims: &claims,
                now: Timestamp::from_second(1_800_000_000).unwrap(),
            });
            let names = |v: Vec<Option<String>>| v.into_iter().flatten().collect::<Vec<_>>();
            assert_eq!(
                names(
                    plan.create_pods
                        .iter()
                        .map(|p| p.metadata.name.clone())
                        .collect()
                ),
                c.create,
                "{}: create",
                c.name
            );
            assert_eq!(
                names(
                    plan.create_claims
                        .iter()
                        .map(|p| p.metadata.name.clone())
                        .collect()
                ),
                c.claims_created,
                "{}: claims",
                c.name
            );
            let deleted: Vec<&str> = plan.delete_pods.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(deleted, c.delete, "{}: delete", c.name);
            assert_eq!(
                plan.delete_claims, c.claims_deleted,
                "{}: claims deleted",
                c.name
            );
            assert_eq!(plan.status.observed_generation, Some(4));
        }
    }

    #[test]
    fn recreated_below_partition_uses_current_template() {
        let s = set(
            3,
            json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}}),
        );
        let plan = decide(&Input {
            set: &s,
            pods: &[],
            current: &rev("r1"),
            update: &rev("r2"),
            claims: &BTreeSet::new(),
            now: Timestamp::from_second(1_800_000_000).unwrap(),
        });
        let p = &plan.create_pods[0];
        assert_eq!(
            p.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(HASH_LABEL))
                .map(String::as_str),
            Some("r1")
        );
        assert_eq!(
            p.spec
                .as_ref()
                .and_then(|s| s.containers[0].image.as_deref()),
            Some("r1")
        );
    }

    #[test]
    fn status_counts_and_completed_rollout() {
        let s = set(2, json!({}));
        let pods = vec![pod(0, "r2", S::Ready), pod(1, "r2", S::Ready)];
        let plan = decide(&Input {
            set: &s,
            pods: &pods,
            current: &rev("r1"),
            update: &rev("r2"),
            claims: &BTreeSet::from(["www-web-0".to_string(), "www-web-1".to_string()]),
            now: Timestamp::from_second(1_800_000_000).unwrap(),
        });
        let st = plan.status;
        assert_eq!(
            (st.replicas, st.ready_replicas, st.updated_replicas),
            (2, Some(2), Some(2))
        );
        assert_eq!(
            st.current_revision.as_deref(),
            Some("r2"),
            "a finished rollout makes the update current"
        );
        assert_eq!(st.current_replicas, Some(2));
    }
}
