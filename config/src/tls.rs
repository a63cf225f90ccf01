//! The `[tls]` section: what the regional proxies' HTTPS edge and their hops between regions use, as
//! declared. Only the shape is checked here (paths absolute, values in range, one default certificate);
//! whether the files exist, parse, match and cover the hostnames is `meridian-tls`'s check, which reads
//! them (`meridian config check` runs both).
//!
//! Why paths must be absolute: the configuration is shared through the store, and every node reads the
//! files named here on its own disk. A relative path would mean something different on every node.

use std::path::PathBuf;

use serde::Deserialize;

use crate::checker::Checker;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawTls {
    pub(crate) min_version: Option<String>,
    pub(crate) handshake_timeout_ms: Option<i64>,
    pub(crate) plain_http: Option<String>,
    pub(crate) hsts_max_age_s: Option<i64>,
    pub(crate) hsts_include_subdomains: Option<bool>,
    pub(crate) expiry_warning_days: Option<i64>,
    pub(crate) reload_interval_ms: Option<i64>,
    #[serde(default)]
    pub(crate) certificates: Vec<RawCertificate>,
    pub(crate) hops: Option<RawHops>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawCertificate {
    pub(crate) cert: Option<String>,
    pub(crate) key: Option<String>,
    pub(crate) default: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawHops {
    pub(crate) ca: Option<String>,
    pub(crate) cert: Option<String>,
    pub(crate) key: Option<String>,
}

/// Lowest TLS version the edge accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3.
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

/// What a proxy's plain-HTTP listener does when the proxy also serves HTTPS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlainHttp {
    /// Answer `308 Permanent Redirect` to the same URL over HTTPS.
    Redirect,
    /// Serve the request as over HTTPS (`X-Forwarded-Proto: http`).
    Serve,
}

/// One certificate of the edge: a PEM chain (leaf first) and its private key. It serves the DNS names of
/// its leaf (subject alternative names, wildcards included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateFiles {
    /// PEM file with the leaf certificate first, then its intermediates.
    pub cert: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key: PathBuf,
}

/// Mutual TLS between the regions' proxies: a request spilled to another region travels over TLS, each
/// side presenting a certificate from the operator's hop CA and verifying the other's.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HopTls {
    /// PEM file of the CA that signs every region's hop certificate (and nothing else should).
    pub ca: PathBuf,
    /// This node's hop certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
}

/// The `[tls]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// Lowest protocol version accepted (default TLS 1.2).
    pub min_version: TlsVersion,
    /// A client must finish its handshake within this many milliseconds (default 10,000).
    pub handshake_timeout_ms: u32,
    /// What plain-HTTP listeners do (default: redirect).
    pub plain_http: PlainHttp,
    /// `Strict-Transport-Security` max-age on HTTPS answers, seconds (0, the default: no header).
    pub hsts_max_age_s: u32,
    /// Whether HSTS covers subdomains.
    pub hsts_include_subdomains: bool,
    /// `meridian config check` and the proxies warn about certificates expiring within this many days
    /// (default 14).
    pub expiry_warning_days: u32,
    /// How often the proxies look for changed certificate files, milliseconds (default 5,000; SIGHUP
    /// looks at once).
    pub reload_interval_ms: u32,
    /// The edge's certificates, in file order.
    pub certificates: Vec<CertificateFiles>,
    /// Index in `certificates` of the one served to clients that send no server name or one no
    /// certificate covers.
    pub default_certificate: usize,
    /// Mutual TLS between regions (`None`: spilled requests travel in plain HTTP).
    pub hops: Option<HopTls>,
}

impl TlsSettings {
    /// The `Strict-Transport-Security` value, if HSTS is on.
    pub fn hsts_value(&self) -> Option<String> {
        (self.hsts_max_age_s > 0).then(|| {
            let sub = if self.hsts_include_subdomains {
                "; includeSubDomains"
            } else {
                ""
            };
            format!("max-age={}{sub}", self.hsts_max_age_s)
        })
    }
}

/// A path that must be absolute (the configuration is shared: see the module's documentation); also used
/// by `crate::dnssec` for key files.
pub(crate) fn absolute(c: &mut Checker, path: &str, value: Option<&String>) -> Option<PathBuf> {
    match value {
        None => {
            c.err(path, "is required");
            None
        }
        Some(v) if v.trim().is_empty() => {
            c.err(path, "must not be empty");
            None
        }
        Some(v) if !v.starts_with('/') => {
            c.err(
                path,
                format!(
                    "{v:?} is not an absolute path (the configuration is shared: every node reads the \
                     file at this path on its own disk)"
                ),
            );
            None
        }
        Some(v) => Some(PathBuf::from(v)),
    }
}

pub(crate) fn check_tls(c: &mut Checker, raw: Option<&RawTls>) -> Option<TlsSettings> {
    let raw = raw?;
    let min_version = match raw.min_version.as_deref() {
        None | Some("1.2") => TlsVersion::Tls12,
        Some("1.3") => TlsVersion::Tls13,
        Some(v) => {
            c.err("tls.min-version", format!("{v:?}: expected \"1.2\" or \"1.3\""));
            TlsVersion::Tls12
        }
    };
    let plain_http = match raw.plain_http.as_deref() {
        None | Some("redirect") => PlainHttp::Redirect,
        Some("serve") => PlainHttp::Serve,
        Some(v) => {
            c.err(
                "tls.plain-http",
                format!("{v:?}: expected \"redirect\" or \"serve\""),
            );
            PlainHttp::Redirect
        }
    };
    let mut certificates = Vec::new();
    let mut default = None;
    if raw.certificates.is_empty() {
        c.err("tls.certificates", "must list at least one certificate");
    }
    for (i, cert) in raw.certificates.iter().enumerate() {
        let p = format!("tls.certificates[{i}]");
        let files = (
            absolute(c, &format!("{p}.cert"), cert.cert.as_ref()),
            absolute(c, &format!("{p}.key"), cert.key.as_ref()),
        );
        if cert.default == Some(true) {
            match default {
                Some(d) => c.err(
                    format!("{p}.default"),
                    format!("tls.certificates[{d}] is the default already: at most one default"),
                ),
                None => default = Some(i),
            }
        }
        if let (Some(cert), Some(key)) = files {
            certificates.push(CertificateFiles { cert, key });
        }
    }
    let hops = raw.hops.as_ref().map(|h| {
        (
            absolute(c, "tls.hops.ca", h.ca.as_ref()),
            absolute(c, "tls.hops.cert", h.cert.as_ref()),
            absolute(c, "tls.hops.key", h.key.as_ref()),
        )
    });
    let hops = match hops {
        Some((Some(ca), Some(cert), Some(key))) => Some(HopTls { ca, cert, key }),
        _ => None,
    };
    Some(TlsSettings {
        min_version,
        handshake_timeout_ms: c.int(
            "tls.handshake-timeout-ms",
            raw.handshake_timeout_ms,
            10_000,
            100..=120_000,
        ),
        plain_http,
        hsts_max_age_s: c.int("tls.hsts-max-age-s", raw.hsts_max_age_s, 0, 0..=2 * 365 * 86_400),
        hsts_include_subdomains: raw.hsts_include_subdomains.unwrap_or(false),
        expiry_warning_days: c.int("tls.expiry-warning-days", raw.expiry_warning_days, 14, 0..=365),
        reload_interval_ms: c.int(
            "tls.reload-interval-ms",
            raw.reload_interval_ms,
            5_000,
            100..=3_600_000,
        ),
        certificates,
        default_certificate: default.unwrap_or(0),
        hops,
    })
}
