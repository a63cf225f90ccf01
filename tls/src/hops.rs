//! Mutual TLS between the regions' proxies (`[tls.hops]`).
//!
//! A request spilled from region A to region B travels over TLS to B's hop listener. Each side proves
//! itself with a certificate from the operator's hop CA, and only that CA is trusted for hops (not the
//! web PKI): B accepts only clients whose certificate chains to the hop CA with the clientAuth usage, and
//! A accepts B only if B's certificate chains to the hop CA and names B: `B.hop.meridian` (see
//! [`hop_server_name`]). A certificate may name several regions (the demo CA of `meridian up` issues one
//! for all); in a real deployment each region's proxies get their own.

use std::sync::Arc;

use meridian_config::{HopTls, Problem};
use rustls::client::WebPkiServerVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

use crate::certs::{CertError, LoadedCert, load, read_chain, read_key};

/// The DNS name a region's hop certificate carries, and the server name its peers ask for.
pub fn hop_server_name(region: &str) -> String {
    format!("{region}.hop.meridian")
}

/// Why the hop material cannot be used, with the configuration field naming the file.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
pub struct HopError {
    /// `tls.hops.ca`, `tls.hops.cert` or `tls.hops.key`.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

impl HopError {
    /// As a configuration problem.
    pub fn into_problem(self) -> Problem {
        Problem {
            path: self.field.to_owned(),
            message: self.message,
        }
    }
}

/// A node's hop CA, certificate and key, loaded and checked against each other.
#[derive(Debug)]
pub struct HopMaterial {
    ca: Vec<CertificateDer<'static>>,
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    /// The node's hop certificate.
    pub leaf: LoadedCert,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl HopMaterial {
    /// Loads the files of `hops` and checks that the certificate is a hop client of the CA.
    pub fn load(hops: &HopTls) -> Result<Self, HopError> {
        let ca = read_chain(&hops.ca).map_err(|e| HopError {
            field: "tls.hops.ca",
            message: e.to_string(),
        })?;
        let mut roots = RootCertStore::empty();
        for c in ca.iter().cloned() {
            roots.add(c).map_err(|e| HopError {
                field: "tls.hops.ca",
                message: format!("{}: not a usable CA certificate: {e}", hops.ca.display()),
            })?;
        }
        let leaf = load(&hops.cert, &hops.key).map_err(|e| HopError {
            field: if matches!(e, CertError::KeyMismatch { .. } | CertError::NoKey { .. }) {
                "tls.hops.key"
            } else {
                "tls.hops.cert"
            },
            message: e.to_string(),
        })?;
        let chain = leaf.key.cert.clone();
        let key = read_key(&hops.key).map_err(|e| HopError {
            field: "tls.hops.key",
            message: e.to_string(),
        })?;
        let material = Self {
            ca,
            roots: Arc::new(roots),
            chain,
            key,
            leaf,
        };
        // The peers will check exactly this: say so now rather than at the first spilled request.
        let verifier = material.client_verifier().map_err(|e| HopError {
            field: "tls.hops.ca",
            message: e.to_string(),
        })?;
        verifier
            .verify_client_cert(&material.chain[0], &material.chain[1..], UnixTime::now())
            .map_err(|e| HopError {
                field: "tls.hops.cert",
                message: format!(
                    "{}: not accepted as a hop client by the CA of tls.hops.ca ({}): {e}",
                    hops.cert.display(),
                    hops.ca.display()
                ),
            })?;
        Ok(material)
    }

    fn client_verifier(&self) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, rustls::Error> {
        WebPkiClientVerifier::builder_with_provider(self.roots.clone(), provider())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))
    }

    /// The configuration of a hop listener: this node's certificate, and a client certificate from the
    /// hop CA required of every peer.
    pub fn server_config(&self) -> Result<ServerConfig, rustls::Error> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(self.client_verifier()?)
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    /// The configuration for connecting to another region's hop listener: only the hop CA is trusted,
    /// and this node's certificate is presented.
    pub fn client_config(&self) -> Result<ClientConfig, rustls::Error> {
        let verifier = WebPkiServerVerifier::builder_with_provider(self.roots.clone(), provider())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_webpki_verifier(verifier)
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    /// The CA certificates trusted for hops (DER).
    pub fn ca_certificates(&self) -> &[CertificateDer<'static>] {
        &self.ca
    }

    /// This node's chain and key.
    pub fn chain_and_key(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        (self.chain.clone(), self.key.clone_key())
    }
}
