//! Hooks of the small configuration and bookkeeping types: ServiceAccount, Endpoints,
//! LimitRange, ResourceQuota (core/v1), Lease (coordination.k8s.io), EndpointSlice
//! (discovery.k8s.io) and PriorityClass (scheduling.k8s.io). Defaults, validation and
//! columns as upstream has them.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};
use skiff_api::quantity::Quantity;
use skiff_api::validation::{check, dns1123_label, dns1123_subdomain};
use skiff_api::{meta, FieldError, FieldErrors};

use super::common::{
    array_at, canonicalize_quantities, created_at_columns, created_at_row, immutable, name_cell,
    port_number, protocol, quantities, set_default, str_at, subdomain_name,
};
use super::{Column, Context, Hooks};
use crate::table::age;

const IP_MSG: &str = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";

pub struct ServiceAccounts;

impl Hooks for ServiceAccounts {
    fn validate(&self, obj: &Value, _ctx: &Context<'_>) -> FieldErrors {
        subdomain_name(obj)
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name_column(),
            Column::new("Secrets", "string", "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use."),
            Column::age_column(),
        ]
    }

    fn row(&self, obj: &Value) -> Vec<Value> {
        vec![
            name_cell(obj),
            json!(array_at(obj, "/secrets").len()),
            json!(age(obj)),
        ]
    }
}

pub struct Endpoints;

/// Upstream's endpoints cell: up to three `ip:port`, then `+ N more...`.
fn format_endpoints(obj: &Value) -> String {
    const MAX: usize = 3;
    let subsets = array_at(obj, "/subsets");
    if subsets.is_empty() {
        return "<none>".into();
    }
    let mut list = Vec::new();
    let mut count = 0;
    for ss in subsets {
        let addresses: Vec<&str> = array_at(ss, "/addresses")
            .iter()
            .map(|a| str_at(a, "/ip"))
            .collect();
        let ports = array_at(ss, "/ports");
        if ports.is_empty() {
            count += addresses.len();
            list.extend(addresses.iter().map(|a| a.to_string()));
            continue;
        }
        for port in ports {
            count += addresses.len();
            let n = port.get("port").and_then(Value::as_i64).unwrap_or(0);
            for a in &addresses {
                list.push(if a.contains(':') {
                    format!("[{a}]:{n}")
                } else {
                    format!("{a}:{n}")
                });
            }
        }
    }
    let more = list.len() > MAX;
    list.truncate(MAX);
    let s = list.join(",");
    if more {
        format!("{s} + {} more...", count - MAX)
    } else {
        s
    }
}

impl Hooks for Endpoints {
    fn prepare_create(&self, obj: &mut Value, _ctx: &Context<'_>) {
        default_endpoints(obj);
    }

    fn prepare_update(&self, new: &mut Value, _old: &Value) {
        default_endpoints(new);
    }

    fn validate(&self, obj: &Value, _ctx: &Context<'_>) -> FieldErrors {
        let mut errs = subdomain_name(obj);
        for (i, ss) in array_at(obj, "/subsets").iter().enumerate() {
            let p = format!("subsets[{i}]");
            for list in ["addresses", "notReadyAddresses"] {
                for (j, a) in array_at(ss, &format!("/{list}")).iter().enumerate() {
                    let ip = str_at(a, "/ip");
                    if ip.parse::<std::net::IpAddr>().is_err() {
                        errs.push(FieldError::invalid(
                            format!("{p}.{list}[{j}].ip"),
                            &json!(ip),
                            IP_MSG,
                        ));
                    }
                }
            }
            let ports = array_at(ss, "/ports");
            for (j, port) in ports.iter().enumerate() {
                let pp = format!("{p}.ports[{j}]");
                let name = str_at(port, "/name");
                if name.is_empty() {
                    if ports.len() > 1 {
                        errs.push(FieldError::required(format!("{pp}.name"), ""));
                    }
                } else {
                    errs.extend(check(&format!("{pp}.name"), name, dns1123_label(name)));
                }
                port_number(
                    port.get("port").unwrap_or(&Value::Null),
                    &format!("{pp}.port"),
                    &mut errs,
                );
                protocol(port, &format!("{pp}.protocol"), &mut errs);
            }
        }
        errs
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name_column(),
            Column::new("Endpoints", "string", "The set of all endpoints is the union of all subsets. Addresses are placed into subsets according to the IPs they share. A single address with multiple ports, some of which are ready and some of which are not (because they come from different containers) will result in the address being displayed in different subsets for the different ports. No address will appear in both Addresses and NotReadyAddresses in the same subset. Sets of addresses and ports that comprise a service."),
            Column::age_column(),
        ]
    }

    fn row(&self, obj: &Value) -> Vec<Value> {
        vec![
            name_cell(obj),
            json!(format_endpoints(obj)),
            json!(age(obj)),
        ]
    }
}

fn default_endpoints(obj: &mut Value) {
    if let Some(subsets) = obj.get_mut("subsets").and_then(Value::as_array_mut) {
        for ss in subsets {
            if let Some(ports) = ss.get_mut("ports").and_then(Value::as_array_mut) {
                for port in ports {
                    set_default(port, "protocol", json!("TCP"));
                }
            }
        }
    }
}

