//! The HTTPS edge's certificates: chosen by SNI for every handshake, reloaded without a restart.
//!
//! [`EdgeTls`] holds the current [`CertSet`] behind an atomic pointer. A handshake reads it once (no lock);
//! [`EdgeTls::reload`] builds a complete new set from the files and swaps it in only if every file loaded:
//! a broken or half-written file keeps the old certificates serving, and the failure is reported (log line,
//! `meridian_tls_reload_failures_total`, `meridian_tls_reload_ok` 0). Connections already open keep the
//! certificate they were handshaken with; only new handshakes see the new set.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use meridian_config::{TlsSettings, TlsVersion};
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::certs::{CertError, LoadedCert, load};
use crate::metrics::TlsMetrics;

/// ALPN protocols of the edge, in preference order.
pub const EDGE_ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// The edge's certificates at one moment, with the index SNI selection reads.
#[derive(Debug)]
pub struct CertSet {
    certs: Vec<LoadedCert>,
    exact: HashMap<String, usize>,
    /// Wildcard certificates by the parent they cover (`*.gslb.example` -> `gslb.example`).
    wildcard: HashMap<String, usize>,
    default: usize,
    /// Hash of every file's contents and of the settings the set was built from.
    fingerprint: u64,
}

impl CertSet {
    /// Loads every certificate of `settings`. All or nothing: the errors of every file that failed.
    pub fn load(settings: &TlsSettings) -> Result<Self, Vec<CertError>> {
        Self::load_with(settings, &Extra::default())
    }

    /// Loads every certificate of `settings` and adds `extra` (certificates from memory: ACME's). The
    /// extra ones win for the names they cover; the default stays the configured one.
    pub fn load_with(settings: &TlsSettings, extra: &Extra) -> Result<Self, Vec<CertError>> {
        // Taken before the files are read: a file replaced while they are read then differs from the
        // fingerprint at the next look, and is loaded then (taken after, the set would carry the new
        // file's fingerprint with the old file's certificate, and never reload it).
        let fingerprint = fingerprint(settings) ^ extra.fingerprint;
        let mut certs = Vec::new();
        let mut errors = Vec::new();
        for files in &settings.certificates {
            match load(&files.cert, &files.key) {
                Ok(c) => certs.push(c),
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let files = certs.len();
        certs.extend(extra.certs.iter().cloned());
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        // The first certificate naming a host wins: the extra ones, then the files as listed.
        let order = (files..certs.len()).chain(0..files);
        for i in order {
            let c = &certs[i];
            for n in &c.names {
                match n.strip_prefix("*.") {
                    Some(parent) => wildcard.entry(parent.to_owned()).or_insert(i),
                    None => exact.entry(n.clone()).or_insert(i),
                };
            }
        }
        Ok(Self {
            certs,
            exact,
            wildcard,
            default: settings.default_certificate,
            fingerprint,
        })
    }

    /// The certificate for server name `sni` (any case, trailing dot ignored): an exact name, else a
    /// wildcard one label up, else the default.
    pub fn pick(&self, sni: Option<&str>) -> &LoadedCert {
        let found = sni.and_then(|s| {
            let host = s.trim_end_matches('.').to_ascii_lowercase();
            self.exact.get(&host).copied().or_else(|| {
                let (_, parent) = host.split_once('.')?;
                self.wildcard.get(parent).copied()
            })
        });
        &self.certs[found.unwrap_or(self.default).min(self.certs.len() - 1)]
    }

    /// The certificates, as configured.
    pub fn certs(&self) -> &[LoadedCert] {
        &self.certs
    }
}

/// Hash of the settings and of the contents of every file they name (unreadable files hash as absent, so
/// they count as a change once readable again).
fn fingerprint(settings: &TlsSettings) -> u64 {
    let mut h = DefaultHasher::new();
    format!("{settings:?}").hash(&mut h);
    for f in &settings.certificates {
        std::fs::read(&f.cert).ok().hash(&mut h);
        std::fs::read(&f.key).ok().hash(&mut h);
    }
    h.finish()
}

/// Certificates from memory served beside the files' (ACME's, decrypted from the store), with a
/// fingerprint of what they were made from: a reload with the same fingerprint and unchanged files does
/// nothing.
#[derive(Clone, Debug, Default)]
pub struct Extra {
    /// The certificates.
    pub certs: Vec<LoadedCert>,
    /// Identifies their source (0: none).
    pub fingerprint: u64,
}

/// What a reload did.
#[derive(Debug)]
pub enum Reload {
    /// Neither the settings nor any file changed.
    Unchanged,
    /// A new set serves new handshakes.
    Swapped,
    /// Something failed to load: the old set keeps serving.
    Failed(Vec<CertError>),
}

#[derive(Debug)]
struct Resolver {
    set: Arc<ArcSwap<CertSet>>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.set.load().pick(hello.server_name()).key.clone())
    }
}

