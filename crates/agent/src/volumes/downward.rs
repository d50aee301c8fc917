//! downwardAPI volumes: the pod's own fields and its containers' resources as files
//! (also used by projected volumes and by `subPathExpr` expansion).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{DownwardAPIVolumeFile, Pod, ResourceFieldSelector};
use skiff_api::quantity::Quantity;

use super::atomic::{validate_path, FileProjection, Payload};
use super::keys::mode_bits;

/// The node's allocatable resources: what a `limits.*` reference reads when the
/// container sets no limit (as upstream).
pub type Allocatable = BTreeMap<String, Quantity>;

/// The files of a downwardAPI volume (or projected downwardAPI source).
pub fn payload(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: u32,
    allocatable: &Allocatable,
) -> Result<Payload, String> {
    let mut payload = Payload::new();
    for item in items {
        validate_path(&item.path)?;
        let value = if let Some(f) = &item.field_ref {
            field_value(pod, &f.field_path)?
        } else if let Some(r) = &item.resource_field_ref {
            resource_value(pod, r, allocatable)?
        } else {
            return Err(format!(
                "downwardAPI item {:?} has neither fieldRef nor resourceFieldRef",
                item.path
            ));
        };
        let mode = item.mode.map(mode_bits).unwrap_or(default_mode);
        payload.insert(
            item.path.clone(),
            FileProjection {
                data: value.into_bytes(),
                mode,
            },
        );
    }
    Ok(payload)
}

/// Whether any item reads a resource (so the node's allocatable may be needed).
pub fn reads_resources(items: &[DownwardAPIVolumeFile]) -> bool {
    items.iter().any(|i| i.resource_field_ref.is_some())
}

