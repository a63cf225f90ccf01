//! DNSSEC through the one entry point, `respond`, on the reference deployment signed with generated keys:
//! signatures on every kind of answer (verified), compact denial for NXDOMAIN and NODATA, the signed fast
//! path byte for byte the general path, nothing DNSSEC-specific for clients that did not ask, the UDP size
//! limit kept, and mutated DNSSEC-related queries answered without a panic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use hickory_proto::dnssec::Verifier;
use hickory_proto::dnssec::rdata::{DNSSECRData, RRSIG};
use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use meridian_config::{Config, DnssecSettings, DomainName, KeyFiles};
use meridian_dns::dnssec::{KeyAlgorithm, KeyRole, NXNAME, TestHook, ZoneKeys, keygen};
use meridian_dns::{FixedState, Transport, ZoneIndex, respond, respond_general};
use meridian_geoip::GeoDb;
use proptest::prelude::*;

const EXAMPLE: &str = include_str!("../../examples/meridian.toml");
const NOW_MS: u64 = 1_800_000_000_000;

struct Signed {
    state: FixedState,
    keys: Arc<ZoneKeys>,
    _dir: tempfile::TempDir,
}

/// The reference deployment, its zone signed with a KSK and a ZSK of `alg`.
fn signed(alg: KeyAlgorithm) -> Signed {
    signed_with(alg, 0)
}

/// [`signed`], with `published` more ZSKs in the DNSKEY set.
fn signed_with(alg: KeyAlgorithm, published: usize) -> Signed {
    let config = Arc::new(Config::from_toml_str(EXAMPLE).unwrap());
    let mut state = FixedState::new(config, GeoDb::bundled().unwrap(), NOW_MS).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let apex = Name::from_ascii("gslb.example.").unwrap();
    let ksk = keygen(dir.path(), &apex, alg, KeyRole::Ksk).unwrap();
    let zsk = keygen(dir.path(), &apex, alg, KeyRole::Zsk).unwrap();
    let settings = DnssecSettings {
        keys: vec![KeyFiles { base: ksk }, KeyFiles { base: zsk }],
        publish: (0..published)
            .map(|_| KeyFiles {
                base: keygen(dir.path(), &apex, alg, KeyRole::Zsk).unwrap(),
            })
            .collect(),
        signature_validity_days: 14,
    };
    let keys = Arc::new(ZoneKeys::load(&DomainName::parse("gslb.example").unwrap(), &settings).unwrap());
    state.zones = ZoneIndex::with_keys(
        &state.snapshot.topology,
        1,
        std::slice::from_ref(&keys),
        TestHook::None,
    );
    Signed {
        state,
        keys,
        _dir: dir,
    }
}

fn fixture() -> &'static Signed {
    static F: OnceLock<Signed> = OnceLock::new();
    F.get_or_init(|| signed(KeyAlgorithm::EcdsaP256))
}

fn query(name: &str, qtype: RecordType, dnssec_ok: bool, ecs: Option<&str>) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = 4321;
    m.add_query(Query::query(Name::from_str(name).unwrap(), qtype));
    let mut e = Edns::new();
    e.set_max_payload(1232);
    e.set_dnssec_ok(dnssec_ok);
    if let Some(net) = ecs {
        e.options_mut()
            .insert(EdnsOption::Subnet(ClientSubnet::from_str(net).unwrap()));
    }
    m.set_edns(e);
    m.to_vec().unwrap()
}

fn ask(f: &Signed, request: &[u8], transport: Transport) -> Message {
    let ctx = f.state.context(NOW_MS);
    let mut out = Vec::new();
    respond(
        &ctx,
        request,
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)),
        transport,
        &mut out,
    );
    Message::from_vec(&out).unwrap()
}

fn rrsigs(records: &[Record]) -> Vec<&RRSIG> {
    records
        .iter()
        .filter_map(|r| match &r.data {
            RData::DNSSEC(DNSSECRData::RRSIG(s)) => Some(s),
            _ => None,
        })
        .collect()
}

