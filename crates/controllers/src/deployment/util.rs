//! Pure helpers over Deployments and their ReplicaSets (upstream's deployment util):
//! strategy numbers, replica sums, revision and replica annotations, template identity.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
pub const ROLLBACK_TO: &str = "deprecated.deployment.rollback.to";
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// The label that tells a Deployment's ReplicaSets (and their pods) apart.
pub const HASH_LABEL: &str = "pod-template-hash";
/// Longest revision-history annotation kept (upstream's default).
pub const MAX_REVISION_HISTORY_CHARS: usize = 2000;

/// The numbers a Deployment's strategy resolves to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    pub replicas: i32,
    pub rolling: bool,
    pub max_surge: i32,
    pub max_unavailable: i32,
}

/// An int, or a percent of `total` rounded up or down (upstream's
/// GetScaledValueFromIntOrPercent).
pub fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let pct: i64 = s
                .strip_suffix('%')
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| format!("invalid value for IntOrString: invalid value {s:?}"))?;
            let scaled = pct * i64::from(total);
            let v = if round_up {
                (scaled + 99).div_euclid(100)
            } else {
                scaled.div_euclid(100)
            };
            Ok(v as i32)
        }
    }
}

impl Params {
    pub fn of(d: &Deployment) -> Result<Self, String> {
        let spec = d.spec.as_ref();
        let replicas = spec.and_then(|s| s.replicas).unwrap_or(1);
        let strategy = spec.and_then(|s| s.strategy.as_ref());
        let rolling = strategy.and_then(|s| s.type_.as_deref()) != Some("Recreate");
        if !rolling {
            return Ok(Self {
                replicas,
                rolling,
                max_surge: 0,
                max_unavailable: 0,
            });
        }
        let ru = strategy.and_then(|s| s.rolling_update.as_ref());
        let quarter = IntOrString::String("25%".into());
        let surge = ru.and_then(|r| r.max_surge.as_ref()).unwrap_or(&quarter);
        let unavailable = ru
            .and_then(|r| r.max_unavailable.as_ref())
            .unwrap_or(&quarter);
        // Surge rounds up, unavailability down; both zero would deadlock, so one pod
        // may be unavailable (upstream's ResolveFenceposts).
        let max_surge = scaled_value(surge, replicas, true)?;
        let mut max_unavailable = scaled_value(unavailable, replicas, false)?;
        if max_surge == 0 && max_unavailable == 0 {
            max_unavailable = 1;
        }
        Ok(Self {
            replicas,
            rolling,
            max_surge,
            max_unavailable,
        })
    }

    /// Upstream's MaxUnavailable: zero for Recreate or zero replicas, at most replicas.
    pub fn max_unavailable(&self) -> i32 {
        if !self.rolling || self.replicas == 0 {
            return 0;
        }
        self.max_unavailable.min(self.replicas)
    }

    pub fn max_surge(&self) -> i32 {
        if self.rolling {
            self.max_surge
        } else {
            0
        }
    }
}

pub fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub fn status_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map(|s| s.replicas).unwrap_or(0)
}

pub fn available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

pub fn ready(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
}

pub fn name(rs: &ReplicaSet) -> &str {
    rs.metadata.name.as_deref().unwrap_or("")
}

pub fn annotation<'a>(rs: &'a ReplicaSet, key: &str) -> Option<&'a str> {
    rs.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

fn annotation_int(rs: &ReplicaSet, key: &str) -> Option<i32> {
    annotation(rs, key)?.parse().ok()
}

/// The revision annotation as a number (0 when absent or unparsable).
pub fn revision(rs: &ReplicaSet) -> i64 {
    annotation(rs, REVISION)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

pub fn desired_replicas_annotation(rs: &ReplicaSet) -> Option<i32> {
    annotation_int(rs, DESIRED_REPLICAS)
}

pub fn max_replicas_annotation(rs: &ReplicaSet) -> Option<i32> {
    annotation_int(rs, MAX_REPLICAS)
}

pub fn sum(rss: &[&ReplicaSet], f: fn(&ReplicaSet) -> i32) -> i32 {
    rss.iter().map(|rs| f(rs)).sum()
}

/// ReplicaSets with pods wanted (spec.replicas > 0).
pub fn active<'a>(rss: &[&'a ReplicaSet]) -> Vec<&'a ReplicaSet> {
    rss.iter()
        .copied()
        .filter(|rs| spec_replicas(rs) > 0)
        .collect()
}

