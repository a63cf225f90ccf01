//! The steering decision: given a service, where a client is, a snapshot of every region's state and a
//! stable request hash, which regions should answer — and why each region was taken or skipped.
//!
//! Owns: the one function both the DNS server and the proxy call, [`steer`], and the vocabulary of its
//! answer ([`Decision`]). It is pure, synchronous and deterministic: no I/O, no clock (the time is part of
//! the [`Query`]), no randomness (the request hash is). The same inputs always give the same decision,
//! which is what makes `meridian explain` truthful and the property tests meaningful.
//!
//! Must not depend on: tokio, etcd, sockets, GeoIP readers, servers, or anything that reads the time or
//! the environment. Its only dependency is `meridian-config`. `steer/clippy.toml` bans the clock.
//!
//! Policy semantics are documented in `docs/steering.md`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod answer;
mod decision;
mod engine;
mod geometry;
pub mod hash;
mod latency;
mod state;
mod topology;

pub use answer::{AnswerAddresses, answer_addresses, answer_ipv4, answer_ipv6};
pub use decision::{Basis, Chosen, Decision, Mode, NoAnswer, ResidencyNote, Skip, Status, Verdict};
pub use engine::{
    ClientLocation, Query, effective_capacity, residency_allows, residency_allows_everyone, steer, unusable,
};
pub use geometry::{EARTH_RADIUS_KM, Point, great_circle_km};
pub use hash::client_hash;
pub use latency::{
    AREA_CELL_DEGREES, LatencyArea, LatencyMatrix, LatencyNote, LatencyOutcome, Measured, latency_area,
};
pub use state::{Drill, DrillMode, Health, RegionState, RegionStates};
pub use topology::{RegionIndex, RegionSet, ServiceIndex, Topology};