pub struct LimitRanges;

/// Upstream's container defaults: default ← max, defaultRequest ← default, then min.
fn default_limit_range(obj: &mut Value) {
    let Some(limits) = obj
        .pointer_mut("/spec/limits")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for item in limits {
        for key in ["max", "min", "default", "defaultRequest"] {
            canonicalize_quantities(item.get_mut(key));
        }
        if item.get("type").and_then(Value::as_str) != Some("Container") {
            continue;
        }
        let fill = |item: &mut Value, from: &str, to: &str| {
            let source = item.get(from).and_then(Value::as_object).cloned();
            set_default(item, to, json!({}));
            if let (Some(source), Some(target)) = (source, item[to].as_object_mut()) {
                for (k, v) in source {
                    target.entry(k).or_insert(v);
                }
            }
        };
        fill(item, "max", "default");
        fill(item, "default", "defaultRequest");
        fill(item, "min", "defaultRequest");
        for key in ["default", "defaultRequest"] {
            if item[key].as_object().is_some_and(|m| m.is_empty()) {
                if let Some(o) = item.as_object_mut() {
                    o.remove(key);
                }
            }
        }
    }
}

impl Hooks for LimitRanges {
    fn prepare_create(&self, obj: &mut Value, _ctx: &Context<'_>) {
        default_limit_range(obj);
    }

    fn prepare_update(&self, new: &mut Value, _old: &Value) {
        default_limit_range(new);
    }

    fn validate(&self, obj: &Value, _ctx: &Context<'_>) -> FieldErrors {
        let mut errs = subdomain_name(obj);
        let mut types = BTreeSet::new();
        for (i, item) in array_at(obj, "/spec/limits").iter().enumerate() {
            let p = format!("spec.limits[{i}]");
            let kind = str_at(item, "/type");
            if !types.insert(kind.to_string()) {
                errs.push(FieldError::duplicate(format!("{p}.type"), &json!(kind)));
            }
            let mut parsed: BTreeMap<&str, BTreeMap<String, Quantity>> = BTreeMap::new();
            for key in [
                "max",
                "min",
                "default",
                "defaultRequest",
                "maxLimitRequestRatio",
            ] {
                let qs = quantities(item.get(key), &format!("{p}.{key}"), true, &mut errs);
                parsed.insert(key, qs.into_iter().collect());
            }
            if kind == "Pod" {
                for key in ["default", "defaultRequest"] {
                    if !parsed[key].is_empty() {
                        errs.push(FieldError::forbidden(
                            format!("{p}.{key}"),
                            "may not be specified when `type` is 'Pod'",
                        ));
                    }
                }
            }
            let resources: BTreeSet<&String> = parsed.values().flat_map(|m| m.keys()).collect();
            for r in resources {
                let get = |key: &str| parsed[key].get(r);
                let bad = |key: &str, q: &Quantity, msg: String| {
                    FieldError::invalid(format!("{p}.{key}[{r}]"), &json!(q.to_string()), msg)
                };
                let (min, max, def, req) = (
                    get("min"),
                    get("max"),
                    get("default"),
                    get("defaultRequest"),
                );
                if let (Some(lo), Some(hi)) = (min, max) {
                    if lo > hi {
                        errs.push(bad(
                            "min",
                            lo,
                            format!("min value {lo} is greater than max value {hi}"),
                        ));
                    }
                }
                if let (Some(lo), Some(r)) = (min, req) {
                    if lo > r {
                        errs.push(bad(
                            "defaultRequest",
                            r,
                            format!("min value {lo} is greater than default request value {r}"),
                        ));
                    }
                }
                if let (Some(r), Some(hi)) = (req, max) {
                    if r > hi {
                        errs.push(bad(
                            "defaultRequest",
                            r,
                            format!("default request value {r} is greater than max value {hi}"),
                        ));
                    }
                }
                if let (Some(r), Some(d)) = (req, def) {
                    if r > d {
                        errs.push(bad(
                            "defaultRequest",
                            r,
                            format!(
                                "default request value {r} is greater than default limit value {d}"
                            ),
                        ));
                    }
                }
                if let (Some(lo), Some(d)) = (min, def) {
                    if lo > d {
                        errs.push(bad(
                            "default",
                            lo,
                            format!("min value {lo} is greater than default value {d}"),
                        ));
                    }
                }
                if let (Some(d), Some(hi)) = (def, max) {
                    if d > hi {
                        errs.push(bad(
                            "default",
                            hi,
                            format!("default value {d} is greater than max value {hi}"),
                        ));
                    }
                }
            }
        }
        errs
    }

    fn columns(&self) -> Vec<Column> {
        created_at_columns()
    }

    fn row(&self, obj: &Value) -> Vec<Value> {
        created_at_row(obj)
    }
}

pub struct ResourceQuotas;

impl Hooks for ResourceQuotas {
    fn prepare_create(&self, obj: &mut Value, _ctx: &Context<'_>) {
        canonicalize_quantities(obj.pointer_mut("/spec/hard"));
    }

    fn prepare_update(&self, new: &mut Value, _old: &Value) {
        canonicalize_quantities(new.pointer_mut("/spec/hard"));
    }

