//! Benchmark fixtures shared by Meridian's benchmarks.
//!
//! Owns: synthetic deployments of any size and the client mixes benchmarks feed them. Benchmarks that
//! compare Meridian with peers (gdnsd, PowerDNS, nginx, HAProxy) are driven from `bench/run`; this crate
//! holds only what Rust benchmarks need. Results are recorded in `bench/RESULTS.md`.

#![forbid(unsafe_code)]

use std::fmt::Write;
use std::sync::Arc;

use meridian_config::{Config, Coordinates, CountryCode};
use meridian_steer::{ClientLocation, RegionStates, Topology};

/// The reference deployment shipped in `examples/meridian.toml` (8 regions).
pub const EXAMPLE: &str = include_str!("../../examples/meridian.toml");

/// A synthetic deployment of `n` regions spread over the inhabited latitudes, half of them EU jurisdiction,
/// with services `near` (nearest, GDPR residency, near-tie 100 km, spill at 0.8), `weighted` and `failover`
/// over all of them.
pub fn synthetic(n: usize) -> Result<Config, meridian_config::ConfigError> {
    Config::from_toml_str(&synthetic_toml(n))
}

/// The text of [`synthetic`]'s deployment (to extend it, e.g. with `[services.near.latency]`).
pub fn synthetic_toml(n: usize) -> String {
    let mut t = String::from("schema-version = 1\n");
    let golden = 137.507_764_f64;
    for i in 0..n {
        // A golden-angle spiral between 60S and 65N: even coverage, deterministic.
        let lat = -60.0 + 125.0 * (i as f64 + 0.5) / n as f64;
        let lon = (i as f64 * golden) % 360.0 - 180.0;
        let jur = if i % 2 == 0 { "eu" } else { "us" };
        let _ = writeln!(
            t,
            "[regions.r{i}]\nname = \"Region {i}\"\nlat = {lat:.4}\nlon = {lon:.4}\ncountry = \"DE\"\n\
             jurisdictions = [\"{jur}\"]\nipv4 = [\"192.0.2.{}\"]\ncapacity = 1000\nweight = {}",
            i % 250 + 1,
            50 + (i % 4) * 50
        );
    }
    let all = (0..n).map(|i| format!("\"r{i}\"")).collect::<Vec<_>>().join(", ");
    let _ = write!(
        t,
        "[residency.gdpr]\ncountry-groups = [\"EEA\"]\njurisdiction = \"eu\"\n\
         [zones.\"b.example\"]\nns = [\"ns.other.\"]\n[zones.\"b.example\".soa]\nmname = \"ns.other.\"\nrname = \"h.other.\"\n\
         [services.near]\nhostname = \"near.b.example\"\npolicy = \"nearest\"\nregions = [{all}]\nresidency = [\"gdpr\"]\n\
         near-tie-km = 100\nspill-at = 0.8\n\
         [services.weighted]\nhostname = \"weighted.b.example\"\npolicy = \"weighted\"\nregions = [{all}]\n\
         [services.failover]\nhostname = \"failover.b.example\"\npolicy = \"failover\"\nregions = [{all}]\n"
    );
    t
}

/// A compiled topology and its initial states.
pub fn compile(config: Config) -> (Topology, RegionStates) {
    let states = RegionStates::initial(&config);
    (Topology::new(Arc::new(config)), states)
}

/// A client mix: capitals of countries in and out of the EEA, with their population-centre coordinates,
/// as the bundled country database would locate them.
pub fn clients() -> Vec<ClientLocation> {
    [
        "PL", "DE", "FR", "GB", "IE", "US", "CA", "BR", "JP", "IN", "ZA", "AU", "ES", "IT", "SE", "MX",
    ]
    .iter()
    .filter_map(|c| CountryCode::parse(c))
    .map(|c| ClientLocation::new(Some(c), Some(c.info().continent), c.info().population_centre))
    .chain(std::iter::once(ClientLocation::new(
        None,
        None,
        Some(Coordinates {
            lat: 35.0,
            lon: 139.0,
        }),
    )))
    .collect()
}

/// One figure for `bench/run`'s summary table, printed as a line `@result {json}` on stdout (the runner
/// collects these lines; people read the lines around them).
#[derive(Clone, Debug, Default)]
pub struct Figure {
    /// Benchmark: `steer`, `propagation`, `dns`, `proxy`, `health`, `drill`.
    pub bench: &'static str,
    /// What was measured, e.g. "8 regions, meet: time per decision".
    pub case: String,
    /// Meridian's value.
    pub value: f64,
    /// Its unit ("ns", "ms", "s", "q/CPU-s", "req/s").
    pub unit: &'static str,
    /// The goal, in words ("< 1000 ns").
    pub goal: String,
    /// Whether the goal is met.
    pub met: bool,
}

impl Figure {
    /// Prints the `@result` line.
    pub fn print(&self) {
        let line = serde_json::json!({
            "bench": self.bench, "case": self.case, "value": self.value, "unit": self.unit,
            "goal": self.goal, "met": self.met,
        });
        println!("@result {line}");
    }
}

/// Latency steering (issue 22): the 8-region reference deployment (service `meet`) or a synthetic one
/// (service `near`) with `[services.S.latency]`, and a latency matrix measured for every client area of
/// [`clients`] and every region (5–250 ms, spread so that some areas move and some stay; 100 samples
/// each), so that the latency step does all its work. Returns the topology, its states and the service.
pub fn latency_case(
    regions: usize,
) -> Result<(Topology, RegionStates, &'static str), meridian_config::ConfigError> {
    let (text, service) = if regions == 8 {
        (EXAMPLE.to_owned(), "meet")
    } else {
        (synthetic_toml(regions), "near")
    };
    let text = format!("{text}\n[services.{service}.latency]\nmin-samples = 20\n");
    let (topo, states) = compile(Config::from_toml_str(&text)?);
    let mut m = meridian_steer::LatencyMatrix::new(topo.region_indices().count());
    for (k, client) in clients().iter().enumerate() {
        let Some(area) = meridian_steer::latency_area(client) else {
            continue;
        };
        for r in topo.region_indices() {
            let rtt_ms = 5.0 + ((k * 31 + r.get() * 17) % 49) as f32 * 5.0;
            m.add(
                area,
                r,
                meridian_steer::Measured {
                    rtt_ms,
                    samples: 100,
                    updated_at_ms: 1,
                },
            );
        }
    }
    Ok((topo, states.with_latency(Arc::new(m)), service))
}
