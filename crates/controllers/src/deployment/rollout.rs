//! Pure rollout decisions: how far to scale the new ReplicaSet up and the old ones down
//! (RollingUpdate within maxSurge/maxUnavailable), how a mid-rollout resize is shared
//! out proportionally, and which old ReplicaSets history cleanup deletes.

use std::cmp::Ordering;

use k8s_openapi::api::apps::v1::ReplicaSet;

use super::util::{self, available, by_creation, name, spec_replicas, Params};

/// One ReplicaSet resize. `op` is set when the resize is part of a proportional
/// scaling ("up"/"down"; the replica annotations are refreshed even when the size
/// stays); without it the direction follows from the sizes and an unchanged size is
/// no write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub name: String,
    pub to: i32,
    pub op: Option<&'static str>,
}

fn step(name: &str, to: i32) -> Step {
    Step {
        name: name.to_string(),
        to,
        op: None,
    }
}

/// The new ReplicaSet's target size while rolling (upstream's NewRSNewReplicas): grow
/// it by what maxSurge leaves over the current total, up to the desired replicas.
pub fn new_rs_new_replicas(p: &Params, all: &[&ReplicaSet], new: &ReplicaSet) -> i32 {
    let new_replicas = spec_replicas(new);
    if !p.rolling {
        return p.replicas;
    }
    let current = util::sum(all, spec_replicas);
    let max_total = p.replicas + p.max_surge();
    if current >= max_total {
        return new_replicas;
    }
    let up = (max_total - current).min(p.replicas - new_replicas);
    new_replicas + up
}

/// Upstream's reconcileNewReplicaSet: the new ReplicaSet's resize, if any.
pub fn reconcile_new(p: &Params, all: &[&ReplicaSet], new: &ReplicaSet) -> Option<Step> {
    let cur = spec_replicas(new);
    let to = if cur == p.replicas {
        return None;
    } else if cur > p.replicas {
        p.replicas
    } else {
        new_rs_new_replicas(p, all, new)
    };
    (to != cur).then(|| step(name(new), to))
}

/// Upstream's reconcileOldReplicaSets: first scale down old ReplicaSets' unhealthy
/// (unavailable) replicas, then old available ones, never taking the available count
/// below replicas - maxUnavailable. `old` are the active old ReplicaSets.
pub fn reconcile_old(
    p: &Params,
    all: &[&ReplicaSet],
    old: &[&ReplicaSet],
    new: &ReplicaSet,
) -> Vec<Step> {
    let old_pods = util::sum(old, spec_replicas);
    if old_pods == 0 {
        return Vec::new();
    }
    let all_pods = util::sum(all, spec_replicas);
    let min_available = p.replicas - p.max_unavailable();
    let new_unavailable = spec_replicas(new) - available(new);
    let max_scaled_down = all_pods - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return Vec::new();
    }
    // Working sizes, oldest first.
    let mut olds: Vec<(&ReplicaSet, i32)> = old.iter().map(|rs| (*rs, spec_replicas(rs))).collect();
    olds.sort_by(|a, b| by_creation(a.0, b.0));
    let mut steps: Vec<Step> = Vec::new();
    let record = |steps: &mut Vec<Step>, rs: &ReplicaSet, to: i32| match steps
        .iter_mut()
        .find(|s| s.name == name(rs))
    {
        Some(s) => s.to = to,
        None => steps.push(step(name(rs), to)),
    };
    // Unhealthy replicas first: removing them costs no availability.
    let mut cleaned = 0;
    for (rs, size) in olds.iter_mut() {
        if cleaned >= max_scaled_down {
            break;
        }
        let unavailable = *size - available(rs);
        if *size == 0 || unavailable <= 0 {
            continue;
        }
        let n = (max_scaled_down - cleaned).min(unavailable);
        *size -= n;
        cleaned += n;
        record(&mut steps, rs, *size);
    }
    // Then available ones, as far as availability allows.
    let available_now: i32 = util::sum(all, available);
    if available_now > min_available {
        let budget = available_now - min_available;
        let mut scaled = 0;
        for (rs, size) in olds.iter_mut() {
            if scaled >= budget {
                break;
            }
            if *size == 0 {
                continue;
            }
            let n = (*size).min(budget - scaled);
            *size -= n;
            scaled += n;
            record(&mut steps, rs, *size);
        }
    }
    steps
}

