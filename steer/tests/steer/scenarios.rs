//! Scenarios on `examples/meridian.toml`: the decisions an operator of that deployment expects.

use std::sync::Arc;

use meridian_config::{Config, Coordinates, CountryCode};
use meridian_steer::*;

const EXAMPLE: &str = include_str!("../../../examples/meridian.toml");
const NOW: u64 = 1_800_000_000_000;

struct Fixture {
    topo: Topology,
    states: RegionStates,
}

impl Fixture {
    fn new() -> Self {
        let cfg = Arc::new(Config::from_toml_str(EXAMPLE).unwrap());
        let states = RegionStates::initial(&cfg);
        Self {
            topo: Topology::new(cfg),
            states,
        }
    }

    fn set(&mut self, id: &str, f: impl FnOnce(&mut RegionState)) -> &mut Self {
        let r = self.topo.region_index(id).unwrap();
        f(self.states.get_mut(r).unwrap());
        self
    }

    fn decide(&self, service: &str, client: &ClientLocation, hash: u64) -> Decision {
        let q = Query {
            service: self.topo.service_index(service).unwrap(),
            client,
            request_hash: hash,
            now_ms: NOW,
        };
        steer(&self.topo, &self.states, &q)
    }

    fn ids(&self, d: &Decision) -> Vec<&str> {
        d.chosen.iter().map(|r| self.topo.region_id(*r)).collect()
    }

    fn first(&self, service: &str, client: &ClientLocation) -> Option<&str> {
        self.decide(service, client, 7)
            .chosen
            .first()
            .map(|r| self.topo.region_id(*r))
    }

    fn status(&self, d: &Decision, id: &str) -> Status {
        *d.verdict(self.topo.region_index(id).unwrap()).unwrap()
    }
}

fn at(country: &str, lat: f64, lon: f64) -> ClientLocation {
    let country = CountryCode::parse(country).unwrap();
    ClientLocation::new(
        Some(country),
        Some(country.info().continent),
        Some(Coordinates { lat, lon }),
    )
}

fn warsaw() -> ClientLocation {
    at("PL", 52.23, 21.01)
}

#[test]
fn clients_go_to_the_nearest_region() {
    let f = Fixture::new();
    assert_eq!(f.first("meet", &warsaw()), Some("waw"));
    assert_eq!(f.first("meet", &at("DE", 50.94, 6.96)), Some("fra"), "Cologne");
    assert_eq!(
        f.first("meet", &at("GB", 53.48, -2.24)),
        Some("lon"),
        "Manchester: UK is not covered by gdpr"
    );
    assert_eq!(f.first("meet", &at("CA", 43.65, -79.38)), Some("bhs"), "Toronto");
    assert_eq!(f.first("meet", &at("US", 40.71, -74.0)), Some("vin"), "New York");
    assert_eq!(
        f.first("meet", &at("US", 37.77, -122.42)),
        Some("hil"),
        "San Francisco"
    );
    let d = f.decide("meet", &warsaw(), 7);
    assert_eq!(d.basis, Basis::Distance);
    assert_eq!(d.mode, Mode::Normal);
    assert!(matches!(f.status(&d, "fra"), Status::Available));
}

#[test]
fn residency_keeps_eea_clients_on_eu_regions() {
    let f = Fixture::new();
    // Dublin is nearer London than any EU region, but Ireland is in the EEA.
    let dublin = at("IE", 53.35, -6.26);
    assert_eq!(f.first("meet", &dublin), Some("gra"));
    let d = f.decide("meet", &dublin, 7);
    assert!(matches!(
        f.status(&d, "lon"),
        Status::Skipped(Skip::Residency { .. })
    ));
    assert!(matches!(d.residency, ResidencyNote::Applied(1)));
    // Without residency (the api service), Dublin goes to London.
    assert_eq!(f.first("api", &dublin), Some("lon"));
    // An EEA client outside Europe's mainland (Réunion) is still kept on EU regions.
    let reunion = at("RE", -21.11, 55.53);
    let d = f.decide("meet", &reunion, 7);
    assert!(
        f.ids(&d).iter().all(|r| ["waw", "fra", "sbg", "gra"].contains(r)),
        "{:?}",
        f.ids(&d)
    );
}

#[test]
fn residency_holds_when_every_eu_region_is_down() {
    let mut f = Fixture::new();
    for id in ["waw", "fra", "sbg", "gra"] {
        f.set(id, |s| s.health = Health::Down);
    }
    let d = f.decide("meet", &warsaw(), 7);
    // Panic mode answers the least-bad EU region, never London or North America.
    assert_eq!(d.mode, Mode::Panic);
    assert_eq!(f.ids(&d), ["waw"]);
    // The UK client is unaffected.
    assert_eq!(f.first("meet", &at("GB", 51.5, -0.1)), Some("lon"));
}

