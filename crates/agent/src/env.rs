//! A container's environment as the kubelet builds it: `envFrom` sources first (in
//! order, with their prefix), then `env` entries (later ones win), each value with
//! `$(VAR)` references to variables defined before it expanded; `valueFrom` reads
//! ConfigMaps, Secrets, the pod's own fields and the container's resources. Then
//! `$(VAR)` in command and args is expanded against the result.
//!
//! Pure: ConfigMaps and Secrets are fetched by the caller ([`references`] says which)
//! and passed in; a missing one that is not optional is a [`EnvError`] whose message is
//! upstream's (it ends up in the CreateContainerConfigError waiting message).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};
use skiff_api::quantity::Quantity;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("configmap \"{0}\" not found")]
    ConfigMapNotFound(String),
    #[error("secret \"{0}\" not found")]
    SecretNotFound(String),
    #[error("couldn't find key {key} in ConfigMap {namespace}/{name}")]
    ConfigMapKey {
        key: String,
        namespace: String,
        name: String,
    },
    #[error("couldn't find key {key} in Secret {namespace}/{name}")]
    SecretKey {
        key: String,
        namespace: String,
        name: String,
    },
    #[error("unsupported fieldPath: {0}")]
    FieldPath(String),
    #[error("unsupported container resource: {0}")]
    Resource(String),
}

/// ConfigMap and Secret names a container's environment reads.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct References {
    pub config_maps: BTreeSet<String>,
    pub secrets: BTreeSet<String>,
}

pub fn references(container: &Container) -> References {
    let mut r = References::default();
    for from in container.env_from.iter().flatten() {
        if let Some(cm) = &from.config_map_ref {
            r.config_maps.insert(cm.name.clone());
        }
        if let Some(s) = &from.secret_ref {
            r.secrets.insert(s.name.clone());
        }
    }
    for e in container.env.iter().flatten() {
        let Some(from) = &e.value_from else { continue };
        if let Some(k) = &from.config_map_key_ref {
            r.config_maps.insert(k.name.clone());
        }
        if let Some(k) = &from.secret_key_ref {
            r.secrets.insert(k.name.clone());
        }
    }
    r
}

/// What the environment may read besides the pod: fetched objects (absent = not
/// found), the pod's addresses and the node's allocatable cpu (millicores) and memory
/// (bytes), which stand in for limits a container does not set.
#[derive(Debug, Default)]
pub struct Inputs {
    pub config_maps: HashMap<String, ConfigMap>,
    pub secrets: HashMap<String, Secret>,
    pub host_ip: String,
    pub pod_ip: String,
    pub node_cpu_millis: i128,
    pub node_memory_bytes: i128,
    /// Variables for Services (see [`service_env`]); the container's own win over them.
    pub service_env: Vec<(String, String)>,
}

/// The Docker-link style variables the kubelet gives every container for Services:
/// those of the pod's namespace when `links` (enableServiceLinks, default true), and the
/// `kubernetes` Service of `default` always. Services without a cluster IP get none.
pub fn service_env(services: &[&Service], namespace: &str, links: bool) -> Vec<(String, String)> {
    let mut chosen: BTreeMap<String, &Service> = BTreeMap::new();
    for s in services {
        let ns = s.metadata.namespace.as_deref().unwrap_or("");
        let name = s.metadata.name.as_deref().unwrap_or("");
        let ip = s
            .spec
            .as_ref()
            .and_then(|sp| sp.cluster_ip.as_deref())
            .unwrap_or("");
        if ip.is_empty() || ip == "None" {
            continue;
        }
        let wanted = (links && ns == namespace) || (ns == "default" && name == "kubernetes");
        // A Service of the pod's own namespace wins over default's of the same name.
        if wanted && (ns == namespace || !chosen.contains_key(name)) {
            chosen.insert(name.to_string(), s);
        }
    }
    let mut out = Vec::new();
    for (name, s) in chosen {
        let spec = s.spec.clone().unwrap_or_default();
        let ip = spec.cluster_ip.unwrap_or_default();
        let prefix = name.to_uppercase().replace('-', "_");
        let ports = spec.ports.unwrap_or_default();
        out.push((format!("{prefix}_SERVICE_HOST"), ip.clone()));
        let Some(first) = ports.first() else { continue };
        out.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
        for p in &ports {
            if let Some(pn) = p.name.as_deref().filter(|n| !n.is_empty()) {
                out.push((
                    format!(
                        "{prefix}_SERVICE_PORT_{}",
                        pn.to_uppercase().replace('-', "_")
                    ),
                    p.port.to_string(),
                ));
            }
        }
        let proto = |p: &k8s_openapi::api::core::v1::ServicePort| {
            p.protocol.clone().unwrap_or_else(|| "TCP".into())
        };
        out.push((
            format!("{prefix}_PORT"),
            format!("{}://{ip}:{}", proto(first).to_lowercase(), first.port),
        ));
        for p in &ports {
            let pr = proto(p);
            let base = format!("{prefix}_PORT_{}_{}", p.port, pr.to_uppercase());
            out.push((
                base.clone(),
                format!("{}://{ip}:{}", pr.to_lowercase(), p.port),
            ));
            out.push((format!("{base}_PROTO"), pr.to_lowercase()));
            out.push((format!("{base}_PORT"), p.port.to_string()));
            out.push((format!("{base}_ADDR"), ip.clone()));
        }
    }
    out
}

