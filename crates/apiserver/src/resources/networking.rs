//! Hooks of networking.k8s.io/v1: Ingress, IngressClass and NetworkPolicy. Defaults,
//! validation and columns as upstream.

use serde_json::{json, Value};
use skiff_api::validation::{check, dns1035_label, dns1123_subdomain};
use skiff_api::{FieldError, FieldErrors};

use super::common::{
    array_at, format_label_selector, immutable, name_cell, or_none, port_number, protocol,
    set_default, str_at, subdomain_name, validate_label_selector,
};
use super::{Column, Context, Hooks};
use crate::table::age;

const PATH_TYPES: &[&str] = &["Exact", "ImplementationSpecific", "Prefix"];

/// Upstream's `IsValidPortName`: an IANA service name.
fn port_name_problems(name: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if name.len() > 15 {
        errs.push("must be no more than 15 characters".into());
    }
    if !name
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into());
    }
    if !name.bytes().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".into());
    }
    if name.contains("--") {
        errs.push("must not contain consecutive hyphens".into());
    }
    if name.starts_with('-') || name.ends_with('-') {
        errs.push("must not begin or end with a hyphen".into());
    }
    errs
}

/// A host that may carry a leading `*.` label.
fn host_problems(host: &str) -> Vec<String> {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return vec!["must be a DNS name, not an IP address".into()];
    }
    match host.strip_prefix("*.") {
        Some(rest) if !rest.contains('*') && dns1123_subdomain(rest).is_empty() => Vec::new(),
        Some(_) => vec!["a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character (e.g. '*.example.com', regex used for validation is '\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".into()],
        None => dns1123_subdomain(host),
    }
}

fn validate_backend(b: &Value, path: &str, errs: &mut FieldErrors) {
    let service = b.get("service").filter(|s| !s.is_null());
    let resource = b.get("resource").filter(|r| !r.is_null());
    match (service, resource) {
        (Some(_), Some(_)) => errs.push(FieldError::invalid(
            path,
            &json!(""),
            "cannot set both resource and service backends",
        )),
        (None, None) => errs.push(FieldError::invalid(
            path,
            &json!(""),
            "resource or service backend is required",
        )),
        (None, Some(r)) => {
            for f in ["kind", "name"] {
                if str_at(r, &format!("/{f}")).is_empty() {
                    errs.push(FieldError::required(format!("{path}.resource.{f}"), ""));
                }
            }
        }
        (Some(s), None) => {
            let name = str_at(s, "/name");
            if name.is_empty() {
                errs.push(FieldError::required(format!("{path}.service.name"), ""));
            } else {
                errs.extend(check(
                    &format!("{path}.service.name"),
                    name,
                    dns1035_label(name),
                ));
            }
            let port_name = str_at(s, "/port/name");
            let number = s
                .pointer("/port/number")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            match (port_name.is_empty(), number == 0) {
                (false, false) => errs.push(FieldError::invalid(
                    path,
                    &json!(""),
                    "cannot set both port name & port number",
                )),
                (false, true) => errs.extend(check(
                    &format!("{path}.service.port.name"),
                    port_name,
                    port_name_problems(port_name),
                )),
                (true, false) => {
                    port_number(&json!(number), &format!("{path}.service.port.number"), errs)
                }
                (true, true) => errs.push(FieldError::required(
                    path,
                    "port name or number is required",
                )),
            }
        }
    }
}

fn validate_http_path(p: &Value, path: &str, errs: &mut FieldErrors) {
    let kind = p.get("pathType").cloned().unwrap_or(Value::Null);
    let route = str_at(p, "/path");
    match kind.as_str() {
        None | Some("") => errs.push(FieldError::required(
            format!("{path}.pathType"),
            "pathType must be specified",
        )),
        Some(t) if !PATH_TYPES.contains(&t) => errs.push(FieldError::not_supported(
            format!("{path}.pathType"),
            &kind,
            PATH_TYPES,
        )),
        Some("Exact" | "Prefix") => {
            if !route.starts_with('/') {
                errs.push(FieldError::invalid(
                    format!("{path}.path"),
                    &json!(route),
                    "must be an absolute path",
                ));
            } else {
                for bad in ["//", "/./", "/../", "%2f", "%2F"] {
                    if route.contains(bad) {
                        errs.push(FieldError::invalid(
                            format!("{path}.path"),
                            &json!(route),
                            format!("must not contain '{bad}'"),
                        ));
                    }
                }
                for bad in ["/..", "/."] {
                    if route.ends_with(bad) {
                        errs.push(FieldError::invalid(
                            format!("{path}.path"),
                            &json!(route),
                            format!("cannot end with '{bad}'"),
                        ));
                    }
                }
            }
        }
        Some(_) => {
            if !route.is_empty() && !route.starts_with('/') {
                errs.push(FieldError::invalid(
                    format!("{path}.path"),
                    &json!(route),
                    "must be an absolute path",
                ));
            }
        }
    }
    validate_backend(
        p.get("backend").unwrap_or(&Value::Null),
        &format!("{path}.backend"),
        errs,
    );
}

