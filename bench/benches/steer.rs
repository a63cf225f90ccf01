//! One steering decision, on the reference deployment (8 regions) and a synthetic one (50 regions).
//! Goal: under 1 microsecond per decision; aim 200 ns. Run: `cargo bench -p meridian-bench --bench steer`.
//! With measured latency (`+latency` cases, issue 22): the same goal.

// Benchmark set-up is start-up code: a fixture that does not build is a bug to stop on.
#![allow(clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use meridian_bench::{EXAMPLE, clients, compile, latency_case, synthetic};
use meridian_config::Config;
use meridian_steer::{ClientLocation, Query, RegionStates, ServiceIndex, Topology, steer};

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
            decisions(
                c,
                &format!("steer/{label}/{service}"),
                &topo,
                &states,
                &clients,
                idx,
            );
        }
    }
}

/// Latency steering (issue 22, `docs/latency.md`): the same decisions with a latency matrix measured for
/// every client area and every region (`latency_case`), and the default exploration share of 2 %.
fn bench_latency(c: &mut Criterion) {
    let clients = clients();
    for (label, regions) in [("8 regions", 8), ("50 regions", 50)] {
        let (topo, mut states, service) = latency_case(regions).expect("latency case builds");
        for r in topo.region_indices() {
            if let Some(s) = states.get_mut(r) {
                s.in_flight = Some(s.capacity / 2);
            }
        }
        let idx = topo.service_index(service).expect("service exists");
        let name = format!("steer/{label}/{service}+latency");
        decisions(c, &name, &topo, &states, &clients, idx);
    }
}

/// One benchmark: decisions of service `idx` for the clients in turn, a different request hash each.
fn decisions(
    c: &mut Criterion,
    name: &str,
    topo: &Topology,
    states: &RegionStates,
    clients: &[ClientLocation],
    idx: ServiceIndex,
) {
    let mut i = 0u64;
    c.bench_function(name, |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let client = &clients[(i as usize) % clients.len()];
            let q = Query {
                service: idx,
                client,
                request_hash: i.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                now_ms: NOW,
            };
            black_box(steer(black_box(topo), black_box(states), &q))
        })
    });
}

criterion_group!(benches, bench, bench_latency);
criterion_main!(benches);
