//! Time from a region's endpoint dying to (1) the region marked down in a snapshot of the store, and (2) a
//! DNS answer moving to the next region, with the default health-check settings (1 s interval, 0.7 s
//! timeout, 0.1 s jitter, fall 2, rise 2, majority of three probers). Goal: under 3 s.
//!
//! Three probers (vantage points v1..v3), a DNS server and a watcher, in one process, on a real etcd
//! (Debian's, on loopback) and on the embedded store; three HTTP endpoints on loopback. Each trial waits a
//! random fraction of a probe interval, kills region a's endpoint, polls the watcher and DNS (a Polish
//! client, ECS 83.0.0.0/24, answered by Warsaw while it is up) every 5 ms, then revives the endpoint and
//! waits for recovery. Two ways of dying: refused connections (fast failures) and a black hole that
//! accepts and never answers (every probe runs into its timeout: the worst case). Run:
//! `cargo run --release -p meridian-bench --example health_failover [TRIALS]`.

// Benchmark set-up is start-up code: a fixture that does not build is a bug to stop on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "common/dns_probe.rs"]
mod dns_probe;

use dns_probe::first_a_for_polish_client;
use meridian_bench::Figure;
use meridian_config::Config;
use meridian_dns::server::{DnsServer, DnsState};
use meridian_geoip::GeoDb;
use meridian_health::State;
use meridian_probe::testing::Endpoint;
use meridian_probe::{Prober, ProberOptions};
use meridian_store::testing::EtcdServer;
use meridian_store::*;
use tokio::net::UdpSocket;
use tokio::sync::watch;

fn config(urls: &[String]) -> Arc<Config> {
    let regions = [
        ("a", "Warsaw", 52.23, 21.01, "PL", "192.0.2.1"),
        ("b", "Frankfurt", 50.11, 8.68, "DE", "192.0.2.2"),
        ("c", "London", 51.51, -0.13, "GB", "192.0.2.3"),
    ];
    let mut text = String::from("schema-version = 1\n");
    for ((id, name, lat, lon, cc, ip), url) in regions.iter().zip(urls) {
        text.push_str(&format!(
            "[regions.{id}]\nname = \"{name}\"\nlat = {lat}\nlon = {lon}\ncountry = \"{cc}\"\nipv4 = [\"{ip}\"]\n\
             capacity = 100\n[[regions.{id}.health-checks]]\nkind = \"http\"\nurl = \"{url}\"\n"
        ));
    }
    text.push_str(
        "[zones.\"gslb.example\"]\nns = [\"ns1.other.example.\"]\n[zones.\"gslb.example\".soa]\n\
         mname = \"ns1.other.example.\"\nrname = \"hostmaster.gslb.example.\"\n\
         [services.meet]\nhostname = \"meet.gslb.example\"\npolicy = \"nearest\"\nregions = [\"a\", \"b\", \"c\"]\nttl = 5\n",
    );
    Arc::new(Config::from_toml_str(&text).unwrap())
}

fn health(w: &SnapshotWatcher) -> State {
    w.snapshot()
        .and_then(|s| s.health.region("a").map(|r| r.state))
        .unwrap_or(State::Unknown)
}

/// `make_store` gives each participant (three probers, the DNS server's watcher, the measuring watcher)
/// its own client, as separate machines would have.
/// How the endpoint dies.
#[derive(Clone, Copy)]
enum Death {
    /// The listener goes away: connections are refused, probes fail at once.
    Refused,
    /// Connections are accepted and never answered: each probe fails only at its 0.7 s timeout.
    Hang,
}

