//! Random worlds for property tests: a configuration (written as TOML and validated, so every generated
//! world is one an operator could deploy), region states, a client and a time.

use std::fmt::Write;
use std::sync::Arc;

use meridian_config::{Config, Coordinates, CountryCode};
use meridian_steer::*;
use proptest::prelude::*;

pub(crate) const NOW: u64 = 1_800_000_000_000;
/// Client countries drawn from; the first four are in the EEA.
pub(crate) const COUNTRIES: &[&str] = &["PL", "DE", "FR", "IE", "GB", "US", "CA", "JP", "BR"];
const CONTINENTS: &[&str] = &["EU", "NA", "AS", "SA"];

#[derive(Clone, Debug)]
pub(crate) struct RegionSpec {
    pub(crate) lat: f64,
    pub(crate) lon: f64,
    pub(crate) eu: bool,
    pub(crate) weight: u32,
    pub(crate) capacity: u32,
    pub(crate) health: Health,
    pub(crate) drained: bool,
    pub(crate) in_flight: Option<u32>,
    /// (mode, still active at NOW)
    pub(crate) drill: Option<(DrillMode, bool)>,
}

#[derive(Clone, Debug)]
pub(crate) struct Spec {
    pub(crate) regions: Vec<RegionSpec>,
    pub(crate) policy: &'static str,
    pub(crate) answer: usize,
    pub(crate) spill_at: f64,
    pub(crate) when_all_down: &'static str,
    pub(crate) fallback: usize,
    pub(crate) tie_km: f64,
    /// (countries covered, restrict unknown clients)
    pub(crate) residency: Option<(Vec<&'static str>, bool)>,
    pub(crate) unknown_list: Vec<usize>,
    pub(crate) geo_countries: Vec<(&'static str, Vec<usize>)>,
    pub(crate) geo_continents: Vec<(&'static str, Vec<usize>)>,
    pub(crate) geo_default: Vec<usize>,
    pub(crate) client_country: Option<&'static str>,
    pub(crate) client_point: Option<(f64, f64)>,
    pub(crate) hash: u64,
}

pub(crate) struct World {
    pub(crate) spec: Spec,
    pub(crate) config: Arc<Config>,
    pub(crate) topo: Topology,
    pub(crate) states: RegionStates,
    pub(crate) client: ClientLocation,
}

impl World {
    pub(crate) fn query(&self) -> Query<'_> {
        Query {
            service: self
                .topo
                .service_index("s")
                .expect("generated worlds have service s"),
            client: &self.client,
            request_hash: self.spec.hash,
            now_ms: NOW,
        }
    }

    pub(crate) fn decide(&self) -> Decision {
        steer(&self.topo, &self.states, &self.query())
    }

    pub(crate) fn decide_with(&self, states: &RegionStates) -> Decision {
        steer(&self.topo, states, &self.query())
    }
}

fn region_spec() -> impl Strategy<Value = RegionSpec> {
    let drill = prop_oneof![
        6 => Just(None),
        1 => any::<bool>().prop_map(|a| Some((DrillMode::Down, a))),
        1 => any::<bool>().prop_map(|a| Some((DrillMode::Drain, a))),
        1 => (0u8..=100, any::<bool>()).prop_map(|(p, a)| Some((DrillMode::Capacity { percent: p }, a))),
    ];
    let health = prop_oneof![3 => Just(Health::Up), 1 => Just(Health::Down), 1 => Just(Health::Unknown)];
    (
        (-60.0f64..70.0, -180.0f64..180.0),
        any::<bool>(),
        prop_oneof![1 => Just(0u32), 6 => 1u32..6],
        1u32..2000,
        health,
        prop::bool::weighted(0.15),
        prop::option::weighted(0.5, 0u32..4000),
        drill,
    )
        .prop_map(
            |((lat, lon), eu, weight, capacity, health, drained, in_flight, drill)| RegionSpec {
                lat,
                lon,
                eu,
                weight,
                capacity,
                health,
                drained,
                in_flight,
                drill,
            },
        )
}

fn subset(n: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0..n, 1..=n).prop_map(|mut v| {
        let mut seen = Vec::new();
        v.retain(|x| {
            let new = !seen.contains(x);
            seen.push(*x);
            new
        });
        v
    })
}

pub(crate) fn spec(max_regions: usize) -> impl Strategy<Value = Spec> {
    prop::collection::vec(region_spec(), 2..=max_regions).prop_flat_map(|mut regions| {
        regions[0].eu = true; // residency always has somewhere to go
        let n = regions.len();
        (
            (
                Just(regions),
                prop::sample::select(vec!["nearest", "failover", "weighted", "geo"]),
                1..=n.min(4),
                prop_oneof![Just(1.0), 0.3f64..1.0],
                prop::sample::select(vec!["panic", "servfail", "fallback"]),
                0..n,
                prop_oneof![Just(0.0), 0.0f64..3000.0],
            ),
            (
                prop::option::of((prop::sample::subsequence(COUNTRIES.to_vec(), 1..5), any::<bool>())),
                subset(n),
                prop::collection::vec((prop::sample::select(COUNTRIES.to_vec()), subset(n)), 0..3),
                prop::collection::vec((prop::sample::select(CONTINENTS.to_vec()), subset(n)), 0..3),
                subset(n),
                prop::option::weighted(0.85, prop::sample::select(COUNTRIES.to_vec())),
                prop::option::weighted(0.85, (-60.0f64..70.0, -180.0f64..180.0)),
                any::<u64>(),
            ),
        )
            .prop_map(
                |(
                    (regions, policy, answer, spill_at, when_all_down, fallback, tie_km),
                    (residency, unknown_list, gc, gk, gd, cc, cp, hash),
                )| {
                    let mut dedup_c: Vec<(&'static str, Vec<usize>)> = Vec::new();
                    for (c, l) in gc {
                        if !dedup_c.iter().any(|(x, _)| *x == c) {
                            dedup_c.push((c, l));
                        }
                    }
                    let mut dedup_k: Vec<(&'static str, Vec<usize>)> = Vec::new();
                    for (c, l) in gk {
                        if !dedup_k.iter().any(|(x, _)| *x == c) {
                            dedup_k.push((c, l));
                        }
                    }
                    Spec {
                        regions,
                        policy,
                        answer,
                        spill_at,
                        when_all_down,
                        fallback,
                        tie_km,
                        residency,
                        unknown_list,
                        geo_countries: dedup_c,
                        geo_continents: dedup_k,
                        geo_default: gd,
                        client_country: cc,
                        client_point: cp,
                        hash,
                    }
                },
            )
    })
}

impl Spec {
    /// A plain world: one service over `regions` with `policy`, no residency, one answer, no spill.
    pub(crate) fn simple(policy: &'static str, regions: Vec<RegionSpec>) -> Self {
        Self {
            regions,
            policy,
            answer: 1,
            spill_at: 1.0,
            when_all_down: "panic",
            fallback: 0,
            tie_km: 0.0,
            residency: None,
            unknown_list: vec![0],
            geo_countries: Vec::new(),
            geo_continents: Vec::new(),
            geo_default: vec![0],
            client_country: None,
            client_point: None,
            hash: 0,
        }
    }
}

/// Makes every list contain an EU region, so residency is always satisfiable (validation would otherwise,
/// rightly, reject the world).
fn with_eu(list: &[usize], regions: &[RegionSpec]) -> Vec<usize> {
    let mut l = list.to_vec();
    if !l.iter().any(|i| regions[*i].eu) {
        l.push(0);
    }
    l
}

fn ids(list: &[usize]) -> String {
    list.iter()
        .map(|i| format!("\"r{i}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn toml(s: &Spec) -> String {
    let mut t = String::from("schema-version = 1\n");
    for (i, r) in s.regions.iter().enumerate() {
        let jur = if r.eu { "\"eu\"" } else { "\"xx\"" };
        writeln!(
            t,
            "[regions.r{i}]\nname = \"R{i}\"\nlat = {}\nlon = {}\ncountry = \"DE\"\njurisdictions = [{jur}]\n\
             ipv4 = [\"192.0.2.{}\"]\ncapacity = {}\nweight = {}",
            r.lat,
            r.lon,
            i + 1,
            r.capacity,
            r.weight
        )
        .unwrap();
    }
    if let Some((countries, restrict)) = &s.residency {
        let cs = countries
            .iter()
            .map(|c| format!("\"{c}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let uc = if *restrict { "restrict" } else { "exempt" };
        writeln!(
            t,
            "[residency.rule]\ncountries = [{cs}]\njurisdiction = \"eu\"\nunknown-clients = \"{uc}\""
        )
        .unwrap();
    }
    t.push_str("[zones.\"t.example\"]\nns = [\"ns.other.\"]\n[zones.\"t.example\".soa]\nmname = \"ns.other.\"\nrname = \"h.other.\"\n");
    let all: Vec<usize> = (0..s.regions.len()).collect();
    writeln!(
        t,
        "[services.s]\nhostname = \"s.t.example\"\npolicy = \"{}\"\nregions = [{}]\nanswer-regions = {}\nspill-at = {}\n\
         when-all-down = \"{}\"",
        s.policy,
        ids(&all),
        s.answer,
        s.spill_at,
        s.when_all_down
    )
    .unwrap();
    if s.when_all_down == "fallback" {
        writeln!(t, "fallback-region = \"r{}\"", s.fallback).unwrap();
    }
    if s.residency.is_some() {
        t.push_str("residency = [\"rule\"]\n");
    }
    if s.policy == "nearest" {
        writeln!(
            t,
            "near-tie-km = {}\nunknown-location = [{}]",
            s.tie_km,
            ids(&with_eu(&s.unknown_list, &s.regions))
        )
        .unwrap();
    }
    if s.policy == "geo" {
        writeln!(
            t,
            "[services.s.geo]\ndefault = [{}]",
            ids(&with_eu(&s.geo_default, &s.regions))
        )
        .unwrap();
        for (c, l) in &s.geo_countries {
            writeln!(t, "countries.{c} = [{}]", ids(&with_eu(l, &s.regions))).unwrap();
        }
        for (c, l) in &s.geo_continents {
            writeln!(t, "continents.{c} = [{}]", ids(&with_eu(l, &s.regions))).unwrap();
        }
    }
    t
}

pub(crate) fn build(spec: Spec) -> World {
    let text = toml(&spec);
    let config = Arc::new(Config::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}")));
    let mut states = RegionStates::initial(&config);
    let topo = Topology::new(config.clone());
    for (i, r) in spec.regions.iter().enumerate() {
        let s = states
            .get_mut(topo.region_index(&format!("r{i}")).unwrap())
            .unwrap();
        s.health = r.health;
        s.drained = r.drained;
        s.in_flight = r.in_flight;
        if let Some((mode, active)) = r.drill {
            let expires_at_ms = if active { NOW + 1 } else { NOW };
            s.drills.push(Drill {
                id: format!("d{i}"),
                mode,
                expires_at_ms,
            });
        }
    }
    let country = spec.client_country.and_then(CountryCode::parse);
    let client = ClientLocation::new(
        country,
        country.map(|c| c.info().continent),
        spec.client_point.map(|(lat, lon)| Coordinates { lat, lon }),
    );
    World {
        spec,
        config,
        topo,
        states,
        client,
    }
}