pub struct Ingresses;

impl Hooks for Ingresses {
    fn validate(&self, obj: &Value, _ctx: &Context<'_>) -> FieldErrors {
        let mut errs = subdomain_name(obj);
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        let rules = array_at(spec, "/rules");
        let default_backend = spec.get("defaultBackend").filter(|b| !b.is_null());
        if rules.is_empty() && default_backend.is_none() {
            errs.push(FieldError::invalid(
                "spec",
                &json!([]),
                "either `defaultBackend` or `rules` must be specified",
            ));
        }
        if let Some(b) = default_backend {
            validate_backend(b, "spec.defaultBackend", &mut errs);
        }
        let class = str_at(spec, "/ingressClassName");
        if !class.is_empty() {
            errs.extend(check(
                "spec.ingressClassName",
                class,
                dns1123_subdomain(class),
            ));
        }
        for (i, rule) in rules.iter().enumerate() {
            let p = format!("spec.rules[{i}]");
            let host = str_at(rule, "/host");
            if !host.is_empty() {
                errs.extend(check(&format!("{p}.host"), host, host_problems(host)));
            }
            if let Some(http) = rule.get("http").filter(|h| !h.is_null()) {
                let paths = array_at(http, "/paths");
                if paths.is_empty() {
                    errs.push(FieldError::required(format!("{p}.http.paths"), ""));
                }
                for (j, route) in paths.iter().enumerate() {
                    validate_http_path(route, &format!("{p}.http.paths[{j}]"), &mut errs);
                }
            }
        }
        for (i, tls) in array_at(spec, "/tls").iter().enumerate() {
            for (j, h) in array_at(tls, "/hosts").iter().enumerate() {
                let h = h.as_str().unwrap_or("");
                errs.extend(check(
                    &format!("spec.tls[{i}].hosts[{j}]"),
                    h,
                    host_problems(h),
                ));
            }
        }
        errs
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name_column(),
            Column::new("Class", "string", "The name of the IngressClass resource that should be used for additional configuration"),
            Column::new("Hosts", "string", "Hosts that incoming requests are matched against before the ingress rule"),
            Column::new("Address", "string", "Address is a list containing ingress points for the load-balancer"),
            Column::new("Ports", "string", "Ports of TLS configurations that open"),
            Column::age_column(),
        ]
    }

    fn row(&self, obj: &Value) -> Vec<Value> {
        const MAX: usize = 3;
        let rules = array_at(obj, "/spec/rules");
        let hosts: Vec<&str> = rules
            .iter()
            .take(MAX)
            .map(|r| str_at(r, "/host"))
            .filter(|h| !h.is_empty())
            .collect();
        let hosts = match (hosts.is_empty(), rules.len() > MAX) {
            (true, _) => "*".to_string(),
            (false, true) => format!("{} + {} more...", hosts.join(","), rules.len() - MAX),
            (false, false) => hosts.join(","),
        };
        let mut addresses: Vec<&str> = array_at(obj, "/status/loadBalancer/ingress")
            .iter()
            .map(|i| match str_at(i, "/ip") {
                "" => str_at(i, "/hostname"),
                ip => ip,
            })
            .filter(|a| !a.is_empty())
            .collect();
        addresses.sort_unstable();
        addresses.dedup();
        let ports = if array_at(obj, "/spec/tls").is_empty() {
            "80"
        } else {
            "80, 443"
        };
        vec![
            name_cell(obj),
            json!(or_none(str_at(obj, "/spec/ingressClassName"))),
            json!(hosts),
            json!(addresses.join(",")),
            json!(ports),
            json!(age(obj)),
        ]
    }
}

