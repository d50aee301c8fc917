//! Mutating admission the server applies to created objects, after the resource's own
//! defaulting and before validation (upstream's admission chain, mutating phase).
//!
//! Priority: a pod's `priorityClassName` (or the `globalDefault` class) resolves into
//! `spec.priority` and `spec.preemptionPolicy`, as upstream's Priority plugin does.
//!
//! DefaultTolerationSeconds: Pods that do not tolerate the node lifecycle taints
//! `node.kubernetes.io/not-ready` and `node.kubernetes.io/unreachable` (NoExecute) get
//! tolerations for them with `tolerationSeconds` (300 s by default), so a pod on a lost
//! node is evicted after that long instead of at once.

use serde_json::{json, Value};

pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";

/// Seconds the default tolerations allow (upstream's
/// `--default-not-ready-toleration-seconds` / `--default-unreachable-toleration-seconds`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefaultTolerationSeconds {
    pub not_ready: i64,
    pub unreachable: i64,
}

impl Default for DefaultTolerationSeconds {
    fn default() -> Self {
        Self {
            not_ready: 300,
            unreachable: 300,
        }
    }
}

/// Whether an existing toleration already covers `key` with NoExecute (upstream skips a
/// taint the pod tolerates in any way: same key, or empty key with Exists).
fn tolerates(tolerations: &[Value], key: &str) -> bool {
    tolerations.iter().any(|t| {
        let t_key = t.get("key").and_then(Value::as_str).unwrap_or("");
        let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
        let op = t.get("operator").and_then(Value::as_str).unwrap_or("Equal");
        let key_ok = t_key == key || (t_key.is_empty() && op == "Exists");
        key_ok && (effect.is_empty() || effect == "NoExecute")
    })
}

/// Adds the default not-ready/unreachable tolerations to a pod being created.
pub fn default_toleration_seconds(pod: &mut Value, seconds: DefaultTolerationSeconds) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let tolerations = spec
        .entry("tolerations")
        .or_insert_with(|| Value::Array(Vec::new()));
    if tolerations.is_null() {
        *tolerations = Value::Array(Vec::new());
    }
    let Some(list) = tolerations.as_array_mut() else {
        return; // not a list: validation reports it
    };
    for (key, secs) in [
        (NOT_READY_TAINT, seconds.not_ready),
        (UNREACHABLE_TAINT, seconds.unreachable),
    ] {
        if !tolerates(list, key) {
            list.push(json!({
                "key": key,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": secs,
            }));
        }
    }
}

/// The classes every cluster has (name, value, description), as upstream creates them.
pub const SYSTEM_PRIORITY_CLASSES: [(&str, i64, &str); 2] = [
    (
        "system-node-critical",
        2_000_001_000,
        "Used for system critical pods that must not be moved from their current node.",
    ),
    (
        "system-cluster-critical",
        2_000_000_000,
        "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
    ),
];

/// Why Priority admission refused a pod (becomes a 403 Forbidden, as upstream).
#[derive(Debug, PartialEq, Eq)]
pub struct PriorityRefused(pub String);

