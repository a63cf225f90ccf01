//! Operators at a terminal: real `meridian dns --admin-listen` nodes (embedded store and etcd) and the CLI
//! as real processes. Weights move DNS answer shares; a drill moves DNS answers and proxy routing and
//! they return at expiry; `drill run` proves failover and rolls back (on success, on Ctrl-C) and a drill
//! whose CLI was SIGKILLed still ends; concurrent edits: one wins, the other gets a conflict; no token:
//! 401; safety refusals and --force; unknown regions, bad arguments and unreachable servers fail clearly.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RData, RecordType};
use meridian_store::testing::EtcdServer;

use crate::support::{
    Interrupted, example, free_tcp_port, free_udp_port, http_get, meridian, stderr, stdout,
};

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// Which store the node uses.
enum Backend {
    Embedded,
    Etcd,
}

/// A running `meridian dns` with the admin API, and what it needs alive.
struct Node {
    dns: SocketAddr,
    admin: SocketAddr,
    _process: Interrupted,
    _etcd: Option<EtcdServer>,
    dir: tempfile::TempDir,
}

impl Node {
    fn start(backend: Backend) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), format!("{TOKEN}\n")).unwrap();
        let dns: SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
        let mut c = meridian();
        c.args(["dns", "--config", example().to_str().unwrap(), "--rrl-rate", "0"])
            .args(["--listen", &dns.to_string(), "--admin-listen", &admin.to_string()])
            .arg("--admin-token-file")
            .arg(dir.path().join("token"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let etcd = match backend {
            Backend::Embedded => {
                c.arg("--data-dir").arg(dir.path().join("data"));
                None
            }
            Backend::Etcd => {
                let e = EtcdServer::start();
                c.args(["--etcd", &e.client_url]);
                Some(e)
            }
        };
        let process = Interrupted(c.spawn().unwrap());
        let start = Instant::now();
        // Ready: the admin API answers (401 without a token) and DNS answers.
        while http_get(admin, "/v1/status").0 != 401 || answer(dns, "meet", "83.0.0.1").is_empty() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "node not ready within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            dns,
            admin,
            _process: process,
            _etcd: etcd,
            dir,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.admin)
    }

    /// The CLI pointed at this node, with the token in the environment.
    fn cli(&self) -> Command {
        let mut c = meridian();
        c.env("MERIDIAN_SERVER", self.url())
            .env("MERIDIAN_TOKEN", TOKEN)
            .env("MERIDIAN_DATA_DIR", self.dir.path().join("nowhere"));
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cli().args(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(o.status.success(), "{args:?}: {}{}", stdout(&o), stderr(&o));
        stdout(&o)
    }
}

/// The regions (by first A record's region) a DNS query for `service` from `client` (ECS) answers.
fn answer(dns: SocketAddr, service: &str, client: &str) -> Vec<String> {
    let mut m = Message::new(9, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(
        Name::from_ascii(format!("{service}.gslb.example.")).unwrap(),
        RecordType::A,
    ));
    let mut e = Edns::new();
    e.options_mut().insert(EdnsOption::Subnet(ClientSubnet::new(
        client.parse::<IpAddr>().unwrap(),
        24,
        0,
    )));
    m.set_edns(e);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    sock.send_to(&m.to_vec().unwrap(), dns).unwrap();
    let mut buf = [0u8; 4096];
    let Ok((n, _)) = sock.recv_from(&mut buf) else {
        return Vec::new();
    };
    let Ok(reply) = Message::from_vec(&buf[..n]) else {
        return Vec::new();
    };
    let mut regions = Vec::new();
    for r in &reply.answers {
        if let RData::A(a) = &r.data {
            let region = region_of(&a.0.to_string());
            if !regions.contains(&region) {
                regions.push(region);
            }
        }
    }
    regions
}

/// The example configuration's addresses, back to region ids.
fn region_of(ip: &str) -> String {
    let config = meridian_config::Config::load(&example()).unwrap();
    config
        .regions()
        .iter()
        .find(|r| r.ipv4.iter().any(|a| a.to_string() == ip))
        .map_or_else(|| ip.to_owned(), |r| r.id.clone())
}

