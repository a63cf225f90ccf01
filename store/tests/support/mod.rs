//! Helpers the store's test binaries share: keys as the store lists them, the reference configuration,
//! waiting for a condition. Each test binary compiles this module on its own and uses part of it.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use meridian_config::Config;
use meridian_store::{DEFAULT_PREFIX, KeyValue, Keys};

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
