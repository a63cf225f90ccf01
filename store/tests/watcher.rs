//! Snapshots: built from the store, kept current by the watcher, resilient to the store going away.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use meridian_steer::DrillMode;
use meridian_store::schema::*;
use meridian_store::testing::EtcdServer;
use meridian_store::*;

mod support;
use support::*;

fn options() -> WatcherOptions {
    let mut o = WatcherOptions::new(keys());
    o.bootstrap = Some(example());
    o.progress_interval = Duration::from_millis(250);
    o.max_backoff = Duration::from_millis(200);
    o
}

fn region_weight(w: &SnapshotWatcher, id: &str) -> u32 {
    weight_of(&w.snapshot().unwrap(), id)
}

#[test]
fn the_builder_applies_good_values_and_reports_bad_ones() {
    let k = keys();
    let mut b = SnapshotBuilder::new(k.clone(), Some(example()));
    let kv = |key: String, value: Vec<u8>, rev: i64| kv_leased(key, value, rev, 0);
    let drill = DrillDoc {
        schema: 1,
        region: "fra".into(),
        mode: DrillModeDoc::Capacity { percent: 50 },
        started_at_ms: 1,
        expires_at_ms: 99,
        author: "a".into(),
        reason: "r".into(),
    };
    let load = |n: u32, cap: Option<u32>| {
        encode(&LoadReport {
            schema: 1,
            in_flight: n,
            request_rate: 1.0,
            capacity: cap,
            reported_at_ms: 1,
            error_rate: None,
            latency_ms: None,
            healthy_backends: None,
        })
    };
    b.reset(
        vec![
            kv(k.weight("waw"), weight(7), 2),
            kv(k.weight("lon"), b"{garbage".to_vec(), 3),
            kv(k.weight("frx"), weight(5), 4),
            kv(k.weight("sbg"), br#"{"schema":2,"weight":1}"#.to_vec(), 5),
            kv(
                k.drain("gra"),
                encode(&DrainOverride {
                    schema: 1,
                    author: "a".into(),
                    reason: "r".into(),
                    at_ms: 1,
                }),
                6,
            ),
            kv(k.drill("d1"), encode(&drill), 7),
            kv(k.load("vin", "p1"), load(100, Some(1000)), 8),
            kv(k.load("vin", "p2"), load(50, Some(500)), 9),
            kv(format!("{}mystery", k.prefix()), b"x".to_vec(), 10),
            kv(k.audit(1, 1), b"whatever".to_vec(), 11),
        ],
        11,
    );
    let snap = b.build(0).unwrap();
    let st = |id: &str| {
        snap.states
            .get(snap.topology.region_index(id).unwrap())
            .unwrap()
            .clone()
    };
    assert_eq!(st("waw").weight, 7);
    assert_eq!(st("lon").weight, 100, "garbage skipped, configured weight stands");
    assert_eq!(st("sbg").weight, 100, "schema 2 skipped");
    assert!(st("gra").drained);
    assert_eq!(st("fra").drills[0].mode, DrillMode::Capacity { percent: 50 });
    assert_eq!(
        (st("vin").in_flight, st("vin").capacity),
        (Some(150), 1500),
        "instances summed"
    );
    assert_eq!(snap.config_source, ConfigSource::Bootstrap);
    let problems = snap.problems.join("\n");
    assert!(
        problems.contains("/meridian/overrides/weights/lon: not JSON"),
        "{problems}"
    );
    assert!(
        problems.contains("/meridian/overrides/weights/frx: unknown region \"frx\""),
        "{problems}"
    );
    assert!(
        problems.contains("/meridian/overrides/weights/sbg: schema version 2 is not supported"),
        "{problems}"
    );
    assert!(problems.contains("/meridian/mystery: unknown key"), "{problems}");
    assert!(
        !problems.contains("audit"),
        "the audit log is not read: {problems}"
    );
    assert_eq!(snap.problems.len(), 4);
}

#[test]
fn an_invalid_stored_configuration_never_replaces_a_good_one() {
    let k = keys();
    let mut b = SnapshotBuilder::new(k.clone(), None);
    assert!(b.build(0).is_none(), "no configuration anywhere: no snapshot");
    let doc = |toml: &str| {
        encode(&ConfigDoc {
            schema: 1,
            toml: toml.to_owned(),
            author: "ops".into(),
            applied_at_ms: 1,
        })
    };
    let kv = |value: Vec<u8>, rev: i64| KeyValue {
        key: k.config(),
        value,
        create_revision: 2,
        mod_revision: rev,
        version: 1,
        lease: 0,
    };
    b.reset(vec![kv(doc(EXAMPLE), 2)], 2);
    let good = b.build(0).unwrap();
    assert!(matches!(
        good.config_source,
        ConfigSource::Store { revision: 2, .. }
    ));
    b.apply(
        vec![Event {
            kind: EventKind::Put,
            kv: kv(doc(&EXAMPLE.replace("lat = 52.2297", "lat = 520")), 3),
        }],
        3,
    );
    let after = b.build(0).unwrap();
    assert!(
        matches!(after.config_source, ConfigSource::Store { revision: 2, .. }),
        "still the good one"
    );
    assert!(
        after
            .problems
            .iter()
            .any(|p| p.contains("revision 3 is invalid, keeping the last good one"))
    );
    assert!(Arc::ptr_eq(&good.topology, &after.topology), "not recompiled");
    // Deleting the key does not leave the service without configuration either.
    b.apply(
        vec![Event {
            kind: EventKind::Delete,
            kv: kv(Vec::new(), 4),
        }],
        4,
    );
    assert!(matches!(
        b.build(0).unwrap().config_source,
        ConfigSource::Store { revision: 2, .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_changes_reach_the_snapshot() {
    let store: Arc<dyn KvStore> = Arc::new(EmbeddedStore::in_memory());
    let w = SnapshotWatcher::spawn(store.clone(), options());
    eventually("first sync", Duration::from_secs(5), || w.is_connected()).await;
    let rev = store.put(&keys().weight("waw"), weight(3), None).await.unwrap();
    assert!(w.wait_for(rev, Duration::from_secs(2)).await);
    assert_eq!(region_weight(&w, "waw"), 3);
    store
        .put(&keys().weight("waw"), b"not json".to_vec(), None)
        .await
        .unwrap();
    eventually("bad value noticed", Duration::from_secs(2), || {
        !w.snapshot().unwrap().problems.is_empty()
    })
    .await;
    assert_eq!(
        region_weight(&w, "waw"),
        100,
        "the bad override is skipped, not applied, not fatal"
    );
    assert!(w.staleness() < Duration::from_secs(2));
}

/// The watcher survives etcd dying: it keeps serving, staleness grows, and when etcd returns it
/// converges on every update, including those written before it reconnected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_outage_keeps_the_last_snapshot_and_loses_no_update() {
    let mut etcd = EtcdServer::start();
    let store: Arc<dyn KvStore> =
        Arc::new(EtcdStore::new(EtcdOptions::new(vec![etcd.client_url.clone()])).unwrap());
    let w = SnapshotWatcher::spawn(store.clone(), options());
    let rev = store.put(&keys().weight("waw"), weight(11), None).await.unwrap();
    assert!(w.wait_for(rev, Duration::from_secs(5)).await);
    assert_eq!(region_weight(&w, "waw"), 11);

    etcd.kill();
    eventually("disconnect noticed", Duration::from_secs(5), || !w.is_connected()).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        w.staleness() >= Duration::from_secs(1),
        "staleness grows: {:?}",
        w.staleness()
    );
    assert_eq!(
        region_weight(&w, "waw"),
        11,
        "last known good, not 'everything down'"
    );

    etcd.restart();
    // Writes racing the watcher's reconnection: none may be lost.
    let mut last = 0;
    for i in 0..20u32 {
        last = store.put(&keys().weight("fra"), weight(i), None).await.unwrap();
        store
            .put(
                &keys().weight(["waw", "lon", "sbg", "gra"][i as usize % 4]),
                weight(i + 1),
                None,
            )
            .await
            .unwrap();
    }
    let last2 = store.put(&keys().weight("hil"), weight(42), None).await.unwrap();
    assert!(
        w.wait_for(last.max(last2), Duration::from_secs(10)).await,
        "converged after the outage"
    );
    assert_eq!(region_weight(&w, "fra"), 19);
    assert_eq!(region_weight(&w, "hil"), 42);
    assert_eq!(region_weight(&w, "gra"), 20);
    assert!(w.is_connected());
    assert!(w.staleness() < Duration::from_secs(2));
}

/// Wraps a store; can break the current watch and refuse new ones until released, to put the watcher
/// behind a compaction.
#[derive(Debug)]
struct Breakable {
    inner: Arc<dyn KvStore>,
    broken: Arc<AtomicBool>,
}

struct BreakableWatch {
    inner: Box<dyn WatchStream>,
    broken: Arc<AtomicBool>,
}

#[async_trait]
impl WatchStream for BreakableWatch {
    async fn next(&mut self) -> Result<WatchMessage> {
        loop {
            if self.broken.load(Ordering::SeqCst) {
                return Err(StoreError::Unavailable("broken by the test".into()));
            }
            if let Ok(m) = tokio::time::timeout(Duration::from_millis(50), self.inner.next()).await {
                return m;
            }
        }
    }
}

#[async_trait]
impl KvStore for Breakable {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        self.inner.get(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Listing> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("broken by the test".into()));
        }
        self.inner.list(prefix).await
    }
    async fn put(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> Result<Revision> {
        self.inner.put(key, value, lease).await
    }
    async fn delete(&self, key: &str) -> Result<Revision> {
        self.inner.delete(key).await
    }
    async fn txn(&self, c: Vec<Compare>, o: Vec<TxnOp>) -> Result<TxnResult> {
        self.inner.txn(c, o).await
    }
    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId> {
        self.inner.grant_lease(ttl).await
    }
    async fn keep_alive(&self, l: LeaseId) -> Result<()> {
        self.inner.keep_alive(l).await
    }
    async fn revoke_lease(&self, l: LeaseId) -> Result<()> {
        self.inner.revoke_lease(l).await
    }
    async fn watch(&self, prefix: &str, from: Revision, p: Duration) -> Result<Box<dyn WatchStream>> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("broken by the test".into()));
        }
        let inner = self.inner.watch(prefix, from, p).await?;
        Ok(Box::new(BreakableWatch {
            inner,
            broken: self.broken.clone(),
        }))
    }
    async fn compact(&self, r: Revision) -> Result<()> {
        self.inner.compact(r).await
    }
    fn describe(&self) -> String {
        "breakable".into()
    }
}

