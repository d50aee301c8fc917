//! Hooks of apiextensions.k8s.io/v1 CustomResourceDefinition and certificates.k8s.io/v1
//! CertificateSigningRequest: defaults, validation and columns as upstream.
//!
//! Serving a CRD's resources, its names and conditions are `crate::crd`'s: these hooks
//! validate the CRD itself (names, versions, structural schemas), record the storage
//! version in `status.storedVersions`, and give a new CRD the cleanup finalizer that
//! makes deleting it delete its objects first.
//! CSRs are checked as upstream, except that the requesting user is not recorded in
//! `spec.username/groups/uid` (the hooks do not see the user) and the request's
//! signature is not verified (only its PEM and DER structure).

use std::collections::BTreeSet;

use base64::Engine;
use serde_json::{json, Value};
use skiff_api::validation::{check, dns1035_label, dns1123_subdomain};
use skiff_api::{meta, FieldError, FieldErrors};

use super::common::{
    array_at, created_at_columns, created_at_row, name_cell, set_default, str_at, subdomain_name,
};
use super::{Column, Context, Hooks};
use crate::table::{age, human_duration};

pub struct CustomResourceDefinitions;

fn default_crd(obj: &mut Value) {
    set_default(obj, "spec", json!({}));
    let spec = &mut obj["spec"];
    set_default(spec, "names", json!({}));
    let kind = str_at(spec, "/names/kind").to_string();
    if str_at(spec, "/names/singular").is_empty() && !kind.is_empty() {
        spec["names"]["singular"] = json!(kind.to_lowercase());
    }
    if str_at(spec, "/names/listKind").is_empty() && !kind.is_empty() {
        spec["names"]["listKind"] = json!(format!("{kind}List"));
    }
    set_default(spec, "conversion", json!({"strategy": "None"}));
}

fn storage_version(obj: &Value) -> Option<&str> {
    array_at(obj, "/spec/versions")
        .iter()
        .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .and_then(|v| v.get("name").and_then(Value::as_str))
}

/// Records the storage version among the stored ones (upstream's strategy does this on
/// every create and update); names and conditions are the CRD controller's.
fn record_storage_version(obj: &mut Value) {
    let storage = storage_version(obj).map(str::to_string);
    set_default(obj, "status", json!({}));
    let status = &mut obj["status"];
    set_default(status, "storedVersions", json!([]));
    if let (Some(v), Some(stored)) = (storage, status["storedVersions"].as_array_mut()) {
        if !stored.iter().any(|s| s == v.as_str()) {
            stored.push(json!(v));
        }
    }
}

fn dns1035_check(path: &str, value: &str, shown: &str, prefix: &str, errs: &mut FieldErrors) {
    let problems = dns1035_label(value);
    if !value.is_empty() && !problems.is_empty() {
        errs.push(FieldError::invalid(
            path,
            &json!(shown),
            format!("{prefix}{}", problems.join(",")),
        ));
    }
}

impl Hooks for CustomResourceDefinitions {
    fn prepare_create(&self, obj: &mut Value, _ctx: &Context<'_>) {
        default_crd(obj);
        record_storage_version(obj);
        let mut finalizers = meta::finalizers(obj);
        if !finalizers
            .iter()
            .any(|f| f == crate::crd::controller::CLEANUP_FINALIZER)
        {
            finalizers.push(crate::crd::controller::CLEANUP_FINALIZER.to_string());
            meta::set_meta(obj, "finalizers", json!(finalizers));
        }
    }

    fn prepare_update(&self, new: &mut Value, _old: &Value) {
        default_crd(new);
        record_storage_version(new);
    }

