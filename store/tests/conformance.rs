//! The store contract, one battery run against both back ends: the embedded store and a real etcd
//! (Debian's, started by the harness on free loopback ports). If a test passes on one and fails on the
//! other, the embedded store is not the stand-in it claims to be.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use meridian_store::testing::EtcdServer;
use meridian_store::*;

/// Keeps whatever the back end needs alive (the etcd process) for the duration of a test.
enum Guard {
    None,
    Etcd(#[allow(dead_code)] EtcdServer),
}

async fn embedded() -> (Arc<dyn KvStore>, Guard) {
    (Arc::new(EmbeddedStore::in_memory()), Guard::None)
}

async fn etcd() -> (Arc<dyn KvStore>, Guard) {
    let server = EtcdServer::start();
    let store = EtcdStore::new(EtcdOptions::new(vec![server.client_url.clone()])).unwrap();
    (Arc::new(store), Guard::Etcd(server))
}

async fn next_events(w: &mut Box<dyn WatchStream>) -> (Revision, Vec<Event>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "no events within 10 s");
        match tokio::time::timeout(Duration::from_secs(10), w.next())
            .await
            .expect("watch answers")
            .unwrap()
        {
            WatchMessage::Events { revision, events } => return (revision, events),
            WatchMessage::Progress { .. } => continue,
        }
    }
}