/// Every RRset of `section` (other than RRSIGs) has a signature that verifies with the zone's key it names.
fn assert_signed(keys: &ZoneKeys, section: &[Record]) {
    let mut sets: Vec<(Name, RecordType)> = section
        .iter()
        .filter(|r| r.record_type() != RecordType::RRSIG)
        .map(|r| (r.name.clone(), r.record_type()))
        .collect();
    sets.dedup();
    assert!(!sets.is_empty());
    for (name, rtype) in sets {
        let set: Vec<Record> = section
            .iter()
            .filter(|r| r.record_type() == rtype && r.name == name)
            .cloned()
            .collect();
        let sig = section
            .iter()
            .filter(|r| r.name == name)
            .filter_map(|r| match &r.data {
                RData::DNSSEC(DNSSECRData::RRSIG(s)) => Some(s),
                _ => None,
            })
            .find(|s| s.input().type_covered == rtype)
            .unwrap_or_else(|| panic!("no RRSIG over {name} {rtype}"));
        let key = keys.keys.iter().find(|k| k.tag == sig.input().key_tag).unwrap();
        key.dnskey
            .verify_rrsig(&name, DNSClass::IN, sig, set.iter())
            .unwrap_or_else(|e| panic!("{name} {rtype}: {e}"));
    }
}

fn nsec_types(section: &[Record], owner: &str) -> Vec<RecordType> {
    let nsec = section
        .iter()
        .find_map(|r| match &r.data {
            RData::DNSSEC(DNSSECRData::NSEC(n)) => Some((r, n)),
            _ => None,
        })
        .expect("an NSEC record");
    assert_eq!(nsec.0.name, Name::from_str(owner).unwrap());
    assert_eq!(
        nsec.1.next_domain_name().to_ascii().to_lowercase(),
        format!("\\000.{}", owner.to_lowercase())
    );
    nsec.1.type_bit_maps().collect()
}

#[test]
fn steered_answers_are_signed_for_every_client_and_both_algorithms() {
    for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Ed25519] {
        let f = signed(alg);
        for (qtype, ecs) in [
            (RecordType::A, "192.0.2.0/24"),
            (RecordType::A, "203.0.113.0/24"),
            (RecordType::A, "2a01:4f8::/32"),
            (RecordType::AAAA, "81.2.69.0/24"),
        ] {
            let resp = ask(
                &f,
                &query("Meet.gslb.example.", qtype, true, Some(ecs)),
                Transport::Udp,
            );
            assert_eq!(resp.metadata.response_code, ResponseCode::NoError);
            assert!(resp.answers.iter().any(|r| r.record_type() == qtype), "{resp:?}");
            assert_signed(&f.keys, &resp.answers);
            assert!(resp.edns.as_ref().unwrap().flags().dnssec_ok, "DO echoed");
        }
    }
}

#[test]
fn static_records_soa_ns_and_dnskey_are_signed() {
    let f = fixture();
    for (name, qtype) in [
        ("gslb.example.", RecordType::SOA),
        ("gslb.example.", RecordType::NS),
        ("gslb.example.", RecordType::MX),
        ("gslb.example.", RecordType::TXT),
        ("gslb.example.", RecordType::CAA),
        ("gslb.example.", RecordType::DNSKEY),
        ("www.gslb.example.", RecordType::A),
        ("_sip._tcp.meet.gslb.example.", RecordType::SRV),
    ] {
        let resp = ask(f, &query(name, qtype, true, None), Transport::Udp);
        assert_eq!(
            resp.metadata.response_code,
            ResponseCode::NoError,
            "{name} {qtype}"
        );
        assert_signed(&f.keys, &resp.answers);
        if qtype == RecordType::NS {
            assert_signed(&f.keys, &resp.additionals);
        }
    }
    // The DNSKEY set is signed by the KSK, everything else by the ZSK.
    let ksk = f.keys.keys.iter().find(|k| k.sep).unwrap().tag;
    let resp = ask(
        f,
        &query("gslb.example.", RecordType::DNSKEY, true, None),
        Transport::Udp,
    );
    assert_eq!(
        resp.answers
            .iter()
            .filter(|r| r.record_type() == RecordType::DNSKEY)
            .count(),
        2
    );
    assert!(rrsigs(&resp.answers).iter().all(|s| s.input().key_tag == ksk));
    let resp = ask(
        f,
        &query("gslb.example.", RecordType::SOA, true, None),
        Transport::Udp,
    );
    assert!(rrsigs(&resp.answers).iter().all(|s| s.input().key_tag != ksk));
}

