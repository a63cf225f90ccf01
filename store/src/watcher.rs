//! The snapshot watcher: keeps an up-to-date [`Snapshot`] of the store in memory, swapped atomically, for
//! hot paths to read without ever touching the store.
//!
//! It lists the prefix, then watches from the listing's revision + 1. A watch that fails is resumed from
//! the last revision seen (nothing is lost: etcd replays history); a watch that lands on compacted history
//! re-lists. While the store is unreachable the last snapshot keeps being served — losing sight of the
//! store is never "everything is down" — and the staleness (time since the last confirmed sync: a listing,
//! events, or a progress notification) grows, exported as `meridian_state_staleness_seconds`. With a cache
//! file, every sync is also written to disk (atomically, at most once a second), and a process started
//! while the store is unreachable serves from it.
//!
//! Region health is re-aggregated on every change and on a timer (`health_tick`): prober opinions go stale
//! with time. A timer tick swaps in a new snapshot only when the aggregated health changed. Health metrics:
//! `meridian_health_region_state{region}` (1 up, 0 down, -1 unknown), `meridian_health_transitions_total
//! {region,to}`, `meridian_health_stale_regions`, `meridian_health_panic`; and what steering makes of it
//! with the operator state, every half second: `meridian_region_down{region}` (1 while steering treats the
//! region as down: its health says so, or an active `down` drill).
//!
//! With a health store ([`WatcherOptions::health_store`]: the zone's own etcd cluster, docs/deployment.md
//! "The Atlantic cut"), each store is followed by a task of its own (list, watch, resume, re-list), and
//! one task applies what both deliver to one builder: losing either store never stops the other from
//! updating the snapshot — a zone cut off from the global store's majority keeps its health current. The
//! snapshot's `revision`, the staleness and `is_connected` are the global store's (operator writes wait
//! for them); the health store's are [`SnapshotWatcher::health_store_connected`] and
//! `meridian_health_store_connected` / `meridian_health_store_staleness_seconds`. The cache file holds
//! the global store's keys only: opinions are leased and rebuild themselves within seconds.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use meridian_config::Config;
use meridian_health::{HealthView, State};
use prometheus::{Gauge, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::embedded::{PersistedKv, write_atomically};
use crate::kv::{KeyValue, KvStore, Revision, StoreError, WatchMessage};
use crate::now_ms;
use crate::schema::Keys;
use crate::snapshot::{Snapshot, SnapshotBuilder};

/// How a watcher behaves.
#[derive(Clone, Debug)]
pub struct WatcherOptions {
    /// Key layout (prefix).
    pub keys: Keys,
    /// Configuration to use while the store has none.
    pub bootstrap: Option<Arc<Config>>,
    /// Where to keep a copy of the last synced state, to serve from after a restart during an outage.
    pub cache_file: Option<PathBuf>,
    /// A watch that hears nothing for this long asks for progress; twice this, and it is considered lost.
    pub progress_interval: Duration,
    /// Longest wait between reconnection attempts (backoff starts at 50 ms and doubles). Short on
    /// purpose: a change made right after the store comes back must reach every node within this (plus
    /// one round trip); an attempt is one request per node.
    pub max_backoff: Duration,
    /// Where to register the watcher's metrics (`None`: not exported).
    pub registry: Option<Registry>,
    /// How often health is re-aggregated without store events (opinions expire with time).
    pub health_tick: Duration,
    /// The zone's health store, if any: prober opinions, load reports and latency summaries come from it
    /// (and no longer from the global store).
    pub health_store: Option<Arc<dyn KvStore>>,
}

impl WatcherOptions {
    /// Defaults: progress every second, backoff up to 200 ms, health re-aggregated every 250 ms, no cache
    /// file, no metrics.
    pub fn new(keys: Keys) -> Self {
        Self {
            keys,
            bootstrap: None,
            cache_file: None,
            progress_interval: Duration::from_secs(1),
            max_backoff: Duration::from_millis(200),
            registry: None,
            health_tick: Duration::from_millis(250),
            health_store: None,
        }
    }
}

struct Metrics {
    staleness: Gauge,
    revision: IntGauge,
    connected: IntGauge,
    problems: IntGauge,
    region_health: IntGaugeVec,
    transitions: IntCounterVec,
    stale_regions: IntGauge,
    panic: IntGauge,
    region_down: IntGaugeVec,
}

impl Metrics {
    fn new(registry: Option<&Registry>) -> Self {
        let staleness = Gauge::new(
            "meridian_state_staleness_seconds",
            "Seconds since the state snapshot was last confirmed in sync with the store",
        );
        let revision = IntGauge::new(
            "meridian_state_revision",
            "Store revision of the current state snapshot",
        );
        let connected = IntGauge::new(
            "meridian_state_connected",
            "1 while the state store answers, 0 otherwise",
        );
        let problems = IntGauge::new(
            "meridian_state_bad_values",
            "Values in the store skipped as unreadable or invalid",
        );
        let region_health = IntGaugeVec::new(
            Opts::new(
                "meridian_health_region_state",
                "Aggregated region health: 1 up, 0 down, -1 unknown",
            ),
            &["region"],
        );
        let transitions = IntCounterVec::new(
            Opts::new(
                "meridian_health_transitions_total",
                "Changes of aggregated region health, by the state entered",
            ),
            &["region", "to"],
        );
        let stale_regions = IntGauge::new(
            "meridian_health_stale_regions",
            "Regions with no fresh prober opinion (keeping their last state)",
        );
        let panic = IntGauge::new(
            "meridian_health_panic",
            "1 while most regions look down and the panic threshold holds their state",
        );
        let region_down = IntGaugeVec::new(
            Opts::new(
                "meridian_region_down",
                "1 while steering treats the region as down (its health checks fail, or a down drill runs), 0 otherwise",
            ),
            &["region"],
        );
        // Metric names and help texts are constants: construction cannot fail.
        let (
            Ok(staleness),
            Ok(revision),
            Ok(connected),
            Ok(problems),
            Ok(region_health),
            Ok(transitions),
            Ok(stale_regions),
            Ok(panic),
            Ok(region_down),
        ) = (
            staleness,
            revision,
            connected,
            problems,
            region_health,
            transitions,
            stale_regions,
            panic,
            region_down,
        )
        else {
            unreachable!("constant metric definitions are valid")
        };
        if let Some(r) = registry {
            // Registering twice in one registry (two watchers) is refused; the first one's metrics stand.
            let _ = r.register(Box::new(staleness.clone()));
            let _ = r.register(Box::new(revision.clone()));
            let _ = r.register(Box::new(connected.clone()));
            let _ = r.register(Box::new(problems.clone()));
            let _ = r.register(Box::new(region_health.clone()));
            let _ = r.register(Box::new(transitions.clone()));
            let _ = r.register(Box::new(stale_regions.clone()));
            let _ = r.register(Box::new(panic.clone()));
            let _ = r.register(Box::new(region_down.clone()));
        }
        Self {
            staleness,
            revision,
            connected,
            problems,
            region_health,
            transitions,
            stale_regions,
            panic,
            region_down,
        }
    }
}

struct Shared {
    current: ArcSwapOption<Snapshot>,
    started: Instant,
    /// Milliseconds after `started` of the last confirmed sync.
    last_sync_ms: AtomicU64,
    synced_once: AtomicBool,
    connected: AtomicBool,
    revision: watch::Sender<Revision>,
    metrics: Metrics,
    /// With a health store: how in sync with it.
    health: Option<HealthSync>,
}

/// How in sync the snapshot is with the health store (only with one).
struct HealthSync {
    last_sync_ms: AtomicU64,
    synced_once: AtomicBool,
    connected: AtomicBool,
    connected_gauge: IntGauge,
    staleness_gauge: Gauge,
}

impl HealthSync {
    fn new(registry: Option<&Registry>) -> Self {
        // Constant names and help texts: construction cannot fail.
        let connected_gauge = IntGauge::new(
            "meridian_health_store_connected",
            "1 while the zone's health store answers, 0 otherwise",
        );
        let staleness_gauge = Gauge::new(
            "meridian_health_store_staleness_seconds",
            "Seconds since the snapshot was last confirmed in sync with the zone's health store",
        );
        let (Ok(connected_gauge), Ok(staleness_gauge)) = (connected_gauge, staleness_gauge) else {
            unreachable!("constant metric definitions are valid")
        };
        if let Some(r) = registry {
            // As for the other metrics: a second watcher in one registry leaves the first one's.
            let _ = r.register(Box::new(connected_gauge.clone()));
            let _ = r.register(Box::new(staleness_gauge.clone()));
        }
        Self {
            last_sync_ms: AtomicU64::new(0),
            synced_once: AtomicBool::new(false),
            connected: AtomicBool::new(false),
            connected_gauge,
            staleness_gauge,
        }
    }
}

impl Shared {
    fn mark_health_synced(&self) {
        if let Some(h) = &self.health {
            h.last_sync_ms
                .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
            h.synced_once.store(true, Ordering::Relaxed);
            h.connected.store(true, Ordering::Relaxed);
            h.connected_gauge.set(1);
        }
    }

    fn mark_health_disconnected(&self) {
        if let Some(h) = &self.health {
            h.connected.store(false, Ordering::Relaxed);
            h.connected_gauge.set(0);
        }
    }

    fn health_staleness(&self) -> Option<Duration> {
        let h = self.health.as_ref()?;
        if !h.synced_once.load(Ordering::Relaxed) {
            return Some(self.started.elapsed());
        }
        let now = self.started.elapsed().as_millis() as u64;
        Some(Duration::from_millis(
            now.saturating_sub(h.last_sync_ms.load(Ordering::Relaxed)),
        ))
    }

    fn mark_synced(&self, revision: Revision) {
        self.last_sync_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
        self.synced_once.store(true, Ordering::Relaxed);
        self.connected.store(true, Ordering::Relaxed);
        self.metrics.connected.set(1);
        self.metrics.revision.set(revision);
        self.revision.send_if_modified(|r| {
            let newer = revision > *r;
            *r = (*r).max(revision);
            newer
        });
    }

    fn mark_disconnected(&self) {
        self.connected.store(false, Ordering::Relaxed);
        self.metrics.connected.set(0);
    }

    fn staleness(&self) -> Duration {
        if !self.synced_once.load(Ordering::Relaxed) {
            return self.started.elapsed();
        }
        let now = self.started.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_sync_ms.load(Ordering::Relaxed)))
    }
}

