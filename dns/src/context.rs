//! What answering reads: the state it answers from ([`Context`]: snapshot, zones, GeoIP database, time),
//! a fixed one for tests and benchmarks ([`FixedState`]), and how the request arrived ([`Transport`], which
//! sets how large a response may be).

use std::sync::Arc;

use meridian_config::Config;
use meridian_geoip::GeoDb;
use meridian_store::{DEFAULT_PREFIX, Keys, Snapshot, SnapshotBuilder};

use crate::zone::ZoneIndex;

/// Largest UDP response we send, whatever the client offers (the DNS flag day 2020 value: no
/// fragmentation on common paths).
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// How the request arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// UDP: size limits and truncation apply.
    Udp,
    /// TCP: no truncation (65,535 octets).
    Tcp,
}

impl Transport {
    /// The largest response that may be sent to a request that offered `edns_payload` (its EDNS UDP
    /// payload size; `None` without EDNS): 65,535 octets over TCP; over UDP the client's payload within
    /// 512..=[`MAX_UDP_PAYLOAD`], 512 without EDNS.
    pub(crate) fn response_limit(self, edns_payload: Option<u16>) -> usize {
        match (self, edns_payload) {
            (Self::Tcp, _) => usize::from(u16::MAX),
            (Self::Udp, Some(payload)) => usize::from(payload.clamp(512, MAX_UDP_PAYLOAD)),
            (Self::Udp, None) => 512,
        }
    }
}

/// Everything answering reads.
pub struct Context<'a> {
    /// The current state snapshot.
    pub snapshot: &'a Snapshot,
    /// Its zones.
    pub zones: &'a ZoneIndex,
    /// The GeoIP database.
    pub geo: &'a GeoDb,
    /// Milliseconds since the Unix epoch (drills expire by it).
    pub now_ms: u64,
}

/// Everything answering reads, built from one configuration with no store behind it: for the fuzz target,
/// property tests and benchmarks, which answer from a fixed state.
pub struct FixedState {
    /// The snapshot of the configuration (no overrides, no health opinions).
    pub snapshot: Arc<Snapshot>,
    /// Its zones (serial 1).
    pub zones: ZoneIndex,
    /// The GeoIP database.
    pub geo: GeoDb,
}

impl FixedState {
    /// The state of `config` as of `now_ms` (`None` if the snapshot builder refuses the configuration).
    pub fn new(config: Arc<Config>, geo: GeoDb, now_ms: u64) -> Option<Self> {
        let keys = Keys::new(DEFAULT_PREFIX).ok()?;
        let snapshot = Arc::new(SnapshotBuilder::new(keys, Some(config)).build(now_ms)?);
        let zones = ZoneIndex::new(&snapshot.topology, 1);
        Some(Self { snapshot, zones, geo })
    }

    /// The answering context at `now_ms`.
    pub fn context(&self, now_ms: u64) -> Context<'_> {
        Context {
            snapshot: &self.snapshot,
            zones: &self.zones,
            geo: &self.geo,
            now_ms,
        }
    }
}
