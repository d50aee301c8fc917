//! Generates the protobuf wire schema of the Kubernetes API from the `k8s-pb`
//! crate's prost-generated sources.
//!
//! Every `#[prost(...)]` field of every message becomes a row (tag, JSON name,
//! kind, repeated); every `impl crate::Resource for X` gives the (apiVersion,
//! kind) that selects message X. The table is written to `$OUT_DIR/schema.rs`.
//!
//! prost snake-cased the proto field names, and those names are the JSON names,
//! so the JSON name is recovered by camel-casing with upper-case acronyms, plus
//! the overrides below for the names that do not round-trip. The unit tests
//! check every generated name against k8s-openapi.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Later snake_case segments that are upper-case acronyms in JSON.
const ACRONYMS: &[(&str, &str)] = &[
    ("api", "API"),
    ("cidr", "CIDR"),
    ("cpu", "CPU"),
    ("dns", "DNS"),
    ("fqdn", "FQDN"),
    ("id", "ID"),
    ("io", "IO"),
    ("ip", "IP"),
    ("ipc", "IPC"),
    ("ips", "IPs"),
    ("os", "OS"),
    ("pid", "PID"),
    ("tls", "TLS"),
    ("uid", "UID"),
    ("uri", "URI"),
    ("url", "URL"),
    ("uuid", "UUID"),
];

/// Two snake_case segments that prost split inside one acronym ("podCIDRs" →
/// "pod_cid_rs").
const SPLIT_ACRONYMS: &[(&str, &str, &str)] = &[
    ("cid", "rs", "CIDRs"),
    ("i", "ps", "IPs"),
    ("j", "son", "JSON"),
    ("ur", "ls", "URLs"),
    ("ww", "ns", "WWNs"),
];

const JSON_SCHEMA_V1: &str = "apiextensions_apiserver.pkg.apis.apiextensions.v1.JsonSchemaProps";
const JSON_SCHEMA_V1BETA1: &str =
    "apiextensions_apiserver.pkg.apis.apiextensions.v1beta1.JsonSchemaProps";

/// (message or "*", prost field name) → JSON name, where the rule above is wrong.
const NAME_OVERRIDES: &[(&str, &str, &str)] = &[
    ("*", "a_pi_group", "apiGroup"),
    ("api.core.v1.DaemonEndpoint", "port", "Port"),
    ("*", "u_id", "uid"),
    ("*", "open_apiv3_schema", "openAPIV3Schema"),
    (
        "*",
        "x_kubernetes_embedded_resource",
        "x-kubernetes-embedded-resource",
    ),
    (
        "*",
        "x_kubernetes_int_or_string",
        "x-kubernetes-int-or-string",
    ),
    (
        "*",
        "x_kubernetes_list_map_keys",
        "x-kubernetes-list-map-keys",
    ),
    ("*", "x_kubernetes_list_type", "x-kubernetes-list-type"),
    ("*", "x_kubernetes_map_type", "x-kubernetes-map-type"),
    (
        "*",
        "x_kubernetes_preserve_unknown_fields",
        "x-kubernetes-preserve-unknown-fields",
    ),
    ("*", "x_kubernetes_validations", "x-kubernetes-validations"),
    (JSON_SCHEMA_V1, "ref", "$ref"),
    (JSON_SCHEMA_V1, "schema", "$schema"),
    (JSON_SCHEMA_V1BETA1, "ref", "$ref"),
    (JSON_SCHEMA_V1BETA1, "schema", "$schema"),
];

/// Fields whose Go struct is embedded with `json:",inline"`: their message's
/// fields appear directly in the parent's JSON object. By message name without
/// its module, so one entry covers every API version.
const INLINE: &[(&str, &str)] = &[
    // Go always embeds LocalObjectReference inline (ConfigMapKeySelector,
    // SecretEnvSource, ConfigMapVolumeSource, SecretProjection, ...).
    ("*", "local_object_reference"),
    ("EphemeralContainer", "ephemeral_container_common"),
    ("IngressRule", "ingress_rule_value"),
    ("NamedRuleWithOperations", "rule_with_operations"),
    ("PersistentVolumeSpec", "persistent_volume_source"),
    ("Probe", "handler"),
    ("RuleWithOperations", "rule"),
    ("Volume", "volume_source"),
];

