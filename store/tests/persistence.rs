//! The embedded store's data directory, and configuration edits by compare-and-swap on both back ends.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use meridian_store::schema::{AuditRecord, decode};
use meridian_store::testing::EtcdServer;
use meridian_store::*;

const EXAMPLE: &str = include_str!("../../examples/meridian.toml");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_changes_survive_a_restart_and_leased_keys_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let (rev, lease_key) = {
        let s = EmbeddedStore::open(dir.path()).unwrap();
        let rev = s
            .put("/m/overrides/drains/waw", b"drained".to_vec(), None)
            .await
            .unwrap();
        let lease = s.grant_lease(Duration::from_secs(30)).await.unwrap();
        s.put("/m/load/waw/p1", b"leased".to_vec(), Some(lease))
            .await
            .unwrap();
        (rev, "/m/load/waw/p1")
    };
    let s = EmbeddedStore::open(dir.path()).unwrap();
    let kv = s.get("/m/overrides/drains/waw").await.unwrap().expect("survived");
    assert_eq!((kv.value.as_slice(), kv.mod_revision), (&b"drained"[..], rev));
    assert_eq!(s.get(lease_key).await.unwrap(), None, "ephemeral by nature");
    let next = s.put("/m/x", b"y".to_vec(), None).await.unwrap();
    assert!(next > rev, "revisions keep increasing across restarts");
    // History from before the restart is gone: a watch from there must re-list.
    assert!(matches!(
        s.watch("/m/", rev, Duration::from_secs(1)).await.err(),
        Some(StoreError::Compacted { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_write_leaves_the_previous_state_and_garbage_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = EmbeddedStore::open(dir.path()).unwrap();
        s.put("/m/config", b"v1".to_vec(), None).await.unwrap();
    }
    // A crash mid-write leaves a partial temporary file; the state file itself is untouched.
    std::fs::write(dir.path().join("state.json.tmp"), b"{\"format\":1,\"revis").unwrap();
    {
        let s = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(s.get("/m/config").await.unwrap().unwrap().value, b"v1");
    }
    // A damaged state file is an error naming it, never an empty store.
    std::fs::write(dir.path().join("state.json"), b"\x00garbage").unwrap();
    let err = EmbeddedStore::open(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("state.json") && err.contains("not a Meridian state file"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_per_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let _first = EmbeddedStore::open(dir.path()).unwrap();
    let err = EmbeddedStore::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains("in use by another Meridian process"), "{err}");
}

macro_rules! config_battery {
    ($name:ident, $make:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn apply_is_compare_and_swap_with_an_audit_record() {
                #[allow(unused_variables)]
                let (store, guard): (Arc<dyn KvStore>, _) = $make;
                let keys = Keys::new("/m/").unwrap();
                let s = store.as_ref();
                assert_eq!(read_config(s, &keys).await.unwrap(), None);
                // First apply: against "nothing there".
                let a = apply_config(s, &keys, EXAMPLE, Some(0), "alice", 1000)
                    .await
                    .unwrap();
                let ApplyOutcome::Applied {
                    revision: r1,
                    previous: None,
                } = a
                else {
                    panic!("{a:?}")
                };
                assert_eq!(
                    read_config(s, &keys).await.unwrap().unwrap().doc.author,
                    "alice"
                );
                // Re-applying the same text changes nothing.
                assert_eq!(
                    apply_config(s, &keys, EXAMPLE, None, "alice", 1001)
                        .await
                        .unwrap(),
                    ApplyOutcome::Unchanged { revision: r1 }
                );
                // Bob changes it; Alice, still holding r1, is refused and told what is there now.
                let bobs = EXAMPLE.replace("ttl = 30", "ttl = 15");
                let b = apply_config(s, &keys, &bobs, Some(r1), "bob", 2000)
                    .await
                    .unwrap();
                let ApplyOutcome::Applied {
                    revision: r2,
                    previous: Some(prev),
                } = b
                else {
                    panic!("{b:?}")
                };
                assert_eq!(prev.revision, r1);
                let alices = EXAMPLE.replace("ttl = 60", "ttl = 90");
                let c = apply_config(s, &keys, &alices, Some(r1), "alice", 3000)
                    .await
                    .unwrap();
                let ApplyOutcome::Conflict {
                    expected,
                    current: Some(cur),
                } = c
                else {
                    panic!("{c:?}")
                };
                assert_eq!(
                    (expected, cur.revision, cur.doc.author.as_str()),
                    (r1, r2, "bob")
                );
                assert!(cur.doc.toml.contains("ttl = 15"));
                // An invalid file is refused before anything is written.
                let bad = EXAMPLE.replace(r#"regions = ["waw", "fra"]"#, r#"regions = ["waw", "frx"]"#);
                let e = apply_config(s, &keys, &bad, None, "carol", 4000)
                    .await
                    .unwrap_err()
                    .to_string();
                assert!(
                    e.contains("services.files.regions[1]: unknown region \"frx\""),
                    "{e}"
                );
                assert_eq!(read_config(s, &keys).await.unwrap().unwrap().revision, r2);
                // Two changes, two audit records, each written with its change.
                let audit = s.list(&keys.audit_prefix()).await.unwrap().kvs;
                assert_eq!(audit.len(), 2);
                let records: Vec<AuditRecord> = audit.iter().map(|kv| decode(&kv.value).unwrap()).collect();
                assert_eq!(
                    (records[0].who.as_str(), records[1].who.as_str()),
                    ("alice", "bob")
                );
                assert_eq!(audit[1].mod_revision, r2);
                assert_eq!(records[1].before["revision"], r1);
                assert!(
                    records[1].after["toml"]
                        .as_str()
                        .unwrap()
                        .contains("ttl = 15")
                );
            }
        }
    };
}

config_battery!(embedded, (Arc::new(EmbeddedStore::in_memory()), ()));
config_battery!(etcd, {
    let server = EtcdServer::start();
    let store = EtcdStore::new(EtcdOptions::new(vec![server.client_url.clone()])).unwrap();
    (Arc::new(store), server)
});
