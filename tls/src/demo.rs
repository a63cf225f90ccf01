//! The demo PKI of `meridian up`: a local CA made once per data directory, and the certificates it signs
//! for the run (the edge's service hostnames, and the hop certificate of every region). Not for
//! production: its CA key sits next to the certificates, readable by the user only.
//!
//! The CA is kept across runs, so a user who trusted it once (`curl --cacert DIR/ca.pem`, or the
//! system's trust store) keeps trusting it; the leaf certificates are made anew at every start (ECDSA
//! P-256, valid 90 days), so a changed configuration never meets a stale certificate.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};

use crate::hops::hop_server_name;

/// Why the demo PKI could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Generating or signing failed, or the stored CA key does not parse.
    #[error("demo CA: {0}")]
    Pki(String),
}

/// Files of the demo PKI.
#[derive(Clone, Debug)]
pub struct DemoPki {
    /// The CA certificate to trust (`curl --cacert`).
    pub ca: PathBuf,
    /// The edge certificate (every service hostname of the configuration).
    pub edge_cert: PathBuf,
    /// Its key.
    pub edge_key: PathBuf,
    /// The hop certificate (every region's hop name; client and server usage).
    pub hop_cert: PathBuf,
    /// Its key.
    pub hop_key: PathBuf,
}

fn pki(e: rcgen::Error) -> DemoError {
    DemoError::Pki(e.to_string())
}

fn write(path: &Path, text: &str, private: bool) -> Result<(), DemoError> {
    let io = |source| DemoError::Io {
        path: path.to_owned(),
        source,
    };
    // Write beside, then rename: a proxy reloading at this moment sees the old or the new file, whole.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(io)?;
    if private {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)
}

fn ca_params() -> Result<CertificateParams, DemoError> {
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(pki)?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        "Meridian demo CA (meridian up, this machine only)",
    );
    dn.push(DnType::OrganizationName, "Meridian demo");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = rcgen::date_time_ymd(2026, 1, 1);
    p.not_before = now;
    p.not_after = rcgen::date_time_ymd(2036, 1, 1);
    Ok(p)
}

fn leaf(
    names: Vec<String>,
    client_too: bool,
    now: std::time::SystemTime,
) -> Result<CertificateParams, DemoError> {
    let first = names.first().cloned().unwrap_or_default();
    let mut p = CertificateParams::new(names).map_err(pki)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, first);
    p.distinguished_name = dn;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    if client_too {
        p.extended_key_usages.push(ExtendedKeyUsagePurpose::ClientAuth);
    }
    let now =
        rcgen::date_time_ymd(1970, 1, 1) + now.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    p.not_before = now - std::time::Duration::from_secs(3600);
    p.not_after = now + std::time::Duration::from_secs(90 * 86_400);
    Ok(p)
}

/// Makes (or reuses) the demo CA in `dir` and signs this run's certificates: the edge certificate for
/// `hostnames` (and `localhost`), the hop certificate for `regions`.
pub fn ensure(dir: &Path, hostnames: &[String], regions: &[String]) -> Result<DemoPki, DemoError> {
    std::fs::create_dir_all(dir).map_err(|source| DemoError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let files = DemoPki {
        ca: dir.join("ca.pem"),
        edge_cert: dir.join("edge.pem"),
        edge_key: dir.join("edge.key"),
        hop_cert: dir.join("hop.pem"),
        hop_key: dir.join("hop.key"),
    };
    let (ca, ca_key) = load_or_make_ca(dir)?;
    let now = std::time::SystemTime::now();

    let mut names: Vec<String> = hostnames.to_vec();
    names.push("localhost".to_owned());
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(pki)?;
    let cert = leaf(names, false, now)?
        .signed_by(&key, &ca, &ca_key)
        .map_err(pki)?;
    write(&files.edge_key, &key.serialize_pem(), true)?;
    write(&files.edge_cert, &cert.pem(), false)?;

    let hop_names: Vec<String> = regions.iter().map(|r| hop_server_name(r)).collect();
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(pki)?;
    let cert = leaf(hop_names, true, now)?
        .signed_by(&key, &ca, &ca_key)
        .map_err(pki)?;
    write(&files.hop_key, &key.serialize_pem(), true)?;
    write(&files.hop_cert, &cert.pem(), false)?;
    Ok(files)
}

/// The demo CA of `dir` (`ca.pem`, `ca.key`), made if it is not there yet.
fn load_or_make_ca(dir: &Path) -> Result<(rcgen::Certificate, KeyPair), DemoError> {
    let (ca_path, ca_key_path) = (dir.join("ca.pem"), dir.join("ca.key"));
    let ca_key = match std::fs::read_to_string(&ca_key_path) {
        Ok(pem) if ca_path.exists() => KeyPair::from_pem(&pem).map_err(pki)?,
        _ => {
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(pki)?;
            let cert = ca_params()?.self_signed(&key).map_err(pki)?;
            write(&ca_key_path, &key.serialize_pem(), true)?;
            write(&ca_path, &cert.pem(), false)?;
            key
        }
    };
    // The same subject and key as the stored CA certificate: what it signs chains to that certificate.
    let ca = ca_params()?.self_signed(&ca_key).map_err(pki)?;
    Ok((ca, ca_key))
}

/// Signs a server certificate for `names` (DNS names or IP addresses) with the demo CA of `dir` (made if
/// absent), written to `dir/STEM.pem` and `dir/STEM.key`: the DNS server's DoT and DoH certificate of
/// `meridian up`. Returns the two paths and the CA certificate's.
pub fn issue(dir: &Path, stem: &str, names: &[String]) -> Result<(PathBuf, PathBuf, PathBuf), DemoError> {
    std::fs::create_dir_all(dir).map_err(|source| DemoError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let (ca, ca_key) = load_or_make_ca(dir)?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(pki)?;
    let cert = leaf(names.to_vec(), false, std::time::SystemTime::now())?
        .signed_by(&key, &ca, &ca_key)
        .map_err(pki)?;
    let (cert_path, key_path) = (dir.join(format!("{stem}.pem")), dir.join(format!("{stem}.key")));
    write(&key_path, &key.serialize_pem(), true)?;
    write(&cert_path, &cert.pem(), false)?;
    Ok((cert_path, key_path, dir.join("ca.pem")))
}