/// Waits until the first answered region for `client` is `want`; returns how long it took.
fn wait_answer(dns: SocketAddr, client: &str, want: &str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let got = answer(dns, "meet", client);
        if got.first().is_some_and(|r| r == want) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{client} still gets {got:?}, not {want}, after {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A stand-in for a regional proxy on loopback: every response carries `x-meridian-region`, the region
/// a Polish client is steered to right now (asked of the live DNS node), as the real proxy will say which
/// region served. Stops when dropped.
struct FakeProxy {
    url: String,
    stop: Arc<AtomicBool>,
}

impl FakeProxy {
    fn start(dns: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let Ok((mut s, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let served = answer(dns, "meet", "83.0.0.1")
                    .first()
                    .cloned()
                    .unwrap_or_default();
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nx-meridian-region: {served}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                );
            }
        });
        Self { url, stop }
    }
}

impl Drop for FakeProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Share of French client networks whose first answered region for `api` is `region`.
fn share(dns: SocketAddr, region: &str) -> f64 {
    let n = 120;
    let hits = (0..n)
        .filter(|k| {
            answer(dns, "api", &format!("90.1.{k}.0"))
                .first()
                .is_some_and(|r| r == region)
        })
        .count();
    hits as f64 / f64::from(n)
}

fn weights_move_dns_shares(node: &Node) {
    let before = share(node.dns, "sbg");
    let out = node.ok(&[
        "region",
        "set-weight",
        "sbg",
        "10000",
        "--reason",
        "take the French traffic",
    ]);
    assert!(out.contains("weight of sbg set to 10000"), "{out}");
    let after = share(node.dns, "sbg");
    assert!(after > before + 0.3, "sbg share {before} -> {after}");
    let status = node.ok(&["status"]);
    assert!(status.contains("10000*"), "{status}");
    assert!(status.contains("take the French traffic"), "{status}");
    node.ok(&["region", "clear-weight", "sbg"]);
    let back = share(node.dns, "sbg");
    assert!(
        (back - before).abs() < 1e-9,
        "back to the configured weights: {before} vs {back}"
    );
}

fn drill_moves_dns_and_proxy_and_expires(node: &Node) {
    let proxy = FakeProxy::start(node.dns);
    // drill run: proves failover through DNS and the proxy, then rolls back.
    let o = node.run(&[
        "drill",
        "run",
        "--region",
        "waw",
        "--mode",
        "down",
        "--for",
        "1m",
        "--reason",
        "prove it",
        "--dns",
        &node.dns.to_string(),
        "--proxy",
        &proxy.url,
        "--timeout",
        "10s",
    ]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(
        out.contains("dns PL 83.0.0.1") && out.contains("waw -> fra"),
        "{out}"
    );
    assert!(out.contains(&format!("proxy {}", proxy.url)), "{out}");
    assert!(
        out.contains("failover 2/2 moved") && out.contains("return 2/2 back"),
        "{out}"
    );
    assert!(out.contains("PASS"), "{out}");
    assert!(node.ok(&["drill", "list"]).contains("no drills"), "rolled back");

    // A drill nobody stops ends at its expiry: answers return with no store event.
    let out = node.ok(&[
        "drill", "start", "--region", "waw", "--mode", "down", "--for", "2s", "--reason", "expiry",
    ]);
    assert!(out.contains("started"), "{out}");
    wait_answer(node.dns, "83.0.0.1", "fra", Duration::from_secs(2));
    let (_, header) = meridian_header(&proxy.url);
    assert_eq!(header, "fra", "the proxy serves from fra during the drill");
    let listed = node.ok(&["drill", "list"]);
    assert!(listed.contains("waw") && listed.contains("down"), "{listed}");
    wait_answer(node.dns, "83.0.0.1", "waw", Duration::from_secs(4));
    assert_eq!(meridian_header(&proxy.url).1, "waw");
}

fn meridian_header(url: &str) -> (u16, String) {
    let addr: SocketAddr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET / HTTP/1.1\r\nHost: meet.gslb.example\r\n\r\n").unwrap();
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    let header = raw
        .lines()
        .find_map(|l| l.strip_prefix("x-meridian-region: "))
        .unwrap_or_default()
        .to_owned();
    (raw.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0), header)
}

