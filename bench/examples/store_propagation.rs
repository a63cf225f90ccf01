//! Time from a put to every watcher's snapshot reflecting it, on the embedded store and on a real etcd
//! (Debian's, started on loopback). Goal: under 50 ms. Run:
//! `cargo run --release -p meridian-bench --example store_propagation [PUTS] [WATCHERS]`.

// Benchmark set-up is start-up code: a fixture that does not build is a bug to stop on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use meridian_bench::Figure;
use meridian_store::schema::{WeightOverride, encode};
use meridian_store::testing::EtcdServer;
use meridian_store::*;

const EXAMPLE: &str = include_str!("../../examples/meridian.toml");

async fn measure(store: Arc<dyn KvStore>, puts: usize, watchers: usize) -> Vec<Duration> {
    let keys = Keys::new(DEFAULT_PREFIX).unwrap();
    apply_config(store.as_ref(), &keys, EXAMPLE, None, "bench", 1)
        .await
        .unwrap();
    let ws: Vec<SnapshotWatcher> = (0..watchers)
        .map(|_| SnapshotWatcher::spawn(store.clone(), WatcherOptions::new(keys.clone())))
        .collect();
    let warm = store
        .put(&keys.weight("waw"), encode(&weight(1)), None)
        .await
        .unwrap();
    for w in &ws {
        assert!(w.wait_for(warm, Duration::from_secs(10)).await, "watchers synced");
    }
    let regions = ["waw", "fra", "lon", "sbg", "gra", "bhs", "vin", "hil"];
    let mut samples = Vec::with_capacity(puts);
    for i in 0..puts {
        let start = Instant::now();
        let rev = store
            .put(
                &keys.weight(regions[i % regions.len()]),
                encode(&weight(i as u32 % 1000)),
                None,
            )
            .await
            .unwrap();
        for w in &ws {
            assert!(
                w.wait_for(rev, Duration::from_secs(5)).await,
                "put {i} reached every watcher"
            );
        }
        samples.push(start.elapsed());
    }
    samples
}

fn weight(w: u32) -> WeightOverride {
    WeightOverride {
        schema: 1,
        weight: w,
        author: "bench".into(),
        reason: "bench".into(),
        at_ms: 0,
    }
}

fn report(name: &str, mut s: Vec<Duration>) {
    s.sort();
    let q = |p: f64| s[((s.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1000.0;
    println!(
        "{name:<14} puts {:>4}  p50 {:>7.3} ms  p90 {:>7.3} ms  p99 {:>7.3} ms  max {:>7.3} ms",
        s.len(),
        q(0.5),
        q(0.9),
        q(0.99),
        q(1.0)
    );
    Figure {
        bench: "propagation",
        case: format!("{name}: put → snapshot in every watcher, p99"),
        value: q(0.99),
        unit: "ms",
        goal: "< 50 ms".into(),
        met: q(0.99) < 50.0,
    }
    .print();
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let puts = args.first().copied().unwrap_or(500);
    let watchers = args.get(1).copied().unwrap_or(4);
    println!("put -> snapshot in every one of {watchers} watchers (goal < 50 ms)");
    report(
        "embedded",
        measure(Arc::new(EmbeddedStore::in_memory()), puts, watchers).await,
    );
    // With a data directory every operator change is fsynced (state file and directory) before it counts.
    let dir = std::env::temp_dir().join(format!("meridian-bench-{}", std::process::id()));
    report(
        "embedded+disk",
        measure(Arc::new(EmbeddedStore::open(&dir).unwrap()), puts, watchers).await,
    );
    let _ = std::fs::remove_dir_all(&dir);
    let etcd = EtcdServer::start();
    let store = EtcdStore::new(EtcdOptions::new(vec![etcd.client_url.clone()])).unwrap();
    report("etcd", measure(Arc::new(store), puts, watchers).await);
}