/// The ReplicaSet to resize alone when at most one has pods (upstream's
/// FindActiveOrLatest): the active one, else the new one, else the newest old one.
fn active_or_latest<'a>(
    new: Option<&'a ReplicaSet>,
    old: &[&'a ReplicaSet],
) -> Option<&'a ReplicaSet> {
    let mut all: Vec<&ReplicaSet> = old.to_vec();
    all.extend(new);
    let active = util::active(&all);
    match active.len() {
        0 => new.or_else(|| old.iter().copied().max_by(|a, b| by_creation(a, b))),
        1 => Some(active[0]),
        _ => None,
    }
}

/// The new ReplicaSet already runs everything (upstream's IsSaturated).
pub fn is_saturated(p: &Params, new: Option<&ReplicaSet>) -> bool {
    new.is_some_and(|rs| {
        util::desired_replicas_annotation(rs) == Some(p.replicas)
            && spec_replicas(rs) == p.replicas
            && available(rs) == p.replicas
    })
}

/// Upstream's scale(): follow a change of spec.replicas. With one active ReplicaSet it
/// alone is resized; a saturated new ReplicaSet retires the old ones; otherwise, while
/// rolling, the difference (within maxSurge) is shared out in proportion to each
/// ReplicaSet's size against the max-replicas it was last sized for.
/// `status_replicas` is the Deployment's status.replicas.
pub fn scale(
    p: &Params,
    status_replicas: i32,
    new: Option<&ReplicaSet>,
    old: &[&ReplicaSet],
) -> Vec<Step> {
    if let Some(rs) = active_or_latest(new, old) {
        if spec_replicas(rs) == p.replicas {
            return Vec::new();
        }
        return vec![step(name(rs), p.replicas)];
    }
    if is_saturated(p, new) {
        return old.iter().map(|rs| step(name(rs), 0)).collect();
    }
    if !p.rolling {
        return Vec::new();
    }
    let mut all: Vec<&ReplicaSet> = old.to_vec();
    all.extend(new);
    let mut all = util::active(&all);
    let current = util::sum(&all, spec_replicas);
    let allowed = if p.replicas > 0 {
        p.replicas + p.max_surge()
    } else {
        0
    };
    let to_add = allowed - current;
    let op = match to_add.cmp(&0) {
        Ordering::Greater => {
            // Larger first; among equals the newer gets the leftover.
            all.sort_by(|a, b| {
                spec_replicas(b)
                    .cmp(&spec_replicas(a))
                    .then_with(|| by_creation(b, a))
            });
            "up"
        }
        Ordering::Less => {
            all.sort_by(|a, b| {
                spec_replicas(b)
                    .cmp(&spec_replicas(a))
                    .then_with(|| by_creation(a, b))
            });
            "down"
        }
        Ordering::Equal => "",
    };
    let mut added = 0;
    let mut sizes: Vec<(String, i32)> = Vec::new();
    for rs in &all {
        let size = spec_replicas(rs);
        if to_add == 0 {
            sizes.push((name(rs).to_string(), size));
            continue;
        }
        let share = proportion(rs, p, status_replicas, to_add, added);
        sizes.push((name(rs).to_string(), size + share));
        added += share;
    }
    if to_add != 0 {
        if let Some(first) = sizes.first_mut() {
            first.1 = (first.1 + to_add - added).max(0);
        }
    }
    let op = if op.is_empty() { None } else { Some(op) };
    sizes
        .into_iter()
        .map(|(name, to)| Step { name, to, op })
        .collect()
}

