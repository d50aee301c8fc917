//! The Pod Security Standards checks (pure): which rules of a level a pod spec breaks,
//! as upstream's `(reason, detail)` pairs, in upstream's order (baseline checks, then
//! restricted ones, each list by check ID; a restricted check replaces the baseline one
//! it tightens).

use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    pub fn parse(s: &str) -> Option<Level> {
        match s {
            "privileged" => Some(Level::Privileged),
            "baseline" => Some(Level::Baseline),
            "restricted" => Some(Level::Restricted),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

/// One broken rule: upstream's forbidden reason and detail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub reason: &'static str,
    pub detail: String,
}

const BASELINE_CAPABILITIES: [&str; 13] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

const SAFE_SYSCTLS: [&str; 10] = [
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];

const RESTRICTED_VOLUMES: [&str; 8] = [
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

const SELINUX_TYPES: [&str; 5] = [
    "",
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

/// `container "a"` or `containers "a", "b"` (upstream's pluralized lists).
fn names(singular: &str, plural: &str, list: &[String]) -> String {
    let quoted: Vec<String> = list.iter().map(|n| format!("{n:?}")).collect();
    if list.len() == 1 {
        format!("{singular} {}", quoted[0])
    } else {
        format!("{plural} {}", quoted.join(", "))
    }
}

fn containers(spec: &Value) -> Vec<&Value> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .filter_map(|f| spec.get(*f).and_then(Value::as_array))
        .flatten()
        .collect()
}

fn cname(c: &Value) -> String {
    c.get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn sc<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    v.pointer(&format!("/securityContext{path}"))
}

fn is_true(v: Option<&Value>) -> bool {
    v.and_then(Value::as_bool) == Some(true)
}

/// Containers for which `pred` holds.
fn which(spec: &Value, pred: impl Fn(&Value) -> bool) -> Vec<String> {
    containers(spec)
        .into_iter()
        .filter(|c| pred(c))
        .map(cname)
        .collect()
}

fn push(out: &mut Vec<Violation>, reason: &'static str, details: Vec<String>) {
    if !details.is_empty() {
        out.push(Violation {
            reason,
            detail: details.join("; "),
        });
    }
}

fn apparmor(spec: &Value, annotations: &Value, out: &mut Vec<Violation>) {
    let bad_type = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .is_some_and(|t| t != "RuntimeDefault" && t != "Localhost")
    };
    let mut details = Vec::new();
    if let Some(t) = sc(spec, "/appArmorProfile/type").filter(|v| bad_type(Some(v))) {
        details.push(format!(
            "pod must not set securityContext.appArmorProfile.type to {t}"
        ));
    }
    for c in containers(spec) {
        if let Some(t) = sc(c, "/appArmorProfile/type").filter(|v| bad_type(Some(v))) {
            details.push(format!(
                "container {:?} must not set securityContext.appArmorProfile.type to {t}",
                cname(c)
            ));
        }
    }
    for (k, v) in annotations.as_object().into_iter().flatten() {
        let value = v.as_str().unwrap_or("");
        if k.starts_with("container.apparmor.security.beta.kubernetes.io/")
            && value != "runtime/default"
            && !value.starts_with("localhost/")
        {
            details.push(format!("annotation {k:?}={value:?}"));
        }
    }
    push(out, "forbidden AppArmor profile", details);
}

fn capabilities_baseline(spec: &Value, out: &mut Vec<Violation>) {
    let mut details = Vec::new();
    for c in containers(spec) {
        let bad: Vec<String> = sc(c, "/capabilities/add")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter(|cap| !BASELINE_CAPABILITIES.contains(cap))
            .map(|cap| format!("{cap:?}"))
            .collect();
        if !bad.is_empty() {
            details.push(format!(
                "container {:?} must not include {} in securityContext.capabilities.add",
                cname(c),
                bad.join(", ")
            ));
        }
    }
    push(out, "non-default capabilities", details);
}

fn host_namespaces(spec: &Value, out: &mut Vec<Violation>) {
    let set: Vec<String> = ["hostNetwork", "hostPID", "hostIPC"]
        .iter()
        .filter(|f| is_true(spec.get(**f)))
        .map(|f| format!("{f}=true"))
        .collect();
    if !set.is_empty() {
        out.push(Violation {
            reason: "host namespaces",
            detail: set.join(", "),
        });
    }
}

fn volumes(spec: &Value) -> impl Iterator<Item = (String, &str)> {
    spec.get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|v| {
            let name = v
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let kind = v
                .as_object()
                .and_then(|m| m.keys().find(|k| *k != "name"))
                .map_or("", String::as_str);
            (name, kind)
        })
}