/// A running watcher. Dropping it stops the task.
pub struct SnapshotWatcher {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
    gauge_task: JoinHandle<()>,
}

impl SnapshotWatcher {
    /// Starts watching. Returns at once; [`SnapshotWatcher::snapshot`] is `None` until the first sync (or
    /// the cache file, or the bootstrap configuration) provides one.
    pub fn spawn(store: Arc<dyn KvStore>, options: WatcherOptions) -> Self {
        let (revision, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            current: ArcSwapOption::empty(),
            started: Instant::now(),
            last_sync_ms: AtomicU64::new(0),
            synced_once: AtomicBool::new(false),
            connected: AtomicBool::new(false),
            revision,
            metrics: Metrics::new(options.registry.as_ref()),
            health: options
                .health_store
                .as_ref()
                .map(|_| HealthSync::new(options.registry.as_ref())),
        });
        let gauge_shared = shared.clone();
        let gauge_task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                gauge_shared
                    .metrics
                    .staleness
                    .set(gauge_shared.staleness().as_secs_f64());
                if let (Some(h), Some(stale)) = (&gauge_shared.health, gauge_shared.health_staleness()) {
                    h.staleness_gauge.set(stale.as_secs_f64());
                }
                if let Some(snapshot) = gauge_shared.current.load_full() {
                    record_down(&gauge_shared.metrics, &snapshot);
                }
            }
        });
        let task = tokio::spawn(run(store, options, shared.clone()));
        Self {
            shared,
            task,
            gauge_task,
        }
    }

    /// The current snapshot: one atomic load, no lock, no I/O.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.shared.current.load_full()
    }

    /// Time since the snapshot was last confirmed in sync with the store.
    pub fn staleness(&self) -> Duration {
        self.shared.staleness()
    }

    /// Whether the store answered last time it was asked.
    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::Relaxed)
    }

    /// Whether the health store answered last time it was asked (`None`: no health store).
    pub fn health_store_connected(&self) -> Option<bool> {
        self.shared
            .health
            .as_ref()
            .map(|h| h.connected.load(Ordering::Relaxed))
    }

    /// Time since the snapshot was last confirmed in sync with the health store (`None`: no health store).
    pub fn health_store_staleness(&self) -> Option<Duration> {
        self.shared.health_staleness()
    }

    /// The highest revision the snapshot is known to be in sync with, as a channel to await changes on.
    pub fn revisions(&self) -> watch::Receiver<Revision> {
        self.shared.revision.subscribe()
    }

    /// Waits until the snapshot reflects `revision` (or later); false on timeout.
    pub async fn wait_for(&self, revision: Revision, timeout: Duration) -> bool {
        let mut rx = self.revisions();
        tokio::time::timeout(timeout, rx.wait_for(|r| *r >= revision))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

impl Drop for SnapshotWatcher {
    fn drop(&mut self) {
        self.task.abort();
        self.gauge_task.abort();
    }
}

#[derive(Serialize, Deserialize)]
struct CacheFile {
    format: u32,
    prefix: String,
    revision: Revision,
    written_at_ms: u64,
    kvs: Vec<PersistedKv>,
}

fn read_cache(path: &Path, keys: &Keys) -> Result<(Vec<KeyValue>, Revision), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let cache: CacheFile = serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    if cache.format != 1 || cache.prefix != keys.prefix() {
        return Err(format!(
            "{}: not a cache of prefix {}",
            path.display(),
            keys.prefix()
        ));
    }
    let kvs = cache
        .kvs
        .into_iter()
        .map(PersistedKv::into_kv)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((kvs, cache.revision))
}

