//! The fast path against the general path: for every request the fast path answers, its response must be
//! the general path's, byte for byte (a differential test in the tikv manner: the general path, built on
//! hickory's message model, is the reference). Also: the fast path must actually take the common shape,
//! or it would pass the comparison by answering nothing.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, OnceLock};

use meridian_config::Config;
use meridian_dns::{FixedState, Transport, respond, respond_general};
use meridian_geoip::GeoDb;
use meridian_store::Snapshot;
use proptest::prelude::*;

const EXAMPLE: &str = include_str!("../../examples/meridian.toml");

const NOW_MS: u64 = 1_800_000_000_000;

fn fixture() -> &'static FixedState {
    static F: OnceLock<FixedState> = OnceLock::new();
    F.get_or_init(|| {
        let config = Arc::new(Config::from_toml_str(EXAMPLE).unwrap());
        FixedState::new(config, GeoDb::bundled().unwrap(), NOW_MS).unwrap()
    })
}

/// A query in wire form, built by hand so that every field can vary.
#[derive(Debug, Clone)]
struct Q {
    id: u16,
    rd: bool,
    name: Vec<u8>,
    qtype: u16,
    qclass: u16,
    edns: Option<(u16, u8, u8)>,         // payload, version, ext-rcode
    ecs: Option<(u16, u8, u8, Vec<u8>)>, // family, source, scope, address octets
    extra_option: bool,
    trailing: Vec<u8>,
}

