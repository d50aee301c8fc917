//! CSR approving controller (upstream's `csrapproving`): approves kubelet client
//! certificate requests (`kubernetes.io/kube-apiserver-client-kubelet`, CN
//! `system:node:<name>`, O `system:nodes`, client-auth usages, no alternative names)
//! made either by a joining node (a bootstrap token user, group `system:bootstrappers`)
//! or by the node itself renewing (user `system:node:<name>` in `system:nodes`).
//!
//! Upstream asks the authorizer (SubjectAccessReview) whether the requester may create
//! `certificatesigningrequests/nodeclient` or `/selfnodeclient`; until RBAC serves those
//! roles, the requester's groups stand for that permission.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition, CertificateSigningRequestStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::PostParams;
use kube::Api;
use skiff_runtime::{Informer, ObjectKey, WorkQueue};

use super::request::{self, Request};
use super::{has_condition, KUBE_APISERVER_CLIENT_KUBELET};
use crate::{Ctx, Loop};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("approving CertificateSigningRequest {name}: {source}")]
    Approve {
        name: String,
        #[source]
        source: kube::Error,
    },
}

const ALLOWED_USAGES: &[&str] = &["digital signature", "key encipherment", "client auth"];

/// Whether the request is for a kubelet client certificate in the shape upstream accepts.
pub fn is_node_client(csr: &CertificateSigningRequest, req: &Request) -> bool {
    let usages = csr.spec.usages.as_deref().unwrap_or_default();
    csr.spec.signer_name == KUBE_APISERVER_CLIENT_KUBELET
        && req
            .common_name
            .strip_prefix("system:node:")
            .is_some_and(|n| !n.is_empty())
        && req.organizations == ["system:nodes"]
        && !req.has_sans()
        && usages.iter().any(|u| u == "client auth")
        && usages.iter().all(|u| ALLOWED_USAGES.contains(&u.as_str()))
}

/// The approval message, when the request should be approved.
pub fn decide(csr: &CertificateSigningRequest, req: &Request) -> Option<&'static str> {
    if has_condition(csr, "Approved") || has_condition(csr, "Denied") || !is_node_client(csr, req) {
        return None;
    }
    let username = csr.spec.username.as_deref().unwrap_or("");
    let groups = csr.spec.groups.as_deref().unwrap_or_default();
    let in_group = |g: &str| groups.iter().any(|x| x == g);
    if username == req.common_name && in_group("system:nodes") {
        Some("Auto approving self kubelet client certificate after SubjectAccessReview.")
    } else if in_group("system:bootstrappers") {
        Some("Auto approving kubelet client certificate after SubjectAccessReview.")
    } else {
        None
    }
}

struct State {
    api: Api<CertificateSigningRequest>,
    csrs: Informer<CertificateSigningRequest>,
}

impl State {
    async fn reconcile(&self, name: String) -> Result<Option<Duration>, Error> {
        let Some(csr) = self.csrs.get_named(None, &name) else {
            return Ok(None);
        };
        let Ok(req) = request::parse(&csr.spec.request.0) else {
            return Ok(None); // not ours to judge; the signer reports bad requests
        };
        let Some(message) = decide(&csr, &req) else {
            return Ok(None);
        };
        let mut approved = (*csr).clone();
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        approved
            .status
            .get_or_insert_with(CertificateSigningRequestStatus::default)
            .conditions
            .get_or_insert_with(Vec::new)
            .push(CertificateSigningRequestCondition {
                type_: "Approved".into(),
                status: "True".into(),
                reason: Some("AutoApproved".into()),
                message: Some(message.into()),
                last_update_time: Some(now.clone()),
                last_transition_time: Some(now),
            });
        match self
            .api
            .replace_subresource("approval", &name, &PostParams::default(), &approved)
            .await
        {
            Ok(_) => {
                tracing::info!(csr = %name, user = ?csr.spec.username, "approved kubelet client certificate request");
                Ok(None)
            }
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
            Err(source) => Err(Error::Approve { name, source }),
        }
    }
}

pub fn controller(ctx: &Ctx) -> Loop {
    let queue: WorkQueue<String> = WorkQueue::new("csrapproving", ctx.settings.max_retry_delay);
    let csrs = ctx.informers.informer::<CertificateSigningRequest>();
    {
        let q = queue.clone();
        csrs.on_change(move |c| {
            if c.new.is_some() {
                q.add(ObjectKey::of(c.object().as_ref()).name);
            }
        });
    }
    let state = Arc::new(State {
        api: Api::all(ctx.client.clone()),
        csrs,
    });
    ctx.run_workers(queue, ctx.settings.workers, state, |s, n| async move {
        s.reconcile(n).await
    })
}

#[cfg(test)]
mod tests {
    use super::super::request::tests::request_pem;
    use super::*;

    fn csr(
        username: &str,
        groups: &[&str],
        usages: &[&str],
        signer: &str,
    ) -> CertificateSigningRequest {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "c"},
            "spec": {"request": "", "signerName": signer, "usages": usages,
                     "username": username, "groups": groups},
        }))
        .unwrap()
    }

    #[test]
    fn approval_cases() {
        let node = request::parse(request_pem("system:node:n1", &["system:nodes"], &[]).as_bytes())
            .unwrap();
        let other =
            request::parse(request_pem("alice", &["system:nodes"], &[]).as_bytes()).unwrap();
        let client = ["digital signature", "client auth"];
        let k = KUBE_APISERVER_CLIENT_KUBELET;
        let joiner = csr(
            "system:bootstrap:abcdef",
            &["system:bootstrappers"],
            &client,
            k,
        );
        let renew = csr("system:node:n1", &["system:nodes"], &client, k);
        let other_node = csr("system:node:n2", &["system:nodes"], &client, k);
        let stranger = csr("bob", &["dev"], &client, k);
        let wrong_signer = csr(
            "system:bootstrap:abcdef",
            &["system:bootstrappers"],
            &client,
            "kubernetes.io/kube-apiserver-client",
        );
        let serving = csr(
            "system:bootstrap:abcdef",
            &["system:bootstrappers"],
            &["server auth"],
            k,
        );
        assert!(decide(&joiner, &node)
            .unwrap()
            .starts_with("Auto approving kubelet"));
        assert!(decide(&renew, &node)
            .unwrap()
            .starts_with("Auto approving self"));
        assert_eq!(
            decide(&other_node, &node),
            None,
            "a node may renew only its own"
        );
        assert_eq!(decide(&stranger, &node), None);
        assert_eq!(decide(&wrong_signer, &node), None);
        assert_eq!(decide(&serving, &node), None);
        assert_eq!(decide(&joiner, &other), None, "CN must name a node");
        let mut decided = joiner.clone();
        decided.status = Some(CertificateSigningRequestStatus {
            conditions: Some(vec![CertificateSigningRequestCondition {
                type_: "Denied".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        assert_eq!(decide(&decided, &node), None);
    }
}
