//! The key layout Skiff shares with Kubernetes: `/registry/<resource>/<namespace>/<name>`,
//! or `/registry/<resource>/<name>` for cluster-scoped objects, so `etcdctl get --prefix
//! /registry/...` shows the familiar tree.

/// Key of one object.
pub fn object_key(resource: &str, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("/registry/{resource}/{ns}/{name}"),
        None => format!("/registry/{resource}/{name}"),
    }
}

/// Prefix of every object of a resource, or of one namespace's objects of it. Ends in `/`
/// so `pods/default/` never matches `pods/default-2/...`.
pub fn collection_prefix(resource: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("/registry/{resource}/{ns}/"),
        None => format!("/registry/{resource}/"),
    }
}

/// The smallest key greater than every key starting with `prefix` (etcd's `range_end` for a
/// prefix). An all-`0xff` or empty prefix gives `[0]`, which etcd reads as "no upper bound".
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// The first key after `key` in byte order: where the next page of a paginated range starts.
pub fn key_after(key: &[u8]) -> Vec<u8> {
    let mut next = key.to_vec();
    next.push(0);
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_keys_follow_the_registry_layout() {
        assert_eq!(
            object_key("pods", Some("default"), "web"),
            "/registry/pods/default/web"
        );
        assert_eq!(object_key("nodes", None, "n1"), "/registry/nodes/n1");
        assert_eq!(
            collection_prefix("pods", Some("kube-system")),
            "/registry/pods/kube-system/"
        );
        assert_eq!(collection_prefix("nodes", None), "/registry/nodes/");
    }

    #[test]
    fn prefix_end_is_the_next_key_after_the_prefix() {
        assert_eq!(prefix_end(b"/registry/pods/"), b"/registry/pods0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
    }

    #[test]
    fn key_after_sorts_right_after_the_key() {
        let k = b"/registry/pods/default/a".to_vec();
        let next = key_after(&k);
        assert!(next > k);
        assert!(next < b"/registry/pods/default/a0".to_vec());
    }
}
