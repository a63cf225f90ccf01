//! The authoritative GeoDNS server (`meridian dns`): zones from the configuration, steered A/AAAA answers
//! from the state snapshot, on UDP (Meridian's own `recvmmsg` workers) and on TCP, DNS-over-TLS and
//! DNS-over-HTTPS (hickory-server).
//!
//! Owns: turning a DNS request into a response ([`respond()`], pure over a [`Context`]: the snapshot, its
//! zones, the GeoIP database and the time), the zones compiled for answering ([`ZoneIndex`]), and the
//! sockets ([`server`]). Protocol parsing and encoding are hickory's (`hickory-proto`), but for the fast
//! path's own; steering is `meridian-steer`'s; state comes from a `meridian-store` snapshot, read with one
//! atomic load per query — never from the store itself.
//!
//! Must not depend on: pingora or the proxy, health probing.
//!
//! Modules, each using only those listed after it: `respond` (the entry point: [`respond()`],
//! [`respond_with_memo`], [`respond_general`]; the fast and the general path, each as its steps), `resolve`
//! (the general path's answer over hickory's `Message`), `memo` (a worker's memo of decisions per client
//! location, [`DecisionMemo`]), `decide` (steering a client: the one decision every path and the memo
//! use), `write` (writing responses: the fast path's wire answer, encoding and truncation), `request`
//! (reading requests: the fast path's shape, ECS checks), `context` (what answering reads: [`Context`],
//! [`FixedState`], [`Transport`]), `info` (what it did: [`AnswerInfo`], [`Reason`]), `zone`
//! ([`ZoneIndex`]), `dnssec` (signing: a zone's keys from BIND key files, signatures cached per RRset,
//! compact denial records, DS records; [`dnssec`]). Around them: [`server`] (sockets, GeoIP reload; the UDP
//! workers), [`stream`] (TCP, DNS-over-TLS and DNS-over-HTTPS on hickory-server's network layer),
//! [`records`] (what one TLS write holds on DoT and DoH), [`guard`] (connection limits, malformed-request
//! accounting), [`xfr`] (zone transfers to secondaries with TSIG, NOTIFY), [`rrl`] (response rate
//! limiting), [`metrics`]. Operator's view: docs/dns.md.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod context;
mod decide;
pub mod dnssec;
pub mod guard;
mod info;
mod memo;
pub mod metrics;
pub mod records;
mod request;
mod resolve;
mod respond;
pub mod rrl;
pub mod server;
pub mod stream;
mod write;
pub mod xfr;
mod zone;

pub use context::{Context, FixedState, MAX_UDP_PAYLOAD, Transport};
pub use info::{AnswerInfo, Reason};
pub use memo::DecisionMemo;
pub use respond::{respond, respond_general, respond_with_memo};
pub use zone::ZoneIndex;
