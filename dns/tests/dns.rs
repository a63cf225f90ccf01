//! The DNS server on real sockets: UDP and TCP queries to a running server on loopback, state from an
//! embedded store that the tests change while it runs.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{Name, RData, RecordType};
use meridian_config::Config;
use meridian_dns::rrl::RrlConfig;
use meridian_dns::server::{DnsOptions, DnsServer, DnsState};
use meridian_geoip::GeoDb;
use meridian_store::schema::{DrillDoc, DrillModeDoc, encode};
use meridian_store::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

const EXAMPLE: &str = include_str!("../../examples/meridian.toml");

struct Harness {
    server: DnsServer,
    store: Arc<dyn KvStore>,
    watcher: Arc<SnapshotWatcher>,
    state: Arc<DnsState>,
}

async fn start_with(config: &str) -> Harness {
    let no_rrl = RrlConfig {
        rate: 0,
        ..RrlConfig::default()
    };
    start_full(config, GeoDb::bundled().unwrap(), no_rrl).await
}

async fn start_full(config: &str, geo: GeoDb, rrl: RrlConfig) -> Harness {
    let store: Arc<dyn KvStore> = Arc::new(EmbeddedStore::in_memory());
    let mut opts = WatcherOptions::new(Keys::new(DEFAULT_PREFIX).unwrap());
    opts.bootstrap = Some(Arc::new(Config::from_toml_str(config).unwrap()));
    opts.progress_interval = Duration::from_millis(200);
    let watcher = Arc::new(SnapshotWatcher::spawn(store.clone(), opts));
    let state = DnsState::new(watcher.clone(), geo, rrl);
    let options = DnsOptions {
        udp_workers: 2,
        ..DnsOptions::default()
    };
    let server = DnsServer::bind("127.0.0.1:0".parse().unwrap(), state.clone(), &options)
        .await
        .unwrap();
    let start = Instant::now();
    while watcher.snapshot().is_none() {
        assert!(start.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Harness {
        server,
        store,
        watcher,
        state,
    }
}

async fn start() -> Harness {
    start_with(EXAMPLE).await
}

fn query(name: &str, qtype: RecordType, ecs: Option<(&str, u8)>, edns: bool) -> Message {
    let mut m = Message::new(0x4d52, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if edns || ecs.is_some() {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        if let Some((addr, prefix)) = ecs {
            e.options_mut().insert(EdnsOption::Subnet(ClientSubnet::new(
                addr.parse().unwrap(),
                prefix,
                0,
            )));
        }
        m.set_edns(e);
    }
    m
}

async fn udp_raw(addr: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(bytes, addr).await.unwrap();
    let mut buf = vec![0u8; 65535];
    match tokio::time::timeout(Duration::from_millis(500), sock.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

async fn udp(h: &Harness, m: &Message) -> Message {
    Message::from_vec(
        &udp_raw(h.server.udp, &m.to_vec().unwrap())
            .await
            .expect("an answer"),
    )
    .unwrap()
}

async fn tcp(h: &Harness, m: &Message) -> Message {
    let mut s = TcpStream::connect(h.server.tcp).await.unwrap();
    let b = m.to_vec().unwrap();
    s.write_all(&(b.len() as u16).to_be_bytes()).await.unwrap();
    s.write_all(&b).await.unwrap();
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await.unwrap();
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
}

fn addrs(m: &Message) -> Vec<IpAddr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

fn ecs_scope(m: &Message) -> Option<(u8, u8)> {
    match m.edns.as_ref()?.option(EdnsCode::Subnet) {
        Some(EdnsOption::Subnet(s)) => Some((s.source_prefix(), s.scope_prefix())),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_in_different_countries_get_their_region_by_ecs() {
    let h = start().await;
    for (subnet, prefix, region_addrs) in [
        ("83.0.0.0", 24, vec!["192.0.2.10", "192.0.2.11"]), // Poland -> waw
        ("81.2.69.0", 24, vec!["192.0.2.30", "192.0.2.31"]), // UK -> lon
        ("24.48.0.0", 24, vec!["198.51.100.10", "198.51.100.11"]), // Canada -> bhs
        ("8.8.8.0", 24, vec!["198.51.100.20", "198.51.100.21"]), // US -> vin
        ("2a00:1450:4001::", 56, vec!["192.0.2.20", "192.0.2.21"]), // Germany -> fra
    ] {
        let r = udp(
            &h,
            &query("meet.gslb.example.", RecordType::A, Some((subnet, prefix)), true),
        )
        .await;
        assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{subnet}");
        assert!(r.metadata.authoritative);
        assert!(!r.metadata.recursion_available);
        assert_eq!(addrs(&r), ips(&region_addrs), "{subnet}");
        assert_eq!(r.answers[0].ttl, 30);
        // The scope is the GeoIP network's, clamped to the source prefix; never just an echo of it.
        let (source, scope) = ecs_scope(&r).expect("ECS echoed");
        assert_eq!(source, prefix);
        assert!(scope <= prefix && scope > 0, "{subnet}: scope {scope}");
    }
    // Poland: DB-IP's network is 83.0.0.0/11 and meet's decision there does not depend on the client
    // hash, so the answer holds for the whole /11.
    let r = udp(
        &h,
        &query("meet.gslb.example.", RecordType::A, Some(("83.0.0.0", 24)), true),
    )
    .await;
    assert_eq!(ecs_scope(&r), Some((24, 11)));
    // AAAA works the same way.
    let r = udp(
        &h,
        &query(
            "meet.gslb.example.",
            RecordType::AAAA,
            Some(("83.0.0.0", 24)),
            true,
        ),
    )
    .await;
    assert_eq!(addrs(&r), ips(&["2001:db8:10::10"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_ecs_the_source_address_locates_the_client() {
    let h = start().await;
    // 127.0.0.1 is non-routable: unknown location -> meet's unknown-location list, restricted to the EU.
    let r = udp(&h, &query("meet.gslb.example.", RecordType::A, None, false)).await;
    assert_eq!(addrs(&r), ips(&["192.0.2.20", "192.0.2.21"]));
    assert!(r.edns.is_none(), "no OPT in a response to a query without one");
    let r = udp(&h, &query("meet.gslb.example.", RecordType::A, None, true)).await;
    assert_eq!(
        ecs_scope(&r),
        None,
        "no ECS in the answer when the query had none"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authoritative_behaviour() {
    let h = start().await;
    let soa_in_authority = |m: &Message| m.authorities.iter().any(|r| r.record_type() == RecordType::SOA);
    let r = udp(&h, &query("nope.gslb.example.", RecordType::A, None, true)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert!(r.metadata.authoritative && soa_in_authority(&r));
    assert_eq!(r.authorities[0].ttl, 60, "negative TTL is the SOA minimum");
    let r = udp(&h, &query("meet.gslb.example.", RecordType::MX, None, true)).await;
    assert_eq!(
        (r.metadata.response_code, r.answers.len()),
        (ResponseCode::NoError, 0),
        "NODATA"
    );
    assert!(soa_in_authority(&r));
    // An empty non-terminal (_tcp.meet exists only as a parent of _sip._tcp.meet) is NODATA, not NXDOMAIN.
    let r = udp(&h, &query("_tcp.meet.gslb.example.", RecordType::TXT, None, true)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    let r = udp(&h, &query("example.com.", RecordType::A, None, true)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    assert!(!r.metadata.authoritative);
    let r = tcp(&h, &query("gslb.example.", RecordType::AXFR, None, false)).await;
    assert_eq!(
        r.metadata.response_code,
        ResponseCode::Refused,
        "no zone transfer"
    );
    // Static records.
    let r = udp(&h, &query("gslb.example.", RecordType::MX, None, true)).await;
    assert_eq!(r.answers.len(), 1);
    let r = udp(&h, &query("gslb.example.", RecordType::CAA, None, true)).await;
    assert_eq!(r.answers[0].record_type(), RecordType::CAA);
    let r = udp(
        &h,
        &query("_sip._tcp.meet.gslb.example.", RecordType::SRV, None, true),
    )
    .await;
    assert_eq!(r.answers[0].record_type(), RecordType::SRV);
    let r = udp(&h, &query("gslb.example.", RecordType::NS, None, true)).await;
    assert_eq!(r.answers.len(), 2);
    assert_eq!(
        r.additionals
            .iter()
            .filter(|a| a.record_type() == RecordType::A)
            .count(),
        2,
        "glue"
    );
    let r = udp(&h, &query("gslb.example.", RecordType::SOA, None, true)).await;
    assert_eq!(r.answers[0].record_type(), RecordType::SOA);
    // CNAME to a steered name.
    let r = udp(&h, &query("www.gslb.example.", RecordType::A, None, true)).await;
    assert_eq!(r.answers[0].record_type(), RecordType::CNAME);
    // ANY: one RRset (RFC 8482).
    let r = udp(&h, &query("gslb.example.", RecordType::ANY, None, true)).await;
    let types: std::collections::HashSet<_> = r.answers.iter().map(|a| a.record_type()).collect();
    assert_eq!(types.len(), 1, "{types:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn question_case_is_preserved() {
    let h = start().await;
    let r = udp(
        &h,
        &query("MeEt.GsLb.ExAmPlE.", RecordType::A, Some(("83.0.0.0", 24)), true),
    )
    .await;
    assert_eq!(r.queries[0].name().to_ascii(), "MeEt.GsLb.ExAmPlE.");
    assert_eq!(r.answers[0].name.to_ascii(), "MeEt.GsLb.ExAmPlE.");
    assert_eq!(r.metadata.id, 0x4d52);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_big_for_udp_is_truncated_and_tcp_carries_it() {
    let long = "x".repeat(1500);
    let config = format!(
        "{EXAMPLE}\n[[zones.\"gslb.example\".records]]\nname = \"big\"\ntype = \"TXT\"\ndata = \"{long}\"\n"
    );
    let h = start_with(&config).await;
    let q = query("big.gslb.example.", RecordType::TXT, None, false);
    let r = udp(&h, &q).await;
    assert!(r.metadata.truncation, "TC over 512 octets without EDNS");
    assert!(r.answers.is_empty());
    let r = udp(&h, &query("big.gslb.example.", RecordType::TXT, None, true)).await;
    assert!(r.metadata.truncation, "still over the 1232-octet EDNS limit");
    let r = tcp(&h, &q).await;
    assert!(!r.metadata.truncation);
    assert_eq!(r.answers.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_packets_get_formerr_or_nothing_and_the_server_keeps_serving() {
    let h = start().await;
    let good = query("meet.gslb.example.", RecordType::A, None, true)
        .to_vec()
        .unwrap();
    // Too short to answer: dropped.
    assert_eq!(udp_raw(h.server.udp, &[1, 2, 3]).await, None);
    // A response (QR set): dropped, never answered (reflection loops).
    let mut resp = good.clone();
    resp[2] |= 0x80;
    assert_eq!(udp_raw(h.server.udp, &resp).await, None);
    // Truncated in the middle of the question: FORMERR with the same id.
    let r = udp_raw(h.server.udp, &good[..good.len() - 15]).await.unwrap();
    assert_eq!((r[0], r[1], r[3] & 0x0f), (0x4d, 0x52, 1));
    // A compression pointer that points at itself.
    let mut looped = good[..12].to_vec();
    looped.extend_from_slice(&[0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01]);
    let r = udp_raw(h.server.udp, &looped).await.unwrap();
    assert_eq!(r[3] & 0x0f, 1, "FORMERR");
    // ECS with address bits set beyond the source prefix (0x0f in the third octet of a /20): FORMERR
    // (RFC 7871 §6). Only the prefix's octets travel, so the stray bits must sit in the last one.
    let bad_ecs = query("meet.gslb.example.", RecordType::A, Some(("83.0.15.0", 20)), true);
    let r = udp(&h, &bad_ecs).await;
    assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
    // ECS with an unknown address family: FORMERR.
    let mut fam = good.clone();
    // Rewrite the OPT RR to carry an ECS option with family 3 (hand-built).
    fam.truncate(fam.len() - 11);
    fam.extend_from_slice(&[
        0x00, 0x00, 0x29, 0x04, 0xd0, 0, 0, 0, 0, 0x00, 0x08, 0x00, 0x08, 0x00, 0x04, 0x00, 0x03, 0x18, 0x00,
    ]);
    let r = udp_raw(h.server.udp, &fam).await.unwrap();
    assert_eq!(r[3] & 0x0f, 1, "FORMERR for ECS family 3");
    // Oversized datagram of garbage.
    let mut big = good.clone();
    big.extend(std::iter::repeat_n(0xffu8, 3000));
    let _ = udp_raw(h.server.udp, &big).await;
    // Still serving.
    let r = udp(
        &h,
        &query("meet.gslb.example.", RecordType::A, Some(("83.0.0.0", 24)), true),
    )
    .await;
    assert_eq!(addrs(&r), ips(&["192.0.2.10", "192.0.2.11"]));
}

async fn drill(h: &Harness, region: &str) -> Revision {
    let doc = DrillDoc {
        schema: 1,
        region: region.into(),
        mode: DrillModeDoc::Down,
        started_at_ms: 0,
        expires_at_ms: u64::MAX,
        author: "test".into(),
        reason: "test".into(),
    };
    h.store
        .put(
            &Keys::new(DEFAULT_PREFIX).unwrap().drill(&format!("d-{region}")),
            encode(&doc),
            None,
        )
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_move_when_the_store_says_a_region_is_down_and_residency_holds() {
    let h = start().await;
    let pl = query("meet.gslb.example.", RecordType::A, Some(("83.0.0.0", 24)), true);
    assert_eq!(addrs(&udp(&h, &pl).await), ips(&["192.0.2.10", "192.0.2.11"]));
    let rev = drill(&h, "waw").await;
    assert!(h.watcher.wait_for(rev, Duration::from_secs(2)).await);
    assert_eq!(
        addrs(&udp(&h, &pl).await),
        ips(&["192.0.2.20", "192.0.2.21"]),
        "Warsaw down: Frankfurt"
    );
    // Every EU region down: Polish clients stay in the EU (panic mode among EU regions), never London or
    // North America.
    let mut rev = 0;
    for r in ["fra", "sbg", "gra"] {
        rev = drill(&h, r).await;
    }
    assert!(h.watcher.wait_for(rev, Duration::from_secs(2)).await);
    let eu: Vec<IpAddr> = ips(&[
        "192.0.2.10",
        "192.0.2.11",
        "192.0.2.20",
        "192.0.2.21",
        "192.0.2.40",
        "192.0.2.41",
        "192.0.2.50",
        "192.0.2.51",
    ]);
    let got = addrs(&udp(&h, &pl).await);
    assert!(!got.is_empty() && got.iter().all(|a| eu.contains(a)), "{got:?}");
    // The UK client is not covered by the rule: London.
    let uk = query("meet.gslb.example.", RecordType::A, Some(("81.2.69.0", 24)), true);
    assert_eq!(addrs(&udp(&h, &uk).await), ips(&["192.0.2.30", "192.0.2.31"]));
}

/// A flood of identical queries from one address: the burst is answered, then most responses are
/// dropped and every second limited one slips as an empty truncated response; TCP still answers in full;
/// another name is counted apart. Metrics say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_rate_limiting_drops_and_slips_over_the_limit() {
    let rrl = RrlConfig {
        rate: 5,
        burst: 10,
        slip: 2,
        ..RrlConfig::default()
    };
    let h = start_full(EXAMPLE, GeoDb::bundled().unwrap(), rrl).await;
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let q = query("meet.gslb.example.", RecordType::A, Some(("83.0.0.0", 24)), true);
    let bytes = q.to_vec().unwrap();
    // 60 queries in well under a second: 10 (burst) + a few tokens answered.
    for _ in 0..60 {
        sock.send_to(&bytes, h.server.udp).await.unwrap();
    }
    let (mut full, mut slipped) = (0, 0);
    let mut buf = vec![0u8; 4096];
    while let Ok(Ok((n, _))) =
        tokio::time::timeout(Duration::from_millis(400), sock.recv_from(&mut buf)).await
    {
        let m = Message::from_vec(&buf[..n]).unwrap();
        if m.metadata.truncation {
            assert!(m.answers.is_empty(), "a slipped response carries no records");
            slipped += 1;
        } else {
            assert_eq!(addrs(&m).len(), 2);
            full += 1;
        }
    }
    assert!(
        (10..=14).contains(&full),
        "burst of 10 (+ refill) answered in full, got {full}"
    );
    let limited = 60 - full;
    assert!(
        slipped >= limited / 2 - 2 && slipped <= limited / 2 + 2,
        "every second limited response slips: {slipped} of {limited}"
    );
    // TCP is never limited.
    let r = tcp(&h, &q).await;
    assert_eq!(addrs(&r).len(), 2);
    // Another name from the same client is another bucket.
    let other = udp(
        &h,
        &query("api.gslb.example.", RecordType::A, Some(("83.0.0.0", 24)), true),
    )
    .await;
    assert!(!other.metadata.truncation && !addrs(&other).is_empty());
    // Metrics (workers flush every 250 ms).
    tokio::time::sleep(Duration::from_millis(600)).await;
    let text = metrics_text(&h);
    let dropped = metric(&text, "meridian_dns_rate_limited_total{action=\"dropped\"}");
    let slips = metric(&text, "meridian_dns_rate_limited_total{action=\"slipped\"}");
    assert_eq!(slips as usize, slipped);
    assert_eq!((dropped + slips) as usize, limited);
}

fn metrics_text(h: &Harness) -> String {
    use prometheus::Encoder;
    let registry = prometheus::Registry::new();
    registry.register(h.state.metrics().collector()).unwrap();
    let mut out = Vec::new();
    prometheus::TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .unwrap();
    String::from_utf8(out).unwrap()
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).map(|v| v.trim().parse::<f64>().unwrap()))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

/// Queries by type and rcode, steered answers by service/region/reason, ECS use and the latency
/// histogram all count what was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_queries_answers_and_reasons() {
    let h = start().await;
    for _ in 0..3 {
        udp(
            &h,
            &query("meet.gslb.example.", RecordType::A, Some(("83.0.0.0", 24)), true),
        )
        .await;
    }
    udp(&h, &query("nothere.gslb.example.", RecordType::A, None, true)).await;
    udp(&h, &query("example.org.", RecordType::A, None, false)).await;
    tcp(
        &h,
        &query(
            "meet.gslb.example.",
            RecordType::AAAA,
            Some(("24.48.0.0", 24)),
            true,
        ),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let text = metrics_text(&h);
    assert_eq!(
        metric(&text, "meridian_dns_queries_total{qtype=\"A\",rcode=\"NOERROR\"}"),
        3.0
    );
    assert_eq!(
        metric(
            &text,
            "meridian_dns_queries_total{qtype=\"A\",rcode=\"NXDOMAIN\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(&text, "meridian_dns_queries_total{qtype=\"A\",rcode=\"REFUSED\"}"),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            "meridian_dns_queries_total{qtype=\"AAAA\",rcode=\"NOERROR\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            "meridian_dns_steered_total{service=\"meet\",region=\"waw\",reason=\"distance\"}"
        ),
        3.0
    );
    assert_eq!(
        metric(
            &text,
            "meridian_dns_steered_total{service=\"meet\",region=\"bhs\",reason=\"distance\"}"
        ),
        1.0
    );
    assert_eq!(metric(&text, "meridian_dns_ecs_queries_total"), 4.0);
    // The TCP query is always timed; UDP queries one in eight per socket thread.
    let timed = metric(&text, "meridian_dns_answer_seconds_count");
    assert!((1.0..=6.0).contains(&timed), "{timed}");
    assert!(metric(&text, "meridian_dns_fast_path_total") >= 3.0);
}

/// A new GeoIP database file replaces the old one without a restart: the same client is then placed
/// elsewhere. A broken file is refused and the current database kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_geoip_file_is_picked_up_without_a_restart() {
    #[derive(serde::Serialize)]
    struct Cc {
        country_code: &'static str,
    }
    fn db(country: &'static str) -> Vec<u8> {
        let mut w = mmdb_writer::Writer::new("dbip-country");
        w.insert(
            "83.0.0.0/11".parse::<ipnet::IpNet>().unwrap(),
            &Cc {
                country_code: country,
            },
        )
        .unwrap();
        w.to_bytes().unwrap()
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("geo.mmdb");
    std::fs::write(&path, db("PL")).unwrap();
    let no_rrl = RrlConfig {
        rate: 0,
        ..RrlConfig::default()
    };
    let h = start_full(EXAMPLE, GeoDb::open(&path).unwrap(), no_rrl).await;
    let nudge = Arc::new(tokio::sync::Notify::new());
    h.state
        .watch_geo_file(path.clone(), Duration::from_millis(100), nudge.clone());
    let q = query("meet.gslb.example.", RecordType::A, Some(("83.0.0.0", 24)), true);
    assert_eq!(
        addrs(&udp(&h, &q).await),
        ips(&["192.0.2.10", "192.0.2.11"]),
        "Poland: waw"
    );

    // Replace the file the way deployment tools do: write aside, rename over.
    let tmp = dir.path().join("geo.mmdb.new");
    std::fs::write(&tmp, db("CA")).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    let start = Instant::now();
    loop {
        if addrs(&udp(&h, &q).await) == ips(&["198.51.100.10", "198.51.100.11"]) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the new database was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A damaged file: refused, the Canadian database stays.
    std::fs::write(&path, b"not a database").unwrap();
    nudge.notify_one();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        addrs(&udp(&h, &q).await),
        ips(&["198.51.100.10", "198.51.100.11"])
    );
    let text = metrics_text(&h);
    assert_eq!(
        metric(&text, "meridian_dns_geoip_reloads_total{result=\"loaded\"}"),
        1.0
    );
    assert!(metric(&text, "meridian_dns_geoip_reloads_total{result=\"failed\"}") >= 1.0);
}

/// Region health from prober opinions (issue 5's aggregation) moves DNS answers: two of three vantage
/// points saying Warsaw is down send Polish clients elsewhere in the EU; one of three does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_follow_region_health_from_a_quorum_of_probers() {
    use meridian_store::schema::HealthObservation;
    let h = start().await;
    let keys = Keys::new(DEFAULT_PREFIX).unwrap();
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    };
    let opinion = |healthy: bool| {
        encode(&HealthObservation {
            schema: 1,
            healthy,
            observed_at_ms: now(),
            latency_ms: None,
            detail: None,
        })
    };
    let q = query("meet.gslb.example.", RecordType::A, Some(("83.0.0.0", 24)), true);
    let warsaw = ips(&["192.0.2.10", "192.0.2.11"]);
    assert_eq!(addrs(&udp(&h, &q).await), warsaw);
    // Every region gets three "up" opinions; then v1 alone says Warsaw is down: no quorum.
    let mut rev = 0;
    for region in ["waw", "fra", "lon", "sbg", "gra", "bhs", "vin", "hil"] {
        for v in ["v1", "v2", "v3"] {
            rev = h
                .store
                .put(&keys.health(region, v), opinion(true), None)
                .await
                .unwrap();
        }
    }
    rev = rev.max(
        h.store
            .put(&keys.health("waw", "v1"), opinion(false), None)
            .await
            .unwrap(),
    );
    assert!(h.watcher.wait_for(rev, Duration::from_secs(5)).await);
    assert_eq!(
        addrs(&udp(&h, &q).await),
        warsaw,
        "one vantage point of three is not a quorum"
    );
    // v2 agrees: Warsaw is down, the answer moves, and stays in the EU.
    let rev = h
        .store
        .put(&keys.health("waw", "v2"), opinion(false), None)
        .await
        .unwrap();
    assert!(h.watcher.wait_for(rev, Duration::from_secs(5)).await);
    let moved = addrs(&udp(&h, &q).await);
    assert_ne!(moved, warsaw, "two of three: Warsaw is down");
    let eu = ips(&[
        "192.0.2.20",
        "192.0.2.21",
        "192.0.2.40",
        "192.0.2.41",
        "192.0.2.50",
        "192.0.2.51",
    ]);
    assert!(moved.iter().all(|a| eu.contains(a)), "{moved:?} left the EU set");
}

/// The SOA serial in the authority section of a negative answer.
fn serial(m: &Message) -> u32 {
    m.authorities
        .iter()
        .find_map(|r| match &r.data {
            RData::SOA(soa) => Some(soa.serial),
            _ => None,
        })
        .expect("an SOA in authority")
}

fn txts(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(t) => Some(t.to_string()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_challenges_in_the_store_are_answered_as_txt_and_vanish_when_deleted() {
    let h = start().await;
    let keys = Keys::new(DEFAULT_PREFIX).unwrap();
    let name = "_acme-challenge.gslb.example.";
    let before = udp(&h, &query(name, RecordType::TXT, None, false)).await;
    assert_eq!(before.metadata.response_code, ResponseCode::NXDomain);
    let serial_before = serial(&before);

    // A wildcard and the apex share one owner name: both values answer.
    for (n, v) in [("*.gslb.example", "wild-value"), ("gslb.example", "apex-value")] {
        let doc = schema::AcmeChallengeDoc {
            schema: 1,
            values: vec![v.to_owned()],
            holder: "proxy/test".into(),
        };
        h.store
            .put(&keys.acme_challenge(n), encode(&doc), None)
            .await
            .unwrap();
    }
    let start = Instant::now();
    let answer = loop {
        let m = tcp(&h, &query(name, RecordType::TXT, None, true)).await;
        if txts(&m).len() == 2 {
            break m;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "no TXT answer: {m:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(answer.metadata.authoritative);
    let mut values = txts(&answer);
    values.sort();
    assert_eq!(values, ["apex-value", "wild-value"]);
    assert!(answer.answers.iter().all(|r| r.ttl == 1));
    // The zone's other data is untouched.
    assert_eq!(
        udp(&h, &query("ns1.gslb.example.", RecordType::A, None, false))
            .await
            .answers
            .len(),
        1
    );

    h.store
        .delete(&keys.acme_challenge("*.gslb.example"))
        .await
        .unwrap();
    h.store
        .delete(&keys.acme_challenge("gslb.example"))
        .await
        .unwrap();
    let start = Instant::now();
    let after = loop {
        let m = udp(&h, &query(name, RecordType::TXT, None, false)).await;
        if m.metadata.response_code == ResponseCode::NXDomain {
            break m;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the TXT records stayed: {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        serial(&after) > serial_before,
        "the SOA serial follows the challenge records"
    );
}
