//! The cluster's own certificate authority and the certificates issued from it on first
//! start: the API server's serving certificate and the admin's client certificate. Later
//! starts reuse them (the serving certificate is reissued when the host's names change),
//! so kubeconfigs handed out stay valid.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use crate::ServerError;

/// PEM material the server runs with.
pub struct Pki {
    pub dir: PathBuf,
    pub ca_cert_pem: String,
    ca_key_pem: String,
    pub serving_cert_pem: String,
    pub serving_key_pem: String,
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
}

fn tls_err(what: &str, e: impl std::fmt::Display) -> ServerError {
    ServerError::Tls(format!("{what}: {e}"))
}

pub(crate) fn write_private(path: &Path, contents: &str) -> Result<(), ServerError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| ServerError::io(&tmp, e))?;
    f.write_all(contents.as_bytes())
        .map_err(|e| ServerError::io(&tmp, e))?;
    f.sync_all().map_err(|e| ServerError::io(&tmp, e))?;
    // Rename last, so a crash never leaves a half-written key behind.
    std::fs::rename(&tmp, path).map_err(|e| ServerError::io(path, e))
}

fn read(path: &Path) -> Result<Option<String>, ServerError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ServerError::io(path, e)),
    }
}

fn subject(cn: &str, orgs: &[&str]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    for org in orgs {
        dn.push(DnType::OrganizationName, *org);
    }
    dn
}

/// Issues a leaf certificate signed by the CA.
pub fn issue(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    cn: &str,
    orgs: &[&str],
    sans: &[String],
    server: bool,
) -> Result<(String, String), ServerError> {
    let ca_key = KeyPair::from_pem(ca_key_pem).map_err(|e| tls_err("CA key", e))?;
    let issuer =
        Issuer::from_ca_cert_pem(ca_cert_pem, ca_key).map_err(|e| tls_err("CA certificate", e))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = subject(cn, orgs);
    params.subject_alt_names = sans
        .iter()
        .map(|s| match s.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => s
                .clone()
                .try_into()
                .map(SanType::DnsName)
                .map_err(|e| tls_err("SAN", e)),
        })
        .collect::<Result<_, _>>()?;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![if server {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    (params.not_before, params.not_after) = validity(1);
    let key = KeyPair::generate().map_err(|e| tls_err("key generation", e))?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|e| tls_err("signing", e))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// From yesterday (tolerates clock skew between machines) for `years` years.
fn validity(years: i16) -> (time::OffsetDateTime, time::OffsetDateTime) {
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let from = today.yesterday().unwrap_or(today);
    let ymd = |d: jiff::civil::Date, plus: i16| {
        rcgen::date_time_ymd(
            i32::from(d.year() + plus),
            d.month() as u8,
            d.day().min(28) as u8,
        )
    };
    (ymd(from, 0), ymd(today, years))
}

/// Creates whatever is missing under `dir` and loads the rest.
pub fn ensure(dir: &Path, serving_sans: &[String]) -> Result<Pki, ServerError> {
    std::fs::create_dir_all(dir).map_err(|e| ServerError::io(dir, e))?;
    let path = |name: &str| dir.join(name);
    let (ca_cert_pem, ca_key_pem) = match (read(&path("ca.crt"))?, read(&path("ca.key"))?) {
        (Some(cert), Some(key)) => (cert, key),
        _ => {
            let key = KeyPair::generate().map_err(|e| tls_err("CA key", e))?;
            let mut params = CertificateParams::default();
            params.distinguished_name = subject("skiff-ca", &[]);
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            (params.not_before, params.not_after) = validity(10);
            let cert = params
                .self_signed(&key)
                .map_err(|e| tls_err("CA certificate", e))?;
            write_private(&path("ca.key"), &key.serialize_pem())?;
            write_private(&path("ca.crt"), &cert.pem())?;
            (cert.pem(), key.serialize_pem())
        }
    };
    let sans_file = path("serving.sans");
    let wanted_sans = serving_sans.join("\n");
    let (serving_cert_pem, serving_key_pem) = match (
        read(&path("serving.crt"))?,
        read(&path("serving.key"))?,
        read(&sans_file)?,
    ) {
        (Some(cert), Some(key), Some(sans)) if sans == wanted_sans => (cert, key),
        _ => {
            let (cert, key) = issue(
                &ca_cert_pem,
                &ca_key_pem,
                "skiff-apiserver",
                &[],
                serving_sans,
                true,
            )?;
            write_private(&path("serving.key"), &key)?;
            write_private(&path("serving.crt"), &cert)?;
            write_private(&sans_file, &wanted_sans)?;
            (cert, key)
        }
    };
    let (admin_cert_pem, admin_key_pem) =
        match (read(&path("admin.crt"))?, read(&path("admin.key"))?) {
            (Some(cert), Some(key)) => (cert, key),
            _ => {
                let (cert, key) = issue(
                    &ca_cert_pem,
                    &ca_key_pem,
                    "admin",
                    &["system:masters"],
                    &[],
                    false,
                )?;
                write_private(&path("admin.key"), &key)?;
                write_private(&path("admin.crt"), &cert)?;
                (cert, key)
            }
        };
    Ok(Pki {
        dir: dir.to_path_buf(),
        ca_cert_pem,
        ca_key_pem,
        serving_cert_pem,
        serving_key_pem,
        admin_cert_pem,
        admin_key_pem,
    })
}

impl Pki {
    /// A client certificate for another identity (tests, components, per-user kubeconfigs).
    pub fn issue_client(&self, cn: &str, orgs: &[&str]) -> Result<(String, String), ServerError> {
        issue(&self.ca_cert_pem, &self.ca_key_pem, cn, orgs, &[], false)
    }

    /// A kubeconfig for a client certificate, pointing at `server`.
    pub fn kubeconfig(&self, server: &str, user: &str, cert_pem: &str, key_pem: &str) -> String {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: skiff\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\ncontexts:\n- name: skiff\n  context:\n    cluster: skiff\n    user: {user}\ncurrent-context: skiff\nusers:\n- name: {user}\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\n",
            ca = b64(&self.ca_cert_pem),
            cert = b64(cert_pem),
            key = b64(key_pem),
        )
    }

    /// Writes the admin kubeconfig (mode 0600).
    pub fn write_admin_kubeconfig(&self, path: &Path, server: &str) -> Result<(), ServerError> {
        write_private(
            path,
            &self.kubeconfig(server, "admin", &self.admin_cert_pem, &self.admin_key_pem),
        )
    }
}

/// Names the serving certificate must cover: loopback, the host's name and addresses, the
/// in-cluster `kubernetes` Service name and IP, and any extra names asked for.
pub fn default_sans(
    kubernetes_service_ip: Option<IpAddr>,
    cluster_domain: &str,
    extra: &[String],
) -> Vec<String> {
    let mut sans = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim();
        if !host.is_empty() {
            sans.push(host.to_string());
        }
    }
    if let Ok(ifaces) = if_addrs::get_if_addrs() {
        sans.extend(ifaces.iter().map(|i| i.ip().to_string()));
    }
    for name in ["kubernetes", "kubernetes.default", "kubernetes.default.svc"] {
        sans.push(name.to_string());
    }
    sans.push(format!("kubernetes.default.svc.{cluster_domain}"));
    if let Some(ip) = kubernetes_service_ip {
        sans.push(ip.to_string());
    }
    sans.extend(extra.iter().cloned());
    let mut seen = std::collections::BTreeSet::new();
    sans.retain(|s| seen.insert(s.clone()));
    sans
}
