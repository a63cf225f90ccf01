//! Invariants of the steering decision over random worlds.

use meridian_config::UnknownClients;
use meridian_steer::*;
use proptest::prelude::*;

use super::reference::{self, RefMode};
use super::world::{NOW, RegionSpec, Spec, World, build, spec};

/// Whether residency allows `r` for this world's client, computed from the configuration.
fn residency_allows(w: &World, r: RegionIndex) -> bool {
    let svc = &w.config.services()[0];
    let region = &w.config.regions()[r.get()];
    svc.residency
        .iter()
        .map(|n| w.config.residency_rule(n).unwrap())
        .all(|rule| {
            let applies = match w.client.country {
                Some(c) => rule.countries.contains(c),
                None => rule.unknown_clients == UnknownClients::Restrict,
            };
            !applies || region.has_jurisdiction(&rule.jurisdiction)
        })
}

/// Whether the region could serve at all (health, drain, weight, drills), ignoring residency and lists.
fn usable(w: &World, states: &RegionStates, r: RegionIndex) -> bool {
    let s = states.get(r).unwrap();
    let drill = |m: DrillMode| s.drills.iter().any(|d| d.active(NOW) && d.mode == m);
    !s.drained
        && s.weight > 0
        && s.health != Health::Down
        && !drill(DrillMode::Down)
        && !drill(DrillMode::Drain)
        && w.topo.eligible(w.query().service).contains(&r)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// Never a region outside residency, whatever the mode.
    #[test]
    fn residency_is_never_violated(s in spec(10)) {
        let w = build(s);
        let d = w.decide();
        for r in d.chosen.iter() {
            prop_assert!(residency_allows(&w, *r), "chose {} for {:?}", w.topo.region_id(*r), w.client.country);
        }
    }

    /// Outside panic and fallback, every chosen region is usable; and if a usable, allowed, listed region
    /// exists, the mode is normal.
    #[test]
    fn never_a_down_region_while_a_healthy_one_exists(s in spec(10)) {
        let w = build(s);
        let d = w.decide();
        let usable_seen = d.verdicts.iter().any(|v| matches!(v.status, Status::Available | Status::Spilled { .. } | Status::Saturated { .. }));
        if usable_seen {
            prop_assert_eq!(d.mode, Mode::Normal);
        }
        if d.mode == Mode::Panic {
            for r in d.chosen.iter() {
                prop_assert!(!usable(&w, &w.states, *r), "panic answered a usable region");
            }
            let only_skipped_or_revived =
                d.verdicts.iter().all(|v| matches!(v.status, Status::Skipped(_) | Status::Chosen { .. }));
            prop_assert!(only_skipped_or_revived);
        }
        if d.mode == Mode::Normal {
            prop_assert!(!d.chosen.is_empty());
            for r in d.chosen.iter() {
                prop_assert!(usable(&w, &w.states, *r), "{} not usable", w.topo.region_id(*r));
            }
        }
    }

    /// The answer is well formed: distinct regions, at most answer-regions of them, each with a Chosen
    /// verdict carrying its rank.
    #[test]
    fn answers_are_well_formed(s in spec(10)) {
        let w = build(s);
        let d = w.decide();
        let n = w.config.services()[0].answer_regions;
        prop_assert!(d.chosen.len() <= n);
        for (i, r) in d.chosen.iter().enumerate() {
            prop_assert!(!d.chosen[..i].contains(r));
            if d.mode != Mode::Fallback {
                let ok = matches!(d.verdict(*r), Some(Status::Chosen { rank, .. }) if usize::from(*rank) == i);
                prop_assert!(ok);
            }
        }
        if d.mode == Mode::Normal {
            let available = d.verdicts.iter().filter(|v| !matches!(v.status, Status::Skipped(_))).count();
            // Every usable region either made the answer or is accounted for.
            prop_assert_eq!(d.chosen.len(), n.min(available));
        }
        prop_assert_eq!(d.verdicts.len(), w.topo.eligible(w.query().service).len());
    }

    /// Same inputs, same decision, including from independently built copies.
    #[test]
    fn deterministic(s in spec(10)) {
        let a = build(s.clone());
        let b = build(s);
        prop_assert_eq!(a.decide(), a.decide());
        prop_assert_eq!(a.decide(), b.decide());
    }

    /// Making a region that was neither chosen nor better than the chosen ones worse (down, drained, weight
    /// 0 or overloaded) does not change the answer.
    #[test]
    fn degrading_a_worse_region_changes_nothing(s in spec(10), how in 0u8..4, pick in any::<prop::sample::Index>()) {
        let w = build(s);
        let d = w.decide();
        prop_assume!(!d.chosen.is_empty());
        prop_assume!(d.mode != Mode::Fallback);
        let worse = worse_candidates(&w, &d);
        prop_assume!(!worse.is_empty());
        let victim = worse[pick.index(worse.len())];
        let mut states = w.states.clone();
        let st = states.get_mut(victim).unwrap();
        match how {
            0 => st.health = Health::Down,
            1 => st.drained = true,
            2 => st.weight = 0,
            _ => st.in_flight = Some(st.capacity.saturating_mul(50)),
        }
        let after = w.decide_with(&states);
        prop_assert_eq!(&after.chosen[..], &d.chosen[..], "degraded {}", w.topo.region_id(victim));
        prop_assert_eq!(after.mode, d.mode);
    }

    /// A decision that says it did not depend on the request hash is the same for every other client at
    /// the same location, verdicts and all: what lets DNS announce an ECS scope wider than the client's
    /// /24, and reuse the decision for every client at that location.
    #[test]
    fn hash_independent_decisions_are_the_same_for_every_client(s in spec(10), other in any::<u64>()) {
        let w = build(s);
        let d = w.decide();
        prop_assume!(!d.depends_on_hash);
        let q = Query { request_hash: other, ..w.query() };
        let d2 = steer(&w.topo, &w.states, &q);
        prop_assert_eq!(d2, d);
    }

    /// The engine agrees with the naive reference implementation.
    #[test]
    fn agrees_with_the_reference_implementation(s in spec(12)) {
        let w = build(s);
        let d = w.decide();
        let (mode, ids) = reference::decide(&w, &w.states);
        let got: Vec<String> = d.chosen.iter().map(|r| w.topo.region_id(*r).to_owned()).collect();
        let got_mode = match d.mode {
            Mode::Normal => RefMode::Normal,
            Mode::Panic => RefMode::Panic,
            Mode::Fallback => RefMode::Fallback,
            Mode::NoAnswer(_) => RefMode::NoAnswer,
        };
        prop_assert_eq!((got_mode, got), (mode, ids));
    }
}