    fn validate(&self, obj: &Value, _ctx: &Context<'_>) -> FieldErrors {
        let mut errs = subdomain_name(obj);
        quantities(obj.pointer("/spec/hard"), "spec.hard", true, &mut errs);
        quantities(obj.pointer("/status/hard"), "status.hard", true, &mut errs);
        quantities(obj.pointer("/status/used"), "status.used", true, &mut errs);
        const SCOPES: &[&str] = &[
            "BestEffort",
            "CrossNamespacePodAffinity",
            "NotBestEffort",
            "NotTerminating",
            "PriorityClass",
            "Terminating",
            "VolumeAttributesClass",
        ];
        for (i, s) in array_at(obj, "/spec/scopes").iter().enumerate() {
            if !s.as_str().is_some_and(|s| SCOPES.contains(&s)) {
                errs.push(FieldError::not_supported(
                    format!("spec.scopes[{i}]"),
                    s,
                    SCOPES,
                ));
            }
        }
        errs
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name_column(),
            Column::age_column(),
            Column::new("Request", "string", "Request represents a minimum amount of cpu/memory that a container may consume."),
            Column::new("Limit", "string", "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node."),
        ]
    }

    fn row(&self, obj: &Value) -> Vec<Value> {
        let hard = obj.pointer("/status/hard").and_then(Value::as_object);
        let used = obj.pointer("/status/used");
        let (mut requests, mut limits) = (Vec::new(), Vec::new());
        for (name, h) in hard.into_iter().flatten() {
            let u = used
                .and_then(|u| u.get(name))
                .and_then(Value::as_str)
                .unwrap_or("0");
            let cell = format!(
                "{name}: {}/{}",
                super::common::canonical(u),
                super::common::canonical(h.as_str().unwrap_or(""))
            );
            if name.split('.').next() == Some("limits") && name.contains('.') {
                limits.push(cell);
            } else {
                requests.push(cell);
            }
        }
        vec![
            name_cell(obj),
            json!(age(obj)),
            json!(requests.join(", ")),
            json!(limits.join(", ")),
        ]
    }
}

pub struct Leases;

impl Hooks for Leases {
    fn validate(&self, obj: &Value, _ctx: &Context<'_>) -> FieldErrors {
        let mut errs = subdomain_name(obj);
        if let Some(d) = obj.pointer("/spec/leaseDurationSeconds") {
            if d.as_i64().is_some_and(|d| d <= 0) {
                errs.push(FieldError::invalid(
                    "spec.leaseDurationSeconds",
                    d,
                    "must be greater than 0",
                ));
            }
        }
        if let Some(t) = obj.pointer("/spec/leaseTransitions") {
            if t.as_i64().is_some_and(|t| t < 0) {
                errs.push(FieldError::invalid(
                    "spec.leaseTransitions",
                    t,
                    "must be greater than or equal to 0",
                ));
            }
        }
        errs
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name_column(),
            Column::new("Holder", "string", "holderIdentity contains the identity of the holder of a current lease. If Coordinated Leader Election is used, the holder identity must be equal to the elected LeaseCandidate.metadata.name field."),
            Column::age_column(),
        ]
    }

    fn row(&self, obj: &Value) -> Vec<Value> {
        vec![
            name_cell(obj),
            json!(str_at(obj, "/spec/holderIdentity")),
            json!(age(obj)),
        ]
    }
}

pub struct EndpointSlices;

const ADDRESS_TYPES: &[&str] = &["FQDN", "IPv4", "IPv6"];

fn default_endpoint_slice(obj: &mut Value) {
    if let Some(ports) = obj.get_mut("ports").and_then(Value::as_array_mut) {
        for port in ports {
            set_default(port, "protocol", json!("TCP"));
            set_default(port, "name", json!(""));
        }
    }
}

/// Upstream's list cells: up to three items, then `+ N more...`; `<unset>` when empty.
fn list_with_more(items: Vec<String>) -> String {
    const MAX: usize = 3;
    let count = items.len();
    let shown = items.into_iter().take(MAX).collect::<Vec<_>>().join(",");
    if count > MAX {
        format!("{shown} + {} more...", count - MAX)
    } else if shown.is_empty() {
        "<unset>".into()
    } else {
        shown
    }
}

impl Hooks for EndpointSlices {
    fn prepare_create(&self, obj: &mut Value, _ctx: &Context<'_>) {
        default_endpoint_slice(obj);
    }

    fn prepare_update(&self, new: &mut Value, _old: &Value) {
        default_endpoint_slice(new);
    }

