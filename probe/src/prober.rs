//! One vantage point's prober: a task per health check (interval, jitter, timeout, a shared bound on
//! concurrent probes), one loop that owns every check's rise/fall state, combines them into this vantage
//! point's opinion of each region, and publishes it under the prober's lease.
//!
//! Publishing: `health/REGION/VANTAGE` is written when the opinion changes, and re-written (confirming it,
//! with a new `observed_at_ms`) at least every third of `stale-after-ms`, so readers see it fresh while the
//! prober lives. A region's opinion is down as soon as any of its checks is down, up when all are up, and
//! not published while a check is still unknown. When the lease is lost and granted anew, everything is
//! re-published under the new one. Configuration changes apply live: checks that changed restart from
//! unknown, regions that lost their checks have their key deleted.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::Arc;
use std::time::Duration;

use meridian_config::{Config, HealthCheck};
use meridian_health::{Hysteresis, State};
use meridian_store::schema::{DOC_SCHEMA, HealthObservation, encode};
use meridian_store::{Keys, KvStore, LeaseKeeper, SnapshotWatcher, StoreError, now_ms};
use prometheus::Registry;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

use crate::{Outcome, ProbeMetrics, check_name, probe, user_agent};

/// How a prober runs.
#[derive(Clone, Debug)]
pub struct ProberOptions {
    /// This vantage point's id (`fra-1`): the last segment of its keys and in its User-Agent.
    pub vantage: String,
    /// Key layout.
    pub keys: Keys,
    /// TTL of the prober's lease: its opinions vanish this long after it dies.
    pub lease_ttl: Duration,
    /// Probes running at once, at most.
    pub max_concurrent: usize,
    /// Where to register the probe metrics (`None`: not exported).
    pub registry: Option<Registry>,
}

impl ProberOptions {
    /// Defaults: a 5 s lease, 64 concurrent probes, no metrics.
    pub fn new(vantage: &str, keys: Keys) -> Self {
        Self {
            vantage: vantage.to_owned(),
            keys,
            lease_ttl: Duration::from_secs(5),
            max_concurrent: 64,
            registry: None,
        }
    }
}

/// A running prober. [`Prober::stop`] stops it and revokes its lease (its opinions vanish at once);
/// dropping it stops it too, with the revocation only attempted in the background.
pub struct Prober {
    task: Option<JoinHandle<LeaseKeeper>>,
    stop: watch::Sender<bool>,
}

impl Prober {
    /// Grants the prober's lease and starts probing what `config` says, following its changes.
    pub async fn start(
        store: Arc<dyn KvStore>,
        options: ProberOptions,
        config: watch::Receiver<Arc<Config>>,
    ) -> Result<Self, StoreError> {
        let lease = LeaseKeeper::start(store.clone(), options.lease_ttl).await?;
        let (stop, stopped) = watch::channel(false);
        let metrics = ProbeMetrics::new(options.registry.as_ref());
        let task = tokio::spawn(run(store, options, config, lease, metrics, stopped));
        Ok(Self {
            task: Some(task),
            stop,
        })
    }