fn wire(q: &Q) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&q.id.to_be_bytes());
    m.push(if q.rd { 0x01 } else { 0x00 });
    m.push(0);
    m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(q.edns.is_some())]);
    m.extend_from_slice(&q.name);
    m.extend_from_slice(&q.qtype.to_be_bytes());
    m.extend_from_slice(&q.qclass.to_be_bytes());
    if let Some((payload, version, ext)) = q.edns {
        let mut opts = Vec::new();
        if let Some((family, source, scope, addr)) = &q.ecs {
            opts.extend_from_slice(&8u16.to_be_bytes());
            opts.extend_from_slice(&(4 + addr.len() as u16).to_be_bytes());
            opts.extend_from_slice(&family.to_be_bytes());
            opts.push(*source);
            opts.push(*scope);
            opts.extend_from_slice(addr);
        }
        if q.extra_option {
            // A DNS cookie (RFC 7873): the fast path leaves it to the general path.
            opts.extend_from_slice(&[0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
        }
        m.push(0);
        m.extend_from_slice(&41u16.to_be_bytes());
        m.extend_from_slice(&payload.to_be_bytes());
        m.extend_from_slice(&[ext, version, 0x80, 0]);
        m.extend_from_slice(&(opts.len() as u16).to_be_bytes());
        m.extend_from_slice(&opts);
    }
    m.extend_from_slice(&q.trailing);
    m
}

fn encode_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

fn name_strategy() -> impl Strategy<Value = Vec<u8>> {
    let names = prop::sample::select(vec![
        "meet.gslb.example",
        "api.gslb.example",
        "files.gslb.example",
        "www.gslb.example",
        "gslb.example",
        "nothere.gslb.example",
        "meet.example.org",
    ]);
    (names, any::<u64>()).prop_map(|(n, case_bits)| {
        // Random letter case: the answer must preserve it.
        let cased: String = n
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if case_bits >> (i % 64) & 1 == 1 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect();
        encode_name(&cased)
    })
}

/// Mostly well-formed ECS; sometimes wrong lengths, families or stray bits.
fn ecs_strategy() -> impl Strategy<Value = (u16, u8, u8, Vec<u8>)> {
    let v4 = (0u8..=32, any::<[u8; 4]>()).prop_map(|(p, a)| {
        let bits = u32::from_be_bytes(a) & (u32::MAX.checked_shl(32 - u32::from(p)).unwrap_or(0));
        (
            1u16,
            p,
            0u8,
            bits.to_be_bytes()[..usize::from(p).div_ceil(8)].to_vec(),
        )
    });
    let v6 = (0u8..=128, any::<[u8; 16]>()).prop_map(|(p, a)| {
        let bits = u128::from_be_bytes(a) & (u128::MAX.checked_shl(128 - u32::from(p)).unwrap_or(0));
        (
            2u16,
            p,
            0u8,
            bits.to_be_bytes()[..usize::from(p).div_ceil(8)].to_vec(),
        )
    });
    let odd = (
        0u16..4,
        any::<u8>(),
        any::<u8>(),
        prop::collection::vec(any::<u8>(), 0..18),
    );
    prop_oneof![6 => v4, 3 => v6, 1 => odd]
}

fn query_strategy() -> impl Strategy<Value = Q> {
    (
        any::<u16>(),
        any::<bool>(),
        name_strategy(),
        prop::sample::select(vec![1u16, 28, 1, 28, 255, 15, 6, 5]),
        prop_oneof![20 => Just(1u16), 1 => Just(3u16)],
        prop::option::weighted(
            0.85,
            (
                prop_oneof![Just(1232u16), Just(4096), Just(512), 0u16..2000],
                prop_oneof![9 => Just(0u8), 1 => Just(1u8)],
                prop_oneof![9 => Just(0u8), 1 => Just(1u8)],
            ),
        ),
        prop::option::weighted(0.8, ecs_strategy()),
        prop::bool::weighted(0.05),
        prop_oneof![30 => Just(Vec::new()), 1 => prop::collection::vec(any::<u8>(), 1..4)],
    )
        .prop_map(
            |(id, rd, name, qtype, qclass, edns, ecs, extra_option, trailing)| Q {
                id,
                rd,
                name,
                qtype,
                qclass,
                ecs: edns.and(ecs),
                edns,
                extra_option,
                trailing,
            },
        )
}

fn source_strategy() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
        any::<u128>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn fast_path_matches_general_path(q in query_strategy(), src in source_strategy(), tcp in any::<bool>()) {
        let f = fixture();
        let ctx = f.context(NOW_MS);
        let transport = if tcp { Transport::Tcp } else { Transport::Udp };
        let request = wire(&q);
        let mut out = Vec::new();
        let info = respond(&ctx, &request, src, transport, &mut out);
        let (general, general_info) = respond_general(&ctx, &request, src, transport);
        prop_assert_eq!(&out, &general.unwrap_or_default(), "responses differ for {:?}", q);
        if info.fast {
            prop_assert_eq!(info.rcode, general_info.rcode);
            prop_assert_eq!(info.service, general_info.service);
            prop_assert_eq!(info.region, general_info.region);
        }
    }
}

