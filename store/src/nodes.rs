//! Node registration: every running node (`meridian dns`, `proxy`, `health`, `up`) writes
//! `nodes/ROLE/INSTANCE` every second under a lease — what it is, where, which version, the store
//! revision its snapshot is in sync with and how stale that is — so `meridian status` can show every node
//! and flag the ones that lag behind the store or have gone silent.
//!
//! The reports are never read by a decision (snapshots skip them), and the lease's TTL is long (30 s) on
//! purpose: a node that stops reporting but is not dead yet stays listed, flagged silent, until its lease
//! expires.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::kv::KvStore;
use crate::lease::LeaseKeeper;
use crate::now_ms;
use crate::schema::{Keys, NodeReport, encode};
use crate::watcher::SnapshotWatcher;

/// How often a node reports.
pub const NODE_REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// TTL of the registration's lease.
pub const NODE_LEASE_TTL: Duration = Duration::from_secs(30);
/// A node whose last report is older than this has gone silent (dead, or cut off from the store, its
/// lease not yet expired): `meridian status` flags it, the ACME orderer does not wait for it.
pub const NODE_SILENT_AFTER: Duration = Duration::from_secs(3);

/// What a node is.
#[derive(Clone, Debug)]
pub struct NodeIdentity {
    /// `dns`, `proxy`, `health` or `up`.
    pub role: String,
    /// The region (proxies) or vantage point (probers).
    pub region: Option<String>,
    /// Unique per role (`HOSTNAME-PID` by default).
    pub instance: String,
}

/// A node's registration, kept current in the background until [`NodeRegistration::stop`].
pub struct NodeRegistration {
    task: JoinHandle<()>,
    stop: Arc<(AtomicBool, Notify)>,
}

impl NodeRegistration {
    /// Starts reporting `identity` with `watcher`'s state to `store` (retrying until the store answers).
    pub fn start(
        store: Arc<dyn KvStore>,
        keys: &Keys,
        watcher: Arc<SnapshotWatcher>,
        identity: NodeIdentity,
    ) -> Self {
        let key = keys.node(&identity.role, &identity.instance);
        let stop = Arc::new((AtomicBool::new(false), Notify::new()));
        let started_at_ms = now_ms();
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let keeper = loop {
                if flag.0.load(Ordering::Relaxed) {
                    return;
                }
                match LeaseKeeper::start(store.clone(), NODE_LEASE_TTL).await {
                    Ok(k) => break k,
                    Err(_) => {
                        tokio::select! {
                            _ = tokio::time::sleep(NODE_REPORT_INTERVAL) => {}
                            _ = flag.1.notified() => return,
                        }
                    }
                }
            };
            let mut tick = tokio::time::interval(NODE_REPORT_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = flag.1.notified() => break,
                }
                if flag.0.load(Ordering::Relaxed) {
                    break;
                }
                let report = NodeReport {
                    schema: 1,
                    role: identity.role.clone(),
                    region: identity.region.clone(),
                    instance: identity.instance.clone(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    revision: *watcher.revisions().borrow(),
                    staleness_ms: watcher.staleness().as_millis() as u64,
                    connected: watcher.is_connected(),
                    started_at_ms,
                    reported_at_ms: now_ms(),
                };
                // A failed write is retried at the next tick; the store being away is the watcher's to report.
                let _ = store.put(&key, encode(&report), Some(keeper.id())).await;
            }
            let _ = keeper.stop().await;
        });
        Self { task, stop }
    }

    /// Stops reporting and removes the registration (revokes its lease).
    pub async fn stop(self) {
        self.stop.0.store(true, Ordering::Relaxed);
        self.stop.1.notify_one();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.task).await;
    }
}
