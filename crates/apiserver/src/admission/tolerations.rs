//! DefaultTolerationSeconds: Pods that do not tolerate the node lifecycle taints
//! `node.kubernetes.io/not-ready` and `node.kubernetes.io/unreachable` (NoExecute) get
//! tolerations for them with `tolerationSeconds` (300 s by default), so a pod on a lost
//! node is evicted after that long instead of at once.

use serde_json::{json, Value};
use skiff_api::ApiError;

use super::{Attributes, Context, Operation, Plugin};

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

/// The DefaultTolerationSeconds plugin (the settings type has the upstream name).
pub struct DefaultTolerations;

#[async_trait::async_trait]
impl Plugin for DefaultTolerations {
    fn name(&self) -> &'static str {
        "DefaultTolerationSeconds"
    }

    async fn mutate(
        &self,
        ctx: &Context<'_>,
        attrs: &Attributes,
        pod: &mut Value,
    ) -> Result<(), ApiError> {
        if attrs.operation == Operation::Create && attrs.is("", "pods") {
            default_toleration_seconds(pod, ctx.app.config.default_toleration_seconds);
        }
        Ok(())
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

    #[test]
    fn a_tolerate_everything_pod_gets_nothing() {
        let mut pod = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        default_toleration_seconds(&mut pod, DefaultTolerationSeconds::default());
        assert_eq!(keys(&pod).len(), 1);
    }
}
