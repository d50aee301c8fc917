//! The pod-template-hash: names a Deployment's ReplicaSet for one template.
//!
//! As upstream's ComputeHash it is FNV-1a (32-bit) over the template, then the
//! collision count (little-endian u32) when set, printed in decimal and mapped onto
//! upstream's "safe" alphabet (no vowels, no look-alike digits). Upstream hashes Go's
//! printed form of the struct; Skiff hashes the template's canonical JSON (fields in
//! schema order, maps sorted), so values differ from upstream's but are stable for a
//! template across restarts and processes.

use k8s_openapi::api::core::v1::PodTemplateSpec;

const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn fnv1a(bytes: impl IntoIterator<Item = u8>, mut h: u32) -> u32 {
    for b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Upstream's SafeEncodeString: each byte mapped onto the safe alphabet.
fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| SAFE[usize::from(b) % SAFE.len()] as char)
        .collect()
}

pub fn compute(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let json = serde_json::to_vec(template).unwrap_or_default();
    let mut h = fnv1a(json, 0x811c_9dc5);
    if let Some(c) = collision_count {
        h = fnv1a((c as u32).to_le_bytes(), h);
    }
    safe_encode(&h.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(image: &str) -> PodTemplateSpec {
        serde_json::from_value(serde_json::json!({
            "metadata": {"labels": {"app": "x"}},
            "spec": {"containers": [{"name": "c", "image": image}]},
        }))
        .unwrap()
    }

    #[test]
    fn stable_distinct_and_safe() {
        let a = compute(&template("nginx:1"), None);
        assert_eq!(a, compute(&template("nginx:1"), None));
        assert_ne!(a, compute(&template("nginx:2"), None));
        assert_ne!(a, compute(&template("nginx:1"), Some(1)));
        assert!(a.bytes().all(|b| SAFE.contains(&b)), "{a}");
        assert!(!a.is_empty() && a.len() <= 10);
        // FNV-1a of nothing is its offset basis, 2166136261.
        assert_eq!(fnv1a([], 0x811c_9dc5), 2_166_136_261);
    }
}
