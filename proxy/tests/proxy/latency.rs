//! Latency measurement at the proxy (`docs/latency.md`): real client connections give the kernel's TCP
//! round-trip time, attributed to the client's area, and the summary reaches the store under the
//! proxy's lease and the snapshot's latency matrix.

use std::time::Duration;

use meridian_proxy::latency::{MIN_SAMPLE_GAP, PUBLISH_INTERVAL};
use meridian_proxy::testing::get;
use meridian_steer::LatencyArea;
use meridian_store::schema::{LatencyReport, decode};

use crate::support::{Setup, World};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_connections_give_rtt_samples_and_a_published_summary() {
    let w = World::start(Setup {
        extra_config: "[services.api.latency]\nmin-samples = 3\n",
        ..Setup::default()
    })
    .await;
    let area: LatencyArea = "PL@50,20".parse().unwrap();
    // Loopback clients have no GeoIP location: waw attributes them to a Polish area, fra does not.
    let waw = &w.nodes[0];
    waw.latency().attribute_all_to(Some(area));
    for _ in 0..8 {
        let r = get(w.proxy("waw"), "api.gslb.example", &[]).await.unwrap();
        assert_eq!(r.status, 200);
        let r = get(w.proxy("fra"), "api.gslb.example", &[]).await.unwrap();
        assert_eq!(r.status, 200);
        // An area is sampled at most once per gap.
        tokio::time::sleep(MIN_SAMPLE_GAP + Duration::from_millis(5)).await;
    }
    // Connections closer together than the gap add no sample.
    for _ in 0..4 {
        let r = get(w.proxy("waw"), "api.gslb.example", &[]).await.unwrap();
        assert_eq!(r.status, 200);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let summary = waw.latency().summary(now);
    assert_eq!(summary.areas.len(), 1, "{summary:?}");
    let a = &summary.areas[0];
    assert_eq!(a.area, "PL@50,20");
    assert!(
        (7..=9).contains(&a.samples),
        "one sample per connection a gap apart, one at most for the burst: {a:?}"
    );
    assert!(a.rtt_ms > 0.0 && a.rtt_ms < 100.0, "a loopback round trip: {a:?}");
    assert!(
        w.nodes[1].latency().summary(now).areas.is_empty(),
        "unlocated clients are not attributed"
    );
    // Counted, by region: waw's samples, none at fra.
    let text = w.metrics_text();
    let count = |region: &str| {
        text.lines()
            .find(|l| {
                l.starts_with(&format!(
                    "meridian_proxy_latency_samples_total{{region=\"{region}\"}}"
                ))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    assert!(
        count("waw").is_some_and(|n| n >= f64::from(a.samples) && n <= 9.0),
        "one per sample: {text}"
    );
    assert_eq!(count("fra"), None, "{text}");

    // Published under the proxy's lease within one publishing interval, and merged into the snapshot.
    let key = w.keys.latency("waw", "test-waw");
    let deadline = tokio::time::Instant::now() + PUBLISH_INTERVAL + Duration::from_secs(5);
    let doc = loop {
        if let Some(kv) = w.store.get(&key).await.unwrap() {
            assert_ne!(kv.lease, 0, "under a lease");
            break decode::<LatencyReport>(&kv.value).unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no latency summary published"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(doc.areas[0].area, "PL@50,20");
    assert!(
        w.store
            .get(&w.keys.latency("fra", "test-fra"))
            .await
            .unwrap()
            .is_none(),
        "nothing measured, nothing written"
    );
    let mut merged = None;
    for _ in 0..50 {
        let snap = w.watcher.snapshot().unwrap();
        let waw_index = snap.topology.region_index("waw").unwrap();
        if let Some(row) = snap.states.latency().row(area) {
            merged = Some(row[waw_index.get()]);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let m = merged.expect("the summary in the snapshot's matrix");
    assert!(m.samples >= 7 && m.rtt_ms > 0.0, "{m:?}");
    let store = w.store.clone();
    assert_eq!(w.stop().await, 0);
    assert!(store.get(&key).await.unwrap().is_none(), "revoked on stop");
}
