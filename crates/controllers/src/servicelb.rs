//! Service load balancer without a cloud (k3s's ServiceLB, Skiff's own loop).
//! LoadBalancer Services with no `loadBalancerClass` are exposed on the addresses of the
//! Ready nodes whose service proxy runs (the `skiff.dev/service-proxy` annotation): the
//! proxy on each node already forwards `status.loadBalancer.ingress` addresses and ports
//! to the Service's endpoints, so this loop only fills the status. As with k3s, a port
//! (and protocol) can serve one such Service: a later Service asking for a port already
//! taken gets no addresses and a warning event until the port is free.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{LoadBalancerIngress, Node, Service};
use kube::api::{Patch, PatchParams};
use kube::Api;
use skiff_runtime::events::Recorder;
use skiff_runtime::{Informer, ObjectKey, WorkQueue};

use crate::nodelifecycle::taints::ready_status;
use crate::{Ctx, Loop};

/// The Node annotation an agent sets while its service proxy runs.
pub const NODE_PROXY_ANNOTATION: &str = "skiff.dev/service-proxy";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("updating the status of Service {namespace}/{name}: {source}")]
    Status {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// A node's address for load-balancer traffic: its ExternalIP, else its InternalIP.
fn node_address(node: &Node) -> Option<String> {
    let addrs = node.status.as_ref()?.addresses.as_ref()?;
    let pick = |t: &str| {
        addrs
            .iter()
            .find(|a| a.type_ == t)
            .map(|a| a.address.clone())
    };
    pick("ExternalIP").or_else(|| pick("InternalIP"))
}

fn serves(node: &Node) -> bool {
    let proxies = node
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(NODE_PROXY_ANNOTATION));
    proxies
        && ready_status(node) == "True"
        && node.spec.as_ref().and_then(|s| s.unschedulable) != Some(true)
}

/// The addresses LoadBalancer Services get: every serving node's, sorted, no repeats.
pub fn addresses(nodes: &[Arc<Node>]) -> Vec<String> {
    let mut out: Vec<String> = nodes
        .iter()
        .filter(|n| serves(n))
        .filter_map(|n| node_address(n))
        .collect();
    out.sort();
    out.dedup();
    out
}

fn handled(svc: &Service) -> bool {
    svc.spec.as_ref().is_some_and(|s| {
        s.type_.as_deref() == Some("LoadBalancer") && s.load_balancer_class.is_none()
    })
}

fn ports(svc: &Service) -> Vec<(i32, String)> {
    svc.spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
        .map(|p| (p.port, p.protocol.clone().unwrap_or_else(|| "TCP".into())))
        .collect()
}

/// What each handled Service's ingress should be, oldest Service first claiming its
/// ports; a Service that finds a port taken gets none and the name of the holder.
pub fn plan(
    services: &[Arc<Service>],
    nodes: &[Arc<Node>],
) -> BTreeMap<ObjectKey, Result<Vec<String>, String>> {
    let mut handled: Vec<&Arc<Service>> = services.iter().filter(|s| handled(s)).collect();
    handled.sort_by(|a, b| {
        let t = |s: &Service| s.metadata.creation_timestamp.as_ref().map(|t| t.0);
        t(a).cmp(&t(b))
            .then_with(|| a.metadata.namespace.cmp(&b.metadata.namespace))
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
    let ips = addresses(nodes);
    let mut taken: BTreeMap<(i32, String), ObjectKey> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for svc in handled {
        let key = ObjectKey::of(svc.as_ref());
        let wanted = ports(svc);
        let clash = wanted
            .iter()
            .find_map(|p| taken.get(p).map(|holder| (p, holder)));
        let outcome = match clash {
            Some(((port, proto), holder)) => Err(format!(
                "port {port}/{proto} is already used by LoadBalancer Service {holder}"
            )),
            None => {
                for p in wanted {
                    taken.insert(p, key.clone());
                }
                Ok(ips.clone())
            }
        };
        out.insert(key, outcome);
    }
    // A Service no longer of type LoadBalancer gives its addresses back.
    for svc in services {
        let lb_type = svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer");
        if !lb_type && !current(svc).is_empty() {
            out.insert(ObjectKey::of(svc.as_ref()), Ok(Vec::new()));
        }
    }
    out
}

fn current(svc: &Service) -> Vec<String> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.clone())
        .collect()
}

struct State {
    client: kube::Client,
    services: Informer<Service>,
    nodes: Informer<Node>,
    recorder: Recorder,
    /// Services last warned about, so a standing clash is reported once.
    warned: std::sync::Mutex<HashSet<ObjectKey>>,
}