fn config_map_value(cm: &ConfigMap, key: &str) -> Option<String> {
    if let Some(v) = cm.data.as_ref().and_then(|d| d.get(key)) {
        return Some(v.clone());
    }
    cm.binary_data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
}

fn config_map_entries(cm: &ConfigMap) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = cm.data.clone().unwrap_or_default();
    for (k, v) in cm.binary_data.iter().flatten() {
        out.insert(k.clone(), String::from_utf8_lossy(&v.0).into_owned());
    }
    out
}

fn secret_entries(s: &Secret) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = s.string_data.clone().unwrap_or_default();
    for (k, v) in s.data.iter().flatten() {
        out.insert(k.clone(), String::from_utf8_lossy(&v.0).into_owned());
    }
    out
}

/// A pod field for `fieldRef.fieldPath`.
pub fn field_value(pod: &Pod, path: &str, inputs: &Inputs) -> Result<String, EnvError> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let subscript = |prefix: &str| -> Option<String> {
        let rest = path.strip_prefix(prefix)?.strip_prefix("['")?;
        rest.strip_suffix("']").map(str::to_string)
    };
    if let Some(k) = subscript("metadata.labels") {
        return Ok(meta
            .labels
            .as_ref()
            .and_then(|l| l.get(&k))
            .cloned()
            .unwrap_or_default());
    }
    if let Some(k) = subscript("metadata.annotations") {
        return Ok(meta
            .annotations
            .as_ref()
            .and_then(|l| l.get(&k))
            .cloned()
            .unwrap_or_default());
    }
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => inputs.host_ip.clone(),
        "status.podIP" | "status.podIPs" => inputs.pod_ip.clone(),
        _ => return Err(EnvError::FieldPath(path.to_string())),
    })
}

/// `resourceFieldRef`: the container's request or limit in units of `divisor`, rounded
/// up; an unset limit is the node's allocatable amount, an unset request is 0 (cpu
/// requests fall back to the limit, as defaulting does).
pub fn resource_value(
    container: &Container,
    resource: &str,
    divisor: Option<&str>,
    inputs: &Inputs,
) -> Result<String, EnvError> {
    let res = container.resources.as_ref();
    let get = |kind: &str, name: &str| -> Option<Quantity> {
        let map = match kind {
            "limits" => res.and_then(|r| r.limits.as_ref()),
            _ => res.and_then(|r| r.requests.as_ref()),
        };
        map.and_then(|m| m.get(name)).and_then(|q| q.0.parse().ok())
    };
    let (kind, name) = resource
        .split_once('.')
        .ok_or_else(|| EnvError::Resource(resource.to_string()))?;
    let nanos: i128 = match (kind, name) {
        ("limits" | "requests", "cpu" | "memory" | "ephemeral-storage") => {
            let node_default = match name {
                "cpu" => inputs.node_cpu_millis * 1_000_000,
                "memory" => inputs.node_memory_bytes * 1_000_000_000,
                _ => 0,
            };
            match get(kind, name) {
                Some(q) => q.nanos(),
                None if kind == "limits" => node_default,
                None => get("limits", name).map(|q| q.nanos()).unwrap_or(0),
            }
        }
        _ => return Err(EnvError::Resource(resource.to_string())),
    };
    let divisor: i128 = divisor
        .filter(|d| !d.is_empty())
        .and_then(|d| d.parse::<Quantity>().ok())
        .map(|q| q.nanos())
        .filter(|n| *n > 0)
        .unwrap_or(1_000_000_000);
    // Round up, as upstream's ExtractContainerResourceValue does.
    let value = (nanos + divisor - 1).div_euclid(divisor);
    Ok(value.to_string())
}

