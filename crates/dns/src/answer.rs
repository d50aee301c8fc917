//! The answer for a question in the cluster domain, from a view of Services and their
//! endpoints. Pure: the server and the tests both drive it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use hickory_proto::rr::rdata::{A, AAAA, CNAME, PTR, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// CoreDNS's kubernetes plugin answers with a 5 s TTL: changes show quickly.
pub const TTL: u32 = 5;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    pub name: String,
    /// `TCP`, `UDP`, `SCTP`.
    pub protocol: String,
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub ip: IpAddr,
    /// `spec.hostname` of a pod whose `subdomain` is this headless Service.
    pub hostname: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceKind {
    /// ClusterIP, NodePort, LoadBalancer: its cluster IPs.
    ClusterIp(Vec<IpAddr>),
    /// `clusterIP: None`: its ready endpoints.
    Headless(Vec<Endpoint>),
    /// `externalName`.
    External(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceInfo {
    pub kind: ServiceKind,
    /// Service ports (ClusterIP) or endpoint ports (headless), for SRV.
    pub ports: Vec<ServicePort>,
}

/// What the answer needs to know about the cluster.
pub trait ClusterView {
    fn service(&self, namespace: &str, name: &str) -> Option<ServiceInfo>;
    /// Whether any Service exists in the namespace (so `<ns>.svc.<domain>` exists).
    fn namespace_has_services(&self, namespace: &str) -> bool;
    /// Names (without the cluster domain: `web.default.svc`, `pod-0.db.default.svc`) that
    /// an IP belongs to, for PTR.
    fn names_of(&self, ip: IpAddr) -> Vec<String>;
}

#[derive(Debug, PartialEq)]
pub enum Answer {
    /// NOERROR with these records.
    Records(Vec<Record>),
    /// The name exists but has no records of the type asked (NOERROR, SOA in authority).
    NoData,
    /// The name does not exist (NXDOMAIN, SOA in authority).
    NxDomain,
    /// An ExternalName Service: the CNAME, whose target is resolved elsewhere.
    Cname(Box<Record>, Name),
    /// Not a cluster name: ask the upstream resolvers.
    Forward,
}

fn name(s: &str) -> Option<Name> {
    Name::from_str(&format!("{}.", s.trim_end_matches('.'))).ok()
}

/// The zone's SOA, for negative answers (CoreDNS's shape).
pub fn soa(domain: &str) -> Record {
    let zone = name(domain).unwrap_or_else(Name::root);
    let mname = name(&format!("ns.dns.{domain}")).unwrap_or_else(Name::root);
    let rname = name(&format!("hostmaster.{domain}")).unwrap_or_else(Name::root);
    Record::from_rdata(
        zone,
        TTL,
        RData::SOA(SOA::new(mname, rname, 1, 7200, 1800, 86400, TTL)),
    )
}

/// Answers `qname`/`qtype` when it is in `domain` (or a reverse name of a cluster IP).
pub fn answer(domain: &str, qname: &Name, qtype: RecordType, view: &dyn ClusterView) -> Answer {
    let full = qname.to_lowercase().to_ascii();
    let full = full.trim_end_matches('.');
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    if let Some(ip) = reverse_ip(full) {
        return reverse(ip, qname, qtype, view, &domain);
    }
    let rest = if full == domain {
        ""
    } else if let Some(r) = full.strip_suffix(&format!(".{domain}")) {
        r
    } else {
        return Answer::Forward;
    };
    let labels: Vec<&str> = if rest.is_empty() {
        Vec::new()
    } else {
        rest.split('.').collect()
    };
    match labels.as_slice() {
        [] => match qtype {
            RecordType::SOA => Answer::Records(vec![soa(&domain)]),
            _ => Answer::NoData,
        },
        ["svc"] => Answer::NoData,
        [ns, "svc"] if view.namespace_has_services(ns) => Answer::NoData,
        [svc, ns, "svc"] => match view.service(ns, svc) {
            Some(info) => service(qname, qtype, &info, &format!("{svc}.{ns}.svc.{domain}")),
            None => Answer::NxDomain,
        },
        [port, proto, svc, ns, "svc"] if port.starts_with('_') && proto.starts_with('_') => {
            match view.service(ns, svc) {
                Some(info) => srv(
                    qname,
                    qtype,
                    &info,
                    &port[1..],
                    &proto[1..],
                    &format!("{svc}.{ns}.svc.{domain}"),
                ),
                None => Answer::NxDomain,
            }
        }
        [ep, svc, ns, "svc"] => match view.service(ns, svc) {
            Some(ServiceInfo {
                kind: ServiceKind::Headless(endpoints),
                ..
            }) => {
                let ips: Vec<IpAddr> = endpoints
                    .iter()
                    .filter(|e| endpoint_label(e) == *ep)
                    .map(|e| e.ip)
                    .collect();
                if ips.is_empty() {
                    Answer::NxDomain
                } else {
                    addresses(qname, qtype, &ips)
                }
            }
            _ => Answer::NxDomain,
        },
        ["pod"] => Answer::NoData,
        [_, "pod"] => Answer::NoData,
        [ip, _ns, "pod"] => match pod_ip(ip) {
            Some(ip) => addresses(qname, qtype, &[ip]),
            None => Answer::NxDomain,
        },
        _ => Answer::NxDomain,
    }
}

/// The label an endpoint answers to under its Service: its hostname, else its dashed IP.
fn endpoint_label(e: &Endpoint) -> String {
    e.hostname.clone().unwrap_or_else(|| dashed(e.ip))
}

fn dashed(ip: IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

/// `10-244-1-5` → 10.244.1.5 (pods' insecure names, as CoreDNS's `pods insecure`).
fn pod_ip(label: &str) -> Option<IpAddr> {
    if let Ok(v4) = Ipv4Addr::from_str(&label.replace('-', ".")) {
        return Some(IpAddr::V4(v4));
    }
    Ipv6Addr::from_str(&label.replace('-', ":"))
        .ok()
        .map(IpAddr::V6)
}

fn addresses(qname: &Name, qtype: RecordType, ips: &[IpAddr]) -> Answer {
    let records: Vec<Record> = ips
        .iter()
        .filter_map(|ip| match (ip, qtype) {
            (IpAddr::V4(v4), RecordType::A | RecordType::ANY) => {
                Some(Record::from_rdata(qname.clone(), TTL, RData::A(A(*v4))))
            }
            (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY) => Some(Record::from_rdata(
                qname.clone(),
                TTL,
                RData::AAAA(AAAA(*v6)),
            )),
            _ => None,
        })
        .collect();
    if records.is_empty() {
        Answer::NoData
    } else {
        Answer::Records(records)
    }
}

fn service(qname: &Name, qtype: RecordType, info: &ServiceInfo, fqdn: &str) -> Answer {
    match &info.kind {
        ServiceKind::External(target) => match name(target) {
            Some(target) => Answer::Cname(
                Box::new(Record::from_rdata(
                    qname.clone(),
                    TTL,
                    RData::CNAME(CNAME(target.clone())),
                )),
                target,
            ),
            None => Answer::NoData,
        },
        ServiceKind::ClusterIp(ips) if qtype == RecordType::SRV => {
            let _ = ips;
            srv_all(qname, info, fqdn, None)
        }
        ServiceKind::Headless(_) if qtype == RecordType::SRV => srv_all(qname, info, fqdn, None),
        ServiceKind::ClusterIp(ips) => addresses(qname, qtype, ips),
        ServiceKind::Headless(endpoints) => {
            let ips: Vec<IpAddr> = endpoints.iter().map(|e| e.ip).collect();
            addresses(qname, qtype, &ips)
        }
    }
}

/// `_http._tcp.web.default.svc.<domain>`: one SRV per matching port; for headless
/// Services one per endpoint, aimed at the endpoint's own name.
fn srv(
    qname: &Name,
    qtype: RecordType,
    info: &ServiceInfo,
    port: &str,
    proto: &str,
    fqdn: &str,
) -> Answer {
    let matching: Vec<&ServicePort> = info
        .ports
        .iter()
        .filter(|p| p.name.eq_ignore_ascii_case(port) && p.protocol.eq_ignore_ascii_case(proto))
        .collect();
    if matching.is_empty() {
        return Answer::NxDomain;
    }
    if qtype != RecordType::SRV && qtype != RecordType::ANY {
        return Answer::NoData;
    }
    srv_all(qname, info, fqdn, Some(&matching))
}

fn srv_all(qname: &Name, info: &ServiceInfo, fqdn: &str, only: Option<&[&ServicePort]>) -> Answer {
    let ports: Vec<&ServicePort> = match only {
        Some(p) => p.to_vec(),
        None => info.ports.iter().filter(|p| !p.name.is_empty()).collect(),
    };
    let targets: Vec<String> = match &info.kind {
        ServiceKind::Headless(eps) => eps
            .iter()
            .map(|e| format!("{}.{fqdn}", endpoint_label(e)))
            .collect(),
        _ => vec![fqdn.to_string()],
    };
    let weight = (100 / targets.len().max(1)) as u16;
    let mut records = Vec::new();
    for p in &ports {
        for t in &targets {
            if let Some(target) = name(t) {
                records.push(Record::from_rdata(
                    qname.clone(),
                    TTL,
                    RData::SRV(SRV::new(0, weight, p.port, target)),
                ));
            }
        }
    }
    if records.is_empty() {
        Answer::NoData
    } else {
        Answer::Records(records)
    }
}

/// The IP a reverse name stands for (`5.1.244.10.in-addr.arpa` → 10.244.1.5).
fn reverse_ip(full: &str) -> Option<IpAddr> {
    if let Some(rest) = full.strip_suffix(".in-addr.arpa") {
        let mut parts: Vec<&str> = rest.split('.').collect();
        if parts.len() != 4 {
            return None;
        }
        parts.reverse();
        return Ipv4Addr::from_str(&parts.join(".")).ok().map(IpAddr::V4);
    }
    if let Some(rest) = full.strip_suffix(".ip6.arpa") {
        let nibbles: Vec<&str> = rest.split('.').collect();
        if nibbles.len() != 32 {
            return None;
        }
        let hex: String = nibbles.iter().rev().copied().collect();
        let groups: Vec<String> = (0..8).map(|i| hex[i * 4..i * 4 + 4].to_string()).collect();
        return Ipv6Addr::from_str(&groups.join(":")).ok().map(IpAddr::V6);
    }
    None
}

fn reverse(
    ip: IpAddr,
    qname: &Name,
    qtype: RecordType,
    view: &dyn ClusterView,
    domain: &str,
) -> Answer {
    let names = view.names_of(ip);
    if names.is_empty() {
        return Answer::Forward;
    }
    if qtype != RecordType::PTR && qtype != RecordType::ANY {
        return Answer::NoData;
    }
    Answer::Records(
        names
            .iter()
            .filter_map(|n| name(&format!("{n}.{domain}")))
            .map(|target| Record::from_rdata(qname.clone(), TTL, RData::PTR(PTR(target))))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Fake(HashMap<(String, String), ServiceInfo>);

    impl ClusterView for Fake {
        fn service(&self, namespace: &str, name: &str) -> Option<ServiceInfo> {
            self.0
                .get(&(namespace.to_string(), name.to_string()))
                .cloned()
        }
        fn namespace_has_services(&self, namespace: &str) -> bool {
            self.0.keys().any(|(ns, _)| ns == namespace)
        }
        fn names_of(&self, ip: IpAddr) -> Vec<String> {
            let mut out = Vec::new();
            for ((ns, svc), info) in &self.0 {
                match &info.kind {
                    ServiceKind::ClusterIp(ips) if ips.contains(&ip) => {
                        out.push(format!("{svc}.{ns}.svc"))
                    }
                    ServiceKind::Headless(eps) => {
                        for e in eps.iter().filter(|e| e.ip == ip) {
                            out.push(format!("{}.{svc}.{ns}.svc", endpoint_label(e)));
                        }
                    }
                    _ => {}
                }
            }
            out
        }
    }

    fn http() -> ServicePort {
        ServicePort {
            name: "http".into(),
            protocol: "TCP".into(),
            port: 80,
        }
    }

    fn cluster() -> Fake {
        let mut m = HashMap::new();
        m.insert(
            ("default".into(), "web".into()),
            ServiceInfo {
                kind: ServiceKind::ClusterIp(vec!["10.43.0.20".parse().unwrap()]),
                ports: vec![http()],
            },
        );
        m.insert(
            ("default".into(), "db".into()),
            ServiceInfo {
                kind: ServiceKind::Headless(vec![
                    Endpoint {
                        ip: "10.42.0.5".parse().unwrap(),
                        hostname: Some("db-0".into()),
                    },
                    Endpoint {
                        ip: "10.42.1.7".parse().unwrap(),
                        hostname: None,
                    },
                ]),
                ports: vec![ServicePort {
                    name: "pg".into(),
                    protocol: "TCP".into(),
                    port: 5432,
                }],
            },
        );
        m.insert(
            ("other".into(), "search".into()),
            ServiceInfo {
                kind: ServiceKind::External("search.example.com".into()),
                ports: vec![],
            },
        );
        Fake(m)
    }

    fn q(s: &str, t: RecordType) -> Answer {
        answer("cluster.local", &Name::from_str(s).unwrap(), t, &cluster())
    }

    fn rdata(a: Answer) -> Vec<String> {
        match a {
            Answer::Records(r) => {
                let mut v: Vec<String> = r.iter().map(|r| r.data().to_string()).collect();
                v.sort();
                v
            }
            other => panic!("expected records, got {other:?}"),
        }
    }

    #[test]
    fn services_endpoints_srv_pods_and_ptr() {
        assert_eq!(
            rdata(q("web.default.svc.cluster.local.", RecordType::A)),
            ["10.43.0.20"]
        );
        assert_eq!(
            rdata(q("WEB.Default.svc.cluster.local.", RecordType::A)),
            ["10.43.0.20"]
        );
        assert_eq!(
            q("web.default.svc.cluster.local.", RecordType::AAAA),
            Answer::NoData
        );
        assert_eq!(
            q("nope.default.svc.cluster.local.", RecordType::A),
            Answer::NxDomain
        );
        assert_eq!(
            q(
                "web.default.svc.cluster.local.default.svc.cluster.local.",
                RecordType::A
            ),
            Answer::NxDomain
        );
        assert_eq!(
            rdata(q("db.default.svc.cluster.local.", RecordType::A)),
            ["10.42.0.5", "10.42.1.7"]
        );
        assert_eq!(
            rdata(q("db-0.db.default.svc.cluster.local.", RecordType::A)),
            ["10.42.0.5"]
        );
        assert_eq!(
            rdata(q("10-42-1-7.db.default.svc.cluster.local.", RecordType::A)),
            ["10.42.1.7"]
        );
        assert_eq!(
            rdata(q(
                "_http._tcp.web.default.svc.cluster.local.",
                RecordType::SRV
            )),
            ["0 100 80 web.default.svc.cluster.local."]
        );
        assert_eq!(
            rdata(q("_pg._tcp.db.default.svc.cluster.local.", RecordType::SRV)),
            [
                "0 50 5432 10-42-1-7.db.default.svc.cluster.local.",
                "0 50 5432 db-0.db.default.svc.cluster.local."
            ]
        );
        assert_eq!(
            q("_http._udp.web.default.svc.cluster.local.", RecordType::SRV),
            Answer::NxDomain
        );
        assert_eq!(
            rdata(q("10-42-3-9.default.pod.cluster.local.", RecordType::A)),
            ["10.42.3.9"]
        );
        assert_eq!(
            rdata(q("20.0.43.10.in-addr.arpa.", RecordType::PTR)),
            ["web.default.svc.cluster.local."]
        );
        assert_eq!(
            rdata(q("5.0.42.10.in-addr.arpa.", RecordType::PTR)),
            ["db-0.db.default.svc.cluster.local."]
        );
        assert_eq!(q("9.9.9.9.in-addr.arpa.", RecordType::PTR), Answer::Forward);
        assert_eq!(q("example.com.", RecordType::A), Answer::Forward);
        assert_eq!(
            q("default.svc.cluster.local.", RecordType::A),
            Answer::NoData
        );
        assert_eq!(
            q("missing.svc.cluster.local.", RecordType::A),
            Answer::NxDomain
        );
        assert_eq!(rdata(q("cluster.local.", RecordType::SOA)).len(), 1);
        match q("search.other.svc.cluster.local.", RecordType::A) {
            Answer::Cname(record, target) => {
                assert_eq!(target.to_ascii(), "search.example.com.");
                assert_eq!(record.record_type(), RecordType::CNAME);
            }
            other => panic!("{other:?}"),
        }
    }
}
