//! What `skiff server` deploys into the cluster besides its own components (k3s's
//! "packaged components"), each switched off with `--disable <name>`: `coredns` (the
//! `kube-system/kube-dns` Service at the cluster DNS address; the node agents serve the
//! DNS itself) and `servicelb` (addresses for LoadBalancer Services).

use std::net::IpAddr;

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::Service;
use kube::api::PostParams;
use kube::Api;

pub const COREDNS: &str = "coredns";
pub const SERVICELB: &str = "servicelb";
const KNOWN: &[&str] = &[COREDNS, SERVICELB];

/// Checks `--disable` names (k3s's spellings).
pub fn check_disabled(names: &[String]) -> Result<()> {
    for n in names {
        if !KNOWN.contains(&n.as_str()) {
            bail!(
                "--disable: unknown component {n:?} (known: {})",
                KNOWN.join(", ")
            );
        }
    }
    Ok(())
}

/// The kube-dns Service: selector-less (the clusterdns loop lists the nodes serving DNS
/// as its endpoints), at `cluster_ip`, DNS over UDP and TCP.
pub fn kube_dns_service(cluster_ip: IpAddr) -> Service {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": skiff_controllers::clusterdns::SERVICE,
            "namespace": skiff_controllers::clusterdns::NAMESPACE,
            "labels": {
                "k8s-app": "kube-dns",
                "kubernetes.io/cluster-service": "true",
                "kubernetes.io/name": "CoreDNS",
            },
        },
        "spec": {
            "clusterIP": cluster_ip.to_string(),
            "clusterIPs": [cluster_ip.to_string()],
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
            ],
        },
    }))
    .expect("a valid Service")
}

/// Creates the kube-dns Service unless it exists. One at another address is left alone
/// with a warning: pods would be told an address nothing answers on.
pub async fn ensure_kube_dns(client: &kube::Client, cluster_ip: IpAddr) -> Result<()> {
    let api: Api<Service> =
        Api::namespaced(client.clone(), skiff_controllers::clusterdns::NAMESPACE);
    let svc = kube_dns_service(cluster_ip);
    match api.create(&PostParams::default(), &svc).await {
        Ok(_) => {
            tracing::info!(address = %cluster_ip, "created the kube-dns Service");
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let have = api
                .get(skiff_controllers::clusterdns::SERVICE)
                .await
                .context("reading the kube-dns Service")?;
            let ip = have.spec.and_then(|s| s.cluster_ip).unwrap_or_default();
            if ip != cluster_ip.to_string() {
                tracing::warn!(
                    "the kube-dns Service has cluster IP {ip}, not --cluster-dns {cluster_ip}: \
                     pods will not reach DNS; delete the Service and restart to recreate it"
                );
            }
            Ok(())
        }
        Err(e) => Err(e).with_context(|| {
            format!("creating the kube-dns Service at {cluster_ip} (is it inside --service-cidr?)")
        }),
    }
}