    fn validate(&self, obj: &Value, _ctx: &Context<'_>) -> FieldErrors {
        let mut errs = subdomain_name(obj);
        let address_type = str_at(obj, "/addressType");
        if address_type.is_empty() {
            errs.push(FieldError::required("addressType", ""));
        } else if !ADDRESS_TYPES.contains(&address_type) {
            errs.push(FieldError::not_supported(
                "addressType",
                &json!(address_type),
                ADDRESS_TYPES,
            ));
        }
        let endpoints = array_at(obj, "/endpoints");
        if endpoints.len() > 1000 {
            errs.push(FieldError::too_many("endpoints", endpoints.len(), 1000));
        }
        for (i, ep) in endpoints.iter().enumerate() {
            let p = format!("endpoints[{i}].addresses");
            let addresses = array_at(ep, "/addresses");
            if addresses.is_empty() {
                errs.push(FieldError::required(&p, "must contain at least 1 address"));
            } else if addresses.len() > 100 {
                errs.push(FieldError::too_many(&p, addresses.len(), 100));
            }
            for (j, a) in addresses.iter().enumerate() {
                let a = a.as_str().unwrap_or("");
                let path = format!("{p}[{j}]");
                match address_type {
                    "IPv4" if a.parse::<std::net::Ipv4Addr>().is_err() => errs.push(
                        FieldError::invalid(path, &json!(a), "must be a valid IPv4 address"),
                    ),
                    "IPv6" if a.parse::<std::net::Ipv6Addr>().is_err() => errs.push(
                        FieldError::invalid(path, &json!(a), "must be a valid IPv6 address"),
                    ),
                    "FQDN" => errs.extend(check(&path, a, dns1123_subdomain(a))),
                    _ => {}
                }
            }
            if let Some(h) = ep.get("hostname").and_then(Value::as_str) {
                errs.extend(check(
                    &format!("endpoints[{i}].hostname"),
                    h,
                    dns1123_label(h),
                ));
            }
        }
        let ports = array_at(obj, "/ports");
        if ports.len() > 100 {
            errs.push(FieldError::too_many("ports", ports.len(), 100));
        }
        let mut names = BTreeSet::new();
        for (i, port) in ports.iter().enumerate() {
            let p = format!("ports[{i}]");
            let name = str_at(port, "/name");
            if !name.is_empty() {
                errs.extend(check(&format!("{p}.name"), name, dns1123_label(name)));
            }
            if !names.insert(name) {
                errs.push(FieldError::duplicate(format!("{p}.name"), &json!(name)));
            }
            if let Some(n) = port.get("port").filter(|n| !n.is_null()) {
                port_number(n, &format!("{p}.port"), &mut errs);
            }
            protocol(port, &format!("{p}.protocol"), &mut errs);
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value, ctx: &Context<'_>) -> FieldErrors {
        let mut errs = self.validate(new, ctx);
        immutable(new, old, "/addressType", "addressType", &mut errs);
        errs
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name_column(),
            Column::new("AddressType", "string", "addressType specifies the type of address carried by this EndpointSlice. All addresses in this slice must be the same type. This field is immutable after creation. The following address types are currently supported: * IPv4: Represents an IPv4 Address. * IPv6: Represents an IPv6 Address. * FQDN: Represents a Fully Qualified Domain Name. (Deprecated) The EndpointSlice controller only generates, and kube-proxy only processes, slices of addressType \"IPv4\" and \"IPv6\". No semantics are defined for the \"FQDN\" type."),
            Column::new("Ports", "string", "ports specifies the list of network ports exposed by each endpoint in this slice. Each port must have a unique name. Each slice may include a maximum of 100 ports. Services always have at least 1 port, so EndpointSlices generated by the EndpointSlice controller will likewise always have at least 1 port. EndpointSlices used for other purposes may have an empty ports list."),
            Column::new("Endpoints", "string", "endpoints is a list of unique endpoints in this slice. Each slice may include a maximum of 1000 endpoints."),
            Column::age_column(),
        ]
    }

    fn row(&self, obj: &Value) -> Vec<Value> {
        let ports = array_at(obj, "/ports")
            .iter()
            .map(|p| match (p["port"].as_i64(), p["name"].as_str()) {
                (Some(n), _) => n.to_string(),
                (None, Some(name)) => name.to_string(),
                (None, None) => "*".into(),
            })
            .collect();
        let addresses = array_at(obj, "/endpoints")
            .iter()
            .flat_map(|e| array_at(e, "/addresses"))
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect();
        vec![
            name_cell(obj),
            json!(str_at(obj, "/addressType")),
            json!(list_with_more(ports)),
            json!(list_with_more(addresses)),
            json!(age(obj)),
        ]
    }
}

pub struct PriorityClasses;

/// Above this, a priority is reserved for the system classes.
const HIGHEST_USER_PRIORITY: i64 = 1_000_000_000;
const SYSTEM_CLASSES: &[(&str, i64)] = &[
    ("system-node-critical", 2_000_001_000),
    ("system-cluster-critical", 2_000_000_000),
];

impl Hooks for PriorityClasses {
    fn prepare_create(&self, obj: &mut Value, _ctx: &Context<'_>) {
        set_default(obj, "preemptionPolicy", json!("PreemptLowerPriority"));
    }

    fn prepare_update(&self, new: &mut Value, _old: &Value) {
        set_default(new, "preemptionPolicy", json!("PreemptLowerPriority"));
    }