/// Oldest first, then by name (upstream's ReplicaSetsByCreationTimestamp).
pub fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    let t = |rs: &ReplicaSet| rs.metadata.creation_timestamp.as_ref().map(|t| t.0);
    match (t(a), t(b)) {
        (x, y) if x == y => name(a).cmp(name(b)),
        (x, y) => x.cmp(&y),
    }
}

/// A template as compared for identity: without the hash label, and with empty maps
/// and lists equal to absent ones (upstream's semantic equality).
fn normalized(t: &PodTemplateSpec) -> Value {
    let mut v = serde_json::to_value(t).unwrap_or(Value::Null);
    if let Some(labels) = v
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(HASH_LABEL);
    }
    prune(&mut v);
    v
}

fn prune(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for x in m.values_mut() {
                prune(x);
            }
            m.retain(|_, x| !is_empty(x));
        }
        Value::Array(a) => a.iter_mut().for_each(prune),
        _ => {}
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// Whether two templates are the same ignoring the pod-template-hash label.
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    normalized(a) == normalized(b)
}

/// The ReplicaSet whose template is the Deployment's, oldest first if several
/// (upstream's FindNewReplicaSet).
pub fn find_new<'a>(template: &PodTemplateSpec, rss: &[&'a ReplicaSet]) -> Option<&'a ReplicaSet> {
    let mut sorted: Vec<&ReplicaSet> = rss.to_vec();
    sorted.sort_by(|a, b| by_creation(a, b));
    sorted.into_iter().find(|rs| {
        rs.spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .is_some_and(|t| equal_ignore_hash(t, template))
    })
}

fn skip_copy(key: &str) -> bool {
    matches!(
        key,
        LAST_APPLIED | REVISION | REVISION_HISTORY | DESIRED_REPLICAS | MAX_REPLICAS | ROLLBACK_TO
    )
}

/// Sets desired-replicas and max-replicas; whether anything changed.
pub fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let a = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (k, v) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        let v = v.to_string();
        if a.get(k) != Some(&v) {
            a.insert(k.to_string(), v);
            changed = true;
        }
    }
    changed
}

pub fn replicas_annotations_need_update(rs: &ReplicaSet, desired: i32, max: i32) -> bool {
    desired_replicas_annotation(rs) != Some(desired) || max_replicas_annotation(rs) != Some(max)
}

