//! The authoritative GeoDNS server (`meridian dns`): zones from the configuration, steered A/AAAA answers
//! from the state snapshot, on UDP and TCP.
//!
//! Owns: turning a DNS request into a response ([`respond`], pure over a snapshot), the zones compiled for
//! answering ([`ZoneIndex`]), and the sockets ([`server`]). Protocol parsing and encoding are hickory's
//! (`hickory-proto`); steering is `meridian-steer`'s; state comes from a `meridian-store` snapshot, read
//! with one atomic load per query — never from the store itself.
//!
//! Must not depend on: pingora or the proxy, health probing.
//!
//! Modules: [`mod@answer`] (the general path and the shared steering step), `fast` (the fast path),
//! `memo` (a worker's memo of decisions per client location),
//! [`rrl`] (response rate limiting), [`metrics`], [`server`] (sockets, GeoIP reload). Operator's view:
//! docs/dns.md.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod answer;
mod fast;
mod memo;
pub mod metrics;
pub mod rrl;
pub mod server;
mod zone;

pub use answer::{
    AnswerInfo, Context, FixedState, MAX_UDP_PAYLOAD, Reason, Transport, answer, respond, respond_with_memo,
};
pub use memo::DecisionMemo;
pub use zone::ZoneIndex;
