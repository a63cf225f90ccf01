//! The `[acme]` section: certificates Meridian orders and renews itself from an ACME CA, proving control
//! of each name with DNS-01 answered by its own authoritative DNS. Only the shape is checked here (URL,
//! absolute paths, names inside a configured zone, values in range); whether the key file is usable is
//! the binary's check (`meridian config check` reads it), as the `[tls]` files are `meridian-tls`'s.
//!
//! Why the names must lie in a configured zone: the CA asks Meridian's DNS for `_acme-challenge.NAME`, and
//! only names of its own zones does Meridian answer.

use std::path::PathBuf;

use crate::DomainName;
use crate::checker::Checker;
use crate::raw::{RawAcme, RawAcmeCertificate, RawService};
use indexmap::IndexMap;

/// The key type of the certificates ordered (the key is made by the ordering node).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcmeKeyType {
    /// ECDSA on P-256 (the default).
    EcdsaP256,
    /// ECDSA on P-384.
    EcdsaP384,
}

/// Where a certificate is ordered: the CA's directory and the account there (one account per directory
/// and contacts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcmeCa {
    /// The CA's ACME directory URL (`https://...`).
    pub directory: String,
    /// Account contacts (`mailto:...`).
    pub contact: Vec<String>,
    /// PEM file of the root that the directory's HTTPS certificate chains to, when it is not a public
    /// one (a test CA such as Pebble).
    pub ca_root: Option<PathBuf>,
}

/// One certificate to keep valid: the DNS names it covers (`*.zone` for a wildcard).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcmeCertificate {
    /// Names in file order; the first one names the certificate (its store key, its metrics label).
    pub names: Vec<String>,
    /// Key type of this certificate: its own `key-type`, else `[acme]`'s (used at its next order).
    pub key_type: AcmeKeyType,
    /// The CA it is ordered from: its own `directory` (with its `contact` and `ca-root`), else `[acme]`'s.
    pub ca: AcmeCa,
}

impl AcmeCertificate {
    /// The certificate's id: its first name.
    pub fn id(&self) -> &str {
        self.names.first().map(String::as_str).unwrap_or_default()
    }
}

/// The `[acme]` section.
#[derive(Clone, Debug, PartialEq)]
pub struct AcmeSettings {
    /// The CA certificates are ordered from unless one names its own (`directory`, `contact`, `ca-root`).
    pub ca: AcmeCa,
    /// Key type of the certificates.
    pub key_type: AcmeKeyType,
    /// The operator's 32-byte key that encrypts private keys in the store (64 hex digits, or 32 raw bytes).
    pub key_file: PathBuf,
    /// Renew once this fraction of a certificate's lifetime has passed (default 2/3).
    pub renew_fraction: f64,
    /// First wait after a failed order, milliseconds (default 60,000); doubles per failure.
    pub retry_initial_ms: u32,
    /// Longest wait between failed orders, milliseconds (default 6 h).
    pub retry_max_ms: u32,
    /// How long the ordering node waits, at most, for every live DNS node to report the store revision
    /// of the challenge records (default 30,000 ms); a node still behind then is named in the log.
    pub propagation_timeout_ms: u32,
    /// How long the ordering node waits more once the DNS nodes serve the challenge records, before it
    /// tells the CA to look (default 2,000 ms).
    pub propagation_delay_ms: u32,
    /// The certificates, in file order.
    pub certificates: Vec<AcmeCertificate>,
}

impl AcmeSettings {
    /// When a certificate valid from `not_before_ms` to `not_after_ms` is due for renewal: `renew-fraction`
    /// of its lifetime after it starts (the orderer's rule, and what `meridian status` shows).
    pub fn renew_at_ms(&self, not_before_ms: u64, not_after_ms: u64) -> u64 {
        let life = not_after_ms.saturating_sub(not_before_ms) as f64;
        not_before_ms + (life * self.renew_fraction) as u64
    }
}

/// A `key-type` value at `path` (`None`: absent, or reported).
fn parse_key_type(c: &mut Checker, path: &str, value: Option<&str>) -> Option<AcmeKeyType> {
    match value? {
        "ecdsa-p256" => Some(AcmeKeyType::EcdsaP256),
        "ecdsa-p384" => Some(AcmeKeyType::EcdsaP384),
        k => {
            // RSA is not offered: the key is made by the ordering node with *ring*, which cannot make
            // RSA keys.
            c.err(path, format!("{k:?}: expected \"ecdsa-p256\" or \"ecdsa-p384\""));
            None
        }
    }
}

