//! Hooks of core/v1 resources: defaults, validation and columns as upstream has them.

use serde_json::{json, Value};
use skiff_api::validation::{check, dns1035_label, dns1123_label, dns1123_subdomain};
use skiff_api::{meta, FieldError, FieldErrors};

use super::{Column, Context, Hooks};
use crate::table::age;

fn name_cell(obj: &Value) -> Value {
    Value::String(meta::name(obj).to_string())
}

fn str_at<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn set_default(obj: &mut Value, key: &str, value: Value) {
    if let Some(map) = obj.as_object_mut() {
        if map.get(key).is_none_or(Value::is_null) {
            map.insert(key.to_string(), value);
        }
    }
}

pub struct Namespaces;

impl Hooks for Namespaces {
    fn prepare_create(&self, obj: &mut Value, _ctx: &Context<'_>) {
        // The namespace controller removes this finalizer once the contents are gone.
        set_default(obj, "spec", json!({}));
        obj["spec"]["finalizers"] = json!(["kubernetes"]);
        obj["status"] = json!({"phase": "Active"});
        let name = meta::name(obj).to_string();
        let labels = meta::metadata_mut(obj)
            .entry("labels")
            .or_insert_with(|| json!({}));
        if let Some(labels) = labels.as_object_mut() {
            labels.insert("kubernetes.io/metadata.name".into(), Value::String(name));
        }
    }

    fn prepare_update(&self, new: &mut Value, old: &Value) {
        // spec.finalizers change only through /finalize; the name label stays true.
        new["spec"] = old.get("spec").cloned().unwrap_or(json!({}));
        let name = meta::name(old).to_string();
        let labels = meta::metadata_mut(new)
            .entry("labels")
            .or_insert_with(|| json!({}));
        if let Some(labels) = labels.as_object_mut() {
            labels.insert("kubernetes.io/metadata.name".into(), Value::String(name));
        }
    }

    fn validate(&self, obj: &Value, _ctx: &Context<'_>) -> FieldErrors {
        let name = meta::name(obj);
        check("metadata.name", name, dns1123_label(name))
    }

    fn fields(&self, obj: &Value) -> Vec<(&'static str, String)> {
        vec![("status.phase", str_at(obj, "/status/phase").to_string())]
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name_column(),
            Column::new("Status", "string", "The status of the namespace"),
            Column::age_column(),
        ]
    }

    fn row(&self, obj: &Value) -> Vec<Value> {
        vec![
            name_cell(obj),
            json!(str_at(obj, "/status/phase")),
            json!(age(obj)),
        ]
    }
}

pub struct Pods;

/// Upstream's default pull policy: Always for `:latest` or no tag, else IfNotPresent.
fn pull_policy(image: &str) -> &'static str {
    let last = image.rsplit('/').next().unwrap_or(image);
    let tag = if image.contains('@') {
        Some("digest")
    } else {
        last.split_once(':').map(|(_, t)| t)
    };
    match tag {
        None | Some("latest") => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn default_container(c: &mut Value) {
    let image = c
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    set_default(c, "imagePullPolicy", json!(pull_policy(&image)));
    set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(c, "terminationMessagePolicy", json!("File"));
    set_default(c, "resources", json!({}));
    if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
        for port in ports {
            set_default(port, "protocol", json!("TCP"));
        }
    }
}

/// Defaults of a pod spec (also used by pod templates in workload resources).
pub fn default_pod_spec(spec: &mut Value) {
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "enableServiceLinks", json!(true));
    for list in ["containers", "initContainers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            cs.iter_mut().for_each(default_container);
        }
    }
}