    fn validate(&self, obj: &Value, _ctx: &Context<'_>) -> FieldErrors {
        let mut errs = subdomain_name(obj);
        let name = meta::name(obj);
        let value = obj.get("value").and_then(Value::as_i64).unwrap_or(0);
        if name.starts_with("system-") {
            let known = SYSTEM_CLASSES.iter().find(|(n, _)| *n == name);
            let problem = match known {
                None => Some(format!("{name} is not a known system priority class")),
                Some((_, v)) if *v != value => {
                    Some(format!("value of {name} PriorityClass must be {v}"))
                }
                Some(_) => None,
            };
            if let Some(problem) = problem {
                errs.push(FieldError::forbidden(
                    "metadata.name",
                    format!("priority class names with 'system-' prefix are reserved for system use only. error: {problem}"),
                ));
            }
        } else if value > HIGHEST_USER_PRIORITY {
            errs.push(FieldError::forbidden(
                "value",
                format!(
                    "maximum allowed value of a user defined priority is {HIGHEST_USER_PRIORITY}"
                ),
            ));
        }
        if let Some(policy) = obj.get("preemptionPolicy").filter(|p| !p.is_null()) {
            if !matches!(policy.as_str(), Some("PreemptLowerPriority" | "Never")) {
                errs.push(FieldError::not_supported(
                    "preemptionPolicy",
                    policy,
                    &["Never", "PreemptLowerPriority"],
                ));
            }
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value, ctx: &Context<'_>) -> FieldErrors {
        let mut errs = self.validate(new, ctx);
        if new.get("value") != old.get("value") {
            errs.push(FieldError::forbidden(
                "value",
                "may not be changed in an update.",
            ));
        }
        immutable(new, old, "/preemptionPolicy", "preemptionPolicy", &mut errs);
        errs
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name_column(),
            Column::new("Value", "integer", "value represents the integer value of this priority class. This is the actual priority that pods receive when they have the name of this class in their pod spec."),
            Column::new("Global-Default", "boolean", "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class. Only one PriorityClass can be marked as `globalDefault`. However, if more than one PriorityClasses exists with their `globalDefault` field set to true, the smallest value of such global default PriorityClasses will be used as the default priority."),
            Column::age_column(),
            Column::new("PreemptionPolicy", "string", "preemptionPolicy is the Policy for preempting pods with lower priority. One of Never, PreemptLowerPriority. Defaults to PreemptLowerPriority if unset."),
        ]
    }

    fn row(&self, obj: &Value) -> Vec<Value> {
        vec![
            name_cell(obj),
            json!(obj.get("value").and_then(Value::as_i64).unwrap_or(0)),
            json!(obj
                .get("globalDefault")
                .and_then(Value::as_bool)
                .unwrap_or(false)),
            json!(age(obj)),
            json!(str_at(obj, "/preemptionPolicy")),
        ]
    }
}

/// Upstream's `IsConfigMapKey`: the keys of ConfigMap and Secret data.
fn config_key_problems(key: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if key.len() > 253 {
        errs.push("must be no more than 253 characters".to_string());
    }
    if key.is_empty()
        || !key
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
    {
        errs.push("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')".to_string());
    }
    match key {
        "." => errs.push("must not be '.'".into()),
        ".." => errs.push("must not be '..'".into()),
        k if k.starts_with("..") => errs.push("must not start with '..'".into()),
        _ => {}
    }
    errs
}

/// The most a ConfigMap's or Secret's data may hold.
const MAX_DATA_BYTES: usize = 1024 * 1024;

fn decoded_len(v: &Value) -> usize {
    use base64::Engine;
    let s = v.as_str().unwrap_or("");
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_or(s.len(), |b| b.len())
}

/// ConfigMap content: valid keys, no key in both `data` and `binaryData`, at most 1 MiB.
pub(super) fn validate_config_map_data(obj: &Value) -> FieldErrors {
    let mut errs = FieldErrors::default();
    let data = obj.get("data").and_then(Value::as_object);
    let binary = obj.get("binaryData").and_then(Value::as_object);
    let mut total = 0;
    for (bag, this, other, other_name) in [
        ("data", data, binary, "binaryData"),
        ("binaryData", binary, data, "data"),
    ] {
        for (k, v) in this.into_iter().flatten() {
            let path = format!("{bag}[{k}]");
            errs.extend(check(&path, k, config_key_problems(k)));
            if other.is_some_and(|o| o.contains_key(k)) {
                errs.push(FieldError::invalid(
                    path,
                    &json!(k),
                    format!("duplicate of key present in {other_name}"),
                ));
            }
            total += if bag == "data" {
                v.as_str().map_or(0, str::len)
            } else {
                decoded_len(v)
            };
        }
    }
    if total > MAX_DATA_BYTES {
        errs.push(FieldError::too_long("", MAX_DATA_BYTES));
    }
    errs
}

/// Upstream's conversion folds `stringData` into `data` (stringData wins) before storing.
pub(super) fn merge_string_data(obj: &mut Value) {
    use base64::Engine;
    let Some(string_data) = obj
        .as_object_mut()
        .and_then(|o| o.remove("stringData"))
        .and_then(|v| v.as_object().cloned())
    else {
        return;
    };
    set_default(obj, "data", json!({}));
    if let Some(data) = obj["data"].as_object_mut() {
        for (k, v) in string_data {
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(v.as_str().unwrap_or(""));
            data.insert(k, json!(encoded));
        }
    }
}

