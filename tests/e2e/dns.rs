//! `meridian dns` as a real process: answers over UDP on loopback, stops on SIGINT, refuses a taken port.

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RData, RecordType};

use crate::support::{example, stderr};

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plain HTTP/1.1 GET: (status, body).
fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    let status = raw.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Stops the server by PID with SIGINT when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = Command::new("kill")
                .args(["-INT", &self.0.id().to_string()])
                .status();
            let _ = self.0.wait();
        }
    }
}

/// `meridian dns` on `addr` with the example configuration and a fresh data directory in `dir`.
fn dns_command(addr: SocketAddr, dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_meridian"));
    c.args([
        "dns",
        "--config",
        example().to_str().unwrap(),
        "--listen",
        &addr.to_string(),
        "--data-dir",
    ])
    .arg(dir.join("data"));
    c
}

fn ask(addr: SocketAddr, subnet: &str) -> Option<Message> {
    let mut m = Message::new(7, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(
        Name::from_ascii("meet.gslb.example.").unwrap(),
        RecordType::A,
    ));
    let mut e = Edns::new();
    e.options_mut().insert(EdnsOption::Subnet(ClientSubnet::new(
        subnet.parse().unwrap(),
        24,
        0,
    )));
    m.set_edns(e);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    sock.send_to(&m.to_vec().unwrap(), addr).unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    Message::from_vec(&buf[..n]).ok()
}

#[test]
fn serves_geo_answers_and_stops_on_sigint() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    let child = dns_command(addr, dir.path())
        .args(["--metrics-listen", &metrics.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut server = Server(child);
    // Ready means answering, not merely running.
    let start = Instant::now();
    let answer = loop {
        if let Some(m) = ask(addr, "83.0.0.0") {
            break m;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no answer within 10 s");
    };
    let a: Vec<String> = answer
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(a, ["192.0.2.10", "192.0.2.11"], "a Polish client gets Warsaw");

    // Prometheus metrics over HTTP: the query just answered is counted, the state's age is exported.
    let start = Instant::now();
    let text = loop {
        let (status, body) = http_get(metrics, "/metrics");
        if status == 200 && body.contains("meridian_dns_queries_total{qtype=\"A\",rcode=\"NOERROR\"}") {
            break body;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "metrics never counted the query:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(text.contains("meridian_state_staleness_seconds"), "{text}");
    assert!(text.contains("meridian_dns_answer_seconds_bucket"), "{text}");
    assert_eq!(http_get(metrics, "/elsewhere").0, 404);

    let _ = Command::new("kill")
        .args(["-INT", &server.0.id().to_string()])
        .status();
    let status = server.0.wait().unwrap();
    assert!(status.success(), "clean exit on SIGINT: {status:?}");
}

#[test]
fn a_taken_port_is_a_clear_error() {
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dns_command(addr, dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("cannot listen on {addr}")),
        "{}",
        stderr(&out)
    );
}