/// Upstream's QoS class: Guaranteed when every container's requests equal its cpu and
/// memory limits, BestEffort when nothing is set, else Burstable.
pub fn qos_class(spec: &Value) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|k| spec.get(*k).and_then(Value::as_array))
        .flatten()
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        let requests = c.pointer("/resources/requests").and_then(Value::as_object);
        let limits = c.pointer("/resources/limits").and_then(Value::as_object);
        if requests.is_some_and(|r| !r.is_empty()) || limits.is_some_and(|l| !l.is_empty()) {
            any = true;
        }
        for res in ["cpu", "memory"] {
            let limit = limits.and_then(|l| l.get(res));
            // Requests default to limits when only limits are given.
            let request = requests.and_then(|r| r.get(res)).or(limit);
            if limit.is_none() || request != limit {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

pub(crate) fn validate_pod_spec(spec: &Value, path: &str, errs: &mut FieldErrors) {
    let containers = spec.get("containers").and_then(Value::as_array);
    match containers {
        None => errs.push(FieldError::required(format!("{path}.containers"), "")),
        Some(cs) if cs.is_empty() => {
            errs.push(FieldError::required(format!("{path}.containers"), ""))
        }
        Some(_) => {}
    }
    let mut names = std::collections::BTreeSet::new();
    for list in ["initContainers", "containers"] {
        for (i, c) in spec
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let p = format!("{path}.{list}[{i}]");
            let name = c.get("name").and_then(Value::as_str).unwrap_or("");
            if name.is_empty() {
                errs.push(FieldError::required(format!("{p}.name"), ""));
            } else {
                errs.extend(check(&format!("{p}.name"), name, dns1123_label(name)));
                if !names.insert(name.to_string()) {
                    errs.push(FieldError::duplicate(format!("{p}.name"), &json!(name)));
                }
            }
            if c.get("image")
                .and_then(Value::as_str)
                .unwrap_or("")
                .trim()
                .is_empty()
            {
                errs.push(FieldError::required(format!("{p}.image"), ""));
            }
            for (j, port) in c
                .get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let n = port
                    .get("containerPort")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                if !(1..=65535).contains(&n) {
                    errs.push(FieldError::invalid(
                        format!("{p}.ports[{j}].containerPort"),
                        &json!(n),
                        "must be between 1 and 65535, inclusive",
                    ));
                }
            }
        }
    }
    let policy = spec.get("restartPolicy").cloned().unwrap_or(Value::Null);
    if !matches!(policy.as_str(), Some("Always" | "OnFailure" | "Never")) {
        errs.push(FieldError::not_supported(
            format!("{path}.restartPolicy"),
            &policy,
            &["Always", "OnFailure", "Never"],
        ));
    }
    let dns = spec.get("dnsPolicy").cloned().unwrap_or(Value::Null);
    if !matches!(
        dns.as_str(),
        Some("ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None")
    ) {
        errs.push(FieldError::not_supported(
            format!("{path}.dnsPolicy"),
            &dns,
            &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"],
        ));
    }
}

impl Hooks for Pods {
    fn prepare_create(&self, obj: &mut Value, _ctx: &Context<'_>) {
        set_default(obj, "spec", json!({}));
        default_pod_spec(&mut obj["spec"]);
        let qos = qos_class(&obj["spec"]);
        obj["status"] = json!({"phase": "Pending", "qosClass": qos});
    }

    fn prepare_update(&self, new: &mut Value, old: &Value) {
        set_default(new, "spec", json!({}));
        default_pod_spec(&mut new["spec"]);
        // Which node a pod is on changes only through binding.
        if let Some(node) = old.pointer("/spec/nodeName") {
            new["spec"]["nodeName"] = node.clone();
        }
    }

    fn validate(&self, obj: &Value, _ctx: &Context<'_>) -> FieldErrors {
        let mut errs = FieldErrors::default();
        let name = meta::name(obj);
        errs.extend(check("metadata.name", name, dns1123_subdomain(name)));
        validate_pod_spec(obj.get("spec").unwrap_or(&Value::Null), "spec", &mut errs);
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value, ctx: &Context<'_>) -> FieldErrors {
        let mut errs = self.validate(new, ctx);
        // Only images (and a few fields not modelled here) may change in a pod's spec.
        let strip = |spec: &Value| {
            let mut s = spec.clone();
            for list in ["containers", "initContainers"] {
                if let Some(cs) = s.get_mut(list).and_then(Value::as_array_mut) {
                    for c in cs {
                        if let Some(c) = c.as_object_mut() {
                            c.remove("image");
                        }
                    }
                }
            }
            for field in [
                "activeDeadlineSeconds",
                "tolerations",
                "terminationGracePeriodSeconds",
            ] {
                if let Some(s) = s.as_object_mut() {
                    s.remove(field);
                }
            }
            s
        };
        if strip(&new["spec"]) != strip(&old["spec"]) {
            errs.push(FieldError::forbidden(
                "spec",
                "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
            ));
        }
        errs
    }

