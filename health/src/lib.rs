//! Multi-vantage health probing with quorum and hysteresis (`meridian health`).
//!
//! **Not built yet** (issue 5). The crate exists so the workspace layout and the dependency rules of
//! ARCHITECTURE.md are in place from the start; it has no code, and `meridian` has no `health`
//! subcommand until it does.
//!
//! Will own: HTTP and TCP probes, publishing observations under a lease, and the pure aggregation of
//! opinions into region health. Must not depend on: the steering engine, DNS or the proxy.

#![forbid(unsafe_code)]
