//! Completion indexes of Indexed Jobs: reading a pod's index and upstream's compact
//! interval format of `status.completedIndexes` ("1,3-5,7").

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Pod;

pub const INDEX_KEY: &str = "batch.kubernetes.io/job-completion-index";

/// The pod's completion index (annotation first, then label, as upstream).
pub fn of(pod: &Pod) -> Option<i32> {
    let m = &pod.metadata;
    m.annotations
        .as_ref()
        .and_then(|a| a.get(INDEX_KEY))
        .or_else(|| m.labels.as_ref().and_then(|l| l.get(INDEX_KEY)))
        .and_then(|v| v.parse().ok())
        .filter(|i: &i32| *i >= 0)
}

/// Parses "1,3-5"; malformed parts are skipped (the controller rewrites the field).
pub fn parse(s: Option<&str>) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in s.unwrap_or("").split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
                    out.extend(a..=b);
                }
            }
            None => {
                if let Ok(a) = part.parse() {
                    out.insert(a);
                }
            }
        }
    }
    out
}

/// Formats indexes as sorted intervals ("" for none).
pub fn format(set: &BTreeSet<i32>) -> String {
    let mut parts = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_round_trip() {
        for (text, want) in [
            ("", vec![]),
            ("0", vec![0]),
            ("0-2,4", vec![0, 1, 2, 4]),
            ("1,3-5,7", vec![1, 3, 4, 5, 7]),
        ] {
            let set = parse(Some(text));
            assert_eq!(set.iter().copied().collect::<Vec<_>>(), want, "{text}");
            assert_eq!(format(&set), text);
        }
        assert_eq!(format(&[0, 1].into_iter().collect()), "0-1");
    }
}