    fn fields(&self, obj: &Value) -> Vec<(&'static str, String)> {
        vec![
            ("spec.nodeName", str_at(obj, "/spec/nodeName").to_string()),
            (
                "spec.restartPolicy",
                str_at(obj, "/spec/restartPolicy").to_string(),
            ),
            (
                "spec.schedulerName",
                str_at(obj, "/spec/schedulerName").to_string(),
            ),
            (
                "spec.serviceAccountName",
                str_at(obj, "/spec/serviceAccountName").to_string(),
            ),
            (
                "spec.hostNetwork",
                obj.pointer("/spec/hostNetwork")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
                    .to_string(),
            ),
            ("status.phase", str_at(obj, "/status/phase").to_string()),
            ("status.podIP", str_at(obj, "/status/podIP").to_string()),
            (
                "status.nominatedNodeName",
                str_at(obj, "/status/nominatedNodeName").to_string(),
            ),
        ]
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name_column(),
            Column::new("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
            Column::new("Status", "string", "The aggregate status of the containers in this pod."),
            Column::new("Restarts", "string", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
            Column::age_column(),
            Column::wide("IP", "string", "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated."),
            Column::wide("Node", "string", "NodeName is a request to schedule this pod onto a specific node. If it is non-empty, the scheduler simply schedules this pod onto that node, assuming that it fits resource requirements."),
            Column::wide("Nominated Node", "string", "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods."),
            Column::wide("Readiness Gates", "string", "If specified, all readiness gates will be evaluated for pod readiness."),
        ]
    }

    fn row(&self, obj: &Value) -> Vec<Value> {
        let statuses = obj
            .pointer("/status/containerStatuses")
            .and_then(Value::as_array);
        let total = obj
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        let ready = statuses.map_or(0, |s| {
            s.iter().filter(|c| c["ready"] == json!(true)).count()
        });
        let restarts: i64 = statuses.map_or(0, |s| {
            s.iter().filter_map(|c| c["restartCount"].as_i64()).sum()
        });
        let mut reason = str_at(obj, "/status/phase").to_string();
        if let Some(r) = obj.pointer("/status/reason").and_then(Value::as_str) {
            reason = r.to_string();
        }
        for c in statuses.into_iter().flatten() {
            if let Some(r) = c.pointer("/state/waiting/reason").and_then(Value::as_str) {
                reason = r.to_string();
            } else if let Some(r) = c
                .pointer("/state/terminated/reason")
                .and_then(Value::as_str)
            {
                reason = r.to_string();
            }
        }
        if meta::deletion_timestamp(obj).is_some() {
            reason = "Terminating".into();
        }
        let or_none = |s: &str| {
            if s.is_empty() {
                "<none>".to_string()
            } else {
                s.to_string()
            }
        };
        let gates = obj
            .pointer("/spec/readinessGates")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        vec![
            name_cell(obj),
            json!(format!("{ready}/{total}")),
            json!(reason),
            json!(restarts.to_string()),
            json!(age(obj)),
            json!(or_none(str_at(obj, "/status/podIP"))),
            json!(or_none(str_at(obj, "/spec/nodeName"))),
            json!(or_none(str_at(obj, "/status/nominatedNodeName"))),
            json!(if gates == 0 {
                "<none>".to_string()
            } else {
                format!("0/{gates}")
            }),
        ]
    }
}

pub struct Nodes;

impl Hooks for Nodes {
    fn validate(&self, obj: &Value, _ctx: &Context<'_>) -> FieldErrors {
        let name = meta::name(obj);
        check("metadata.name", name, dns1123_subdomain(name))
    }

