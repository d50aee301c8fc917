//! The node's pod network as a CNI conflist for containerd's CRI plugin: a Linux bridge
//! (the node is the pods' gateway and masquerades their traffic out), host-local addresses
//! from the node's pod CIDR, and port mappings (`hostPort`). containerd sets up the
//! loopback interface itself.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::error::RuntimeError;

/// One bridge network.
#[derive(Clone, Debug)]
pub struct BridgeNetwork {
    /// The CNI network name (also host-local's state directory name); unique per node.
    pub name: String,
    /// The Linux bridge device, at most 15 bytes (e.g. `skiff0`).
    pub bridge: String,
    /// The pod CIDR, e.g. `10.88.3.0/24` or an IPv6 prefix.
    pub subnet: String,
    /// Where host-local records its leases; the plugin's default
    /// (`/var/lib/cni/networks/<name>`) when `None`.
    pub ipam_data_dir: Option<PathBuf>,
    pub mtu: Option<u32>,
}

impl BridgeNetwork {
    pub fn new(name: &str, bridge: &str, subnet: &str) -> Self {
        BridgeNetwork {
            name: name.into(),
            bridge: bridge.into(),
            subnet: subnet.into(),
            ipam_data_dir: None,
            mtu: None,
        }
    }
}

/// The conflist document (cniVersion 1.0.0, which Debian's plugins and containerd 1.6
/// support). Errors name the field that is wrong.
pub fn conflist(net: &BridgeNetwork) -> Result<serde_json::Value, RuntimeError> {
    let is_v4 = parse_cidr(&net.subnet)?;
    if net.name.is_empty()
        || !net
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(RuntimeError::Cni(format!(
            "network name {:?}: want letters, digits, '-', '_' or '.'",
            net.name
        )));
    }
    if net.bridge.is_empty() || net.bridge.len() > 15 || net.bridge.contains(['/', ' ', '\0', ':'])
    {
        return Err(RuntimeError::Cni(format!(
            "bridge name {:?}: want 1 to 15 bytes without '/', ':' or spaces",
            net.bridge
        )));
    }
    let mut ipam = json!({
        "type": "host-local",
        "ranges": [[{ "subnet": net.subnet }]],
        "routes": [{ "dst": if is_v4 { "0.0.0.0/0" } else { "::/0" } }],
    });
    if let Some(dir) = &net.ipam_data_dir {
        ipam["dataDir"] = json!(dir.to_string_lossy());
    }
    let mut bridge = json!({
        "type": "bridge",
        "bridge": net.bridge,
        "isGateway": true,
        "ipMasq": true,
        "hairpinMode": true,
        "ipam": ipam,
    });
    if let Some(mtu) = net.mtu {
        bridge["mtu"] = json!(mtu);
    }
    Ok(json!({
        "cniVersion": "1.0.0",
        "name": net.name,
        "plugins": [
            bridge,
            { "type": "portmap", "capabilities": { "portMappings": true } },
        ],
    }))
}

/// Writes `<conf_dir>/10-<name>.conflist` atomically (containerd watches the directory and
/// must never read half a file) and returns its path.
pub fn write_conflist(conf_dir: &Path, net: &BridgeNetwork) -> Result<PathBuf, RuntimeError> {
    let doc = conflist(net)?;
    let io = |op, path: &Path| {
        let path = path.to_path_buf();
        move |source| RuntimeError::Io { op, path, source }
    };
    std::fs::create_dir_all(conf_dir).map_err(io("creating", conf_dir))?;
    let path = conf_dir.join(format!("10-{}.conflist", net.name));
    let tmp = conf_dir.join(format!(".10-{}.conflist.tmp", net.name));
    let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    std::fs::write(&tmp, text).map_err(io("writing", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(io("renaming to", &path))?;
    Ok(path)
}

/// Checks `addr/len`; true for IPv4.
fn parse_cidr(cidr: &str) -> Result<bool, RuntimeError> {
    let bad = || {
        RuntimeError::Cni(format!(
            "subnet {cidr:?}: want an address/prefix like 10.88.0.0/24"
        ))
    };
    let (addr, len) = cidr.split_once('/').ok_or_else(bad)?;
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let len: u8 = len.parse().map_err(|_| bad())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    // host-local needs room for the gateway and at least one pod.
    if len > max - 2 {
        return Err(bad());
    }
    Ok(addr.is_ipv4())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflist_has_bridge_with_host_local_and_portmap() {
        let mut net = BridgeNetwork::new("skiff", "skiff0", "10.88.3.0/24");
        net.ipam_data_dir = Some("/var/lib/skiff/agent/cni/ipam".into());
        let c = conflist(&net).unwrap();
        assert_eq!(c["name"], "skiff");
        let bridge = &c["plugins"][0];
        assert_eq!(bridge["type"], "bridge");
        assert_eq!(bridge["bridge"], "skiff0");
        assert_eq!(bridge["isGateway"], true);
        assert_eq!(bridge["ipMasq"], true);
        assert_eq!(bridge["hairpinMode"], true);
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "10.88.3.0/24");
        assert_eq!(bridge["ipam"]["routes"][0]["dst"], "0.0.0.0/0");
        assert_eq!(bridge["ipam"]["dataDir"], "/var/lib/skiff/agent/cni/ipam");
        assert_eq!(c["plugins"][1]["type"], "portmap");
        assert_eq!(c["plugins"][1]["capabilities"]["portMappings"], true);
    }

    #[test]
    fn ipv6_subnet_routes_the_v6_default() {
        let c = conflist(&BridgeNetwork::new("n6", "br6", "fd00:10::/64")).unwrap();
        assert_eq!(c["plugins"][0]["ipam"]["routes"][0]["dst"], "::/0");
    }

    #[test]
    fn bad_input_is_refused_with_the_field_named() {
        for (net, field) in [
            (BridgeNetwork::new("n", "b", "10.0.0.0"), "subnet"),
            (BridgeNetwork::new("n", "b", "10.0.0.0/31"), "subnet"),
            (BridgeNetwork::new("n", "b", "nope/24"), "subnet"),
            (
                BridgeNetwork::new("n", "a-very-long-bridge", "10.0.0.0/24"),
                "bridge",
            ),
            (
                BridgeNetwork::new("../x", "b", "10.0.0.0/24"),
                "network name",
            ),
        ] {
            let err = conflist(&net).unwrap_err().to_string();
            assert!(err.contains(field), "{err} should name {field}");
        }
    }

    #[test]
    fn write_conflist_replaces_the_file_whole() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("net.d");
        let p = write_conflist(&conf, &BridgeNetwork::new("t", "t0", "10.1.0.0/24")).unwrap();
        assert_eq!(p, conf.join("10-t.conflist"));
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        assert_eq!(
            v["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
            "10.1.0.0/24"
        );
        let names: Vec<_> = std::fs::read_dir(&conf)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1);
    }
}
