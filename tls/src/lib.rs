//! Meridian's TLS material: the certificates of the proxies' HTTPS edge (PEM files named in `[tls]`,
//! chosen by SNI, reloaded without a restart), the mutual TLS of hops between regions, the checks
//! `meridian config check` runs on those files, and the demo CA of `meridian up`.
//!
//! Owns: reading and checking certificates and keys, the rustls configurations built from them, and
//! their metrics. rustls with the *ring* provider, the one pingora's rustls build uses: no OpenSSL.
//!
//! Must not depend on: the proxy, DNS, the store, any listener. The proxy asks this crate for a rustls
//! configuration per handshake ([`EdgeTls::config`]); the binary runs the reload loop.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod backends;
pub mod certs;
pub mod check;
pub mod demo;
pub mod edge;
pub mod hops;
pub mod metrics;

pub use backends::{BackendClient, backend_client};
pub use certs::{CertError, LoadedCert};
pub use check::{Findings, check};
pub use edge::{CertSet, EDGE_ALPN, EdgeTls, Extra, Reload};
pub use hops::{HopError, HopMaterial, hop_server_name};
pub use metrics::TlsMetrics;
pub use rustls;