/// One ReplicaSet's share of a resize (upstream's GetProportion).
fn proportion(rs: &ReplicaSet, p: &Params, status_replicas: i32, to_add: i32, added: i32) -> i32 {
    let size = spec_replicas(rs);
    if size == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = if p.replicas == 0 {
        -size
    } else {
        let total = p.replicas + p.max_surge();
        let annotated = util::max_replicas_annotation(rs).unwrap_or(status_replicas);
        if annotated <= 0 {
            0
        } else {
            let wanted = f64::from(size) * f64::from(total) / f64::from(annotated);
            wanted.round() as i32 - size
        }
    };
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// Recreate's first step: every old ReplicaSet with pods goes to zero.
pub fn recreate_scale_down(old_active: &[&ReplicaSet]) -> Vec<Step> {
    old_active
        .iter()
        .filter(|rs| spec_replicas(rs) != 0)
        .map(|rs| step(name(rs), 0))
        .collect()
}

/// The old ReplicaSets history cleanup deletes: beyond revisionHistoryLimit, lowest
/// revision first, only those fully scaled down and whose status is current.
pub fn cleanup(old: &[&ReplicaSet], limit: Option<i32>) -> Vec<String> {
    let Some(limit) = limit else {
        return Vec::new();
    };
    let mut cleanable: Vec<&ReplicaSet> = old
        .iter()
        .copied()
        .filter(|rs| rs.metadata.deletion_timestamp.is_none())
        .collect();
    let excess = cleanable.len() as i64 - i64::from(limit.max(0));
    if excess <= 0 {
        return Vec::new();
    }
    cleanable.sort_by(|a, b| {
        util::revision(a)
            .cmp(&util::revision(b))
            .then_with(|| by_creation(a, b))
    });
    cleanable
        .into_iter()
        .take(excess as usize)
        .filter(|rs| {
            let observed = rs
                .status
                .as_ref()
                .and_then(|s| s.observed_generation)
                .unwrap_or(0);
            util::status_replicas(rs) == 0
                && spec_replicas(rs) == 0
                && rs.metadata.generation.unwrap_or(0) <= observed
        })
        .map(|rs| name(rs).to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rs(name: &str, created: i64, replicas: i32, available: i32, max: Option<i32>) -> ReplicaSet {
        let mut annotations = serde_json::Map::new();
        if let Some(m) = max {
            annotations.insert(util::MAX_REPLICAS.into(), json!(m.to_string()));
        }
        serde_json::from_value(json!({
            "metadata": {
                "name": name,
                "creationTimestamp": k8s_openapi::jiff::Timestamp::from_second(created).unwrap().to_string(),
                "annotations": annotations,
            },
            "spec": {"replicas": replicas, "selector": {}},
            "status": {"replicas": replicas, "availableReplicas": available},
        }))
        .unwrap()
    }

    fn params(replicas: i32, surge: i32, unavailable: i32) -> Params {
        Params {
            replicas,
            rolling: true,
            max_surge: surge,
            max_unavailable: unavailable,
        }
    }

    fn sizes(steps: &[Step]) -> Vec<(&str, i32)> {
        steps.iter().map(|s| (s.name.as_str(), s.to)).collect()
    }

    #[test]
    fn new_replica_set_grows_within_surge() {
        struct Case {
            name: &'static str,
            p: Params,
            old: i32,
            new: i32,
            want: Option<i32>,
        }
        let cases = [
            Case {
                name: "start of rollout: surge 1",
                p: params(3, 1, 0),
                old: 3,
                new: 0,
                want: Some(1),
            },
            Case {
                name: "at the surge limit: wait",
                p: params(3, 1, 0),
                old: 3,
                new: 1,
                want: None,
            },
            Case {
                name: "old shrank: grow again",
                p: params(3, 1, 0),
                old: 1,
                new: 2,
                want: Some(3),
            },
            Case {
                name: "never beyond replicas",
                p: params(3, 5, 0),
                old: 0,
                new: 1,
                want: Some(3),
            },
            Case {
                name: "too big: shrink to replicas",
                p: params(2, 1, 0),
                old: 0,
                new: 4,
                want: Some(2),
            },
            Case {
                name: "done",
                p: params(3, 1, 0),
                old: 0,
                new: 3,
                want: None,
            },
        ];
        for c in cases {
            let old = rs("old", 1, c.old, c.old, None);
            let new = rs("new", 2, c.new, c.new, None);
            let got = reconcile_new(&c.p, &[&old, &new], &new).map(|s| s.to);
            assert_eq!(got, c.want, "{}", c.name);
        }
    }

    #[test]
    fn old_replica_sets_shrink_within_unavailability() {
        struct Case {
            name: &'static str,
            p: Params,
            old: (i32, i32),
            new: (i32, i32),
            want: Vec<(&'static str, i32)>,
        }
        let cases = [
            Case {
                name: "new not yet available: nothing may go",
                p: params(3, 1, 0),
                old: (3, 3),
                new: (1, 0),
                want: vec![],
            },
            Case {
                name: "new pod available: one old pod goes",
                p: params(3, 1, 0),
                old: (3, 3),
                new: (1, 1),
                want: vec![("old", 2)],
            },
            Case {
                name: "maxUnavailable 1 lets one go before the new is ready",
                p: params(3, 0, 1),
                old: (3, 3),
                new: (0, 0),
                want: vec![("old", 2)],
            },
            Case {
                name: "unhealthy old pods go first, without availability cost",
                p: params(3, 0, 2),
                old: (3, 1),
                new: (0, 0),
                want: vec![("old", 1)],
            },
            Case {
                name: "no room below min available while the new pod is unavailable",
                p: params(3, 1, 0),
                old: (3, 1),
                new: (1, 0),
                want: vec![],
            },
        ];
        for c in cases {
            let old = rs("old", 1, c.old.0, c.old.1, None);
            let new = rs("new", 2, c.new.0, c.new.1, None);
            let got = reconcile_old(&c.p, &[&old, &new], &[&old], &new);
            assert_eq!(sizes(&got), c.want, "{}", c.name);
        }
    }

    #[test]
    fn proportional_scaling_mid_rollout() {
        // 10 replicas, surge 3: old 8 and new 5 (13 = max), then scaled to 20 (max 23):
        // 10 more shared 8:5 → old +6, new +4 (rounded), leftover to the largest.
        let p = params(20, 3, 2);
        let old = rs("old", 1, 8, 8, Some(13));
        let new = rs("new", 2, 5, 0, Some(13));
        let got = scale(&p, 13, Some(&new), &[&old]);
        assert_eq!(sizes(&got), vec![("old", 14), ("new", 9)]);
        assert!(got.iter().all(|s| s.op == Some("up")));
        // Scaled down to 5 (max 8): 5 fewer, shared the same way.
        let p = params(5, 3, 1);
        let got = scale(&p, 13, Some(&new), &[&old]);
        assert_eq!(sizes(&got), vec![("old", 5), ("new", 3)]);
        assert!(got.iter().all(|s| s.op == Some("down")));
    }

    #[test]
    fn simple_scaling_cases() {
        let p = params(5, 1, 1);
        let new = rs("new", 2, 3, 3, None);
        let idle = rs("old", 1, 0, 0, None);
        assert_eq!(
            sizes(&scale(&p, 3, Some(&new), &[&idle])),
            vec![("new", 5)],
            "only the active one"
        );
        let saturated = {
            let mut r = rs("new", 2, 5, 5, None);
            r.metadata
                .annotations
                .get_or_insert_default()
                .insert(util::DESIRED_REPLICAS.into(), "5".into());
            r
        };
        let leftover = rs("old", 1, 2, 2, None);
        assert_eq!(
            sizes(&scale(&p, 7, Some(&saturated), &[&leftover])),
            vec![("old", 0)],
            "saturated new retires the old"
        );
    }

    #[test]
    fn history_cleanup() {
        let mut a = rs("a", 1, 0, 0, None);
        let mut b = rs("b", 2, 0, 0, None);
        let mut c = rs("c", 3, 1, 1, None);
        for (r, rev) in [(&mut a, "1"), (&mut b, "2"), (&mut c, "3")] {
            r.metadata
                .annotations
                .get_or_insert_default()
                .insert(util::REVISION.into(), rev.into());
        }
        assert_eq!(cleanup(&[&c, &b, &a], Some(1)), ["a", "b"]);
        assert_eq!(cleanup(&[&c, &b, &a], Some(2)), ["a"]);
        assert!(cleanup(&[&c, &b, &a], Some(3)).is_empty());
        assert!(cleanup(&[&c, &b, &a], None).is_empty());
        // A ReplicaSet with pods is never deleted.
        assert!(cleanup(&[&c, &b], Some(0)).contains(&"b".to_string()));
        assert!(!cleanup(&[&c, &b], Some(0)).contains(&"c".to_string()));
    }

    #[test]
    fn recreate_retires_every_old_set() {
        let a = rs("a", 1, 2, 2, None);
        let b = rs("b", 2, 0, 0, None);
        assert_eq!(sizes(&recreate_scale_down(&[&a, &b])), vec![("a", 0)]);
    }
}
