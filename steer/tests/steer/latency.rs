//! The latency step of policy `nearest` (`docs/latency.md`), on the reference deployment with random
//! measurements: fallback to distance without enough samples, the margin (hysteresis), residency first,
//! determinism, and the exploration share.

use std::sync::Arc;

use meridian_config::{Config, Coordinates, CountryCode};
use meridian_steer::*;
use proptest::prelude::*;

const EXAMPLE: &str = include_str!("../../../examples/meridian.toml");
const NOW: u64 = 1_800_000_000_000;
const MIN_SAMPLES: u32 = 20;
const MARGIN_MS: f64 = 10.0;

/// The reference deployment with latency steering on service `meet` (one region per answer, residency
/// `gdpr`) and `api` (two per answer, near-ties of 400 km, no residency).
fn topology(explore_percent: f64) -> Topology {
    let text = format!(
        "{EXAMPLE}\n[services.meet.latency]\nmin-samples = {MIN_SAMPLES}\nmargin-ms = {MARGIN_MS}\n\
         margin-percent = 10\nexplore-percent = {explore_percent}\n\n[services.api.latency]\n\
         min-samples = {MIN_SAMPLES}\nmargin-ms = {MARGIN_MS}\nmargin-percent = 10\n\
         explore-percent = {explore_percent}\n"
    );
    Topology::new(Arc::new(Config::from_toml_str(&text).unwrap()))
}

/// Clients: (country, lat, lon). The first five are in the EEA.
const CLIENTS: [(&str, f64, f64); 9] = [
    ("PL", 52.23, 21.01),
    ("DE", 50.94, 6.96),
    ("FR", 48.85, 2.35),
    ("ES", 40.42, -3.70),
    ("IE", 53.35, -6.26),
    ("GB", 53.48, -2.24),
    ("US", 40.71, -74.0),
    ("US", 37.77, -122.42),
    ("CA", 43.65, -79.38),
];
const EEA_CLIENTS: usize = 5;

fn client(i: usize) -> ClientLocation {
    let (cc, lat, lon) = CLIENTS[i % CLIENTS.len()];
    let country = CountryCode::parse(cc).unwrap();
    ClientLocation::new(
        Some(country),
        Some(country.info().continent),
        Some(Coordinates { lat, lon }),
    )
}

/// A random matrix for every client area: per region, `None` (no estimate) or (rtt, samples).
fn cells() -> impl Strategy<Value = Vec<Vec<Option<(f32, u32)>>>> {
    prop::collection::vec(
        prop::collection::vec(prop::option::of((1.0f32..300.0, 0u32..60)), 8),
        CLIENTS.len(),
    )
}

fn states(topo: &Topology, cells: &[Vec<Option<(f32, u32)>>]) -> RegionStates {
    let mut m = LatencyMatrix::new(8);
    for (i, row) in cells.iter().enumerate() {
        let area = latency_area(&client(i)).unwrap();
        for (r, cell) in topo.region_indices().zip(row) {
            if let Some((rtt_ms, samples)) = *cell {
                m.add(
                    area,
                    r,
                    Measured {
                        rtt_ms,
                        samples,
                        updated_at_ms: NOW,
                    },
                );
            }
        }
    }
    RegionStates::initial(topo.config()).with_latency(Arc::new(m))
}

fn decide(topo: &Topology, states: &RegionStates, service: &str, c: &ClientLocation, hash: u64) -> Decision {
    let q = Query {
        service: topo.service_index(service).unwrap(),
        client: c,
        request_hash: hash,
        now_ms: NOW,
    };
    steer(topo, states, &q)
}

