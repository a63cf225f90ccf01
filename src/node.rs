//! What every long-running command (`dns`, `proxy`, `health`, `up`) shares: the store it reads and the
//! snapshots of it, its metrics registry ([`Node`]), its instance name, its registration in the store
//! (`nodes/ROLE/INSTANCE`, shown by `meridian status`), and the signals that stop it (SIGINT from a
//! terminal, SIGTERM from systemd).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use meridian_config::Config;
use meridian_store::{Keys, KvStore, NodeIdentity, NodeRegistration, SnapshotWatcher, WatcherOptions};
use prometheus::Registry;

use crate::health_store_args::HealthStoreArgs;
use crate::store_args::StoreArgs;

/// What the roles of one process share, one of each whatever roles it runs: the state store, its key
/// layout, the snapshots of it, and the Prometheus registry every part registers its metrics with.
pub(crate) struct Node {
    pub(crate) store: Arc<dyn KvStore>,
    /// The zone's health store (`--health-etcd`), if any: see [`Node::health_store`].
    pub(crate) zone_store: Option<Arc<dyn KvStore>>,
    pub(crate) keys: Keys,
    pub(crate) watcher: Arc<SnapshotWatcher>,
    pub(crate) registry: Registry,
}

impl Node {
    /// Opens the store `args` names and starts watching it (the watcher's metrics in `registry`).
    /// `bootstrap`: the configuration served while the store holds none; `cache_file`: where the last
    /// synced state is kept, to serve from after a restart during a store outage.
    pub(crate) fn open(
        args: &StoreArgs,
        bootstrap: Option<Arc<Config>>,
        cache_file: Option<PathBuf>,
        registry: Registry,
    ) -> anyhow::Result<Self> {
        Self::open_zoned(args, &HealthStoreArgs::default(), bootstrap, cache_file, registry)
    }

    /// As [`Node::open`], with the zone's health store `health` names (`--health-etcd`): the snapshots
    /// are built from both stores, and prober opinions and load reports are published to it.
    pub(crate) fn open_zoned(
        args: &StoreArgs,
        health: &HealthStoreArgs,
        bootstrap: Option<Arc<Config>>,
        cache_file: Option<PathBuf>,
        registry: Registry,
    ) -> anyhow::Result<Self> {
        let store = args.open()?;
        let zone_store = health.open(args)?;
        let keys = args.keys()?;
        let mut options = WatcherOptions::new(keys.clone());
        options.bootstrap = bootstrap;
        options.cache_file = cache_file;
        options.registry = Some(registry.clone());
        options.health_store = zone_store.clone();
        let watcher = Arc::new(SnapshotWatcher::spawn(store.clone(), options));
        Ok(Self {
            store,
            zone_store,
            keys,
            watcher,
            registry,
        })
    }

    /// Where prober opinions, load reports and latency summaries are published: the zone's health store
    /// when there is one, else the one store.
    pub(crate) fn health_store(&self) -> Arc<dyn KvStore> {
        self.zone_store.clone().unwrap_or_else(|| self.store.clone())
    }

    /// How the node's stores are described in banners: `etcd URLS` or `etcd URLS, health in etcd URLS`.
    pub(crate) fn describe_stores(&self) -> String {
        match &self.zone_store {
            Some(z) => format!("{}, health in {}", self.store.describe(), z.describe()),
            None => self.store.describe(),
        }
    }

    /// Registers this node in the store; stop the returned registration on the way out (its key goes at
    /// once).
    pub(crate) fn register(&self, role: &str, region: Option<&str>, instance: &str) -> NodeRegistration {
        NodeRegistration::start(
            self.store.clone(),
            &self.keys,
            self.watcher.clone(),
            NodeIdentity {
                role: role.to_owned(),
                region: region.map(str::to_owned),
                instance: instance.to_owned(),
            },
        )
    }
}

/// `HOSTNAME-PID`: unique per machine and process.
pub(crate) fn default_instance(fallback: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty() && !h.contains('/'))
        .unwrap_or_else(|| fallback.to_owned());
    format!("{host}-{}", std::process::id())
}

/// SIGINT (Ctrl-C) and SIGTERM, caught from the moment [`StopSignals::install`] returns: both stop a node
/// cleanly. A role installs them just before it prints its "ready" line, not when it starts waiting: a
/// signal sent between the two (tests, like operators, send it as soon as they read that line) would
/// otherwise kill the process with the default action, without a clean stop. Not earlier either: during
/// startup, Ctrl-C keeps its default meaning (stop now), as nothing is announced or serving yet.
pub(crate) struct StopSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Catches SIGINT and SIGTERM from now on.
    pub(crate) fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            terminate: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
        })
    }

    /// Waits for the first of them (since [`install`](Self::install)).
    pub(crate) async fn wait(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}