    fn fields(&self, obj: &Value) -> Vec<(&'static str, String)> {
        vec![(
            "spec.unschedulable",
            obj.pointer("/spec/unschedulable")
                .and_then(Value::as_bool)
                .unwrap_or(false)
                .to_string(),
        )]
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name_column(),
            Column::new("Status", "string", "The status of the node"),
            Column::new("Roles", "string", "The roles of the node"),
            Column::age_column(),
            Column::new("Version", "string", "Kubelet Version reported by the node."),
            Column::wide("Internal-IP", "string", "List of addresses reachable to the node. Queried from cloud provider, if available."),
            Column::wide("External-IP", "string", "List of addresses reachable to the node. Queried from cloud provider, if available."),
            Column::wide("OS-Image", "string", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."),
            Column::wide("Kernel-Version", "string", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."),
            Column::wide("Container-Runtime", "string", "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2)."),
        ]
    }

    fn row(&self, obj: &Value) -> Vec<Value> {
        let ready = obj
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
            .map(|c| {
                if c["status"] == "True" {
                    "Ready"
                } else {
                    "NotReady"
                }
            })
            .unwrap_or("Unknown");
        let mut status = ready.to_string();
        if obj.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
            status.push_str(",SchedulingDisabled");
        }
        let roles: Vec<String> = meta::labels(obj)
            .keys()
            .filter_map(|k| {
                k.strip_prefix("node-role.kubernetes.io/")
                    .map(str::to_string)
            })
            .collect();
        let address = |kind: &str| {
            obj.pointer("/status/addresses")
                .and_then(Value::as_array)
                .and_then(|a| a.iter().find(|x| x["type"] == kind))
                .and_then(|x| x["address"].as_str())
                .unwrap_or("<none>")
                .to_string()
        };
        let info = |k: &str| str_at(obj, &format!("/status/nodeInfo/{k}")).to_string();
        vec![
            name_cell(obj),
            json!(status),
            json!(if roles.is_empty() {
                "<none>".to_string()
            } else {
                roles.join(",")
            }),
            json!(age(obj)),
            json!(info("kubeletVersion")),
            json!(address("InternalIP")),
            json!(address("ExternalIP")),
            json!(info("osImage")),
            json!(info("kernelVersion")),
            json!(info("containerRuntimeVersion")),
        ]
    }
}

pub struct Services;

fn wants_node_ports(spec: &Value) -> bool {
    matches!(spec["type"].as_str(), Some("NodePort" | "LoadBalancer"))
}

/// Picks a node port for every port of a NodePort/LoadBalancer Service that has none.
fn allocate_node_ports(spec: &mut Value) {
    if !wants_node_ports(spec) {
        return;
    }
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for port in ports {
            if port
                .get("nodePort")
                .is_none_or(|p| p.as_i64().unwrap_or(0) == 0)
            {
                port["nodePort"] = json!(crate::ipalloc::random_node_port());
            }
        }
    }
}

