//! The etcd store against a real 3-member cluster: with any one member killed (follower or leader), every
//! call succeeds — reads, writes, compare-and-swap transactions, leases and watches — because the store
//! fails over between members instead of sending every third request to the dead one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use meridian_store::testing::EtcdCluster;
use meridian_store::{Compare, EtcdOptions, EtcdStore, KvStore, TxnOp, WatchMessage};

fn store(cluster: &EtcdCluster) -> EtcdStore {
    EtcdStore::new(EtcdOptions::new(cluster.client_urls())).unwrap()
}

/// Twenty of every kind of call, each of which must succeed; returns the slowest.
async fn every_call_succeeds(store: &EtcdStore, round: &str) -> Duration {
    let mut slowest = Duration::ZERO;
    for i in 0..20 {
        let start = Instant::now();
        let key = format!("/t/{round}/{i}");
        store
            .put(&key, b"v".to_vec(), None)
            .await
            .unwrap_or_else(|e| panic!("{round} put {i}: {e}"));
        let got = store
            .get(&key)
            .await
            .unwrap_or_else(|e| panic!("{round} get {i}: {e}"));
        let rev = got.unwrap().mod_revision;
        let txn = store
            .txn(
                vec![Compare {
                    key: key.clone(),
                    mod_revision: rev,
                }],
                vec![TxnOp::Put {
                    key: key.clone(),
                    value: b"w".to_vec(),
                    lease: None,
                }],
            )
            .await
            .unwrap_or_else(|e| panic!("{round} txn {i}: {e}"));
        assert!(txn.succeeded, "{round} txn {i}");
        let listing = store
            .list(&format!("/t/{round}/"))
            .await
            .unwrap_or_else(|e| panic!("{round} list {i}: {e}"));
        assert_eq!(listing.kvs.len(), i + 1);
        let lease = store
            .grant_lease(Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("{round} lease {i}: {e}"));
        store
            .keep_alive(lease)
            .await
            .unwrap_or_else(|e| panic!("{round} keep-alive {i}: {e}"));
        store
            .revoke_lease(lease)
            .await
            .unwrap_or_else(|e| panic!("{round} revoke {i}: {e}"));
        slowest = slowest.max(start.elapsed());
    }
    // A watch opened now sees a change made now.
    let from = store.list("/t/").await.unwrap().revision + 1;
    let mut watch = store
        .watch("/t/", from, Duration::from_millis(500))
        .await
        .unwrap();
    store
        .put(&format!("/t/{round}/watched"), b"x".to_vec(), None)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        assert!(Instant::now() < deadline, "{round}: the watch saw nothing");
        match tokio::time::timeout(Duration::from_secs(2), watch.next()).await {
            Ok(Ok(WatchMessage::Events { events, .. })) => {
                assert!(events.iter().any(|e| e.kv.key.ends_with("/watched")));
                break;
            }
            Ok(Ok(WatchMessage::Progress { .. })) => {}
            Ok(Err(e)) => panic!("{round}: watch failed: {e}"),
            Err(_) => panic!("{round}: watch silent"),
        }
    }
    slowest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_member_down_is_invisible_to_every_kind_of_call() {
    let mut cluster = EtcdCluster::start(3);
    let store = store(&cluster);
    every_call_succeeds(&store, "all-up").await;
    for i in 0..3 {
        cluster.kill(i);
        let slowest = every_call_succeeds(&store, &format!("m{i}-down")).await;
        assert!(
            slowest < Duration::from_secs(2),
            "member {i} down: a call took {slowest:?}"
        );
        cluster.restart(i);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_right_after_the_leader_is_killed_succeed_once_a_new_one_is_elected() {
    let mut cluster = EtcdCluster::start(3);
    let store = store(&cluster);
    store.put("/t/warm", b"x".to_vec(), None).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let leader = loop {
        if let Some(l) = cluster.leader() {
            break l;
        }
        assert!(Instant::now() < deadline, "no leader found");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    cluster.kill(leader);
    let killed = Instant::now();
    // The first write after the kill: retried across members within its deadline, no error.
    let rev = store
        .txn(
            vec![Compare {
                key: "/t/after-kill".to_owned(),
                mod_revision: 0,
            }],
            vec![TxnOp::Put {
                key: "/t/after-kill".to_owned(),
                value: b"1".to_vec(),
                lease: None,
            }],
        )
        .await
        .expect("the first write after the leader's death succeeds");
    assert!(rev.succeeded);
    let took = killed.elapsed();
    eprintln!("first write after killing the leader: {took:?}");
    every_call_succeeds(&store, "leader-down").await;
}

/// With the default options, a watcher that lost the whole store picks up a change made right after the
/// store answers again within a few hundred milliseconds (the reconnect backoff is capped at 200 ms).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_outage_a_change_reaches_the_watcher_within_a_few_hundred_milliseconds() {
    use std::sync::Arc;
    let mut cluster = EtcdCluster::start(3);
    let store: Arc<dyn KvStore> = Arc::new(store(&cluster));
    let keys = meridian_store::Keys::new(meridian_store::DEFAULT_PREFIX).unwrap();
    let watcher = meridian_store::SnapshotWatcher::spawn(
        store.clone(),
        meridian_store::WatcherOptions::new(keys.clone()),
    );
    let key = format!("{}mark", keys.prefix());
    store.put(&key, b"1".to_vec(), None).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !watcher.is_connected() {
        assert!(Instant::now() < deadline, "the watcher never connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut worst = Duration::ZERO;
    for trial in 0..3 {
        for i in 0..3 {
            cluster.kill(i);
        }
        // Long enough for the backoff to reach its cap and the watch to be declared lost.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(
            !watcher.is_connected(),
            "trial {trial}: still connected with every member down"
        );
        let mut revisions = watcher.revisions();
        // Blocking (it waits for every member to serve): off the async workers.
        tokio::task::block_in_place(|| cluster.restart_all());
        let written = Instant::now();
        let rev = store
            .put(&key, format!("{trial}").into_bytes(), None)
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while *revisions.borrow_and_update() < rev {
            assert!(
                Instant::now() < deadline,
                "trial {trial}: the change never arrived"
            );
            let _ = tokio::time::timeout(Duration::from_millis(50), revisions.changed()).await;
        }
        let took = written.elapsed();
        eprintln!("trial {trial}: change seen {took:?} after the write");
        worst = worst.max(took);
    }
    assert!(worst < Duration::from_millis(600), "worst {worst:?}");
}