pub struct IngressClasses;

fn default_ingress_class(obj: &mut Value) {
    if let Some(params) = obj
        .pointer_mut("/spec/parameters")
        .filter(|p| p.is_object())
    {
        set_default(params, "scope", json!("Cluster"));
    }
}

impl Hooks for IngressClasses {
    fn prepare_create(&self, obj: &mut Value, _ctx: &Context<'_>) {
        default_ingress_class(obj);
    }

    fn prepare_update(&self, new: &mut Value, _old: &Value) {
        default_ingress_class(new);
    }

    fn validate(&self, obj: &Value, _ctx: &Context<'_>) -> FieldErrors {
        let mut errs = subdomain_name(obj);
        let controller = str_at(obj, "/spec/controller");
        if controller.is_empty() {
            errs.push(FieldError::required("spec.controller", ""));
        } else if controller.len() > 250 {
            errs.push(FieldError::too_long("spec.controller", 250));
        } else {
            let valid = controller.split_once('/').is_some_and(|(domain, rest)| {
                dns1123_subdomain(domain).is_empty()
                    && !rest.is_empty()
                    && rest.bytes().all(|c| c.is_ascii_graphic())
            });
            if !valid {
                errs.push(FieldError::invalid(
                    "spec.controller",
                    &json!(controller),
                    "must be a domain-prefixed path (such as \"acme.io/foo\")",
                ));
            }
        }
        if let Some(params) = obj.pointer("/spec/parameters").filter(|p| !p.is_null()) {
            for f in ["kind", "name"] {
                if str_at(params, &format!("/{f}")).is_empty() {
                    errs.push(FieldError::required(format!("spec.parameters.{f}"), ""));
                }
            }
            let namespace = str_at(params, "/namespace");
            match str_at(params, "/scope") {
                "Namespace" if namespace.is_empty() => errs.push(FieldError::required(
                    "spec.parameters.namespace",
                    "`parameters.scope` is set to 'Namespace'",
                )),
                "Cluster" if !namespace.is_empty() => errs.push(FieldError::forbidden(
                    "spec.parameters.namespace",
                    "`parameters.scope` is set to 'Cluster'",
                )),
                "Namespace" | "Cluster" => {}
                other => errs.push(FieldError::not_supported(
                    "spec.parameters.scope",
                    &json!(other),
                    &["Cluster", "Namespace"],
                )),
            }
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value, ctx: &Context<'_>) -> FieldErrors {
        let mut errs = self.validate(new, ctx);
        immutable(new, old, "/spec/controller", "spec.controller", &mut errs);
        errs
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name_column(),
            Column::new(
                "Controller",
                "string",
                "Controller that is responsible for handling this class",
            ),
            Column::new(
                "Parameters",
                "string",
                "A reference to a resource with additional parameters",
            ),
            Column::age_column(),
        ]
    }

    fn row(&self, obj: &Value) -> Vec<Value> {
        let parameters = match obj.pointer("/spec/parameters").filter(|p| !p.is_null()) {
            None => "<none>".to_string(),
            Some(p) => {
                let mut s = str_at(p, "/kind").to_string();
                if let Some(g) = p.get("apiGroup").and_then(Value::as_str) {
                    s = format!("{s}.{g}");
                }
                format!("{s}/{}", str_at(p, "/name"))
            }
        };
        vec![
            name_cell(obj),
            json!(str_at(obj, "/spec/controller")),
            json!(parameters),
            json!(age(obj)),
        ]
    }
}

pub struct NetworkPolicies;

fn default_network_policy(obj: &mut Value) {
    set_default(obj, "spec", json!({}));
    let spec = &mut obj["spec"];
    set_default(spec, "podSelector", json!({}));
    if array_at(spec, "/policyTypes").is_empty() {
        let mut types = vec![json!("Ingress")];
        if !array_at(spec, "/egress").is_empty() {
            types.push(json!("Egress"));
        }
        spec["policyTypes"] = Value::Array(types);
    }
    for dir in ["ingress", "egress"] {
        for rule in spec
            .get_mut(dir)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            for port in rule
                .get_mut("ports")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                set_default(port, "protocol", json!("TCP"));
            }
        }
    }
}