/// The edge's TLS: the rustls configuration every HTTPS listener of a process accepts with, and its
/// reloadable certificates.
#[derive(Debug)]
pub struct EdgeTls {
    set: Arc<ArcSwap<CertSet>>,
    config: ArcSwap<ServerConfig>,
    settings: Mutex<TlsSettings>,
    metrics: TlsMetrics,
}

fn server_config(settings: &TlsSettings, set: &Arc<ArcSwap<CertSet>>) -> Result<ServerConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = match settings.min_version {
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    // rustls' defaults are the modern policy: AEAD suites only (AES-GCM, ChaCha20-Poly1305), ECDHE key
    // exchange (X25519, P-256, P-384), no renegotiation, no compression, extended master secret.
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Resolver { set: set.clone() }));
    config.alpn_protocols = EDGE_ALPN.iter().map(|p| p.to_vec()).collect();
    // Resumption without a full handshake: stateless tickets (keys rotated every 6 h by rustls).
    config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    Ok(config)
}

impl EdgeTls {
    /// Loads the certificates of `settings`; every file must load.
    pub fn new(settings: &TlsSettings, metrics: TlsMetrics) -> Result<Self, Vec<CertError>> {
        let set = CertSet::load(settings)?;
        metrics.observe(set.certs());
        let set = Arc::new(ArcSwap::from_pointee(set));
        let config = server_config(settings, &set).map_err(|e| {
            vec![CertError::UnsupportedKey {
                path: "(tls settings)".into(),
                message: e.to_string(),
            }]
        })?;
        metrics.reload_ok.set(1);
        Ok(Self {
            set,
            config: ArcSwap::from_pointee(config),
            settings: Mutex::new(settings.clone()),
            metrics,
        })
    }

    /// The rustls configuration for the next handshake.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.config.load_full()
    }

    /// The certificates serving now.
    pub fn current(&self) -> Arc<CertSet> {
        self.set.load_full()
    }

    /// Looks at the files (and settings) again; swaps in a new set if anything changed and everything
    /// loads. Logs what it did.
    pub fn reload(&self, settings: &TlsSettings) -> Reload {
        self.reload_with(settings, &Extra::default())
    }

    /// Counts a reload that failed before it reached this set (certificates from memory that could not be
    /// made: an ACME key that does not open), as a failed file load is counted; the set is left alone.
    pub fn reload_failed(&self) {
        self.metrics.reload_failures.inc();
        self.metrics.reload_ok.set(0);
    }

    /// [`EdgeTls::reload`] with certificates from memory added (see [`CertSet::load_with`]).
    pub fn reload_with(&self, settings: &TlsSettings, extra: &Extra) -> Reload {
        let mut last = self.settings.lock().unwrap_or_else(|p| p.into_inner());
        if *last == *settings && fingerprint(settings) ^ extra.fingerprint == self.set.load().fingerprint {
            // What serves is what the files (and memory) hold now: a failure before is over.
            self.metrics.reload_ok.set(1);
            return Reload::Unchanged;
        }
        match CertSet::load_with(settings, extra) {
            Err(errors) => {
                for e in &errors {
                    tracing::warn!("TLS reload failed, the previous certificates keep serving: {e}");
                }
                self.metrics.reload_failures.inc();
                self.metrics.reload_ok.set(0);
                Reload::Failed(errors)
            }
            Ok(set) => {
                if settings.min_version != last.min_version {
                    match server_config(settings, &self.set) {
                        Ok(c) => self.config.store(Arc::new(c)),
                        Err(e) => {
                            tracing::warn!("TLS reload failed, the previous settings keep serving: {e}");
                            self.metrics.reload_failures.inc();
                            self.metrics.reload_ok.set(0);
                            return Reload::Failed(Vec::new());
                        }
                    }
                }
                self.metrics.observe(set.certs());
                let names: Vec<String> = set.certs.iter().map(|c| c.names.join(",")).collect();
                self.set.store(Arc::new(set));
                *last = settings.clone();
                self.metrics.reloads.inc();
                self.metrics.reload_ok.set(1);
                tracing::info!("TLS certificates reloaded: {}", names.join("; "));
                Reload::Swapped
            }
        }
    }
}
