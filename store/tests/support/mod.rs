//! Helpers the store's test binaries share: keys as the store lists them, the reference configuration,
//! waiting for a condition. Each test binary compiles this module on its own and uses part of it.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use meridian_config::Config;
use meridian_steer::Health;
use meridian_store::schema::{HealthObservation, WeightOverride, encode};
use meridian_store::{DEFAULT_PREFIX, KeyValue, Keys, Snapshot};

pub(crate) const EXAMPLE: &str = include_str!("../../../examples/meridian.toml");

/// The key layout under the default prefix.
pub(crate) fn keys() -> Keys {
    Keys::new(DEFAULT_PREFIX).unwrap()
}

/// The reference deployment (examples/meridian.toml).
pub(crate) fn example() -> Arc<Config> {
    Arc::new(Config::from_toml_str(EXAMPLE).unwrap())
}

/// A key as the store would list it: created and last changed at `rev`, under no lease.
pub(crate) fn kv(key: String, value: Vec<u8>, rev: i64) -> KeyValue {
    kv_leased(key, value, rev, 0)
}

/// [`kv`] under `lease` (0: none).
pub(crate) fn kv_leased(key: String, value: Vec<u8>, rev: i64, lease: i64) -> KeyValue {
    KeyValue {
        key,
        value,
        create_revision: rev,
        mod_revision: rev,
        version: 1,
        lease,
    }
}

/// Waits until `f` holds, polling every 20 ms; fails the test after `within`.
pub(crate) async fn eventually(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A prober's opinion as stored.
pub(crate) fn observation(healthy: bool, at_ms: u64) -> Vec<u8> {
    encode(&HealthObservation {
        schema: 1,
        healthy,
        observed_at_ms: at_ms,
        latency_ms: None,
        detail: None,
    })
}

/// An operator's weight override as stored.
pub(crate) fn weight(w: u32) -> Vec<u8> {
    encode(&WeightOverride {
        schema: 1,
        weight: w,
        author: "test".into(),
        reason: "test".into(),
        at_ms: 1,
    })
}

/// Region `id`'s health in `snap`.
pub(crate) fn health_of(snap: &Snapshot, id: &str) -> Health {
    snap.states
        .get(snap.topology.region_index(id).unwrap())
        .unwrap()
        .health
}

/// Region `id`'s weight in `snap`.
pub(crate) fn weight_of(snap: &Snapshot, id: &str) -> u32 {
    snap.states
        .get(snap.topology.region_index(id).unwrap())
        .unwrap()
        .weight
}

/// Wall-clock milliseconds since the Unix epoch.
pub(crate) fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}
