//! Scoring: every score plugin of upstream's default profile, normalized to 0..100 as
//! upstream normalizes it, and summed with the default profile's weights.

use super::{interpod, nodeaffinity, spread, taints, CycleState};
use crate::cache::{normalized_image, Cache, NodeInfo, PodInfo};

pub const WEIGHT_TAINT_TOLERATION: i64 = 3;
pub const WEIGHT_NODE_AFFINITY: i64 = 2;
pub const WEIGHT_RESOURCES_FIT: i64 = 1;
pub const WEIGHT_TOPOLOGY_SPREAD: i64 = 2;
pub const WEIGHT_INTER_POD_AFFINITY: i64 = 2;
pub const WEIGHT_BALANCED_ALLOCATION: i64 = 1;
pub const WEIGHT_IMAGE_LOCALITY: i64 = 1;

const MB: i64 = 1024 * 1024;
const IMAGE_MIN: i64 = 23 * MB;
const IMAGE_MAX_PER_CONTAINER: i64 = 1000 * MB;

/// NodeResourcesFit's LeastAllocated over cpu and memory (weight 1 each), with
/// upstream's defaults for containers that request nothing.
pub fn least_allocated(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let pairs = [
        (
            node.non_zero_cpu + pod.requests.non_zero_cpu,
            node.allocatable.milli_cpu,
        ),
        (
            node.non_zero_memory + pod.requests.non_zero_memory,
            node.allocatable.memory,
        ),
    ];
    let (mut sum, mut weights) = (0i64, 0i64);
    for (requested, capacity) in pairs {
        if capacity == 0 {
            continue;
        }
        sum += if requested > capacity {
            0
        } else {
            (capacity - requested) * 100 / capacity
        };
        weights += 1;
    }
    if weights == 0 {
        0
    } else {
        sum / weights
    }
}

/// Whether BalancedAllocation skips the pod (upstream skips pods requesting neither
/// cpu nor memory, so best-effort pods do not pile onto one node).
pub fn balanced_skips(pod: &PodInfo) -> bool {
    pod.requests.requests.milli_cpu == 0 && pod.requests.requests.memory == 0
}

/// NodeResourcesBalancedAllocation: 100 × (1 − the standard deviation of the cpu and
/// memory fractions the node would have in use).
pub fn balanced_allocation(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let pairs = [
        (
            node.requested.milli_cpu + pod.requests.requests.milli_cpu,
            node.allocatable.milli_cpu,
        ),
        (
            node.requested.memory + pod.requests.requests.memory,
            node.allocatable.memory,
        ),
    ];
    let fractions: Vec<f64> = pairs
        .iter()
        .filter(|(_, cap)| *cap > 0)
        .map(|(req, cap)| (*req as f64 / *cap as f64).min(1.0))
        .collect();
    let std = match fractions.len() {
        2 => ((fractions[0] - fractions[1]) / 2.0).abs(),
        n if n > 2 => {
            let mean = fractions.iter().sum::<f64>() / n as f64;
            (fractions
                .iter()
                .map(|f| (f - mean) * (f - mean))
                .sum::<f64>()
                / n as f64)
                .sqrt()
        }
        _ => 0.0,
    };
    ((1.0 - std) * 100.0) as i64
}

/// The pod's container images (normalized) and its container count, for ImageLocality.
pub fn pod_images(pod: &PodInfo) -> (Vec<String>, i64) {
    let Some(spec) = pod.pod.spec.as_ref() else {
        return (Vec::new(), 0);
    };
    let containers: Vec<_> = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .collect();
    let images = containers
        .iter()
        .filter_map(|c| c.image.as_deref())
        .map(normalized_image)
        .collect();
    (images, containers.len() as i64)
}

/// ImageLocality: sizes of the pod's images already on the node, scaled by how many
/// nodes hold them, mapped from 23 MB..1000 MB per container onto 0..100.
pub fn image_locality(cache: &Cache, images: &(Vec<String>, i64), node: &NodeInfo) -> i64 {
    let (images, n) = images;
    let total = cache.node_count().max(1) as f64;
    let mut sum = 0i64;
    if !node.images.is_empty() {
        for name in images {
            if let Some(size) = node.images.get(name) {
                sum += (*size as f64 * cache.image_node_count(name) as f64 / total) as i64;
            }
        }
    }
    let max = IMAGE_MAX_PER_CONTAINER * (*n).max(1);
    let sum = sum.clamp(IMAGE_MIN, max);
    100 * (sum - IMAGE_MIN) / (max - IMAGE_MIN)
}

/// Upstream's DefaultNormalizeScore: scale to 0..100 by the maximum; `reverse` flips it.
pub fn default_normalize(raw: &[i64], reverse: bool) -> Vec<i64> {
    let max = raw.iter().copied().max().unwrap_or(0);
    if max == 0 {
        return raw.iter().map(|_| if reverse { 100 } else { 0 }).collect();
    }
    raw.iter()
        .map(|s| {
            let v = 100 * s / max;
            if reverse {
                100 - v
            } else {
                v
            }
        })
        .collect()
}