#[test]
fn the_fast_path_takes_the_common_shapes() {
    let f = fixture();
    let ctx = f.context(NOW_MS);
    let src: IpAddr = "192.0.2.53".parse().unwrap();
    let base = Q {
        id: 7,
        rd: true,
        name: encode_name("Meet.GSLB.example"),
        qtype: 1,
        qclass: 1,
        edns: Some((1232, 0, 0)),
        ecs: Some((1, 24, 0, vec![83, 0, 0])),
        extra_option: false,
        trailing: vec![],
    };
    let shapes = [
        ("A with ECS", base.clone()),
        (
            "AAAA with ECS",
            Q {
                qtype: 28,
                ..base.clone()
            },
        ),
        (
            "A with EDNS, no ECS",
            Q {
                ecs: None,
                ..base.clone()
            },
        ),
        (
            "A, no EDNS",
            Q {
                edns: None,
                ecs: None,
                ..base.clone()
            },
        ),
        (
            "IPv6 ECS /56",
            Q {
                ecs: Some((2, 56, 0, vec![0x2a, 0x01, 0x4f, 0x8, 0, 0, 0])),
                ..base.clone()
            },
        ),
        (
            "ECS source /0",
            Q {
                ecs: Some((1, 0, 0, vec![])),
                ..base.clone()
            },
        ),
    ];
    for (what, q) in shapes {
        let mut out = Vec::new();
        let info = respond(&ctx, &wire(&q), src, Transport::Udp, &mut out);
        assert!(info.fast, "{what}: the fast path declined");
        assert_eq!(out[3] & 0x0f, 0, "{what}: NOERROR");
    }
    // And what it must leave alone.
    let declined = [
        (
            "static name",
            Q {
                name: encode_name("gslb.example"),
                qtype: 6,
                ..base.clone()
            },
        ),
        (
            "ANY",
            Q {
                qtype: 255,
                ..base.clone()
            },
        ),
        (
            "cookie option",
            Q {
                extra_option: true,
                ..base.clone()
            },
        ),
        (
            "EDNS version 1",
            Q {
                edns: Some((1232, 1, 0)),
                ..base.clone()
            },
        ),
        (
            "bits past the ECS prefix",
            Q {
                ecs: Some((1, 20, 0, vec![83, 0, 0x0f])),
                ..base.clone()
            },
        ),
        (
            "trailing octet",
            Q {
                trailing: vec![0],
                ..base.clone()
            },
        ),
    ];
    for (what, q) in declined {
        let mut out = Vec::new();
        let info = respond(&ctx, &wire(&q), src, Transport::Udp, &mut out);
        assert!(!info.fast, "{what}: the fast path should have declined");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    /// The request path on hostile input (the stable-toolchain companion of the libFuzzer target in
    /// dns/fuzz): random bytes, and well-formed queries with bytes flipped, truncated or appended. Never a
    /// panic; anything sent is a response to the request (its id, QR set) and fits UDP.
    #[test]
    fn hostile_requests_never_panic(
        q in query_strategy(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in prop::option::of(any::<prop::sample::Index>()),
        noise in prop::collection::vec(any::<u8>(), 0..64),
        random_only in prop::bool::weighted(0.3),
    ) {
        let f = fixture();
        let ctx = f.context(NOW_MS);
        let mut request = if random_only { noise } else { wire(&q) };
        if !request.is_empty() {
            for (at, byte) in &flips {
                let i = at.index(request.len());
                request[i] ^= byte;
            }
            if let Some(at) = cut {
                request.truncate(at.index(request.len() + 1));
            }
        }
        let mut out = Vec::new();
        respond(&ctx, &request, "83.0.0.1".parse().unwrap(), Transport::Udp, &mut out);
        if !out.is_empty() {
            prop_assert!(out.len() >= 12 && out.len() <= 1232);
            prop_assert_eq!(&out[..2], &request[..2]);
            prop_assert_eq!(out[2] & 0x80, 0x80);
        }
    }
}

/// Worlds the memo is tested across: the example's snapshot as built, and copies with regions down,
/// drained, and under drills that end at different times (so answers change while time passes).
mod memo {
    use super::*;
    use meridian_dns::{Context, DecisionMemo, respond_with_memo};
    use meridian_steer::{Drill, DrillMode, Health, RegionStates};

    fn variant(base: &Snapshot, change: impl Fn(&str, &mut meridian_steer::RegionState)) -> Arc<Snapshot> {
        let mut snap = base.clone();
        let topology = snap.topology.clone();
        let mut states = snap.states.as_slice().to_vec();
        for (i, s) in states.iter_mut().enumerate() {
            change(topology.config().regions()[i].id.as_str(), s);
        }
        snap.states = RegionStates::from_vec(states);
        Arc::new(snap)
    }

    fn drill(mode: DrillMode, ends_after_ms: u64) -> Drill {
        Drill {
            id: format!("d{ends_after_ms}"),
            mode,
            expires_at_ms: NOW_MS + ends_after_ms,
        }
    }

    pub(super) fn snapshots() -> &'static [Arc<Snapshot>] {
        static S: OnceLock<Vec<Arc<Snapshot>>> = OnceLock::new();
        S.get_or_init(build_snapshots)
    }

    fn build_snapshots() -> Vec<Arc<Snapshot>> {
        let base = &fixture().snapshot;
        vec![
            base.clone(),
            variant(base, |id, s| {
                if id == "waw" || id == "vin" {
                    s.health = Health::Down;
                }
            }),
            variant(base, |id, s| match id {
                "waw" => s.drills.push(drill(DrillMode::Down, 1_000)),
                "fra" => s.drills.push(drill(DrillMode::Drain, 2_000)),
                "hil" => s.drills.push(drill(DrillMode::Down, 500)),
                _ => {}
            }),
            variant(base, |id, s| {
                if matches!(id, "waw" | "fra" | "lon" | "sbg" | "gra") {
                    s.health = Health::Down;
                }
                if id == "bhs" {
                    s.drained = true;
                }
            }),
            variant(base, |id, s| {
                if id == "fra" {
                    s.in_flight = Some(s.capacity);
                    s.drills.push(drill(DrillMode::Capacity { percent: 50 }, 1_500));
                }
            }),
        ]
    }

    /// A second database that places addresses differently from the bundled one (its location ids mean
    /// other places), to catch a memo that outlives its database.
    pub(super) fn other_db() -> &'static GeoDb {
        static DB: OnceLock<GeoDb> = OnceLock::new();
        DB.get_or_init(build_other_db)
    }

    fn build_other_db() -> GeoDb {
        #[derive(serde::Serialize)]
        struct Cc {
            country_code: &'static str,
        }
        let mut w = mmdb_writer::Writer::new("dbip-country");
        for (i, cc) in ["US", "JP", "BR", "PL", "DE", "GB", "CA", "FR"]
            .iter()
            .enumerate()
        {
            let net = format!("{}.0.0.0/5", i * 8 + 64);
            w.insert(net.parse::<ipnet::IpNet>().unwrap(), &Cc { country_code: cc })
                .unwrap();
        }
        GeoDb::from_vec(w.to_bytes().unwrap(), "test").unwrap()
    }

    /// One batch: every request answered with and without the memo, compared byte for byte.
    pub(super) fn batch(
        memo: &mut DecisionMemo,
        snapshot: &Arc<Snapshot>,
        geo: &GeoDb,
        now_ms: u64,
        requests: &[(Vec<u8>, IpAddr)],
    ) -> Result<(), String> {
        let f = fixture();
        let ctx = Context {
            snapshot,
            zones: &f.zones,
            geo,
            now_ms,
        };
        memo.prepare(snapshot, geo, now_ms);
        for (request, src) in requests {
            let mut with = Vec::new();
            let mut without = Vec::new();
            respond_with_memo(&ctx, memo, request, *src, Transport::Udp, &mut with);
            respond(&ctx, request, *src, Transport::Udp, &mut without);
            if with != without {
                return Err(format!("at +{} ms from {src}: {request:02x?}", now_ms - NOW_MS));
            }
        }
        Ok(())
    }

    pub(super) fn a_query(name: &str, qtype: u16, ecs: [u8; 3]) -> Vec<u8> {
        wire(&Q {
            id: 1,
            rd: false,
            name: encode_name(name),
            qtype,
            qclass: 1,
            edns: Some((1232, 0, 0)),
            ecs: Some((1, 24, 0, ecs.to_vec())),
            extra_option: false,
            trailing: vec![],
        })
    }
}

