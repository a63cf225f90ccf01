//! Knot DNS as a real secondary on loopback: it transfers the zone with TSIG, follows a NOTIFY after a
//! configuration change; transfers without the key, with a wrong key or from elsewhere are refused and
//! counted.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_proto::rr::{Name, RData, Record, RecordType, TSigner};
use meridian_config::secondaries::Secondaries;
use meridian_dns::rrl::RrlConfig;
use meridian_dns::server::{DnsOptions, DnsServer, DnsState};
use meridian_dns::xfr::XfrPolicy;
use meridian_geoip::GeoDb;
use meridian_store::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, UdpSocket};

const EXAMPLE: &str = include_str!("../../examples/meridian.toml");

/// A knotd we started: stopped (by its PID) when dropped.
struct Knot(Child);

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_knot(dir: &Path, port: u16, primary: SocketAddr, secret: &str) -> Knot {
    let conf = format!(
        "server:\n    rundir: {d}\n    listen: 127.0.0.1@{port}\n\
         database:\n    storage: {d}\n\
         control:\n    listen: {d}/knot.sock\n\
         log:\n  - target: stderr\n    any: info\n\
         key:\n  - id: xfr\n    algorithm: hmac-sha256\n    secret: {secret}\n\
         remote:\n  - id: primary\n    address: {ip}@{pport}\n    key: xfr\n\
         acl:\n  - id: notify_from_primary\n    address: {ip}\n    key: xfr\n    action: notify\n\
         template:\n  - id: default\n    storage: {d}\n\
         zone:\n  - domain: gslb.example\n    master: primary\n    acl: notify_from_primary\n    zonefile-sync: -1\n",
        d = dir.display(),
        ip = primary.ip(),
        pport = primary.port(),
    );
    let path = dir.join("knot.conf");
    std::fs::write(&path, conf).unwrap();
    let child = Command::new("knotd")
        .arg("-c")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("knot.log")).unwrap())
        .spawn()
        .expect("knotd runs (knot, scripts/install-deps)");
    Knot(child)
}

/// A UDP query to `addr`: the answer, if one came within 500 ms.
async fn ask(addr: SocketAddr, name: &str, qtype: RecordType) -> Option<Message> {
    let mut m = Message::new(9, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(&m.to_vec().unwrap(), addr).await.unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_millis(500), sock.recv_from(&mut buf))
        .await
        .ok()?
        .ok()?;
    Message::from_vec(&buf[..n]).ok()
}