/// Non-pointer Go integers tagged `omitempty`, where 0 means "unset" and the
/// server defaults or allocates (Go writes them to the wire even when 0, JSON
/// clients leave them out). By message name without module, or "*". Pointer
/// fields (replicas, runAsUser, terminationGracePeriodSeconds, ...) are not
/// here: their 0 is a value and is kept.
const OMIT_ZERO: &[(&str, &str)] = &[
    ("*", "generation"),
    ("*", "observed_generation"),
    ("AWSElasticBlockStoreVolumeSource", "partition"),
    ("ContainerPort", "host_port"),
    ("DaemonSetSpec", "min_ready_seconds"),
    ("DeploymentSpec", "min_ready_seconds"),
    ("Event", "count"),
    ("EventSeries", "count"),
    ("FlowSchemaSpec", "matching_precedence"),
    ("GCEPersistentDiskVolumeSource", "partition"),
    ("Probe", "failure_threshold"),
    ("Probe", "initial_delay_seconds"),
    ("Probe", "period_seconds"),
    ("Probe", "success_threshold"),
    ("Probe", "timeout_seconds"),
    ("QueuingConfiguration", "hand_size"),
    ("QueuingConfiguration", "queue_length_limit"),
    ("QueuingConfiguration", "queues"),
    ("ReplicaSetSpec", "min_ready_seconds"),
    ("ReplicationControllerSpec", "min_ready_seconds"),
    ("ServiceBackendPort", "number"),
    ("ServicePort", "node_port"),
    ("ServiceSpec", "health_check_node_port"),
    ("StatefulSetSpec", "min_ready_seconds"),
    ("Status", "code"),
];

/// Messages whose JSON form is not an object.
const SPECIALS: &[(&str, &str)] = &[
    ("apimachinery.pkg.apis.meta.v1.Time", "Time"),
    ("apimachinery.pkg.apis.meta.v1.MicroTime", "MicroTime"),
    ("apimachinery.pkg.apis.meta.v1.Duration", "Duration"),
    ("apimachinery.pkg.apis.meta.v1.FieldsV1", "RawJson"),
    ("apimachinery.pkg.apis.meta.v1.Verbs", "StringList"),
    ("apimachinery.pkg.runtime.RawExtension", "RawJson"),
    ("apimachinery.pkg.api.resource.Quantity", "Quantity"),
    ("apimachinery.pkg.api.resource.QuantityValue", "Quantity"),
    ("apimachinery.pkg.util.intstr.IntOrString", "IntOrString"),
];

#[derive(Debug)]
enum Kind {
    String,
    Int32,
    Int64,
    Bool,
    Bytes,
    Double,
    Message(String),
    Map(Box<Kind>),
}

#[derive(Debug)]
struct Field {
    tag: u32,
    rust: String,
    json: String,
    kind: Kind,
    repeated: bool,
}

