//! The server attacked rather than queried: one host holding TCP connections must not take TCP from
//! everyone; idle connections go early under pressure; a flood of malformed packets is counted, and its
//! log stays a few bounded, escaped lines.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use meridian_config::Config;
use meridian_dns::guard::{ConnectionLimits, QUIET_LIBRARIES};
use meridian_dns::rrl::RrlConfig;
use meridian_dns::server::{DnsOptions, DnsServer, DnsState};
use meridian_geoip::GeoDb;
use meridian_store::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};

const EXAMPLE: &str = include_str!("../../examples/meridian.toml");

async fn start(limits: ConnectionLimits) -> (DnsServer, Arc<DnsState>, Arc<SnapshotWatcher>) {
    let store: Arc<dyn KvStore> = Arc::new(EmbeddedStore::in_memory());
    let mut opts = WatcherOptions::new(Keys::new(DEFAULT_PREFIX).unwrap());
    opts.bootstrap = Some(Arc::new(Config::from_toml_str(EXAMPLE).unwrap()));
    let watcher = Arc::new(SnapshotWatcher::spawn(store, opts));
    let no_rrl = RrlConfig {
        rate: 0,
        ..RrlConfig::default()
    };
    let state = DnsState::new(watcher.clone(), GeoDb::bundled().unwrap(), no_rrl);
    let options = DnsOptions {
        udp_workers: 1,
        limits,
        ..DnsOptions::default()
    };
    // On all of 127.0.0.0/8's addresses, so that clients can come from several networks.
    let server = DnsServer::bind("0.0.0.0:0".parse().unwrap(), state.clone(), &options)
        .await
        .unwrap();
    let start = Instant::now();
    while watcher.snapshot().is_none() {
        assert!(start.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (server, state, watcher)
}

fn query() -> Vec<u8> {
    let mut m = Message::new(7, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(
        Name::from_ascii("www.gslb.example.").unwrap(),
        RecordType::A,
    ));
    m.set_edns(Edns::new());
    m.to_vec().unwrap()
}

async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(format!("{from}:0").parse().unwrap()).unwrap();
    s.connect(to).await.unwrap()
}

/// A TCP query from `from`: the response code, or `None` when the connection gave no answer.
async fn tcp_query(from: &str, to: SocketAddr) -> Option<ResponseCode> {
    let mut s = connect_from(from, to).await;
    let q = query();
    s.write_all(&(q.len() as u16).to_be_bytes()).await.ok()?;
    s.write_all(&q).await.ok()?;
    let mut len = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut len))
        .await
        .ok()?
        .ok()?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf).await.ok()?;
    Some(Message::from_vec(&buf).ok()?.metadata.response_code)
}