#[test]
fn a_down_region_fails_over_to_the_next_nearest() {
    let mut f = Fixture::new();
    f.set("waw", |s| s.health = Health::Down);
    let d = f.decide("meet", &warsaw(), 7);
    assert_eq!(f.ids(&d), ["fra"]);
    assert_eq!(f.status(&d, "waw"), Status::Skipped(Skip::Down));
    f.set("waw", |s| s.health = Health::Up);
    assert_eq!(f.first("meet", &warsaw()), Some("waw"));
}

#[test]
fn drains_and_weight_zero_exclude_and_say_so() {
    let mut f = Fixture::new();
    f.set("waw", |s| s.drained = true);
    let d = f.decide("meet", &warsaw(), 7);
    assert_eq!(f.ids(&d), ["fra"]);
    assert_eq!(f.status(&d, "waw"), Status::Skipped(Skip::Drained));
    f.set("waw", |s| {
        s.drained = false;
        s.weight = 0;
    });
    let d = f.decide("meet", &warsaw(), 7);
    assert_eq!(f.status(&d, "waw"), Status::Skipped(Skip::WeightZero));
}

#[test]
fn drills_act_until_they_expire_without_anyone_stopping_them() {
    let mut f = Fixture::new();
    f.set("waw", |s| {
        s.drills.push(Drill {
            id: "d1".into(),
            mode: DrillMode::Down,
            expires_at_ms: NOW + 1,
        });
    });
    let d = f.decide("meet", &warsaw(), 7);
    assert_eq!(f.ids(&d), ["fra"]);
    assert_eq!(f.status(&d, "waw"), Status::Skipped(Skip::DrillDown { drill: 0 }));
    // One millisecond later the same snapshot answers as if the drill never existed.
    let q = Query {
        service: f.topo.service_index("meet").unwrap(),
        client: &warsaw(),
        request_hash: 7,
        now_ms: NOW + 1,
    };
    assert_eq!(f.ids(&steer(&f.topo, &f.states, &q)), ["waw"]);
    // A drain drill.
    f.set("waw", |s| s.drills[0].mode = DrillMode::Drain);
    assert_eq!(
        f.status(&f.decide("meet", &warsaw(), 7), "waw"),
        Status::Skipped(Skip::DrillDrain { drill: 0 })
    );
}

#[test]
fn failover_policy_uses_the_backup_then_servfail() {
    let mut f = Fixture::new();
    let anywhere = at("US", 40.0, -100.0);
    assert_eq!(
        f.first("files", &anywhere),
        Some("waw"),
        "primary regardless of location"
    );
    f.set("waw", |s| s.health = Health::Down);
    let d = f.decide("files", &anywhere, 7);
    assert_eq!((f.ids(&d), d.basis), (vec!["fra"], Basis::FailoverOrder));
    f.set("fra", |s| s.health = Health::Down);
    let d = f.decide("files", &anywhere, 7);
    assert_eq!(d.mode, Mode::NoAnswer(NoAnswer::AllDown));
    assert!(d.chosen.is_empty());
}

#[test]
fn unknown_location_uses_the_service_list_and_fails_closed_on_residency() {
    let f = Fixture::new();
    let d = f.decide("meet", &ClientLocation::UNKNOWN, 7);
    assert_eq!(d.basis, Basis::UnknownLocation);
    // unknown-location = ["fra", "vin"], and gdpr restricts unknown clients: vin is excluded.
    assert_eq!(f.ids(&d), ["fra"]);
    assert!(matches!(
        f.status(&d, "vin"),
        Status::Skipped(Skip::Residency { .. })
    ));
    assert!(matches!(f.status(&d, "waw"), Status::Skipped(Skip::NotListed)));
    assert!(matches!(d.residency, ResidencyNote::UnknownRestricted(_)));
}

