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
