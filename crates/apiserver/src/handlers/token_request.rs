//! `POST .../serviceaccounts/NAME/token`: TokenRequest (authentication.k8s.io/v1). Issues a
//! signed service account token for the account, optionally bound to a Pod or Secret so
//! it stops working when that object goes. Defaults, limits and errors as upstream.

use axum::body::Body;
use http::StatusCode;
use serde_json::{json, Value};
use skiff_api::{meta, ApiError, FieldError, FieldErrors, GroupKind, GroupResource};

use super::Req;
use crate::auth::sa_token::{Claims, KubernetesClaim, Ref};
use crate::auth::Objects;
use crate::http::{object_response, parse_body, read_body, ApiResult, Format};

/// Upstream's defaults and limits (seconds).
const DEFAULT_EXPIRATION: i64 = 3600;
const MIN_EXPIRATION: i64 = 600;
const MAX_EXPIRATION: i64 = 1 << 32;
/// What ServiceAccount admission asks for in pods' projected tokens; upstream extends
/// those to a year (`--service-account-extend-token-expiration`) and warns after 3607 s.
pub const ADMISSION_EXPIRATION: i64 = 3607;
const EXTENDED_EXPIRATION: i64 = 365 * 24 * 3600;

fn validate(spec: &Value) -> FieldErrors {
    let mut errs = FieldErrors::default();
    if let Some(v) = spec.get("expirationSeconds") {
        match v.as_i64() {
            Some(secs) if secs < MIN_EXPIRATION => errs.push(FieldError::invalid(
                "spec.expirationSeconds",
                v,
                "may not specify a duration less than 10 minutes",
            )),
            Some(secs) if secs > MAX_EXPIRATION => errs.push(FieldError::invalid(
                "spec.expirationSeconds",
                v,
                "may not specify a duration larger than 2^32 seconds",
            )),
            Some(_) => {}
            None => errs.push(FieldError::invalid(
                "spec.expirationSeconds",
                v,
                "must be an integer",
            )),
        }
    }
    errs
}

fn uid(obj: &Value) -> String {
    meta::uid(obj).to_string()
}

pub async fn create(req: &Req, body: Body) -> ApiResult {
    let bytes = read_body(body).await?;
    let tr = parse_body(&req.headers, &bytes)?;
    let ns = req.info.namespace.clone();
    let name = req.info.name.clone();
    let spec = tr.get("spec").cloned().unwrap_or(json!({}));
    let errs = validate(&spec);
    if !errs.is_empty() {
        return Err(ApiError::invalid(
            &GroupKind::new("authentication.k8s.io", "TokenRequest"),
            &name,
            &errs,
        )
        .into());
    }
    let app = req.app.as_ref();
    let Some(sa) = req.app.authn.service_accounts.as_ref() else {
        return Err(ApiError::internal("service account tokens are not configured").into());
    };
    let account = app
        .get_object("serviceaccounts", &ns, &name)
        .await
        .ok_or_else(|| ApiError::not_found(&GroupResource::new("", "serviceaccounts"), &name))?;
    let mut k = KubernetesClaim {
        namespace: ns.clone(),
        serviceaccount: Ref {
            name: name.clone(),
            uid: uid(&account),
        },
        ..Default::default()
    };
    let bound = spec.get("boundObjectRef").filter(|b| !b.is_null());
    if let Some(bound) = bound {
        let kind = bound.get("kind").and_then(Value::as_str).unwrap_or("");
        let api_version = bound
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("v1");
        let bound_name = bound.get("name").and_then(Value::as_str).unwrap_or("");
        let plural = match (api_version, kind) {
            ("v1", "Pod") => "pods",
            ("v1", "Secret") => "secrets",
            _ => {
                return Err(ApiError::bad_request(format!(
                    "cannot bind token to object of type {api_version}, Kind={kind}"
                ))
                .into())
            }
        };
        let obj = app
            .get_object(plural, &ns, bound_name)
            .await
            .ok_or_else(|| ApiError::not_found(&GroupResource::new("", plural), bound_name))?;
        let want_uid = bound.get("uid").and_then(Value::as_str).unwrap_or("");
        if !want_uid.is_empty() && want_uid != uid(&obj) {
            return Err(ApiError::conflict(
                &GroupResource::new("", plural),
                bound_name,
                &format!("the UID in the bound object reference ({want_uid}) does not match the UID in record. The object might have been deleted and then recreated"),
            )
            .into());
        }
        let r = Ref {
            name: bound_name.to_string(),
            uid: uid(&obj),
        };
        if plural == "pods" {
            let node = obj
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .unwrap_or("");
            if !node.is_empty() {
                let node_uid = app
                    .get_object("nodes", "", node)
                    .await
                    .map(|n| uid(&n))
                    .unwrap_or_default();
                k.node = Some(Ref {
                    name: node.to_string(),
                    uid: node_uid,
                });
            }
            k.pod = Some(r);
        } else {
            k.secret = Some(r);
        }
    }
    let requested = spec
        .get("expirationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(DEFAULT_EXPIRATION);
    let now = jiff::Timestamp::now().as_second();
    let lifetime = if requested == ADMISSION_EXPIRATION && k.pod.is_some() {
        k.warnafter = Some(now + requested);
        EXTENDED_EXPIRATION
    } else {
        requested
    };
    let audiences: Vec<String> = spec
        .get("audiences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .filter(|a: &Vec<String>| !a.is_empty())
        .unwrap_or_else(|| sa.audiences.clone());
    let claims = Claims {
        aud: audiences.clone(),
        exp: now + lifetime,
        iat: now,
        iss: sa.issuer.clone(),
        jti: uuid::Uuid::new_v4().to_string(),
        sub: format!("system:serviceaccount:{ns}:{name}"),
        kubernetes: k,
        nbf: now,
    };
    let token = sa.key.sign(&claims).map_err(ApiError::internal)?;
    let expires = jiff::Timestamp::from_second(claims.exp)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    let mut out_spec = spec.clone();
    out_spec["audiences"] = json!(audiences);
    out_spec["expirationSeconds"] = json!(requested);
    if let Some(b) = bound {
        out_spec["boundObjectRef"] = b.clone();
    }
    let out = json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {
            "name": name, "namespace": ns,
            "creationTimestamp": crate::lifecycle::now_rfc3339(),
        },
        "spec": out_spec,
        "status": {"token": token, "expirationTimestamp": expires},
    });
    Ok(object_response(StatusCode::CREATED, Format::Json, &out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiration_limits() {
        assert!(validate(&json!({})).is_empty());
        assert!(validate(&json!({"expirationSeconds": 600})).is_empty());
        let short = validate(&json!({"expirationSeconds": 599})).to_string();
        assert!(
            short.contains("may not specify a duration less than 10 minutes"),
            "{short}"
        );
        let long = validate(&json!({"expirationSeconds": (1i64 << 32) + 1})).to_string();
        assert!(long.contains("larger than 2^32 seconds"), "{long}");
    }
}
