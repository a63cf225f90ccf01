//! Steering by measured latency, end to end (`docs/latency.md`): a real `meridian dns` node over etcd, real
//! DNS queries with kdig (ECS), and latency summaries written to the store under a lease as the regional
//! proxies write them. The delays are given as the proxies would measure them (this kernel has no netem,
//! and a user-space relay cannot change the kernel's TCP round-trip estimate of the proxy's socket; the
//! measurement itself is tested in `proxy/tests/proxy/latency.rs`). Answers move to the faster region
//! once it has enough samples, move back when the delays are swapped, do not flap while nothing changes,
//! and an EU client is never sent to a faster non-EU region. `meridian explain` and `meridian status` show
//! the estimates.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use meridian_store::schema::{AreaLatency, LatencyReport, encode};
use meridian_store::testing::EtcdServer;
use meridian_store::{EtcdOptions, EtcdStore, Keys, KvStore, LeaseKeeper};

use crate::support::{
    Interrupted, example, free_tcp_port, free_udp_port, http_get, meridian, stderr, stdout,
};

const TOKEN: &str = "0123456789abcdef0123456789abcdef";
/// Located in Poland by the bundled database (nearest region: waw).
const PL_CLIENT: &str = "83.1.2.0";

/// The first region of the answer for `client` (ECS /24), asked with kdig.
fn first_region(dns: SocketAddr, client: &str) -> Option<String> {
    let out = Command::new("kdig")
        .arg(format!("@{}", dns.ip()))
        .args(["-p", &dns.port().to_string()])
        .args(["meet.gslb.example", "A", "+short", "+timeout=1", "+retry=0"])
        .arg(format!("+subnet={client}/24"))
        .output()
        .unwrap();
    let config = meridian_config::Config::load(&example()).unwrap();
    let first = stdout(&out).lines().next()?.trim().to_owned();
    config
        .regions()
        .iter()
        .find(|r| r.ipv4.iter().any(|a| a.to_string() == first))
        .map(|r| r.id.clone())
}

/// The client's latency area, as DNS and the proxies compute it.
fn area_of(ip: &str) -> String {
    let geo = meridian_geoip::GeoDb::bundled().unwrap();
    let (country, continent, coordinates) = geo.locate(ip.parse().unwrap()).parts();
    let client = meridian_steer::ClientLocation::new(country, continent, coordinates);
    meridian_steer::latency_area(&client).unwrap().to_string()
}

