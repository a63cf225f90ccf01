//! The regional L7 proxy (`meridian proxy --region ID`), on `pingora`.
//!
//! **Not built yet** (issue 6). The crate exists so the workspace layout and the dependency rules of
//! ARCHITECTURE.md are in place from the start; it has no code, and `meridian` has no `proxy` subcommand
//! until it does.
//!
//! Will own: balancing over a region's backends, cross-region spillover decided by the same steering
//! function as DNS, residency enforcement at L7, and load reports. Must not depend on: hickory or the DNS
//! server, health probing internals.

#![forbid(unsafe_code)]
