//! The cluster as the DNS server sees it: shared informers on Services and EndpointSlices,
//! indexed so each question costs a few map lookups.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use skiff_runtime::informer::{Informer, InformerFactory};

use crate::answer::{ClusterView, Endpoint, ServiceInfo, ServiceKind, ServicePort};

const BY_SERVICE: &str = "service";
const BY_CLUSTER_IP: &str = "clusterIP";
const BY_ADDRESS: &str = "address";
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

#[derive(Clone)]
pub struct InformerView {
    services: Informer<Service>,
    slices: Informer<EndpointSlice>,
}

impl InformerView {
    /// Registers the informers it needs on `factory` (start the factory afterwards).
    pub fn new(factory: &InformerFactory) -> Self {
        let services = factory.informer::<Service>();
        let slices = factory.informer::<EndpointSlice>();
        services.add_index(BY_CLUSTER_IP, |svc: &Service| {
            svc.spec
                .as_ref()
                .map(|s| {
                    s.cluster_ips
                        .clone()
                        .or_else(|| s.cluster_ip.clone().map(|ip| vec![ip]))
                        .unwrap_or_default()
                })
                .unwrap_or_default()
                .into_iter()
                .filter(|ip| ip != "None" && !ip.is_empty())
                .collect()
        });
        slices.add_index(BY_SERVICE, |s: &EndpointSlice| {
            let ns = s.metadata.namespace.clone().unwrap_or_default();
            s.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
                .map(|svc| vec![format!("{ns}/{svc}")])
                .unwrap_or_default()
        });
        slices.add_index(BY_ADDRESS, |s: &EndpointSlice| {
            s.endpoints
                .iter()
                .flat_map(|e| e.addresses.iter().cloned())
                .collect()
        });
        Self { services, slices }
    }

    pub async fn wait_synced(&self) {
        self.services.wait_synced().await;
        self.slices.wait_synced().await;
    }

    fn endpoints(&self, namespace: &str, name: &str) -> (Vec<Endpoint>, Vec<ServicePort>) {
        let mut endpoints = Vec::new();
        let mut ports: Vec<ServicePort> = Vec::new();
        for slice in self
            .slices
            .by_index(BY_SERVICE, &format!("{namespace}/{name}"))
        {
            for p in slice.ports.iter().flatten() {
                let port = ServicePort {
                    name: p.name.clone().unwrap_or_default(),
                    protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    port: p.port.unwrap_or(0) as u16,
                };
                if !ports.contains(&port) {
                    ports.push(port);
                }
            }
            for e in &slice.endpoints {
                // Only ready endpoints answer, as CoreDNS (the controller marks
                // publishNotReadyAddresses Services' endpoints ready).
                let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
                if !ready {
                    continue;
                }
                for addr in &e.addresses {
                    if let Ok(ip) = addr.parse::<IpAddr>() {
                        endpoints.push(Endpoint {
                            ip,
                            hostname: e.hostname.clone(),
                        });
                    }
                }
            }
        }
        (endpoints, ports)
    }
}

impl ClusterView for InformerView {
    fn service(&self, namespace: &str, name: &str) -> Option<ServiceInfo> {
        let svc = self.services.get_named(Some(namespace), name)?;
        let spec = svc.spec.as_ref()?;
        if spec.type_.as_deref() == Some("ExternalName") {
            return Some(ServiceInfo {
                kind: ServiceKind::External(spec.external_name.clone().unwrap_or_default()),
                ports: Vec::new(),
            });
        }
        if spec.cluster_ip.as_deref() == Some("None") {
            let (endpoints, ports) = self.endpoints(namespace, name);
            return Some(ServiceInfo {
                kind: ServiceKind::Headless(endpoints),
                ports,
            });
        }
        let ips = spec
            .cluster_ips
            .clone()
            .or_else(|| spec.cluster_ip.clone().map(|ip| vec![ip]))
            .unwrap_or_default()
            .iter()
            .filter_map(|ip| ip.parse().ok())
            .collect();
        let ports = spec
            .ports
            .iter()
            .flatten()
            .map(|p| ServicePort {
                name: p.name.clone().unwrap_or_default(),
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                port: p.port as u16,
            })
            .collect();
        Some(ServiceInfo {
            kind: ServiceKind::ClusterIp(ips),
            ports,
        })
    }

    fn namespace_has_services(&self, namespace: &str) -> bool {
        !self.services.list_namespace(namespace).is_empty()
    }

    fn names_of(&self, ip: IpAddr) -> Vec<String> {
        let text = ip.to_string();
        let mut out = Vec::new();
        for svc in self.services.by_index(BY_CLUSTER_IP, &text) {
            let ns = svc.metadata.namespace.clone().unwrap_or_default();
            let name = svc.metadata.name.clone().unwrap_or_default();
            out.push(format!("{name}.{ns}.svc"));
        }
        for slice in self.slices.by_index(BY_ADDRESS, &text) {
            let ns = slice.metadata.namespace.clone().unwrap_or_default();
            let Some(svc) = slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
            else {
                continue;
            };
            // Only headless Services name their endpoints.
            let headless = self
                .services
                .get_named(Some(&ns), svc)
                .and_then(|s| s.spec.as_ref().and_then(|s| s.cluster_ip.clone()))
                .as_deref()
                == Some("None");
            if !headless {
                continue;
            }
            for e in slice
                .endpoints
                .iter()
                .filter(|e| e.addresses.contains(&text))
            {
                let label = e
                    .hostname
                    .clone()
                    .unwrap_or_else(|| text.replace(['.', ':'], "-"));
                let name = format!("{label}.{svc}.{ns}.svc");
                if !out.contains(&name) {
                    out.push(name);
                }
            }
        }
        out
    }
}