/// The value of a pod field path, as upstream's downward API formats it.
pub fn field_value(pod: &Pod, path: &str) -> Result<String, String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    if let Some(key) = subscript(path, "metadata.labels") {
        return Ok(lookup(meta.labels.as_ref(), key));
    }
    if let Some(key) = subscript(path, "metadata.annotations") {
        return Ok(lookup(meta.annotations.as_ref(), key));
    }
    let value = match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" => status.and_then(|s| s.host_ip.clone()).unwrap_or_default(),
        "status.podIP" => status.and_then(|s| s.pod_ip.clone()).unwrap_or_default(),
        "status.hostIPs" => status
            .and_then(|s| s.host_ips.as_ref())
            .map(|ips| {
                ips.iter()
                    .map(|i| i.ip.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default(),
        "status.podIPs" => status
            .and_then(|s| s.pod_ips.as_ref())
            .map(|ips| {
                ips.iter()
                    .map(|i| i.ip.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default(),
        other => return Err(format!("unsupported fieldPath: {other}")),
    };
    Ok(value)
}

/// `metadata.labels['key']` → `key`.
fn subscript<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    path.strip_prefix(prefix)?
        .strip_prefix("['")?
        .strip_suffix("']")
}

fn lookup(map: Option<&BTreeMap<String, String>>, key: &str) -> String {
    map.and_then(|m| m.get(key)).cloned().unwrap_or_default()
}

/// `key="value"` lines, sorted by key, values quoted as Go's `%q` does.
fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.map(|m| {
        m.iter()
            .map(|(k, v)| format!("{k}={}", go_quote(v)))
            .collect::<Vec<_>>()
            .join("\n")
    })
    .unwrap_or_default()
}

fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A container's resource request or limit divided by the divisor, rounded up, as
/// upstream's `ExtractContainerResourceValue`.
pub fn resource_value(
    pod: &Pod,
    r: &ResourceFieldSelector,
    allocatable: &Allocatable,
) -> Result<String, String> {
    let container_name = r.container_name.as_deref().unwrap_or_default();
    let spec = pod.spec.as_ref().ok_or("pod has no spec")?;
    let container = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == container_name)
        .ok_or_else(|| format!("container {container_name:?} not found in the pod"))?;
    let (kind, name) = r
        .resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported container resource : {}", r.resource))?;
    let resources = container.resources.as_ref();
    let set = match kind {
        "limits" => resources.and_then(|x| x.limits.as_ref()),
        "requests" => resources.and_then(|x| x.requests.as_ref()),
        _ => return Err(format!("unsupported container resource : {}", r.resource)),
    };
    let declared = set
        .and_then(|m| m.get(name))
        .map(|q| q.0.parse::<Quantity>())
        .transpose()
        .map_err(|e| format!("resource {}: {e}", r.resource))?;
    let quantity = match (declared, kind) {
        (Some(q), _) => q,
        // An unset limit is the node's allocatable; an unset request is 0.
        (None, "limits") => allocatable
            .get(name)
            .copied()
            .unwrap_or(Quantity::from_value(0)),
        (None, _) => Quantity::from_value(0),
    };
    let divisor = r
        .divisor
        .as_ref()
        .map(|d| d.0.parse::<Quantity>())
        .transpose()
        .map_err(|e| format!("divisor: {e}"))?
        .filter(|d| !d.is_zero());
    let value = if name == "cpu" {
        let div = divisor.map(|d| d.milli_value()).unwrap_or(1000).max(1);
        ceil_div(quantity.milli_value(), div)
    } else if name == "memory" || name == "ephemeral-storage" || name.starts_with("hugepages-") {
        let div = divisor.map(|d| d.value()).unwrap_or(1).max(1);
        ceil_div(quantity.value(), div)
    } else {
        return Err(format!("unsupported container resource : {}", r.resource));
    };
    Ok(value.to_string())
}

fn ceil_div(a: i128, b: i128) -> i128 {
    let q = a / b;
    if a % b != 0 && (a > 0) == (b > 0) {
        q + 1
    } else {
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u-1",
                "labels": {"b": "two \"quoted\"", "a": "one"},
                "annotations": {"x": "line\nbreak"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i",
                "resources": {"limits": {"memory": "64Mi", "cpu": "250m"},
                              "requests": {"cpu": "100m"}}}]},
            "status": {"podIP": "10.0.0.5"}
        }))
        .unwrap()
    }

    #[test]
    fn field_values_format_as_upstream() {
        let p = pod();
        assert_eq!(field_value(&p, "metadata.name").unwrap(), "p");
        assert_eq!(field_value(&p, "metadata.uid").unwrap(), "u-1");
        assert_eq!(
            field_value(&p, "metadata.labels").unwrap(),
            "a=\"one\"\nb=\"two \\\"quoted\\\"\""
        );
        assert_eq!(
            field_value(&p, "metadata.annotations").unwrap(),
            "x=\"line\\nbreak\""
        );
        assert_eq!(field_value(&p, "metadata.labels['a']").unwrap(), "one");
        assert_eq!(field_value(&p, "status.podIP").unwrap(), "10.0.0.5");
        assert_eq!(
            field_value(&p, "spec.bogus").unwrap_err(),
            "unsupported fieldPath: spec.bogus"
        );
    }

    fn sel(resource: &str, divisor: Option<&str>) -> ResourceFieldSelector {
        ResourceFieldSelector {
            container_name: Some("c".into()),
            resource: resource.into(),
            divisor: divisor.map(|d| K8sQuantity(d.into())),
        }
    }

    #[test]
    fn resources_divide_and_round_up() {
        let p = pod();
        let mut alloc = Allocatable::new();
        alloc.insert("cpu".into(), "4".parse().unwrap());
        let cases = [
            (sel("limits.cpu", None), "1"),
            (sel("limits.cpu", Some("1m")), "250"),
            (sel("requests.cpu", Some("1m")), "100"),
            (sel("limits.memory", None), "67108864"),
            (sel("limits.memory", Some("1Mi")), "64"),
            (sel("requests.memory", None), "0"),
            (sel("limits.ephemeral-storage", None), "0"),
        ];
        for (s, want) in cases {
            assert_eq!(
                resource_value(&p, &s, &alloc).unwrap(),
                want,
                "{}",
                s.resource
            );
        }
        // A container without a CPU limit sees the node's allocatable.
        let mut q = pod();
        q.spec.as_mut().unwrap().containers[0].resources = None;
        assert_eq!(
            resource_value(&q, &sel("limits.cpu", None), &alloc).unwrap(),
            "4"
        );
    }
}