/// Whether the server closed `s` within `within` (EOF or reset on read).
async fn closed_by_server(s: &mut TcpStream, within: Duration) -> bool {
    let mut b = [0u8; 1];
    matches!(
        tokio::time::timeout(within, s.read(&mut b)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_host_holding_1100_idle_connections_does_not_take_tcp_from_others() {
    // The defaults: 1,024 connections in all, 64 per /24 — the attack against them.
    let (server, state, _w) = start(ConnectionLimits::default()).await;
    let to: SocketAddr = format!("127.0.0.1:{}", server.tcp.port()).parse().unwrap();
    let mut held = Vec::new();
    for _ in 0..1100 {
        held.push(connect_from("127.0.0.2", to).await);
    }
    // The server kept its network's share and closed the rest at once.
    let deadline = Instant::now() + Duration::from_secs(5);
    while state.guard_metrics().refused().0 < 1100 - 64 {
        assert!(
            Instant::now() < deadline,
            "refused: {:?}",
            state.guard_metrics().refused()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.governor.open(), 64);
    // Another host (another /24: 127.0.0.3 would share 127.0.0.2's) queries over TCP, again and again.
    for _ in 0..5 {
        assert_eq!(tcp_query("127.0.1.3", to).await, Some(ResponseCode::NoError));
    }
    // The attacker's own network gets nothing more while it holds its share.
    assert_eq!(tcp_query("127.0.0.3", to).await, None);
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.governor.open() > 0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(tcp_query("127.0.0.3", to).await, Some(ResponseCode::NoError));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_pressure_idle_connections_are_closed_early_and_new_clients_get_in() {
    let limits = ConnectionLimits {
        max_connections: 8,
        per_network: 8,
        busy_at: 4,
        idle_timeout: Duration::from_secs(30),
        busy_idle_timeout: Duration::from_millis(300),
        ..ConnectionLimits::default()
    };
    let (server, state, _w) = start(limits).await;
    let to: SocketAddr = format!("127.0.0.1:{}", server.tcp.port()).parse().unwrap();
    // Below the pressure mark, idle connections stay (the idle time is 30 s).
    let mut calm = [
        connect_from("127.0.2.1", to).await,
        connect_from("127.0.3.1", to).await,
    ];
    assert!(!closed_by_server(&mut calm[0], Duration::from_millis(800)).await);
    // Eight idle connections from several networks: the cap, and pressure from the fourth on...
    let mut held = Vec::new();
    for i in 0..6 {
        held.push(connect_from(&format!("127.0.{}.9", 10 + i), to).await);
    }
    // ...and idle under pressure they are closed after 300 ms, until the pressure is gone (below 4 open:
    // those left wait their normal idle time again); TCP is open to new clients again.
    let deadline = Instant::now() + Duration::from_secs(3);
    // All eight admitted (open, or closed already)...
    while server.governor.open() as u64 + state.guard_metrics().closed_idle() < 8 {
        assert!(Instant::now() < deadline, "open: {}", server.governor.open());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // ...then closed until the pressure is gone.
    while server.governor.open() >= 4 {
        assert!(Instant::now() < deadline, "open: {}", server.governor.open());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Connections idle as long wake together, so one or two more than needed may go: not fewer. (Let
    // those already waking finish first.)
    tokio::time::sleep(Duration::from_millis(300)).await;
    let open = server.governor.open();
    assert!(open <= 3, "open: {open}");
    let closed = held
        .iter_mut()
        .chain(calm.iter_mut())
        .map(|s| async { closed_by_server(s, Duration::from_millis(100)).await });
    let mut n = 0;
    for c in closed {
        n += usize::from(c.await);
    }
    assert_eq!(n, 8 - open);
    assert_eq!(state.guard_metrics().refused(), (0, 0));
    let text = metrics_text(&state);
    assert!(
        text.contains(&format!("meridian_dns_stream_idle_closed_total {}", 8 - open)),
        "{text}"
    );
    assert_eq!(tcp_query("127.0.9.9", to).await, Some(ResponseCode::NoError));
}

fn metrics_text(state: &DnsState) -> String {
    let registry = prometheus::Registry::new();
    registry.register(state.guard_metrics().collector()).unwrap();
    prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap()
}

/// The log as written: every line the subscriber wrote.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_malformed_packets_is_counted_and_logs_a_bounded_escaped_summary() {
    let log = Captured::default();
    let writer = log.clone();
    // The binary's filter: warnings, with hickory's parsing chatter off (src/main.rs).
    let mut filter = tracing_subscriber::EnvFilter::new("warn");
    for d in QUIET_LIBRARIES {
        filter = filter.add_directive(d.parse().unwrap());
    }
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_env_filter(filter)
        .with_ansi(false)
        .init();
    let (server, state, _w) = start(ConnectionLimits::default()).await;
    let to: SocketAddr = format!("127.0.0.1:{}", server.udp.port()).parse().unwrap();
    let good = query();
    // Malformed in the ways the issue saw: EDNS options that do not parse (hickory logs their octets),
    // a question cut short, garbage with newlines and terminal escapes, kilobytes of it.
    let mut bad_edns = good[..good.len() - 11].to_vec();
    let mut opt = vec![0x00, 0x00, 0x29, 0x04, 0xd0, 0, 0, 0, 0];
    let junk: Vec<u8> = b"\n\x1b[31mEVIL\n".iter().cycle().take(2000).copied().collect();
    opt.extend_from_slice(&((junk.len() + 4) as u16).to_be_bytes());
    opt.extend_from_slice(&[0x00, 0x08, 0xff, 0xff]);
    opt.extend_from_slice(&junk);
    bad_edns.extend_from_slice(&opt);
    let cut = good[..good.len() - 15].to_vec();
    let mut garbage = good[..12].to_vec();
    garbage[5] = 1;
    garbage.extend_from_slice(&junk);
    let packets = [bad_edns, cut, garbage];
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let sent = 1500;
    for i in 0..sent {
        sock.send_to(&packets[i % packets.len()], to).await.unwrap();
        if i % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    // Counted: each one, all answered FORMERR or not at all (loopback loses none at this pace).
    let expected = sent as u64;
    let deadline = Instant::now() + Duration::from_secs(5);
    while state.guard_metrics().malformed().0 < expected {
        assert!(
            Instant::now() < deadline,
            "counted {:?}",
            state.guard_metrics().malformed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(state.guard_metrics().malformed().0, expected);
    // Still serving.
    let r = {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        sock.send_to(&good, to).await.unwrap();
        let mut buf = [0u8; 1500];
        loop {
            let (n, _) = tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf))
                .await
                .unwrap()
                .unwrap();
            let m = Message::from_vec(&buf[..n]);
            if let Ok(m) = m
                && m.metadata.response_code == ResponseCode::NoError
            {
                break m;
            }
        }
    };
    assert_eq!(r.answers.len(), 1);
    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // One summary for the whole flood (one per 10 s), short, with no raw control octets.
    assert_eq!(lines.len(), 1, "{text}");
    assert!(lines[0].contains("malformed DNS requests"), "{text}");
    assert!(lines[0].len() < 600, "{}", lines[0].len());
    assert!(!text.contains('\x1b') && !text.contains("EVIL\n"), "{text}");
    assert!(metrics_text(&state).contains("meridian_dns_malformed_total{transport=\"udp\"} 1500"));
}
