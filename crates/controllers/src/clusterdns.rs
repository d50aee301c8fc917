//! Cluster DNS endpoints (Skiff's own loop). Every node agent serves the cluster DNS on
//! its own address and says so with the `skiff.dev/cluster-dns` annotation on its Node.
//! This loop keeps one EndpointSlice of the selector-less `kube-system/kube-dns` Service
//! listing those nodes (ready while the node is Ready), so the Service's cluster IP
//! (`--cluster-dns`) reaches a live DNS server through the service proxy like any other
//! Service. A `kube-dns` Service with a selector (a CoreDNS Deployment) is left to the
//! EndpointSlice controller.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::PostParams;
use kube::runtime::watcher;
use kube::Api;
use skiff_runtime::{Informer, ObjectKey, WorkQueue};

use crate::nodelifecycle::taints::ready_status;
use crate::{Ctx, Loop};

/// The Node annotation an agent sets to the IPv4 address its DNS answers on (port 53).
pub const NODE_DNS_ANNOTATION: &str = "skiff.dev/cluster-dns";
pub const NAMESPACE: &str = "kube-system";
pub const SERVICE: &str = "kube-dns";
/// The slice this loop owns.
pub const SLICE: &str = "kube-dns-nodes";
const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
const MANAGER: &str = "clusterdns.skiff.dev";
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing EndpointSlice {NAMESPACE}/{SLICE}: {0}")]
    Write(#[source] kube::Error),
}

/// The endpoints: one per node advertising DNS, ready while the node is Ready, by name.
pub fn endpoints(nodes: &[Arc<Node>]) -> Vec<Endpoint> {
    let mut out: Vec<(String, Endpoint)> = nodes
        .iter()
        .filter_map(|n| {
            let name = n.metadata.name.clone()?;
            let ip: Ipv4Addr = n
                .metadata
                .annotations
                .as_ref()?
                .get(NODE_DNS_ANNOTATION)?
                .parse()
                .ok()?;
            let ready = ready_status(n) == "True";
            let endpoint = Endpoint {
                addresses: vec![ip.to_string()],
                conditions: Some(EndpointConditions {
                    ready: Some(ready),
                    serving: Some(ready),
                    terminating: Some(false),
                }),
                node_name: Some(name.clone()),
                ..Default::default()
            };
            Some((name, endpoint))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.into_iter().map(|(_, e)| e).collect()
}

/// The slice's ports: the Service's, each to port 53 (or its numeric target port).
pub fn ports(svc: &Service) -> Vec<EndpointPort> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    svc.spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
        .map(|p| EndpointPort {
            name: Some(p.name.clone().unwrap_or_default()),
            protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
            port: Some(match &p.target_port {
                Some(IntOrString::Int(n)) if *n > 0 => *n,
                _ => 53,
            }),
            app_protocol: p.app_protocol.clone(),
        })
        .collect()
}

/// The slice this loop wants for `svc` given the nodes.
pub fn wanted(svc: &Service, nodes: &[Arc<Node>]) -> EndpointSlice {
    let labels: BTreeMap<String, String> = [
        (SERVICE_NAME_LABEL.to_string(), SERVICE.to_string()),
        (MANAGED_BY.to_string(), MANAGER.to_string()),
    ]
    .into();
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(SLICE.into()),
            namespace: Some(NAMESPACE.into()),
            labels: Some(labels),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Service".into(),
                name: SERVICE.into(),
                uid: svc.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints: endpoints(nodes),
        ports: Some(ports(svc)),
    }
}

fn same(have: &EndpointSlice, want: &EndpointSlice) -> bool {
    have.endpoints == want.endpoints
        && have.ports == want.ports
        && have.address_type == want.address_type
        && have.metadata.labels == want.metadata.labels
        && have.metadata.owner_references == want.metadata.owner_references
}

struct State {
    api: Api<EndpointSlice>,
    services: Informer<Service>,
    nodes: Informer<Node>,
    slices: Informer<EndpointSlice>,
}