impl Hooks for Services {
    fn claims(&self, obj: &Value) -> Vec<String> {
        let mut claims = Vec::new();
        let ip = str_at(obj, "/spec/clusterIP");
        if !ip.is_empty() && ip != "None" {
            claims.push(crate::ipalloc::ip_claim(ip));
        }
        for port in obj
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(np) = port["nodePort"].as_i64().filter(|n| *n > 0) {
                claims.push(crate::ipalloc::node_port_claim(
                    port["protocol"].as_str().unwrap_or("TCP"),
                    np,
                ));
            }
        }
        claims
    }

    fn allocates(&self, request: &Value) -> bool {
        let ip = str_at(request, "/spec/clusterIP");
        let ports_missing = request
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .is_some_and(|ps| {
                ps.iter().any(|p| {
                    p.get("nodePort")
                        .is_none_or(|n| n.as_i64().unwrap_or(0) == 0)
                })
            });
        ip.is_empty() || ports_missing
    }

    fn claim_conflict(&self, obj: &Value, taken: &[String]) -> FieldErrors {
        let mut errs = FieldErrors::default();
        let ip = str_at(obj, "/spec/clusterIP");
        if taken.contains(&crate::ipalloc::ip_claim(ip)) {
            errs.push(FieldError::invalid(
                "spec.clusterIPs",
                &json!([ip]),
                format!("failed to allocate IP {ip}: provided IP is already allocated"),
            ));
        }
        for (i, port) in obj
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let Some(np) = port["nodePort"].as_i64() else {
                continue;
            };
            if taken.contains(&crate::ipalloc::node_port_claim(
                port["protocol"].as_str().unwrap_or("TCP"),
                np,
            )) {
                errs.push(FieldError::invalid(
                    format!("spec.ports[{i}].nodePort"),
                    &json!(np),
                    "provided port is already allocated",
                ));
            }
        }
        errs
    }

    fn prepare_create(&self, obj: &mut Value, ctx: &Context<'_>) {
        set_default(obj, "spec", json!({}));
        let kind = obj["spec"]
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP")
            .to_string();
        if kind != "ExternalName" {
            let ip = str_at(obj, "/spec/clusterIP").to_string();
            let ip = match (ip.as_str(), ctx.service_cidr) {
                ("", Some(cidr)) => cidr.random().to_string(),
                _ => ip,
            };
            if !ip.is_empty() {
                obj["spec"]["clusterIP"] = json!(ip);
                obj["spec"]["clusterIPs"] = json!([ip]);
            }
        }
        let spec = &mut obj["spec"];
        set_default(spec, "type", json!("ClusterIP"));
        set_default(spec, "sessionAffinity", json!("None"));
        set_default(spec, "internalTrafficPolicy", json!("Cluster"));
        set_default(spec, "ipFamilies", json!(["IPv4"]));
        set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
        let node_port_type = matches!(spec["type"].as_str(), Some("NodePort" | "LoadBalancer"));
        if node_port_type {
            set_default(spec, "externalTrafficPolicy", json!("Cluster"));
        }
        allocate_node_ports(spec);
        if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
            for port in ports {
                set_default(port, "protocol", json!("TCP"));
                if port.get("targetPort").is_none_or(Value::is_null) {
                    let p = port.get("port").cloned().unwrap_or(Value::Null);
                    port["targetPort"] = p;
                }
            }
        }
        obj["status"] = json!({"loadBalancer": {}});
    }

    fn prepare_update(&self, new: &mut Value, old: &Value) {
        // Allocated addresses and node ports stay with the Service.
        for field in ["clusterIP", "clusterIPs"] {
            if new
                .pointer(&format!("/spec/{field}"))
                .is_none_or(Value::is_null)
            {
                if let Some(v) = old.pointer(&format!("/spec/{field}")) {
                    new["spec"][field] = v.clone();
                }
            }
        }
        let old_ports: Vec<(i64, i64)> = old
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| Some((p["port"].as_i64()?, p["nodePort"].as_i64()?)))
            .collect();
        if wants_node_ports(&new["spec"]) {
            if let Some(ports) = new.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
                for port in ports {
                    if port.get("nodePort").is_none_or(Value::is_null) {
                        if let Some((_, np)) = old_ports
                            .iter()
                            .find(|(p, _)| Some(*p) == port["port"].as_i64())
                        {
                            port["nodePort"] = json!(np);
                        }
                    }
                }
            }
            allocate_node_ports(&mut new["spec"]);
        }
    }

    fn validate_update(&self, new: &Value, old: &Value, ctx: &Context<'_>) -> FieldErrors {
        let mut errs = self.validate(new, ctx);
        let (was, is) = (
            str_at(old, "/spec/clusterIP"),
            str_at(new, "/spec/clusterIP"),
        );
        if !was.is_empty() && was != is && str_at(new, "/spec/type") != "ExternalName" {
            errs.push(FieldError::invalid(
                "spec.clusterIPs[0]",
                &json!(is),
                "may not change once set",
            ));
        }
        errs
    }

    fn validate(&self, obj: &Value, ctx: &Context<'_>) -> FieldErrors {
        let mut errs = FieldErrors::default();
        let ip = str_at(obj, "/spec/clusterIP");
        if let (Some(cidr), Ok(addr)) = (ctx.service_cidr, ip.parse::<std::net::Ipv4Addr>()) {
            if !cidr.contains(addr) {
                errs.push(FieldError::invalid(
                    "spec.clusterIPs",
                    &json!([ip]),
                    format!("failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. The range of valid IPs is {cidr}"),
                ));
            }
        }
        for (i, port) in obj
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            if let Some(np) = port["nodePort"].as_i64() {
                if !crate::ipalloc::NODE_PORT_RANGE.contains(&(np as u16)) || np > 65535 {
                    errs.push(FieldError::invalid(
                        format!("spec.ports[{i}].nodePort"),
                        &json!(np),
                        "provided port is not in the valid range. The range of valid ports is 30000-32767",
                    ));
                }
            }
        }
        let name = meta::name(obj);
        errs.extend(check("metadata.name", name, dns1035_label(name)));
        let kind = obj.pointer("/spec/type").cloned().unwrap_or(Value::Null);
        if !matches!(
            kind.as_str(),
            Some("ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName")
        ) {
            errs.push(FieldError::not_supported(
                "spec.type",
                &kind,
                &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
            ));
        }
        let ports = obj.pointer("/spec/ports").and_then(Value::as_array);
        if kind != "ExternalName"
            && ports.is_none_or(Vec::is_empty)
            && obj.pointer("/spec/clusterIP") != Some(&json!("None"))
        {
            errs.push(FieldError::required("spec.ports", ""));
        }
        for (i, port) in ports.into_iter().flatten().enumerate() {
            let n = port.get("port").and_then(Value::as_i64).unwrap_or(0);
            if !(1..=65535).contains(&n) {
                errs.push(FieldError::invalid(
                    format!("spec.ports[{i}].port"),
                    &json!(n),
                    "must be between 1 and 65535, inclusive",
                ));
            }
            if ports.is_some_and(|p| p.len() > 1)
                && port
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .is_empty()
            {
                errs.push(FieldError::required(format!("spec.ports[{i}].name"), ""));
            }
        }
        errs
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name_column(),
            Column::new("Type", "string", "type determines how the Service is exposed."),
            Column::new("Cluster-IP", "string", "clusterIP is the IP address of the service and is usually assigned randomly."),
            Column::new("External-IP", "string", "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service."),
            Column::new("Port(s)", "string", "The list of ports that are exposed by this service."),
            Column::age_column(),
            Column::wide("Selector", "string", "Route service traffic to pods with label keys and values matching this selector."),
        ]
    }

    fn row(&self, obj: &Value) -> Vec<Value> {
        let kind = str_at(obj, "/spec/type");
        let external = match kind {
            "ExternalName" => str_at(obj, "/spec/externalName").to_string(),
            _ => {
                let mut ips: Vec<String> = obj
                    .pointer("/status/loadBalancer/ingress")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|i| {
                        i["ip"]
                            .as_str()
                            .or(i["hostname"].as_str())
                            .map(str::to_string)
                    })
                    .collect();
                ips.extend(
                    obj.pointer("/spec/externalIPs")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|v| v.as_str().map(str::to_string)),
                );
                match (ips.is_empty(), kind) {
                    (true, "LoadBalancer") => "<pending>".into(),
                    (true, _) => "<none>".into(),
                    (false, _) => ips.join(","),
                }
            }
        };
        let ports: Vec<String> = obj
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|p| {
                let proto = p["protocol"].as_str().unwrap_or("TCP");
                match p["nodePort"].as_i64() {
                    Some(np) => format!("{}:{np}/{proto}", p["port"]),
                    None => format!("{}/{proto}", p["port"]),
                }
            })
            .collect();
        let selector: Vec<String> = obj
            .pointer("/spec/selector")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                    .collect()
            })
            .unwrap_or_default();
        let cluster_ip = str_at(obj, "/spec/clusterIP");
        vec![
            name_cell(obj),
            json!(kind),
            json!(if cluster_ip.is_empty() {
                "<none>"
            } else {
                cluster_ip
            }),
            json!(external),
            json!(if ports.is_empty() {
                "<none>".to_string()
            } else {
                ports.join(",")
            }),
            json!(age(obj)),
            json!(if selector.is_empty() {
                "<none>".to_string()
            } else {
                selector.join(",")
            }),
        ]
    }
}

