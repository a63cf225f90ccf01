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

/// `kdig` for `meet.gslb.example A` with a Polish ECS client, over `transport` (`+tls`, `+https`, ...).
fn kdig_meet(port: u16, transport: &str, ca: &std::path::Path) -> String {
    let out = Command::new("kdig")
        .args(["@127.0.0.1", "-p", &port.to_string(), transport])
        .arg(format!("+tls-ca={}", ca.display()))
        .args([
            "+tls-hostname=dns.test",
            "+noall",
            "+answer",
            "+time=2",
            "+retry=0",
        ])
        .args(["+subnet=83.0.0.0/24", "meet.gslb.example.", "A"])
        .output()
        .expect("kdig runs (knot-dnsutils, scripts/install-deps)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn serves_dns_over_tls_and_https_and_a_malformed_flood_logs_one_escaped_line() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("dns.pem"), dir.path().join("dns.key"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args([
            "-days",
            "2",
            "-subj",
            "/CN=dns.test",
            "-addext",
            "subjectAltName=DNS:dns.test",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", stderr(&made));
    let port = free_udp_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (dot, doh, metrics) = (free_tcp_port(), free_tcp_port(), free_tcp_port());
    let child = dns_command(addr, dir.path())
        .args(["--tls-listen", &format!("127.0.0.1:{dot}")])
        .args(["--https-listen", &format!("127.0.0.1:{doh}")])
        .arg("--dns-tls-cert")
        .arg(&cert)
        .arg("--dns-tls-key")
        .arg(&key)
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics}")])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut server = Interrupted(child);
    let start = Instant::now();
    while ask(addr, "meet.gslb.example.", "83.0.0.0").is_none() {
        assert!(start.elapsed() < Duration::from_secs(10), "no answer within 10 s");
    }
    for (p, transport) in [(dot, "+tls"), (doh, "+https")] {
        let answer = kdig_meet(p, transport, &cert);
        assert!(
            answer.contains("192.0.2.10") && answer.contains("192.0.2.11"),
            "{transport}: {answer}"
        );
    }
    // A flood of malformed datagrams: newlines, terminal escapes, kilobytes each.
    let junk: Vec<u8> = b"\x07\n\x1b[2J\rEVIL"
        .iter()
        .cycle()
        .take(3000)
        .copied()
        .collect();
    let mut packet = vec![0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
    packet.extend_from_slice(&junk);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..600 {
        sock.send_to(&packet, addr).unwrap();
        if i % 50 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let start = Instant::now();
    loop {
        let (_, body) = http_get(format!("127.0.0.1:{metrics}").parse().unwrap(), "/metrics");
        if body.contains("meridian_dns_malformed_total{transport=\"udp\"} 600") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "{body}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(server.interrupt().success());
    let mut log = String::new();
    use std::io::Read;
    server.0.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    let malformed: Vec<&str> = log.lines().filter(|l| l.contains("malformed")).collect();
    assert_eq!(malformed.len(), 1, "{log}");
    assert!(
        log.len() < 2000,
        "the whole log stays short: {} octets",
        log.len()
    );
    // The sample is there, escaped: no raw control octet reaches the terminal or the log file.
    assert!(log.contains("\\x1b[2J"), "{log}");
    assert!(
        !log.contains("\x1b[2J") && !log.contains('\x07') && !log.contains('\r'),
        "{log}"
    );
}

#[test]
fn a_bad_secondaries_file_is_a_clear_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secondaries.toml");
    std::fs::write(
        &file,
        "[keys.xfr]\nalgorithm = \"hmac-sha256\"\nsecret-file = \"missing.secret\"\n\
         [[zones.\"gslb.example\".secondaries]]\naddress = \"127.0.0.1:5300\"\nkey = \"xfr\"\n",
    )
    .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let out = dns_command(addr, dir.path())
        .arg("--secondaries")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("keys.xfr.secret-file: cannot read") && stderr(&out).contains("missing.secret"),
        "{}",
        stderr(&out)
    );
    std::fs::write(
        &file,
        "[[zones.\"gslb.example\".secondaries]]\naddress = \"x\"\nkey = \"k\"\n",
    )
    .unwrap();
    let out = dns_command(addr, dir.path())
        .arg("--secondaries")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("zones.\"gslb.example\".secondaries[0].address"),
        "{err}"
    );
    assert!(
        err.contains("secondaries[0].key: no key \"k\" under [keys]"),
        "{err}"
    );
}