    /// Stops probing, then revokes the lease and waits for the store to confirm.
    pub async fn stop(mut self) -> Result<(), StoreError> {
        let _ = self.stop.send(true);
        match self.task.take() {
            Some(task) => match task.await {
                Ok(lease) => lease.stop().await,
                Err(e) => Err(StoreError::Unavailable(format!("prober task failed: {e}"))),
            },
            None => Ok(()),
        }
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// A channel carrying the configuration of `watcher`'s snapshots, updated when it changes; it waits for
/// the first snapshot. The task ends when the watcher is dropped or nobody listens any more.
pub async fn follow_config(watcher: Arc<SnapshotWatcher>) -> (watch::Receiver<Arc<Config>>, JoinHandle<()>) {
    let mut revisions = watcher.revisions();
    let first = loop {
        if let Some(s) = watcher.snapshot() {
            break s.topology.config().clone();
        }
        // No configuration anywhere yet: wait for the store to provide one.
        if revisions.changed().await.is_err() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let (tx, rx) = watch::channel(first);
    let task = tokio::spawn(async move {
        while revisions.changed().await.is_ok() {
            if let Some(s) = watcher.snapshot() {
                let config = s.topology.config().clone();
                tx.send_if_modified(|c| {
                    let changed = !Arc::ptr_eq(c, &config) && **c != *config;
                    if changed {
                        *c = config;
                    }
                    changed
                });
                if tx.is_closed() {
                    return;
                }
            }
        }
    });
    (rx, task)
}

/// A small non-cryptographic generator for jitter (no RNG crate needed: spreading probes is all it does).
struct Jitter(u64);

impl Jitter {
    fn new() -> Self {
        Self(RandomState::new().build_hasher().finish() | 1)
    }

    /// Uniform-ish in `0..=max_ms`.
    fn next(&mut self, max_ms: u32) -> Duration {
        // xorshift64
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Duration::from_millis(self.0 % (u64::from(max_ms) + 1))
    }
}

/// A probe result from a check task.
struct Report {
    region: String,
    index: usize,
    generation: u64,
    outcome: Outcome,
}

struct Running {
    spec: HealthCheck,
    name: String,
    generation: u64,
    hysteresis: Hysteresis,
    last: Option<Outcome>,
    task: JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The last opinion published for a region.
struct Published {
    healthy: bool,
    at: tokio::time::Instant,
}

struct Loop {
    store: Arc<dyn KvStore>,
    options: ProberOptions,
    metrics: ProbeMetrics,
    user_agent: String,
    limit: Arc<Semaphore>,
    reports: mpsc::Sender<Report>,
    checks: BTreeMap<(String, usize), Running>,
    published: BTreeMap<String, Published>,
    next_generation: u64,
    refresh: Duration,
    lease: i64,
}

async fn run(
    store: Arc<dyn KvStore>,
    options: ProberOptions,
    mut config: watch::Receiver<Arc<Config>>,
    lease: LeaseKeeper,
    metrics: ProbeMetrics,
    mut stopped: watch::Receiver<bool>,
) -> LeaseKeeper {
    let (tx, mut rx) = mpsc::channel(1024);
    let mut leases = lease.lease();
    let mut l = Loop {
        store,
        user_agent: user_agent(&options.vantage),
        limit: Arc::new(Semaphore::new(options.max_concurrent.max(1))),
        options,
        metrics,
        reports: tx,
        checks: BTreeMap::new(),
        published: BTreeMap::new(),
        next_generation: 0,
        refresh: Duration::from_secs(3),
        lease: lease.id(),
    };
    let current = config.borrow_and_update().clone();
    l.reconcile(&current).await;
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            changed = config.changed() => {
                if changed.is_err() {
                    break;
                }
                let current = config.borrow_and_update().clone();
                l.reconcile(&current).await;
            }
            changed = leases.changed() => {
                if changed.is_ok() {
                    l.lease = *leases.borrow_and_update();
                    tracing::info!(lease = l.lease, "new lease: re-publishing every opinion");
                    l.published.clear();
                    let regions: Vec<String> = l.checks.keys().map(|(r, _)| r.clone()).collect();
                    for r in regions {
                        l.publish(&r).await;
                    }
                }
            }
            Some(report) = rx.recv() => l.record(report).await,
        }
    }
    l.checks.clear();
    lease
}

impl Loop {
    /// Starts, restarts and stops check tasks to match `config`.
    async fn reconcile(&mut self, config: &Config) {
        // Re-confirm well within the freshness window, whatever the probe interval.
        self.refresh = Duration::from_millis(config.health().stale_after_ms / 3);
        let mut wanted = BTreeMap::new();
        for r in config.regions() {
            for (i, hc) in r.health_checks.iter().enumerate() {
                wanted.insert((r.id.clone(), i), hc.clone());
            }
        }
        self.checks
            .retain(|key, running| wanted.get(key) == Some(&running.spec));
        for (key, spec) in wanted {
            if self.checks.contains_key(&key) {
                continue;
            }
            self.next_generation += 1;
            let generation = self.next_generation;
            let task = tokio::spawn(check_loop(
                key.0.clone(),
                key.1,
                generation,
                spec.clone(),
                self.user_agent.clone(),
                self.limit.clone(),
                self.reports.clone(),
            ));
            let name = check_name(&spec.target);
            self.checks.insert(
                key,
                Running {
                    spec,
                    name,
                    generation,
                    hysteresis: Hysteresis::new(now_ms()),
                    last: None,
                    task,
                },
            );
        }
        // Regions this prober no longer checks: withdraw its opinion rather than let it linger.
        let gone: Vec<String> = self
            .published
            .keys()
            .filter(|r| !self.checks.keys().any(|(cr, _)| cr == *r))
            .cloned()
            .collect();
        for region in gone {
            self.published.remove(&region);
            let key = self.options.keys.health(&region, &self.options.vantage);
            if let Err(e) = self.store.delete(&key).await {
                tracing::warn!(%key, error = %e, "cannot withdraw an opinion");
            }
        }
    }

    async fn record(&mut self, report: Report) {
        let vantage = self.options.vantage.clone();
        let Some(running) = self.checks.get_mut(&(report.region.clone(), report.index)) else {
            return;
        };
        // A report from a check that was restarted since: its state machine is gone.
        if running.generation != report.generation {
            return;
        }
        self.metrics
            .probed(&report.region, &running.name, &vantage, &report.outcome);
        let (rise, fall) = (running.spec.rise, running.spec.fall);
        if let Some(to) = running.hysteresis.record(report.outcome.ok, rise, fall, now_ms()) {
            self.metrics
                .transition(&report.region, &running.name, &vantage, to.as_str());
            tracing::info!(region = %report.region, check = %running.name, to = to.as_str(), detail = ?report.outcome.detail, "check changed");
        }
        running.last = Some(report.outcome);
        self.publish(&report.region).await;
    }

    /// This vantage point's opinion of `region`: down if any check is down, up if all are up.
    fn opinion(&self, region: &str) -> Option<(bool, Option<f64>, Option<String>)> {
        let checks: Vec<&Running> = self
            .checks
            .iter()
            .filter(|((r, _), _)| r == region)
            .map(|(_, c)| c)
            .collect();
        let states: Vec<State> = checks.iter().map(|c| c.hysteresis.state()).collect();
        let healthy = if states.contains(&State::Down) {
            false
        } else if !states.is_empty() && states.iter().all(|s| *s == State::Up) {
            true
        } else {
            return None;
        };
        let latency = checks
            .iter()
            .filter_map(|c| c.last.as_ref())
            .filter(|o| o.ok)
            .map(|o| o.latency.as_secs_f64() * 1000.0)
            .reduce(f64::max);
        let detail = checks
            .iter()
            .filter(|c| c.hysteresis.state() == State::Down)
            .map(|c| {
                let why = c.last.as_ref().and_then(|o| o.detail.clone());
                format!("{}: {}", c.name, why.unwrap_or_else(|| "recovering".to_owned()))
            })
            .collect::<Vec<_>>();
        Some((healthy, latency, (!detail.is_empty()).then(|| detail.join("; "))))
    }

    async fn publish(&mut self, region: &str) {
        let Some((healthy, latency_ms, detail)) = self.opinion(region) else {
            return;
        };
        let due = match self.published.get(region) {
            Some(p) => p.healthy != healthy || p.at.elapsed() >= self.refresh,
            None => true,
        };
        if !due {
            return;
        }
        let doc = HealthObservation {
            schema: DOC_SCHEMA,
            healthy,
            observed_at_ms: now_ms(),
            latency_ms,
            detail,
        };
        let key = self.options.keys.health(region, &self.options.vantage);
        match self.store.put(&key, encode(&doc), Some(self.lease)).await {
            Ok(_) => {
                self.published.insert(
                    region.to_owned(),
                    Published {
                        healthy,
                        at: tokio::time::Instant::now(),
                    },
                );
            }
            Err(e) => {
                // The next probe tries again; a lost lease is re-granted by the keeper.
                self.metrics.publish_failed(&self.options.vantage);
                tracing::warn!(%key, error = %e, "cannot publish an observation");
            }
        }
    }
}

/// Probes one check forever: every `interval` plus a random 0..`jitter`, each probe bounded by `timeout`
/// and by the prober's concurrency limit.
async fn check_loop(
    region: String,
    index: usize,
    generation: u64,
    spec: HealthCheck,
    user_agent: String,
    limit: Arc<Semaphore>,
    reports: mpsc::Sender<Report>,
) {
    let mut jitter = Jitter::new();
    let interval = Duration::from_millis(u64::from(spec.interval_ms));
    let timeout = Duration::from_millis(u64::from(spec.timeout_ms));
    // Start at once (plus jitter, so a fleet of probers started together does not probe in lockstep).
    let mut next = tokio::time::Instant::now() + jitter.next(spec.jitter_ms);
    loop {
        tokio::time::sleep_until(next).await;
        next = tokio::time::Instant::now() + interval + jitter.next(spec.jitter_ms);
        let outcome = {
            let Ok(_permit) = limit.acquire().await else {
                return;
            };
            probe(&spec.target, &user_agent, timeout).await
        };
        let report = Report {
            region: region.clone(),
            index,
            generation,
            outcome,
        };
        if reports.send(report).await.is_err() {
            return;
        }
    }
}