fn cidr_ok(cidr: &str) -> bool {
    let Some((ip, bits)) = cidr.split_once('/') else {
        return false;
    };
    let Ok(bits) = bits.parse::<u8>() else {
        return false;
    };
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => bits <= 32,
        Ok(std::net::IpAddr::V6(_)) => bits <= 128,
        Err(_) => false,
    }
}

const CIDR_MSG: &str = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)";

fn validate_peer(peer: &Value, path: &str, errs: &mut FieldErrors) {
    let present = |k: &str| peer.get(k).is_some_and(|v| !v.is_null());
    let selectors = ["podSelector", "namespaceSelector"]
        .iter()
        .filter(|k| present(k))
        .count();
    for k in ["podSelector", "namespaceSelector"] {
        if let Some(sel) = peer.get(k).filter(|v| !v.is_null()) {
            validate_label_selector(sel, &format!("{path}.{k}"), errs);
        }
    }
    match (selectors, peer.get("ipBlock").filter(|v| !v.is_null())) {
        (0, None) => errs.push(FieldError::required(path, "must specify a peer")),
        (_, Some(_)) if selectors > 0 => errs.push(FieldError::forbidden(
            path,
            "may not specify both ipBlock and another peer",
        )),
        (_, Some(block)) => {
            let cidr = str_at(block, "/cidr");
            if cidr.is_empty() {
                errs.push(FieldError::required(format!("{path}.ipBlock.cidr"), ""));
            } else if !cidr_ok(cidr) {
                errs.push(FieldError::invalid(
                    format!("{path}.ipBlock.cidr"),
                    &json!(cidr),
                    CIDR_MSG,
                ));
            }
            for (i, e) in array_at(block, "/except").iter().enumerate() {
                let e = e.as_str().unwrap_or("");
                if !cidr_ok(e) {
                    errs.push(FieldError::invalid(
                        format!("{path}.ipBlock.except[{i}]"),
                        &json!(e),
                        CIDR_MSG,
                    ));
                }
            }
        }
        _ => {}
    }
}

fn validate_policy_port(port: &Value, path: &str, errs: &mut FieldErrors) {
    protocol(port, &format!("{path}.protocol"), errs);
    let end = port.get("endPort").filter(|v| !v.is_null());
    match port.get("port").filter(|v| !v.is_null()) {
        Some(Value::String(name)) => {
            errs.extend(check(
                &format!("{path}.port"),
                name,
                port_name_problems(name),
            ));
            if let Some(end) = end {
                errs.push(FieldError::invalid(
                    format!("{path}.endPort"),
                    end,
                    "may not be specified when `port` is non-numeric",
                ));
            }
        }
        Some(n) => {
            port_number(n, &format!("{path}.port"), errs);
            if let Some(end) = end {
                if end.as_i64() < n.as_i64() {
                    errs.push(FieldError::invalid(
                        format!("{path}.endPort"),
                        end,
                        "must be greater than or equal to `port`",
                    ));
                }
            }
        }
        None if end.is_some() => errs.push(FieldError::required(
            format!("{path}.port"),
            "must specify `port` when `endPort` is specified",
        )),
        None => {}
    }
}

impl Hooks for NetworkPolicies {
    fn prepare_create(&self, obj: &mut Value, _ctx: &Context<'_>) {
        default_network_policy(obj);
    }

    fn prepare_update(&self, new: &mut Value, _old: &Value) {
        default_network_policy(new);
    }