async fn measure(
    make_store: &dyn Fn() -> Arc<dyn KvStore>,
    trials: usize,
    death: Death,
) -> (Vec<Duration>, Vec<Duration>) {
    let mut endpoints = [
        Endpoint::start().await,
        Endpoint::start().await,
        Endpoint::start().await,
    ];
    let urls: Vec<String> = endpoints.iter().map(Endpoint::url).collect();
    let config = config(&urls);
    let keys = Keys::new(DEFAULT_PREFIX).unwrap();
    let (_tx, rx) = watch::channel(config.clone());
    let mut probers = Vec::new();
    for v in ["v1", "v2", "v3"] {
        probers.push(
            Prober::start(make_store(), ProberOptions::new(v, keys.clone()), rx.clone())
                .await
                .unwrap(),
        );
    }
    let watcher_for = |store| {
        let mut o = WatcherOptions::new(keys.clone());
        o.bootstrap = Some(config.clone());
        Arc::new(SnapshotWatcher::spawn(store, o))
    };
    let watcher = watcher_for(make_store());
    let no_rrl = meridian_dns::rrl::RrlConfig {
        rate: 0,
        ..Default::default()
    };
    let dns_state = DnsState::new(watcher_for(make_store()), GeoDb::bundled().unwrap(), no_rrl);
    let options = meridian_dns::server::DnsOptions {
        udp_workers: 2,
        rrl: no_rrl,
        ..meridian_dns::server::DnsOptions::default()
    };
    let server = DnsServer::bind("127.0.0.1:0".parse().unwrap(), dns_state, &options)
        .await
        .unwrap();
    let dns = server.udp;
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut rng = RandomState::new().build_hasher();
    let (mut to_store, mut to_dns) = (Vec::new(), Vec::new());
    for trial in 0..trials {
        // Steady state: up everywhere, Warsaw answers.
        let start = Instant::now();
        while !(health(&watcher) == State::Up
            && first_a_for_polish_client(&sock, dns, 7).await.as_deref() == Some("192.0.2.1"))
        {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "trial {trial}: never steady"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Die at a random phase of the probe schedule.
        rng.write_usize(trial);
        tokio::time::sleep(Duration::from_millis(rng.finish() % 1000)).await;
        match death {
            Death::Refused => endpoints[0].kill(),
            Death::Hang => endpoints[0].hang(true),
        }
        let t0 = Instant::now();
        let (mut store_at, mut dns_at) = (None, None);
        while store_at.is_none() || dns_at.is_none() {
            if store_at.is_none() && health(&watcher) == State::Down {
                store_at = Some(t0.elapsed());
            }
            if dns_at.is_none()
                && first_a_for_polish_client(&sock, dns, 7)
                    .await
                    .is_some_and(|a| a != "192.0.2.1")
            {
                dns_at = Some(t0.elapsed());
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "trial {trial}: not failed over"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        to_store.push(store_at.unwrap());
        to_dns.push(dns_at.unwrap());
        match death {
            Death::Refused => endpoints[0].revive().await,
            Death::Hang => endpoints[0].hang(false),
        }
    }
    for p in probers {
        p.stop().await.unwrap();
    }
    (to_store, to_dns)
}

fn report(name: &str, mut s: Vec<Duration>) {
    // (Both figures are sampled by the same 5 ms poll: the DNS server swaps in the snapshot as fast.)
    s.sort();
    let q = |p: f64| s[((s.len() - 1) as f64 * p).round() as usize].as_secs_f64();
    println!(
        "{name:<26} trials {:>3}  min {:.2} s  p50 {:.2} s  p90 {:.2} s  max {:.2} s  goal < 3 s: {}",
        s.len(),
        q(0.0),
        q(0.5),
        q(0.9),
        q(1.0),
        if q(1.0) < 3.0 { "met" } else { "MISSED" }
    );
    if name.ends_with("DNS") {
        Figure {
            bench: "health",
            case: format!(
                "{}: endpoint dies → DNS answer moved, max",
                &name[..name.len() - 5]
            ),
            value: q(1.0),
            unit: "s",
            goal: "< 3 s".into(),
            met: q(1.0) < 3.0,
        }
        .print();
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let trials = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(20);
    println!("endpoint killed -> region down in a snapshot / DNS answer moved (defaults, 3 probers)");
    let embedded: Arc<dyn KvStore> = Arc::new(EmbeddedStore::in_memory());
    let (s, d) = measure(&|| embedded.clone(), trials, Death::Refused).await;
    report("embedded, refused: store", s);
    report("embedded, refused: DNS", d);
    let etcd = EtcdServer::start();
    let url = etcd.client_url.clone();
    let make =
        || -> Arc<dyn KvStore> { Arc::new(EtcdStore::new(EtcdOptions::new(vec![url.clone()])).unwrap()) };
    let (s, d) = measure(&make, trials, Death::Refused).await;
    report("etcd, refused: store", s);
    report("etcd, refused: DNS", d);
    let (s, d) = measure(&make, trials, Death::Hang).await;
    report("etcd, hang: store", s);
    report("etcd, hang: DNS", d);
}
