//! `meridian dns` as a real process: answers over UDP on loopback, stops on SIGINT, refuses a taken port.

use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Interrupted, a_records, ask, example, free_tcp_port, free_udp_port, http_get, stderr};

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
    let mut server = Interrupted(child);
    // Ready means answering, not merely running.
    let start = Instant::now();
    let answer = loop {
        if let Some(m) = ask(addr, "meet.gslb.example.", "83.0.0.0") {
            break m;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no answer within 10 s");
    };
    let a = a_records(&answer);
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

    let status = server.interrupt();
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
