//! From the metrics' proposal to the replica count to set (pure), as upstream:
//! stabilization (the highest recommendation of the last 300 s for scale-down, by
//! default; behaviors may set windows for both directions), then the rate rules (without
//! behaviors: at most max(2 × current, 4); with behaviors: their policies over recent
//! scale events) and the min/max bounds. Each step says why, for the conditions.

use k8s_openapi::api::autoscaling::v2::{HPAScalingRules, HorizontalPodAutoscalerBehavior};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

pub const DEFAULT_DOWNSCALE_WINDOW: i32 = 300;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Recommendation {
    pub at: Timestamp,
    pub replicas: i32,
}

/// A past rescale: `change` replicas (positive up, negative down) at `at`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScaleEvent {
    pub at: Timestamp,
    pub change: i32,
}

#[derive(Debug, PartialEq)]
pub struct Normalized {
    pub replicas: i32,
    /// AbleToScale reason and message (ScaleUpStabilized, ScaleDownStabilized or
    /// ReadyForNewScale).
    pub able: (&'static str, &'static str),
    /// ScalingLimited: limited?, reason, message.
    pub limited: (bool, &'static str, &'static str),
}

const READY: (&str, &str) = ("ReadyForNewScale", "recommended size matches current size");
const DOWN_STABILIZED: (&str, &str) = (
    "ScaleDownStabilized",
    "recent recommendations were higher than current one, applying the highest recent recommendation",
);
const UP_STABILIZED: (&str, &str) = (
    "ScaleUpStabilized",
    "recent recommendations were lower than current one, applying the lowest recent recommendation",
);
const WITHIN: (&str, &str) = (
    "DesiredWithinRange",
    "the desired count is within the acceptable range",
);
const TOO_FEW: (&str, &str) = (
    "TooFewReplicas",
    "the desired replica count is less than the minimum replica count",
);
const TOO_MANY: (&str, &str) = (
    "TooManyReplicas",
    "the desired replica count is more than the maximum replica count",
);
const UP_LIMIT: (&str, &str) = (
    "ScaleUpLimit",
    "the desired replica count is increasing faster than the maximum scale rate",
);
const DOWN_LIMIT: (&str, &str) = (
    "ScaleDownLimit",
    "the desired replica count is decreasing faster than the maximum scale rate",
);

fn since(now: Timestamp, secs: i32) -> Timestamp {
    now.checked_sub(SignedDuration::from_secs(i64::from(secs)))
        .unwrap_or(Timestamp::MIN)
}

/// Without behaviors (upstream's normalizeDesiredReplicas).
pub fn plain(
    current: i32,
    proposal: i32,
    min: i32,
    max: i32,
    history: &[Recommendation],
    now: Timestamp,
) -> Normalized {
    let cutoff = since(now, DEFAULT_DOWNSCALE_WINDOW);
    let stabilized = history
        .iter()
        .filter(|r| r.at > cutoff)
        .map(|r| r.replicas)
        .fold(proposal, i32::max);
    let able = if stabilized != proposal {
        DOWN_STABILIZED
    } else {
        READY
    };
    let scale_up_limit = (2 * current).max(4);
    let (max_allowed, over) = if max > scale_up_limit {
        (scale_up_limit, UP_LIMIT)
    } else {
        (max, TOO_MANY)
    };
    let (replicas, why) = if stabilized < min {
        (min, TOO_FEW)
    } else if stabilized > max_allowed {
        (max_allowed, over)
    } else {
        (stabilized, WITHIN)
    };
    Normalized {
        replicas,
        able,
        limited: (replicas != stabilized, why.0, why.1),
    }
}

