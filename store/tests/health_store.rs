//! Health per zone: snapshots built from the global store (configuration, operator state) and a zone's
//! health store (prober opinions, load reports), each followed on its own, so that losing either never
//! stops the other from updating the snapshot (docs/deployment.md, "The Atlantic cut").

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use meridian_steer::Health;
use meridian_store::testing::EtcdServer;
use meridian_store::*;

mod support;
use support::*;
/// With a health store, opinions come from it only: the global store's are ignored (left behind by a node
/// not yet moved), and what does not belong in a health store (a weight) is reported and never applied.
#[test]
fn the_builder_takes_health_from_the_health_store_only() {
    let k = keys();
    let t = 1_000_000;
    let mut b = SnapshotBuilder::new(k.clone(), Some(example())).with_health_store();
    b.reset(
        vec![
            // Old opinions in the global store saying waw is down: ignored.
            kv(k.health("waw", "v1"), observation(false, t), 2),
            kv(k.health("waw", "v2"), observation(false, t), 3),
            kv(k.weight("lon"), weight(7), 4),
        ],
        4,
    );
    b.reset_health(
        vec![
            kv(k.health("fra", "v1"), observation(false, t), 10),
            kv(k.health("fra", "v2"), observation(false, t), 11),
            kv(k.health("waw", "v1"), observation(true, t), 12),
            kv(k.weight("fra"), weight(3), 13),
        ],
        13,
    );
    let snap = b.build(t).unwrap();
    assert_eq!(
        health_of(&snap, "fra"),
        Health::Down,
        "the health store's opinions count"
    );
    assert_eq!(
        health_of(&snap, "waw"),
        Health::Up,
        "the global store's opinions do not"
    );
    assert_eq!(
        weight_of(&snap, "lon"),
        7,
        "operator state comes from the global store"
    );
    assert_ne!(
        weight_of(&snap, "fra"),
        3,
        "operator state never comes from a health store"
    );
    assert!(
        snap.problems
            .iter()
            .any(|p| p.contains("overrides/weights/fra") && p.contains("health store")),
        "{:?}",
        snap.problems
    );
    assert_eq!((snap.revision, snap.health_revision), (4, Some(13)));

    // Health events move health; the global revision stays.
    b.apply_health(
        vec![
            Event {
                kind: EventKind::Put,
                kv: kv(k.health("fra", "v1"), observation(true, t), 14),
            },
            Event {
                kind: EventKind::Put,
                kv: kv(k.health("fra", "v2"), observation(true, t), 15),
            },
        ],
        15,
    );
    let snap = b.build(t).unwrap();
    assert_eq!(health_of(&snap, "fra"), Health::Up);
    assert_eq!((snap.revision, snap.health_revision), (4, Some(15)));

    // Without a health store nothing changes: opinions come from the one store.
    let mut one = SnapshotBuilder::new(k.clone(), Some(example()));
    one.reset(vec![kv(k.health("waw", "v1"), observation(false, t), 2)], 2);
    let snap = one.build(t).unwrap();
    assert_eq!(health_of(&snap, "waw"), Health::Down);
    assert_eq!(snap.health_revision, None);
}

/// A zone cut off from the global cluster: the global etcd is gone (the node keeps its configuration and
/// operator state, says it is disconnected), yet opinions written to the zone's health store keep moving
/// region health, both ways. Then the health store goes too: the last health stands (never "all down"),
/// and the global store's return brings operator changes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_global_store_does_not_stop_health_from_the_zone() {
    let mut global_etcd = EtcdServer::start();
    let mut zone_etcd = EtcdServer::start();
    let global: Arc<dyn KvStore> =
        Arc::new(EtcdStore::new(EtcdOptions::new(vec![global_etcd.client_url.clone()])).unwrap());
    let zone: Arc<dyn KvStore> =
        Arc::new(EtcdStore::new(EtcdOptions::new(vec![zone_etcd.client_url.clone()])).unwrap());
    let k = keys();
    let mut options = WatcherOptions::new(k.clone());
    options.bootstrap = Some(example());
    options.progress_interval = Duration::from_millis(250);
    options.health_store = Some(zone.clone());
    let w = SnapshotWatcher::spawn(global.clone(), options);

    let rev = global.put(&k.weight("lon"), weight(9), None).await.unwrap();
    assert!(w.wait_for(rev, Duration::from_secs(5)).await);
    eventually("health store synced", Duration::from_secs(5), || {
        w.health_store_connected() == Some(true)
    })
    .await;
    assert_eq!(weight_of(&w.snapshot().unwrap(), "lon"), 9);

    global_etcd.kill();
    eventually("global outage noticed", Duration::from_secs(5), || {
        !w.is_connected()
    })
    .await;

    // A region fails inside the zone during the outage: detected.
    let now = wall_ms();
    for v in ["v1", "v2"] {
        zone.put(&k.health("fra", v), observation(false, now + 60_000), None)
            .await
            .unwrap();
    }
    eventually(
        "fra down from the zone's opinions",
        Duration::from_secs(3),
        || health_of(&w.snapshot().unwrap(), "fra") == Health::Down,
    )
    .await;
    let snap = w.snapshot().unwrap();
    assert_eq!(snap.revision, rev, "nothing new from the global store");
    assert_eq!(weight_of(&snap, "lon"), 9, "operator state: last known good");
    assert!(!w.is_connected());
    assert_eq!(w.health_store_connected(), Some(true));
    // And recovers, still during the outage.
    for v in ["v1", "v2"] {
        zone.put(&k.health("fra", v), observation(true, now + 60_000), None)
            .await
            .unwrap();
    }
    eventually(
        "fra back up from the zone's opinions",
        Duration::from_secs(3),
        || health_of(&w.snapshot().unwrap(), "fra") == Health::Up,
    )
    .await;

    // Both stores gone: the last snapshot stands.
    for v in ["v1", "v2"] {
        zone.put(&k.health("waw", v), observation(false, now + 60_000), None)
            .await
            .unwrap();
    }
    eventually("waw down", Duration::from_secs(3), || {
        health_of(&w.snapshot().unwrap(), "waw") == Health::Down
    })
    .await;
    zone_etcd.kill();
    eventually("health store outage noticed", Duration::from_secs(5), || {
        w.health_store_connected() == Some(false)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let snap = w.snapshot().unwrap();
    assert_eq!(health_of(&snap, "waw"), Health::Down, "last known health");
    assert_eq!(health_of(&snap, "fra"), Health::Up, "never 'all down'");
    assert!(w.health_store_staleness().unwrap() >= Duration::from_millis(500));

    // The global store returns: operator changes flow again, health stays as it was.
    global_etcd.restart();
    let rev = global.put(&k.weight("lon"), weight(5), None).await.unwrap();
    assert!(w.wait_for(rev, Duration::from_secs(10)).await);
    let snap = w.snapshot().unwrap();
    assert_eq!(weight_of(&snap, "lon"), 5);
    assert_eq!(health_of(&snap, "waw"), Health::Down);
    assert!(w.is_connected());
    zone_etcd.restart();
    eventually("health store back", Duration::from_secs(10), || {
        w.health_store_connected() == Some(true)
    })
    .await;
}