#[test]
fn capacity_spill_is_gradual_and_stable_per_client() {
    let mut f = Fixture::new();
    // meet spills at 0.9: Warsaw at 112.5% of capacity keeps 0.9 / 1.125 = 80% of its clients.
    f.set("waw", |s| s.in_flight = Some(4500));
    let n = 20_000;
    let moved = (0..n)
        .filter(|h| f.decide("meet", &warsaw(), *h).chosen[0] != f.topo.region_index("waw").unwrap())
        .count();
    let share = moved as f64 / n as f64;
    assert!((share - 0.2).abs() < 0.015, "moved share {share}");
    // The same client always gets the same answer.
    for h in 0..200 {
        assert_eq!(f.decide("meet", &warsaw(), h), f.decide("meet", &warsaw(), h));
    }
    // A moved client is told why.
    let h = (0..n)
        .find(|h| f.decide("meet", &warsaw(), *h).chosen[0] != f.topo.region_index("waw").unwrap())
        .unwrap();
    let d = f.decide("meet", &warsaw(), h);
    assert_eq!(f.ids(&d), ["fra"]);
    assert!(
        matches!(f.status(&d, "waw"), Status::Spilled { moved_share, .. } if (moved_share - 0.2).abs() < 1e-9)
    );
    assert!(matches!(
        f.status(&d, "fra"),
        Status::Chosen {
            spilled_from: Some(_),
            ..
        }
    ));
    // Below the threshold nobody moves; more overload moves more.
    f.set("waw", |s| s.in_flight = Some(3500));
    assert!((0..2000).all(|h| f.ids(&f.decide("meet", &warsaw(), h)) == ["waw"]));
    f.set("waw", |s| s.in_flight = Some(9000));
    let moved2 = (0..n)
        .filter(|h| f.ids(&f.decide("meet", &warsaw(), *h)) != ["waw"])
        .count();
    assert!((moved2 as f64 / n as f64 - 0.6).abs() < 0.015, "{moved2}");
}

#[test]
fn capacity_drill_scales_capacity() {
    let mut f = Fixture::new();
    f.set("waw", |s| {
        s.in_flight = Some(3000);
        s.drills.push(Drill {
            id: "c".into(),
            mode: DrillMode::Capacity { percent: 50 },
            expires_at_ms: NOW + 60_000,
        });
    });
    // 3000 / (4000 * 50%) = 1.5 -> moves 1 - 0.9/1.5 = 40%.
    let n = 10_000;
    let moved = (0..n)
        .filter(|h| f.ids(&f.decide("meet", &warsaw(), *h)) != ["waw"])
        .count();
    assert!((moved as f64 / n as f64 - 0.4).abs() < 0.02, "{moved}");
}

#[test]
fn when_nothing_has_headroom_order_is_kept() {
    let mut f = Fixture::new();
    for id in ["waw", "fra", "lon", "sbg", "gra", "bhs", "vin", "hil"] {
        f.set(id, |s| s.in_flight = Some(s.capacity * 10));
    }
    for h in 0..500 {
        let d = f.decide("meet", &warsaw(), h);
        assert_eq!(
            f.ids(&d),
            ["waw"],
            "moving clients between saturated regions helps nobody"
        );
        assert!(matches!(
            f.status(&d, "waw"),
            Status::Chosen {
                over_capacity: true,
                ..
            }
        ));
    }
}

#[test]
fn near_ties_are_broken_by_weight() {
    let f = Fixture::new();
    // Metz is within 400 km of Frankfurt (weight 200), Strasbourg and Gravelines (100 each), and of
    // London (100), not of Warsaw. api has no residency rule.
    let metz = at("FR", 49.12, 6.18);
    let n = 30_000;
    let mut counts = std::collections::BTreeMap::new();
    for h in 0..n {
        let d = f.decide("api", &metz, h);
        assert_eq!(d.chosen.len(), 2, "api answers two regions");
        *counts
            .entry(f.topo.region_id(d.chosen[0]).to_owned())
            .or_insert(0usize) += 1;
    }
    let share = |id: &str| *counts.get(id).unwrap_or(&0) as f64 / n as f64;
    assert!((share("fra") - 0.4).abs() < 0.02, "{counts:?}");
    for id in ["sbg", "gra", "lon"] {
        assert!((share(id) - 0.2).abs() < 0.02, "{counts:?}");
    }
    assert_eq!(share("waw"), 0.0);
    // meet has the default 50 km tie: Metz always gets the nearest, Strasbourg (about 130 km).
    assert!((0..1000).all(|h| f.ids(&f.decide("meet", &metz, h))[0] == "sbg"));
}

#[test]
fn unknown_service_is_no_answer_not_a_panic() {
    let f = Fixture::new();
    // `files` is the third service of the example; a topology without it must not index past its end.
    let files = f.topo.service_index("files").unwrap();
    let without_files = EXAMPLE.split("[services.files]").next().unwrap();
    let smaller = Topology::new(Arc::new(Config::from_toml_str(without_files).unwrap()));
    let q = Query {
        service: files,
        client: &warsaw(),
        request_hash: 1,
        now_ms: NOW,
    };
    let d = steer(&smaller, &f.states, &q);
    assert_eq!(d.mode, Mode::NoAnswer(NoAnswer::UnknownService));
    assert!(d.chosen.is_empty());
}
