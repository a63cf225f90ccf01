//! Opens a GeoIP database as `meridian dns` does and prints what the process holds afterwards: the
//! indexes' sizes, the load time, resident memory (VmRSS) and its peak (VmHWM) from /proc/self/status.
//! `cargo run --release -p meridian-bench --example geoip_load -- DB.mmdb`

#![allow(clippy::expect_used)]

use std::time::Instant;

use meridian_geoip::GeoDb;

fn status(field: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .map(|l| l[field.len()..].trim().to_owned())
        .unwrap_or_default()
}

fn main() {
    let path = std::env::args().nth(1).expect("usage: geoip_load DB.mmdb");
    let started = Instant::now();
    let db = GeoDb::open(path.as_ref()).expect("open the database");
    let took = started.elapsed();
    println!("{}", db.description());
    println!(
        "loaded in {:.2} s: {} IPv4 ranges, {} IPv6 ranges, {} location values, tree kept: {}",
        took.as_secs_f64(),
        db.ipv4_ranges(),
        db.ipv6_ranges(),
        db.location_ids(),
        db.keeps_tree()
    );
    println!("VmRSS {}, VmHWM {}", status("VmRSS:"), status("VmHWM:"));
}