/// Upstream's defaults for unset behavior fields.
fn rules(b: Option<&HorizontalPodAutoscalerBehavior>, up: bool) -> HPAScalingRules {
    let given = b.and_then(|b| {
        if up {
            b.scale_up.clone()
        } else {
            b.scale_down.clone()
        }
    });
    let mut r = given.unwrap_or_default();
    if r.stabilization_window_seconds.is_none() {
        r.stabilization_window_seconds = Some(if up { 0 } else { DEFAULT_DOWNSCALE_WINDOW });
    }
    if r.select_policy.is_none() {
        r.select_policy = Some("Max".into());
    }
    if r.policies.as_ref().is_none_or(|p| p.is_empty()) {
        let policy =
            |type_: &str, value: i32| k8s_openapi::api::autoscaling::v2::HPAScalingPolicy {
                type_: type_.into(),
                value,
                period_seconds: 15,
            };
        r.policies = Some(if up {
            vec![policy("Pods", 4), policy("Percent", 100)]
        } else {
            vec![policy("Percent", 100)]
        });
    }
    r
}

fn change_in(events: &[ScaleEvent], period: i32, now: Timestamp, up: bool) -> i32 {
    let cutoff = since(now, period);
    events
        .iter()
        .filter(|e| e.at > cutoff && (e.change > 0) == up)
        .map(|e| e.change.abs())
        .sum()
}

/// The replicas the policies allow at the period's start, up or down.
fn limit(
    r: &HPAScalingRules,
    current: i32,
    events: &[ScaleEvent],
    now: Timestamp,
    up: bool,
) -> i32 {
    let select = r.select_policy.as_deref().unwrap_or("Max");
    if select == "Disabled" {
        return current;
    }
    // Max change: the largest for scale-up, the smallest replica count for scale-down.
    let pick_max = (select == "Max") == up;
    let mut result: Option<i32> = None;
    for p in r.policies.iter().flatten() {
        let start = current - change_in(events, p.period_seconds, now, true)
            + change_in(events, p.period_seconds, now, false);
        let proposed = match (p.type_.as_str(), up) {
            ("Pods", true) => start + p.value,
            ("Pods", false) => start - p.value,
            (_, true) => (f64::from(start) * (1.0 + f64::from(p.value) / 100.0)).ceil() as i32,
            (_, false) => (f64::from(start) * (1.0 - f64::from(p.value) / 100.0)) as i32,
        };
        result = Some(match result {
            None => proposed,
            Some(r) if pick_max => r.max(proposed),
            Some(r) => r.min(proposed),
        });
    }
    result.unwrap_or(current)
}

