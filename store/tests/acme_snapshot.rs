//! The ACME documents in snapshots: challenge values merged per owner name (a wildcard and its parent
//! share one), the same `Arc` while no challenge key changes (DNS rebuilds its zones only then), the
//! revision DNS's SOA serial follows, certificates and status decoded, the lock and account kept out.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use meridian_config::Config;
use meridian_store::schema::{AcmeChallengeDoc, AcmeStatusDoc, encode};
use meridian_store::{DEFAULT_PREFIX, Event, EventKind, Keys, SnapshotBuilder};

mod support;
use support::*;

fn challenge(v: &str) -> Vec<u8> {
    encode(&AcmeChallengeDoc {
        schema: 1,
        values: vec![v.to_owned()],
        holder: "proxy/p1".into(),
    })
}

#[test]
fn challenges_merge_per_owner_and_keep_their_arc_until_a_challenge_key_changes() {
    let keys = Keys::new(DEFAULT_PREFIX).unwrap();
    let mut b = SnapshotBuilder::new(
        keys.clone(),
        Some(Arc::new(Config::from_toml_str(EXAMPLE).unwrap())),
    );
    b.reset(
        vec![
            kv(keys.acme_challenge("*.gslb.example"), challenge("w"), 5),
            kv(keys.acme_challenge("gslb.example"), challenge("a"), 6),
            kv(keys.acme_challenge("meet.gslb.example"), challenge("m"), 7),
            kv(keys.acme_lock(), b"{}".to_vec(), 8),
        ],
        8,
    );
    let s1 = b.build(0).unwrap();
    assert_eq!(
        s1.acme_challenges_revision, 7,
        "the newest challenge's revision, not the listing's"
    );
    assert_eq!(s1.acme_challenges["_acme-challenge.gslb.example"], ["a", "w"]);
    assert_eq!(s1.acme_challenges["_acme-challenge.meet.gslb.example"], ["m"]);
    assert!(
        s1.problems.is_empty(),
        "the lock is not a problem: {:?}",
        s1.problems
    );

    // An unrelated change: same challenges, same Arc.
    let status = AcmeStatusDoc {
        schema: 1,
        last_attempt_ms: 1,
        last_success_ms: None,
        last_error: Some("refused".into()),
        failures: 1,
        next_attempt_ms: 2,
    };
    let relevant = b.apply(
        vec![Event {
            kind: EventKind::Put,
            kv: kv(keys.acme_status("meet.gslb.example"), encode(&status), 9),
        }],
        9,
    );
    assert!(relevant);
    let s2 = b.build(0).unwrap();
    assert!(Arc::ptr_eq(&s1.acme_challenges, &s2.acme_challenges));
    assert_eq!(s2.acme_status, [("meet.gslb.example".to_owned(), status)]);

    // The lock changing does not even rebuild.
    assert!(!b.apply(
        vec![Event {
            kind: EventKind::Delete,
            kv: kv(keys.acme_lock(), Vec::new(), 10),
        }],
        10,
    ));

    // A challenge deleted: a new Arc without it, and a later revision.
    b.apply(
        vec![Event {
            kind: EventKind::Delete,
            kv: kv(keys.acme_challenge("meet.gslb.example"), Vec::new(), 11),
        }],
        11,
    );
    let s3 = b.build(0).unwrap();
    assert!(!Arc::ptr_eq(&s2.acme_challenges, &s3.acme_challenges));
    assert!(
        !s3.acme_challenges
            .contains_key("_acme-challenge.meet.gslb.example")
    );
    assert!(s3.acme_challenges_revision >= 11);
    assert!(s3.acme_challenges_revision > s2.acme_challenges_revision);
}

#[test]
fn without_challenges_their_revision_stays_zero_across_listings() {
    let keys = Keys::new(DEFAULT_PREFIX).unwrap();
    let mut b = SnapshotBuilder::new(
        keys.clone(),
        Some(Arc::new(Config::from_toml_str(EXAMPLE).unwrap())),
    );
    b.reset(Vec::new(), 40);
    assert_eq!(b.build(0).unwrap().acme_challenges_revision, 0);
    // A challenge seen, then gone while the watcher was away: the re-listing's revision.
    b.reset(
        vec![kv(keys.acme_challenge("gslb.example"), challenge("a"), 41)],
        42,
    );
    assert_eq!(b.build(0).unwrap().acme_challenges_revision, 41);
    b.reset(Vec::new(), 50);
    let s = b.build(0).unwrap();
    assert_eq!(s.acme_challenges_revision, 50);
    assert!(s.acme_challenges.is_empty());
}
