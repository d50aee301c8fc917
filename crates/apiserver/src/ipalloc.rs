//! Service addresses and node ports. Each allocation is a key in the store
//! (`/registry/serviceips/<ip>`, `/registry/servicenodeports/<port>`) written in the same
//! transaction as the Service, created only if absent: two Services can never hold the
//! same address, and deleting the Service frees it in the same step.

use std::net::Ipv4Addr;

use rand::Rng;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub base: Ipv4Addr,
    pub prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a CIDR (want a.b.c.d/n)"))?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("{s:?}: {ip:?} is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| format!("{s:?}: bad prefix length"))?;
        if !(8..=30).contains(&prefix) {
            return Err(format!("{s:?}: prefix length must be between 8 and 30"));
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(Self {
            base: Ipv4Addr::from(u32::from(ip) & mask),
            prefix,
        })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

impl Cidr {
    fn size(&self) -> u32 {
        1u32 << (32 - self.prefix)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & (u32::MAX << (32 - self.prefix)) == u32::from(self.base)
    }

    /// The n-th address (`.1` is the `kubernetes` Service, `.10` cluster DNS).
    pub fn nth(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base) + n)
    }

    /// A random address for a new Service: never the network or broadcast address, and
    /// never the first ten, which are reserved for the `kubernetes` Service and DNS.
    pub fn random(&self) -> Ipv4Addr {
        let n = rand::rng().random_range(11..self.size() - 1);
        self.nth(n)
    }
}

pub const NODE_PORT_RANGE: std::ops::RangeInclusive<u16> = 30000..=32767;

pub fn random_node_port() -> u16 {
    rand::rng().random_range(NODE_PORT_RANGE)
}

pub fn ip_claim(ip: &str) -> String {
    format!("/registry/serviceips/{ip}")
}

pub fn node_port_claim(protocol: &str, port: i64) -> String {
    format!(
        "/registry/servicenodeports/{}/{port}",
        protocol.to_ascii_lowercase()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_and_allocate_inside() {
        let c: Cidr = "10.43.7.9/16".parse().unwrap();
        assert_eq!(c.to_string(), "10.43.0.0/16");
        assert_eq!(c.nth(1), Ipv4Addr::new(10, 43, 0, 1));
        for _ in 0..1000 {
            let ip = c.random();
            assert!(c.contains(ip));
            assert!(u32::from(ip) - u32::from(c.base) > 10);
            assert_ne!(ip, Ipv4Addr::new(10, 43, 255, 255));
        }
        assert!("10.43.0.0".parse::<Cidr>().is_err());
        assert!("10.43.0.0/33".parse::<Cidr>().is_err());
        assert!(NODE_PORT_RANGE.contains(&random_node_port()));
    }
}