#[derive(Debug, Default)]
struct Message {
    fields: Vec<Field>,
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SKIFF_K8S_PB_SRC");
    let src = match std::env::var_os("SKIFF_K8S_PB_SRC") {
        Some(dir) => PathBuf::from(dir),
        None => locate_k8s_pb().unwrap_or_else(|e| {
            panic!(
                "skiff-k8sproto: cannot find the k8s-pb 0.9 sources the protobuf schema is \
                 generated from: {e}. Run `cargo fetch` (k8s-pb is a dependency of this \
                 crate), or set SKIFF_K8S_PB_SRC to k8s-pb's src directory."
            )
        }),
    };
    let mut messages: BTreeMap<String, Message> = BTreeMap::new();
    let mut resources: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut files = Vec::new();
    collect_files(&src, &mut files);
    files.sort();
    if files.is_empty() {
        panic!("skiff-k8sproto: no k8s-pb sources under {}", src.display());
    }
    for file in &files {
        let rel = file.strip_prefix(&src).expect("under src");
        let module: Vec<String> = rel
            .parent()
            .map(|p| {
                p.components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let text = std::fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("skiff-k8sproto: reading {}: {e}", file.display()));
        parse_file(&text, &module, &mut messages, &mut resources)
            .unwrap_or_else(|e| panic!("skiff-k8sproto: {}: {e}", file.display()));
    }
    if messages.len() < 500 || resources.len() < 80 {
        panic!(
            "skiff-k8sproto: only {} messages and {} resources parsed from {}: the k8s-pb \
             source layout changed",
            messages.len(),
            resources.len(),
            src.display()
        );
    }
    let out = render(&messages, &resources);
    let path = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("schema.rs");
    std::fs::write(&path, out).expect("write schema.rs");
}

/// k8s-pb's `src` directory: where `cargo metadata` says the package is, else
/// in the registry cache under `$CARGO_HOME`.
fn locate_k8s_pb() -> Result<PathBuf, String> {
    let from_metadata = match via_metadata() {
        Ok(dir) => return Ok(dir),
        Err(e) => e,
    };
    match in_registry_cache() {
        Some(dir) => Ok(dir),
        None => Err(format!(
            "{from_metadata}; and no k8s-pb-0.9.* in the registry cache of $CARGO_HOME"
        )),
    }
}

fn in_registry_cache() -> Option<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))?;
    let mut found: Vec<PathBuf> = std::fs::read_dir(home.join("registry").join("src"))
        .ok()?
        .flatten()
        .filter_map(|index| std::fs::read_dir(index.path()).ok())
        .flat_map(|dirs| dirs.flatten().map(|d| d.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("k8s-pb-0.9."))
        })
        .map(|p| p.join("src"))
        .filter(|p| p.join("api").is_dir())
        .collect();
    found.sort();
    found.pop()
}

fn via_metadata() -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let manifest = Path::new(&std::env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?)
        .join("Cargo.toml");
    let output = Command::new(&cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--manifest-path",
        ])
        .arg(&manifest)
        .output()
        .map_err(|e| format!("running `{cargo} metadata`: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "`cargo metadata` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let meta: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("`cargo metadata` printed invalid JSON: {e}"))?;
    let packages = meta["packages"]
        .as_array()
        .ok_or("`cargo metadata` listed no packages")?;
    for p in packages {
        let version = p["version"].as_str().unwrap_or("");
        if p["name"] == "k8s-pb" && version.starts_with("0.9.") {
            let manifest = p["manifest_path"]
                .as_str()
                .ok_or("k8s-pb has no manifest_path")?;
            let dir = Path::new(manifest)
                .parent()
                .ok_or("k8s-pb's manifest_path has no parent")?
                .join("src");
            if dir.join("api").is_dir() {
                return Ok(dir);
            }
            return Err(format!(
                "k8s-pb {version} is listed at {manifest} but {} holds no api/ sources",
                dir.display()
            ));
        }
    }
    Err("k8s-pb 0.9 is not among the packages `cargo metadata` lists".to_string())
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(&path, out);
        } else if path.file_name().is_some_and(|n| n == "mod.rs") {
            out.push(path);
        }
    }
}

