//! Taint-based eviction (pure; upstream's taint-eviction-controller): a pod on a node
//! with a NoExecute taint it does not tolerate goes at once; one tolerating it for
//! `tolerationSeconds` goes that long after the taint was added; one tolerating it
//! without a limit stays.

use k8s_openapi::api::core::v1::{Taint, Toleration};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    Keep,
    DeleteNow,
    DeleteAt(Timestamp),
}

/// Whether `tol` tolerates `taint` (upstream's ToleratesTaint).
pub fn tolerates(tol: &Toleration, taint: &Taint) -> bool {
    let effect = tol.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = tol.key.as_deref().unwrap_or("");
    let op = tol.operator.as_deref().unwrap_or("Equal");
    if key.is_empty() {
        // An empty key with Exists tolerates every taint.
        return op == "Exists";
    }
    if key != taint.key {
        return false;
    }
    match op {
        "Exists" => true,
        "Equal" => tol.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

/// What to do with a pod tolerating `tolerations` on a node with `taints`. `added`
/// gives when a taint was added (its timeAdded, else when the controller first saw it).
pub fn decide(
    tolerations: &[Toleration],
    taints: &[Taint],
    added: impl Fn(&Taint) -> Timestamp,
    now: Timestamp,
) -> Decision {
    let mut deadline: Option<Timestamp> = None;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        let Some(tol) = tolerations.iter().find(|t| tolerates(t, taint)) else {
            return Decision::DeleteNow;
        };
        let Some(secs) = tol.toleration_seconds else {
            continue;
        };
        if secs <= 0 {
            return Decision::DeleteNow;
        }
        let at = added(taint)
            .checked_add(SignedDuration::from_secs(secs))
            .unwrap_or(Timestamp::MAX);
        deadline = Some(deadline.map_or(at, |d| d.min(at)));
    }
    match deadline {
        None => Decision::Keep,
        Some(at) if at <= now => Decision::DeleteNow,
        Some(at) => Decision::DeleteAt(at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, effect: &str, added: i64) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            time_added: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                Timestamp::from_second(added).unwrap(),
            )),
            value: None,
        }
    }

    fn tol(key: &str, op: &str, effect: &str, secs: Option<i64>) -> Toleration {
        Toleration {
            key: (!key.is_empty()).then(|| key.into()),
            operator: Some(op.into()),
            effect: (!effect.is_empty()).then(|| effect.into()),
            toleration_seconds: secs,
            value: None,
        }
    }

    fn at(t: &Taint) -> Timestamp {
        t.time_added.as_ref().unwrap().0
    }

    #[test]
    fn eviction_decisions() {
        let now = Timestamp::from_second(1000).unwrap();
        let unreachable = taint("node.kubernetes.io/unreachable", "NoExecute", 990);
        let no_schedule = taint("node.kubernetes.io/unreachable", "NoSchedule", 990);
        let u = "node.kubernetes.io/unreachable";
        let cases = [
            (
                "no toleration: now",
                vec![],
                vec![unreachable.clone()],
                Decision::DeleteNow,
            ),
            (
                "NoSchedule taints evict nobody",
                vec![],
                vec![no_schedule.clone()],
                Decision::Keep,
            ),
            (
                "tolerated forever",
                vec![tol(u, "Exists", "NoExecute", None)],
                vec![unreachable.clone()],
                Decision::Keep,
            ),
            (
                "tolerated 300 s from the taint's time",
                vec![tol(u, "Exists", "NoExecute", Some(300))],
                vec![unreachable.clone()],
                Decision::DeleteAt(Timestamp::from_second(1290).unwrap()),
            ),
            (
                "toleration already expired",
                vec![tol(u, "Exists", "NoExecute", Some(5))],
                vec![unreachable.clone()],
                Decision::DeleteNow,
            ),
            (
                "zero seconds",
                vec![tol(u, "Exists", "NoExecute", Some(0))],
                vec![unreachable.clone()],
                Decision::DeleteNow,
            ),
            (
                "wildcard toleration",
                vec![tol("", "Exists", "", None)],
                vec![unreachable.clone()],
                Decision::Keep,
            ),
            (
                "toleration of another effect",
                vec![tol(u, "Exists", "NoSchedule", None)],
                vec![unreachable.clone()],
                Decision::DeleteNow,
            ),
            (
                "one of two taints untolerated",
                vec![tol(u, "Exists", "NoExecute", None)],
                vec![unreachable.clone(), taint("other", "NoExecute", 990)],
                Decision::DeleteNow,
            ),
        ];
        for (name, tols, taints, want) in cases {
            assert_eq!(decide(&tols, &taints, at, now), want, "{name}");
        }
    }

    #[test]
    fn equal_operator_compares_values() {
        let mut t = taint("k", "NoExecute", 0);
        t.value = Some("v".into());
        let mut good = tol("k", "Equal", "NoExecute", None);
        good.value = Some("v".into());
        let mut bad = good.clone();
        bad.value = Some("w".into());
        assert!(tolerates(&good, &t));
        assert!(!tolerates(&bad, &t));
    }
}
