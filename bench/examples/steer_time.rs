//! Wall-clock time per steering decision for `bench/run` (the criterion bench, `benches/steer.rs`, is the
//! careful measurement; this one is quick: 7 runs of 200,000 decisions per case, the median reported).
//!
//! `cargo run --release -p meridian-bench --example steer_time [DECISIONS]`

use std::hint::black_box;
use std::time::Instant;

use meridian_bench::{EXAMPLE, Figure, clients, compile, synthetic};
use meridian_config::Config;
use meridian_steer::{Query, steer};

const NOW: u64 = 1_800_000_000_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = std::env::args().nth(1).map_or(Ok(200_000), |a| a.parse())?;
    let clients = clients();
    let cases = [
        (
            "8 regions",
            Config::from_toml_str(EXAMPLE)?,
            ["meet", "api", "files"],
        ),
        ("50 regions", synthetic(50)?, ["near", "weighted", "failover"]),
    ];
    println!("time per steering decision (median of 7 runs of {n}; goal < 1 µs, aim 200 ns)");
    for (label, config, services) in cases {
        let (topo, mut states) = compile(config);
        for r in topo.region_indices() {
            if let Some(s) = states.get_mut(r) {
                s.in_flight = Some(s.capacity / 2);
            }
        }
        for service in services {
            let idx = topo.service_index(service).ok_or("no such service")?;
            let mut runs = Vec::new();
            for _ in 0..7 {
                let t = Instant::now();
                for i in 0..n {
                    let q = Query {
                        service: idx,
                        client: &clients[(i as usize) % clients.len()],
                        request_hash: i.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                        now_ms: NOW,
                    };
                    black_box(steer(black_box(&topo), black_box(&states), &q));
                }
                runs.push(t.elapsed().as_nanos() as f64 / n as f64);
            }
            runs.sort_by(f64::total_cmp);
            let ns = runs[3];
            println!("{label:<10} {service:<9} {ns:>7.0} ns");
            Figure {
                bench: "steer",
                case: format!("{label}, `{service}`: time per decision"),
                value: ns,
                unit: "ns",
                goal: "< 1000 ns".into(),
                met: ns < 1000.0,
            }
            .print();
        }
    }
    Ok(())
}