/// With behaviors (upstream's normalizeDesiredReplicasWithBehaviors).
#[allow(clippy::too_many_arguments)]
pub fn with_behavior(
    behavior: &HorizontalPodAutoscalerBehavior,
    current: i32,
    proposal: i32,
    min: i32,
    max: i32,
    history: &[Recommendation],
    events: &[ScaleEvent],
    now: Timestamp,
) -> Normalized {
    let up_rules = rules(Some(behavior), true);
    let down_rules = rules(Some(behavior), false);
    let up_cutoff = since(now, up_rules.stabilization_window_seconds.unwrap_or(0));
    let down_cutoff = since(now, down_rules.stabilization_window_seconds.unwrap_or(0));
    let (mut up_rec, mut down_rec) = (proposal, proposal);
    for r in history {
        if r.at > up_cutoff {
            up_rec = up_rec.min(r.replicas);
        }
        if r.at > down_cutoff {
            down_rec = down_rec.max(r.replicas);
        }
    }
    let stabilized = current.max(up_rec).min(down_rec);
    let able = if stabilized == proposal {
        READY
    } else if stabilized < proposal {
        UP_STABILIZED
    } else {
        DOWN_STABILIZED
    };
    let (replicas, why) = if stabilized > current {
        let up_limit = limit(&up_rules, current, events, now, true).max(current);
        let (allowed, over) = if max > up_limit {
            (up_limit, UP_LIMIT)
        } else {
            (max, TOO_MANY)
        };
        if stabilized > allowed {
            (allowed, over)
        } else {
            (stabilized, WITHIN)
        }
    } else if stabilized < current {
        let down_limit = limit(&down_rules, current, events, now, false).min(current);
        let (allowed, under) = if min < down_limit {
            (down_limit, DOWN_LIMIT)
        } else {
            (min, TOO_FEW)
        };
        if stabilized < allowed {
            (allowed, under)
        } else {
            (stabilized, WITHIN)
        }
    } else {
        (stabilized, WITHIN)
    };
    Normalized {
        replicas,
        able,
        limited: (replicas != stabilized, why.0, why.1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn rec(s: i64, replicas: i32) -> Recommendation {
        Recommendation {
            at: at(s),
            replicas,
        }
    }

    #[test]
    fn plain_normalization() {
        let now = at(1000);
        let cases = [
            (
                "within range",
                3,
                5,
                1,
                10,
                vec![],
                5,
                "ReadyForNewScale",
                "DesiredWithinRange",
            ),
            (
                "scale-down waits for the window's highest",
                5,
                2,
                1,
                10,
                vec![rec(800, 5)],
                5,
                "ScaleDownStabilized",
                "DesiredWithinRange",
            ),
            (
                "recommendations older than 300 s are forgotten",
                5,
                2,
                1,
                10,
                vec![rec(600, 5)],
                2,
                "ReadyForNewScale",
                "DesiredWithinRange",
            ),
            (
                "scale-up limited to double",
                3,
                20,
                1,
                50,
                vec![],
                6,
                "ReadyForNewScale",
                "ScaleUpLimit",
            ),
            (
                "small counts may go to four",
                1,
                20,
                1,
                50,
                vec![],
                4,
                "ReadyForNewScale",
                "ScaleUpLimit",
            ),
            (
                "max bound",
                3,
                6,
                1,
                5,
                vec![],
                5,
                "ReadyForNewScale",
                "TooManyReplicas",
            ),
            (
                "min bound",
                3,
                1,
                2,
                5,
                vec![],
                2,
                "ReadyForNewScale",
                "TooFewReplicas",
            ),
        ];
        for (name, current, proposal, min, max, history, want, able, limited) in cases {
            let n = plain(current, proposal, min, max, &history, now);
            assert_eq!(
                (n.replicas, n.able.0, n.limited.1),
                (want, able, limited),
                "{name}"
            );
        }
    }

    #[test]
    fn behaviors_windows_and_policies() {
        let now = at(1000);
        let b: HorizontalPodAutoscalerBehavior = serde_json::from_value(serde_json::json!({
            "scaleUp": {"stabilizationWindowSeconds": 60, "policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}]},
            "scaleDown": {"stabilizationWindowSeconds": 0, "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}]}
        }))
        .unwrap();
        // Scale-up stabilized by the lowest recommendation in 60 s.
        let n = with_behavior(&b, 2, 8, 1, 20, &[rec(990, 5)], &[], now);
        assert_eq!(
            (n.replicas, n.able.0),
            (4, "ScaleUpStabilized"),
            "5 stabilized, then +2 pods per minute"
        );
        assert_eq!(n.limited.1, "ScaleUpLimit");
        // A scale-up of 2 within the period uses the budget up.
        let n = with_behavior(
            &b,
            4,
            8,
            1,
            20,
            &[],
            &[ScaleEvent {
                at: at(970),
                change: 2,
            }],
            now,
        );
        assert_eq!(n.replicas, 4);
        // Scale-down by at most half.
        let n = with_behavior(&b, 10, 1, 1, 20, &[], &[], now);
        assert_eq!((n.replicas, n.limited.1), (5, "ScaleDownLimit"));
        // Disabled scale-down keeps the count.
        let off: HorizontalPodAutoscalerBehavior =
            serde_json::from_value(serde_json::json!({"scaleDown": {"selectPolicy": "Disabled"}}))
                .unwrap();
        assert_eq!(
            with_behavior(&off, 10, 1, 1, 20, &[], &[], now).replicas,
            10
        );
        // Defaults: scale-down window 300 s.
        let none = HorizontalPodAutoscalerBehavior::default();
        let n = with_behavior(&none, 5, 2, 1, 10, &[rec(800, 5)], &[], now);
        assert_eq!((n.replicas, n.able.0), (5, "ScaleDownStabilized"));
    }
}
