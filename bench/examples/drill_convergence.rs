//! Time from `drill start` through the admin API to a DNS answer changing, and from `drill stop` to it
//! returning, on the embedded store and on a real etcd (Debian's, started on loopback). Goal: under 200 ms
//! on loopback (a watch, not a poll). Run:
//! `cargo run --release -p meridian-bench --example drill_convergence [TRIALS]`.
//!
//! Embedded: one process as `meridian up` will run it — one store, one snapshot watcher shared by the
//! admin API and a real DNS server (`DnsServer` on loopback UDP). etcd: two nodes — the admin API with its
//! own watcher and store client, the DNS server with another — so the change crosses etcd's watch.
//! Each trial starts a `down` drill of Warsaw and queries the DNS server (ECS 83.0.0.0/24, a Polish
//! client) back to back until the answer leaves Warsaw; then stops the drill and waits for Warsaw again.

// Benchmark set-up is start-up code: a fixture that does not build is a bug to stop on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "common/dns_probe.rs"]
mod dns_probe;

use dns_probe::first_a_for_polish_client;
use meridian_admin::client::AdminClient;
use meridian_admin::{AdminContext, AdminServer, Auth};
use meridian_dns::rrl::RrlConfig;
use meridian_dns::server::{DnsOptions, DnsServer, DnsState};
use meridian_geoip::GeoDb;
use meridian_store::testing::EtcdServer;
use meridian_store::*;
use serde_json::json;

const EXAMPLE: &str = include_str!("../../examples/meridian.toml");
const TOKEN: &str = "bench-token-0123456789abcdef";

fn watcher(store: &Arc<dyn KvStore>) -> Arc<SnapshotWatcher> {
    Arc::new(SnapshotWatcher::spawn(
        store.clone(),
        WatcherOptions::new(Keys::new(DEFAULT_PREFIX).unwrap()),
    ))
}

async fn admin(store: Arc<dyn KvStore>, watcher: Arc<SnapshotWatcher>) -> AdminServer {
    let geo = Arc::new(GeoDb::bundled().unwrap());
    let ctx = AdminContext {
        store,
        keys: Keys::new(DEFAULT_PREFIX).unwrap(),
        watcher,
        geo: Arc::new(move || geo.clone()),
        auth: Auth::token(TOKEN).unwrap(),
        tls: None,
        node: "bench".into(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    meridian_admin::serve(listener, ctx).await.unwrap()
}

async fn dns(watcher: Arc<SnapshotWatcher>) -> (DnsServer, SocketAddr) {
    let rrl = RrlConfig {
        rate: 0,
        ..RrlConfig::default()
    };
    let state = DnsState::new(watcher, GeoDb::bundled().unwrap(), rrl);
    let options = DnsOptions {
        udp_workers: 1,
        rrl,
        ..DnsOptions::default()
    };
    let server = DnsServer::bind("127.0.0.1:0".parse().unwrap(), state, &options)
        .await
        .unwrap();
    let addr = server.udp;
    (server, addr)
}

const WARSAW: &str = "192.0.2.10";

/// Queries back to back until `done(answer)`; the time since `start`.
async fn until(
    sock: &tokio::net::UdpSocket,
    dns: SocketAddr,
    start: Instant,
    done: impl Fn(&str) -> bool,
) -> Duration {
    let mut id = 0u16;
    loop {
        id = id.wrapping_add(1);
        if let Some(a) = first_a_for_polish_client(sock, dns, id).await
            && done(&a)
        {
            return start.elapsed();
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no change within 10 s");
    }
}

struct Samples {
    api: Vec<Duration>,
    moved: Vec<Duration>,
    returned: Vec<Duration>,
}

async fn measure(client: &AdminClient, dns: SocketAddr, trials: usize) -> Samples {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.connect(dns).await.unwrap();
    let start = Instant::now();
    until(&sock, dns, start, |a| a == WARSAW).await;
    let mut s = Samples {
        api: Vec::new(),
        moved: Vec::new(),
        returned: Vec::new(),
    };
    for i in 0..trials {
        let body = json!({
            "region": "waw", "mode": "down", "duration_ms": 60_000,
            "reason": "bench", "author": "bench", "id": format!("bench-{i}"),
        });
        let t0 = Instant::now();
        client.send("POST", "/v1/drills", Some(&body)).await.unwrap();
        s.api.push(t0.elapsed());
        s.moved.push(until(&sock, dns, t0, |a| a != WARSAW).await);
        let t1 = Instant::now();
        client
            .send("DELETE", &format!("/v1/drills/bench-{i}"), None)
            .await
            .unwrap();
        s.returned.push(until(&sock, dns, t1, |a| a == WARSAW).await);
    }
    s
}

fn report(name: &str, what: &str, mut s: Vec<Duration>) {
    s.sort();
    let q = |p: f64| s[((s.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1000.0;
    println!(
        "{name:<9} {what:<34} n {:>4}  p50 {:>7.2} ms  p90 {:>7.2} ms  max {:>7.2} ms",
        s.len(),
        q(0.5),
        q(0.9),
        q(1.0)
    );
}

fn report_all(name: &str, s: Samples) {
    let mut moved = s.moved.clone();
    moved.sort();
    if let Some(max) = moved.last() {
        let ms = max.as_secs_f64() * 1000.0;
        meridian_bench::Figure {
            bench: "drill",
            case: format!(
                "{name}: `drill start` (admin API) → DNS answer moved, max of {}",
                moved.len()
            ),
            value: ms,
            unit: "ms",
            goal: "< 200 ms".into(),
            met: ms < 200.0,
        }
        .print();
    }
    report(name, "drill start -> DNS answer moved", s.moved);
    report(name, "drill stop -> DNS answer returned", s.returned);
    report(name, "(admin API round trip of the start)", s.api);
}

async fn seed(store: &Arc<dyn KvStore>) {
    let keys = Keys::new(DEFAULT_PREFIX).unwrap();
    apply_config(store.as_ref(), &keys, EXAMPLE, None, "bench", 1)
        .await
        .unwrap();
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let trials = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(50);
    println!("drill start through the admin API -> DNS answer changed (goal < 200 ms), {trials} trials");

    // Embedded: one process, one store, one watcher shared by the admin API and DNS (`meridian up`).
    let store: Arc<dyn KvStore> = Arc::new(EmbeddedStore::in_memory());
    seed(&store).await;
    let w = watcher(&store);
    let api = admin(store.clone(), w.clone()).await;
    let (_dns, dns_addr) = dns(w).await;
    let client = AdminClient::new(&api.url(), Some(TOKEN.into()), None, Duration::from_secs(5)).unwrap();
    report_all("embedded", measure(&client, dns_addr, trials).await);

    // etcd: the admin node and the DNS node each with their own client and watcher.
    let etcd = EtcdServer::start();
    let open = || -> Arc<dyn KvStore> {
        Arc::new(EtcdStore::new(EtcdOptions::new(vec![etcd.client_url.clone()])).unwrap())
    };
    let (admin_store, dns_store) = (open(), open());
    seed(&admin_store).await;
    let api = admin(admin_store.clone(), watcher(&admin_store)).await;
    let (_dns, dns_addr) = dns(watcher(&dns_store)).await;
    let client = AdminClient::new(&api.url(), Some(TOKEN.into()), None, Duration::from_secs(5)).unwrap();
    report_all("etcd", measure(&client, dns_addr, trials).await);
}