    fn validate(&self, obj: &Value, _ctx: &Context<'_>) -> FieldErrors {
        let mut errs = subdomain_name(obj);
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        validate_label_selector(
            spec.get("podSelector").unwrap_or(&Value::Null),
            "spec.podSelector",
            &mut errs,
        );
        for (dir, peers) in [("ingress", "from"), ("egress", "to")] {
            for (i, rule) in array_at(spec, &format!("/{dir}")).iter().enumerate() {
                let p = format!("spec.{dir}[{i}]");
                for (j, port) in array_at(rule, "/ports").iter().enumerate() {
                    validate_policy_port(port, &format!("{p}.ports[{j}]"), &mut errs);
                }
                for (j, peer) in array_at(rule, &format!("/{peers}")).iter().enumerate() {
                    validate_peer(peer, &format!("{p}.{peers}[{j}]"), &mut errs);
                }
            }
        }
        let types = array_at(spec, "/policyTypes");
        for (i, t) in types.iter().enumerate() {
            if !matches!(t.as_str(), Some("Ingress" | "Egress")) {
                errs.push(FieldError::not_supported(
                    format!("spec.policyTypes[{i}]"),
                    t,
                    &["Egress", "Ingress"],
                ));
            }
        }
        if types.len() > 2 {
            errs.push(FieldError::invalid(
                "spec.policyTypes",
                &json!(types),
                "may not specify more than two policyTypes",
            ));
        }
        errs
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name_column(),
            Column::new("Pod-Selector", "string", "podSelector selects the pods to which this NetworkPolicy object applies. The array of rules is applied to any pods selected by this field. An empty selector matches all pods in the policy's namespace. Multiple network policies can select the same set of pods. In this case, the ingress rules for each are combined additively. This field is optional. If it is not specified, it defaults to an empty selector."),
            Column::age_column(),
        ]
    }

    fn row(&self, obj: &Value) -> Vec<Value> {
        vec![
            name_cell(obj),
            json!(format_label_selector(Some(
                obj.pointer("/spec/podSelector").unwrap_or(&json!({}))
            ))),
            json!(age(obj)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CTX: Context<'static> = Context {
        namespace: "default",
        service_cidr: None,
    };

    fn ingress(rules: Value) -> Value {
        json!({"metadata": {"name": "web"}, "spec": {"rules": rules}})
    }

    fn backend() -> Value {
        json!({"service": {"name": "web", "port": {"number": 80}}})
    }

    #[test]
    fn ingress_paths_need_a_type_and_an_absolute_path() {
        let ok = ingress(json!([{"host": "a.example.com", "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": backend()}]}}]));
        assert!(Ingresses.validate(&ok, &CTX).is_empty());
        let cases = [
            (json!([{"http": {"paths": [{"path": "/", "backend": backend()}]}}]),
             "spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified"),
            (json!([{"http": {"paths": [{"path": "/", "pathType": "Regex", "backend": backend()}]}}]),
             "spec.rules[0].http.paths[0].pathType: Unsupported value: \"Regex\": supported values: \"Exact\", \"ImplementationSpecific\", \"Prefix\""),
            (json!([{"http": {"paths": [{"path": "api", "pathType": "Exact", "backend": backend()}]}}]),
             "spec.rules[0].http.paths[0].path: Invalid value: \"api\": must be an absolute path"),
            (json!([{"http": {"paths": []}}]), "spec.rules[0].http.paths: Required value"),
            (json!([{"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {}}]}}]),
             "spec.rules[0].http.paths[0].backend: Invalid value: \"\": resource or service backend is required"),
            (json!([{"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {}}}}]}}]),
             "spec.rules[0].http.paths[0].backend: Required value: port name or number is required"),
            (json!([{"host": "10.0.0.1", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend()}]}}]),
             "spec.rules[0].host: Invalid value: \"10.0.0.1\": must be a DNS name, not an IP address"),
            (json!([]), "spec: Invalid value: []: either `defaultBackend` or `rules` must be specified"),
        ];
        for (rules, want) in cases {
            let errs = Ingresses.validate(&ingress(rules), &CTX).to_string();
            assert!(errs.contains(want), "{want} not in {errs}");
        }
        let wildcard = ingress(json!([{"host": "*.example.com", "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": backend()}]}}]));
        assert!(Ingresses.validate(&wildcard, &CTX).is_empty());
    }

    #[test]
    fn ingress_rows_like_kubectl() {
        let obj = json!({"metadata": {"name": "web"}, "spec": {
            "ingressClassName": "nginx",
            "rules": [{"host": "a.com"}, {}, {"host": "b.com"}, {"host": "c.com"}],
            "tls": [{"hosts": ["a.com"]}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.5"}, {"hostname": "lb.local"}]}}});
        let row = Ingresses.row(&obj);
        assert_eq!(row[1], "nginx");
        assert_eq!(row[2], "a.com,b.com + 1 more...");
        assert_eq!(row[3], "10.0.0.5,lb.local");
        assert_eq!(row[4], "80, 443");
        let bare = Ingresses.row(&json!({"metadata": {"name": "x"}, "spec": {"rules": [{}]}}));
        assert_eq!(
            (bare[1].as_str(), bare[2].as_str(), bare[4].as_str()),
            (Some("<none>"), Some("*"), Some("80"))
        );
    }

    #[test]
    fn ingress_class_controller_and_parameters() {
        let mut ic = json!({"metadata": {"name": "nginx"}, "spec": {"controller": "k8s.io/ingress-nginx",
            "parameters": {"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "external-lb"}}});
        IngressClasses.prepare_create(&mut ic, &CTX);
        assert_eq!(ic["spec"]["parameters"]["scope"], "Cluster");
        assert!(IngressClasses.validate(&ic, &CTX).is_empty());
        assert_eq!(
            IngressClasses.row(&ic)[2],
            "IngressParameters.k8s.example.com/external-lb"
        );
        let bad = json!({"metadata": {"name": "x"}, "spec": {"controller": "nginx"}});
        assert_eq!(
            IngressClasses.validate(&bad, &CTX).to_string(),
            "spec.controller: Invalid value: \"nginx\": must be a domain-prefixed path (such as \"acme.io/foo\")"
        );
        let mut moved = ic.clone();
        moved["spec"]["controller"] = json!("example.com/other");
        assert_eq!(
            IngressClasses
                .validate_update(&moved, &ic, &CTX)
                .to_string(),
            "spec.controller: Invalid value: \"example.com/other\": field is immutable"
        );
    }

    #[test]
    fn network_policy_defaults_policy_types_and_protocols() {
        let cases = [
            (json!({}), json!(["Ingress"])),
            (json!({"egress": [{}]}), json!(["Ingress", "Egress"])),
            (
                json!({"policyTypes": ["Egress"], "egress": [{}]}),
                json!(["Egress"]),
            ),
        ];
        for (spec, want) in cases {
            let mut np = json!({"metadata": {"name": "np"}, "spec": spec});
            NetworkPolicies.prepare_create(&mut np, &CTX);
            assert_eq!(np["spec"]["policyTypes"], want, "{np}");
            assert_eq!(np["spec"]["podSelector"], json!({}));
        }
        let mut np = json!({"metadata": {"name": "np"}, "spec": {"podSelector": {"matchLabels": {"app": "db"}},
            "ingress": [{"ports": [{"port": 5432}], "from": [{"podSelector": {}}]}]}});
        NetworkPolicies.prepare_create(&mut np, &CTX);
        assert_eq!(np["spec"]["ingress"][0]["ports"][0]["protocol"], "TCP");
        assert!(NetworkPolicies.validate(&np, &CTX).is_empty());
        assert_eq!(NetworkPolicies.row(&np)[1], "app=db");
        let mut all = json!({"metadata": {"name": "np"}, "spec": {}});
        NetworkPolicies.prepare_create(&mut all, &CTX);
        assert_eq!(NetworkPolicies.row(&all)[1], "<none>");
    }

    #[test]
    fn network_policy_validation_names_the_field() {
        let np = json!({"metadata": {"name": "np"}, "spec": {"podSelector": {},
            "policyTypes": ["Ingress", "Sideways"],
            "ingress": [{"ports": [{"port": 0, "protocol": "ICMP"}, {"port": 80, "endPort": 79, "protocol": "TCP"}],
                         "from": [{}, {"ipBlock": {"cidr": "10.0.0.0/33"}}, {"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}]}});
        let errs = NetworkPolicies.validate(&np, &CTX).to_string();
        for want in [
            "spec.ingress[0].ports[0].protocol: Unsupported value: \"ICMP\"",
            "spec.ingress[0].ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
            "spec.ingress[0].ports[1].endPort: Invalid value: 79: must be greater than or equal to `port`",
            "spec.ingress[0].from[0]: Required value: must specify a peer",
            "spec.ingress[0].from[1].ipBlock.cidr: Invalid value: \"10.0.0.0/33\"",
            "spec.ingress[0].from[2]: Forbidden: may not specify both ipBlock and another peer",
            "spec.policyTypes[1]: Unsupported value: \"Sideways\"",
        ] {
            assert!(errs.contains(want), "{want} not in {errs}");
        }
    }
}
