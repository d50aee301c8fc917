//! Priority: a pod's `priorityClassName` (or the `globalDefault` class) resolves into
//! `spec.priority` and `spec.preemptionPolicy`, as upstream's Priority plugin does.

use serde_json::{json, Value};
use skiff_api::ApiError;

use super::{Attributes, Context, Operation, Plugin};

pub struct Priority;

#[async_trait::async_trait]
impl Plugin for Priority {
    fn name(&self) -> &'static str {
        "Priority"
    }

    async fn mutate(
        &self,
        ctx: &Context<'_>,
        attrs: &Attributes,
        pod: &mut Value,
    ) -> Result<(), ApiError> {
        if attrs.operation != Operation::Create || !attrs.is("", "pods") {
            return Ok(());
        }
        const PC: (&str, &str, &str) = ("scheduling.k8s.io", "v1", "priorityclasses");
        let class = |name: &str| super::cached(ctx.app, PC, None, name);
        // Upstream picks the lowest-valued class when several claim globalDefault.
        let default_class = || {
            super::cached_list(ctx.app, PC, None)
                .into_iter()
                .filter(|pc| pc.get("globalDefault").and_then(Value::as_bool) == Some(true))
                .min_by_key(|pc| pc.get("value").and_then(Value::as_i64).unwrap_or(0))
        };
        resolve_priority(pod, class, default_class).map_err(|refused| attrs.forbidden(&refused.0))
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
}
