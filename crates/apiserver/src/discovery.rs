//! Discovery: `/api`, `/apis`, per group/version resource lists, and aggregated discovery
//! (apidiscovery.k8s.io/v2), which kubectl asks for first to learn everything in two
//! requests. Each takes the served resources (`App::resources`: built-in and custom).

use serde_json::{json, Value};

use crate::resources::ResourceDef;

type Defs<'a> = &'a [&'static ResourceDef];

/// Group/versions of `defs`, in order of first appearance (core first, preferred first).
fn group_versions(defs: Defs) -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in defs {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

fn sub_verbs(sub: &str) -> &'static [&'static str] {
    match sub {
        "binding" | "eviction" | "token" => &["create"],
        "finalize" => &["update"],
        "log" => &["get"],
        "exec" | "attach" | "portforward" => &["create", "get"],
        "proxy" => &["create", "delete", "get", "patch", "update"],
        _ => &["get", "patch", "update"],
    }
}

fn sub_kind(def: &ResourceDef, sub: &str) -> (&'static str, &'static str, &'static str) {
    match sub {
        "scale" => ("autoscaling", "v1", "Scale"),
        "binding" => ("", "v1", "Binding"),
        "eviction" => ("policy", "v1", "Eviction"),
        "token" => ("authentication.k8s.io", "v1", "TokenRequest"),
        "exec" => ("", "v1", "PodExecOptions"),
        "attach" => ("", "v1", "PodAttachOptions"),
        "portforward" => ("", "v1", "PodPortForwardOptions"),
        "proxy" if def.plural == "nodes" => ("", "v1", "NodeProxyOptions"),
        _ => (def.group, def.version, def.kind),
    }
}

fn group_version_string(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

/// `/api`
pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn groups(defs: Defs) -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for (g, v) in group_versions(defs) {
        if g.is_empty() {
            continue;
        }
        match out.iter_mut().find(|(name, _)| *name == g) {
            Some((_, versions)) => versions.push(v),
            None => out.push((g, vec![v])),
        }
    }
    out
}

/// `/apis`
pub fn group_list(defs: Defs) -> Value {
    let groups: Vec<Value> = groups(defs)
        .into_iter()
        .map(|(g, versions)| {
            let vs: Vec<Value> = versions
                .iter()
                .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                .collect();
            json!({"name": g, "versions": vs, "preferredVersion": vs[0]})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>`
pub fn group(defs: Defs, name: &str) -> Option<Value> {
    let (g, versions) = groups(defs).into_iter().find(|(g, _)| *g == name)?;
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    Some(
        json!({"kind": "APIGroup", "apiVersion": "v1", "name": g, "versions": vs, "preferredVersion": vs[0]}),
    )
}

/// `/api/v1`, `/apis/<group>/<version>`
pub fn resource_list(all: Defs, group: &str, version: &str) -> Option<Value> {
    let defs: Vec<&ResourceDef> = all
        .iter()
        .copied()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if defs.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for def in defs {
        let mut r = json!({
            "name": def.plural, "singularName": def.singular, "namespaced": def.namespaced,
            "kind": def.kind, "verbs": VERBS,
        });
        if !def.short_names.is_empty() {
            r["shortNames"] = json!(def.short_names);
        }
        if !def.categories.is_empty() {
            r["categories"] = json!(def.categories);
        }
        resources.push(r);
        for sub in def.subresources {
            let (g, v, k) = sub_kind(def, sub);
            let mut s = json!({"name": format!("{}/{sub}", def.plural), "singularName": "", "namespaced": def.namespaced, "kind": k, "verbs": sub_verbs(sub)});
            if g != def.group || v != def.version {
                s["group"] = json!(g);
                s["version"] = json!(v);
            }
            resources.push(s);
        }
    }
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version_string(group, version), "resources": resources}),
    )
}

fn aggregated_resource(def: &ResourceDef) -> Value {
    let subs: Vec<Value> = def
        .subresources
        .iter()
        .map(|sub| {
            let (g, v, k) = sub_kind(def, sub);
            json!({"subresource": sub, "responseKind": {"group": g, "version": v, "kind": k}, "verbs": sub_verbs(sub)})
        })
        .collect();
    let mut r = json!({
        "resource": def.plural,
        "responseKind": {"group": def.group, "version": def.version, "kind": def.kind},
        "scope": if def.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": def.singular,
        "verbs": VERBS,
    });
    if !def.short_names.is_empty() {
        r["shortNames"] = json!(def.short_names);
    }
    if !def.categories.is_empty() {
        r["categories"] = json!(def.categories);
    }
    if !subs.is_empty() {
        r["subresources"] = json!(subs);
    }
    r
}

/// The aggregated document: for `/api` the core group only, for `/apis` every other group.
pub fn aggregated(defs: Defs, core: bool) -> Value {
    let mut items = Vec::new();
    let mut names: Vec<&str> = if core {
        vec![""]
    } else {
        groups(defs).into_iter().map(|(g, _)| g).collect()
    };
    names.dedup();
    for g in names {
        let versions: Vec<&str> = group_versions(defs)
            .into_iter()
            .filter(|(gg, _)| *gg == g)
            .map(|(_, v)| v)
            .collect();
        let vs: Vec<Value> = versions
            .iter()
            .map(|v| {
                let res: Vec<Value> = defs
                    .iter()
                    .filter(|r| r.group == g && r.version == *v)
                    .map(|r| aggregated_resource(r))
                    .collect();
                json!({"version": v, "resources": res, "freshness": "Current"})
            })
            .collect();
        items.push(json!({"metadata": {"name": g, "creationTimestamp": null}, "versions": vs}));
    }
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

/// Whether the client asked for aggregated discovery (v2 or v2beta1).
pub fn wants_aggregated(accept: &str) -> Option<&'static str> {
    for part in accept.split(',') {
        if part.contains("as=APIGroupDiscoveryList") && part.contains("g=apidiscovery.k8s.io") {
            if part.contains("v=v2beta1") {
                return Some("v2beta1");
            }
            if part.contains("v=v2") {
                return Some("v2");
            }
        }
    }
    None
}

/// `/version`, reporting Kubernetes 1.33 (what clients decide features by).
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0+skiff",
        "gitCommit": option_env!("SKIFF_GIT_COMMIT").unwrap_or("unknown"),
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": format!("linux/{}", if cfg!(target_arch = "aarch64") { "arm64" } else { "amd64" }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtin() -> Vec<&'static ResourceDef> {
        crate::resources::RESOURCES.iter().collect()
    }

    #[test]
    fn core_list_has_pods_with_subresources_and_short_names() {
        let list = resource_list(&builtin(), "", "v1").unwrap();
        let res = list["resources"].as_array().unwrap();
        let pods = res.iter().find(|r| r["name"] == "pods").unwrap();
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["categories"], json!(["all"]));
        assert!(res
            .iter()
            .any(|r| r["name"] == "pods/binding" && r["verbs"] == json!(["create"])));
        let scale = res
            .iter()
            .find(|r| r["name"] == "replicationcontrollers/scale")
            .unwrap();
        assert_eq!(scale["group"], "autoscaling");
        assert!(resource_list(&builtin(), "nope", "v1").is_none());
    }

    #[test]
    fn aggregated_documents_split_core_from_groups() {
        let core = aggregated(&builtin(), true);
        assert_eq!(core["items"].as_array().unwrap().len(), 1);
        assert_eq!(core["items"][0]["metadata"]["name"], "");
        let apis = aggregated(&builtin(), false);
        let names: Vec<&str> = apis["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"apps") && names.contains(&"batch") && !names.contains(&""));
        assert_eq!(wants_aggregated("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"), Some("v2"));
        assert_eq!(wants_aggregated("application/json"), None);
    }
}