/// Total weighted score of each feasible node, in the order given.
pub fn score(cache: &Cache, state: &CycleState, feasible: &[&NodeInfo]) -> Vec<i64> {
    let pod = &state.pod;
    let mut total = vec![0i64; feasible.len()];
    let skip_balanced = balanced_skips(pod);
    let mut taint_raw = Vec::with_capacity(feasible.len());
    let images = pod_images(pod);
    for (i, node) in feasible.iter().enumerate() {
        total[i] += WEIGHT_RESOURCES_FIT * least_allocated(pod, node);
        if !skip_balanced {
            total[i] += WEIGHT_BALANCED_ALLOCATION * balanced_allocation(pod, node);
        }
        total[i] += WEIGHT_IMAGE_LOCALITY * image_locality(cache, &images, node);
        taint_raw.push(node.node.as_deref().map_or(0, |n| taints::score(pod, n)));
    }
    for (i, s) in default_normalize(&taint_raw, true).into_iter().enumerate() {
        total[i] += WEIGHT_TAINT_TOLERATION * s;
    }
    let preferred = nodeaffinity::preferred(pod);
    if !preferred.is_empty() {
        let raw: Vec<i64> = feasible
            .iter()
            .map(|n| {
                n.node
                    .as_deref()
                    .map_or(0, |n| nodeaffinity::score(&preferred, n))
            })
            .collect();
        for (i, s) in default_normalize(&raw, false).into_iter().enumerate() {
            total[i] += WEIGHT_NODE_AFFINITY * s;
        }
    }
    if let Some(s) = spread::prescore(cache, pod, feasible, state.default_spread.as_ref()) {
        let raw: Vec<Option<i64>> = feasible.iter().map(|n| s.score(pod, n)).collect();
        for (i, v) in spread::normalize(&raw).into_iter().enumerate() {
            total[i] += WEIGHT_TOPOLOGY_SPREAD * v;
        }
    }
    if let Some(s) = interpod::prescore(cache, pod) {
        let raw: Vec<i64> = feasible.iter().map(|n| s.score(n)).collect();
        for (i, v) in interpod::normalize(&raw).into_iter().enumerate() {
            total[i] += WEIGHT_INTER_POD_AFFINITY * v;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::{node, pod, resources};
    use serde_json::json;

    fn node_info(cpu: &str, mem: &str, used: Option<(&str, &str)>) -> NodeInfo {
        let mut n = NodeInfo::new(node(
            "n",
            json!({}),
            json!({}),
            json!({"cpu": cpu, "memory": mem, "pods": "110"}),
        ));
        if let Some((c, m)) = used {
            n.add_pod(pod("e", resources(c, m)));
        }
        n
    }

    #[test]
    fn resource_score_cases() {
        struct Case {
            name: &'static str,
            node: NodeInfo,
            pod: (&'static str, &'static str),
            least: i64,
            balanced: i64,
        }
        let cases = [
            Case {
                name: "empty node, half of both",
                node: node_info("4", "4Gi", None),
                pod: ("2", "2Gi"),
                least: 50,
                balanced: 100,
            },
            Case {
                name: "cpu heavy",
                node: node_info("4", "4Gi", None),
                pod: ("3", "1Gi"),
                least: 50,
                balanced: 75,
            },
            Case {
                name: "already used",
                node: node_info("4", "4Gi", Some(("2", "2Gi"))),
                pod: ("1", "1Gi"),
                least: 25,
                balanced: 100,
            },
            Case {
                name: "overcommitted",
                node: node_info("1", "1Gi", None),
                pod: ("2", "512Mi"),
                least: 25,
                balanced: 75,
            },
        ];
        for c in cases {
            let p = pod("p", resources(c.pod.0, c.pod.1));
            assert_eq!(
                least_allocated(&p, &c.node),
                c.least,
                "{}: least allocated",
                c.name
            );
            assert_eq!(
                balanced_allocation(&p, &c.node),
                c.balanced,
                "{}: balanced",
                c.name
            );
        }
    }

    #[test]
    fn normalization() {
        assert_eq!(default_normalize(&[0, 0], true), vec![100, 100]);
        assert_eq!(default_normalize(&[1, 2], true), vec![50, 0]);
        assert_eq!(default_normalize(&[5, 10], false), vec![50, 100]);
        assert_eq!(default_normalize(&[0, 0], false), vec![0, 0]);
    }

    #[test]
    fn image_locality_prefers_nodes_with_the_image() {
        let mut cache = Cache::default();
        let img = json!([{"names": ["big:1"], "sizeBytes": 500 * MB}]);
        cache.upsert_node(std::sync::Arc::new(serde_json::from_value(json!({"metadata": {"name": "a"}, "status": {"allocatable": {"pods": "1"}, "images": img}})).unwrap()));
        cache.upsert_node(node("b", json!({}), json!({}), json!({"pods": "1"})));
        let p = pod(
            "p",
            json!({"containers": [{"name": "c", "image": "big:1"}]}),
        );
        let images = pod_images(&p);
        let a = image_locality(&cache, &images, cache.node("a").unwrap());
        let b = image_locality(&cache, &images, cache.node("b").unwrap());
        // 500 MB held by half the nodes scales to 250 MB: (250-23)/(1000-23) of 100.
        assert_eq!((a, b), (23, 0));
    }
}