fn host_path_volumes(spec: &Value, out: &mut Vec<Violation>) {
    let list: Vec<String> = volumes(spec)
        .filter(|(_, kind)| *kind == "hostPath")
        .map(|(n, _)| n)
        .collect();
    if !list.is_empty() {
        out.push(Violation {
            reason: "hostPath volumes",
            detail: names("volume", "volumes", &list),
        });
    }
}

fn host_ports(spec: &Value, out: &mut Vec<Violation>) {
    let mut details = Vec::new();
    for c in containers(spec) {
        let ports: Vec<String> = c
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("hostPort").and_then(Value::as_i64))
            .filter(|p| *p != 0)
            .map(|p| p.to_string())
            .collect();
        if !ports.is_empty() {
            let word = if ports.len() == 1 {
                "hostPort"
            } else {
                "hostPorts"
            };
            details.push(format!(
                "container {:?} uses {word} {}",
                cname(c),
                ports.join(", ")
            ));
        }
    }
    push(out, "hostPort", details);
}

fn privileged(spec: &Value, out: &mut Vec<Violation>) {
    let list = which(spec, |c| is_true(sc(c, "/privileged")));
    if !list.is_empty() {
        out.push(Violation {
            reason: "privileged",
            detail: format!(
                "{} must not set securityContext.privileged=true",
                names("container", "containers", &list)
            ),
        });
    }
}

fn proc_mount(spec: &Value, out: &mut Vec<Violation>) {
    let mut details = Vec::new();
    for c in containers(spec) {
        if let Some(m) = sc(c, "/procMount")
            .and_then(Value::as_str)
            .filter(|m| *m != "Default")
        {
            details.push(format!(
                "container {:?} must not set securityContext.procMount to {m:?}",
                cname(c)
            ));
        }
    }
    push(out, "procMount", details);
}

fn unconfined_seccomp(spec: &Value) -> Vec<String> {
    let unconfined =
        |v: &Value| sc(v, "/seccompProfile/type").and_then(Value::as_str) == Some("Unconfined");
    let mut details = Vec::new();
    if unconfined(spec) {
        details.push(
            "pod must not set securityContext.seccompProfile.type to \"Unconfined\"".to_string(),
        );
    }
    let list = which(spec, unconfined);
    if !list.is_empty() {
        details.push(format!(
            "{} must not set securityContext.seccompProfile.type to \"Unconfined\"",
            names("container", "containers", &list)
        ));
    }
    details
}

fn selinux(spec: &Value, out: &mut Vec<Violation>) {
    let bad = |v: &Value| -> Vec<String> {
        let mut what = Vec::new();
        if let Some(t) = sc(v, "/seLinuxOptions/type").and_then(Value::as_str) {
            if !SELINUX_TYPES.contains(&t) {
                what.push(format!("type {t:?}"));
            }
        }
        for f in ["user", "role"] {
            if let Some(x) = sc(v, &format!("/seLinuxOptions/{f}"))
                .and_then(Value::as_str)
                .filter(|x| !x.is_empty())
            {
                what.push(format!("{f} {x:?}"));
            }
        }
        what
    };
    let mut details = Vec::new();
    let pod = bad(spec);
    if !pod.is_empty() {
        details.push(format!(
            "pod set forbidden securityContext.seLinuxOptions: {}",
            pod.join(", ")
        ));
    }
    for c in containers(spec) {
        let what = bad(c);
        if !what.is_empty() {
            details.push(format!(
                "container {:?} set forbidden securityContext.seLinuxOptions: {}",
                cname(c),
                what.join(", ")
            ));
        }
    }
    push(out, "seLinuxOptions", details);
}

