//! CSR signing controller (upstream's `csrsigning`): approved requests for the built-in
//! signers `kube-apiserver-client`, `kube-apiserver-client-kubelet` and `kubelet-serving`
//! are signed with the cluster CA (`--cluster-signing-cert-file`/`-key-file`), for
//! `spec.expirationSeconds` when given (at most `--cluster-signing-duration`). A request
//! the signer's rules refuse gets a `Failed` condition instead.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition, CertificateSigningRequestStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::ByteString;
use kube::api::PostParams;
use kube::Api;
use rcgen::{ExtendedKeyUsagePurpose, KeyUsagePurpose, SanType};
use skiff_runtime::{Informer, ObjectKey, WorkQueue};

use super::request::{self, Request};
use super::{
    has_condition, is_issued, KUBELET_SERVING, KUBE_APISERVER_CLIENT, KUBE_APISERVER_CLIENT_KUBELET,
};
use crate::{Ctx, Loop};

/// Upstream backdates certificates this much for clock skew.
const BACKDATE: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading the cluster CA {path}: {source}")]
    ReadCa {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("updating the status of CertificateSigningRequest {name}: {source}")]
    Update {
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// Why a signer refuses a request (becomes the Failed condition's message).
pub fn check(signer: &str, req: &Request, usages: &[String]) -> Result<(), String> {
    let allowed: &[&str] = match signer {
        KUBE_APISERVER_CLIENT | KUBE_APISERVER_CLIENT_KUBELET => {
            &["digital signature", "key encipherment", "client auth"]
        }
        KUBELET_SERVING => &["digital signature", "key encipherment", "server auth"],
        other => return Err(format!("unknown signer {other}")),
    };
    let bad: Vec<&str> = usages
        .iter()
        .map(String::as_str)
        .filter(|u| !allowed.contains(u))
        .collect();
    if !bad.is_empty() {
        return Err(format!("invalid usage for {signer}: {bad:?}"));
    }
    let node_subject = req.common_name.starts_with("system:node:")
        && req.common_name.len() > "system:node:".len()
        && req.organizations == ["system:nodes"];
    match signer {
        KUBE_APISERVER_CLIENT_KUBELET => {
            if !node_subject {
                return Err("subject must be CN=system:node:<name>, O=system:nodes".into());
            }
            if req.has_sans() {
                return Err("no subject alternative names are allowed".into());
            }
            if !usages.iter().any(|u| u == "client auth") {
                return Err("usages must include \"client auth\"".into());
            }
        }
        KUBELET_SERVING => {
            if !node_subject {
                return Err("subject must be CN=system:node:<name>, O=system:nodes".into());
            }
            if req.dns_names.is_empty() && req.ip_addresses.is_empty() {
                return Err("at least one DNS or IP subject alternative name is required".into());
            }
            if !req.other_names.is_empty() {
                return Err("only DNS and IP subject alternative names are allowed".into());
            }
            if !usages.iter().any(|u| u == "server auth") {
                return Err("usages must include \"server auth\"".into());
            }
        }
        _ => {}
    }
    Ok(())
}

/// Signs a PEM request with the CA for `lifetime`, with the usages the request was
/// approved for (not the ones its extensions ask for).
pub fn sign(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    request_pem: &str,
    usages: &[String],
    lifetime: Duration,
) -> Result<String, String> {
    let ca_key = rcgen::KeyPair::from_pem(ca_key_pem).map_err(|e| format!("CA key: {e}"))?;
    let issuer = rcgen::Issuer::from_ca_cert_pem(ca_cert_pem, ca_key)
        .map_err(|e| format!("CA certificate: {e}"))?;
    let mut csr = rcgen::CertificateSigningRequestParams::from_pem(request_pem)
        .map_err(|e| format!("certificate request: {e}"))?;
    let p = &mut csr.params;
    p.is_ca = rcgen::IsCa::ExplicitNoCa;
    p.subject_alt_names
        .retain(|s| matches!(s, SanType::DnsName(_) | SanType::IpAddress(_)));
    p.key_usages = usages
        .iter()
        .filter_map(|u| match u.as_str() {
            "digital signature" => Some(KeyUsagePurpose::DigitalSignature),
            "key encipherment" => Some(KeyUsagePurpose::KeyEncipherment),
            _ => None,
        })
        .collect();
    p.extended_key_usages = usages
        .iter()
        .filter_map(|u| match u.as_str() {
            "client auth" => Some(ExtendedKeyUsagePurpose::ClientAuth),
            "server auth" => Some(ExtendedKeyUsagePurpose::ServerAuth),
            _ => None,
        })
        .collect();
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - BACKDATE;
    p.not_after = now + lifetime;
    p.serial_number = Some(rcgen::SerialNumber::from_slice(
        uuid::Uuid::new_v4().as_bytes(),
    ));
    let cert = csr
        .signed_by(&issuer)
        .map_err(|e| format!("signing: {e}"))?;
    Ok(cert.pem())
}

/// The certificate lifetime for a request: its expirationSeconds (at least 10 minutes),
/// capped by the cluster's signing duration.
pub fn lifetime(expiration_seconds: Option<i32>, max: Duration) -> Duration {
    match expiration_seconds {
        Some(s) => Duration::from_secs(u64::try_from(s).unwrap_or(0).max(600)).min(max),
        None => max,
    }
}

struct State {
    api: Api<CertificateSigningRequest>,
    csrs: Informer<CertificateSigningRequest>,
    ca_cert: PathBuf,
    ca_key: PathBuf,
    max: Duration,
}

fn known_signer(name: &str) -> bool {
    [
        KUBE_APISERVER_CLIENT,
        KUBE_APISERVER_CLIENT_KUBELET,
        KUBELET_SERVING,
    ]
    .contains(&name)
}

impl State {
    async fn reconcile(&self, name: String) -> Result<Option<Duration>, Error> {
        let Some(csr) = self.csrs.get_named(None, &name) else {
            return Ok(None);
        };
        if !known_signer(&csr.spec.signer_name)
            || !has_condition(&csr, "Approved")
            || has_condition(&csr, "Failed")
            || is_issued(&csr)
        {
            return Ok(None);
        }
        let read = |p: &PathBuf| {
            std::fs::read_to_string(p).map_err(|source| Error::ReadCa {
                path: p.clone(),
                source,
            })
        };
        let (ca_cert, ca_key) = (read(&self.ca_cert)?, read(&self.ca_key)?);
        let usages = csr.spec.usages.clone().unwrap_or_default();
        let pem = String::from_utf8_lossy(&csr.spec.request.0).to_string();
        let outcome = request::parse(&csr.spec.request.0)
            .and_then(|req| check(&csr.spec.signer_name, &req, &usages))
            .and_then(|()| {
                sign(
                    &ca_cert,
                    &ca_key,
                    &pem,
                    &usages,
                    lifetime(csr.spec.expiration_seconds, self.max),
                )
            });
        let mut updated = (*csr).clone();
        let status = updated
            .status
            .get_or_insert_with(CertificateSigningRequestStatus::default);
        match outcome {
            Ok(cert) => {
                status.certificate = Some(ByteString(cert.into_bytes()));
                tracing::info!(csr = %name, "signed certificate");
            }
            Err(why) => {
                let now = Time(k8s_openapi::jiff::Timestamp::now());
                status.conditions.get_or_insert_with(Vec::new).push(
                    CertificateSigningRequestCondition {
                        type_: "Failed".into(),
                        status: "True".into(),
                        reason: Some("SignerValidationFailure".into()),
                        message: Some(why),
                        last_update_time: Some(now.clone()),
                        last_transition_time: Some(now),
                    },
                );
            }
        }
        match self
            .api
            .replace_status(&name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => Ok(None),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
            Err(source) => Err(Error::Update { name, source }),
        }
    }
}

pub fn controller(ctx: &Ctx) -> Loop {
    let queue: WorkQueue<String> = WorkQueue::new("csrsigning", ctx.settings.max_retry_delay);
    let csrs = ctx.informers.informer::<CertificateSigningRequest>();
    {
        let q = queue.clone();
        csrs.on_change(move |c| {
            if c.new.is_some() {
                q.add(ObjectKey::of(c.object().as_ref()).name);
            }
        });
    }
    let settings = ctx.settings.clone();
    let (Some(ca_cert), Some(ca_key)) = (
        settings.cluster_signing_cert_file.clone(),
        settings.cluster_signing_key_file.clone(),
    ) else {
        tracing::warn!("csrsigning: no --cluster-signing-cert-file/--cluster-signing-key-file; approved requests stay unsigned");
        return Box::pin(async {});
    };
    let state = Arc::new(State {
        api: Api::all(ctx.client.clone()),
        csrs,
        ca_cert,
        ca_key,
        max: settings.cluster_signing_duration,
    });
    ctx.run_workers(queue, ctx.settings.workers, state, |s, n| async move {
        s.reconcile(n).await
    })
}

#[cfg(test)]
mod tests {
    use super::super::request::tests::request_pem;
    use super::*;

    fn usages(u: &[&str]) -> Vec<String> {
        u.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn signer_rules() {
        let node = request::parse(request_pem("system:node:n1", &["system:nodes"], &[]).as_bytes())
            .unwrap();
        let serving = request::parse(
            request_pem("system:node:n1", &["system:nodes"], &["n1.local"]).as_bytes(),
        )
        .unwrap();
        let alice = request::parse(request_pem("alice", &["dev"], &[]).as_bytes()).unwrap();
        let client = usages(&["digital signature", "client auth"]);
        let server = usages(&["digital signature", "server auth"]);
        assert_eq!(check(KUBE_APISERVER_CLIENT_KUBELET, &node, &client), Ok(()));
        assert_eq!(check(KUBE_APISERVER_CLIENT, &alice, &client), Ok(()));
        assert_eq!(check(KUBELET_SERVING, &serving, &server), Ok(()));
        let refused = [
            (
                KUBE_APISERVER_CLIENT_KUBELET,
                &alice,
                &client,
                "subject must be",
            ),
            (
                KUBE_APISERVER_CLIENT_KUBELET,
                &serving,
                &client,
                "no subject alternative",
            ),
            (
                KUBE_APISERVER_CLIENT_KUBELET,
                &node,
                &server,
                "invalid usage",
            ),
            (KUBELET_SERVING, &node, &server, "at least one DNS or IP"),
            (
                KUBE_APISERVER_CLIENT,
                &alice,
                &usages(&["cert sign"]),
                "invalid usage",
            ),
            ("example.com/other", &alice, &client, "unknown signer"),
        ];
        for (signer, req, u, want) in refused {
            let err = check(signer, req, u).unwrap_err();
            assert!(err.contains(want), "{signer}: {err}");
        }
    }

    #[test]
    fn signs_with_the_ca_for_the_asked_lifetime() {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::default();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let pem = request_pem("system:node:n1", &["system:nodes"], &[]);
        let life = lifetime(Some(3600), Duration::from_secs(365 * 86400));
        assert_eq!(life, Duration::from_secs(3600));
        assert_eq!(
            lifetime(Some(60), Duration::from_secs(86400)),
            Duration::from_secs(600)
        );
        assert_eq!(
            lifetime(None, Duration::from_secs(86400)),
            Duration::from_secs(86400)
        );
        let cert = sign(
            &ca_cert.pem(),
            &ca_key.serialize_pem(),
            &pem,
            &usages(&["digital signature", "client auth"]),
            life,
        )
        .unwrap();
        let (_, parsed) = x509_parser::pem::parse_x509_pem(cert.as_bytes()).unwrap();
        let cert = parsed.parse_x509().unwrap();
        assert_eq!(
            cert.subject()
                .iter_common_name()
                .next()
                .unwrap()
                .as_str()
                .unwrap(),
            "system:node:n1"
        );
        let valid = cert.validity();
        let secs = valid.not_after.timestamp() - valid.not_before.timestamp();
        assert_eq!(secs, 3600 + 300);
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        assert!(!cert.is_ca());
    }
}