/// The memo across drills ending, snapshots and databases changing: the same answers as deciding every
/// time, and it is used (or the comparison would prove nothing).
#[test]
fn memo_changes_no_answer_across_time_snapshots_and_databases() {
    let snapshots = memo::snapshots();
    let bundled = &fixture().geo;
    let other = memo::other_db();
    let mut m = meridian_dns::DecisionMemo::new();
    let src: IpAddr = "192.0.2.53".parse().unwrap();
    // Polish, German, British, American, Brazilian, Japanese clients, repeated (the memo's hits).
    let clients = [
        [83, 0, 0],
        [91, 0, 0],
        [81, 2, 69],
        [24, 48, 0],
        [8, 8, 8],
        [177, 0, 0],
        [126, 0, 0],
    ];
    let mut requests = Vec::new();
    for name in ["meet.gslb.example", "api.gslb.example", "files.gslb.example"] {
        for qtype in [1, 28] {
            for c in clients {
                requests.push((memo::a_query(name, qtype, c), src));
            }
        }
    }
    let requests: Vec<_> = requests.iter().chain(requests.iter()).cloned().collect();
    // Drill-laden snapshot: before and after each drill ends, and back in time (a clock step).
    let mut hits = 0;
    for (snapshot, geo, at) in [
        (2, bundled, 0),
        (2, bundled, 499),
        (2, bundled, 500),
        (2, bundled, 999),
        (2, bundled, 1_000),
        (2, bundled, 2_500),
        (2, bundled, 100),
        (0, bundled, 100),
        (1, bundled, 100),
        (1, other, 100),
        (3, other, 100),
        (3, bundled, 100),
        (4, bundled, 1_000),
        (4, bundled, 1_600),
    ] {
        memo::batch(&mut m, &snapshots[snapshot], geo, NOW_MS + at, &requests).unwrap();
        assert!(
            m.hits() > hits,
            "snapshot {snapshot} at +{at} ms: the memo was not used"
        );
        hits = m.hits();
    }
    // The drill on waw ends at +1000: a Polish client of meet is sent to waw only from then on.
    let mut waw_first = |at: u64| {
        let f = fixture();
        let ctx = meridian_dns::Context {
            snapshot: &snapshots[2],
            zones: &f.zones,
            geo: bundled,
            now_ms: NOW_MS + at,
        };
        m.prepare(&snapshots[2], bundled, NOW_MS + at);
        let mut out = Vec::new();
        let info = meridian_dns::respond_with_memo(
            &ctx,
            &mut m,
            &memo::a_query("meet.gslb.example", 1, [83, 0, 0]),
            src,
            Transport::Udp,
            &mut out,
        );
        info.region.map(|r| snapshots[2].topology.region_id(r).to_owned())
    };
    assert_ne!(waw_first(999).as_deref(), Some("waw"));
    assert_eq!(waw_first(1_000).as_deref(), Some("waw"));
}

