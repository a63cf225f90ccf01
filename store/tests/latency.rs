//! Latency summaries (`latency/REGION/INSTANCE`) reach the snapshot's latency matrix: instances of a
//! region merge by sample weight, unknown regions and bad areas are reported and skipped.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use meridian_config::Config;
use meridian_steer::{LatencyArea, Measured};
use meridian_store::schema::*;
use meridian_store::*;

mod support;
use support::*;

fn report(at: u64, areas: &[(&str, f64, u32)]) -> Vec<u8> {
    encode(&LatencyReport {
        schema: 1,
        reported_at_ms: at,
        areas: areas
            .iter()
            .map(|(area, rtt_ms, samples)| AreaLatency {
                area: (*area).to_owned(),
                rtt_ms: *rtt_ms,
                samples: *samples,
            })
            .collect(),
    })
}

#[test]
fn summaries_become_the_latency_matrix() {
    let k = Keys::new(DEFAULT_PREFIX).unwrap();
    let config = Arc::new(Config::from_toml_str(EXAMPLE).unwrap());
    let mut b = SnapshotBuilder::new(k.clone(), Some(config));
    b.reset(
        vec![
            kv(
                k.latency("fra", "p1"),
                report(5, &[("PL@50,20", 20.0, 30), ("DE@50,0", 5.0, 9)]),
                2,
            ),
            kv(k.latency("fra", "p2"), report(7, &[("PL@50,20", 40.0, 10)]), 3),
            kv(
                k.latency("waw", "p1"),
                report(6, &[("PL@50,20", 3.0, 50), ("nowhere", 1.0, 5)]),
                4,
            ),
            kv(k.latency("xyz", "p1"), report(6, &[("PL@50,20", 3.0, 50)]), 5),
            kv(k.latency("lon", "p1"), b"{".to_vec(), 6),
        ],
        6,
    );
    let snap = b.build(0).unwrap();
    let topo = &snap.topology;
    let m = snap.states.latency();
    let pl: LatencyArea = "PL@50,20".parse().unwrap();
    let row = m.row(pl).unwrap();
    let at = |id: &str| row[topo.region_index(id).unwrap().get()];
    assert_eq!(
        at("fra"),
        Measured {
            rtt_ms: 25.0,
            samples: 40,
            updated_at_ms: 7
        },
        "two instances merged by samples"
    );
    assert_eq!(at("waw").samples, 50);
    assert_eq!(at("lon"), Measured::default());
    assert_eq!(m.rows().count(), 2);
    assert_eq!(snap.latency_reports.len(), 4);
    let problems = snap.problems.join("\n");
    assert!(
        problems.contains("latency/waw/p1: \"nowhere\" is not a latency area"),
        "{problems}"
    );
    assert!(
        problems.contains("latency/xyz/p1: unknown region \"xyz\""),
        "{problems}"
    );
    assert!(problems.contains("latency/lon/p1: not JSON"), "{problems}");
}