fn sysctls(spec: &Value, out: &mut Vec<Violation>) {
    let bad: Vec<&str> = sc(spec, "/sysctls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.get("name").and_then(Value::as_str))
        .filter(|n| !SAFE_SYSCTLS.contains(n))
        .collect();
    if !bad.is_empty() {
        out.push(Violation {
            reason: "forbidden sysctls",
            detail: bad.join(", "),
        });
    }
}

fn host_process(spec: &Value, out: &mut Vec<Violation>) {
    let flag = |v: &Value| is_true(sc(v, "/windowsOptions/hostProcess"));
    let mut who = Vec::new();
    if flag(spec) {
        who.push("pod".to_string());
    }
    let list = which(spec, flag);
    if !list.is_empty() {
        who.push(names("container", "containers", &list));
    }
    if !who.is_empty() {
        out.push(Violation {
            reason: "hostProcess",
            detail: format!(
                "{} must not set securityContext.windowsOptions.hostProcess=true",
                who.join(" and ")
            ),
        });
    }
}

fn allow_privilege_escalation(spec: &Value, out: &mut Vec<Violation>) {
    let list = which(spec, |c| {
        sc(c, "/allowPrivilegeEscalation").and_then(Value::as_bool) != Some(false)
    });
    if !list.is_empty() {
        out.push(Violation {
            reason: "allowPrivilegeEscalation != false",
            detail: format!(
                "{} must set securityContext.allowPrivilegeEscalation=false",
                names("container", "containers", &list)
            ),
        });
    }
}

fn capabilities_restricted(spec: &Value, out: &mut Vec<Violation>) {
    let mut details = Vec::new();
    let no_drop_all = which(spec, |c| {
        !sc(c, "/capabilities/drop")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|d| d.as_str() == Some("ALL"))
    });
    if !no_drop_all.is_empty() {
        details.push(format!(
            "{} must set securityContext.capabilities.drop=[\"ALL\"]",
            names("container", "containers", &no_drop_all)
        ));
    }
    for c in containers(spec) {
        let bad: Vec<String> = sc(c, "/capabilities/add")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter(|cap| *cap != "NET_BIND_SERVICE")
            .map(|cap| format!("{cap:?}"))
            .collect();
        if !bad.is_empty() {
            details.push(format!(
                "container {:?} must not include {} in securityContext.capabilities.add",
                cname(c),
                bad.join(", ")
            ));
        }
    }
    push(out, "unrestricted capabilities", details);
}

fn restricted_volumes(spec: &Value, out: &mut Vec<Violation>) {
    let details: Vec<String> = volumes(spec)
        .filter(|(_, kind)| !RESTRICTED_VOLUMES.contains(kind))
        .map(|(n, kind)| format!("volume {n:?} uses restricted volume type {kind:?}"))
        .collect();
    push(out, "restricted volume types", details);
}

fn run_as_non_root(spec: &Value, out: &mut Vec<Violation>) {
    let value = |v: &Value| sc(v, "/runAsNonRoot").and_then(Value::as_bool);
    let mut details = Vec::new();
    let pod = value(spec);
    if pod == Some(false) {
        details.push("pod must not set securityContext.runAsNonRoot=false".to_string());
    }
    let explicit_false = which(spec, |c| value(c) == Some(false));
    if !explicit_false.is_empty() {
        details.push(format!(
            "{} must not set securityContext.runAsNonRoot=false",
            names("container", "containers", &explicit_false)
        ));
    }
    if pod.is_none() {
        let unset = which(spec, |c| value(c).is_none());
        if !unset.is_empty() {
            details.push(format!(
                "pod or {} must set securityContext.runAsNonRoot=true",
                names("container", "containers", &unset)
            ));
        }
    }
    push(out, "runAsNonRoot != true", details);
}

fn run_as_user(spec: &Value, out: &mut Vec<Violation>) {
    let root = |v: &Value| sc(v, "/runAsUser").and_then(Value::as_i64) == Some(0);
    let mut details = Vec::new();
    if root(spec) {
        details.push("pod must not set runAsUser=0".to_string());
    }
    let list = which(spec, root);
    if !list.is_empty() {
        details.push(format!(
            "{} must not set runAsUser=0",
            names("container", "containers", &list)
        ));
    }
    push(out, "runAsUser=0", details);
}