fn parse_file(
    text: &str,
    module: &[String],
    messages: &mut BTreeMap<String, Message>,
    resources: &mut BTreeMap<(String, String), String>,
) -> Result<(), String> {
    let lines: Vec<&str> = text.lines().collect();
    let prefix = module.join(".");
    let mut i = 0;
    let mut current: Option<(String, Message)> = None;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim();
        if let Some(rest) = line.strip_prefix("pub struct ") {
            if let Some(name) = rest.strip_suffix(" {") {
                current = Some((format!("{prefix}.{}", name.trim()), Message::default()));
            } else if let Some(name) = rest.strip_suffix(" {}") {
                messages.insert(format!("{prefix}.{}", name.trim()), Message::default());
            }
        } else if line == "}" {
            if let Some((name, msg)) = current.take() {
                messages.insert(name, msg);
            }
        } else if let Some(rest) = line.strip_prefix("impl crate::Resource for ") {
            let ty = rest.trim_end_matches(" {").trim();
            let mut api_version = None;
            let mut kind = None;
            let mut j = i + 1;
            while j < lines.len() && lines[j] != "}" {
                let l = lines[j].trim();
                if let Some(v) = const_str(l, "API_VERSION") {
                    api_version = Some(v);
                }
                if let Some(v) = const_str(l, "KIND") {
                    kind = Some(v);
                }
                j += 1;
            }
            match (api_version, kind) {
                (Some(a), Some(k)) => {
                    resources.insert((a, k), format!("{prefix}.{ty}"));
                }
                _ => {
                    return Err(format!(
                        "line {}: Resource impl without API_VERSION/KIND",
                        i + 1
                    ))
                }
            }
            i = j;
        } else if trimmed.starts_with("#[prost(") && current.is_some() {
            let attr = trimmed
                .strip_prefix("#[prost(")
                .and_then(|s| s.strip_suffix(")]"))
                .ok_or_else(|| format!("line {}: unterminated prost attribute", i + 1))?;
            // The declaration follows, possibly over several lines.
            let mut decl = String::new();
            let mut j = i + 1;
            while j < lines.len() {
                let l = lines[j].trim();
                j += 1;
                if decl.is_empty() && (l.starts_with("///") || l.starts_with("#[")) {
                    continue;
                }
                decl.push_str(l);
                let depth: i32 = decl
                    .chars()
                    .map(|c| match c {
                        '<' => 1,
                        '>' => -1,
                        _ => 0,
                    })
                    .sum();
                if depth == 0 && decl.ends_with(',') {
                    break;
                }
            }
            let mut field = parse_field(attr, &decl, module)
                .map_err(|e| format!("line {}: {e} (in `{decl}`)", i + 1))?;
            if let Some((msg_name, msg)) = current.as_mut() {
                field.json = json_name(msg_name, &field.rust);
                msg.fields.push(field);
            }
            i = j;
            continue;
        }
        i += 1;
    }
    Ok(())
}

fn const_str(line: &str, name: &str) -> Option<String> {
    let rest = line.strip_prefix(&format!("const {name}: &'static str = \""))?;
    Some(rest.strip_suffix("\";")?.to_string())
}

fn parse_field(attr: &str, decl: &str, module: &[String]) -> Result<Field, String> {
    let decl = decl
        .strip_prefix("pub ")
        .ok_or("field declaration does not start with `pub`")?;
    let (name, ty) = decl.split_once(':').ok_or("no `:` in field declaration")?;
    let rust = name.trim().trim_start_matches("r#").to_string();
    let ty: String = ty
        .trim_end_matches(',')
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let parts = split_attr(attr);
    let first = parts.first().ok_or("empty prost attribute")?;
    let mut tag = None;
    let mut repeated = false;
    for p in &parts {
        if let Some(v) = p.strip_prefix("tag = \"") {
            tag = Some(
                v.trim_end_matches('"')
                    .parse::<u32>()
                    .map_err(|e| format!("bad tag {v}: {e}"))?,
            );
        }
        if *p == "repeated" {
            repeated = true;
        }
    }
    let tag = tag.ok_or("prost attribute without tag")?;
    let kind = if let Some(map) = first.strip_prefix("btree_map = \"") {
        let map = map.trim_end_matches('"');
        let (key, value) = map.split_once(", ").ok_or("bad btree_map")?;
        if key != "string" {
            return Err(format!("map key {key} is not supported"));
        }
        let value = match value {
            "message" => Kind::Message(resolve(module, &innermost(&ty, true))?),
            other => scalar(other).ok_or_else(|| format!("map value {other}"))?,
        };
        Kind::Map(Box::new(value))
    } else if *first == "message" {
        Kind::Message(resolve(module, &innermost(&ty, false))?)
    } else if first.starts_with("bytes") {
        Kind::Bytes
    } else {
        scalar(first).ok_or_else(|| format!("unsupported field kind {first}"))?
    };
    Ok(Field {
        tag,
        rust,
        json: String::new(),
        kind,
        repeated,
    })
}

