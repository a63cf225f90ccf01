//! `meridian proxy` as real processes: two regions' proxies in front of loopback origins; the local
//! origin dies and requests cross to the other region; SIGINT stops a proxy within its grace period; a new
//! GeoIP database file moves a decision without a restart.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use meridian_proxy::testing::{Origin, get};

use crate::support::{Interrupted, free_tcp_port, http_get, stderr};

/// Two regions' proxies (waw, fra) in front of one origin each, `api.gslb.example` served by both.
pub(crate) fn config(origins: [SocketAddr; 2], proxies: [SocketAddr; 2]) -> String {
    format!(
        r#"schema-version = 1
[proxy]
trusted-proxies = ["127.0.0.1/32"]

[regions.waw]
name = "Warsaw"
lat = 52.23
lon = 21.01
country = "PL"
jurisdictions = ["eu"]
ipv4 = ["192.0.2.1"]
capacity = 100
proxy-address = "{}"

[regions.fra]
name = "Frankfurt"
lat = 50.11
lon = 8.68
country = "DE"
jurisdictions = ["eu"]
ipv4 = ["192.0.2.2"]
capacity = 100
proxy-address = "{}"

[zones."gslb.example"]
ns = ["ns1.gslb.example."]
[zones."gslb.example".soa]
mname = "ns1.gslb.example."
rname = "hostmaster.gslb.example."
[[zones."gslb.example".records]]
name = "ns1"
type = "A"
data = "203.0.113.53"

[services.api]
hostname = "api.gslb.example"
policy = "nearest"
regions = ["waw", "fra"]

[services.api.backends]
waw = ["{}"]
fra = ["{}"]
"#,
        proxies[0], proxies[1], origins[0], origins[1]
    )
}

fn proxy(region: &str, listen: SocketAddr, file: &std::path::Path, data: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_meridian"));
    c.args([
        "proxy",
        "--region",
        region,
        "--listen",
        &listen.to_string(),
        "--grace-period",
        "2",
    ])
    .arg("--config")
    .arg(file)
    .arg("--data-dir")
    .arg(data)
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    c
}

fn wait_until_serving(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(addr).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing answers on {addr}");
}

#[test]
fn two_region_proxies_fail_over_and_stop_on_sigint() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let waw_origin = rt.block_on(Origin::start("waw")).unwrap();
    let fra_origin = rt.block_on(Origin::start("fra")).unwrap();
    let p_waw: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    let p_fra: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("meridian.toml");
    std::fs::write(&file, config([waw_origin.addr, fra_origin.addr], [p_waw, p_fra])).unwrap();
    let mut waw = Interrupted(
        proxy("waw", p_waw, &file, &dir.path().join("d1"))
            .args(["--metrics-listen", &metrics.to_string()])
            .spawn()
            .unwrap(),
    );
    let _fra = Interrupted(
        proxy("fra", p_fra, &file, &dir.path().join("d2"))
            .spawn()
            .unwrap(),
    );
    wait_until_serving(p_waw);
    wait_until_serving(p_fra);
    let client = [("x-forwarded-for", "83.1.2.3")];

    let r = rt.block_on(get(p_waw, "api.gslb.example", &client)).unwrap();
    assert_eq!(
        (r.status, r.header("x-meridian-region")),
        (200, Some("waw")),
        "{r:?}"
    );

    // The local origin dies: the next GETs are served by fra, through fra's proxy process.
    waw_origin.kill();
    for _ in 0..5 {
        let r = rt.block_on(get(p_waw, "api.gslb.example", &client)).unwrap();
        assert_eq!(
            (r.status, r.header("x-meridian-region")),
            (200, Some("fra")),
            "{r:?}"
        );
        assert!(r.body.contains("x-meridian-hop=waw"), "{}", r.body);
    }
    let (status, body) = http_get(metrics, "/metrics");
    assert_eq!(status, 200);
    assert!(
        body.contains(
            "meridian_proxy_requests_total{region=\"waw\",served_by=\"fra\",service=\"api\",status=\"200\"} 5"
        ),
        "{body}"
    );
    assert!(body.contains("meridian_proxy_spills_total"), "{body}");

    // SIGINT: the proxy stops within its grace period (2 s) and its port closes.
    let started = Instant::now();
    let status = waw.interrupt();
    let took = started.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(4), "took {took:?}");
    assert!(std::net::TcpStream::connect(p_waw).is_err(), "the port is closed");
}

