//! Certificate controllers (upstream's `csrapproving` and `csrsigning`): kubelet client
//! certificate requests from joining nodes (bootstrap tokens) and from nodes renewing
//! their own are approved automatically; approved requests for the built-in
//! `kubernetes.io/*` signers are signed with the cluster CA.

pub mod approver;
pub mod request;
pub mod signer;

pub use approver::controller as approving_controller;
pub use signer::controller as signing_controller;

/// Built-in signer names.
pub const KUBE_APISERVER_CLIENT: &str = "kubernetes.io/kube-apiserver-client";
pub const KUBE_APISERVER_CLIENT_KUBELET: &str = "kubernetes.io/kube-apiserver-client-kubelet";
pub const KUBELET_SERVING: &str = "kubernetes.io/kubelet-serving";

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;

/// Whether a condition of `kind` is on the request.
pub fn has_condition(csr: &CertificateSigningRequest, kind: &str) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == kind))
}

/// Whether the request has been issued a certificate.
pub fn is_issued(csr: &CertificateSigningRequest) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .is_some_and(|c| !c.0.is_empty())
}