/// Secret content: valid keys, at most 1 MiB, and the keys its `type` requires.
pub(super) fn validate_secret_data(obj: &Value) -> FieldErrors {
    use base64::Engine;
    let mut errs = FieldErrors::default();
    let data = obj.get("data").and_then(Value::as_object);
    let mut total = 0;
    for (k, v) in data.into_iter().flatten() {
        errs.extend(check(&format!("data[{k}]"), k, config_key_problems(k)));
        total += decoded_len(v);
    }
    if total > MAX_DATA_BYTES {
        errs.push(FieldError::too_long("data", MAX_DATA_BYTES));
    }
    let has = |k: &str| data.is_some_and(|d| d.contains_key(k));
    let value = |k: &str| {
        data.and_then(|d| d.get(k))
            .and_then(Value::as_str)
            .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
            .unwrap_or_default()
    };
    let json_key = |k: &str, errs: &mut FieldErrors| {
        if !has(k) {
            errs.push(FieldError::required(format!("data[{k}]"), ""));
        } else if let Err(e) = serde_json::from_slice::<serde_json::Map<String, Value>>(&value(k)) {
            errs.push(FieldError::invalid(
                format!("data[{k}]"),
                &json!("<secret contents redacted>"),
                e.to_string(),
            ));
        }
    };
    match str_at(obj, "/type") {
        "kubernetes.io/service-account-token" => {
            let name = meta::annotations(obj)
                .get("kubernetes.io/service-account.name")
                .cloned()
                .unwrap_or_default();
            if name.is_empty() {
                errs.push(FieldError::required(
                    "metadata.annotations[kubernetes.io/service-account.name]",
                    "",
                ));
            }
        }
        "kubernetes.io/dockercfg" => json_key(".dockercfg", &mut errs),
        "kubernetes.io/dockerconfigjson" => json_key(".dockerconfigjson", &mut errs),
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            errs.push(FieldError::required("data[username]", ""));
            errs.push(FieldError::required("data[password]", ""));
        }
        "kubernetes.io/ssh-auth" if value("ssh-privatekey").is_empty() => {
            errs.push(FieldError::required("data[ssh-privatekey]", ""));
        }
        "kubernetes.io/tls" => {
            for k in ["tls.crt", "tls.key"] {
                if !has(k) {
                    errs.push(FieldError::required(format!("data[{k}]"), ""));
                }
            }
        }
        _ => {}
    }
    errs
}