fn seccomp_restricted(spec: &Value, out: &mut Vec<Violation>) {
    let kind = |v: &Value| {
        sc(v, "/seccompProfile/type")
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let mut details = unconfined_seccomp(spec);
    let pod_ok = matches!(kind(spec).as_deref(), Some("RuntimeDefault" | "Localhost"));
    if !pod_ok && kind(spec).is_none() {
        let unset = which(spec, |c| kind(c).is_none());
        if !unset.is_empty() {
            details.push(format!(
                "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
                names("container", "containers", &unset)
            ));
        }
    }
    push(out, "seccompProfile", details);
}

/// What a pod spec (with its metadata's annotations) breaks of `level`.
pub fn violations(level: Level, spec: &Value, annotations: &Value) -> Vec<Violation> {
    let mut out = Vec::new();
    if level == Level::Privileged {
        return out;
    }
    let restricted = level == Level::Restricted;
    // Baseline, by check ID.
    apparmor(spec, annotations, &mut out);
    if !restricted {
        capabilities_baseline(spec, &mut out);
    }
    host_namespaces(spec, &mut out);
    if !restricted {
        host_path_volumes(spec, &mut out);
    }
    host_ports(spec, &mut out);
    privileged(spec, &mut out);
    proc_mount(spec, &mut out);
    if !restricted {
        push(&mut out, "seccompProfile", unconfined_seccomp(spec));
    }
    selinux(spec, &mut out);
    sysctls(spec, &mut out);
    host_process(spec, &mut out);
    if restricted {
        allow_privilege_escalation(spec, &mut out);
        capabilities_restricted(spec, &mut out);
        restricted_volumes(spec, &mut out);
        run_as_non_root(spec, &mut out);
        run_as_user(spec, &mut out);
        seccomp_restricted(spec, &mut out);
    }
    out
}

/// `reason (detail), reason (detail)` as upstream joins them.
pub fn describe(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|v| format!("{} ({})", v.reason, v.detail))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_privileged_pod_breaks_restricted_as_upstream_words_it() {
        let spec = json!({"containers": [{"name": "c", "image": "x",
            "securityContext": {"privileged": true}}]});
        assert_eq!(
            describe(&violations(Level::Restricted, &spec, &json!({}))),
            "privileged (container \"c\" must not set securityContext.privileged=true), \
allowPrivilegeEscalation != false (container \"c\" must set securityContext.allowPrivilegeEscalation=false), \
unrestricted capabilities (container \"c\" must set securityContext.capabilities.drop=[\"ALL\"]), \
runAsNonRoot != true (pod or container \"c\" must set securityContext.runAsNonRoot=true), \
seccompProfile (pod or container \"c\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"
        );
        assert_eq!(violations(Level::Baseline, &spec, &json!({})).len(), 1);
        assert!(violations(Level::Privileged, &spec, &json!({})).is_empty());
    }

    #[test]
    fn a_hardened_pod_passes_restricted() {
        let spec = json!({
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "volumes": [{"name": "d", "emptyDir": {}}],
            "containers": [{"name": "c", "securityContext": {"allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}}]});
        assert_eq!(violations(Level::Restricted, &spec, &json!({})), vec![]);
    }

    #[test]
    fn baseline_catches_host_access() {
        let spec = json!({"hostNetwork": true, "hostPID": true,
            "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
            "securityContext": {"sysctls": [{"name": "kernel.msgmax", "value": "1"}]},
            "containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 80}],
                "securityContext": {"capabilities": {"add": ["NET_ADMIN", "CHOWN"]}, "procMount": "Unmasked"}}]});
        let got: Vec<(&str, String)> = violations(Level::Baseline, &spec, &json!({}))
            .into_iter()
            .map(|v| (v.reason, v.detail))
            .collect();
        assert_eq!(
            got,
            vec![
                ("non-default capabilities", "container \"c\" must not include \"NET_ADMIN\" in securityContext.capabilities.add".to_string()),
                ("host namespaces", "hostNetwork=true, hostPID=true".to_string()),
                ("hostPath volumes", "volume \"h\"".to_string()),
                ("hostPort", "container \"c\" uses hostPort 80".to_string()),
                ("procMount", "container \"c\" must not set securityContext.procMount to \"Unmasked\"".to_string()),
                ("forbidden sysctls", "kernel.msgmax".to_string()),
            ]
        );
    }
}
