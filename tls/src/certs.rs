//! One certificate read from its PEM files: the chain and key rustls serves, and what an operator needs to
//! know of it (names, validity, issuer). Every failure names the file and what is wrong with it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::ring::default_provider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Why a certificate could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A file cannot be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The certificate file holds no PEM certificate.
    #[error("{}: no PEM certificate (\"-----BEGIN CERTIFICATE-----\") in the file", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A certificate of the chain does not parse.
    #[error("{}: certificate {index} of the chain is not a valid X.509 certificate: {message}", path.display())]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// Position in the chain (0: the leaf).
        index: usize,
        /// The parser's words.
        message: String,
    },
    /// The key file holds no usable private key.
    #[error("{}: no PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC) in the file: {message}", path.display())]
    NoKey {
        /// The file.
        path: PathBuf,
        /// The parser's words.
        message: String,
    },
    /// The key is of a kind rustls cannot sign with.
    #[error("{}: unsupported private key: {message}", path.display())]
    UnsupportedKey {
        /// The file.
        path: PathBuf,
        /// rustls' words.
        message: String,
    },
    /// The key is not the certificate's.
    #[error("{}: the private key does not match the certificate {} (its public key differs)", key.display(), cert.display())]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
}

/// A certificate ready to serve.
#[derive(Clone, Debug)]
pub struct LoadedCert {
    /// Chain and signing key, as rustls serves them.
    pub key: Arc<CertifiedKey>,
    /// DNS names of the leaf (subject alternative names, lower case; `*.example.com` for wildcards); the
    /// subject's common name when the leaf has no DNS names.
    pub names: Vec<String>,
    /// Valid from (Unix seconds).
    pub not_before: i64,
    /// Valid until (Unix seconds).
    pub not_after: i64,
    /// The issuer's distinguished name.
    pub issuer: String,
    /// The leaf's subject.
    pub subject: String,
    /// Key algorithm of the leaf (`ECDSA`, `RSA`, `Ed25519`...).
    pub key_kind: String,
}

fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|source| CertError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Reads a PEM certificate chain (leaf first).
pub fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let pem = read(path)?;
    parse_chain(path, &pem)
}

/// Parses a PEM certificate chain (leaf first); `path` names where it came from in errors.
pub fn parse_chain(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let mut chain = Vec::new();
    for (index, item) in CertificateDer::pem_slice_iter(pem).enumerate() {
        let der = item.map_err(|e| CertError::BadCertificate {
            path: path.to_owned(),
            index,
            message: e.to_string(),
        })?;
        if let Err(e) = X509Certificate::from_der(&der) {
            return Err(CertError::BadCertificate {
                path: path.to_owned(),
                index,
                message: e.to_string(),
            });
        }
        chain.push(der);
    }
    if chain.is_empty() {
        return Err(CertError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(chain)
}

/// Reads a PEM private key.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, CertError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| CertError::NoKey {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// Reads a certificate chain and its key, checks that they belong together, and describes the leaf.
pub fn load(cert: &Path, key: &Path) -> Result<LoadedCert, CertError> {
    let chain = read_chain(cert)?;
    let der = read_key(key)?;
    from_parts(cert, key, chain, der)
}

/// A chain and its key from memory (an ACME certificate out of the store), checked and described as
/// [`load`] does the files'; `cert` and `key` name where they came from in errors.
pub fn from_parts(
    cert: &Path,
    key: &Path,
    chain: Vec<CertificateDer<'static>>,
    der: PrivateKeyDer<'static>,
) -> Result<LoadedCert, CertError> {
    let provider = default_provider();
    let signing = provider
        .key_provider
        .load_private_key(der)
        .map_err(|e| CertError::UnsupportedKey {
            path: key.to_owned(),
            message: e.to_string(),
        })?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(_) => {
            return Err(CertError::KeyMismatch {
                cert: cert.to_owned(),
                key: key.to_owned(),
            });
        }
    }
    let leaf_der = certified.cert[0].clone();
    let (_, leaf) = X509Certificate::from_der(&leaf_der).map_err(|e| CertError::BadCertificate {
        path: cert.to_owned(),
        index: 0,
        message: e.to_string(),
    })?;
    let mut names: Vec<String> = Vec::new();
    if let Ok(Some(san)) = leaf.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::DNSName(d) = n {
                let d = d.trim_end_matches('.').to_ascii_lowercase();
                if !names.contains(&d) {
                    names.push(d);
                }
            }
        }
    }
    if names.is_empty()
        && let Some(cn) = leaf
            .subject()
            .iter_common_name()
            .next()
            .and_then(|c| c.as_str().ok())
    {
        names.push(cn.trim_end_matches('.').to_ascii_lowercase());
    }
    let key_kind = match certified.key.algorithm() {
        rustls::SignatureAlgorithm::ECDSA => "ECDSA",
        rustls::SignatureAlgorithm::RSA => "RSA",
        rustls::SignatureAlgorithm::ED25519 => "Ed25519",
        _ => "other",
    }
    .to_owned();
    Ok(LoadedCert {
        names,
        not_before: leaf.validity().not_before.timestamp(),
        not_after: leaf.validity().not_after.timestamp(),
        issuer: leaf.issuer().to_string(),
        subject: leaf.subject().to_string(),
        key_kind,
        key: Arc::new(certified),
    })
}

/// Whether certificate name `pattern` (`host.example` or `*.example`) covers `host` (lower case, no
/// trailing dot). A wildcard stands for exactly one label (RFC 6125 §6.4.3), never for the bare parent.
pub fn name_covers(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(parent) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
        None => pattern == host,
    }
}

impl LoadedCert {
    /// Whether the certificate covers `host` (lower case, no trailing dot).
    pub fn covers(&self, host: &str) -> bool {
        self.names.iter().any(|n| name_covers(n, host))
    }
}

#[cfg(test)]
mod tests {
    use super::name_covers;

    #[test]
    fn wildcards_cover_one_label_only() {
        assert!(name_covers("*.gslb.example", "meet.gslb.example"));
        assert!(!name_covers("*.gslb.example", "gslb.example"));
        assert!(!name_covers("*.gslb.example", "a.meet.gslb.example"));
        assert!(name_covers("meet.gslb.example", "meet.gslb.example"));
        assert!(!name_covers("meet.gslb.example", "api.gslb.example"));
    }
}
