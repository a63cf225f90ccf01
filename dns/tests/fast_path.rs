//! The fast path against the general path: for every request the fast path answers, its response must be
//! the general path's, byte for byte (a differential test in the tikv manner: the general path, built on
//! hickory's message model, is the reference). Also: the fast path must actually take the common shape,
//! or it would pass the comparison by answering nothing.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, OnceLock};

use meridian_config::Config;
use meridian_dns::{FixedState, Transport, answer, respond};
use meridian_geoip::GeoDb;
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
        let (general, general_info) = answer(&ctx, &request, src, transport);
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