pub struct ConfigMaps;

impl Hooks for ConfigMaps {
    fn validate(&self, obj: &Value, _ctx: &Context<'_>) -> FieldErrors {
        let name = meta::name(obj);
        let mut errs = check("metadata.name", name, dns1123_subdomain(name));
        errs.extend(super::config::validate_config_map_data(obj));
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value, ctx: &Context<'_>) -> FieldErrors {
        let mut errs = self.validate(new, ctx);
        errs.extend(super::config::validate_immutable_data(
            new,
            old,
            &["data", "binaryData"],
        ));
        errs
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name_column(),
            Column::new("Data", "string", "Number of data entries"),
            Column::age_column(),
        ]
    }

    fn row(&self, obj: &Value) -> Vec<Value> {
        let n = ["data", "binaryData"]
            .iter()
            .filter_map(|k| obj.get(*k).and_then(Value::as_object))
            .map(|m| m.len())
            .sum::<usize>();
        vec![name_cell(obj), json!(n), json!(age(obj))]
    }
}

pub struct Secrets;

impl Hooks for Secrets {
    fn prepare_create(&self, obj: &mut Value, _ctx: &Context<'_>) {
        set_default(obj, "type", json!("Opaque"));
        super::config::merge_string_data(obj);
    }

    fn prepare_update(&self, new: &mut Value, _old: &Value) {
        set_default(new, "type", json!("Opaque"));
        super::config::merge_string_data(new);
    }

