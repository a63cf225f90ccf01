//! Meridian's shared state: what DNS servers, proxies, probers and operators agree on, and how each of
//! them gets an in-memory snapshot of it.
//!
//! Owns: the key-value contract ([`KvStore`]) and its two back ends — [`EtcdStore`] (production) and
//! [`EmbeddedStore`] (one machine) —, the key layout and value schema under a prefix (`docs/state-schema.md`),
//! the desired configuration edited by compare-and-swap with an audit trail, and the [`SnapshotWatcher`]
//! that turns the store into immutable [`Snapshot`]s swapped atomically, every node's registration
//! ([`NodeRegistration`]), and what operator state (weights, drains, drills) does to region states
//! ([`overlay_operator_state`]: one rule for snapshots and for the admin API's safety checks).
//!
//! Must not be on any hot path: DNS queries and proxied requests read a `Snapshot`, never the store.
//! Depends on the model (`meridian-config`) and the steering engine's state types (`meridian-steer`), never
//! on DNS, proxy or probing code.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config_doc;
pub mod embedded;
pub mod etcd;
pub mod kv;
pub mod lease;
pub mod nodes;
pub mod operator;
pub mod schema;
pub mod snapshot;
#[cfg(feature = "testing")]
pub mod testing;
pub mod watcher;

pub use config_doc::{
    ApplyOptions, ApplyOutcome, ConfigDocError, StoredConfig, apply_config, apply_config_with, read_config,
};
pub use embedded::EmbeddedStore;
pub use etcd::{EtcdOptions, EtcdStore};
pub use kv::*;
pub use lease::{LeaseKeeper, take_lock};
pub use nodes::{NodeIdentity, NodeRegistration};
pub use operator::{OperatorDoc, overlay_operator_state};
pub use schema::{DEFAULT_PREFIX, Keys};
pub use snapshot::{ConfigSource, Snapshot, SnapshotBuilder};
pub use watcher::{SnapshotWatcher, WatcherOptions};

/// Wall-clock milliseconds since the Unix epoch: the time every document, drill, opinion and decision is
/// stamped with. One clock for every crate that has one (the steering engine has none: it is given
/// `now_ms`). Before the epoch (a broken clock): 0.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