fn absolute(c: &mut Checker, path: &str, value: &str) -> Option<PathBuf> {
    if !value.starts_with('/') {
        c.err(
            path,
            format!(
                "{value:?} is not an absolute path (the configuration is shared: every node reads the \
                 file at this path on its own disk)"
            ),
        );
        return None;
    }
    Some(PathBuf::from(value))
}

/// Checks a CA's `directory` (required), `contact` and `ca-root` under `at` (`acme`,
/// `acme.certificates[0]`).
fn check_ca(
    c: &mut Checker,
    at: &str,
    directory: Option<&str>,
    contact: &[String],
    ca_root: Option<&str>,
) -> AcmeCa {
    let directory = match directory {
        None => {
            c.err(
                format!("{at}.directory"),
                "is required (the CA's ACME directory URL)",
            );
            String::new()
        }
        Some(d) if !d.starts_with("https://") => {
            c.err(
                format!("{at}.directory"),
                format!("{d:?}: expected an https:// URL"),
            );
            String::new()
        }
        Some(d) => d.to_owned(),
    };
    for (i, contact) in contact.iter().enumerate() {
        if !contact.starts_with("mailto:") {
            c.err(
                format!("{at}.contact[{i}]"),
                format!("{contact:?}: expected a mailto: URL"),
            );
        }
    }
    let ca_root = ca_root.and_then(|p| absolute(c, &format!("{at}.ca-root"), p));
    AcmeCa {
        directory,
        contact: contact.to_vec(),
        ca_root,
    }
}

/// The hostnames of the services with `tls = "acme"` (reporting a `tls` value that is not `"acme"`, and
/// `"acme"` without an `[acme]` section).
fn acme_services(c: &mut Checker, has_acme: bool, services: &IndexMap<String, RawService>) -> Vec<String> {
    let mut by_service = Vec::new();
    for (name, s) in services {
        match s.tls.as_deref() {
            None => {}
            Some("acme") => {
                if !has_acme {
                    c.err(
                        format!("services.{name}.tls"),
                        "\"acme\" needs an [acme] section (the CA's directory and the key file)",
                    );
                } else if let Some(h) = &s.hostname {
                    by_service.push(h.trim_end_matches('.').to_ascii_lowercase());
                }
            }
            Some(other) => c.err(
                format!("services.{name}.tls"),
                format!("{other:?}: expected \"acme\" (certificate files are listed in [tls])"),
            ),
        }
    }
    by_service
}

/// Whether `name` lies in one of `zones`.
fn in_zone(zones: &[DomainName], name: &str) -> bool {
    zones
        .iter()
        .any(|z| name == z.as_str() || name.ends_with(&format!(".{}", z.as_str())))
}

/// Checks `[[acme.certificates]]`'s `i`th entry: its names (in a zone of `zones`, each once), its own key
/// type and CA (else `key_type` and `ca`, `[acme]`'s). `None` when it names nothing usable.
fn check_certificate(
    c: &mut Checker,
    i: usize,
    cert: &RawAcmeCertificate,
    zones: &[DomainName],
    key_type: AcmeKeyType,
    ca: &AcmeCa,
) -> Option<AcmeCertificate> {
    let own_key_type = parse_key_type(
        c,
        &format!("acme.certificates[{i}].key-type"),
        cert.key_type.as_deref(),
    );
    // Its own CA: a directory, with its own contacts and root (not `[acme]`'s: another CA).
    let own_ca = match (&cert.directory, &cert.contact, &cert.ca_root) {
        (None, None, None) => None,
        (None, _, _) => {
            c.err(
                format!("acme.certificates[{i}].directory"),
                "is required with contact or ca-root (they belong to a CA's account)",
            );
            None
        }
        (Some(d), contact, root) => Some(check_ca(
            c,
            &format!("acme.certificates[{i}]"),
            Some(d),
            contact.as_deref().unwrap_or_default(),
            root.as_deref(),
        )),
    };
    let p = format!("acme.certificates[{i}].names");
    if cert.names.is_empty() {
        c.err(&p, "must list at least one name");
        return None;
    }
    let mut names = Vec::new();
    for (j, n) in cert.names.iter().enumerate() {
        let np = format!("{p}[{j}]");
        let (wild, base) = match n.strip_prefix("*.") {
            Some(b) => (true, b),
            None => (false, n.as_str()),
        };
        let Some(d) = c.domain(&np, base) else { continue };
        if !in_zone(zones, d.as_str()) {
            c.err(
                &np,
                format!(
                    "{n:?} is in no configured zone (the CA's DNS-01 challenge is answered by \
                     Meridian's own zones)"
                ),
            );
            continue;
        }
        let name = if wild {
            format!("*.{}", d.as_str())
        } else {
            d.as_str().to_owned()
        };
        if names.contains(&name) {
            c.err(&np, format!("{name:?} is listed twice"));
            continue;
        }
        names.push(name);
    }
    names.first()?;
    Some(AcmeCertificate {
        names,
        key_type: own_key_type.unwrap_or(key_type),
        ca: own_ca.unwrap_or_else(|| ca.clone()),
    })
}