#[test]
fn refuses_an_unknown_region_and_a_taken_port() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("meridian.toml");
    let a: SocketAddr = "127.0.0.1:9".parse().unwrap();
    std::fs::write(&file, config([a, a], [a, a])).unwrap();
    let listen: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    let out = proxy("nowhere", listen, &file, &dir.path().join("d"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("--region \"nowhere\": not a region"),
        "{}",
        stderr(&out)
    );

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let out = proxy("waw", addr, &file, &dir.path().join("d")).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("cannot listen on {addr}")),
        "{}",
        stderr(&out)
    );
}

/// Virginia and Warsaw, with a residency rule keeping Polish clients in EU-jurisdiction regions: where a
/// client is located decides whether Virginia's proxy serves it or relays it to Warsaw.
fn residency_config(origins: [SocketAddr; 2], proxies: [SocketAddr; 2]) -> String {
    format!(
        r#"schema-version = 1
[proxy]
trusted-proxies = ["127.0.0.1/32"]

[regions.vin]
name = "Virginia"
lat = 38.95
lon = -77.45
country = "US"
jurisdictions = ["us"]
ipv4 = ["192.0.2.1"]
capacity = 100
proxy-address = "{}"

[regions.waw]
name = "Warsaw"
lat = 52.23
lon = 21.01
country = "PL"
jurisdictions = ["eu"]
ipv4 = ["192.0.2.2"]
capacity = 100
proxy-address = "{}"

[residency.gdpr]
country-groups = ["EEA"]
jurisdiction = "eu"

[zones."gslb.example"]
ns = ["ns1.gslb.example."]
[zones."gslb.example".soa]
mname = "ns1.gslb.example."
rname = "hostmaster.gslb.example."
[[zones."gslb.example".records]]
name = "ns1"
type = "A"
data = "203.0.113.53"

[services.api]
hostname = "api.gslb.example"
policy = "nearest"
regions = ["vin", "waw"]
residency = ["gdpr"]

[services.api.backends]
vin = ["{}"]
waw = ["{}"]
"#,
        proxies[0], proxies[1], origins[0], origins[1]
    )
}

/// A GeoIP database placing 8.8.8.0/24 (the client the requests name in X-Forwarded-For) in `country`.
fn country_db(country: &'static str) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Cc {
        country_code: &'static str,
    }
    let mut w = mmdb_writer::Writer::new("dbip-country");
    w.insert(
        "8.8.8.0/24".parse::<ipnet::IpNet>().unwrap(),
        &Cc {
            country_code: country,
        },
    )
    .unwrap();
    w.to_bytes().unwrap()
}

#[test]
fn a_new_geoip_file_moves_proxy_decisions_without_a_restart() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let vin_origin = rt.block_on(Origin::start("vin")).unwrap();
    let waw_origin = rt.block_on(Origin::start("waw")).unwrap();
    let p_vin: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    let p_waw: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("meridian.toml");
    std::fs::write(
        &file,
        residency_config([vin_origin.addr, waw_origin.addr], [p_vin, p_waw]),
    )
    .unwrap();
    let db = dir.path().join("geo.mmdb");
    std::fs::write(&db, country_db("US")).unwrap();
    let _vin = Interrupted(
        proxy("vin", p_vin, &file, &dir.path().join("d1"))
            .arg("--geoip")
            .arg(&db)
            .args(["--geoip-check-interval", "0.2"])
            .spawn()
            .unwrap(),
    );
    let _waw = Interrupted(
        proxy("waw", p_waw, &file, &dir.path().join("d2"))
            .spawn()
            .unwrap(),
    );
    wait_until_serving(p_vin);
    wait_until_serving(p_waw);
    let client = [("x-forwarded-for", "8.8.8.8")];

    // A client in the US by this database: Virginia serves it.
    let r = rt.block_on(get(p_vin, "api.gslb.example", &client)).unwrap();
    assert_eq!(
        (r.status, r.header("x-meridian-region")),
        (200, Some("vin")),
        "{r:?}"
    );

    // Written aside and renamed over, as deployment tools do: now the client is in Poland, and residency
    // sends it to Warsaw through Virginia's proxy, without a restart.
    let new = dir.path().join("geo.mmdb.new");
    std::fs::write(&new, country_db("PL")).unwrap();
    std::fs::rename(&new, &db).unwrap();
    let start = Instant::now();
    loop {
        let r = rt.block_on(get(p_vin, "api.gslb.example", &client)).unwrap();
        if r.header("x-meridian-region") == Some("waw") {
            assert_eq!(
                (r.status, r.header("x-meridian-reason")),
                (200, Some("residency")),
                "{r:?}"
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the proxy kept the old database: {r:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