impl State {
    async fn reconcile(&self) -> Result<Option<Duration>, Error> {
        let plan = plan(&self.services.list(), &self.nodes.list());
        for (key, outcome) in plan {
            let Some(svc) = self.services.get(&key) else {
                continue;
            };
            let want = match outcome {
                Ok(ips) => {
                    self.warned.lock().expect("warned").remove(&key);
                    ips
                }
                Err(why) => {
                    if self.warned.lock().expect("warned").insert(key.clone()) {
                        self.recorder
                            .warning(svc.as_ref(), "SyncLoadBalancerFailed", why);
                    }
                    Vec::new()
                }
            };
            if current(&svc) == want {
                continue;
            }
            let ingress: Vec<LoadBalancerIngress> = want
                .iter()
                .map(|ip| LoadBalancerIngress {
                    ip: Some(ip.clone()),
                    ip_mode: Some("VIP".into()),
                    ..Default::default()
                })
                .collect();
            // No addresses: drop the list (upstream shows `loadBalancer: {}`).
            let ingress = (!ingress.is_empty()).then_some(ingress);
            let patch = serde_json::json!({"status": {"loadBalancer": {"ingress": ingress}}});
            let api: Api<Service> = Api::namespaced(self.client.clone(), key.namespace());
            match api
                .patch_status(&key.name, &PatchParams::default(), &Patch::Merge(patch))
                .await
            {
                Ok(_) => {
                    tracing::info!(service = %key, addresses = ?want, "load balancer addresses set");
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(source) => {
                    return Err(Error::Status {
                        namespace: key.namespace().to_string(),
                        name: key.name.clone(),
                        source,
                    })
                }
            }
        }
        Ok(None)
    }
}

pub fn controller(ctx: &Ctx) -> Loop {
    let queue: WorkQueue<ObjectKey> = WorkQueue::new("servicelb", ctx.settings.max_retry_delay);
    // One key: a Service's addresses depend on every other LoadBalancer Service's ports.
    let key = ObjectKey::new(None, "all");
    let services = ctx.informers.informer::<Service>();
    let nodes = ctx.informers.informer::<Node>();
    {
        let (q, k) = (queue.clone(), key.clone());
        services.on_change(move |c| {
            let relevant =
                c.old.as_deref().is_some_and(handled) || c.new.as_deref().is_some_and(handled);
            if relevant {
                q.add(k.clone());
            }
        });
    }
    {
        let (q, k) = (queue.clone(), key.clone());
        nodes.on_change(move |_| q.add(k.clone()));
    }
    let state = Arc::new(State {
        client: ctx.client.clone(),
        services,
        nodes,
        recorder: ctx.recorder("service-lb-controller"),
        warned: Default::default(),
    });
    queue.add(key);
    ctx.run_workers(queue, 1, state, |s, _| async move { s.reconcile().await })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        NodeAddress, NodeCondition, NodeStatus, ServicePort, ServiceSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn node(name: &str, ip: &str, proxy: bool, ready: bool) -> Arc<Node> {
        Arc::new(Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                annotations: proxy
                    .then(|| [(NODE_PROXY_ANNOTATION.to_string(), "nftables".to_string())].into()),
                ..Default::default()
            },
            status: Some(NodeStatus {
                addresses: Some(vec![NodeAddress {
                    type_: "InternalIP".into(),
                    address: ip.into(),
                }]),
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn lb(name: &str, created: i64, port: i32, class: Option<&str>) -> Arc<Service> {
        Arc::new(Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                creation_timestamp: Some(Time(
                    k8s_openapi::jiff::Timestamp::from_second(created).unwrap(),
                )),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                type_: Some("LoadBalancer".into()),
                load_balancer_class: class.map(Into::into),
                ports: Some(vec![ServicePort {
                    port,
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    #[test]
    fn ready_proxying_nodes_give_the_addresses_and_the_oldest_service_keeps_a_port() {
        let nodes = vec![
            node("b", "10.0.0.2", true, true),
            node("a", "10.0.0.1", true, true),
            node("down", "10.0.0.3", true, false),
            node("hollow", "198.18.0.1", false, true),
        ];
        let services = vec![
            lb("newer", 20, 80, None),
            lb("older", 10, 80, None),
            lb("other-port", 30, 8080, None),
            lb("cloud", 5, 80, Some("example.com/lb")),
        ];
        let plan = plan(&services, &nodes);
        let get = |n: &str| plan.get(&ObjectKey::new(Some("default"), n)).cloned();
        let both = vec!["10.0.0.1".to_string(), "10.0.0.2".to_string()];
        assert_eq!(get("older"), Some(Ok(both.clone())));
        assert_eq!(get("other-port"), Some(Ok(both)));
        assert_eq!(
            get("newer"),
            Some(Err(
                "port 80/TCP is already used by LoadBalancer Service default/older".into()
            ))
        );
        assert_eq!(get("cloud"), None, "another class's Services are not ours");
    }

    #[test]
    fn a_service_that_stops_being_a_load_balancer_gives_its_addresses_back() {
        let nodes = vec![node("a", "10.0.0.1", true, true)];
        let with_status = |svc: Arc<Service>, type_: &str| {
            let mut svc = (*svc).clone();
            svc.spec.as_mut().unwrap().type_ = Some(type_.into());
            svc.status = Some(k8s_openapi::api::core::v1::ServiceStatus {
                load_balancer: Some(k8s_openapi::api::core::v1::LoadBalancerStatus {
                    ingress: Some(vec![LoadBalancerIngress {
                        ip: Some("10.0.0.1".into()),
                        ..Default::default()
                    }]),
                }),
                ..Default::default()
            });
            Arc::new(svc)
        };
        let services = vec![
            with_status(lb("was-lb", 10, 80, None), "ClusterIP"),
            with_status(lb("cloud", 5, 81, Some("example.com/lb")), "LoadBalancer"),
            {
                let mut plain = (*lb("plain", 1, 82, None)).clone();
                plain.spec.as_mut().unwrap().type_ = Some("ClusterIP".into());
                Arc::new(plain)
            },
        ];
        let plan = plan(&services, &nodes);
        let get = |n: &str| plan.get(&ObjectKey::new(Some("default"), n)).cloned();
        assert_eq!(get("was-lb"), Some(Ok(vec![])));
        assert_eq!(get("cloud"), None, "another class's status is its own");
        assert_eq!(get("plain"), None, "nothing to clear");
    }
}
