//! The replica calculator (pure), upstream's formula: the usage ratio (current / target)
//! times the ready pods, rounded up, unless the ratio is within the tolerance of 1.
//! Pods without a sample count as using 100 % of the target when scaling down and 0 %
//! when scaling up; not-ready pods count as 0 % when scaling up; if filling them in
//! flips the direction or lands within the tolerance, the count stays.

use std::collections::BTreeMap;

use super::metrics::PodSamples;

pub const TOLERANCE: f64 = 0.1;

/// A pod of the scale target, as the calculator sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct PodState {
    pub name: String,
    /// Deleted or failed pods are ignored.
    pub ignored: bool,
    /// Pending, or (for CPU) not Ready: its sample is not trusted for scaling up.
    pub unready: bool,
    /// The pod's request of the resource in milli-units (resource metrics only).
    pub request_milli: Option<i64>,
}

#[derive(Debug, PartialEq)]
pub struct Proposal {
    pub replicas: i32,
    /// The observed value: utilization in percent, or the average in milli-units.
    pub current: i64,
}

enum Target {
    /// Percent of the pods' requests.
    Utilization(i64),
    /// Milli-units per pod.
    Average(i64),
}

fn ratio(
    samples: &BTreeMap<String, i64>,
    pods: &[PodState],
    target: &Target,
) -> Result<(f64, i64), String> {
    let total: i64 = samples.values().sum();
    match target {
        Target::Utilization(t) => {
            let mut requests = 0i64;
            for name in samples.keys() {
                let req = pods
                    .iter()
                    .find(|p| &p.name == name)
                    .and_then(|p| p.request_milli)
                    .ok_or_else(|| format!("missing request for pod {name}"))?;
                requests += req;
            }
            if requests == 0 {
                return Err("no metrics returned matched known pods".into());
            }
            let utilization = total * 100 / requests;
            Ok((utilization as f64 / *t as f64, utilization))
        }
        Target::Average(t) => {
            let avg = total as f64 / samples.len() as f64;
            Ok((avg / *t as f64, avg as i64))
        }
    }
}

fn calculate(
    current_replicas: i32,
    pods: &[PodState],
    samples: &PodSamples,
    target: Target,
) -> Result<Proposal, String> {
    if pods.is_empty() {
        return Err("no pods returned by selector while calculating replica count".into());
    }
    let mut metrics: BTreeMap<String, i64> = BTreeMap::new();
    let mut ready = 0i32;
    let mut unready = Vec::new();
    let mut missing = Vec::new();
    for pod in pods.iter().filter(|p| !p.ignored) {
        match samples.get(&pod.name) {
            None => missing.push(pod),
            Some(_) if pod.unready => unready.push(pod),
            Some(s) => {
                ready += 1;
                metrics.insert(pod.name.clone(), s.milli);
            }
        }
    }
    if metrics.is_empty() {
        return Err("did not receive metrics for targeted pods (pods might be unready)".into());
    }
    let (usage, current) = ratio(&metrics, pods, &target)?;
    let scale_up_with_unready = !unready.is_empty() && usage > 1.0;
    if !scale_up_with_unready && missing.is_empty() {
        if (1.0 - usage).abs() <= TOLERANCE {
            return Ok(Proposal {
                replicas: current_replicas,
                current,
            });
        }
        return Ok(Proposal {
            replicas: (usage * f64::from(ready)).ceil() as i32,
            current,
        });
    }
    for pod in &missing {
        let value = if usage < 1.0 {
            match target {
                Target::Utilization(t) => pod.request_milli.unwrap_or(0) * t.max(100) / 100,
                Target::Average(t) => t,
            }
        } else {
            0
        };
        metrics.insert(pod.name.clone(), value);
    }
    if scale_up_with_unready {
        for pod in &unready {
            metrics.insert(pod.name.clone(), 0);
        }
    }
    let (new_usage, _) = ratio(&metrics, pods, &target)?;
    let flipped = (usage < 1.0 && new_usage > 1.0) || (usage > 1.0 && new_usage < 1.0);
    if (1.0 - new_usage).abs() <= TOLERANCE || flipped {
        return Ok(Proposal {
            replicas: current_replicas,
            current,
        });
    }
    let replicas = (new_usage * metrics.len() as f64).ceil() as i32;
    if (new_usage < 1.0 && replicas > current_replicas)
        || (new_usage > 1.0 && replicas < current_replicas)
    {
        return Ok(Proposal {
            replicas: current_replicas,
            current,
        });
    }
    Ok(Proposal { replicas, current })
}

/// Replicas for a target utilization (percent of request) of a resource.
pub fn for_utilization(
    current_replicas: i32,
    pods: &[PodState],
    samples: &PodSamples,
    target_percent: i32,
) -> Result<Proposal, String> {
    calculate(
        current_replicas,
        pods,
        samples,
        Target::Utilization(i64::from(target_percent.max(1))),
    )
}