fn write_cache(path: &Path, keys: &Keys, builder: &SnapshotBuilder) -> Result<(), StoreError> {
    let cache = CacheFile {
        format: 1,
        prefix: keys.prefix().to_owned(),
        revision: builder.revision(),
        written_at_ms: now_ms(),
        kvs: builder.key_values().map(PersistedKv::from_kv).collect(),
    };
    let bytes = serde_json::to_vec(&cache).map_err(|e| StoreError::Storage(e.to_string()))?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), PathBuf::from);
    let name = path.file_name().map_or_else(
        || "snapshot-cache.json".into(),
        |n| n.to_string_lossy().into_owned(),
    );
    write_atomically(&dir, &name, &bytes)
}

struct Publisher {
    shared: Arc<Shared>,
    options: WatcherOptions,
    cache_dirty: bool,
    cache_written: Option<Instant>,
}

impl Publisher {
    fn publish(&mut self, builder: &mut SnapshotBuilder) {
        if let Some(snapshot) = builder.build(now_ms()) {
            for p in &snapshot.problems {
                tracing::warn!(problem = %p, "state store value skipped");
            }
            self.shared.metrics.problems.set(snapshot.problems.len() as i64);
            self.swap(snapshot);
        }
        self.cache_dirty = true;
    }

    /// Re-aggregates health at the current time; swaps a new snapshot in only if health changed.
    fn reevaluate(&mut self, builder: &mut SnapshotBuilder) {
        let current = self.shared.current.load_full();
        let Some(current) = current else { return };
        if let Some(snapshot) = builder.build(now_ms())
            && snapshot.health != current.health
        {
            self.swap(snapshot);
        }
    }