/// Every listed, allowed region of the world's service, best first by the policy alone (everything up,
/// unloaded, undrained), as the reference implementation orders them; for `nearest`, regions nearer than
/// the farthest chosen one are left out too (a near-tie can rank a nearer region after a farther one, and
/// a nearer region is "better").
fn worse_candidates(w: &World, d: &Decision) -> Vec<RegionIndex> {
    let mut all_up = w.states.clone();
    for r in w.topo.region_indices() {
        let s = all_up.get_mut(r).unwrap();
        s.health = Health::Up;
        s.drained = false;
        s.in_flight = None;
        s.drills.clear();
        s.weight = s.weight.max(1);
    }
    let order: Vec<RegionIndex> = reference::ranked(w, &all_up)
        .iter()
        .map(|id| w.topo.region_index(id).unwrap())
        .collect();
    let Some(last) = d
        .chosen
        .iter()
        .filter_map(|r| order.iter().position(|x| x == r))
        .max()
    else {
        return Vec::new();
    };
    let distance = |r: RegionIndex| match (w.client.point, w.topo.region_point(r)) {
        (Some(c), Some(p)) => c.distance_km(&p),
        _ => 0.0,
    };
    let farthest_chosen = d.chosen.iter().map(|r| distance(*r)).fold(0.0, f64::max);
    order[last + 1..]
        .iter()
        .copied()
        .filter(|r| !matches!(d.verdict(*r), Some(Status::Spilled { .. })))
        .filter(|r| distance(*r) >= farthest_chosen)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Weighted shares over many clients match the weights.
    #[test]
    fn weighted_shares_follow_weights(weights in prop::collection::vec(1u32..10, 2..6)) {
        let regions = weights
            .iter()
            .map(|wt| RegionSpec {
                lat: 0.0, lon: 0.0, eu: true, weight: *wt, capacity: 10, health: Health::Up,
                drained: false, in_flight: None, drill: None,
            })
            .collect();
        let w = build(Spec::simple("weighted", regions));
        let total: u32 = weights.iter().sum();
        let n = 20_000u64;
        let mut counts = vec![0u64; weights.len()];
        for h in 0..n {
            let q = Query { request_hash: hash::mix(h), ..w.query() };
            let d = steer(&w.topo, &w.states, &q);
            counts[d.chosen[0].get()] += 1;
        }
        for (i, wt) in weights.iter().enumerate() {
            let expected = f64::from(*wt) / f64::from(total);
            let got = counts[i] as f64 / n as f64;
            // Binomial standard deviation at n=20000 is at most 0.0036; allow about 4.5 sigma.
            prop_assert!((got - expected).abs() < 0.016, "region {i}: {got} vs {expected} ({counts:?})");
        }
    }
}

proptest! {
    #![proptest_config(config())]

    /// A decision holds from `now` until `unchanged_until(now)`: time changes decisions only by ending
    /// drills. (The DNS server reuses decisions for that long.)
    #[test]
    fn decisions_hold_until_the_first_drill_ends(
        s in spec(8),
        ends in prop::collection::vec(0u64..5_000, 8),
        probe in 0.0f64..1.0,
    ) {
        let mut w = build(s);
        let mut states = w.states.as_slice().to_vec();
        for (i, d) in states.iter_mut().flat_map(|s| &mut s.drills).enumerate() {
            d.expires_at_ms = NOW + ends[i % ends.len()];
        }
        w.states = RegionStates::from_vec(states);
        let until = w.states.unchanged_until(NOW);
        prop_assert!(until > NOW);
        let at = |t: u64| steer(&w.topo, &w.states, &Query { now_ms: t, ..w.query() });
        let now = at(NOW);
        if until == u64::MAX {
            prop_assert!(w.states.as_slice().iter().flat_map(|s| &s.drills).all(|d| !d.active(NOW)));
            prop_assert_eq!(at(NOW + 3_600_000), now);
        } else {
            let mid = NOW + ((until - NOW - 1) as f64 * probe) as u64;
            prop_assert_eq!(at(mid), now.clone(), "at {}", mid - NOW);
            prop_assert_eq!(at(until - 1), now);
            let ending = w.states.as_slice().iter().flat_map(|s| &s.drills).any(|d| d.active(until - 1) && !d.active(until));
            prop_assert!(ending, "nothing ends at {}", until - NOW);
        }
    }
}