async fn recovers_from_compaction(inner: Arc<dyn KvStore>) {
    let broken = Arc::new(AtomicBool::new(false));
    let store: Arc<dyn KvStore> = Arc::new(Breakable {
        inner: inner.clone(),
        broken: broken.clone(),
    });
    let w = SnapshotWatcher::spawn(store.clone(), options());
    let rev = inner.put(&keys().weight("waw"), weight(1), None).await.unwrap();
    assert!(w.wait_for(rev, Duration::from_secs(5)).await);
    broken.store(true, Ordering::SeqCst);
    eventually("watch broken", Duration::from_secs(5), || !w.is_connected()).await;
    inner.put(&keys().weight("waw"), weight(2), None).await.unwrap();
    inner
        .put(
            &keys().drain("fra"),
            encode(&DrainOverride {
                schema: 1,
                author: "a".into(),
                reason: "r".into(),
                at_ms: 1,
            }),
            None,
        )
        .await
        .unwrap();
    let last = inner.put(&keys().weight("lon"), weight(3), None).await.unwrap();
    inner.compact(last).await.unwrap();
    broken.store(false, Ordering::SeqCst);
    assert!(
        w.wait_for(last, Duration::from_secs(10)).await,
        "re-listed after compaction"
    );
    assert_eq!(region_weight(&w, "waw"), 2);
    assert_eq!(region_weight(&w, "lon"), 3);
    let snap = w.snapshot().unwrap();
    assert!(
        snap.states
            .get(snap.topology.region_index("fra").unwrap())
            .unwrap()
            .drained
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_watcher_recovers_from_compaction_by_relisting() {
    recovers_from_compaction(Arc::new(EmbeddedStore::in_memory())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_watcher_recovers_from_compaction_by_relisting() {
    let etcd = EtcdServer::start();
    recovers_from_compaction(Arc::new(
        EtcdStore::new(EtcdOptions::new(vec![etcd.client_url.clone()])).unwrap(),
    ))
    .await;
}

/// A node restarted while the store is unreachable serves what it last knew, from its cache file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_during_an_outage_serves_the_cached_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("snapshot.json");
    let store: Arc<dyn KvStore> = Arc::new(EmbeddedStore::in_memory());
    let applied = apply_config(store.as_ref(), &keys(), EXAMPLE, None, "ops", 1)
        .await
        .unwrap();
    assert!(matches!(applied, ApplyOutcome::Applied { .. }));
    {
        let mut o = options();
        o.bootstrap = None;
        o.cache_file = Some(cache.clone());
        let w = SnapshotWatcher::spawn(store.clone(), o);
        let rev = store.put(&keys().weight("bhs"), weight(9), None).await.unwrap();
        assert!(w.wait_for(rev, Duration::from_secs(2)).await);
        eventually("cache written", Duration::from_secs(5), || {
            std::fs::read_to_string(&cache).is_ok_and(|c| c.contains("overrides/weights/bhs"))
        })
        .await;
    }
    // An etcd nobody listens on: unreachable from the start.
    let unreachable: Arc<dyn KvStore> =
        Arc::new(EtcdStore::new(EtcdOptions::new(vec!["http://127.0.0.1:9".into()])).unwrap());
    let mut o = options();
    o.cache_file = Some(cache.clone());
    o.bootstrap = None;
    let w = SnapshotWatcher::spawn(unreachable, o);
    eventually("snapshot from cache", Duration::from_secs(2), || {
        w.snapshot().is_some()
    })
    .await;
    assert_eq!(region_weight(&w, "bhs"), 9);
    assert!(
        matches!(w.snapshot().unwrap().config_source, ConfigSource::Store { .. }),
        "configuration from the cache"
    );
    assert!(!w.is_connected());
}

/// The builder aggregates prober opinions into region health at the time it is given, remembers the
/// last state for regions nobody sees any more, and reports opinions about unknown regions.
#[test]
fn the_builder_turns_opinions_into_region_health() {
    use meridian_steer::Health;
    let k = keys();
    let mut b = SnapshotBuilder::new(k.clone(), Some(example()));
    let kv = |key: String, value: Vec<u8>, rev: i64| kv_leased(key, value, rev, 7);
    let t = 1_000_000;
    b.reset(
        vec![
            kv(k.health("waw", "v1"), observation(false, t), 2),
            kv(k.health("waw", "v2"), observation(false, t), 3),
            kv(k.health("waw", "v3"), observation(true, t), 4),
            kv(k.health("fra", "v1"), observation(false, t), 5),
            kv(k.health("fra", "v2"), observation(true, t), 6),
            kv(k.health("fra", "v3"), observation(true, t), 7),
            kv(k.health("xyz", "v1"), observation(false, t), 8),
        ],
        8,
    );
    let snap = b.build(t).unwrap();
    assert_eq!(health_of(&snap, "waw"), Health::Down, "two of three say down");
    assert_eq!(health_of(&snap, "fra"), Health::Up, "one of three does not");
    assert_eq!(health_of(&snap, "lon"), Health::Unknown, "nobody has an opinion");
    let waw = snap.health.region("waw").unwrap();
    assert_eq!((waw.since_ms, waw.stale, waw.votes()), (t, false, (3, 2)));
    assert!(
        snap.problems
            .iter()
            .any(|p| p.contains("health/xyz/v1: unknown region \"xyz\"")),
        "{:?}",
        snap.problems
    );
    assert_eq!(snap.observations.len(), 7, "raw observations are all kept");

    // The probers vanish (leases expired): the last states stand, marked stale.
    b.apply(
        ["waw", "fra"]
            .iter()
            .flat_map(|r| ["v1", "v2", "v3"].map(|v| (r, v)))
            .map(|(r, v)| Event {
                kind: EventKind::Delete,
                kv: kv(k.health(r, v), Vec::new(), 9),
            })
            .collect(),
        9,
    );
    let later = b.build(t + 60_000).unwrap();
    assert_eq!(health_of(&later, "waw"), Health::Down);
    assert_eq!(health_of(&later, "fra"), Health::Up);
    let waw = later.health.region("waw").unwrap();
    assert!(waw.stale);
    assert_eq!(waw.since_ms, t, "no transition while stale");
    assert_eq!(later.health.stale_count(), 2);
}

/// Opinions go stale with time, without any store event: the watcher's timer re-aggregates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watcher_expires_opinions_on_its_own() {
    use meridian_steer::Health;
    let store: Arc<dyn KvStore> = Arc::new(EmbeddedStore::in_memory());
    let w = SnapshotWatcher::spawn(store.clone(), options());
    eventually("first sync", Duration::from_secs(5), || w.is_connected()).await;
    let now = wall_ms();
    // Two down opinions that turn stale (the example's stale-after is 10 s) in about 700 ms, one healthy
    // opinion that stays fresh.
    let k = keys();
    store
        .put(&k.health("waw", "v1"), observation(false, now - 9_300), None)
        .await
        .unwrap();
    store
        .put(&k.health("waw", "v2"), observation(false, now - 9_300), None)
        .await
        .unwrap();
    let rev = store
        .put(&k.health("waw", "v3"), observation(true, now + 60_000), None)
        .await
        .unwrap();
    assert!(w.wait_for(rev, Duration::from_secs(2)).await);
    assert_eq!(health_of(&w.snapshot().unwrap(), "waw"), Health::Down);
    let start = Instant::now();
    eventually("stale opinions stop counting", Duration::from_secs(3), || {
        health_of(&w.snapshot().unwrap(), "waw") == Health::Up
    })
    .await;
    assert!(
        start.elapsed() >= Duration::from_millis(400),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(w.snapshot().unwrap().revision, rev, "no store event was involved");
}