    fn swap(&self, snapshot: Snapshot) {
        let before = self.shared.current.load_full();
        let m = &self.shared.metrics;
        let old = before.as_ref().map(|b| &b.health);
        record_health(m, old, &snapshot.health);
        self.shared.current.store(Some(Arc::new(snapshot)));
    }

    fn maybe_write_cache(&mut self, builder: &SnapshotBuilder) {
        let Some(path) = &self.options.cache_file else {
            return;
        };
        if !self.cache_dirty
            || self
                .cache_written
                .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        match write_cache(path, &self.options.keys, builder) {
            Ok(()) => {
                self.cache_dirty = false;
                self.cache_written = Some(Instant::now());
            }
            Err(e) => tracing::warn!(error = %e, "cannot write the snapshot cache file"),
        }
    }
}

fn record_health(m: &Metrics, old: Option<&HealthView>, new: &HealthView) {
    for r in &new.regions {
        let was = old.and_then(|o| o.region(&r.region)).map(|o| o.state);
        if was.is_some_and(|w| w != r.state) {
            m.transitions
                .with_label_values(&[r.region.as_str(), r.state.as_str()])
                .inc();
            tracing::info!(region = %r.region, from = ?was, to = r.state.as_str(), stale = r.stale, "region health changed");
        }
        let value = match r.state {
            State::Up => 1,
            State::Down => 0,
            State::Unknown => -1,
        };
        m.region_health.with_label_values(&[r.region.as_str()]).set(value);
    }
    m.stale_regions.set(new.stale_count() as i64);
    m.panic.set(i64::from(new.panic));
    if new.panic && !old.is_some_and(|o| o.panic) {
        tracing::warn!("most regions look down: suspecting the probers, no region newly marked down");
    }
}