fn measured(states: &RegionStates, c: &ClientLocation, r: RegionIndex) -> Option<f64> {
    let row = states.latency().row(latency_area(c)?)?;
    let m = row[r.get()];
    (m.samples >= MIN_SAMPLES).then_some(f64::from(m.rtt_ms))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Without enough samples for the nearest region, distance decides: the answer is the one without
    /// any measurement. With them, a region other than the nearest answers only if it beats the nearest
    /// by more than the margin — and none that beats it is ignored.
    #[test]
    fn distance_decides_unless_a_measured_region_wins_by_the_margin(
        cells in cells(), i in 0..CLIENTS.len(), hash: u64, service in prop::sample::select(vec!["meet", "api"]),
    ) {
        let topo = topology(0.0);
        let measured_states = states(&topo, &cells);
        let blank = RegionStates::initial(topo.config());
        let c = client(i);
        let d = decide(&topo, &measured_states, service, &c, hash);
        let by_distance = decide(&topo, &blank, service, &c, hash);
        let note = d.latency.unwrap();
        prop_assert_eq!(note.explored, None);
        prop_assert_eq!(note.nearest, by_distance.chosen.first().copied());
        let nearest = note.nearest.unwrap();
        match measured(&measured_states, &c, nearest) {
            None => {
                prop_assert_eq!(note.outcome, LatencyOutcome::NotMeasured);
                prop_assert_eq!(&d.chosen[..], &by_distance.chosen[..]);
            }
            Some(base) => {
                let margin = MARGIN_MS.max(0.1 * base);
                let first = d.chosen[0];
                let beats = |r: RegionIndex| measured(&measured_states, &c, r).is_some_and(|rtt| base - rtt > margin);
                let allowed: Vec<RegionIndex> = by_distance.verdicts.iter()
                    .filter(|v| !matches!(v.status, Status::Skipped(_)))
                    .map(|v| v.region).collect();
                if allowed.iter().any(|r| beats(*r)) {
                    prop_assert_eq!(note.outcome, LatencyOutcome::Faster);
                    prop_assert!(beats(first), "{} does not beat the nearest", topo.region_id(first));
                    // Within the margin of the fastest that beats the nearest.
                    let best = allowed.iter().filter(|r| beats(**r))
                        .filter_map(|r| measured(&measured_states, &c, *r)).fold(f64::INFINITY, f64::min);
                    prop_assert!(measured(&measured_states, &c, first).unwrap() <= best + margin);
                } else {
                    prop_assert_eq!(note.outcome, LatencyOutcome::WithinMargin);
                    prop_assert_eq!(&d.chosen[..], &by_distance.chosen[..]);
                }
            }
        }
    }

    /// Hysteresis: the two fastest regions, within the margin of each other, swapping their estimates
    /// (the wobble of near-equal measurements) do not move the answer: inside the band the nearer wins.
    #[test]
    fn near_equal_regions_do_not_alternate(
        cells in cells(), i in 0..CLIENTS.len(), a in 0usize..8, b in 0usize..8, hash: u64,
    ) {
        let topo = topology(0.0);
        let c = client(i);
        let (Some((ra, sa)), Some((rb, sb))) = (cells[i][a], cells[i][b]) else { return Ok(()) };
        prop_assume!(a != b && sa >= MIN_SAMPLES && sb >= MIN_SAMPLES);
        prop_assume!((f64::from(ra) - f64::from(rb)).abs() <= MARGIN_MS);
        let fastest = ra.min(rb);
        prop_assume!(cells[i].iter().enumerate().all(|(r, cell)| {
            r == a || r == b || cell.is_none_or(|(rtt, n)| n < MIN_SAMPLES || rtt >= fastest)
        }));
        let before_states = states(&topo, &cells);
        let before = decide(&topo, &before_states, "meet", &c, hash);
        let allowed = |r: usize| !matches!(
            before.verdicts.iter().find(|v| v.region.get() == r).map(|v| v.status),
            Some(Status::Skipped(_)) | None
        );
        prop_assume!(allowed(a) && allowed(b));
        let nearest = before.latency.unwrap().nearest.unwrap();
        prop_assume!(nearest.get() != a && nearest.get() != b);
        let mut swapped = cells.clone();
        swapped[i].swap(a, b);
        let after = decide(&topo, &states(&topo, &swapped), "meet", &c, hash);
        prop_assert_eq!(&before.chosen[..], &after.chosen[..]);
    }

    /// Residency first: an EEA client is never answered with a non-EU region however fast it is
    /// measured, in any answer slot, explored or not.
    #[test]
    fn residency_is_never_traded_for_speed(cells in cells(), i in 0..EEA_CLIENTS, hash: u64) {
        let topo = topology(20.0);
        let mut cells = cells;
        for r in ["lon", "bhs", "vin", "hil"] {
            cells[i][topo.region_index(r).unwrap().get()] = Some((1.0, 1000));
        }
        let c = client(i);
        let d = decide(&topo, &states(&topo, &cells), "meet", &c, hash);
        for r in d.chosen.iter() {
            prop_assert!(topo.config().regions()[r.get()].has_jurisdiction("eu"), "{}", topo.region_id(*r));
        }
    }

    /// The same inputs give the same decision, with independently built topologies and matrices.
    #[test]
    fn deterministic(cells in cells(), i in 0..CLIENTS.len(), hash: u64) {
        let (t1, t2) = (topology(5.0), topology(5.0));
        let d1 = decide(&t1, &states(&t1, &cells), "api", &client(i), hash);
        let d2 = decide(&t2, &states(&t2, &cells), "api", &client(i), hash);
        prop_assert_eq!(d1, d2);
    }
}