/// Once `immutable` is set, it and the data bags stay as they are.
pub(super) fn validate_immutable_data(new: &Value, old: &Value, bags: &[&str]) -> FieldErrors {
    let mut errs = FieldErrors::default();
    if old.get("immutable").and_then(Value::as_bool) != Some(true) {
        return errs;
    }
    const MSG: &str = "field is immutable when `immutable` is set";
    if new.get("immutable").and_then(Value::as_bool) != Some(true) {
        errs.push(FieldError::forbidden("immutable", MSG));
    }
    for bag in bags {
        if new.get(*bag) != old.get(*bag) {
            errs.push(FieldError::forbidden(*bag, MSG));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    const CTX: Context<'static> = Context {
        namespace: "default",
        service_cidr: None,
    };

    fn errors(hooks: &dyn Hooks, obj: Value) -> String {
        hooks.validate(&obj, &CTX).to_string()
    }

    #[test]
    fn service_account_rows_count_secrets() {
        let sa = json!({"metadata": {"name": "build"}, "secrets": [{"name": "a"}, {"name": "b"}]});
        assert_eq!(ServiceAccounts.row(&sa)[1], json!(2));
        assert!(
            errors(&ServiceAccounts, json!({"metadata": {"name": "Bad"}}))
                .starts_with("metadata.name: Invalid value: \"Bad\"")
        );
    }

    #[test]
    fn endpoints_cells_list_three_then_count_the_rest() {
        let cases = [
            (json!({}), "<none>"),
            (
                json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]}),
                "10.0.0.1:80",
            ),
            (
                json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}, {"port": 443}]}]}),
                "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 1 more...",
            ),
            (
                json!({"subsets": [{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 53}]}]}),
                "[fd00::1]:53",
            ),
            (
                json!({"subsets": [{"addresses": [{"ip": "10.0.0.9"}]}]}),
                "10.0.0.9",
            ),
        ];
        for (obj, want) in cases {
            assert_eq!(format_endpoints(&obj), want, "{obj}");
        }
    }

    #[test]
    fn endpoints_default_protocol_and_check_addresses() {
        let mut ep = json!({"metadata": {"name": "web"}, "subsets": [{"addresses": [{"ip": "nope"}], "ports": [{"port": 80}, {"port": 0, "name": "b"}]}]});
        Endpoints.prepare_create(&mut ep, &CTX);
        assert_eq!(ep["subsets"][0]["ports"][0]["protocol"], "TCP");
        let errs = errors(&Endpoints, ep);
        for want in [
            "subsets[0].addresses[0].ip: Invalid value: \"nope\": must be a valid IP address",
            "subsets[0].ports[0].name: Required value",
            "subsets[0].ports[1].port: Invalid value: 0: must be between 1 and 65535, inclusive",
        ] {
            assert!(errs.contains(want), "{want} not in {errs}");
        }
    }

    #[test]
    fn limit_range_defaults_container_requests_and_limits() {
        let mut lr = json!({"metadata": {"name": "l"}, "spec": {"limits": [
            {"type": "Container", "max": {"cpu": "2", "memory": "1Gi"}, "min": {"cpu": "100m"}, "default": {"cpu": "1000m"}},
            {"type": "Pod", "max": {"cpu": "4"}}
        ]}});
        LimitRanges.prepare_create(&mut lr, &CTX);
        let c = &lr["spec"]["limits"][0];
        assert_eq!(c["default"], json!({"cpu": "1", "memory": "1Gi"}));
        assert_eq!(c["defaultRequest"], json!({"cpu": "1", "memory": "1Gi"}));
        assert!(lr["spec"]["limits"][1].get("default").is_none());
        assert!(LimitRanges.validate(&lr, &CTX).is_empty());
    }

    #[test]
    fn limit_range_rejects_bad_quantities_and_inverted_bounds() {
        let lr = json!({"metadata": {"name": "l"}, "spec": {"limits": [
            {"type": "Container", "max": {"cpu": "1"}, "min": {"cpu": "2", "memory": "x"}},
            {"type": "Pod", "default": {"cpu": "1"}},
            {"type": "Pod"}
        ]}});
        let errs = errors(&LimitRanges, lr);
        for want in [
            "spec.limits[0].min[memory]: Invalid value: \"x\": quantities must match the regular expression",
            "spec.limits[0].min[cpu]: Invalid value: \"2\": min value 2 is greater than max value 1",
            "spec.limits[1].default: Forbidden: may not be specified when `type` is 'Pod'",
            "spec.limits[2].type: Duplicate value: \"Pod\"",
        ] {
            assert!(errs.contains(want), "{want} not in {errs}");
        }
    }

    #[test]
    fn resource_quota_canonicalizes_and_rows_split_requests_from_limits() {
        let mut rq = json!({"metadata": {"name": "q"}, "spec": {"hard": {"requests.memory": "1.5Gi", "pods": "10"}}});
        ResourceQuotas.prepare_create(&mut rq, &CTX);
        assert_eq!(rq["spec"]["hard"]["requests.memory"], "1536Mi");
        assert!(errors(
            &ResourceQuotas,
            json!({"metadata": {"name": "q"}, "spec": {"hard": {"cpu": "one"}}})
        )
        .contains("spec.hard[cpu]: Invalid value: \"one\""));
        let with_status = json!({"metadata": {"name": "q"}, "status": {
            "hard": {"limits.cpu": "2", "pods": "10", "requests.cpu": "1"},
            "used": {"limits.cpu": "500m", "pods": "3"}
        }});
        let row = ResourceQuotas.row(&with_status);
        assert_eq!(row[2], "pods: 3/10, requests.cpu: 0/1");
        assert_eq!(row[3], "limits.cpu: 500m/2");
    }

    #[test]
    fn lease_duration_must_be_positive() {
        let errs = errors(
            &Leases,
            json!({"metadata": {"name": "l"}, "spec": {"leaseDurationSeconds": 0}}),
        );
        assert_eq!(
            errs,
            "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"
        );
        let ok = json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40}});
        assert!(Leases.validate(&ok, &CTX).is_empty());
        assert_eq!(Leases.row(&ok)[1], "node-1");
    }

    #[test]
    fn endpoint_slice_defaults_and_validation() {
        let mut es = json!({"metadata": {"name": "s"}, "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.1"]}], "ports": [{"port": 80}]});
        EndpointSlices.prepare_create(&mut es, &CTX);
        assert_eq!(es["ports"][0]["protocol"], "TCP");
        assert!(EndpointSlices.validate(&es, &CTX).is_empty());
        let row = EndpointSlices.row(&es);
        assert_eq!(
            (row[2].as_str(), row[3].as_str()),
            (Some("80"), Some("10.0.0.1"))
        );
        let bad = json!({"metadata": {"name": "s"}, "addressType": "IPv5",
            "endpoints": [{"addresses": []}, {"addresses": ["x"]}]});
        let errs = errors(&EndpointSlices, bad);
        assert!(errs.contains("addressType: Unsupported value: \"IPv5\": supported values: \"FQDN\", \"IPv4\", \"IPv6\""), "{errs}");
        assert!(
            errs.contains(
                "endpoints[0].addresses: Required value: must contain at least 1 address"
            ),
            "{errs}"
        );
        let v4 = json!({"metadata": {"name": "s"}, "addressType": "IPv4", "endpoints": [{"addresses": ["fd00::1"]}]});
        assert_eq!(
            errors(&EndpointSlices, v4),
            "endpoints[0].addresses[0]: Invalid value: \"fd00::1\": must be a valid IPv4 address"
        );
        assert_eq!(
            errors(&EndpointSlices, json!({"metadata": {"name": "s"}})),
            "addressType: Required value"
        );
        let old = json!({"metadata": {"name": "s"}, "addressType": "IPv6", "endpoints": []});
        let new = json!({"metadata": {"name": "s"}, "addressType": "IPv4", "endpoints": []});
        assert_eq!(
            EndpointSlices.validate_update(&new, &old, &CTX).to_string(),
            "addressType: Invalid value: \"IPv4\": field is immutable"
        );
    }

    #[test]
    fn endpoint_slice_cells_say_unset_when_empty() {
        let row = EndpointSlices.row(&json!({"metadata": {"name": "s"}, "addressType": "IPv4"}));
        assert_eq!(
            (row[2].as_str(), row[3].as_str()),
            (Some("<unset>"), Some("<unset>"))
        );
        let many = json!({"endpoints": [{"addresses": ["1.1.1.1", "1.1.1.2"]}, {"addresses": ["1.1.1.3", "1.1.1.4", "1.1.1.5"]}]});
        assert_eq!(
            EndpointSlices.row(&many)[3],
            "1.1.1.1,1.1.1.2,1.1.1.3 + 2 more..."
        );
    }

    #[test]
    fn priority_class_defaults_limits_and_immutable_value() {
        let mut pc = json!({"metadata": {"name": "high"}, "value": 1000});
        PriorityClasses.prepare_create(&mut pc, &CTX);
        assert_eq!(pc["preemptionPolicy"], "PreemptLowerPriority");
        assert!(PriorityClasses.validate(&pc, &CTX).is_empty());
        assert_eq!(
            errors(
                &PriorityClasses,
                json!({"metadata": {"name": "huge"}, "value": 1_000_000_001})
            ),
            "value: Forbidden: maximum allowed value of a user defined priority is 1000000000"
        );
        assert!(errors(&PriorityClasses, json!({"metadata": {"name": "system-mine"}, "value": 1}))
            .starts_with("metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only"));
        assert!(PriorityClasses
            .validate(
                &json!({"metadata": {"name": "system-node-critical"}, "value": 2_000_001_000}),
                &CTX
            )
            .is_empty());
        let mut changed = pc.clone();
        changed["value"] = json!(5);
        assert_eq!(
            PriorityClasses
                .validate_update(&changed, &pc, &CTX)
                .to_string(),
            "value: Forbidden: may not be changed in an update."
        );
        let row = PriorityClasses.row(&pc);
        assert_eq!(
            (row[1].clone(), row[2].clone(), row[4].clone()),
            (json!(1000), json!(false), json!("PreemptLowerPriority"))
        );
    }

    #[test]
    fn config_map_keys_follow_upstream_rules() {
        let cm = json!({"data": {"ok.key": "1", "bad key": "2", "..x": "3", "dup": "4"}, "binaryData": {"dup": "AA=="}});
        let errs = validate_config_map_data(&cm).to_string();
        for want in [
            "data[bad key]: Invalid value: \"bad key\": a valid config key must consist of alphanumeric characters",
            "data[..x]: Invalid value: \"..x\": must not start with '..'",
            "data[dup]: Invalid value: \"dup\": duplicate of key present in binaryData",
            "binaryData[dup]: Invalid value: \"dup\": duplicate of key present in data",
        ] {
            assert!(errs.contains(want), "{want} not in {errs}");
        }
        assert!(!errs.contains("ok.key"), "{errs}");
    }

    #[test]
    fn secret_types_require_their_keys() {
        let cases = [
            (
                json!({"type": "kubernetes.io/tls", "data": {"tls.crt": "YQ=="}}),
                "data[tls.key]: Required value",
            ),
            (
                json!({"type": "kubernetes.io/dockerconfigjson", "data": {}}),
                "data[.dockerconfigjson]: Required value",
            ),
            (
                json!({"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "bm90IGpzb24="}}),
                "data[.dockerconfigjson]: Invalid value: \"<secret contents redacted>\"",
            ),
            (
                json!({"type": "kubernetes.io/basic-auth", "data": {}}),
                "data[username]: Required value",
            ),
            (
                json!({"type": "kubernetes.io/ssh-auth", "data": {}}),
                "data[ssh-privatekey]: Required value",
            ),
            (
                json!({"type": "kubernetes.io/service-account-token"}),
                "metadata.annotations[kubernetes.io/service-account.name]: Required value",
            ),
            (
                json!({"type": "Opaque", "data": {"a/b": "YQ=="}}),
                "data[a/b]: Invalid value: \"a/b\"",
            ),
        ];
        for (secret, want) in cases {
            let errs = validate_secret_data(&secret).to_string();
            assert!(errs.contains(want), "{want} not in {errs}");
        }
        let tls =
            json!({"type": "kubernetes.io/tls", "data": {"tls.crt": "YQ==", "tls.key": "Yg=="}});
        assert!(validate_secret_data(&tls).is_empty());
        let docker = json!({"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "eyJhdXRocyI6e319"}});
        assert!(validate_secret_data(&docker).is_empty());
    }

    #[test]
    fn string_data_folds_into_data() {
        let mut s =
            json!({"data": {"a": "b2xk", "keep": "eA=="}, "stringData": {"a": "new", "c": "see"}});
        merge_string_data(&mut s);
        assert_eq!(
            s,
            json!({"data": {"a": "bmV3", "keep": "eA==", "c": "c2Vl"}})
        );
    }

    #[test]
    fn immutable_data_stays() {
        let old = json!({"immutable": true, "data": {"a": "1"}});
        let new = json!({"immutable": false, "data": {"a": "2"}});
        let errs = validate_immutable_data(&new, &old, &["data", "binaryData"]).to_string();
        assert_eq!(errs, "[immutable: Forbidden: field is immutable when `immutable` is set, data: Forbidden: field is immutable when `immutable` is set]");
        assert!(validate_immutable_data(&new, &json!({"data": {}}), &["data"]).is_empty());
    }
}
