//! The authoritative GeoDNS server (`meridian dns`), on `hickory-server`.
//!
//! **Not built yet** (issue 4). The crate exists so the workspace layout and the dependency rules of
//! ARCHITECTURE.md are in place from the start; it has no code, and `meridian` has no `dns` subcommand
//! until it does.
//!
//! Will own: sockets and protocol handling (UDP/TCP, EDNS, ECS), zone routing, and turning a steering
//! [decision](../meridian_steer/struct.Decision.html) into records, read from an immutable snapshot.
//! Must not depend on: pingora or the proxy, health probing, or the state store's I/O on the query path.

#![forbid(unsafe_code)]