/// Resolves a created pod's priority. `class` looks a PriorityClass up by name;
/// `default_class` is the `globalDefault` one, if any.
pub fn resolve_priority(
    pod: &mut Value,
    class: impl Fn(&str) -> Option<Value>,
    default_class: impl Fn() -> Option<Value>,
) -> Result<(), PriorityRefused> {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    let name = spec
        .get("priorityClassName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let (value, policy, name) = if name.is_empty() {
        match default_class() {
            Some(pc) => (
                pc.get("value").and_then(Value::as_i64).unwrap_or(0),
                pc.get("preemptionPolicy").cloned(),
                skiff_api::meta::name(&pc).to_string(),
            ),
            None => (0, None, String::new()),
        }
    } else {
        match class(&name) {
            Some(pc) => (
                pc.get("value").and_then(Value::as_i64).unwrap_or(0),
                pc.get("preemptionPolicy").cloned(),
                name,
            ),
            None => {
                return Err(PriorityRefused(format!(
                    "no PriorityClass with name {name} was found"
                )))
            }
        }
    };
    if let Some(given) = spec.get("priority").and_then(Value::as_i64) {
        if given != value {
            return Err(PriorityRefused(format!(
                "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {value} from the given PriorityClass name"
            )));
        }
    }
    if !name.is_empty() {
        spec.insert("priorityClassName".into(), Value::String(name));
    }
    spec.insert("priority".into(), json!(value));
    let policy = policy.unwrap_or_else(|| json!("PreemptLowerPriority"));
    match spec.get("preemptionPolicy").and_then(Value::as_str) {
        Some(given) if Some(given) != policy.as_str() => {
            return Err(PriorityRefused(format!(
                "the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {} from the given PriorityClass name",
                policy.as_str().unwrap_or("")
            )));
        }
        _ => {
            spec.insert("preemptionPolicy".into(), policy);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(pod: &Value) -> Vec<(String, Option<i64>)> {
        pod["spec"]["tolerations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["key"].as_str().unwrap_or("").to_string(),
                    t["tolerationSeconds"].as_i64(),
                )
            })
            .collect()
    }

    #[test]
    fn adds_both_tolerations_to_a_plain_pod() {
        let mut pod = json!({"spec": {"containers": []}});
        default_toleration_seconds(&mut pod, DefaultTolerationSeconds::default());
        assert_eq!(
            keys(&pod),
            vec![
                (NOT_READY_TAINT.to_string(), Some(300)),
                (UNREACHABLE_TAINT.to_string(), Some(300))
            ]
        );
    }

    #[test]
    fn keeps_the_pods_own_toleration_and_adds_only_the_missing_one() {
        let mut pod = json!({"spec": {"tolerations": [
            {"key": UNREACHABLE_TAINT, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}
        ]}});
        default_toleration_seconds(
            &mut pod,
            DefaultTolerationSeconds {
                not_ready: 30,
                unreachable: 40,
            },
        );
        assert_eq!(
            keys(&pod),
            vec![
                (UNREACHABLE_TAINT.to_string(), Some(5)),
                (NOT_READY_TAINT.to_string(), Some(30))
            ]
        );
    }

    fn class(name: &str, value: i64) -> Value {
        json!({"metadata": {"name": name}, "value": value})
    }

    #[test]
    fn priority_comes_from_the_named_class_the_default_class_or_zero() {
        let lookup = |n: &str| (n == "high").then(|| class("high", 1000));
        let mut pod = json!({"spec": {"priorityClassName": "high"}});
        resolve_priority(&mut pod, lookup, || None).unwrap();
        assert_eq!(pod["spec"]["priority"], 1000);
        assert_eq!(pod["spec"]["preemptionPolicy"], "PreemptLowerPriority");

        let mut pod = json!({"spec": {}});
        resolve_priority(&mut pod, lookup, || Some(class("everyone", 7))).unwrap();
        assert_eq!(pod["spec"]["priority"], 7);
        assert_eq!(pod["spec"]["priorityClassName"], "everyone");

        let mut pod = json!({"spec": {}});
        resolve_priority(&mut pod, lookup, || None).unwrap();
        assert_eq!(pod["spec"]["priority"], 0);
        assert!(pod["spec"].get("priorityClassName").is_none());
    }

    #[test]
    fn priority_refuses_unknown_classes_and_contradicting_values() {
        let lookup = |n: &str| (n == "high").then(|| class("high", 1000));
        let mut pod = json!({"spec": {"priorityClassName": "nope"}});
        assert_eq!(
            resolve_priority(&mut pod, lookup, || None),
            Err(PriorityRefused(
                "no PriorityClass with name nope was found".into()
            ))
        );
        let mut pod = json!({"spec": {"priorityClassName": "high", "priority": 5}});
        assert!(resolve_priority(&mut pod, lookup, || None)
            .unwrap_err()
            .0
            .contains("computed 1000"));
        let mut pod = json!({"spec": {"priorityClassName": "high", "priority": 1000}});
        assert!(resolve_priority(&mut pod, lookup, || None).is_ok());
    }

    #[test]
    fn a_tolerate_everything_pod_gets_nothing() {
        let mut pod = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        default_toleration_seconds(&mut pod, DefaultTolerationSeconds::default());
        assert_eq!(keys(&pod).len(), 1);
    }
}
