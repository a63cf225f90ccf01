//! Runs N steering decisions for one case, for instruction counting under callgrind (repeatable, unlike
//! wall-clock time on a shared VM): `valgrind --tool=callgrind target/release/examples/steer_loop 8 meet 10000`.

use std::hint::black_box;

use meridian_bench::{EXAMPLE, clients, compile, latency_case, synthetic};
use meridian_config::Config;
use meridian_steer::{Query, steer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (regions, service, n) = match args.as_slice() {
        [_, r, s, n] => (r.parse::<usize>()?, s.clone(), n.parse::<u64>()?),
        _ => return Err("usage: steer_loop REGIONS(8|N) SERVICE ITERATIONS".into()),
    };
    // `meet+latency` / `near+latency`: the latency-steering case (issue 22).
    let (topo, mut states) = if service.ends_with("+latency") {
        let (topo, states, _) = latency_case(regions)?;
        (topo, states)
    } else if regions == 8 {
        compile(Config::from_toml_str(EXAMPLE)?)
    } else {
        compile(synthetic(regions)?)
    };
    let service = service.trim_end_matches("+latency").to_owned();
    for r in topo.region_indices() {
        if let Some(s) = states.get_mut(r) {
            s.in_flight = Some(s.capacity / 2);
        }
    }
    let idx = topo.service_index(&service).ok_or("no such service")?;
    let clients = clients();
    let mut chosen = 0usize;
    for i in 0..n {
        let client = &clients[(i as usize) % clients.len()];
        let q = Query {
            service: idx,
            client,
            request_hash: i.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            now_ms: 1,
        };
        chosen += black_box(steer(&topo, &states, &q)).chosen.len();
    }
    println!("{chosen}");
    Ok(())
}
