//! Health per zone with the real binary (docs/deployment.md, "The Atlantic cut"): `--health-etcd` on
//! `meridian health` and `meridian dns`, against two real etcd servers — the global one and the zone's.
//! The prober's opinions land in the zone's store only; the DNS node's status shows them, says it is
//! connected to both, and keeps showing health from the zone when the global store is gone. Bad flags are
//! clear errors.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meridian_probe::testing::Endpoint;
use meridian_store::testing::EtcdServer;
use meridian_store::{DEFAULT_PREFIX, EtcdOptions, EtcdStore, Keys, KvStore};

use crate::support::{Interrupted, free_tcp_port, free_udp_port, meridian, run, stderr};

#[test]
fn bad_health_store_flags_are_clear_errors() {
    let cases: [(&[&str], &str); 3] = [
        (
            &["health", "--vantage", "v1", "--health-etcd", "http://127.0.0.1:9"],
            "--health-etcd needs --etcd",
        ),
        (
            &[
                "health",
                "--vantage",
                "v1",
                "--etcd",
                "http://127.0.0.1:9",
                "--health-etcd",
                "http://127.0.0.1:9",
            ],
            "--health-etcd http://127.0.0.1:9: also given to --etcd",
        ),
        (
            &[
                "dns",
                "--etcd",
                "http://127.0.0.1:9",
                "--health-etcd",
                "127.0.0.1:8",
            ],
            "--health-etcd \"127.0.0.1:8\": expected a URL",
        ),
    ];
    for (args, expected) in cases {
        let out = run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(expected), "{args:?}: {}", stderr(&out));
    }
}

fn regions(admin: SocketAddr, token: &str) -> Option<serde_json::Value> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(admin).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(
        s,
        "GET /v1/regions HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (_, body) = raw.split_once("\r\n\r\n")?;
    serde_json::from_str(body).ok()
}

fn status_doc(admin: SocketAddr, token: &str) -> Option<serde_json::Value> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(admin).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET /v1/status HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (_, body) = raw.split_once("\r\n\r\n")?;
    serde_json::from_str(body).ok()
}

fn health_of(regions: &serde_json::Value, id: &str) -> Option<String> {
    regions["regions"]
        .as_array()?
        .iter()
        .find(|r| r["id"] == id)
        .and_then(|r| r["health"]["state"].as_str())
        .map(str::to_owned)
}

fn until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opinions_go_to_the_zone_and_survive_the_global_store() {
    let mut global = EtcdServer::start();
    let zone = EtcdServer::start();
    let mut endpoints = [Endpoint::start().await, Endpoint::start().await];
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("meridian.toml");
    let mut text = String::from("schema-version = 1\n[health]\npanic-below-percent = 0\n");
    for (i, (id, e)) in ["a", "b"].iter().zip(&endpoints).enumerate() {
        text.push_str(&format!(
            "[regions.{id}]\nname = \"{id}\"\nlat = {}\nlon = 0\ncountry = \"DE\"\nipv4 = [\"192.0.2.{}\"]\ncapacity = 10\n\
             [[regions.{id}.health-checks]]\nkind = \"http\"\nurl = \"{}\"\ninterval-ms = 200\ntimeout-ms = 150\n",
            10 * i,
            i + 1,
            e.url()
        ));
    }
    std::fs::write(&file, text).unwrap();
    let token = "zone-e2e-token-0123456789abcdef";
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let both = |c: &mut std::process::Command| {
        c.arg("--config")
            .arg(&file)
            .args(["--etcd", &global.client_url, "--health-etcd", &zone.client_url]);
    };
    let mut prober = meridian();
    prober.args(["health", "--vantage", "v1", "--lease-ttl-ms", "2000"]);
    both(&mut prober);
    let _prober = Interrupted(
        prober
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let admin: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    let mut dns = meridian();
    dns.args([
        "dns",
        "--listen",
        &format!("127.0.0.1:{}", free_udp_port()),
        "--admin-listen",
        &admin.to_string(),
        "--admin-token-file",
    ])
    .arg(&token_file);
    both(&mut dns);
    let _dns = Interrupted(dns.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());

    until(
        "both regions up in the DNS node's view",
        Duration::from_secs(15),
        || {
            regions(admin, token).is_some_and(|s| {
                health_of(&s, "a").as_deref() == Some("up") && health_of(&s, "b").as_deref() == Some("up")
            })
        },
    );
    // The opinions are in the zone's store, not the global one.
    let keys = Keys::new(DEFAULT_PREFIX).unwrap();
    let open = |url: &str| -> Arc<dyn KvStore> {
        Arc::new(EtcdStore::new(EtcdOptions::new(vec![url.to_owned()])).unwrap())
    };
    let in_zone = open(&zone.client_url).get(&keys.health("a", "v1")).await.unwrap();
    let in_global = open(&global.client_url)
        .get(&keys.health("a", "v1"))
        .await
        .unwrap();
    assert!(in_zone.is_some(), "the prober's opinion is in the zone's store");
    assert!(in_global.is_none(), "and not in the global store");
    let st = status_doc(admin, token).unwrap();
    assert_eq!(st["connected"], true, "{st}");
    assert_eq!(st["health_store"]["connected"], true, "{st}");

    // The global store goes: a region failing is still seen, from the zone's store.
    global.kill();
    endpoints[0].kill();
    until(
        "a down with the global store gone",
        Duration::from_secs(10),
        || regions(admin, token).is_some_and(|s| health_of(&s, "a").as_deref() == Some("down")),
    );
    let st = status_doc(admin, token).unwrap();
    assert_eq!(st["connected"], false, "{st}");
    assert_eq!(st["health_store"]["connected"], true, "{st}");
    let regions = regions(admin, token).unwrap();
    assert_eq!(health_of(&regions, "b").as_deref(), Some("up"), "{regions}");
    // What an operator sees: the global store unreachable, the zone's health store in sync.
    let out = meridian()
        .args(["status", "--server", &format!("http://{admin}"), "--token-file"])
        .arg(&token_file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("STORE UNREACHABLE: serving the last snapshot"),
        "{text}"
    );
    let health_line = text
        .lines()
        .find(|l| l.starts_with("health store: revision"))
        .unwrap_or_else(|| panic!("no health store line: {text}"));
    assert!(!health_line.contains("UNREACHABLE"), "{text}");
}
