//! Meridian's health logic, pure: what one prober concludes from its probes, and what everybody concludes
//! from the probers.
//!
//! Owns: the per-check rise/fall [`Hysteresis`] state machine a prober runs, and [`aggregate`], which turns
//! every vantage point's opinion of every region into region health — quorum of fresh opinions, staleness
//! (a region nobody can see keeps its last state), and the panic threshold (when most regions look down,
//! suspect the observers).
//!
//! Must not depend on: tokio, sockets, the store, the steering engine, DNS or the proxy, and must not read
//! the clock — time is always an argument (`now_ms`), so every decision is reproducible in a test. Probing
//! and publishing live in `meridian-probe`; the store's snapshot watcher calls [`aggregate`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod aggregate;
mod hysteresis;

pub use aggregate::{HealthView, Opinion, OpinionView, RegionHealth, RegionOpinions, aggregate};
pub use hysteresis::{Hysteresis, State};
