//! What a PEM certificate request asks for: subject and alternative names, read with
//! x509-parser (the signature is checked when it is signed).

use std::net::IpAddr;

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    pub common_name: String,
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    /// Email addresses and URIs: no built-in signer accepts them for node certificates.
    pub other_names: Vec<String>,
}

impl Request {
    pub fn has_sans(&self) -> bool {
        !self.dns_names.is_empty() || !self.ip_addresses.is_empty() || !self.other_names.is_empty()
    }
}

/// Parses a PEM `CERTIFICATE REQUEST` (spec.request).
pub fn parse(pem: &[u8]) -> Result<Request, String> {
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(pem).map_err(|e| format!("not a PEM block: {e}"))?;
    if pem.label != "CERTIFICATE REQUEST" {
        return Err("PEM block type must be CERTIFICATE REQUEST".into());
    }
    let (_, csr) = X509CertificationRequest::from_der(&pem.contents)
        .map_err(|e| format!("not a certificate request: {e}"))?;
    let subject = &csr.certification_request_info.subject;
    let mut out = Request {
        common_name: subject
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or("")
            .to_string(),
        organizations: subject
            .iter_organization()
            .filter_map(|o| o.as_str().ok().map(str::to_string))
            .collect(),
        ..Default::default()
    };
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for name in &san.general_names {
                match name {
                    GeneralName::DNSName(d) => out.dns_names.push(d.to_string()),
                    GeneralName::IPAddress(b) => match b.len() {
                        4 => out
                            .ip_addresses
                            .push(IpAddr::from(<[u8; 4]>::try_from(*b).unwrap_or_default())),
                        16 => out
                            .ip_addresses
                            .push(IpAddr::from(<[u8; 16]>::try_from(*b).unwrap_or_default())),
                        _ => out.other_names.push(format!("{b:?}")),
                    },
                    other => out.other_names.push(other.to_string()),
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A PEM request for `cn`/`orgs` with DNS `sans`.
    pub fn request_pem(cn: &str, orgs: &[&str], sans: &[&str]) -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        for o in orgs {
            params
                .distinguished_name
                .push(rcgen::DnType::OrganizationName, *o);
        }
        params.serialize_request(&key).unwrap().pem().unwrap()
    }

    #[test]
    fn reads_subject_and_names() {
        let pem = request_pem(
            "system:node:n1",
            &["system:nodes"],
            &["n1.example", "10.0.0.1"],
        );
        let r = parse(pem.as_bytes()).unwrap();
        assert_eq!(r.common_name, "system:node:n1");
        assert_eq!(r.organizations, vec!["system:nodes"]);
        assert_eq!(r.dns_names, vec!["n1.example"]);
        assert_eq!(r.ip_addresses, vec!["10.0.0.1".parse::<IpAddr>().unwrap()]);
        assert!(parse(b"garbage").is_err());
    }
}
