//! The safety checks against the steering function itself, over random region states of the reference
//! configuration: a violation is reported exactly when steering would have to leave normal mode for the
//! clients it concerns (residency: a Polish client of `meet`; no usable region: an American client of
//! `meet`, anyone of `files`), and the checks only ever grow as regions become less usable.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use meridian_admin::safety::{Violation, introduced, introduced_across, usable, violations};
use meridian_config::{Config, CountryCode};
use meridian_steer::{
    ClientLocation, Drill, DrillMode, Health, Mode, Query, RegionState, RegionStates, Topology, steer,
};
use proptest::prelude::*;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/meridian.toml");
const NOW: u64 = 1_795_000_000_000;

fn topology() -> Topology {
    Topology::new(Arc::new(Config::load(std::path::Path::new(EXAMPLE)).unwrap()))
}

fn region_state() -> impl Strategy<Value = RegionState> {
    (
        prop_oneof![Just(Health::Up), Just(Health::Down), Just(Health::Unknown)],
        prop::bool::weighted(0.25),
        prop_oneof![3 => Just(100u32), 1 => Just(0u32)],
        prop_oneof![
            4 => Just(None),
            1 => Just(Some((DrillMode::Down, true))),
            1 => Just(Some((DrillMode::Drain, true))),
            1 => Just(Some((DrillMode::Down, false))),
            1 => Just(Some((DrillMode::Capacity { percent: 10 }, true))),
        ],
    )
        .prop_map(|(health, drained, weight, drill)| RegionState {
            health,
            drained,
            weight,
            in_flight: None,
            capacity: 1000,
            drills: drill
                .map(|(mode, active)| Drill {
                    id: "d".into(),
                    mode,
                    expires_at_ms: if active { NOW + 1 } else { NOW },
                })
                .into_iter()
                .collect(),
        })
}

fn states() -> impl Strategy<Value = Vec<RegionState>> {
    prop::collection::vec(region_state(), 8)
}

fn client(country: &str) -> ClientLocation {
    let c = CountryCode::parse(country).unwrap();
    let info = c.info();
    ClientLocation::new(Some(c), Some(info.continent), info.population_centre)
}

fn mode(t: &Topology, s: &RegionStates, service: &str, who: &ClientLocation) -> Mode {
    steer(
        t,
        s,
        &Query {
            service: t.service_index(service).unwrap(),
            client: who,
            request_hash: 7,
            now_ms: NOW,
        },
    )
    .mode
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn violations_are_what_steering_sees(v in states()) {
        let t = topology();
        let s = RegionStates::from_vec(v);
        let found = violations(&t, &s, NOW);
        let gdpr = Violation::ResidencyWithoutRegion {
            service: "meet".into(),
            rule: "gdpr".into(),
            jurisdiction: "eu".into(),
        };
        let no_meet = Violation::NoUsableRegion { service: "meet".into() };
        let no_files = Violation::NoUsableRegion { service: "files".into() };
        prop_assert_eq!(mode(&t, &s, "meet", &client("PL")) != Mode::Normal, found.contains(&gdpr));
        prop_assert_eq!(mode(&t, &s, "meet", &client("US")) != Mode::Normal, found.contains(&no_meet));
        prop_assert_eq!(mode(&t, &s, "files", &client("US")) != Mode::Normal, found.contains(&no_files));
        prop_assert!(introduced(&t, &s, &s, NOW).is_empty());
    }

    #[test]
    fn less_usable_never_removes_a_violation(v in states(), which in 0usize..8) {
        let t = topology();
        let before = RegionStates::from_vec(v.clone());
        let mut w = v;
        w[which].drained = true;
        let after = RegionStates::from_vec(w);
        let old = violations(&t, &before, NOW);
        let new = violations(&t, &after, NOW);
        for x in &old {
            prop_assert!(new.contains(x), "{x} disappeared");
        }
        let intro = introduced(&t, &before, &after, NOW);
        prop_assert_eq!(intro.len(), new.len() - old.len());
        // Draining a region nobody could use changes nothing.
        if !usable(before.as_slice().get(which).unwrap(), NOW) {
            prop_assert!(intro.is_empty());
        }
    }
}

#[test]
fn expired_drills_and_capacity_drills_leave_a_region_usable() {
    let mut s = RegionState {
        health: Health::Unknown,
        drained: false,
        weight: 1,
        in_flight: None,
        capacity: 10,
        drills: vec![Drill {
            id: "x".into(),
            mode: DrillMode::Down,
            expires_at_ms: NOW,
        }],
    };
    assert!(usable(&s, NOW), "expired at NOW");
    assert!(!usable(&s, NOW - 1), "active just before");
    s.drills[0].mode = DrillMode::Capacity { percent: 0 };
    assert!(usable(&s, NOW - 1));
    s.health = Health::Down;
    assert!(!usable(&s, NOW));
}

/// A configuration change is judged like any other: the violations its states break under the new
/// topology that the current states did not break under the old one.
#[test]
fn a_configuration_that_removes_the_last_usable_eu_region_of_a_service_introduces_a_violation() {
    let old = topology();
    let text = std::fs::read_to_string(EXAMPLE).unwrap();
    let meet = r#"regions = ["waw", "fra", "lon", "sbg", "gra", "bhs", "vin", "hil"]
residency = ["gdpr"]
unknown-location = ["fra", "vin"]"#;
    assert!(text.contains(meet));
    // Still valid: waw, sbg and gra are EU regions. But they are drained.
    let without_fra = text.replace(
        meet,
        r#"regions = ["waw", "lon", "sbg", "gra", "bhs", "vin", "hil"]
residency = ["gdpr"]
unknown-location = ["waw", "vin"]"#,
    );
    let new = Topology::new(Arc::new(Config::from_toml_str(&without_fra).unwrap()));
    let drained = |t: &Topology| {
        let mut s = RegionStates::initial(t.config());
        for r in ["waw", "sbg", "gra"] {
            s.get_mut(t.region_index(r).unwrap()).unwrap().drained = true;
        }
        s
    };
    let (before, after) = (drained(&old), drained(&new));
    assert!(violations(&old, &before, NOW).is_empty());
    let gdpr = Violation::ResidencyWithoutRegion {
        service: "meet".into(),
        rule: "gdpr".into(),
        jurisdiction: "eu".into(),
    };
    assert_eq!(introduced_across(&old, &before, &new, &after, NOW), [gdpr]);
    // Already broken under the old configuration: not introduced again.
    assert!(introduced_across(&new, &after, &new, &after, NOW).is_empty());
    // Nothing drained: the new configuration breaks nothing.
    let (fresh_old, fresh_new) = (
        RegionStates::initial(old.config()),
        RegionStates::initial(new.config()),
    );
    assert!(introduced_across(&old, &fresh_old, &new, &fresh_new, NOW).is_empty());
    // The same topology on both sides is `introduced`.
    assert_eq!(
        introduced_across(&old, &fresh_old, &old, &before, NOW),
        introduced(&old, &fresh_old, &before, NOW)
    );
}