/// `meridian_region_down` at the time of the call (a drill's start and its expiry show within one tick):
/// health down, or an active `down` drill — whatever else (a drain, weight 0) also keeps clients away.
fn record_down(m: &Metrics, snapshot: &Snapshot) {
    let now_ms = now_ms();
    let topology = &snapshot.topology;
    for r in topology.region_indices() {
        let Some(state) = snapshot.states.get(r) else {
            continue;
        };
        let down = state.health == meridian_steer::Health::Down
            || state
                .drills
                .iter()
                .any(|d| d.active(now_ms) && d.mode == meridian_steer::DrillMode::Down);
        m.region_down
            .with_label_values(&[topology.region_id(r)])
            .set(i64::from(down));
    }
}

struct Backoff {
    next: Duration,
    max: Duration,
    /// When the last warning was logged in this outage (one every 30 s, not one per attempt).
    warned: Option<Instant>,
    /// Attempts that failed since then.
    quiet: u32,
}

impl Backoff {
    async fn wait(&mut self) {
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(self.max);
    }

    fn reset(&mut self) {
        self.next = Duration::from_millis(50);
        if self.warned.take().is_some() && self.quiet > 0 {
            tracing::info!(failed_attempts = self.quiet, "state store reachable again");
        }
        self.quiet = 0;
    }

    /// Whether this failure is worth a log line: the first of an outage, then one every 30 s.
    fn should_warn(&mut self) -> bool {
        match self.warned {
            Some(t) if t.elapsed() < Duration::from_secs(30) => {
                self.quiet += 1;
                false
            }
            _ => {
                self.warned = Some(Instant::now());
                true
            }
        }
    }
}

/// Which store a [`Feed`] message comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// The global store: configuration, operator state, and (without a health store) everything.
    Global,
    /// The zone's health store: prober opinions, load reports, latency summaries.
    Health,
}

impl Source {
    fn name(self) -> &'static str {
        match self {
            Self::Global => "state store",
            Self::Health => "health store",
        }
    }
}

/// What a store's follower tells the task that owns the builder.
enum Feed {
    /// A full listing: replaces what came from this store.
    Listed(Source, Vec<KeyValue>, Revision),
    /// Changes.
    Events(Source, Vec<crate::kv::Event>, Revision),
    /// In sync up to a revision.
    Progress(Source, Revision),
    /// The store stopped answering; the follower retries.
    Lost(Source),
}