/// ACME's DNS-01 challenge records (issue 25) join a signed zone's static data and are signed like it:
/// the zones are built with their keys first and the challenges added after (`DnsState::zones_for`).
#[test]
fn acme_challenge_records_are_signed_in_a_signed_zone() {
    let mut f = signed(KeyAlgorithm::EcdsaP256);
    let challenges: std::collections::BTreeMap<String, Vec<String>> = [(
        "_acme-challenge.meet.gslb.example".to_owned(),
        vec!["token-one".to_owned(), "token-two".to_owned()],
    )]
    .into();
    f.state.zones = ZoneIndex::with_keys(
        &f.state.snapshot.topology,
        2,
        std::slice::from_ref(&f.keys),
        TestHook::None,
    )
    .with_acme_challenges(&challenges);
    let resp = ask(
        &f,
        &query("_acme-challenge.meet.gslb.example.", RecordType::TXT, true, None),
        Transport::Udp,
    );
    assert_eq!(resp.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        resp.answers
            .iter()
            .filter(|r| r.record_type() == RecordType::TXT)
            .count(),
        2
    );
    assert_signed(&f.keys, &resp.answers);
}

#[test]
fn nxdomain_is_a_compact_denial() {
    let f = fixture();
    let resp = ask(
        f,
        &query("NoSuch.gslb.example.", RecordType::A, true, None),
        Transport::Udp,
    );
    assert_eq!(resp.metadata.response_code, ResponseCode::NoError);
    assert!(resp.answers.is_empty());
    let types = nsec_types(&resp.authorities, "NoSuch.gslb.example.");
    assert_eq!(types, vec![RecordType::RRSIG, RecordType::NSEC, NXNAME]);
    assert_signed(&f.keys, &resp.authorities);
    // Without DO: the plain NXDOMAIN.
    let resp = ask(
        f,
        &query("nosuch.gslb.example.", RecordType::A, false, None),
        Transport::Udp,
    );
    assert_eq!(resp.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn nodata_lists_the_types_that_exist_but_not_the_one_asked() {
    let f = fixture();
    let resp = ask(
        f,
        &query("meet.gslb.example.", RecordType::TXT, true, None),
        Transport::Udp,
    );
    assert_eq!(resp.metadata.response_code, ResponseCode::NoError);
    let types = nsec_types(&resp.authorities, "meet.gslb.example.");
    assert!(
        types.contains(&RecordType::A) && types.contains(&RecordType::AAAA),
        "{types:?}"
    );
    assert!(!types.contains(&RecordType::TXT) && !types.contains(&NXNAME));
    assert_signed(&f.keys, &resp.authorities);
    let resp = ask(
        f,
        &query("gslb.example.", RecordType::A, true, None),
        Transport::Udp,
    );
    let types = nsec_types(&resp.authorities, "gslb.example.");
    for t in [
        RecordType::SOA,
        RecordType::NS,
        RecordType::DNSKEY,
        RecordType::MX,
    ] {
        assert!(types.contains(&t), "{t} missing from {types:?}");
    }
    assert!(!types.contains(&RecordType::A));
    // A DS query at the apex is the parent's business: NODATA here, denying DS.
    let resp = ask(
        f,
        &query("gslb.example.", RecordType::DS, true, None),
        Transport::Udp,
    );
    assert!(!nsec_types(&resp.authorities, "gslb.example.").contains(&RecordType::DS));
    // An empty non-terminal.
    let resp = ask(
        f,
        &query("_tcp.meet.gslb.example.", RecordType::A, true, None),
        Transport::Udp,
    );
    assert_eq!(
        nsec_types(&resp.authorities, "_tcp.meet.gslb.example."),
        vec![RecordType::RRSIG, RecordType::NSEC]
    );
}

#[test]
fn a_query_for_nsec_gets_the_compact_nsec_as_its_answer() {
    let f = fixture();
    for name in ["meet.gslb.example.", "nosuch.gslb.example."] {
        let resp = ask(f, &query(name, RecordType::NSEC, true, None), Transport::Udp);
        assert_eq!(resp.metadata.response_code, ResponseCode::NoError);
        assert!(resp.authorities.is_empty(), "{name}: {resp:?}");
        nsec_types(&resp.answers, name);
        assert_signed(&f.keys, &resp.answers);
    }
}

#[test]
fn clients_without_do_get_no_dnssec_records() {
    let f = fixture();
    for (name, qtype) in [
        ("meet.gslb.example.", RecordType::A),
        ("gslb.example.", RecordType::SOA),
        ("nosuch.gslb.example.", RecordType::A),
        ("meet.gslb.example.", RecordType::TXT),
    ] {
        let resp = ask(f, &query(name, qtype, false, None), Transport::Udp);
        let all = resp
            .answers
            .iter()
            .chain(&resp.authorities)
            .chain(&resp.additionals);
        assert!(
            all.clone().all(|r| !matches!(r.data, RData::DNSSEC(_))),
            "{name} {qtype}"
        );
        assert!(!resp.edns.as_ref().unwrap().flags().dnssec_ok);
    }
}

#[test]
fn signed_fast_path_answers_and_matches_the_general_path() {
    let f = fixture();
    let ctx = f.state.context(NOW_MS);
    let src = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
    for ecs in ["192.0.2.0/24", "81.2.69.0/24", "2a01:4f8::/32", "0.0.0.0/0"] {
        for qtype in [RecordType::A, RecordType::AAAA] {
            let request = query("mEEt.gslb.example.", qtype, true, Some(ecs));
            let mut out = Vec::new();
            let info = respond(&ctx, &request, src, Transport::Udp, &mut out);
            let (general, _) = respond_general(&ctx, &request, src, Transport::Udp);
            assert!(info.fast, "the signed fast path declined {ecs} {qtype}");
            assert_eq!(out, general.unwrap(), "{ecs} {qtype}");
        }
    }
}

#[test]
fn signed_answers_that_do_not_fit_are_truncated() {
    // A DNSKEY set of six keys with its signature is larger than 512 octets.
    let f = &signed_with(KeyAlgorithm::EcdsaP256, 4);
    let ctx = f.state.context(NOW_MS);
    let src = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
    let with_payload = |name: &str, qtype, payload| {
        let mut m = Message::from_vec(&query(name, qtype, true, None)).unwrap();
        m.edns.as_mut().unwrap().set_max_payload(payload);
        m.to_vec().unwrap()
    };
    let request = with_payload("gslb.example.", RecordType::DNSKEY, 512);
    let mut out = Vec::new();
    respond(&ctx, &request, src, Transport::Tcp, &mut out);
    assert!(
        out.len() > 512,
        "the test needs a larger answer: {} octets",
        out.len()
    );
    respond(&ctx, &request, src, Transport::Udp, &mut out);
    assert!(out.len() <= 512);
    let resp = Message::from_vec(&out).unwrap();
    assert!(resp.metadata.truncation && resp.answers.is_empty());
    // With room for it, the same answer is sent whole over UDP.
    respond(
        &ctx,
        &with_payload("gslb.example.", RecordType::DNSKEY, 1232),
        src,
        Transport::Udp,
        &mut out,
    );
    let resp = Message::from_vec(&out).unwrap();
    assert!(!resp.metadata.truncation);
    assert_signed(&f.keys, &resp.answers);
}

/// A DNSSEC-flavoured query, mutated at the wire level: DO and CD bits, any EDNS payload, DNSSEC qtypes.
fn mutated() -> impl Strategy<Value = (Vec<u8>, bool, u16)> {
    let names = prop::sample::select(vec![
        "meet.gslb.example.",
        "gslb.example.",
        "nothere.gslb.example.",
        "_tcp.meet.gslb.example.",
        "www.gslb.example.",
        "a.b.c.nothere.gslb.example.",
        "example.org.",
    ]);
    let qtypes = prop::sample::select(vec![
        RecordType::DNSKEY,
        RecordType::NSEC,
        RecordType::RRSIG,
        RecordType::DS,
        RecordType::NSEC3PARAM,
        RecordType::A,
        RecordType::AAAA,
        RecordType::ANY,
        RecordType::SOA,
        RecordType::NS,
        RecordType::TXT,
    ]);
    (
        names,
        qtypes,
        any::<bool>(),
        any::<bool>(),
        any::<u16>(),
        prop::option::of(prop::sample::select(vec![
            "192.0.2.0/24",
            "2a01:4f8::/32",
            "0.0.0.0/0",
        ])),
        any::<u8>(),
        prop::option::weighted(0.1, (any::<usize>(), any::<u8>())),
    )
        .prop_map(|(name, qtype, dnssec_ok, cd, payload, ecs, z, flip)| {
            let mut q = query(name, qtype, dnssec_ok, ecs);
            if cd {
                q[3] |= 0x10;
            }
            // The OPT record's class (payload) and the rest of its flags, right after the question.
            let qlen = 12 + name.len() + 1 + 4;
            q[qlen + 3..qlen + 5].copy_from_slice(&payload.to_be_bytes());
            q[qlen + 8] = z;
            if let Some((at, bits)) = flip {
                let i = at % q.len();
                q[i] ^= bits;
            }
            (q, dnssec_ok && flip.is_none(), payload)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn mutated_dnssec_queries_never_panic_nor_leak((request, dnssec_ok, payload) in mutated(), tcp in any::<bool>()) {
        let f = fixture();
        let ctx = f.state.context(NOW_MS);
        let transport = if tcp { Transport::Tcp } else { Transport::Udp };
        let mut out = Vec::new();
        respond(&ctx, &request, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 99)), transport, &mut out);
        if !tcp {
            let limit = usize::from(payload.clamp(512, 1232));
            prop_assert!(out.len() <= limit, "{} octets over a limit of {}", out.len(), limit);
        }
        if let Ok(resp) = Message::from_vec(&out) {
            let asked = Message::from_vec(&request).ok();
            let do_bit = asked.as_ref().and_then(|m| m.edns.as_ref()).is_some_and(|e| e.flags().dnssec_ok);
            let qtype = asked.as_ref().and_then(|m| m.queries.first()).map(Query::query_type);
            if !do_bit {
                // Without DO, DNSSEC records only when asked for by type (DNSKEY at the apex).
                for r in resp.answers.iter().chain(&resp.authorities).chain(&resp.additionals) {
                    if matches!(r.data, RData::DNSSEC(_)) {
                        prop_assert_eq!(Some(r.record_type()), qtype);
                    }
                }
            }
            if dnssec_ok && resp.metadata.response_code == ResponseCode::NoError && !resp.metadata.truncation
                && resp.metadata.authoritative
            {
                for section in [&resp.answers, &resp.authorities] {
                    if !section.is_empty() {
                        assert_signed(&f.keys, section);
                    }
                }
            }
        }
    }
}
