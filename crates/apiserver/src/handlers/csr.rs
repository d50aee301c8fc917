//! What the CertificateSigningRequest registry does beyond its strategy: the requester's
//! identity goes into spec (username, uid, groups, extra) on create, so approvers and
//! signers can trust it; `/approval` may change only the Approved/Denied/Failed
//! conditions and `/status` only the certificate and other conditions, as upstream.

use serde_json::{json, Value};
use skiff_api::{ApiError, FieldError, FieldErrors};

use super::Req;
use crate::auth::UserInfo;

fn is_csr(req: &Req) -> bool {
    req.def.group == "certificates.k8s.io" && req.def.plural == "certificatesigningrequests"
}

/// On create: records who asked, overwriting whatever the client put there.
pub fn on_create(req: &Req, obj: &mut Value) {
    if is_csr(req) {
        set_requester(obj, &req.user);
    }
}

pub fn set_requester(obj: &mut Value, user: &UserInfo) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    spec.insert("username".into(), json!(user.name));
    for (field, value) in [
        ("uid", json!(user.uid)),
        ("groups", json!(user.groups)),
        ("extra", json!(user.extra)),
    ] {
        let empty = value.as_str() == Some("")
            || value.as_array().is_some_and(Vec::is_empty)
            || value.as_object().is_some_and(|o| o.is_empty());
        if empty {
            spec.remove(field);
        } else {
            spec.insert(field.into(), value);
        }
    }
}

const DECISIONS: [&str; 2] = ["Approved", "Denied"];

fn conditions(obj: &Value) -> Vec<Value> {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn cond_type(c: &Value) -> &str {
    c.get("type").and_then(Value::as_str).unwrap_or("")
}

/// On `/approval` and `/status` updates: keeps what that subresource may not change and
/// checks the decision rules.
pub fn on_update(req: &Req, new: &mut Value, old: &Value) -> Result<(), ApiError> {
    if !is_csr(req) {
        return Ok(());
    }
    let errs = confine(&req.info.subresource, new, old);
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(
            &req.def.group_kind(),
            &req.info.name,
            &errs,
        ))
    }
}

pub fn confine(subresource: &str, new: &mut Value, old: &Value) -> FieldErrors {
    let mut errs = FieldErrors::default();
    let now = crate::lifecycle::now_rfc3339();
    let mut conds = conditions(new);
    match subresource {
        "approval" => {
            // The certificate is the signer's; decisions only.
            match old.pointer("/status/certificate") {
                Some(c) => new["status"]["certificate"] = c.clone(),
                None => {
                    if let Some(s) = new.get_mut("status").and_then(Value::as_object_mut) {
                        s.remove("certificate");
                    }
                }
            }
            for kept in conditions(old)
                .into_iter()
                .filter(|c| DECISIONS.contains(&cond_type(c)))
            {
                if !conds.iter().any(|c| cond_type(c) == cond_type(&kept)) {
                    errs.push(FieldError::forbidden(
                        "status.conditions",
                        format!(
                            "updates may not remove a condition of type {:?}",
                            cond_type(&kept)
                        ),
                    ));
                }
            }
        }
        "status" => {
            // Decisions are the approver's; carry the old ones over unchanged.
            conds.retain(|c| !DECISIONS.contains(&cond_type(c)));
            conds.extend(
                conditions(old)
                    .into_iter()
                    .filter(|c| DECISIONS.contains(&cond_type(c))),
            );
            let old_cert = old
                .pointer("/status/certificate")
                .and_then(Value::as_str)
                .unwrap_or("");
            let new_cert = new
                .pointer("/status/certificate")
                .and_then(Value::as_str)
                .unwrap_or("");
            if !old_cert.is_empty() && new_cert != old_cert {
                errs.push(FieldError::forbidden(
                    "status.certificate",
                    "updates may not modify existing certificate content",
                ));
            }
            let approved = conds.iter().any(|c| cond_type(c) == "Approved");
            if !new_cert.is_empty() && !approved {
                errs.push(FieldError::forbidden(
                    "status.certificate",
                    "certificate may only be set if the request is approved",
                ));
            }
        }
        _ => return errs,
    }
    let has = |t: &str| conds.iter().any(|c| cond_type(c) == t);
    if has("Approved") && has("Denied") {
        errs.push(FieldError::invalid(
            "status.conditions",
            &json!("Approved"),
            "Approved and Denied conditions are mutually exclusive",
        ));
    }
    for (i, c) in conds.iter_mut().enumerate() {
        let status = c.get("status").and_then(Value::as_str).unwrap_or("");
        if DECISIONS.contains(&cond_type(c)) && status != "True" {
            errs.push(FieldError::not_supported(
                format!("status.conditions[{i}].status"),
                &json!(status),
                &["True"],
            ));
        }
        for field in ["lastUpdateTime", "lastTransitionTime"] {
            if c.get(field).is_none_or(Value::is_null) {
                c[field] = json!(now);
            }
        }
    }
    new["status"]["conditions"] = json!(conds);
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr(conds: Value, cert: Option<&str>) -> Value {
        let mut v = json!({"spec": {"request": "x"}, "status": {"conditions": conds}});
        if let Some(c) = cert {
            v["status"]["certificate"] = json!(c);
        }
        v
    }

    #[test]
    fn requester_fields_replace_what_the_client_sent() {
        let mut obj = json!({"spec": {"username": "admin", "groups": ["system:masters"]}});
        let user = UserInfo::new("system:bootstrap:abcdef", &["system:bootstrappers"]);
        set_requester(&mut obj, &user);
        assert_eq!(obj["spec"]["username"], "system:bootstrap:abcdef");
        assert_eq!(
            obj["spec"]["groups"],
            json!(["system:bootstrappers", "system:authenticated"])
        );
        assert!(obj["spec"].get("uid").is_none());
    }

    #[test]
    fn approval_changes_decisions_only() {
        let old = csr(json!([]), None);
        let mut new = csr(
            json!([{"type": "Approved", "status": "True", "reason": "R"}]),
            Some("forged"),
        );
        assert!(confine("approval", &mut new, &old).is_empty());
        assert!(new["status"].get("certificate").is_none());
        assert!(new["status"]["conditions"][0]["lastUpdateTime"].is_string());

        let mut both = csr(
            json!([{"type": "Approved", "status": "True"}, {"type": "Denied", "status": "True"}]),
            None,
        );
        assert!(confine("approval", &mut both, &old)
            .to_string()
            .contains("mutually exclusive"));

        let approved = csr(json!([{"type": "Approved", "status": "True"}]), None);
        let mut removed = csr(json!([]), None);
        assert!(confine("approval", &mut removed, &approved)
            .to_string()
            .contains("may not remove"));
    }

    #[test]
    fn status_keeps_decisions_and_needs_approval_for_a_certificate() {
        let pending = csr(json!([]), None);
        let mut self_approved = csr(json!([{"type": "Approved", "status": "True"}]), Some("c"));
        let errs = confine("status", &mut self_approved, &pending).to_string();
        assert!(
            errs.contains("only be set if the request is approved"),
            "{errs}"
        );

        let approved = csr(json!([{"type": "Approved", "status": "True"}]), None);
        let mut signed = csr(json!([]), Some("c"));
        assert!(confine("status", &mut signed, &approved).is_empty());
        assert_eq!(signed["status"]["conditions"][0]["type"], "Approved");

        let issued = csr(json!([{"type": "Approved", "status": "True"}]), Some("c"));
        let mut changed = csr(json!([]), Some("d"));
        assert!(confine("status", &mut changed, &issued)
            .to_string()
            .contains("may not modify existing certificate"));
    }
}