    fn validate(&self, obj: &Value, _ctx: &Context<'_>) -> FieldErrors {
        let mut errs = FieldErrors::default();
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        let group = str_at(spec, "/group");
        let plural = str_at(spec, "/names/plural");
        if meta::name(obj) != format!("{plural}.{group}") {
            errs.push(FieldError::invalid(
                "metadata.name",
                &json!(meta::name(obj)),
                "must be spec.names.plural+\".\"+spec.group",
            ));
        }
        if group.is_empty() {
            errs.push(FieldError::required("spec.group", ""));
        } else if !dns1123_subdomain(group).is_empty() {
            errs.push(FieldError::invalid(
                "spec.group",
                &json!(group),
                dns1123_subdomain(group).join(","),
            ));
        } else if !group.contains('.') {
            errs.push(FieldError::invalid(
                "spec.group",
                &json!(group),
                "should be a domain with at least one dot",
            ));
        }
        let scope = spec.get("scope").cloned().unwrap_or(Value::Null);
        match scope.as_str() {
            None | Some("") => errs.push(FieldError::required("spec.scope", "")),
            Some("Cluster" | "Namespaced") => {}
            Some(_) => errs.push(FieldError::not_supported(
                "spec.scope",
                &scope,
                &["Cluster", "Namespaced"],
            )),
        }
        let versions = array_at(spec, "/versions");
        if versions.is_empty() {
            errs.push(FieldError::required("spec.versions", ""));
        }
        let mut seen = BTreeSet::new();
        let mut unique = true;
        let mut storage = 0;
        for (i, v) in versions.iter().enumerate() {
            let name = str_at(v, "/name");
            unique &= seen.insert(name);
            if v.get("storage").and_then(Value::as_bool) == Some(true) {
                storage += 1;
            }
            let p = format!("spec.versions[{i}]");
            if name.is_empty() {
                errs.push(FieldError::required(format!("{p}.name"), ""));
            }
            errs.extend(crate::crd::validate_version_extras(v, &p));
            dns1035_check(&format!("{p}.name"), name, name, "", &mut errs);
            match v.pointer("/schema/openAPIV3Schema") {
                None | Some(Value::Null) => errs.push(FieldError::required(
                    format!("{p}.schema.openAPIV3Schema"),
                    "schemas are required",
                )),
                Some(schema) => match schema.get("type").and_then(Value::as_str) {
                    None | Some("") => errs.push(FieldError::required(
                        format!("{p}.schema.openAPIV3Schema.type"),
                        "must not be empty at the root",
                    )),
                    Some("object") => errs.extend(crate::crd::schema::structural_errors(
                        schema,
                        &format!("{p}.schema.openAPIV3Schema"),
                    )),
                    Some(t) => errs.push(FieldError::invalid(
                        format!("{p}.schema.openAPIV3Schema.type"),
                        &json!(t),
                        "must be object at the root",
                    )),
                },
            }
        }
        if !unique {
            errs.push(FieldError::invalid(
                "spec.versions",
                &json!(versions),
                "must contain unique version names",
            ));
        }
        if !versions.is_empty() && storage != 1 {
            errs.push(FieldError::invalid(
                "spec.versions",
                &json!(versions),
                "must have exactly one version marked as storage version",
            ));
        }
        // Objects may still be stored in any version ever stored: it must stay listed.
        for (i, stored) in array_at(obj, "/status/storedVersions").iter().enumerate() {
            let stored = stored.as_str().unwrap_or("");
            if !versions.iter().any(|v| str_at(v, "/name") == stored) {
                errs.push(FieldError::invalid(
                    format!("status.storedVersions[{i}]"),
                    &json!(stored),
                    "must appear in spec.versions",
                ));
            }
        }
        let names = spec.get("names").unwrap_or(&Value::Null);
        for field in ["plural", "singular", "kind", "listKind"] {
            if str_at(names, &format!("/{field}")).is_empty() {
                errs.push(FieldError::required(format!("spec.names.{field}"), ""));
            }
        }
        dns1035_check("spec.names.plural", plural, plural, "", &mut errs);
        let singular = str_at(names, "/singular");
        dns1035_check("spec.names.singular", singular, singular, "", &mut errs);
        let mixed = "may have mixed case, but should otherwise match: ";
        let kind = str_at(names, "/kind");
        dns1035_check(
            "spec.names.kind",
            &kind.to_lowercase(),
            kind,
            mixed,
            &mut errs,
        );
        let list_kind = str_at(names, "/listKind");
        dns1035_check(
            "spec.names.listKind",
            &list_kind.to_lowercase(),
            list_kind,
            mixed,
            &mut errs,
        );
        if !kind.is_empty() && kind == list_kind {
            errs.push(FieldError::invalid(
                "spec.names.listKind",
                &json!(list_kind),
                "kind and listKind may not be the same",
            ));
        }
        for (i, s) in array_at(names, "/shortNames").iter().enumerate() {
            let s = s.as_str().unwrap_or("");
            dns1035_check(&format!("spec.names.shortNames[{i}]"), s, s, "", &mut errs);
        }
        let strategy = spec
            .pointer("/conversion/strategy")
            .cloned()
            .unwrap_or(Value::Null);
        if strategy.as_str() == Some("Webhook") {
            // Conversion webhooks are not implemented: refuse rather than serve versions
            // that would be converted wrongly.
            errs.push(FieldError::forbidden(
                "spec.conversion.strategy",
                "Webhook conversion is not supported by this server; use strategy None (versions differ only in apiVersion)",
            ));
        } else if !matches!(strategy.as_str(), Some("None" | "Webhook")) {
            errs.push(FieldError::not_supported(
                "spec.conversion.strategy",
                &strategy,
                &["None", "Webhook"],
            ));
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

pub struct CertificateSigningRequests;

const USAGES: &[&str] = &[
    "any",
    "cert sign",
    "client auth",
    "code signing",
    "content commitment",
    "crl sign",
    "data encipherment",
    "decipher only",
    "digital signature",
    "email protection",
    "encipher only",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "key agreement",
    "key encipherment",
    "microsoft sgc",
    "netscape sgc",
    "ocsp signing",
    "s/mime",
    "server auth",
    "signing",
    "timestamping",
];

/// Why `request` (the base64 of a PEM document) is not a certificate request, if it is not.
fn request_problem(request: &str) -> Option<String> {
    const PEM_MSG: &str = "PEM block type must be CERTIFICATE REQUEST";
    let pem = base64::engine::general_purpose::STANDARD
        .decode(request)
        .ok()?
        .into_iter()
        .map(char::from)
        .collect::<String>();
    let begin = "-----BEGIN CERTIFICATE REQUEST-----";
    let end = "-----END CERTIFICATE REQUEST-----";
    let Some(start) = pem.find(begin) else {
        return Some(PEM_MSG.into());
    };
    let body = &pem[start + begin.len()..];
    let Some(stop) = body.find(end) else {
        return Some(PEM_MSG.into());
    };
    let b64: String = body[..stop].split_whitespace().collect();
    let der = match base64::engine::general_purpose::STANDARD.decode(b64) {
        Ok(der) => der,
        Err(e) => return Some(format!("invalid PEM body: {e}")),
    };
    match x509_parser::certification_request::X509CertificationRequest::from_der(&der) {
        Ok(_) => None,
        Err(e) => Some(format!("asn1: {e}")),
    }
}

use x509_parser::prelude::FromDer;

/// `condition` cell: Denied/Approved/Pending, then `,Failed` and `,Issued`.
fn csr_condition(obj: &Value) -> String {
    let conds = array_at(obj, "/status/conditions");
    let has = |t: &str| conds.iter().any(|c| str_at(c, "/type") == t);
    let mut s = if has("Denied") {
        "Denied"
    } else if has("Approved") {
        "Approved"
    } else {
        "Pending"
    }
    .to_string();
    if has("Failed") {
        s.push_str(",Failed");
    }
    if !str_at(obj, "/status/certificate").is_empty() {
        s.push_str(",Issued");
    }
    s
}

impl Hooks for CertificateSigningRequests {
    fn prepare_update(&self, new: &mut Value, old: &Value) {
        // The request is fixed; decisions go through /approval and /status.
        new["spec"] = old.get("spec").cloned().unwrap_or(json!({}));
    }

    fn validate(&self, obj: &Value, _ctx: &Context<'_>) -> FieldErrors {
        let mut errs = subdomain_name(obj);
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        let request = str_at(spec, "/request");
        let problem = if request.is_empty() {
            Some("PEM block type must be CERTIFICATE REQUEST".to_string())
        } else {
            request_problem(request)
        };
        if let Some(problem) = problem {
            errs.push(FieldError::invalid(
                "spec.request",
                &json!(request),
                problem,
            ));
        }
        let usages = array_at(spec, "/usages");
        if usages.is_empty() {
            errs.push(FieldError::required("spec.usages", ""));
        }
        let mut seen = BTreeSet::new();
        for (i, u) in usages.iter().enumerate() {
            if !u.as_str().is_some_and(|u| USAGES.contains(&u)) {
                errs.push(FieldError::not_supported(
                    format!("spec.usages[{i}]"),
                    u,
                    USAGES,
                ));
            } else if !seen.insert(u.as_str()) {
                errs.push(FieldError::duplicate(format!("spec.usages[{i}]"), u));
            }
        }
        if let Some(secs) = spec.get("expirationSeconds").and_then(Value::as_i64) {
            if secs < 600 {
                errs.push(FieldError::invalid(
                    "spec.expirationSeconds",
                    &json!(secs),
                    "may not specify a duration less than 600 seconds (10 minutes)",
                ));
            }
        }
        let signer = str_at(spec, "/signerName");
        if signer.is_empty() {
            errs.push(FieldError::required("spec.signerName", ""));
        } else {
            match signer.split_once('/') {
                Some((domain, path)) if !domain.is_empty() && !path.is_empty() => {
                    let problems = dns1123_subdomain(domain);
                    if !problems.is_empty() {
                        errs.extend(check(
                            "spec.signerName",
                            signer,
                            problems
                                .into_iter()
                                .map(|p| format!("validating domain component: {p}"))
                                .collect(),
                        ));
                    }
                }
                _ => errs.push(FieldError::invalid(
                    "spec.signerName",
                    &json!(signer),
                    "must be a fully qualified domain and path of the form 'example.com/signer-name'",
                )),
            }
        }
        errs
    }

    fn fields(&self, obj: &Value) -> Vec<(&'static str, String)> {
        vec![(
            "spec.signerName",
            str_at(obj, "/spec/signerName").to_string(),
        )]
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name_column(),
            Column::age_column(),
            Column::new("SignerName", "string", "signerName indicates the requested signer, and is a qualified name."),
            Column::new("Requestor", "string", "request contains an x509 certificate signing request encoded in a \"CERTIFICATE REQUEST\" PEM block. When serialized as JSON or YAML, the data is additionally base64-encoded."),
            Column::new("RequestedDuration", "string", "expirationSeconds is the requested duration of validity of the issued certificate. The certificate signer may issue a certificate with a different validity duration so a client must check the delta between the notBefore and and notAfter fields in the issued certificate to determine the actual duration."),
            Column::new("Condition", "string", "conditions applied to the request. Known conditions are \"Approved\", \"Denied\", and \"Failed\"."),
        ]
    }

    fn row(&self, obj: &Value) -> Vec<Value> {
        let signer = str_at(obj, "/spec/signerName");
        let duration = obj
            .pointer("/spec/expirationSeconds")
            .and_then(Value::as_i64)
            .map_or_else(|| "<none>".to_string(), human_duration);
        vec![
            name_cell(obj),
            json!(age(obj)),
            json!(if signer.is_empty() { "<none>" } else { signer }),
            json!(str_at(obj, "/spec/username")),
            json!(duration),
            json!(csr_condition(obj)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CTX: Context<'static> = Context {
        namespace: "",
        service_cidr: None,
    };

    fn crd() -> Value {
        json!({"metadata": {"name": "widgets.example.com"}, "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                          "schema": {"openAPIV3Schema": {"type": "object"}}}]}})
    }

    #[test]
    fn crd_defaults_names_and_records_the_storage_version() {
        let mut obj = crd();
        CustomResourceDefinitions.prepare_create(&mut obj, &CTX);
        assert_eq!(obj["spec"]["names"]["singular"], "widget");
        assert_eq!(obj["spec"]["names"]["listKind"], "WidgetList");
        assert_eq!(obj["spec"]["conversion"]["strategy"], "None");
        assert_eq!(obj["status"]["storedVersions"], json!(["v1"]));
        assert_eq!(
            obj["metadata"]["finalizers"],
            json!(["customresourcecleanup.apiextensions.k8s.io"])
        );
        assert!(CustomResourceDefinitions.validate(&obj, &CTX).is_empty());
    }

    #[test]
    fn crd_validation_names_the_field() {
        let mut no_dot = crd();
        no_dot["metadata"]["name"] = json!("widgets.example");
        no_dot["spec"]["group"] = json!("example");
        let mut wrong_name = crd();
        wrong_name["metadata"]["name"] = json!("gadgets.example.com");
        let mut two_storage = crd();
        two_storage["spec"]["versions"] = json!([
            {"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object"}}},
            {"name": "v2", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object"}}}]);
        let mut bad_scope = crd();
        bad_scope["spec"]["scope"] = json!("Global");
        let mut no_kind = crd();
        no_kind["spec"]["names"] = json!({"plural": "widgets"});
        let mut no_schema = crd();
        no_schema["spec"]["versions"][0]
            .as_object_mut()
            .unwrap()
            .remove("schema");
        let cases = [
            (no_dot, "spec.group: Invalid value: \"example\": should be a domain with at least one dot"),
            (wrong_name, "metadata.name: Invalid value: \"gadgets.example.com\": must be spec.names.plural+\".\"+spec.group"),
            (two_storage, "must have exactly one version marked as storage version"),
            (bad_scope, "spec.scope: Unsupported value: \"Global\": supported values: \"Cluster\", \"Namespaced\""),
            (no_kind, "spec.names.kind: Required value"),
            (no_schema, "spec.versions[0].schema.openAPIV3Schema: Required value: schemas are required"),
        ];
        for (mut obj, want) in cases {
            default_crd(&mut obj);
            let errs = CustomResourceDefinitions.validate(&obj, &CTX).to_string();
            assert!(errs.contains(want), "{want} not in {errs}");
        }
    }

    fn pem_request() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["node-1".to_string()]).unwrap();
        let csr = params.serialize_request(&key).unwrap();
        base64::engine::general_purpose::STANDARD.encode(csr.pem().unwrap())
    }

    #[test]
    fn csr_requires_a_pem_request_signer_and_usages() {
        let ok = json!({"metadata": {"name": "node-csr"}, "spec": {
            "request": pem_request(), "signerName": "kubernetes.io/kube-apiserver-client",
            "usages": ["client auth"], "expirationSeconds": 86400}});
        assert!(CertificateSigningRequests.validate(&ok, &CTX).is_empty());
        let row = CertificateSigningRequests.row(&ok);
        assert_eq!(row[2], "kubernetes.io/kube-apiserver-client");
        assert_eq!(row[4], "24h");
        assert_eq!(row[5], "Pending");

        let bad = json!({"metadata": {"name": "x"}, "spec": {"usages": ["client auth", "client auth", "flying"], "expirationSeconds": 60}});
        let errs = CertificateSigningRequests.validate(&bad, &CTX).to_string();
        for want in [
            "spec.request: Invalid value: \"\": PEM block type must be CERTIFICATE REQUEST",
            "spec.signerName: Required value",
            "spec.usages[1]: Duplicate value: \"client auth\"",
            "spec.usages[2]: Unsupported value: \"flying\"",
            "spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 600 seconds (10 minutes)",
        ] {
            assert!(errs.contains(want), "{want} not in {errs}");
        }
        let not_pem = base64::engine::general_purpose::STANDARD.encode("hello");
        let obj = json!({"metadata": {"name": "x"}, "spec": {"request": not_pem, "signerName": "example.com/x", "usages": ["any"]}});
        assert!(CertificateSigningRequests
            .validate(&obj, &CTX)
            .to_string()
            .ends_with("PEM block type must be CERTIFICATE REQUEST"));
    }

    #[test]
    fn csr_condition_cells_follow_precedence() {
        let cases = [
            (json!({}), "Pending"),
            (json!({"conditions": [{"type": "Approved"}]}), "Approved"),
            (
                json!({"conditions": [{"type": "Approved"}], "certificate": "Y2VydA=="}),
                "Approved,Issued",
            ),
            (
                json!({"conditions": [{"type": "Approved"}, {"type": "Denied"}, {"type": "Failed"}]}),
                "Denied,Failed",
            ),
        ];
        for (status, want) in cases {
            assert_eq!(csr_condition(&json!({"status": status})), want);
        }
    }

    #[test]
    fn csr_spec_cannot_change_through_the_main_resource() {
        let old = json!({"metadata": {"name": "c"}, "spec": {"signerName": "example.com/a"}});
        let mut new = json!({"metadata": {"name": "c"}, "spec": {"signerName": "example.com/b"}});
        CertificateSigningRequests.prepare_update(&mut new, &old);
        assert_eq!(new["spec"]["signerName"], "example.com/a");
    }
}