/// Builds the container's environment, in order, without duplicates (a later
/// definition replaces an earlier one in place).
pub fn resolve(
    pod: &Pod,
    container: &Container,
    inputs: &Inputs,
) -> Result<Vec<(String, String)>, EnvError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let mut out: Vec<(String, String)> = inputs.service_env.clone();
    let set = |out: &mut Vec<(String, String)>, k: String, v: String| {
        if let Some(slot) = out.iter_mut().find(|(name, _)| *name == k) {
            slot.1 = v;
        } else {
            out.push((k, v));
        }
    };
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            match inputs.config_maps.get(&r.name) {
                Some(cm) => {
                    for (k, v) in config_map_entries(cm) {
                        set(&mut out, format!("{prefix}{k}"), v);
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(EnvError::ConfigMapNotFound(r.name.clone())),
            }
        }
        if let Some(r) = &from.secret_ref {
            match inputs.secrets.get(&r.name) {
                Some(s) => {
                    for (k, v) in secret_entries(s) {
                        set(&mut out, format!("{prefix}{k}"), v);
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(EnvError::SecretNotFound(r.name.clone())),
            }
        }
    }
    for e in container.env.iter().flatten() {
        let value = if let Some(from) = &e.value_from {
            if let Some(r) = &from.config_map_key_ref {
                match inputs.config_maps.get(&r.name) {
                    Some(cm) => match config_map_value(cm, &r.key) {
                        Some(v) => v,
                        None if r.optional == Some(true) => continue,
                        None => {
                            return Err(EnvError::ConfigMapKey {
                                key: r.key.clone(),
                                namespace,
                                name: r.name.clone(),
                            })
                        }
                    },
                    None if r.optional == Some(true) => continue,
                    None => return Err(EnvError::ConfigMapNotFound(r.name.clone())),
                }
            } else if let Some(r) = &from.secret_key_ref {
                match inputs.secrets.get(&r.name) {
                    Some(s) => match secret_entries(s).remove(&r.key) {
                        Some(v) => v,
                        None if r.optional == Some(true) => continue,
                        None => {
                            return Err(EnvError::SecretKey {
                                key: r.key.clone(),
                                namespace,
                                name: r.name.clone(),
                            })
                        }
                    },
                    None if r.optional == Some(true) => continue,
                    None => return Err(EnvError::SecretNotFound(r.name.clone())),
                }
            } else if let Some(f) = &from.field_ref {
                field_value(pod, &f.field_path, inputs)?
            } else if let Some(r) = &from.resource_field_ref {
                let target = match r.container_name.as_deref().filter(|n| !n.is_empty()) {
                    Some(name) => pod
                        .spec
                        .iter()
                        .flat_map(|s| {
                            s.containers
                                .iter()
                                .chain(s.init_containers.iter().flatten())
                        })
                        .find(|c| c.name == name)
                        .unwrap_or(container),
                    None => container,
                };
                resource_value(
                    target,
                    &r.resource,
                    r.divisor.as_ref().map(|d| d.0.as_str()),
                    inputs,
                )?
            } else {
                String::new()
            }
        } else {
            let defined: HashMap<&str, &str> =
                out.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            expand(e.value.as_deref().unwrap_or_default(), |name| {
                defined.get(name).map(|v| v.to_string())
            })
        };
        set(&mut out, e.name.clone(), value);
    }
    Ok(out)
}

/// Expands `$(VAR)` references with `lookup`: `$$` is a literal `$`, an unknown or
/// unterminated reference is kept as written.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match lookup(name) {
                        Some(v) => out.push_str(&v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push_str(&rest[i..]);
                    rest = "";
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Command and args with `$(VAR)` expanded against the container's environment.
pub fn expand_command(
    container: &Container,
    env: &[(String, String)],
) -> (Vec<String>, Vec<String>) {
    let map: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let lookup = |n: &str| map.get(n).map(|v| v.to_string());
    let command = container
        .command
        .iter()
        .flatten()
        .map(|c| expand(c, lookup))
        .collect();
    let args = container
        .args
        .iter()
        .flatten()
        .map(|c| expand(c, lookup))
        .collect();
    (command, args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(container: serde_json::Value) -> (Pod, Container) {
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u-1",
                          "labels": {"app": "web"}, "annotations": {"a": "b"}},
            "spec": {"nodeName": "n1", "serviceAccountName": "sa", "containers": [container]},
        }))
        .unwrap();
        let c = p.spec.as_ref().unwrap().containers[0].clone();
        (p, c)
    }

    fn inputs() -> Inputs {
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": "cfg"}, "data": {"color": "blue", "size": "L"}
        }))
        .unwrap();
        let s: Secret = serde_json::from_value(json!({
            "metadata": {"name": "sec"}, "data": {"password": "aHVudGVyMg=="}
        }))
        .unwrap();
        Inputs {
            config_maps: [("cfg".to_string(), cm)].into(),
            secrets: [("sec".to_string(), s)].into(),
            host_ip: "192.0.2.2".into(),
            pod_ip: "10.42.0.5".into(),
            node_cpu_millis: 2000,
            node_memory_bytes: 4 << 30,
            service_env: Vec::new(),
        }
    }

    #[test]
    fn expansion_cases() {
        let look = |n: &str| match n {
            "A" => Some("x".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        let cases = [
            ("plain", "plain"),
            ("$(A)", "x"),
            ("pre-$(A)-post", "pre-x-post"),
            ("$(A)$(A)", "xx"),
            ("$$(A)", "$(A)"),
            ("$(UNKNOWN)", "$(UNKNOWN)"),
            ("$(EMPTY)!", "!"),
            ("$(A", "$(A"),
            ("a$b", "a$b"),
            ("$", "$"),
            ("$$", "$"),
        ];
        for (input, want) in cases {
            assert_eq!(expand(input, look), want, "{input}");
        }
    }

    #[test]
    fn env_from_then_env_with_references_in_order() {
        let (p, c) = pod(json!({
            "name": "c",
            "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}, {"secretRef": {"name": "sec"}}],
            "env": [
                {"name": "GREETING", "value": "hello $(CFG_color)"},
                {"name": "CFG_size", "value": "XL"},
                {"name": "KEY", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "color"}}},
                {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "password"}}},
                {"name": "LATER", "value": "$(NOT_YET)"},
                {"name": "NOT_YET", "value": "v"},
            ],
            "command": ["echo", "$(GREETING)"],
            "args": ["$(PW)", "$$(PW)"],
        }));
        let env = resolve(&p, &c, &inputs()).unwrap();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("CFG_color"), Some("blue"));
        assert_eq!(get("CFG_size"), Some("XL"));
        assert_eq!(get("password"), Some("hunter2"));
        assert_eq!(get("GREETING"), Some("hello blue"));
        assert_eq!(get("KEY"), Some("blue"));
        assert_eq!(get("PW"), Some("hunter2"));
        assert_eq!(get("LATER"), Some("$(NOT_YET)"));
        assert_eq!(env.iter().filter(|(n, _)| n == "CFG_size").count(), 1);
        let (cmd, args) = expand_command(&c, &env);
        assert_eq!(cmd, vec!["echo", "hello blue"]);
        assert_eq!(args, vec!["hunter2", "$(PW)"]);
    }

    #[test]
    fn missing_sources_fail_with_upstream_messages_unless_optional() {
        let cases = [
            (
                json!({"name": "X", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k"}}}),
                Some("configmap \"nope\" not found"),
            ),
            (
                json!({"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}}),
                Some("couldn't find key k in ConfigMap ns/cfg"),
            ),
            (
                json!({"name": "X", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}),
                Some("secret \"nope\" not found"),
            ),
            (
                json!({"name": "X", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "k"}}}),
                Some("couldn't find key k in Secret ns/sec"),
            ),
            (
                json!({"name": "X", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": true}}}),
                None,
            ),
            (
                json!({"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k", "optional": true}}}),
                None,
            ),
        ];
        for (entry, want) in cases {
            let (p, c) = pod(json!({"name": "c", "env": [entry]}));
            let got = resolve(&p, &c, &inputs());
            match want {
                Some(msg) => assert_eq!(got.unwrap_err().to_string(), msg),
                None => assert!(got.unwrap().is_empty()),
            }
        }
        let (p, c) = pod(json!({"name": "c", "envFrom": [{"configMapRef": {"name": "gone"}}]}));
        assert_eq!(
            resolve(&p, &c, &inputs()).unwrap_err().to_string(),
            "configmap \"gone\" not found"
        );
        let (p, c) = pod(
            json!({"name": "c", "envFrom": [{"secretRef": {"name": "gone", "optional": true}}]}),
        );
        assert!(resolve(&p, &c, &inputs()).unwrap().is_empty());
    }

    #[test]
    fn field_and_resource_references() {
        let (p, c) = pod(json!({
            "name": "c",
            "resources": {"limits": {"memory": "64Mi", "cpu": "250m"}},
            "env": [
                {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
                {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {"name": "ANN", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['a']"}}},
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
                {"name": "HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
                {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                {"name": "CPUM", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}}},
                {"name": "EPH", "valueFrom": {"resourceFieldRef": {"resource": "requests.ephemeral-storage"}}},
            ],
        }));
        let env = resolve(&p, &c, &inputs()).unwrap();
        let want = [
            ("NAME", "p"),
            ("NS", "ns"),
            ("UID", "u-1"),
            ("APP", "web"),
            ("ANN", "b"),
            ("NODE", "n1"),
            ("SA", "sa"),
            ("HOST", "192.0.2.2"),
            ("IP", "10.42.0.5"),
            ("MEM", "64"),
            ("CPU", "1"),
            ("CPUM", "250"),
            ("EPH", "0"),
        ];
        for (k, v) in want {
            assert_eq!(
                env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str()),
                Some(v),
                "{k}"
            );
        }
        let (p, c) = pod(json!({"name": "c", "env": [
            {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory"}}}]}));
        assert_eq!(
            resolve(&p, &c, &inputs()).unwrap()[0].1,
            (4u64 << 30).to_string()
        );
        let (p, c) = pod(json!({"name": "c", "env": [
            {"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.bogus"}}}]}));
        assert!(resolve(&p, &c, &inputs()).is_err());
    }

    #[test]
    fn services_give_docker_link_variables_and_the_containers_own_win() {
        let svc = |ns: &str, name: &str, ip: &str| -> Service {
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": ns},
                "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": 80}, {"port": 53, "protocol": "UDP"}]},
            }))
            .unwrap()
        };
        let all = [
            svc("default", "kubernetes", "10.43.0.1"),
            svc("ns", "my-svc", "10.43.0.5"),
            svc("ns", "headless", "None"),
            svc("other", "elsewhere", "10.43.0.9"),
        ];
        let refs: Vec<&Service> = all.iter().collect();
        let env = service_env(&refs, "ns", true);
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("KUBERNETES_SERVICE_HOST"), Some("10.43.0.1"));
        assert_eq!(get("MY_SVC_SERVICE_HOST"), Some("10.43.0.5"));
        assert_eq!(get("MY_SVC_SERVICE_PORT"), Some("80"));
        assert_eq!(get("MY_SVC_SERVICE_PORT_HTTP"), Some("80"));
        assert_eq!(get("MY_SVC_PORT"), Some("tcp://10.43.0.5:80"));
        assert_eq!(get("MY_SVC_PORT_53_UDP"), Some("udp://10.43.0.5:53"));
        assert_eq!(get("MY_SVC_PORT_53_UDP_PROTO"), Some("udp"));
        assert_eq!(get("MY_SVC_PORT_80_TCP_ADDR"), Some("10.43.0.5"));
        assert_eq!(get("HEADLESS_SERVICE_HOST"), None);
        assert_eq!(get("ELSEWHERE_SERVICE_HOST"), None);
        let no_links = service_env(&refs, "ns", false);
        assert!(no_links.iter().all(|(k, _)| k.starts_with("KUBERNETES_")));

        let (p, c) =
            pod(json!({"name": "c", "env": [{"name": "MY_SVC_SERVICE_HOST", "value": "mine"}]}));
        let mut i = inputs();
        i.service_env = env;
        let out = resolve(&p, &c, &i).unwrap();
        let mine: Vec<_> = out
            .iter()
            .filter(|(k, _)| k == "MY_SVC_SERVICE_HOST")
            .collect();
        assert_eq!(mine.len(), 1);
        assert_eq!(mine[0].1, "mine");
    }

    #[test]
    fn references_list_every_config_map_and_secret() {
        let (_, c) = pod(json!({"name": "c",
            "envFrom": [{"configMapRef": {"name": "a"}}, {"secretRef": {"name": "s1"}}],
            "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "b", "key": "k"}}},
                    {"name": "Y", "valueFrom": {"secretKeyRef": {"name": "s2", "key": "k"}}}]}));
        let r = references(&c);
        assert_eq!(r.config_maps, ["a".to_string(), "b".to_string()].into());
        assert_eq!(r.secrets, ["s1".to_string(), "s2".to_string()].into());
    }
}
