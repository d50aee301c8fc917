//! VolumeBinding, for claims that are already bound: a pod whose PersistentVolumeClaim
//! is bound to a PersistentVolume with `spec.nodeAffinity` may only go to nodes that
//! volume's node affinity allows.
//!
//! Left out: binding unbound claims (WaitForFirstConsumer delayed binding and dynamic
//! provisioning). Every unbound claim is treated as unschedulable as upstream treats an
//! unbound Immediate claim.

use k8s_openapi::api::core::v1::Node;

use super::{Plugin, Rejection, Volumes};
use crate::cache::PodInfo;
use crate::terms::NodeSelector;

pub const REASON_CONFLICT: &str = "node(s) had volume node affinity conflict";
pub const REASON_UNBOUND: &str = "pod has unbound immediate PersistentVolumeClaims";

/// The node constraints of the pod's bound volumes. `None` for a volume means the
/// volume is missing (no node fits).
#[derive(Clone, Default)]
pub struct State {
    constraints: Vec<Option<NodeSelector>>,
}

/// Names of the claims the pod uses (generic ephemeral volumes name theirs
/// `<pod>-<volume>`).
pub fn claim_names(pod: &PodInfo) -> Vec<String> {
    let pod_name = &pod.key.name;
    pod.pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|v| {
            if let Some(pvc) = &v.persistent_volume_claim {
                Some(pvc.claim_name.clone())
            } else if v.ephemeral.is_some() {
                Some(format!("{pod_name}-{}", v.name))
            } else {
                None
            }
        })
        .collect()
}

pub fn prefilter(vols: &Volumes, pod: &PodInfo) -> Result<State, Rejection> {
    let mut state = State::default();
    for claim in claim_names(pod) {
        let Some(pvc) = vols
            .claims
            .get(&(pod.namespace().to_string(), claim.clone()))
        else {
            return Err(Rejection::unresolvable(
                Plugin::VolumeBinding,
                format!("persistentvolumeclaim \"{claim}\" not found"),
            ));
        };
        if pvc.metadata.deletion_timestamp.is_some() {
            return Err(Rejection::unresolvable(
                Plugin::VolumeBinding,
                format!("persistentvolumeclaim \"{claim}\" is being deleted"),
            ));
        }
        let volume_name = pvc
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.as_deref())
            .filter(|v| !v.is_empty());
        let Some(volume_name) = volume_name else {
            return Err(Rejection::unresolvable(
                Plugin::VolumeBinding,
                REASON_UNBOUND,
            ));
        };
        let constraint = vols.volumes.get(volume_name).map(|pv| {
            pv.spec
                .as_ref()
                .and_then(|s| s.node_affinity.as_ref())
                .and_then(|a| a.required.as_ref())
                .map(|r| NodeSelector::parse(&r.node_selector_terms))
        });
        match constraint {
            None => state.constraints.push(None),
            Some(Some(sel)) => state.constraints.push(Some(sel)),
            Some(None) => {}
        }
    }
    Ok(state)
}

pub fn filter(state: &State, node: &Node) -> Result<(), Rejection> {
    let ok = state
        .constraints
        .iter()
        .all(|c| c.as_ref().is_some_and(|sel| sel.matches(node)));
    if ok {
        Ok(())
    } else {
        Err(Rejection::unresolvable(
            Plugin::VolumeBinding,
            REASON_CONFLICT,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::{pod, small_node};
    use serde_json::json;
    use std::sync::Arc;

    fn volumes() -> Volumes {
        let mut v = Volumes::default();
        for (name, pv) in [
            ("bound", Some("pv-a")),
            ("unbound", None),
            ("orphan", Some("pv-missing")),
            ("free", Some("pv-any")),
        ] {
            let mut spec = json!({});
            if let Some(pv) = pv {
                spec["volumeName"] = json!(pv);
            }
            v.claims.insert(
                ("default".into(), name.into()),
                Arc::new(
                    serde_json::from_value(
                        json!({"metadata": {"name": name, "namespace": "default"}, "spec": spec}),
                    )
                    .unwrap(),
                ),
            );
        }
        v.volumes.insert("pv-a".into(), Arc::new(serde_json::from_value(json!({"metadata": {"name": "pv-a"}, "spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}}})).unwrap()));
        v.volumes.insert(
            "pv-any".into(),
            Arc::new(
                serde_json::from_value(json!({"metadata": {"name": "pv-any"}, "spec": {}}))
                    .unwrap(),
            ),
        );
        v
    }

    #[test]
    fn volume_cases() {
        struct Case {
            name: &'static str,
            claim: &'static str,
            zone: &'static str,
            want: Result<(), &'static str>,
        }
        let cases = [
            Case {
                name: "bound PV in the node's zone",
                claim: "bound",
                zone: "a",
                want: Ok(()),
            },
            Case {
                name: "bound PV elsewhere",
                claim: "bound",
                zone: "b",
                want: Err(REASON_CONFLICT),
            },
            Case {
                name: "PV without node affinity",
                claim: "free",
                zone: "b",
                want: Ok(()),
            },
            Case {
                name: "PV missing",
                claim: "orphan",
                zone: "a",
                want: Err(REASON_CONFLICT),
            },
            Case {
                name: "unbound claim",
                claim: "unbound",
                zone: "a",
                want: Err(REASON_UNBOUND),
            },
            Case {
                name: "missing claim",
                claim: "nope",
                zone: "a",
                want: Err("persistentvolumeclaim \"nope\" not found"),
            },
        ];
        let v = volumes();
        for c in cases {
            let p = pod(
                "p",
                json!({"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": c.claim}}]}),
            );
            let n = small_node("n", json!({"zone": c.zone}));
            let got = prefilter(&v, &p)
                .and_then(|s| filter(&s, &n))
                .map_err(|r| r.reasons[0].to_string());
            assert_eq!(got, c.want.map_err(str::to_string), "{}", c.name);
        }
    }
}