/// Replicas for a target average value per pod (resource AverageValue, pods metrics).
pub fn for_average(
    current_replicas: i32,
    pods: &[PodState],
    samples: &PodSamples,
    target_milli: i64,
) -> Result<Proposal, String> {
    calculate(
        current_replicas,
        pods,
        samples,
        Target::Average(target_milli.max(1)),
    )
}

/// Replicas for an object or external metric against a target value: the ratio times
/// the ready pods (or, from zero replicas, the ratio itself).
pub fn for_value(
    current_replicas: i32,
    ready_pods: i32,
    value_milli: i64,
    target_milli: i64,
) -> Proposal {
    let usage = value_milli as f64 / target_milli.max(1) as f64;
    let replicas = if current_replicas == 0 {
        usage.ceil() as i32
    } else if (1.0 - usage).abs() <= TOLERANCE {
        current_replicas
    } else {
        (usage * f64::from(ready_pods)).ceil() as i32
    };
    Proposal {
        replicas,
        current: value_milli,
    }
}

/// Replicas for an object or external metric against a target average per pod.
pub fn for_average_value(current_replicas: i32, value_milli: i64, target_milli: i64) -> Proposal {
    let target = target_milli.max(1);
    let usage = value_milli as f64 / (target as f64 * f64::from(current_replicas.max(1)));
    let replicas = if (1.0 - usage).abs() <= TOLERANCE {
        current_replicas
    } else {
        (value_milli as f64 / target as f64).ceil() as i32
    };
    Proposal {
        replicas,
        current: value_milli / i64::from(current_replicas.max(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::metrics::PodSample;
    use super::*;

    fn pods(specs: &[(&str, bool)]) -> Vec<PodState> {
        specs
            .iter()
            .map(|(n, unready)| PodState {
                name: n.to_string(),
                ignored: false,
                unready: *unready,
                request_milli: Some(1000),
            })
            .collect()
    }

    fn samples(values: &[(&str, i64)]) -> PodSamples {
        values
            .iter()
            .map(|(n, v)| (n.to_string(), PodSample { milli: *v }))
            .collect()
    }

    #[test]
    fn utilization_cases() {
        let ready3 = pods(&[("a", false), ("b", false), ("c", false)]);
        let cases: Vec<(&str, Vec<PodState>, PodSamples, i32, i32)> = vec![
            (
                "at target stays",
                ready3.clone(),
                samples(&[("a", 500), ("b", 500), ("c", 500)]),
                50,
                3,
            ),
            (
                "within tolerance stays",
                ready3.clone(),
                samples(&[("a", 540), ("b", 540), ("c", 540)]),
                50,
                3,
            ),
            (
                "double the target doubles",
                ready3.clone(),
                samples(&[("a", 1000), ("b", 1000), ("c", 1000)]),
                50,
                6,
            ),
            (
                "a third of the target shrinks to one",
                ready3.clone(),
                samples(&[("a", 160), ("b", 170), ("c", 170)]),
                50,
                1,
            ),
            (
                "missing pod counts as at target when scaling down",
                ready3.clone(),
                samples(&[("a", 0), ("b", 0)]),
                50,
                2,
            ),
            (
                "missing pod counts as 0 when scaling up",
                ready3.clone(),
                samples(&[("a", 1500), ("b", 1500)]),
                50,
                6,
            ),
            (
                "unready pods count as 0 when scaling up",
                pods(&[("a", false), ("b", false), ("c", true)]),
                samples(&[("a", 900), ("b", 900), ("c", 900)]),
                50,
                4,
            ),
            (
                "filling in flips direction: stay",
                pods(&[("a", false), ("b", false), ("c", true), ("d", true)]),
                samples(&[("a", 600), ("b", 600), ("c", 0), ("d", 0)]),
                50,
                3,
            ),
        ];
        for (name, p, s, target, want) in cases {
            assert_eq!(
                for_utilization(3, &p, &s, target).unwrap().replicas,
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn utilization_reports_percent_and_errors() {
        let p = pods(&[("a", false)]);
        assert_eq!(
            for_utilization(1, &p, &samples(&[("a", 250)]), 50)
                .unwrap()
                .current,
            25
        );
        assert!(
            for_utilization(1, &p, &samples(&[]), 50).is_err(),
            "no samples"
        );
        let mut no_req = p.clone();
        no_req[0].request_milli = None;
        assert!(for_utilization(1, &no_req, &samples(&[("a", 250)]), 50).is_err());
    }

    #[test]
    fn average_and_value_targets() {
        let p = pods(&[("a", false), ("b", false)]);
        assert_eq!(
            for_average(2, &p, &samples(&[("a", 3000), ("b", 3000)]), 1000)
                .unwrap()
                .replicas,
            6
        );
        assert_eq!(for_value(2, 2, 30_000, 10_000).replicas, 6);
        assert_eq!(
            for_value(2, 2, 10_500, 10_000).replicas,
            2,
            "within tolerance"
        );
        assert_eq!(for_value(0, 0, 25_000, 10_000).replicas, 3, "from zero");
        assert_eq!(for_average_value(2, 50_000, 10_000).replicas, 5);
    }
}
