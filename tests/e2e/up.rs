//! `meridian up` as a real process: the whole system on one machine, from a newcomer's point of view.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::{Interrupted, a_records, ask, free_tcp_port, free_udp_port, http_get, stderr};

/// GET / with a Host header: (status, head, body).
pub(crate) fn http_get_host(addr: SocketAddr, host: &str) -> (u16, String, String) {
    http_get_with(addr, host, "")
}

/// GET / with a Host header and `extra` header lines (each ending in CRLF): (status, head, body).
fn http_get_with(addr: SocketAddr, host: &str, extra: &str) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, format!("{head}\n"), body.to_owned())
}

/// Addresses `meridian up` is told to use (free ports, so tests run side by side).
pub(crate) struct Ports {
    pub(crate) dns: SocketAddr,
    pub(crate) metrics: SocketAddr,
    pub(crate) admin: SocketAddr,
}

impl Ports {
    pub(crate) fn free() -> Self {
        Self {
            dns: format!("127.0.0.1:{}", free_udp_port()).parse().unwrap(),
            metrics: format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap(),
            admin: format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap(),
        }
    }
}

fn up_command(ports: &Ports, dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_meridian"));
    c.args([
        "up",
        "--dns-listen",
        &ports.dns.to_string(),
        "--metrics-listen",
        &ports.metrics.to_string(),
        "--admin-listen",
        &ports.admin.to_string(),
        "--proxy-port",
        "0",
        "--https-port",
        "0",
        "--data-dir",
    ])
    .arg(dir);
    c
}

/// Starts `meridian up` and waits for its "ready" banner; returns the process and the banner.
fn start(ports: &Ports, dir: &std::path::Path) -> (Interrupted, String) {
    start_with(ports, dir, &[])
}

/// [`start`] with more arguments.
pub(crate) fn start_with(ports: &Ports, dir: &std::path::Path, extra: &[&str]) -> (Interrupted, String) {
    let mut command = up_command(ports, dir);
    command.args(extra);
    start_command(command)
}

/// `meridian up` on `ports` with its state in etcd at `etcd` (`--etcd`); the admin token and the demo CA
/// still live in a data directory, `data` (`$MERIDIAN_DATA_DIR`).
pub(crate) fn up_on_etcd(ports: &Ports, etcd: &str, data: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_meridian"));
    c.args(["up", "--dns-listen", &ports.dns.to_string()])
        .args(["--metrics-listen", &ports.metrics.to_string()])
        .args(["--admin-listen", &ports.admin.to_string()])
        .args(["--proxy-port", "0", "--https-port", "0", "--etcd", etcd])
        .env("MERIDIAN_DATA_DIR", data);
    c
}

/// Starts `command` (a `meridian up`) and waits for its "ready" banner; returns the process and the banner.
pub(crate) fn start_command(mut command: Command) -> (Interrupted, String) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let guard = Interrupted(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut banner = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("no end of the ready banner within 30 s; so far:\n{banner}"));
        banner.push_str(&line);
        banner.push('\n');
        if line.starts_with("Ctrl-C stops everything") {
            break;
        }
    }
    assert!(banner.starts_with("meridian up: ready"), "{banner}");
    (guard, banner)
}