async fn wait_gone(s: &Arc<dyn KvStore>, key: &str, within: Duration) -> Duration {
    let start = Instant::now();
    while s.get(key).await.unwrap().is_some() {
        assert!(start.elapsed() < within, "{key} still present after {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
}

macro_rules! battery {
    ($backend:ident) => {
        mod $backend {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn put_get_overwrite_delete() {
                let (s, _g) = super::$backend().await;
                assert_eq!(s.get("/t/a").await.unwrap(), None);
                let r1 = s.put("/t/a", b"one".to_vec(), None).await.unwrap();
                let kv = s.get("/t/a").await.unwrap().unwrap();
                assert_eq!((kv.value.as_slice(), kv.version, kv.mod_revision, kv.create_revision), (&b"one"[..], 1, r1, r1));
                let r2 = s.put("/t/a", b"two".to_vec(), None).await.unwrap();
                assert!(r2 > r1);
                let kv = s.get("/t/a").await.unwrap().unwrap();
                assert_eq!((kv.value.as_slice(), kv.version, kv.mod_revision, kv.create_revision), (&b"two"[..], 2, r2, r1));
                let r3 = s.delete("/t/a").await.unwrap();
                assert!(r3 > r2);
                assert_eq!(s.get("/t/a").await.unwrap(), None);
                // Deleting nothing changes nothing.
                assert_eq!(s.delete("/t/a").await.unwrap(), r3);
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn list_is_by_prefix_sorted_and_has_a_revision() {
                let (s, _g) = super::$backend().await;
                s.put("/t/b/2", b"x".to_vec(), None).await.unwrap();
                s.put("/t/b/1", b"x".to_vec(), None).await.unwrap();
                let last = s.put("/t/c", b"x".to_vec(), None).await.unwrap();
                let l = s.list("/t/b/").await.unwrap();
                let keys: Vec<&str> = l.kvs.iter().map(|k| k.key.as_str()).collect();
                assert_eq!(keys, ["/t/b/1", "/t/b/2"]);
                assert!(l.revision >= last);
                assert!(s.list("/nothing/").await.unwrap().kvs.is_empty());
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn compare_and_swap() {
                let (s, _g) = super::$backend().await;
                let put = |k: &str, v: &str| TxnOp::Put { key: k.into(), value: v.into(), lease: None };
                // Create if absent.
                let r = s.txn(vec![Compare { key: "/t/cfg".into(), mod_revision: 0 }], vec![put("/t/cfg", "v1")]).await.unwrap();
                assert!(r.succeeded);
                let again = s.txn(vec![Compare { key: "/t/cfg".into(), mod_revision: 0 }], vec![put("/t/cfg", "v1b")]).await.unwrap();
                assert!(!again.succeeded, "second create must conflict");
                let rev = s.get("/t/cfg").await.unwrap().unwrap().mod_revision;
                // Update against the revision read; a stale revision conflicts and changes nothing.
                let ok = s
                    .txn(vec![Compare { key: "/t/cfg".into(), mod_revision: rev }], vec![put("/t/cfg", "v2"), put("/t/audit/1", "a")])
                    .await
                    .unwrap();
                assert!(ok.succeeded);
                let stale = s.txn(vec![Compare { key: "/t/cfg".into(), mod_revision: rev }], vec![put("/t/cfg", "v3")]).await.unwrap();
                assert!(!stale.succeeded);
                let cfg = s.get("/t/cfg").await.unwrap().unwrap();
                assert_eq!(cfg.value, b"v2");
                // Both operations of one transaction are one revision.
                assert_eq!(s.get("/t/audit/1").await.unwrap().unwrap().mod_revision, cfg.mod_revision);
                assert_eq!(cfg.mod_revision, ok.revision);
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn watch_is_ordered_and_resumes_from_a_revision() {
                let (s, _g) = super::$backend().await;
                let start = s.list("/t/").await.unwrap().revision;
                let mut w = s.watch("/t/w/", start + 1, Duration::from_secs(5)).await.unwrap();
                let r1 = s.put("/t/w/a", b"1".to_vec(), None).await.unwrap();
                s.put("/t/other", b"ignored".to_vec(), None).await.unwrap();
                let r2 = s.put("/t/w/b", b"2".to_vec(), None).await.unwrap();
                let r3 = s.delete("/t/w/a").await.unwrap();
                let mut seen = Vec::new();
                while seen.len() < 3 {
                    let (_, events) = next_events(&mut w).await;
                    seen.extend(events);
                }
                let got: Vec<(EventKind, &str, Revision)> = seen.iter().map(|e| (e.kind, e.kv.key.as_str(), e.kv.mod_revision)).collect();
                assert_eq!(got, [(EventKind::Put, "/t/w/a", r1), (EventKind::Put, "/t/w/b", r2), (EventKind::Delete, "/t/w/a", r3)]);
                // A new watch from r1 replays the same history.
                let mut again = s.watch("/t/w/", r1, Duration::from_secs(5)).await.unwrap();
                let mut replay = Vec::new();
                while replay.len() < 3 {
                    replay.extend(next_events(&mut again).await.1);
                }
                assert_eq!(replay, seen);
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn an_idle_watch_reports_progress() {
                let (s, _g) = super::$backend().await;
                let rev = s.put("/t/p", b"x".to_vec(), None).await.unwrap();
                let mut w = s.watch("/t/idle/", rev + 1, Duration::from_millis(300)).await.unwrap();
                let msg = tokio::time::timeout(Duration::from_secs(5), w.next()).await.expect("progress within 5 s").unwrap();
                assert!(matches!(msg, WatchMessage::Progress { revision } if revision >= rev), "{msg:?}");
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn lease_expiry_deletes_keys_with_delete_events() {
                let (s, _g) = super::$backend().await;
                let lease = s.grant_lease(Duration::from_secs(1)).await.unwrap();
                let rev = s.put("/t/lease/obs", b"up".to_vec(), Some(lease)).await.unwrap();
                assert_eq!(s.get("/t/lease/obs").await.unwrap().unwrap().lease, lease);
                let mut w = s.watch("/t/lease/", rev + 1, Duration::from_secs(10)).await.unwrap();
                let took = wait_gone(&s, "/t/lease/obs", Duration::from_secs(6)).await;
                assert!(took >= Duration::from_millis(500), "expired too early: {took:?}");
                let (_, events) = next_events(&mut w).await;
                assert_eq!(events[0].kind, EventKind::Delete);
                assert_eq!(events[0].kv.key, "/t/lease/obs");
                let ka = s.keep_alive(lease).await;
                assert!(matches!(ka, Err(StoreError::LeaseNotFound(_))), "{ka:?}");
                assert!(matches!(s.put("/t/lease/x", b"x".to_vec(), Some(lease)).await, Err(StoreError::LeaseNotFound(_))));
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn keep_alive_holds_and_revoke_deletes() {
                let (s, _g) = super::$backend().await;
                let lease = s.grant_lease(Duration::from_secs(1)).await.unwrap();
                s.put("/t/ka", b"x".to_vec(), Some(lease)).await.unwrap();
                let start = Instant::now();
                while start.elapsed() < Duration::from_millis(2500) {
                    s.keep_alive(lease).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                assert!(s.get("/t/ka").await.unwrap().is_some(), "kept alive past 2.5 TTLs");
                s.revoke_lease(lease).await.unwrap();
                assert_eq!(s.get("/t/ka").await.unwrap(), None, "revoking deletes at once");
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_lease_keeper_keeps_keys_until_dropped() {
                let (s, _g) = super::$backend().await;
                let keeper = LeaseKeeper::start(s.clone(), Duration::from_secs(1)).await.unwrap();
                s.put("/t/kept", b"x".to_vec(), Some(keeper.id())).await.unwrap();
                tokio::time::sleep(Duration::from_millis(3000)).await;
                assert!(s.get("/t/kept").await.unwrap().is_some(), "alive after three TTLs");
                drop(keeper);
                wait_gone(&s, "/t/kept", Duration::from_secs(3)).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_lost_lease_is_granted_again_and_announced() {
                let (s, _g) = super::$backend().await;
                let keeper = LeaseKeeper::start(s.clone(), Duration::from_secs(1)).await.unwrap();
                let first = keeper.id();
                let mut announced = keeper.lease();
                s.revoke_lease(first).await.unwrap();
                tokio::time::timeout(Duration::from_secs(3), announced.changed()).await.expect("announced").unwrap();
                let second = keeper.id();
                assert_ne!(first, second);
                s.put("/t/again", b"x".to_vec(), Some(second)).await.unwrap();
                tokio::time::sleep(Duration::from_millis(2000)).await;
                assert!(s.get("/t/again").await.unwrap().is_some(), "the new lease is kept alive");
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn watching_compacted_history_fails_with_compacted() {
                let (s, _g) = super::$backend().await;
                let first = s.put("/t/c", b"1".to_vec(), None).await.unwrap();
                s.put("/t/c", b"2".to_vec(), None).await.unwrap();
                let last = s.put("/t/c", b"3".to_vec(), None).await.unwrap();
                s.compact(last).await.unwrap();
                let result = match s.watch("/t/", first, Duration::from_secs(5)).await {
                    Err(e) => Err(e),
                    Ok(mut w) => tokio::time::timeout(Duration::from_secs(5), w.next()).await.expect("answer"),
                };
                assert!(matches!(result, Err(StoreError::Compacted { .. })), "{result:?}");
                // Watching from after the compaction works.
                let mut w = s.watch("/t/", last + 1, Duration::from_secs(5)).await.unwrap();
                s.put("/t/c", b"4".to_vec(), None).await.unwrap();
                assert_eq!(next_events(&mut w).await.1[0].kv.value, b"4");
            }
        }
    };
}

battery!(embedded);
battery!(etcd);