/// Checks `[acme]`; `zones` are the configured zone origins (a name must lie in one of them); a service
/// with `tls = "acme"` adds a certificate for its hostname (unless a listed certificate names it already).
pub(crate) fn check_acme(
    c: &mut Checker,
    raw: Option<&RawAcme>,
    zones: &[DomainName],
    services: &IndexMap<String, RawService>,
) -> Option<AcmeSettings> {
    let by_service = acme_services(c, raw.is_some(), services);
    let raw = raw?;
    let ca = check_ca(
        c,
        "acme",
        raw.directory.as_deref(),
        &raw.contact,
        raw.ca_root.as_deref(),
    );
    let key_type =
        parse_key_type(c, "acme.key-type", raw.key_type.as_deref()).unwrap_or(AcmeKeyType::EcdsaP256);
    let key_file = match raw.key_file.as_deref() {
        None => {
            c.err(
                "acme.key-file",
                "is required (the key that encrypts certificate keys in the store)",
            );
            None
        }
        Some(p) => absolute(c, "acme.key-file", p),
    };
    let renew_fraction = match raw.renew_fraction {
        None => 2.0 / 3.0,
        Some(f) if f > 0.0 && f < 1.0 => f,
        Some(f) => {
            c.err(
                "acme.renew-fraction",
                format!("{f} is out of range (above 0, below 1)"),
            );
            2.0 / 3.0
        }
    };
    let retry_initial_ms = c.int(
        "acme.retry-initial-ms",
        raw.retry_initial_ms,
        60_000,
        100..=86_400_000,
    );
    let retry_max_ms = c.int(
        "acme.retry-max-ms",
        raw.retry_max_ms,
        6 * 3_600_000,
        100..=86_400_000,
    );
    if retry_max_ms < retry_initial_ms {
        c.err(
            "acme.retry-max-ms",
            format!("{retry_max_ms} is below acme.retry-initial-ms ({retry_initial_ms})"),
        );
    }
    let propagation_delay_ms = c.int(
        "acme.propagation-delay-ms",
        raw.propagation_delay_ms,
        2_000,
        0..=600_000,
    );
    let propagation_timeout_ms = c.int(
        "acme.propagation-timeout-ms",
        raw.propagation_timeout_ms,
        30_000,
        0..=600_000,
    );
    if raw.certificates.is_empty() && by_service.is_empty() {
        c.err(
            "acme.certificates",
            "must list at least one certificate (or a service must say tls = \"acme\")",
        );
    }
    let mut certificates: Vec<AcmeCertificate> = Vec::new();
    for (i, cert) in raw.certificates.iter().enumerate() {
        let Some(cert) = check_certificate(c, i, cert, zones, key_type, &ca) else {
            continue;
        };
        if certificates.iter().any(|o| o.id() == cert.id()) {
            c.err(
                format!("acme.certificates[{i}].names"),
                format!(
                    "another certificate is named {:?} already (its first name)",
                    cert.id()
                ),
            );
            continue;
        }
        certificates.push(cert);
    }
    // A service's hostname (its validity is the service check's) not covered by a listed certificate's
    // names gets a certificate of its own.
    for host in by_service {
        // Named exactly, or covered by a listed wildcard (one label).
        let covered = |n: &String| match n.strip_prefix("*.") {
            Some(parent) => host.split_once('.').is_some_and(|(_, p)| p == parent),
            None => *n == host,
        };
        let listed = certificates
            .iter()
            .any(|cert: &AcmeCertificate| cert.names.iter().any(covered));
        if listed || certificates.iter().any(|o| o.id() == host) || !in_zone(zones, &host) {
            // (A hostname outside the zones is the service check's to report.)
            continue;
        }
        certificates.push(AcmeCertificate {
            names: vec![host],
            key_type,
            ca: ca.clone(),
        });
    }
    Some(AcmeSettings {
        ca,
        key_type,
        key_file: key_file.unwrap_or_default(),
        renew_fraction,
        retry_initial_ms,
        retry_max_ms,
        propagation_timeout_ms,
        propagation_delay_ms,
        certificates,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use crate::{Config, ConfigError};

    const BASE: &str = crate::fixtures::ONE_REGION_WITH_TLS;

    fn problems(acme: &str) -> Vec<String> {
        match Config::from_toml_str(&format!("{BASE}\n{acme}")) {
            Ok(_) => Vec::new(),
            Err(ConfigError::Invalid(p)) => p.iter().map(ToString::to_string).collect(),
            Err(e) => vec![e.to_string()],
        }
    }

    #[test]
    fn a_complete_section_is_accepted_with_defaults() {
        let text = format!(
            "{BASE}\n[acme]\ndirectory = \"https://ca.example/dir\"\nkey-file = \"/etc/meridian/acme.key\"\n\
             [[acme.certificates]]\nnames = [\"Meet.gslb.example\", \"*.gslb.example\"]\n"
        );
        let c = Config::from_toml_str(&text).unwrap();
        let a = c.acme().unwrap();
        assert_eq!(a.certificates[0].names, ["meet.gslb.example", "*.gslb.example"]);
        assert_eq!(a.certificates[0].id(), "meet.gslb.example");
        assert!((a.renew_fraction - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(a.key_type, super::AcmeKeyType::EcdsaP256);
        assert_eq!(a.retry_initial_ms, 60_000);
        assert_eq!(a.propagation_timeout_ms, 30_000);
    }

    #[test]
    fn a_certificate_may_have_its_own_key_type() {
        let text = format!(
            "{BASE}\n[acme]\ndirectory = \"https://ca.example/dir\"\nkey-file = \"/k\"\nkey-type = \"ecdsa-p384\"\n\
             [[acme.certificates]]\nnames = [\"a.gslb.example\"]\nkey-type = \"ecdsa-p256\"\n\
             [[acme.certificates]]\nnames = [\"b.gslb.example\"]\n"
        );
        let c = Config::from_toml_str(&text).unwrap();
        let types: Vec<_> = c
            .acme()
            .unwrap()
            .certificates
            .iter()
            .map(|c| c.key_type)
            .collect();
        assert_eq!(
            types,
            [super::AcmeKeyType::EcdsaP256, super::AcmeKeyType::EcdsaP384]
        );
        let p = problems(
            "[acme]\ndirectory = \"https://ca.example/dir\"\nkey-file = \"/k\"\n\
             [[acme.certificates]]\nnames = [\"a.gslb.example\"]\nkey-type = \"rsa-2048\"\n",
        );
        assert!(
            p.iter()
                .any(|x| x.starts_with("acme.certificates[0].key-type: \"rsa-2048\": expected")),
            "{p:?}"
        );
    }

    #[test]
    fn a_certificate_may_be_ordered_from_its_own_ca() {
        let text = format!(
            "{BASE}\n[acme]\ndirectory = \"https://ca.example/dir\"\ncontact = [\"mailto:ops@x\"]\nkey-file = \"/k\"\n\
             [[acme.certificates]]\nnames = [\"a.gslb.example\"]\n\
             [[acme.certificates]]\nnames = [\"b.gslb.example\"]\ndirectory = \"https://other.example/acme\"\n\
             contact = [\"mailto:b@x\"]\nca-root = \"/etc/other-root.pem\"\n"
        );
        let c = Config::from_toml_str(&text).unwrap();
        let a = c.acme().unwrap();
        assert_eq!(a.certificates[0].ca, a.ca, "[acme]'s CA by default");
        assert_eq!(a.ca.contact, ["mailto:ops@x"]);
        let own = &a.certificates[1].ca;
        assert_eq!(own.directory, "https://other.example/acme");
        assert_eq!(own.contact, ["mailto:b@x"], "its own contacts, not [acme]'s");
        assert_eq!(
            own.ca_root.as_deref(),
            Some(std::path::Path::new("/etc/other-root.pem"))
        );

        let p = problems(
            "[acme]\ndirectory = \"https://ca.example/dir\"\nkey-file = \"/k\"\n\
             [[acme.certificates]]\nnames = [\"a.gslb.example\"]\ncontact = [\"mailto:a@x\"]\n\
             [[acme.certificates]]\nnames = [\"b.gslb.example\"]\ndirectory = \"http://plain.example/\"\n\
             contact = [\"b@x\"]\nca-root = \"root.pem\"\n",
        );
        for expected in [
            "acme.certificates[0].directory: is required with contact or ca-root",
            "acme.certificates[1].directory: \"http://plain.example/\": expected an https:// URL",
            "acme.certificates[1].contact[0]: \"b@x\": expected a mailto: URL",
            "acme.certificates[1].ca-root: \"root.pem\" is not an absolute path",
        ] {
            assert!(
                p.iter().any(|x| x.starts_with(expected)),
                "{expected} not in {p:?}"
            );
        }
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let p = problems(
            "[acme]\nkey-file = \"acme.key\"\ncontact = [\"ops@x\"]\nkey-type = \"rsa\"\nrenew-fraction = 1.5\n\
             [[acme.certificates]]\nnames = [\"a.other.example\", \"*.gslb.example\", \"*.gslb.example\"]\n\
             [[acme.certificates]]\nnames = []\n",
        );
        for expected in [
            "acme.directory: is required",
            "acme.key-file: \"acme.key\" is not an absolute path",
            "acme.contact[0]",
            "acme.key-type",
            "acme.renew-fraction",
            "acme.certificates[0].names[0]: \"a.other.example\" is in no configured zone",
            "acme.certificates[0].names[2]: \"*.gslb.example\" is listed twice",
            "acme.certificates[1].names: must list at least one name",
        ] {
            assert!(p.iter().any(|x| x.contains(expected)), "{expected} not in {p:?}");
        }
    }

    #[test]
    fn services_with_tls_acme_get_a_certificate_unless_one_is_listed() {
        let services = "[services.meet]\nhostname = \"meet.gslb.example\"\npolicy = \"nearest\"\nregions = [\"waw\"]\n\
                        tls = \"acme\"\n[services.api]\nhostname = \"api.gslb.example\"\npolicy = \"nearest\"\n\
                        regions = [\"waw\"]\ntls = \"acme\"\n";
        let text = format!(
            "{BASE}\n{services}\n[acme]\ndirectory = \"https://ca.example/dir\"\nkey-file = \"/k\"\n\
             [[acme.certificates]]\nnames = [\"gslb.example\", \"meet.gslb.example\"]\n"
        );
        let c = Config::from_toml_str(&text).unwrap();
        let names: Vec<_> = c
            .acme()
            .unwrap()
            .certificates
            .iter()
            .map(|c| c.names.clone())
            .collect();
        assert_eq!(
            names,
            [
                vec!["gslb.example", "meet.gslb.example"],
                vec!["api.gslb.example"]
            ]
        );

        let bad = format!(
            "{BASE}\n{}",
            services.replacen("tls = \"acme\"", "tls = \"files\"", 1)
        );
        let Err(ConfigError::Invalid(p)) = Config::from_toml_str(&bad) else {
            panic!("accepted")
        };
        let p: Vec<String> = p.iter().map(ToString::to_string).collect();
        assert!(
            p.iter().any(|x| x.starts_with("services.meet.tls: \"files\"")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|x| x.starts_with("services.api.tls: \"acme\" needs an [acme] section")),
            "{p:?}"
        );
    }

    #[test]
    fn acme_needs_tls() {
        let without_tls = BASE.split("[tls]").next().unwrap().to_owned();
        let text = format!(
            "{without_tls}\n[acme]\ndirectory = \"https://ca.example/dir\"\nkey-file = \"/k\"\n\
             [[acme.certificates]]\nnames = [\"gslb.example\"]\n"
        );
        let Err(ConfigError::Invalid(p)) = Config::from_toml_str(&text) else {
            panic!("accepted")
        };
        assert!(
            p.iter().any(|x| x.path == "acme" && x.message.contains("[tls]")),
            "{p:?}"
        );
    }
}