fn wait_first(dns: SocketAddr, want: &str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let got = first_region(dns, PL_CLIENT);
        if got.as_deref() == Some(want) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "still {got:?}, not {want}, after {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn answers_follow_measured_latency_within_residency() {
    let etcd = EtcdServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("meridian.toml");
    let mut text = std::fs::read_to_string(example()).unwrap();
    text.push_str("\n[services.meet.latency]\nmin-samples = 20\nmargin-ms = 10\nexplore-percent = 0\n");
    std::fs::write(&config, text).unwrap();
    std::fs::write(dir.path().join("token"), format!("{TOKEN}\n")).unwrap();
    let dns: SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    let _node = Interrupted(
        meridian()
            .args(["dns", "--config", config.to_str().unwrap(), "--rrl-rate", "0"])
            .args(["--etcd", &etcd.client_url])
            .args(["--listen", &dns.to_string(), "--admin-listen", &admin.to_string()])
            .arg("--admin-token-file")
            .arg(dir.path().join("token"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    while http_get(admin, "/v1/status").0 != 401 || first_region(dns, PL_CLIENT).is_none() {
        assert!(start.elapsed() < Duration::from_secs(20), "node not ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        first_region(dns, PL_CLIENT).as_deref(),
        Some("waw"),
        "nearest without data"
    );

    let area = area_of(PL_CLIENT);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store: Arc<dyn KvStore> =
        Arc::new(EtcdStore::new(EtcdOptions::new(vec![etcd.client_url.clone()])).unwrap());
    let keys = Keys::new(meridian_store::DEFAULT_PREFIX).unwrap();
    let lease = rt
        .block_on(LeaseKeeper::start(store.clone(), Duration::from_secs(10)))
        .unwrap();
    // What each region's proxy would publish for the Polish area: (region, rtt ms, samples).
    let publish = |cells: &[(&str, f64, u32)]| {
        for &(region, rtt_ms, samples) in cells {
            let doc = LatencyReport {
                schema: 1,
                reported_at_ms: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as u64,
                areas: vec![AreaLatency {
                    area: area.clone(),
                    rtt_ms,
                    samples,
                }],
            };
            rt.block_on(store.put(&keys.latency(region, "p1"), encode(&doc), Some(lease.id())))
                .unwrap();
        }
    };

    // Frankfurt faster but with too few samples; Vint Hill (US) fastest of all, barred by residency.
    publish(&[
        ("waw", 80.0, 100),
        ("fra", 20.0, 19),
        ("vin", 2.0, 500),
        ("lon", 3.0, 500),
    ]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        first_region(dns, PL_CLIENT).as_deref(),
        Some("waw"),
        "19 samples are not enough"
    );

    // Enough samples: the answers move to Frankfurt, never to a non-EU region.
    publish(&[("fra", 20.0, 40)]);
    let moved = wait_first(dns, "fra", Duration::from_secs(5));
    eprintln!("latency e2e: moved to fra {moved:?} after the summary was written");

    // Stable: no answer changes while the estimates wobble within the margin.
    let mut changes = 0;
    let mut last = first_region(dns, PL_CLIENT);
    for i in 0..40 {
        if i % 10 == 5 {
            publish(&[
                ("fra", 20.0 + f64::from(i % 3), 45),
                ("waw", 80.0 - f64::from(i % 4), 100),
            ]);
        }
        let now = first_region(dns, PL_CLIENT);
        assert_ne!(now.as_deref(), Some("vin"));
        assert_ne!(now.as_deref(), Some("lon"));
        if now != last {
            changes += 1;
            last = now;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(changes, 0, "answers flapped");
    assert_eq!(last.as_deref(), Some("fra"));

    // The live explanation and the status matrix say why.
    let cli = |args: &[&str]| {
        let o = meridian()
            .env("MERIDIAN_SERVER", format!("http://{admin}"))
            .env("MERIDIAN_TOKEN", TOKEN)
            .env("MERIDIAN_DATA_DIR", dir.path().join("nowhere"))
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {}{}", stdout(&o), stderr(&o));
        stdout(&o)
    };
    let explain = cli(&["explain", "meet", "--client", "83.1.2.3"]);
    assert!(
        explain.contains(&format!(
            "latency    area {area}: fra is measured faster than the nearest, waw"
        )),
        "{explain}"
    );
    assert!(explain.contains("measured faster:"), "{explain}");
    assert!(explain.contains("n=45"), "samples shown: {explain}");
    let json: serde_json::Value =
        serde_json::from_str(&cli(&["explain", "meet", "--client", "83.1.2.3", "--json"])).unwrap();
    assert_eq!(json["latency"]["outcome"], "faster", "{json}");
    assert_eq!(json["latency"]["chosen"], "fra");
    let status = cli(&["status"]);
    assert!(status.contains("latency (TCP round trip ms/samples"), "{status}");
    let row = status
        .lines()
        .find(|l| l.trim_start().starts_with(&area))
        .unwrap_or_default();
    assert!(
        row.contains("/45") && row.contains("/100") && row.contains("/500"),
        "{status}"
    );

    // Swapped: back to Warsaw.
    publish(&[("waw", 20.0, 100), ("fra", 80.0, 45)]);
    let back = wait_first(dns, "waw", Duration::from_secs(5));
    eprintln!("latency e2e: back to waw {back:?} after the swap");

    // The proxies gone (lease revoked): their summaries vanish, distance decides again.
    publish(&[("waw", 80.0, 100), ("fra", 20.0, 45)]);
    wait_first(dns, "fra", Duration::from_secs(5));
    rt.block_on(lease.stop()).unwrap();
    wait_first(dns, "waw", Duration::from_secs(5));
}