#[test]
fn runs_the_whole_system_and_stops_on_sigint() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let (mut up, banner) = start(&ports, dir.path());
    assert!(
        banner.contains(&format!("kdig @127.0.0.1 -p {}", ports.dns.port())),
        "{banner}"
    );

    // Clients in four countries, located by ECS, get their region (first address of each region).
    for (subnet, region, first) in [
        ("83.0.0.0", "Poland -> waw", "192.0.2.10"),
        ("217.0.0.0", "Germany -> fra", "192.0.2.20"),
        ("81.2.69.0", "the UK -> lon", "192.0.2.30"),
        ("24.48.0.0", "Canada -> bhs", "198.51.100.10"),
    ] {
        let m = ask(ports.dns, "meet.gslb.example.", subnet).expect("DNS answers once ready");
        assert_eq!(a_records(&m).first().map(String::as_str), Some(first), "{region}");
    }

    // The probers see every demo origin: every region is up, from every vantage point.
    let start = Instant::now();
    loop {
        let (status, body) = http_get(ports.metrics, "/metrics");
        let up_regions = body
            .lines()
            .filter(|l| l.starts_with("meridian_health_region_state{") && l.ends_with(" 1"))
            .count();
        if status == 200 && up_regions == 8 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "regions never all up by the probers:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Through Warsaw's proxy: served by Warsaw's demo origin, and the proxy says so.
    let waw = proxy_of(&banner, "waw");
    let (status, head, body) = http_get_host(waw, "meet.gslb.example");
    assert_eq!(status, 200, "{head}{body}");
    assert!(
        head.to_ascii_lowercase().contains("x-meridian-region: waw"),
        "{head}"
    );
    assert!(body.contains("served by region waw"), "{body}");
    // A GET with a body reaches the demo origin and is answered.
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "5",
            "-X",
            "GET",
            "-d",
            "hello",
            "-H",
            "Host: meet.gslb.example",
        ])
        .arg(format!("http://{waw}/"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("served by region waw"),
        "{out:?}"
    );

    // HTTPS: the banner's own curl command (trusting the demo CA it made in the data directory) works,
    // over HTTP/2.
    let line = banner
        .lines()
        .find(|l| l.contains("--cacert"))
        .unwrap_or_else(|| panic!("no HTTPS command in the banner:\n{banner}"));
    assert!(
        line.contains(&format!("--cacert {}", dir.path().join("tls/ca.pem").display())),
        "{line}"
    );
    let command = line.split('#').next().unwrap().trim();
    let args: Vec<&str> = command.split_whitespace().skip(1).collect();
    let out = Command::new("curl")
        .args(&args)
        .args(["-w", "\n%{http_version}"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{command}: {text}{}", stderr(&out));
    assert!(text.contains("served by region waw"), "{text}");
    assert!(text.ends_with("\n2"), "HTTP/2 expected: {text}");

    // A short drill with the CLI: DNS answers and the proxy's routing both move away from Warsaw and back.
    let token = dir.path().join("admin-token");
    let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args([
            "drill", "run", "--region", "waw", "--mode", "down", "--for", "30s",
        ])
        .args(["--reason", "e2e: meridian up", "--dns", &ports.dns.to_string()])
        .args([
            "--proxy",
            &format!("http://{waw}/"),
            "--host",
            "meet.gslb.example",
        ])
        .args(["--server", &format!("http://{}", ports.admin)])
        .arg("--token-file")
        .arg(&token)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.contains("PASS"), "{text}");
    assert!(text.contains("proxy"), "the proxy was observed: {text}");

    let status = up.interrupt();
    assert!(status.success(), "clean exit on SIGINT: {status:?}");
    // The state persists in the data directory: the applied configuration is there.
    assert!(dir.path().join("state.json").exists());
}

/// The proxy address of `region` in the ready banner.
pub(crate) fn proxy_of(banner: &str, region: &str) -> SocketAddr {
    banner
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("region    {region}")))
        .and_then(|l| l.split("proxy http://").nth(1))
        .and_then(|r| r.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no proxy address for {region} in the banner:\n{banner}"))
}

/// A GeoIP database placing 83.0.0.0/11 (an ECS subnet the test asks DNS about) and 8.8.8.0/24 (the
/// client the test's requests name in X-Forwarded-For) in the given countries.
fn country_db(ecs_country: &'static str, forwarded_country: &'static str) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Cc {
        country_code: &'static str,
    }
    let mut w = mmdb_writer::Writer::new("dbip-country");
    for (net, cc) in [("83.0.0.0/11", ecs_country), ("8.8.8.0/24", forwarded_country)] {
        w.insert(net.parse::<ipnet::IpNet>().unwrap(), &Cc { country_code: cc })
            .unwrap();
    }
    w.to_bytes().unwrap()
}

#[test]
fn a_new_geoip_file_moves_dns_answers_and_proxy_decisions_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("geo.mmdb");
    std::fs::write(&db, country_db("PL", "US")).unwrap();
    // The reference deployment, with this test (on loopback) as the load balancer the proxies believe.
    let example = std::fs::read_to_string(crate::support::example()).unwrap();
    let trusting = example.replace(
        "trusted-proxies = [\"10.0.0.0/8\"]",
        "trusted-proxies = [\"127.0.0.0/8\"]",
    );
    assert_ne!(trusting, example, "the example's [proxy] section changed");
    let config = dir.path().join("meridian.toml");
    std::fs::write(&config, trusting).unwrap();
    let ports = Ports::free();
    let (mut up, banner) = start_with(
        &ports,
        dir.path(),
        &[
            "--config",
            config.to_str().unwrap(),
            "--geoip",
            db.to_str().unwrap(),
            "--geoip-check-interval",
            "0.2",
        ],
    );
    assert!(banner.contains("file watched (every 0.2 s"), "{banner}");
    let first = |subnet: &str| {
        let m = ask(ports.dns, "meet.gslb.example.", subnet).expect("DNS answers once ready");
        a_records(&m).first().cloned()
    };
    assert_eq!(first("83.0.0.0").as_deref(), Some("192.0.2.10"), "Poland -> waw");
    // A client in the US by this database: served in Virginia.
    let vin = proxy_of(&banner, "vin");
    let forwarded = "X-Forwarded-For: 8.8.8.8\r\n";
    let (status, head, _) = http_get_with(vin, "meet.gslb.example", forwarded);
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_ascii_lowercase().contains("x-meridian-region: vin"),
        "{head}"
    );

    // Written aside and renamed over, as deployment tools do.
    let new = dir.path().join("geo.mmdb.new");
    std::fs::write(&new, country_db("CA", "PL")).unwrap();
    std::fs::rename(&new, &db).unwrap();
    let start = Instant::now();
    while first("83.0.0.0").as_deref() != Some("198.51.100.10") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "DNS never took up the new database"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The proxies follow the same database: 8.8.8.8 is now in Poland, and `meet` keeps EU clients in the
    // EU, so Virginia's proxy relays the request to an EU region.
    let start = Instant::now();
    loop {
        let (status, head, _) = http_get_with(vin, "meet.gslb.example", forwarded);
        let head = head.to_ascii_lowercase();
        if status == 200 && head.contains("x-meridian-reason: residency") {
            assert!(
                head.contains("x-meridian-region: waw") || head.contains("x-meridian-region: fra"),
                "{head}"
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the proxy kept the old database: {head}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(up.interrupt().success());
}

#[test]
fn a_taken_port_is_a_clear_error_and_nothing_starts() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut ports = Ports::free();
    ports.metrics = taken.local_addr().unwrap();
    let out = up_command(&ports, dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&ports.metrics.to_string()) && err.contains("--metrics-listen"),
        "{err}"
    );
    // Nothing was announced, nothing answers DNS.
    assert!(ask(ports.dns, "meet.gslb.example.", "83.0.0.0").is_none());

    // The DNS port taken (by a UDP socket): named, and no configuration was written to the store.
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut ports = Ports::free();
    ports.dns = taken.local_addr().unwrap();
    let out = up_command(&ports, dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(&format!("--dns-listen {}", ports.dns)), "{err}");
    let state = std::fs::read_to_string(dir.path().join("state.json")).unwrap_or_default();
    assert!(!state.contains("meridian up"), "nothing applied: {state}");
}