/// The exploration share is what is configured (within sampling error) and explores only the next
/// `explore-regions` regions; an explored answer still lists the chosen region second.
#[test]
fn exploration_share_is_bounded() {
    for percent in [0.0, 1.0, 5.0, 20.0] {
        let topo = topology(percent);
        let s = RegionStates::initial(topo.config());
        let c = client(0);
        let n = 40_000u64;
        let mut explored = 0u64;
        for h in 0..n {
            let hash = hash::mix(h);
            let d = decide(&topo, &s, "api", &c, hash);
            let note = d.latency.unwrap();
            assert_eq!(d.depends_on_hash, percent > 0.0);
            if let Some(e) = note.explored {
                explored += 1;
                assert_eq!(d.chosen[0], e);
                assert_eq!(d.chosen[1], note.chosen.unwrap());
                // Warsaw's next two by distance: Frankfurt (by near-tie weight, or Strasbourg or
                // Gravelines), never London or North America.
                assert!(
                    ["fra", "sbg", "gra"].contains(&topo.region_id(e)),
                    "{}",
                    topo.region_id(e)
                );
            }
        }
        let share = explored as f64 / n as f64;
        let expected = percent / 100.0;
        assert!(
            (share - expected).abs() <= 0.006,
            "{percent}%: explored {share:.4}"
        );
    }
}

/// The end-to-end story in one area: distance first; the nearest region measured slow and another fast
/// with enough samples moves the area; swapped, it moves back; near-equal stays put.
#[test]
fn answers_follow_measured_latency() {
    let topo = topology(0.0);
    let c = client(0); // Warsaw
    let area = latency_area(&c).unwrap();
    let (waw, fra) = (
        topo.region_index("waw").unwrap(),
        topo.region_index("fra").unwrap(),
    );
    let with = |cells: &[(RegionIndex, f32, u32)]| {
        let mut m = LatencyMatrix::new(8);
        for &(r, rtt_ms, samples) in cells {
            m.add(
                area,
                r,
                Measured {
                    rtt_ms,
                    samples,
                    updated_at_ms: NOW,
                },
            );
        }
        RegionStates::initial(topo.config()).with_latency(Arc::new(m))
    };
    let first = |s: &RegionStates| {
        topo.region_id(decide(&topo, s, "meet", &c, 1).chosen[0])
            .to_owned()
    };
    assert_eq!(first(&with(&[])), "waw");
    // Frankfurt faster, but too few samples.
    assert_eq!(
        first(&with(&[(waw, 80.0, 100), (fra, 20.0, MIN_SAMPLES - 1)])),
        "waw"
    );
    let s = with(&[(waw, 80.0, 100), (fra, 20.0, MIN_SAMPLES)]);
    assert_eq!(first(&s), "fra");
    let d = decide(&topo, &s, "meet", &c, 1);
    assert_eq!(d.latency.unwrap().outcome, LatencyOutcome::Faster);
    assert!(matches!(
        d.verdict(fra),
        Some(Status::Chosen {
            rank: 0,
            near_tie: false,
            ..
        })
    ));
    assert_eq!(first(&with(&[(waw, 20.0, 100), (fra, 80.0, 100)])), "waw");
    // 8 ms better than 60 ms: inside max(10 ms, 10 %).
    assert_eq!(first(&with(&[(waw, 60.0, 100), (fra, 52.0, 100)])), "waw");
    // A drained faster region is not chosen.
    let mut s = with(&[(waw, 80.0, 100), (fra, 20.0, 100)]);
    s.get_mut(fra).unwrap().drained = true;
    assert_eq!(first(&s), "waw");
}