/// The common query, answered from the memo into a buffer the server reuses, allocates nothing: the hot
/// path's promise (dns/src/respond.rs), checked rather than believed.
#[test]
fn memoised_fast_answers_do_not_allocate() {
    let f = fixture();
    let ctx = f.context(NOW_MS);
    let src: IpAddr = "192.0.2.53".parse().unwrap();
    let requests: Vec<Vec<u8>> = [[83, 0, 0], [91, 0, 0], [81, 2, 69], [24, 48, 0], [177, 0, 0]]
        .iter()
        .flat_map(|c| [1, 28].map(|qtype| memo::a_query("meet.gslb.example", qtype, *c)))
        .collect();
    let mut m = meridian_dns::DecisionMemo::new();
    m.prepare(&f.snapshot, &f.geo, NOW_MS);
    let mut out = Vec::with_capacity(1232);
    // First pass: the memo learns (and may allocate its tables).
    for request in &requests {
        meridian_dns::respond_with_memo(&ctx, &mut m, request, src, Transport::Udp, &mut out);
    }
    let hits = m.hits();
    let counted = allocation_counter::measure(|| {
        for request in &requests {
            let info = meridian_dns::respond_with_memo(&ctx, &mut m, request, src, Transport::Udp, &mut out);
            assert!(info.fast && !out.is_empty());
        }
    });
    assert_eq!(
        m.hits() - hits,
        requests.len() as u64,
        "every answer came from the memo"
    );
    assert_eq!(
        counted.count_total,
        0,
        "allocations while answering {} queries",
        requests.len()
    );
}

