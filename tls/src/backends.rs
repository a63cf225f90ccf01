//! TLS from the proxy to a service's backends (`[services.NAME.proxy] backend-tls`): the backends'
//! certificates are verified against the service's `backend-ca`, else the system's roots, for the
//! service's name.

use std::path::Path;
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;

use crate::certs::{CertError, read_chain};

/// The roots and client configuration for a service's backends.
#[derive(Debug)]
pub struct BackendClient {
    /// The CA certificates of `backend-ca` (empty: the system's roots are used).
    pub ca: Vec<CertificateDer<'static>>,
    /// For the fast path's own connections (pingora's engine is given `ca` per peer).
    pub config: Arc<ClientConfig>,
}

/// Builds the client side of TLS to backends: `ca`'s certificates, else the system's roots.
pub fn backend_client(ca: Option<&Path>) -> Result<BackendClient, CertError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    let listed = match ca {
        Some(path) => {
            let certs = read_chain(path)?;
            for c in &certs {
                roots.add(c.clone()).map_err(|e| CertError::BadCertificate {
                    path: path.to_owned(),
                    index: 0,
                    message: e.to_string(),
                })?;
            }
            certs
        }
        None => {
            let (added, _) =
                roots.add_parsable_certificates(rustls_native_certs::load_native_certs().unwrap_or_default());
            tracing::debug!("backend TLS: {added} system root certificates");
            Vec::new()
        }
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| CertError::UnsupportedKey {
            path: "(backend TLS)".into(),
            message: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(BackendClient {
        ca: listed,
        config: Arc::new(config),
    })
}
