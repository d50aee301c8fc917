//! The pod network of this node: once the node IPAM controller has given the Node its
//! pod subnet (spec.podCIDR), the CNI conflist for it is written (bridge + host-local
//! IPAM + portmap, read by the runtime's CNI plugin), the node turns Ready, and routes
//! to every other node's pod subnet go through that node's InternalIP (host-gw style),
//! so pods reach each other across nodes without an overlay.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use skiff_cri::cni::{write_conflist, BridgeNetwork};
use skiff_runtime::{CancellationToken, Informer};
use tokio::sync::watch;

use crate::config::Config;
use crate::node::Health;

/// The node's bridge network for `subnet`: named after the bridge (unique per node),
/// with host-local's leases kept under the agent's directory.
pub fn bridge_network(config: &Config, subnet: &str) -> BridgeNetwork {
    let mut net = BridgeNetwork::new(&config.cni_bridge, &config.cni_bridge, subnet);
    net.ipam_data_dir = Some(config.agent_dir.join("cni").join("networks"));
    net
}

fn pod_cidr(node: &Node) -> Option<String> {
    node.spec
        .as_ref()?
        .pod_cidr
        .clone()
        .filter(|c| !c.is_empty())
}

fn internal_ip(node: &Node) -> Option<IpAddr> {
    node.status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .find(|a| a.type_ == "InternalIP")?
        .address
        .parse()
        .ok()
}

/// The routes this node wants: other nodes' pod subnets via their InternalIP. Nodes on
/// this node's own address (or loopback: several agents on one test machine) need none.
pub fn wanted_routes(me: &str, my_ip: IpAddr, nodes: &[Arc<Node>]) -> BTreeMap<String, IpAddr> {
    nodes
        .iter()
        .filter(|n| n.metadata.name.as_deref() != Some(me))
        .filter_map(|n| Some((pod_cidr(n)?, internal_ip(n)?)))
        .filter(|(_, ip)| *ip != my_ip && !ip.is_loopback())
        .collect()
}

async fn ip_route(args: &[&str]) -> bool {
    match tokio::process::Command::new("ip").args(args).output().await {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            tracing::warn!(
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
            false
        }
        Err(e) => {
            tracing::warn!("running ip {}: {e}", args.join(" "));
            false
        }
    }
}

/// Follows the Node informer: writes the conflist once our subnet is known (telling
/// `health`), and keeps the routes to other nodes in step.
pub async fn run(
    config: Arc<Config>,
    nodes: Informer<Node>,
    health: watch::Sender<Health>,
    shutdown: CancellationToken,
) {
    let (tx, mut rx) = watch::channel(());
    nodes.on_change(move |_| {
        let _ = tx.send(());
    });
    let mut routes: BTreeMap<String, IpAddr> = BTreeMap::new();
    let mut written: Option<String> = None;
    loop {
        if let Some(me) = nodes.get_named(None, &config.node_name) {
            if let Some(subnet) = pod_cidr(&me) {
                if written.as_deref() != Some(subnet.as_str()) {
                    match write_conflist(&config.cni_conf_dir, &bridge_network(&config, &subnet)) {
                        Ok(_) => {
                            tracing::info!(%subnet, "wrote the CNI config for the node's pod subnet");
                            written = Some(subnet);
                            health.send_replace(Health {
                                network_not_ready: None,
                            });
                        }
                        Err(e) => tracing::warn!("writing the CNI config: {e}"),
                    }
                }
            }
        }
        if config.program_routes {
            let want = wanted_routes(&config.node_name, config.node_ip, &nodes.list());
            for (cidr, via) in &want {
                if routes.get(cidr) != Some(via)
                    && ip_route(&["route", "replace", cidr, "via", &via.to_string()]).await
                {
                    routes.insert(cidr.clone(), *via);
                }
            }
            let stale: Vec<String> = routes
                .keys()
                .filter(|c| !want.contains_key(*c))
                .cloned()
                .collect();
            for cidr in stale {
                ip_route(&["route", "del", &cidr]).await;
                routes.remove(&cidr);
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = rx.changed() => if r.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cidr: Option<&str>, ip: &str) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name},
                "spec": {"podCIDR": cidr},
                "status": {"addresses": [{"type": "InternalIP", "address": ip}]},
            }))
            .unwrap(),
        )
    }

    #[test]
    fn routes_go_to_other_nodes_with_a_subnet_on_another_address() {
        let me: IpAddr = "192.0.2.2".parse().unwrap();
        let nodes = vec![
            node("a", Some("10.42.0.0/24"), "192.0.2.2"),
            node("b", Some("10.42.1.0/24"), "192.0.2.3"),
            node("c", None, "192.0.2.4"),
            node("d", Some("10.42.3.0/24"), "127.0.0.1"),
            node("e", Some("10.42.4.0/24"), "192.0.2.2"),
        ];
        let want = wanted_routes("a", me, &nodes);
        assert_eq!(want.len(), 1);
        assert_eq!(want["10.42.1.0/24"], "192.0.2.3".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn the_network_is_named_after_the_bridge_with_leases_under_the_agent_dir() {
        let c = Config::new("n1", "127.0.0.1".parse().unwrap(), "/a".into(), "/s");
        let net = bridge_network(&c, "10.42.7.0/24");
        assert_eq!(
            (net.name.as_str(), net.bridge.as_str()),
            ("skiff0", "skiff0")
        );
        assert_eq!(
            net.ipam_data_dir.unwrap(),
            std::path::PathBuf::from("/a/cni/networks")
        );
        assert_eq!(net.subnet, "10.42.7.0/24");
    }
}
