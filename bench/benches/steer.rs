//! One steering decision, on the reference deployment (8 regions) and a synthetic one (50 regions).
//! Goal: under 1 microsecond per decision; aim 200 ns. Run: `cargo bench -p meridian-bench --bench steer`.
//! With measured latency (`+latency` cases, issue 22): the same goal.

// Benchmark set-up is start-up code: a fixture that does not build is a bug to stop on.
#![allow(clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};

use meridian_bench::{EXAMPLE, clients, compile, synthetic, synthetic_toml};
use meridian_config::Config;
use meridian_steer::{LatencyMatrix, Measured, Query, latency_area, steer};

const NOW: u64 = 1_800_000_000_000;

fn bench(c: &mut Criterion) {
    let clients = clients();
    let cases = [
        (
            "8 regions",
            Config::from_toml_str(EXAMPLE).expect("example parses"),
            ["meet", "api", "files"],
        ),
        (
            "50 regions",
            synthetic(50).expect("synthetic parses"),
            ["near", "weighted", "failover"],
        ),
    ];
    for (label, config, services) in cases {
        let (topo, mut states) = compile(config);
        // Some load everywhere, so the spill path is exercised (below threshold: nobody moves).
        for r in topo.region_indices() {
            if let Some(s) = states.get_mut(r) {
                s.in_flight = Some(s.capacity / 2);
            }
        }
        for service in services {
            let idx = topo.service_index(service).expect("service exists");
            let mut i = 0u64;
            c.bench_function(&format!("steer/{label}/{service}"), |b| {
                b.iter(|| {
                    i = i.wrapping_add(1);
                    let client = &clients[(i as usize) % clients.len()];
                    let q = Query {
                        service: idx,
                        client,
                        request_hash: i.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                        now_ms: NOW,
                    };
                    black_box(steer(black_box(&topo), black_box(&states), &q))
                })
            });
        }
    }
}

/// Latency steering (issue 22, `docs/latency.md`): the same decisions with a latency matrix measured for
/// every client area and every region (the latency step does all its work: baseline, margin, tie band),
/// and the default exploration share of 2 %.
fn bench_latency(c: &mut Criterion) {
    let clients = clients();
    let latency = "\n[services.{S}.latency]\nmin-samples = 20\n";
    let cases = [
        (
            "8 regions",
            format!("{EXAMPLE}{}", latency.replace("{S}", "meet")),
            "meet",
        ),
        (
            "50 regions",
            format!("{}{}", synthetic_toml(50), latency.replace("{S}", "near")),
            "near",
        ),
    ];
    for (label, text, service) in cases {
        let (topo, states) = compile(Config::from_toml_str(&text).expect("latency config parses"));
        let mut m = LatencyMatrix::new(topo.region_indices().count());
        for (k, client) in clients.iter().enumerate() {
            let Some(area) = latency_area(client) else {
                continue;
            };
            for r in topo.region_indices() {
                // Deterministic spread of 5-250 ms, so that some areas move and some stay.
                let rtt_ms = 5.0 + ((k * 31 + r.get() * 17) % 49) as f32 * 5.0;
                m.add(
                    area,
                    r,
                    Measured {
                        rtt_ms,
                        samples: 100,
                        updated_at_ms: NOW,
                    },
                );
            }
        }
        let mut states = states.with_latency(Arc::new(m));
        for r in topo.region_indices() {
            if let Some(s) = states.get_mut(r) {
                s.in_flight = Some(s.capacity / 2);
            }
        }
        let idx = topo.service_index(service).expect("service exists");
        let mut i = 0u64;
        c.bench_function(&format!("steer/{label}/{service}+latency"), |b| {
            b.iter(|| {
                i = i.wrapping_add(1);
                let client = &clients[(i as usize) % clients.len()];
                let q = Query {
                    service: idx,
                    client,
                    request_hash: i.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                    now_ms: NOW,
                };
                black_box(steer(black_box(&topo), black_box(&states), &q))
            })
        });
    }
}

criterion_group!(benches, bench, bench_latency);
criterion_main!(benches);