async fn run(store: Arc<dyn KvStore>, options: WatcherOptions, shared: Arc<Shared>) {
    let keys = options.keys.clone();
    let prefix = keys.prefix().to_owned();
    let mut tick = tokio::time::interval(options.health_tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut builder = SnapshotBuilder::new(keys.clone(), options.bootstrap.clone());
    if options.health_store.is_some() {
        builder = builder.with_health_store();
    }
    let follow_options = (options.progress_interval, options.max_backoff);
    let health_store = options.health_store.clone();
    let mut publisher = Publisher {
        shared: shared.clone(),
        options,
        cache_dirty: false,
        cache_written: None,
    };

    // Serve what we knew before, while we find out what is true now.
    if let Some(path) = publisher.options.cache_file.clone() {
        match read_cache(&path, &keys) {
            Ok((kvs, revision)) => {
                builder.reset(kvs, revision);
                publisher.publish(&mut builder);
                publisher.cache_dirty = false;
            }
            Err(e) => tracing::info!(error = %e, "no usable snapshot cache"),
        }
    }
    if shared.current.load().is_none() {
        // Nothing cached: the bootstrap configuration (if any) serves until the store answers.
        publisher.publish(&mut builder);
    }

    // One follower per store, each in its own task (one stuck on an unreachable store never holds up the
    // other); the set aborts them when this task ends.
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let mut followers = tokio::task::JoinSet::new();
    followers.spawn(follow(
        store,
        prefix.clone(),
        follow_options,
        Source::Global,
        tx.clone(),
    ));
    if let Some(h) = health_store {
        followers.spawn(follow(h, prefix, follow_options, Source::Health, tx.clone()));
    }
    drop(tx);

    loop {
        let feed = tokio::select! {
            f = rx.recv() => f,
            _ = tick.tick() => {
                publisher.reevaluate(&mut builder);
                continue;
            }
        };
        let Some(feed) = feed else { return };
        match feed {
            Feed::Listed(Source::Global, kvs, revision) => {
                builder.reset(kvs, revision);
                publisher.publish(&mut builder);
                shared.mark_synced(builder.revision());
            }
            Feed::Events(Source::Global, events, revision) => {
                if builder.apply(events, revision) {
                    publisher.publish(&mut builder);
                }
                shared.mark_synced(builder.revision());
            }
            Feed::Progress(Source::Global, revision) => {
                builder.confirm(revision);
                shared.mark_synced(builder.revision());
            }
            Feed::Lost(Source::Global) => shared.mark_disconnected(),
            Feed::Listed(Source::Health, kvs, revision) => {
                builder.reset_health(kvs, revision);
                publisher.publish(&mut builder);
                shared.mark_health_synced();
            }
            Feed::Events(Source::Health, events, revision) => {
                if builder.apply_health(events, revision) {
                    publisher.publish(&mut builder);
                }
                shared.mark_health_synced();
            }
            Feed::Progress(Source::Health, revision) => {
                builder.confirm_health(revision);
                shared.mark_health_synced();
            }
            Feed::Lost(Source::Health) => shared.mark_health_disconnected(),
        }
        publisher.maybe_write_cache(&builder);
    }
}

/// Follows one store: lists the prefix, then watches from the listing's revision + 1, resuming a lost
/// watch from the last revision seen and re-listing after a compaction; reports everything to `tx`.
/// Returns when nobody listens any more.
async fn follow(
    store: Arc<dyn KvStore>,
    prefix: String,
    (progress, max_backoff): (Duration, Duration),
    source: Source,
    tx: tokio::sync::mpsc::Sender<Feed>,
) {
    let mut backoff = Backoff {
        next: Duration::from_millis(50),
        max: max_backoff,
        warned: None,
        quiet: 0,
    };
    let what = source.name();
    'relist: loop {
        let listing = match store.list(&prefix).await {
            Ok(l) => l,
            Err(e) => {
                if tx.send(Feed::Lost(source)).await.is_err() {
                    return;
                }
                if backoff.should_warn() {
                    tracing::warn!(store = %store.describe(), error = %e, "cannot list the {what}; serving the last snapshot");
                }
                backoff.wait().await;
                continue 'relist;
            }
        };
        let mut revision = listing.revision;
        if tx
            .send(Feed::Listed(source, listing.kvs, revision))
            .await
            .is_err()
        {
            return;
        }
        backoff.reset();

        loop {
            let mut stream = match store.watch(&prefix, revision + 1, progress).await {
                Ok(s) => s,
                Err(StoreError::Compacted { .. }) => continue 'relist,
                Err(e) => {
                    if tx.send(Feed::Lost(source)).await.is_err() {
                        return;
                    }
                    if backoff.should_warn() {
                        tracing::warn!(error = %e, "cannot watch the {what}; retrying");
                    }
                    backoff.wait().await;
                    continue;
                }
            };
            loop {
                let feed = match stream.next().await {
                    Ok(WatchMessage::Events { revision: r, events }) => {
                        revision = revision.max(r);
                        backoff.reset();
                        Feed::Events(source, events, r)
                    }
                    Ok(WatchMessage::Progress { revision: r }) => {
                        revision = revision.max(r);
                        Feed::Progress(source, r)
                    }
                    Err(StoreError::Compacted { .. }) => {
                        tracing::info!("{what} watch fell behind compaction; re-listing");
                        continue 'relist;
                    }
                    Err(e) => {
                        if tx.send(Feed::Lost(source)).await.is_err() {
                            return;
                        }
                        if backoff.should_warn() {
                            tracing::warn!(error = %e, revision, "{what} watch lost; resuming");
                        }
                        backoff.wait().await;
                        break;
                    }
                };
                if tx.send(feed).await.is_err() {
                    return;
                }
            }
        }
    }
}
