use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use meridian_geoip::GeoDb;
use meridian_proxy::testing::{get, raw, request};

use crate::support::{EU_CLIENT, Setup, US_CLIENT, World};

fn eu() -> [(&'static str, &'static str); 1] {
    [("x-forwarded-for", EU_CLIENT)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_locally_names_the_region_and_sets_forwarding_headers() {
    let w = World::start(Setup::default()).await;
    let r = get(w.proxy("waw"), "api.gslb.example", &eu()).await.unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-meridian-region"), Some("waw"));
    assert!(r.body.contains("region=waw"), "{}", r.body);
    // The trusted peer's X-Forwarded-For is extended with the peer.
    assert!(
        r.body
            .contains(&format!("x-forwarded-for={EU_CLIENT}, 127.0.0.1")),
        "{}",
        r.body
    );
    assert!(r.body.contains("x-forwarded-proto=http"), "{}", r.body);
    assert!(
        r.body
            .contains("forwarded=for=127.0.0.1;proto=http;host=\"api.gslb.example\""),
        "{}",
        r.body
    );
    assert!(r.body.contains("x-meridian-hop=\n"), "not forwarded: {}", r.body);
    // Host matching ignores case, port and a trailing dot.
    let r = get(w.proxy("fra"), "API.gslb.example.:8080", &eu())
        .await
        .unwrap();
    assert_eq!(r.header("x-meridian-region"), Some("fra"));
    // Unknown host: 404; DNS-only service: 404 saying so.
    let r = get(w.proxy("waw"), "nope.example", &[]).await.unwrap();
    assert_eq!(
        (r.status, r.header("x-meridian-reason")),
        (404, Some("unknown-host"))
    );
    let r = get(w.proxy("waw"), "dnsonly.gslb.example", &[]).await.unwrap();
    assert_eq!((r.status, r.header("x-meridian-reason")), (404, Some("dns-only")));
    let text = w.metrics_text();
    assert!(
        text.contains(
            "meridian_proxy_requests_total{region=\"waw\",served_by=\"waw\",service=\"api\",status=\"200\"} 1"
        ),
        "{text}"
    );
    assert_eq!(w.stop().await, 0);
}

/// The local origin dies in the middle of a stream of GETs: every GET still succeeds (connection
/// failures and errors on idempotent requests are retried, then the request leaves for fra).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_origin_killed_mid_load_zero_failed_gets() {
    let w = Arc::new(World::start(Setup::default()).await);
    w.origin("waw").set_delay_ms(20);
    let failures = Arc::new(AtomicU64::new(0));
    let by_fra = Arc::new(AtomicU64::new(0));
    let total = Arc::new(AtomicU64::new(0));
    let stop_at = Instant::now() + Duration::from_millis(2500);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (w, failures, by_fra, total) = (w.clone(), failures.clone(), by_fra.clone(), total.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < stop_at {
                let r = get(w.proxy("waw"), "open.gslb.example", &eu()).await;
                total.fetch_add(1, Ordering::Relaxed);
                match r {
                    Ok(r) if r.status == 200 => {
                        if r.header("x-meridian-region") == Some("fra") {
                            assert!(r.body.contains("x-meridian-hop=waw"), "{}", r.body);
                            by_fra.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    other => {
                        eprintln!("failed: {other:?}");
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let before = w.origin("waw").hits();
    w.origin("waw").kill();
    for t in tasks {
        t.await.unwrap();
    }
    assert!(before > 0, "waw served before it died");
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "of {}",
        total.load(Ordering::Relaxed)
    );
    assert!(
        by_fra.load(Ordering::Relaxed) > 10,
        "{}",
        by_fra.load(Ordering::Relaxed)
    );
    let text = w.metrics_text();
    assert!(
        text.contains("meridian_proxy_spills_total{reason=\"no-healthy-backend\",region=\"waw\"}"),
        "{text}"
    );
    // The health checks take the dead backend out: new requests go straight to fra.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pool = w.pool("waw", "open");
    assert_eq!(pool.usable_count(u64::MAX / 2), 0, "the dead backend is out");
    let r = get(w.proxy("waw"), "open.gslb.example", &eu()).await.unwrap();
    assert_eq!((r.status, r.header("x-meridian-region")), (200, Some("fra")));
    assert_eq!(r.header("x-meridian-reason"), Some("no-healthy-backend"));
}

/// Clients that hang up before their answer (a load generator stopping, an impatient browser) say
/// nothing about the backend: however many do, it is not ejected and keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_hanging_up_never_eject_a_backend() {
    use tokio::io::AsyncWriteExt;
    let w = World::start(Setup::default()).await;
    w.origin("waw").set_delay_ms(300);
    // Twice the configured eject-after-failures (3), one after the other.
    for _ in 0..6 {
        let mut c = tokio::net::TcpStream::connect(w.proxy("waw")).await.unwrap();
        c.write_all(
            format!("GET / HTTP/1.1\r\nHost: open.gslb.example\r\nX-Forwarded-For: {EU_CLIENT}\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
        drop(c);
    }
    // Let the proxy notice every hang-up (the origin answers each after 300 ms).
    tokio::time::sleep(Duration::from_millis(500)).await;
    w.origin("waw").set_delay_ms(0);
    let r = get(w.proxy("waw"), "open.gslb.example", &eu()).await.unwrap();
    assert_eq!(
        (r.status, r.header("x-meridian-region")),
        (200, Some("waw")),
        "{r:?}"
    );
    let pool = w.pool("waw", "open");
    assert_eq!(pool.usable_count(0), 1, "the backend is still in");
    assert_eq!(
        pool.slots()[0].in_flight(),
        0,
        "every abandoned request was released"
    );
    let text = w.metrics_text();
    assert!(!text.contains("meridian_proxy_ejections_total{"), "{text}");
    assert_eq!(w.stop().await, 0);
}

/// More requests in flight than the region's capacity: the excess spills to the next region.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_exceeded_a_share_spills() {
    let w = Arc::new(
        World::start(Setup {
            capacity: 4,
            ..Setup::default()
        })
        .await,
    );
    for o in &w.origins {
        o.set_delay_ms(40);
    }
    let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
    let stop_at = Instant::now() + Duration::from_millis(1500);
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let (w, counts) = (w.clone(), counts.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < stop_at {
                let r = get(w.proxy("waw"), "open.gslb.example", &eu()).await.unwrap();
                assert_eq!(r.status, 200, "{r:?}");
                let i = match r.header("x-meridian-region") {
                    Some("waw") => 0,
                    Some("fra") => 1,
                    _ => 2,
                };
                counts[i].fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (waw, fra, other) = (
        counts[0].load(Ordering::Relaxed),
        counts[1].load(Ordering::Relaxed),
        counts[2].load(Ordering::Relaxed),
    );
    assert!(waw > 0 && fra > 0, "waw {waw} fra {fra}");
    // About 4 of 12 concurrent requests fit: most spill, to the nearest region with room.
    assert!(fra > waw / 2, "waw {waw} fra {fra}");
    assert_eq!(other, 0, "spilled to fra, the next region, not further");
    let text = w.metrics_text();
    assert!(
        text.contains("meridian_proxy_spills_total{reason=\"over-capacity\",region=\"waw\"}"),
        "{text}"
    );
}

/// An EU client is only ever sent to EU regions; when none can take it, a clear 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eu_client_never_leaves_the_eu_set() {
    let w = World::start(Setup::default()).await;
    // An EU client arriving at the US proxy is relayed to an EU region; a US client is served there.
    let r = get(w.proxy("vin"), "api.gslb.example", &eu()).await.unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        matches!(r.header("x-meridian-region"), Some("waw" | "fra")),
        "{r:?}"
    );
    assert_eq!(r.header("x-meridian-reason"), Some("residency"));
    assert_eq!(w.origin("vin").hits(), 0);
    let r = get(
        w.proxy("vin"),
        "api.gslb.example",
        &[("x-forwarded-for", US_CLIENT)],
    )
    .await
    .unwrap();
    assert_eq!(r.header("x-meridian-region"), Some("vin"));
    assert_eq!(w.origin("vin").hits(), 1);
    // Both EU regions drained: the EU client gets 503 at the US proxy, never the US backend.
    w.drain_region("waw").await;
    w.drain_region("fra").await;
    let r = get(w.proxy("vin"), "api.gslb.example", &eu()).await.unwrap();
    assert_eq!(
        (r.status, r.header("x-meridian-reason")),
        (503, Some("residency")),
        "{r:?}"
    );
    assert_eq!(w.origin("vin").hits(), 1);
    // At an EU proxy whose own backend is gone (drained through the store), with the other EU region
    // drained: nowhere in the EU set can serve, and the US region is never tried.
    w.drain_backend("api", w.origin("waw").addr).await;
    let r = get(w.proxy("waw"), "api.gslb.example", &eu()).await.unwrap();
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(w.origin("vin").hits(), 1);
    // Without residency (service `open`) the same client may go to the US.
    let r = get(w.proxy("waw"), "open.gslb.example", &eu()).await.unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    let text = w.metrics_text();
    assert!(
        text.contains("meridian_proxy_refused_total{reason=\"residency\",region=\"vin\"} 1"),
        "{text}"
    );
}

/// A new GeoIP database reaches a running proxy (`ProxyNode::set_geo`, how `meridian up` passes on the DNS
/// server's reloads): a client the old database placed in the US, and served at the US proxy, is then in
/// Poland and relayed to an EU region under residency.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_geoip_database_moves_the_proxys_decisions() {
    #[derive(serde::Serialize)]
    struct Cc {
        country_code: &'static str,
    }
    let w = World::start(Setup::default()).await;
    let us = [("x-forwarded-for", US_CLIENT)];
    let r = get(w.proxy("vin"), "api.gslb.example", &us).await.unwrap();
    assert_eq!(r.header("x-meridian-region"), Some("vin"), "{r:?}");

    let mut db = mmdb_writer::Writer::new("dbip-country");
    db.insert(
        "8.8.8.0/24".parse::<ipnet::IpNet>().unwrap(),
        &Cc { country_code: "PL" },
    )
    .unwrap();
    let geo = Arc::new(GeoDb::from_vec(db.to_bytes().unwrap(), "test: 8.8.8.0/24 in Poland").unwrap());
    let vin = w.nodes.iter().find(|n| n.region() == "vin").unwrap();
    vin.set_geo(geo.clone());
    assert!(Arc::ptr_eq(&vin.geo(), &geo));
    let r = get(w.proxy("vin"), "api.gslb.example", &us).await.unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        matches!(r.header("x-meridian-region"), Some("waw" | "fra")),
        "{r:?}"
    );
    assert_eq!(r.header("x-meridian-reason"), Some("residency"));
}

/// A request that already crossed a region is never forwarded again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loop_guard_one_hop_at_most() {
    let w = World::start(Setup::default()).await;
    w.drain_backend("open", w.origin("waw").addr).await;
    // Without the hop header the request leaves for fra...
    let r = get(w.proxy("waw"), "open.gslb.example", &eu()).await.unwrap();
    assert_eq!((r.status, r.header("x-meridian-region")), (200, Some("fra")));
    assert!(r.body.contains("x-meridian-hop=waw"), "{}", r.body);
    let fra_hits = w.origin("fra").hits();
    // ...with it, it is not forwarded a second time.
    let hop = [("x-forwarded-for", EU_CLIENT), ("x-meridian-hop", "fra")];
    let r = get(w.proxy("waw"), "open.gslb.example", &hop).await.unwrap();
    assert_eq!(
        (r.status, r.header("x-meridian-reason")),
        (503, Some("hop-limit")),
        "{r:?}"
    );
    assert_eq!(w.origin("fra").hits(), fra_hits);
    // A hopped request whose target region can serve is served there, locally.
    let r = get(w.proxy("fra"), "open.gslb.example", &hop).await.unwrap();
    assert_eq!((r.status, r.header("x-meridian-region")), (200, Some("fra")));
}

/// Garbage, oversized heads and bodies get 4xx; the proxy keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_requests_get_4xx() {
    let w = World::start(Setup::default()).await;
    let p = w.proxy("waw");
    let status = |text: &str| -> u16 {
        text.split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    };
    let garbage = raw(p, b"\x00\x01 nonsense \r\n\r\n").await.unwrap();
    assert!(
        (400..500).contains(&status(&garbage)) || garbage.is_empty(),
        "{garbage:?}"
    );
    let bad_line = raw(p, b"GET / HTTP/9.9 extra\r\nhost: open.gslb.example\r\n\r\n")
        .await
        .unwrap();
    assert!(
        (400..500).contains(&status(&bad_line)) || bad_line.is_empty(),
        "{bad_line:?}"
    );
    let big = "x".repeat(5000);
    let r = get(p, "open.gslb.example", &[("x-big", big.as_str())])
        .await
        .unwrap();
    assert_eq!(r.status, 431);
    let r = request(p, "POST", "open.gslb.example", "/", &[("content-length", "5000")])
        .await
        .unwrap();
    assert_eq!(r.status, 413);
    let r = request(p, "POST", "open.gslb.example", "/", &[("content-length", "abc")])
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    let chunked = format!(
        "POST / HTTP/1.1\r\nhost: open.gslb.example\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n\
         7d0\r\n{}\r\n0\r\n\r\n",
        "y".repeat(2000)
    );
    let text = raw(p, chunked.as_bytes()).await.unwrap();
    assert_eq!(status(&text), 413, "{text:?}");
    let r = raw(p, b"GET / HTTP/1.1\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(status(&r), 400, "{r:?}");
    let r = get(p, "open.gslb.example", &[]).await.unwrap();
    assert_eq!((r.status, r.header("x-meridian-region")), (200, Some("waw")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_client_rate_limit_answers_429() {
    let w = World::start(Setup {
        extra_proxy: "rate-limit-per-client = 5",
        ..Setup::default()
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(
            get(w.proxy("waw"), "open.gslb.example", &eu())
                .await
                .unwrap()
                .status,
        );
    }
    assert!(
        statuses.iter().filter(|s| **s == 200).count() >= 5,
        "{statuses:?}"
    );
    assert!(statuses.contains(&429), "{statuses:?}");
    // Another client is not limited by the first one's burst.
    let r = get(
        w.proxy("waw"),
        "open.gslb.example",
        &[("x-forwarded-for", US_CLIENT)],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
}

/// Load reports reach the store under a lease every second, and vanish when the proxy stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_reports_reach_the_store_and_vanish_on_stop() {
    let w = World::start(Setup::default()).await;
    for _ in 0..20 {
        get(w.proxy("waw"), "open.gslb.example", &eu()).await.unwrap();
    }
    let key = w.keys.load("waw", "test-waw");
    let mut found = None;
    for _ in 0..40 {
        if let Some(kv) = w.store.get(&key).await.unwrap() {
            let doc: meridian_store::schema::LoadReport = meridian_store::schema::decode(&kv.value).unwrap();
            if doc.request_rate > 0.0 {
                assert_ne!(kv.lease, 0, "under a lease");
                found = Some(doc);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let doc = found.expect("a load report with requests");
    assert_eq!(
        doc.healthy_backends,
        Some(2),
        "two services with one backend each"
    );
    assert!(doc.latency_ms.is_some() && doc.error_rate == Some(0.0), "{doc:?}");
    // The watcher sums them into the region's state.
    let snap = w.watcher.snapshot().unwrap();
    assert!(snap.loads.iter().any(|(r, i, _)| r == "waw" && i == "test-waw"));
    let store = w.store.clone();
    assert_eq!(w.stop().await, 0);
    assert!(store.get(&key).await.unwrap().is_none(), "revoked on stop");
}

/// Shutdown lets a request in flight finish, then returns well within the grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_requests_in_flight() {
    let w = World::start(Setup::default()).await;
    w.origin("waw").set_delay_ms(500);
    let p = w.proxy("waw");
    let slow = tokio::spawn(async move { get(p, "open.gslb.example", &eu()).await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let started = Instant::now();
    let left = w.stop().await;
    let took = started.elapsed();
    assert_eq!(left, 0);
    assert!(took < Duration::from_millis(2500), "{took:?}");
    let r = slow.await.unwrap().unwrap();
    assert_eq!(r.status, 200);
    // The listener is closed.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(tokio::net::TcpStream::connect(p).await.is_err());
}

/// On a real etcd: a backend drained through the store sends requests to the next region, restoring it
/// brings them back, and the proxy's load report is there under its lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_etcd_backend_drains_and_load_reports() {
    let etcd = meridian_store::testing::EtcdServer::start();
    let store: Arc<dyn meridian_store::KvStore> = Arc::new(
        meridian_store::EtcdStore::new(meridian_store::EtcdOptions::new(vec![etcd.client_url.clone()]))
            .unwrap(),
    );
    let w = World::start(Setup {
        store: Some(store),
        ..Setup::default()
    })
    .await;
    let r = get(w.proxy("waw"), "open.gslb.example", &eu()).await.unwrap();
    assert_eq!(r.header("x-meridian-region"), Some("waw"));
    w.drain_backend("open", w.origin("waw").addr).await;
    let r = get(w.proxy("waw"), "open.gslb.example", &eu()).await.unwrap();
    assert_eq!((r.status, r.header("x-meridian-region")), (200, Some("fra")));
    // Only that service's backend is drained.
    let r = get(w.proxy("waw"), "api.gslb.example", &eu()).await.unwrap();
    assert_eq!(r.header("x-meridian-region"), Some("waw"));
    let rev = w
        .store
        .delete(&w.keys.backend_drain("open", &w.origin("waw").addr.to_string()))
        .await
        .unwrap();
    w.settle(rev).await;
    let r = get(w.proxy("waw"), "open.gslb.example", &eu()).await.unwrap();
    assert_eq!(r.header("x-meridian-region"), Some("waw"));
    let key = w.keys.load("fra", "test-fra");
    let mut seen = false;
    for _ in 0..40 {
        if let Some(kv) = w.store.get(&key).await.unwrap() {
            assert_ne!(kv.lease, 0);
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen, "fra's load report is in etcd");
    assert_eq!(w.stop().await, 0);
    drop(etcd);
}

fn handed_over(w: &World, region: &str) -> u64 {
    let text = w.metrics_text();
    let key = format!("meridian_proxy_handed_over_total{{region=\"{region}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(key.as_str()))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// The HTTP/1.1 fast path and pingora's proxy (which the fast path hands every other request to) forward
/// alike: the same forwarding headers reach the origin and the same marks come back, locally, across
/// regions and when refusing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_path_and_pingora_forward_alike() {
    let w = World::start(Setup::default()).await;
    let p = w.proxy("waw");
    let compare = |fast: &meridian_proxy::testing::Response, slow: &meridian_proxy::testing::Response| {
        assert_eq!(fast.status, slow.status, "{fast:?}\n{slow:?}");
        for h in [
            "x-meridian-region",
            "x-meridian-reason",
            "x-origin-region",
            "content-length",
        ] {
            assert_eq!(fast.header(h), slow.header(h), "{h}: {fast:?}\n{slow:?}");
        }
        assert_eq!(fast.body, slow.body);
    };
    let cases: [(&str, Vec<(&str, &str)>); 4] = [
        ("api.gslb.example", vec![("x-forwarded-for", EU_CLIENT)]),
        (
            "open.gslb.example",
            vec![("x-forwarded-for", US_CLIENT), ("forwarded", "for=1.2.3.4")],
        ),
        ("nope.example", vec![]),
        ("dnsonly.gslb.example", vec![]),
    ];
    let mut expect_handed = 0;
    for round in ["local", "remote"] {
        if round == "remote" {
            w.drain_backend("open", w.origin("waw").addr).await;
            w.drain_backend("api", w.origin("waw").addr).await;
        }
        for (host, headers) in &cases {
            let before = handed_over(&w, "waw");
            let fast = get(p, host, headers).await.unwrap();
            assert_eq!(
                handed_over(&w, "waw"),
                before,
                "{host}: a plain GET takes the fast path"
            );
            // `TE` is a header the fast path leaves to pingora.
            let mut with_te = headers.clone();
            with_te.push(("te", "trailers"));
            let slow = get(p, host, &with_te).await.unwrap();
            expect_handed += 1;
            assert_eq!(handed_over(&w, "waw"), expect_handed, "{host}: handed over");
            compare(&fast, &slow);
            if round == "remote" && fast.status == 200 {
                assert_ne!(fast.header("x-meridian-region"), Some("waw"), "{fast:?}");
                assert!(fast.body.contains("x-meridian-hop=waw"), "{}", fast.body);
            }
        }
    }
    assert_eq!(w.stop().await, 0);
}

/// Reads one response (head, and a `content-length` body unless `head_only`) from `s`, keeping what
/// follows it in `buf`.
async fn read_response(
    s: &mut tokio::net::TcpStream,
    buf: &mut Vec<u8>,
    head_only: bool,
) -> (u16, String, String) {
    use tokio::io::AsyncReadExt;
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).to_string();
            let r = meridian_proxy::testing::parse_response(&head).unwrap();
            let len: usize = if head_only {
                0
            } else {
                r.header("content-length").unwrap().parse().unwrap()
            };
            while buf.len() < end + 4 + len {
                let n = s.read(&mut chunk).await.unwrap();
                assert!(n > 0, "closed mid-body");
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string();
            buf.drain(..end + 4 + len);
            return (
                r.status,
                r.header("x-meridian-region").unwrap_or("").to_owned(),
                body,
            );
        }
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(
            n > 0,
            "closed before a response: {:?}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// One keep-alive connection: pipelined GETs answered in order, a HEAD answered without a body, a POST
/// (handed to pingora's proxy) and then GETs again on the same connection — pingora's proxy keeps a
/// connection it was handed (docs/proxy.md, "Two HTTP engines"), so they are answered there, with the
/// same decisions and headers, and not counted as handed over again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_pipelining_and_hand_over_on_one_connection() {
    use tokio::io::AsyncWriteExt;
    let w = World::start(Setup::default()).await;
    let mut s = tokio::net::TcpStream::connect(w.proxy("waw")).await.unwrap();
    let mut buf = Vec::new();
    let get = "GET /a HTTP/1.1\r\nhost: open.gslb.example\r\nx-forwarded-for: 198.51.100.7\r\n\r\n";
    s.write_all(format!("{get}{get}").as_bytes()).await.unwrap();
    for _ in 0..2 {
        let (status, region, body) = read_response(&mut s, &mut buf, false).await;
        assert_eq!((status, region.as_str()), (200, "waw"));
        assert!(body.contains("region=waw"), "{body}");
    }
    s.write_all(b"HEAD /a HTTP/1.1\r\nhost: open.gslb.example\r\n\r\n")
        .await
        .unwrap();
    let (status, region, _) = read_response(&mut s, &mut buf, true).await;
    assert_eq!((status, region.as_str()), (200, "waw"));
    let handed = handed_over(&w, "waw");
    s.write_all(b"POST /a HTTP/1.1\r\nhost: open.gslb.example\r\ncontent-length: 2\r\n\r\nhi")
        .await
        .unwrap();
    let (status, region, _) = read_response(&mut s, &mut buf, false).await;
    assert_eq!((status, region.as_str()), (200, "waw"));
    assert_eq!(handed_over(&w, "waw"), handed + 1);
    for _ in 0..3 {
        s.write_all(get.as_bytes()).await.unwrap();
        let (status, _, body) = read_response(&mut s, &mut buf, false).await;
        assert_eq!(status, 200);
        // The test's peer (loopback) is a trusted proxy: its X-Forwarded-For is extended.
        assert!(
            body.contains("x-forwarded-for=198.51.100.7, 127.0.0.1\n"),
            "{body}"
        );
    }
    assert_eq!(
        handed_over(&w, "waw"),
        handed + 1,
        "the connection was handed over once: pingora's proxy keeps it"
    );
    assert!(buf.is_empty());
    drop(s);
    assert_eq!(w.stop().await, 0);
}