fn scalar(kind: &str) -> Option<Kind> {
    Some(match kind {
        "string" => Kind::String,
        "int32" => Kind::Int32,
        "int64" => Kind::Int64,
        "bool" => Kind::Bool,
        "double" => Kind::Double,
        "bytes" => Kind::Bytes,
        _ => return None,
    })
}

/// Splits `message, optional, tag = "1"` at top-level commas (not inside quotes).
fn split_attr(attr: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in attr.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(attr[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(attr[start..].trim());
    out
}

/// The message path inside `Option<Box<X>>`, `Vec<X>` or `BTreeMap<String, X>`.
fn innermost(ty: &str, map: bool) -> String {
    let inner = match ty.rfind('<') {
        Some(open) => {
            let rest = &ty[open + 1..];
            rest[..rest.find('>').unwrap_or(rest.len())].to_string()
        }
        None => ty.to_string(),
    };
    let inner = inner.trim_end_matches(',');
    if map {
        inner.rsplit(',').next().unwrap_or("").to_string()
    } else {
        inner.to_string()
    }
}

fn resolve(module: &[String], path: &str) -> Result<String, String> {
    let mut base: Vec<&str> = module.iter().map(String::as_str).collect();
    let mut rest = path;
    if let Some(r) = rest.strip_prefix("crate::") {
        base.clear();
        rest = r;
    }
    while let Some(r) = rest.strip_prefix("super::") {
        base.pop()
            .ok_or_else(|| format!("too many `super::` in {path}"))?;
        rest = r;
    }
    if rest.is_empty() || rest.contains(['<', '>', ',']) {
        return Err(format!("cannot resolve message type {path}"));
    }
    base.extend(rest.split("::"));
    Ok(base.join("."))
}

fn json_name(message: &str, rust: &str) -> String {
    for (m, f, json) in NAME_OVERRIDES {
        if (*m == "*" || *m == message) && *f == rust {
            return (*json).to_string();
        }
    }
    let segments: Vec<&str> = rust.split('_').collect();
    let mut out = String::new();
    let mut i = 0;
    while i < segments.len() {
        if i + 1 < segments.len() {
            if let Some((_, _, joined)) = SPLIT_ACRONYMS
                .iter()
                .find(|(a, b, _)| *a == segments[i] && *b == segments[i + 1])
            {
                out.push_str(joined);
                i += 2;
                continue;
            }
        }
        let seg = segments[i];
        if i == 0 {
            out.push_str(seg);
        } else if let Some((_, up)) = ACRONYMS.iter().find(|(a, _)| *a == seg) {
            out.push_str(up);
        } else {
            let mut chars = seg.chars();
            if let Some(c) = chars.next() {
                out.extend(c.to_uppercase());
                out.push_str(chars.as_str());
            }
        }
        i += 1;
    }
    out
}

fn short_name(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name)
}

/// Whether a table entry's message ("*", or a Go type name, which prost may
/// have re-cased: AWSElasticBlockStore → AwsElasticBlockStore) is `name`.
fn msg_matches(pattern: &str, name: &str) -> bool {
    pattern == "*" || short_name(name).eq_ignore_ascii_case(pattern)
}

fn render(
    messages: &BTreeMap<String, Message>,
    resources: &BTreeMap<(String, String), String>,
) -> String {
    let index: HashMap<&str, usize> = messages
        .keys()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let lookup = |name: &str, from: &str| -> usize {
        *index.get(name).unwrap_or_else(|| {
            panic!("skiff-k8sproto: {from} refers to message {name}, which k8s-pb does not define")
        })
    };
    let kind_code = |k: &Kind, from: &str| -> String {
        match k {
            Kind::String => "Kind::String".into(),
            Kind::Int32 => "Kind::Int32".into(),
            Kind::Int64 => "Kind::Int64".into(),
            Kind::Bool => "Kind::Bool".into(),
            Kind::Bytes => "Kind::Bytes".into(),
            Kind::Double => "Kind::Double".into(),
            Kind::Message(m) => format!("Kind::Message({})", lookup(m, from)),
            Kind::Map(_) => unreachable!("maps are rendered by the caller"),
        }
    };
    for (m, f) in INLINE {
        let known = messages
            .iter()
            .any(|(name, msg)| msg_matches(m, name) && msg.fields.iter().any(|x| x.rust == *f));
        if !known {
            panic!("skiff-k8sproto: INLINE names {m}.{f}, which k8s-pb does not define");
        }
    }
    for (m, f) in OMIT_ZERO {
        let known = messages.iter().any(|(name, msg)| {
            msg_matches(m, name)
                && msg
                    .fields
                    .iter()
                    .any(|x| x.rust == *f && matches!(x.kind, Kind::Int32 | Kind::Int64))
        });
        if !known {
            panic!("skiff-k8sproto: OMIT_ZERO names {m}.{f}, which is no integer field of k8s-pb");
        }
    }
    for (m, _) in SPECIALS {
        lookup(m, "SPECIALS");
    }
    let mut s = String::new();
    s.push_str("// Generated by build.rs from k8s-pb's sources. Do not edit.\n");
    writeln!(s, "pub(crate) static MESSAGES: &[Message] = &[").unwrap();
    for (name, msg) in messages {
        let special = SPECIALS
            .iter()
            .find(|(m, _)| m == name)
            .map(|(_, s)| (*s).to_string())
            .or_else(|| {
                let short = name.rsplit('.').next().unwrap_or("");
                match short {
                    "ExtraValue" => Some("StringList".to_string()),
                    "Json" if name.starts_with("apiextensions_apiserver.") => {
                        Some("RawJson".to_string())
                    }
                    "JsonSchemaPropsOrArray" => Some("SchemaOrArray".to_string()),
                    "JsonSchemaPropsOrBool" => Some("SchemaOrBool".to_string()),
                    "JsonSchemaPropsOrStringArray" => Some("SchemaOrStringArray".to_string()),
                    _ => None,
                }
            })
            .unwrap_or_else(|| "None".to_string());
        let mut fields: Vec<&Field> = msg.fields.iter().collect();
        fields.sort_by_key(|f| f.tag);
        writeln!(
            s,
            "    Message {{ name: {name:?}, special: Special::{special}, fields: &["
        )
        .unwrap();
        for f in fields {
            let from = format!("{name}.{}", f.rust);
            let kind = match &f.kind {
                Kind::Map(v) => format!("Kind::Map(&{})", kind_code(v, &from)),
                k => kind_code(k, &from),
            };
            let inline = INLINE
                .iter()
                .any(|(m, x)| msg_matches(m, name) && *x == f.rust);
            let omit_zero = OMIT_ZERO
                .iter()
                .any(|(m, x)| msg_matches(m, name) && *x == f.rust);
            writeln!(
                s,
                "        Field {{ tag: {}, json: {:?}, kind: {kind}, repeated: {}, inline: {inline}, omit_zero: {omit_zero} }},",
                f.tag, f.json, f.repeated
            )
            .unwrap();
        }
        writeln!(s, "    ] }},").unwrap();
    }
    writeln!(s, "];").unwrap();
    writeln!(
        s,
        "/// (apiVersion, kind) → index into MESSAGES, sorted.\npub(crate) static RESOURCES: &[(&str, &str, usize)] = &["
    )
    .unwrap();
    for ((api_version, kind), ty) in resources {
        writeln!(
            s,
            "    ({api_version:?}, {kind:?}, {}),",
            lookup(ty, "a Resource impl")
        )
        .unwrap();
    }
    writeln!(s, "];").unwrap();
    s
}