    fn validate(&self, obj: &Value, _ctx: &Context<'_>) -> FieldErrors {
        let name = meta::name(obj);
        let mut errs = check("metadata.name", name, dns1123_subdomain(name));
        errs.extend(super::config::validate_secret_data(obj));
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value, ctx: &Context<'_>) -> FieldErrors {
        let mut errs = self.validate(new, ctx);
        if new.get("type") != old.get("type") {
            errs.push(FieldError::invalid(
                "type",
                new.get("type").unwrap_or(&Value::Null),
                "field is immutable",
            ));
        }
        errs.extend(super::config::validate_immutable_data(new, old, &["data"]));
        errs
    }

    fn fields(&self, obj: &Value) -> Vec<(&'static str, String)> {
        vec![(
            "type",
            obj.get("type")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        )]
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name_column(),
            Column::new("Type", "string", "The type of the secret"),
            Column::new("Data", "string", "The number of entries in the secret"),
            Column::age_column(),
        ]
    }

    fn row(&self, obj: &Value) -> Vec<Value> {
        let n = obj
            .get("data")
            .and_then(Value::as_object)
            .map_or(0, |m| m.len());
        vec![
            name_cell(obj),
            json!(obj.get("type").and_then(Value::as_str).unwrap_or("")),
            json!(n),
            json!(age(obj)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_follows_the_tag() {
        assert_eq!(pull_policy("nginx"), "Always");
        assert_eq!(pull_policy("nginx:latest"), "Always");
        assert_eq!(pull_policy("nginx:1.25"), "IfNotPresent");
        assert_eq!(pull_policy("localhost:5000/busybox"), "Always");
        assert_eq!(pull_policy("localhost:5000/busybox:1"), "IfNotPresent");
        assert_eq!(pull_policy("busybox@sha256:abc"), "IfNotPresent");
    }

    #[test]
    fn qos_classes() {
        assert_eq!(
            qos_class(&json!({"containers": [{"name": "a"}]})),
            "BestEffort"
        );
        assert_eq!(
            qos_class(
                &json!({"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]})
            ),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&json!({"containers": [{"resources": {"requests": {"cpu": "1"}}}]})),
            "Burstable"
        );
    }

    #[test]
    fn pod_defaults_and_validation() {
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox:1", "ports": [{"containerPort": 80}]}]}});
        Pods.prepare_create(
            &mut pod,
            &Context {
                namespace: "default",
                service_cidr: None,
            },
        );
        assert_eq!(pod["spec"]["restartPolicy"], "Always");
        assert_eq!(pod["spec"]["terminationGracePeriodSeconds"], 30);
        assert_eq!(
            pod["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
        assert_eq!(pod["spec"]["containers"][0]["ports"][0]["protocol"], "TCP");
        assert_eq!(pod["status"]["phase"], "Pending");
        let ctx = Context {
            namespace: "default",
            service_cidr: None,
        };
        assert!(Pods.validate(&pod, &ctx).is_empty());
        let bad = json!({"metadata": {"name": "p"}, "spec": {"restartPolicy": "Sometimes", "containers": []}});
        let errs = Pods.validate(&bad, &ctx).to_string();
        assert!(errs.contains("spec.containers: Required value"), "{errs}");
        assert!(
            errs.contains("spec.restartPolicy: Unsupported value: \"Sometimes\""),
            "{errs}"
        );
    }
}