/// Upstream's SetNewReplicaSetAnnotations: copy the Deployment's own annotations
/// (change-cause among them), raise the revision to `new_revision` (keeping the old
/// one in revision-history when a ReplicaSet is reused, as after a rollback), and on
/// a new ReplicaSet set the replica annotations. Whether anything changed.
pub fn set_new_rs_annotations(
    d: &Deployment,
    rs: &mut ReplicaSet,
    p: &Params,
    new_revision: i64,
    exists: bool,
) -> bool {
    let mut changed = false;
    let a = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if skip_copy(k) || a.get(k) == Some(v) {
            continue;
        }
        a.insert(k.clone(), v.clone());
        changed = true;
    }
    let old = a.get(REVISION).cloned().unwrap_or_default();
    let old_n: i64 = match old.parse() {
        Ok(n) => n,
        Err(_) if old.is_empty() => 0,
        // An unparsable revision is left alone (upstream logs and gives up).
        Err(_) => return changed,
    };
    if old_n < new_revision {
        a.insert(REVISION.to_string(), new_revision.to_string());
        changed = true;
        if !old.is_empty() {
            let history = match a.get(REVISION_HISTORY) {
                None => old.clone(),
                Some(h) if h.is_empty() => old.clone(),
                Some(h) => {
                    let mut parts: Vec<&str> = h.split(',').collect();
                    parts.push(&old);
                    // Drop the oldest revisions past the length limit.
                    while parts.len() > 1 && parts.join(",").len() > MAX_REVISION_HISTORY_CHARS {
                        parts.remove(0);
                    }
                    parts.join(",")
                }
            };
            a.insert(REVISION_HISTORY.to_string(), history);
        }
    }
    if !exists {
        set_replicas_annotations(rs, p.replicas, p.replicas + p.max_surge());
        changed = true;
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(strategy: Value, replicas: i32) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "d"},
            "spec": {"replicas": replicas, "selector": {}, "template": {}, "strategy": strategy},
        }))
        .unwrap()
    }

    #[test]
    fn fenceposts() {
        let cases = [
            (
                "defaults are 25%/25%: surge rounds up, unavailable down",
                json!({"type": "RollingUpdate"}),
                10,
                (3, 2),
            ),
            (
                "ints",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 2, "maxUnavailable": 1}}),
                10,
                (2, 1),
            ),
            (
                "percent of 3",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "50%", "maxUnavailable": "50%"}}),
                3,
                (2, 1),
            ),
            (
                "both zero makes one unavailable",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "10%"}}),
                5,
                (0, 1),
            ),
            (
                "recreate has neither",
                json!({"type": "Recreate"}),
                5,
                (0, 0),
            ),
        ];
        for (name, strategy, replicas, want) in cases {
            let p = Params::of(&deployment(strategy, replicas)).unwrap();
            assert_eq!((p.max_surge(), p.max_unavailable()), want, "{name}");
        }
        let big = Params::of(&deployment(
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 9}}),
            3,
        ))
        .unwrap();
        assert_eq!(big.max_unavailable(), 3, "capped at replicas");
        assert!(Params::of(&deployment(
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "x%"}}),
            3
        ))
        .is_err());
    }

    fn rs(annotations: Value) -> ReplicaSet {
        serde_json::from_value(json!({"metadata": {"name": "r", "annotations": annotations}}))
            .unwrap()
    }

    #[test]
    fn revision_annotations() {
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "d", "annotations": {
                "kubernetes.io/change-cause": "set image",
                REVISION: "7",
                LAST_APPLIED: "{}",
            }},
        }))
        .unwrap();
        let p = Params {
            replicas: 4,
            rolling: true,
            max_surge: 1,
            max_unavailable: 1,
        };
        // A new ReplicaSet: revision set, replica annotations set, own annotations copied.
        let mut fresh = rs(json!({}));
        assert!(set_new_rs_annotations(&d, &mut fresh, &p, 3, false));
        let a = fresh.metadata.annotations.clone().unwrap();
        assert_eq!(a[REVISION], "3");
        assert_eq!(a["kubernetes.io/change-cause"], "set image");
        assert_eq!(a[DESIRED_REPLICAS], "4");
        assert_eq!(a[MAX_REPLICAS], "5");
        assert!(!a.contains_key(LAST_APPLIED));
        assert!(!a.contains_key(REVISION_HISTORY));
        // Nothing more to change.
        assert!(!set_new_rs_annotations(&d, &mut fresh, &p, 3, true));
        // Reused after a rollback: the old revision goes to the history.
        let mut reused = rs(
            json!({REVISION: "1", REVISION_HISTORY: "0", "kubernetes.io/change-cause": "set image"}),
        );
        assert!(set_new_rs_annotations(&d, &mut reused, &p, 3, true));
        let a = reused.metadata.annotations.unwrap();
        assert_eq!(a[REVISION], "3");
        assert_eq!(a[REVISION_HISTORY], "0,1");
        assert!(
            !a.contains_key(DESIRED_REPLICAS),
            "existing ReplicaSets keep theirs"
        );
    }

    #[test]
    fn template_identity_ignores_hash_and_empties() {
        let a: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"labels": {"app": "x", HASH_LABEL: "abc"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]},
        }))
        .unwrap();
        let b: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"labels": {"app": "x"}, "annotations": {}},
            "spec": {"containers": [{"name": "c", "image": "i", "env": []}]},
        }))
        .unwrap();
        assert!(equal_ignore_hash(&a, &b));
        let c: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"labels": {"app": "x"}},
            "spec": {"containers": [{"name": "c", "image": "j"}]},
        }))
        .unwrap();
        assert!(!equal_ignore_hash(&a, &c));
    }
}