impl State {
    async fn reconcile(&self) -> Result<Option<Duration>, Error> {
        let Some(svc) = self.services.get_named(Some(NAMESPACE), SERVICE) else {
            // Deleted: the garbage collector removes the slice it owned.
            return Ok(None);
        };
        let spec = svc.spec.as_ref();
        if spec
            .and_then(|s| s.selector.as_ref())
            .is_some_and(|s| !s.is_empty())
            || spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName")
        {
            return Ok(None);
        }
        let want = wanted(&svc, &self.nodes.list());
        match self.slices.get_named(Some(NAMESPACE), SLICE) {
            Some(have) if same(&have, &want) => Ok(None),
            Some(have) => {
                let mut next = want;
                next.metadata.resource_version = have.metadata.resource_version.clone();
                match self.api.replace(SLICE, &PostParams::default(), &next).await {
                    Ok(_) => Ok(None),
                    // A newer slice is on its way through the watch: look again then.
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(None),
                    Err(e) => Err(Error::Write(e)),
                }
            }
            None => match self.api.create(&PostParams::default(), &want).await {
                Ok(_) => Ok(None),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(None),
                Err(e) => Err(Error::Write(e)),
            },
        }
    }
}

pub fn controller(ctx: &Ctx) -> Loop {
    let queue: WorkQueue<ObjectKey> = WorkQueue::new("clusterdns", ctx.settings.max_retry_delay);
    let key = ObjectKey::new(Some(NAMESPACE), SERVICE);
    let services = ctx.informers.informer::<Service>();
    let nodes = ctx.informers.informer::<Node>();
    let slices = ctx.informers.informer_with::<EndpointSlice>(
        "clusterdns-slices",
        watcher::Config::default().labels(&format!("{MANAGED_BY}={MANAGER}")),
    );
    {
        let (q, k) = (queue.clone(), key.clone());
        services.on_change(move |c| {
            let o = c.object();
            if o.metadata.namespace.as_deref() == Some(NAMESPACE)
                && o.metadata.name.as_deref() == Some(SERVICE)
            {
                q.add(k.clone());
            }
        });
    }
    {
        let (q, k) = (queue.clone(), key.clone());
        nodes.on_change(move |_| q.add(k.clone()));
    }
    {
        let (q, k) = (queue.clone(), key.clone());
        slices.on_change(move |_| q.add(k.clone()));
    }
    let state = Arc::new(State {
        api: Api::namespaced(ctx.client.clone(), NAMESPACE),
        services,
        nodes,
        slices,
    });
    queue.add(key);
    ctx.run_workers(queue, 1, state, |s, _| async move { s.reconcile().await })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeCondition, NodeStatus, ServicePort, ServiceSpec};

    fn node(name: &str, dns: Option<&str>, ready: bool) -> Arc<Node> {
        Arc::new(Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                annotations: dns
                    .map(|ip| [(NODE_DNS_ANNOTATION.to_string(), ip.to_string())].into()),
                ..Default::default()
            },
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "Unknown" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn kube_dns() -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(SERVICE.into()),
                namespace: Some(NAMESPACE.into()),
                uid: Some("u1".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                ports: Some(vec![
                    ServicePort {
                        name: Some("dns".into()),
                        protocol: Some("UDP".into()),
                        port: 53,
                        ..Default::default()
                    },
                    ServicePort {
                        name: Some("dns-tcp".into()),
                        protocol: Some("TCP".into()),
                        port: 53,
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn lists_nodes_that_serve_dns_ready_only_while_the_node_is() {
        let nodes = vec![
            node("b", Some("10.0.0.2"), false),
            node("a", Some("10.0.0.1"), true),
            node("hollow", None, true),
            node("bad", Some("not-an-ip"), true),
        ];
        let slice = wanted(&kube_dns(), &nodes);
        let got: Vec<(String, bool)> = slice
            .endpoints
            .iter()
            .map(|e| {
                (
                    e.addresses[0].clone(),
                    e.conditions.as_ref().unwrap().ready.unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![("10.0.0.1".into(), true), ("10.0.0.2".into(), false)]
        );
        assert_eq!(slice.endpoints[0].node_name.as_deref(), Some("a"));
        let ports: Vec<(String, String, i32)> = slice
            .ports
            .unwrap()
            .into_iter()
            .map(|p| (p.name.unwrap(), p.protocol.unwrap(), p.port.unwrap()))
            .collect();
        assert_eq!(
            ports,
            vec![
                ("dns".into(), "UDP".into(), 53),
                ("dns-tcp".into(), "TCP".into(), 53)
            ]
        );
        let labels = slice.metadata.labels.unwrap();
        assert_eq!(labels[SERVICE_NAME_LABEL], SERVICE);
        assert_eq!(
            slice.metadata.owner_references.unwrap()[0].uid,
            "u1".to_string()
        );
    }
}