/// `drill run` holding its drill, waiting until it says so.
fn drill_run_holding(node: &Node, duration: &str) -> Child {
    let mut child = node
        .cli()
        .args([
            "drill",
            "run",
            "--region",
            "waw",
            "--mode",
            "down",
            "--for",
            duration,
            "--reason",
            "kill test",
        ])
        .args([
            "--dns",
            &node.dns.to_string(),
            "--client",
            "83.0.0.1",
            "--hold",
            "10m",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let start = Instant::now();
    loop {
        let line = lines.next().expect("drill run ended early").unwrap();
        if line.starts_with("holding the drill") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "no hold");
    }
    // Keep reading, so the CLI never writes into a closed pipe.
    std::thread::spawn(move || for _ in lines {});
    child
}

fn killed_cli_still_rolls_back(node: &Node) {
    let mut child = drill_run_holding(node, "3s");
    assert_eq!(answer(node.dns, "meet", "83.0.0.1"), ["fra"]);
    child.kill().unwrap(); // SIGKILL: no chance to roll back
    child.wait().unwrap();
    assert_eq!(
        answer(node.dns, "meet", "83.0.0.1"),
        ["fra"],
        "the drill outlives its CLI..."
    );
    wait_answer(node.dns, "83.0.0.1", "waw", Duration::from_secs(5)); // ...until its expiry

    // Ctrl-C rolls back at once (long before a 10-minute expiry) and exits 130.
    let mut guard = Interrupted(drill_run_holding(node, "10m"));
    let status = guard.interrupt();
    assert_eq!(status.code(), Some(130));
    let mut err = String::new();
    guard.0.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(err.contains("interrupted: rolling back"), "{err}");
    wait_answer(node.dns, "83.0.0.1", "waw", Duration::from_secs(2));
    assert!(node.ok(&["drill", "list"]).contains("no drills"));
}

fn concurrent_edits_one_wins(node: &Node) {
    let status = node.ok(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    let rev = v["revision"].as_i64().unwrap().to_string();
    let spawn = |w: &str| {
        node.cli()
            .args([
                "region",
                "set-weight",
                "lon",
                w,
                "--reason",
                "mine",
                "--expect-revision",
                &rev,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn("11"), spawn("22"));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert_ne!(
        a.status.success(),
        b.status.success(),
        "exactly one wins: {a:?} {b:?}"
    );
    let (winner, loser) = if a.status.success() { ("11", b) } else { ("22", a) };
    let err = stderr(&loser);
    assert_eq!(loser.status.code(), Some(1));
    assert!(err.contains("conflict:"), "{err}");
    assert!(
        err.contains(&format!("\"weight\":{winner}")),
        "names the current value: {err}"
    );
    let v: serde_json::Value = serde_json::from_str(&node.ok(&["status", "--json"])).unwrap();
    let lon = v["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "lon")
        .unwrap();
    assert_eq!(lon["weight"].to_string(), winner);
}

fn refusals_and_errors(node: &Node) {
    // No token: 401, exit 1, a message saying what to do.
    let o = meridian()
        .args(["status", "--server", &node.url()])
        .env_remove("MERIDIAN_TOKEN")
        .env("MERIDIAN_DATA_DIR", node.dir.path().join("nowhere"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("refused the request: authentication required"),
        "{}",
        stderr(&o)
    );
    let bad = node.dir.path().join("bad-token");
    std::fs::write(&bad, "wrong-token-wrong-token").unwrap();
    let o = node.run(&["status", "--token-file", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not valid"), "{}", stderr(&o));

    // Unknown region; bad arguments; an unreachable server.
    let o = node.run(&["region", "drain", "xyz", "--reason", "r"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("unknown region \"xyz\" (known: waw, fra"),
        "{}",
        stderr(&o)
    );
    let o = node.run(&["region", "set-weight", "waw", "heavy", "--reason", "r"]);
    assert_eq!(o.status.code(), Some(2), "clap: a bad command line");
    let o = node.run(&[
        "drill", "start", "--region", "waw", "--mode", "sideways", "--for", "1m", "--reason", "r",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("expected down, drain or capacity=PCT"),
        "{}",
        stderr(&o)
    );
    let o = node.run(&[
        "drill", "start", "--region", "waw", "--mode", "down", "--for", "soon", "--reason", "r",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let o = node.run(&["region", "drain", "waw"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("--reason: a reason is required (it goes to the audit log)"),
        "{}",
        stderr(&o)
    );
    // The CLI checks first by the rules the configuration and the server apply: no round trip for a typo.
    let o = node.run(&["region", "drain", "WAW_1", "--reason", "r"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(
            "region id \"WAW_1\" must start with a lower-case letter and contain only a-z, 0-9 and '-'"
        ),
        "{}",
        stderr(&o)
    );
    let o = node.run(&["region", "set-weight", "waw", "10001", "--reason", "r"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("weight 10001 is above the maximum 10000"),
        "{}",
        stderr(&o)
    );
    let dead = format!("http://127.0.0.1:{}", free_tcp_port());
    let o = node.run(&["status", "--server", &dead]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(&format!("cannot reach the admin API at {dead}")),
        "{}",
        stderr(&o)
    );
    let o = node.run(&["drill", "stop", "no-such-drill"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no drill \"no-such-drill\""),
        "{}",
        stderr(&o)
    );

    // Safety: files (waw, fra) may not lose both; --force does it, and the audit log says so.
    node.ok(&["region", "drain", "waw", "--reason", "rack move"]);
    let o = node.run(&["region", "drain", "fra", "--reason", "too"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("refused") && err.contains("service files would have no usable region left"),
        "{err}"
    );
    assert!(err.contains("--force"), "{err}");
    let o = node.run(&["region", "drain", "fra", "--reason", "too", "--force"]);
    assert!(o.status.success());
    assert!(
        stderr(&o).contains("warning: forced past a safety check"),
        "{}",
        stderr(&o)
    );
    node.ok(&["region", "undrain", "fra"]);
    node.ok(&["region", "undrain", "waw", "--reason", "rack moved"]);

    // Live explain prints the same report as the file-based one.
    let live = node.ok(&["explain", "meet", "--client", "83.0.0.1"]);
    let file = crate::support::run(&[
        "explain",
        "--config",
        example().to_str().unwrap(),
        "meet",
        "--client",
        "83.0.0.1",
    ]);
    assert_eq!(live, stdout(&file));
}

macro_rules! battery {
    ($name:ident, $backend:expr) => {
        mod $name {
            use super::*;

            #[test]
            fn weights_move_dns_shares() {
                super::weights_move_dns_shares(&Node::start($backend));
            }

            #[test]
            fn drill_moves_dns_and_proxy_and_expires() {
                super::drill_moves_dns_and_proxy_and_expires(&Node::start($backend));
            }

            #[test]
            fn killed_cli_still_rolls_back() {
                super::killed_cli_still_rolls_back(&Node::start($backend));
            }

            #[test]
            fn concurrent_edits_one_wins() {
                super::concurrent_edits_one_wins(&Node::start($backend));
            }

            #[test]
            fn refusals_and_errors() {
                super::refusals_and_errors(&Node::start($backend));
            }
        }
    };
}

battery!(embedded, Backend::Embedded);
battery!(etcd, Backend::Etcd);

#[test]
fn admin_api_needs_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let o = meridian()
        .args(["dns", "--config", example().to_str().unwrap(), "--listen"])
        .arg(format!("127.0.0.1:{}", free_udp_port()))
        .args(["--admin-listen", &format!("127.0.0.1:{}", free_tcp_port())])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env_remove("MERIDIAN_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("--admin-listen needs a token"),
        "{}",
        stderr(&o)
    );
    let o = meridian()
        .args(["dns", "--config", example().to_str().unwrap(), "--listen"])
        .arg(format!("127.0.0.1:{}", free_udp_port()))
        .args([
            "--admin-listen",
            &format!("0.0.0.0:{}", free_tcp_port()),
            "--admin-insecure-no-auth",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("only loopback"), "{}", stderr(&o));
}
