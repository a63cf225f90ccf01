//! Certificates that renew themselves: Meridian as its own ACME client, proving control of names with
//! DNS-01 answered by its own authoritative DNS (`docs/proxy.md`, "ACME").
//!
//! Owns: the operator's sealing key and what it seals (`seal`: ChaCha20-Poly1305, the key never in the
//! store), one order start to finish (`order`, instant-acme) with the wait until every DNS node serves its
//! challenge records (`propagation`), the renewal loop with its store lock,
//! backoff and metrics (`manager`), and the ACME certificates the proxies add to their edge set (`edge`).
//! The DNS side is not here: DNS answers the challenge records from its snapshot like any zone data.
//!
//! Must not depend on DNS (hickory), the proxy (pingora) or the probers.

#![forbid(unsafe_code)]

pub mod edge;
pub mod manager;
mod order;
mod propagation;
pub mod seal;

pub use edge::EdgeCerts;
pub use manager::{AcmeManager, AcmeMetrics, due, renew_at_ms};
pub use seal::OperatorKey;