/// `--https-port` one above `--proxy-port`: the second region's HTTP port is the first region's HTTPS
/// port. Refused by name before anything starts (pingora alone would have shared one socket between two
/// services, and closed it twice at shutdown).
#[test]
fn overlapping_port_ranges_are_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let first = free_tcp_port();
    let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["up", "--dns-listen", &ports.dns.to_string()])
        .args(["--metrics-listen", &ports.metrics.to_string()])
        .args(["--admin-listen", &ports.admin.to_string()])
        .args(["--proxy-port", &first.to_string()])
        .args(["--https-port", &(first + 1).to_string()])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("127.0.0.1:{} is given to two listeners", first + 1)),
        "{err}"
    );
    let state = std::fs::read_to_string(dir.path().join("state.json")).unwrap_or_default();
    assert!(!state.contains("meridian up"), "nothing applied: {state}");
}

#[test]
fn serves_dns_over_tls_and_https_with_a_demo_ca_certificate_and_the_banner_says_how() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let (dot, doh) = (free_tcp_port(), free_tcp_port());
    let (mut up, banner) = start_with(
        &ports,
        dir.path(),
        &[
            "--dns-tls-listen",
            &format!("127.0.0.1:{dot}"),
            "--dns-https-listen",
            &format!("127.0.0.1:{doh}"),
        ],
    );
    let ca = dir.path().join("tls").join("ca.pem");
    assert!(banner.contains(&format!("DoT       127.0.0.1:{dot}")), "{banner}");
    assert!(banner.contains(&format!("+tls-ca={}", ca.display())), "{banner}");
    // The banner's own commands, run as printed.
    for line in banner
        .lines()
        .filter(|l| l.contains("kdig") && (l.contains("+tls ") || l.contains("+https ")))
    {
        let command = line.trim().split("    #").next().unwrap();
        let args: Vec<&str> = command.split_whitespace().skip(1).collect();
        let out = Command::new("kdig").args(&args).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            text.split_whitespace().collect::<Vec<_>>(),
            ["192.0.2.10", "192.0.2.11"],
            "{command}: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        banner
            .lines()
            .filter(|l| l.contains("kdig") && (l.contains("+tls ") || l.contains("+https ")))
            .count(),
        2,
        "{banner}"
    );
    assert!(up.interrupt().success());
}

#[test]
fn runs_signed_with_dnssec_and_says_how_to_validate() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let (mut up, banner) = start_with(&ports, dir.path(), &["--dnssec"]);
    // The banner gives the DS record and a delv command with the trust anchor it wrote.
    assert!(banner.contains("gslb.example. 3600 IN DS "), "{banner}");
    let delv = banner
        .lines()
        .find(|l| l.trim_start().starts_with("delv @"))
        .unwrap_or_else(|| panic!("no delv command:\n{banner}"));
    let command = delv.split('#').next().unwrap();
    let args: Vec<&str> = command.split_whitespace().collect();
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("; fully validated"), "{command}:\n{text}");
    assert!(up.interrupt().success());

    // The key is kept: a second run signs with the same one (the DS does not change). On new ports: the
    // first run's were free when it started, and another test may hold them by now.
    let ds = |b: &str| b.lines().find(|l| l.contains(" IN DS ")).map(str::to_owned);
    let (_again, banner2) = start_with(&Ports::free(), dir.path(), &["--dnssec"]);
    assert_eq!(ds(&banner), ds(&banner2));
}
