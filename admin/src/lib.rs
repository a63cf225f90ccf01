//! Meridian's admin API: how operators read and change live state — status, region weights and drains,
//! failover drills, explain against the live snapshot, the stored configuration, the audit log — over
//! HTTP/JSON with a bearer token (TLS optional), and the client the `meridian` CLI uses.
//!
//! Owns: the API (versioned paths under `/v1`, JSON errors, `docs/admin-api.md`), the writes it makes
//! (every change validated, compare-and-swap on `mod_revision` in one store transaction with its audit
//! record, refused when a pure safety check says it would leave a residency rule or a service without a
//! usable region unless forced), the explain report's text and JSON (shared with `meridian explain`),
//! [`client::AdminClient`], the web dashboard served beside the API (`/dashboard`, `docs/dashboard.md`),
//! and webhook notifications ([`notify`]).
//!
//! Everything goes through the [`meridian_store::KvStore`] contract, so the API works the same over etcd
//! and the embedded store; reads come from the node's [`meridian_store::SnapshotWatcher`], so status
//! costs the store nothing. Any node serves it with [`serve`] (`meridian dns`, `meridian health`, later
//! `meridian proxy` and `meridian up`).
//!
//! Must not depend on DNS (hickory) or the proxy (pingora): the admin API must keep working whichever
//! parts a node runs.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod client;
mod dashboard;
pub mod explain;
pub mod latency;
pub mod notify;
mod ops;
pub mod safety;
mod server;
mod status;

use std::path::Path;
use std::sync::Arc;

pub use api::{mode_text, parse_drill_mode};
pub use ops::{ConfigCheck, MAX_REASON_LEN, check_reason, check_weight};
pub use server::{AdminServer, serve};

use meridian_geoip::GeoDb;
use meridian_store::{Keys, KvStore, SnapshotWatcher};

/// Where the current GeoIP database comes from (the DNS server reloads its own: the API sees the same).
pub type GeoSource = Arc<dyn Fn() -> Arc<GeoDb> + Send + Sync>;

/// Who may call the API.
#[derive(Clone)]
pub enum Auth {
    /// Requests must carry `Authorization: Bearer TOKEN`.
    Token(String),
    /// No authentication (only allowed on a loopback listener; see [`serve`]).
    InsecureNone,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Token(_) => f.write_str("Token(..)"),
            Self::InsecureNone => f.write_str("InsecureNone"),
        }
    }
}

/// The least a token may be (e.g. `openssl rand -hex 32` gives 64).
pub const MIN_TOKEN_LEN: usize = 16;

impl Auth {
    /// A token, checked: at least [`MIN_TOKEN_LEN`] visible ASCII characters, no spaces.
    pub fn token(token: &str) -> Result<Self, String> {
        let token = token.trim();
        if token.len() < MIN_TOKEN_LEN {
            return Err(format!(
                "the admin token must have at least {MIN_TOKEN_LEN} characters (try: openssl rand -hex 32)"
            ));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the admin token must be visible ASCII characters without spaces".to_owned());
        }
        Ok(Self::Token(token.to_owned()))
    }

    /// A token read from a file (surrounding whitespace ignored).
    pub fn token_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::token(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// Everything the API needs from the node serving it.
#[derive(Clone)]
pub struct AdminContext {
    /// The state store (writes go here).
    pub store: Arc<dyn KvStore>,
    /// Its key layout.
    pub keys: Keys,
    /// The node's snapshot of the store (reads come from here).
    pub watcher: Arc<SnapshotWatcher>,
    /// GeoIP, for explain.
    pub geo: GeoSource,
    /// Who may call.
    pub auth: Auth,
    /// TLS, if the API is served over HTTPS.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// What this node is (`meridian dns on 127.0.0.1:5353`), shown in status.
    pub node: String,
}

/// A TLS server configuration from PEM files (certificate chain, private key).
pub fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in the file", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| format!("TLS certificate and key: {e}"))?;
    Ok(Arc::new(config))
}

pub(crate) use meridian_store::now_ms;