/// The memo forgets by starting a new epoch, numbered in 16 bits: after 65,535 forgets the numbers come
/// round again, and an entry left from 65,535 (or 65,536) epochs ago must not be believed.
#[test]
fn memo_entries_do_not_outlive_their_epoch_when_the_numbers_wrap() {
    let snapshots = memo::snapshots();
    let geo = &fixture().geo;
    let src: IpAddr = "192.0.2.53".parse().unwrap();
    // Polish and American clients: snapshot 1 has waw and vin down, so each answer differs from the
    // base snapshot's (checked below, or the test would prove nothing).
    let mut requests = Vec::new();
    for name in ["meet.gslb.example", "api.gslb.example", "files.gslb.example"] {
        for client in [[83, 0, 0], [24, 48, 0]] {
            requests.push((memo::a_query(name, 1, client), src));
        }
    }
    let answer = |snapshot: &Arc<Snapshot>, request: &[u8]| {
        let f = fixture();
        let ctx = meridian_dns::Context {
            snapshot,
            zones: &f.zones,
            geo,
            now_ms: NOW_MS,
        };
        let mut out = Vec::new();
        respond(&ctx, request, src, Transport::Udp, &mut out);
        out
    };
    // (meet's American clients are not sent to vin, so their answer does not change.)
    requests.remove(1);
    for (request, _) in &requests {
        assert_ne!(answer(&snapshots[0], request), answer(&snapshots[1], request));
    }
    // Clients from elsewhere, asked first in every checking batch: a stale entry names a decision by
    // its position in the epoch's list, and these fill that list with other decisions.
    let mut others = Vec::new();
    for name in ["meet.gslb.example", "api.gslb.example", "files.gslb.example"] {
        for client in [[91, 0, 0], [81, 2, 69], [177, 0, 0], [126, 0, 0]] {
            others.push((memo::a_query(name, 1, client), src));
        }
    }
    let mut m = meridian_dns::DecisionMemo::new();
    memo::batch(&mut m, &snapshots[0], geo, NOW_MS, &requests).unwrap();
    // Two snapshots with the same content: alternating between them forgets every time.
    let twins = [snapshots[1].clone(), Arc::new((*snapshots[1]).clone())];
    // Each entry is asked once, at one of the forget counts around the wrap.
    let first_check = 65_533;
    for forgets in 1..first_check + requests.len() {
        let snapshot = &twins[forgets % 2];
        match forgets.checked_sub(first_check) {
            Some(i) => {
                let batch: Vec<_> = others.iter().chain(&requests[i..=i]).cloned().collect();
                memo::batch(&mut m, snapshot, geo, NOW_MS, &batch)
                    .unwrap_or_else(|e| panic!("after {forgets} forgets: {e}"));
            }
            None => m.prepare(snapshot, geo, NOW_MS),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random sequences of batches (any snapshot, either database, any time, in any order) answer the
    /// same with one memo kept across them all as without it.
    #[test]
    fn memo_changes_no_answer(
        steps in prop::collection::vec(
            (0usize..5, any::<bool>(), 0u64..3_000, prop::collection::vec((query_strategy(), source_strategy()), 1..40)),
            1..10,
        )
    ) {
        let snapshots = memo::snapshots();
        let other = memo::other_db();
        let mut m = meridian_dns::DecisionMemo::new();
        for (snapshot, use_other, at, queries) in steps {
            let geo = if use_other { other } else { &fixture().geo };
            let requests: Vec<(Vec<u8>, IpAddr)> = queries.iter().map(|(q, src)| (wire(q), *src)).collect();
            let doubled: Vec<_> = requests.iter().chain(requests.iter()).cloned().collect();
            let result = memo::batch(&mut m, &snapshots[snapshot], geo, NOW_MS + at, &doubled);
            prop_assert!(result.is_ok(), "{}", result.unwrap_err());
        }
    }
}
