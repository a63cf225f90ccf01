//! Time to answer one DNS query in process (no sockets): the answering path of `meridian dns` over the
//! DNS benchmark's queries (bench/dns), for profiling it apart from system calls.
//!
//! `cargo run --release -p meridian-bench --example dns_respond -- GEOIP.mmdb QUERIES.bin [ROUNDS]`
//! (bench/dns/run leaves both in bench/out/cache). Prints ns per query for what a UDP worker does (the
//! fast path with the worker's decision memo, `respond_with_memo`), for the fast path deciding every
//! query (`respond`), and for the general path (`respond_general`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use meridian_config::Config;
use meridian_dns::{DecisionMemo, FixedState, Transport, respond, respond_general, respond_with_memo};
use meridian_geoip::GeoDb;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let t = Instant::now();
    let geo = GeoDb::open(args[1].as_ref()).unwrap();
    println!(
        "opened {} in {:.2} s: {} IPv4 ranges, {} location values",
        geo.description(),
        t.elapsed().as_secs_f64(),
        geo.ipv4_ranges(),
        geo.location_ids()
    );
    let bytes = std::fs::read(&args[2]).unwrap();
    let rounds: usize = args.get(3).map_or(3, |r| r.parse().unwrap());
    let mut queries = Vec::new();
    let mut i = 0;
    while i + 2 <= bytes.len() {
        let n = usize::from(u16::from_be_bytes([bytes[i], bytes[i + 1]]));
        queries.push(&bytes[i + 2..i + 2 + n]);
        i += 2 + n;
    }
    let config = Config::from_toml_str(include_str!("../dns/meridian.toml")).unwrap();
    let state = FixedState::new(Arc::new(config), geo, 1_800_000_000_000).unwrap();
    let ctx = state.context(1_800_000_000_000);
    let src: IpAddr = "127.0.0.1".parse().unwrap();
    let mut out = Vec::with_capacity(1232);
    let mut memo = DecisionMemo::new();
    memo.prepare(&state.snapshot, &state.geo, 1_800_000_000_000);
    for _ in 0..rounds {
        let t = Instant::now();
        for q in &queries {
            respond_with_memo(&ctx, &mut memo, q, src, Transport::Udp, &mut out);
        }
        let memoised = t.elapsed().as_nanos() as f64 / queries.len() as f64;
        println!(
            "{} queries: respond with the memo {memoised:.0} ns/query ({} decisions from the memo so far)",
            queries.len(),
            memo.hits()
        );
        let t = Instant::now();
        let mut fast = 0;
        for q in &queries {
            fast += usize::from(respond(&ctx, q, src, Transport::Udp, &mut out).fast);
        }
        let per = t.elapsed().as_nanos() as f64 / queries.len() as f64;
        if std::env::var_os("FAST_ONLY").is_some() {
            println!(
                "{} queries: respond {per:.0} ns/query ({fast} by the fast path)",
                queries.len()
            );
            continue;
        }
        let t = Instant::now();
        for q in &queries {
            std::hint::black_box(respond_general(&ctx, q, src, Transport::Udp));
        }
        let general = t.elapsed().as_nanos() as f64 / queries.len() as f64;
        println!(
            "{} queries: respond {per:.0} ns/query ({fast} by the fast path); general path {general:.0} ns/query",
            queries.len()
        );
    }
}
