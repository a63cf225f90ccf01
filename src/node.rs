//! What every long-running role (`dns`, `proxy`, `health`, `up`) shares: its instance name, its
//! registration in the store (`nodes/ROLE/INSTANCE`, shown by `meridian status`), and the signals that
//! stop it (SIGINT from a terminal, SIGTERM from systemd).

use std::sync::Arc;

use anyhow::Context;
use meridian_store::{Keys, KvStore, NodeIdentity, NodeRegistration, SnapshotWatcher};

/// `HOSTNAME-PID`: unique per machine and process.
pub(crate) fn default_instance(fallback: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty() && !h.contains('/'))
        .unwrap_or_else(|| fallback.to_owned());
    format!("{host}-{}", std::process::id())
}

/// Registers this node; stop the returned registration on the way out (its key goes at once).
pub(crate) fn register(
    store: &Arc<dyn KvStore>,
    keys: &Keys,
    watcher: &Arc<SnapshotWatcher>,
    role: &str,
    region: Option<&str>,
    instance: &str,
) -> NodeRegistration {
    NodeRegistration::start(
        store.clone(),
        keys,
        watcher.clone(),
        NodeIdentity {
            role: role.to_owned(),
            region: region.map(str::to_owned),
            instance: instance.to_owned(),
        },
    )
}

/// Waits for SIGINT (Ctrl-C) or SIGTERM: both stop a node cleanly.
pub(crate) async fn stop_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}