/// Polls `addr` until `check` holds for its answer to `name`/`qtype`, for at most `limit`.
async fn wait_for(
    addr: SocketAddr,
    name: &str,
    qtype: RecordType,
    limit: Duration,
    check: impl Fn(&Message) -> bool,
) -> Message {
    let start = Instant::now();
    loop {
        if let Some(m) = ask(addr, name, qtype).await
            && check(&m)
        {
            return m;
        }
        assert!(
            start.elapsed() < limit,
            "{name} {qtype} never as expected from {addr}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn serial(m: &Message) -> Option<u32> {
    m.answers.iter().find_map(|r| match &r.data {
        RData::SOA(s) => Some(s.serial),
        _ => None,
    })
}

/// An AXFR of gslb.example over TCP from `from`, signed with `signer` if any: the first response.
async fn axfr(from: &str, to: SocketAddr, signer: Option<&TSigner>) -> Message {
    transfer(from, to, signer, None).await
}

/// An AXFR, or an IXFR from `ixfr_from` (the SOA the secondary holds), as [`axfr`].
async fn transfer(
    from: &str,
    to: SocketAddr,
    signer: Option<&TSigner>,
    ixfr_from: Option<Record>,
) -> Message {
    let mut m = Message::new(77, MessageType::Query, OpCode::Query);
    let qtype = if ixfr_from.is_some() {
        RecordType::IXFR
    } else {
        RecordType::AXFR
    };
    m.add_query(Query::query(Name::from_ascii("gslb.example.").unwrap(), qtype));
    if let Some(soa) = ixfr_from {
        m.add_authority(soa);
    }
    if let Some(s) = signer {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        m.signature = Some(s.sign_message(&m, now).unwrap().0);
    }
    let q = m.to_vec().unwrap();
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut s = sock.connect(to).await.unwrap();
    s.write_all(&(q.len() as u16).to_be_bytes()).await.unwrap();
    s.write_all(&q).await.unwrap();
    let mut len = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut len))
        .await
        .unwrap()
        .unwrap();
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn knot_transfers_the_zone_with_tsig_and_follows_notify_and_strangers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // The configuration in the store: the zone's serial is its revision.
    let store: Arc<dyn KvStore> = Arc::new(EmbeddedStore::in_memory());
    let keys = Keys::new(DEFAULT_PREFIX).unwrap();
    apply_config(&*store, &keys, EXAMPLE, None, "test", 0)
        .await
        .unwrap();
    let watcher = Arc::new(SnapshotWatcher::spawn(
        store.clone(),
        WatcherOptions::new(keys.clone()),
    ));
    let no_rrl = RrlConfig {
        rate: 0,
        ..RrlConfig::default()
    };
    let state = DnsState::new(watcher.clone(), GeoDb::bundled().unwrap(), no_rrl);
    let options = DnsOptions {
        udp_workers: 1,
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

    // The secret in a file, the secondaries file naming it.
    let secret: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(37).wrapping_add(11)).collect();
    let secret_b64 = base64::engine::general_purpose::STANDARD.encode(&secret);
    std::fs::write(dir.path().join("xfr.secret"), format!("{secret_b64}\n")).unwrap();
    let knot_port = free_port();
    let file = format!(
        "[keys.xfr]\nalgorithm = \"hmac-sha256\"\nsecret-file = \"xfr.secret\"\n\
         [[zones.\"gslb.example\".secondaries]]\naddress = \"127.0.0.1:{knot_port}\"\nkey = \"xfr\"\n"
    );
    let secondaries = Secondaries::from_toml_str(&file, dir.path()).unwrap();
    let policy = Arc::new(XfrPolicy::from_config(&secondaries).unwrap());
    let _notifier = state.set_secondaries(policy);

    let knot_dir = dir.path().join("knot");
    std::fs::create_dir(&knot_dir).unwrap();
    let _knot = start_knot(&knot_dir, knot_port, server.udp, &secret_b64);
    let knot: SocketAddr = format!("127.0.0.1:{knot_port}").parse().unwrap();

    // Knot transfers the zone: our serial, static records, the steered name's representative answer.
    let ours = serial(&ask(server.udp, "gslb.example.", RecordType::SOA).await.unwrap()).unwrap();
    let soa = wait_for(
        knot,
        "gslb.example.",
        RecordType::SOA,
        Duration::from_secs(20),
        |m| serial(m).is_some(),
    )
    .await;
    assert_eq!(serial(&soa), Some(ours));
    let ns1 = ask(knot, "ns1.gslb.example.", RecordType::A).await.unwrap();
    assert_eq!(ns1.answers.len(), 1, "{ns1:?}");
    let meet = ask(knot, "meet.gslb.example.", RecordType::A).await.unwrap();
    assert!(
        !meet.answers.is_empty(),
        "the steered name has its representative answer: {meet:?}"
    );
    assert!(state.guard_metrics().xfr_served().0 >= 1);

    // A configuration change: the serial moves, NOTIFY goes out, Knot transfers again.
    let changed = EXAMPLE.replace(
        "# Services.",
        "# Services.\n\n[[zones.\"gslb.example\".records]]\nname = \"added\"\ntype = \"TXT\"\ndata = \"after notify\"\n",
    );
    assert_ne!(changed, EXAMPLE);
    apply_config(&*store, &keys, &changed, None, "test", 0)
        .await
        .unwrap();
    // Well before Knot's own refresh (3600 s): only the NOTIFY can have brought it.
    let added = wait_for(
        knot,
        "added.gslb.example.",
        RecordType::TXT,
        Duration::from_secs(15),
        |m| m.metadata.response_code == ResponseCode::NoError && !m.answers.is_empty(),
    )
    .await;
    let text = added.answers[0].data.to_string();
    assert!(text.contains("after notify"), "{text}");
    let (_, sent, acked) = state.guard_metrics().xfr_served();
    assert!(
        sent >= 1 && acked >= 1,
        "NOTIFY sent {sent}, acknowledged {acked}"
    );

    // Strangers: no key (REFUSED), a wrong secret under the right name (NOTAUTH), the right key from an
    // address that is no secondary (REFUSED). Each counted.
    let refused_before = state.guard_metrics().xfr_refused();
    let to = server.tcp;
    let unsigned = axfr("127.0.0.1", to, None).await;
    assert_eq!(unsigned.metadata.response_code, ResponseCode::Refused);
    assert!(unsigned.answers.is_empty());
    let wrong = TSigner::new(
        vec![7u8; 32],
        TsigAlgorithm::HmacSha256,
        Name::from_ascii("xfr.").unwrap(),
        300,
    )
    .unwrap();
    let bad = axfr("127.0.0.1", to, Some(&wrong)).await;
    assert_eq!(bad.metadata.response_code, ResponseCode::NotAuth);
    assert!(bad.answers.is_empty());
    let right = TSigner::new(
        secret,
        TsigAlgorithm::HmacSha256,
        Name::from_ascii("xfr.").unwrap(),
        300,
    )
    .unwrap();
    let elsewhere = axfr("127.0.0.9", to, Some(&right)).await;
    assert_eq!(elsewhere.metadata.response_code, ResponseCode::Refused);
    assert_eq!(state.guard_metrics().xfr_refused(), refused_before + 3);
    // The right key from the secondary's address: the whole zone, SOA first and last.
    let good = axfr("127.0.0.1", to, Some(&right)).await;
    assert_eq!(good.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        good.answers.first().map(|r| r.record_type()),
        Some(RecordType::SOA)
    );
    assert_eq!(
        good.answers.last().map(|r| r.record_type()),
        Some(RecordType::SOA)
    );
    assert!(good.signature.is_some(), "the transfer is signed");
    // IXFR from the current serial: the SOA alone; from an older one: the whole zone.
    let soa = good.answers[0].clone();
    let current = transfer("127.0.0.1", to, Some(&right), Some(soa.clone())).await;
    assert_eq!(current.answers.len(), 1, "{current:?}");
    let mut old = soa;
    if let RData::SOA(s) = &mut old.data {
        s.serial = s.serial.wrapping_sub(1);
    }
    let behind = transfer("127.0.0.1", to, Some(&right), Some(old)).await;
    assert_eq!(behind.answers.len(), good.answers.len());
}
