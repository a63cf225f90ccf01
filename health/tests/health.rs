//! The health logic with explicit time: hysteresis (one lost probe never flips anything; a streak of
//! `fall` failures always does) and aggregation (quorum of fresh opinions, staleness keeps the last state,
//! the panic threshold suspects the observers).

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use meridian_config::{HealthSettings, Quorum};
use meridian_health::*;
use proptest::prelude::*;

const SETTINGS: HealthSettings = HealthSettings {
    quorum: Quorum::Majority,
    stale_after_ms: 10_000,
    panic_below_percent: 50,
};

fn op(vantage: &str, healthy: bool, at: u64) -> Opinion {
    Opinion {
        vantage: vantage.into(),
        healthy,
        observed_at_ms: at,
    }
}

fn region(id: &str, opinions: Vec<Opinion>) -> RegionOpinions {
    RegionOpinions {
        region: id.into(),
        probed: true,
        opinions,
    }
}

fn state(v: &HealthView, id: &str) -> State {
    v.region(id).unwrap().state
}

/// Three regions, the given opinions on `a`, three healthy opinions each on `b` and `c`.
fn world(a: Vec<Opinion>, at: u64) -> Vec<RegionOpinions> {
    let healthy = || vec![op("v1", true, at), op("v2", true, at), op("v3", true, at)];
    vec![region("a", a), region("b", healthy()), region("c", healthy())]
}

proptest! {
    /// With fall = 2, a sequence in which no two failures are adjacent never takes an up check down.
    #[test]
    fn a_single_lost_probe_never_flips_an_up_check(outcomes in proptest::collection::vec(any::<bool>(), 0..200)) {
        let mut h = Hysteresis::new(0);
        h.record(true, 2, 2, 1);
        h.record(true, 2, 2, 2);
        prop_assert_eq!(h.state(), State::Up);
        let mut previous_ok = true;
        for (i, ok) in outcomes.iter().enumerate() {
            // Replace the second of two adjacent failures by a success: isolated losses only.
            let ok = *ok || !previous_ok;
            h.record(ok, 2, 2, 10 + i as u64);
            prop_assert_eq!(h.state(), State::Up, "after probe {}", i);
            previous_ok = ok;
        }
    }

    /// The state changes exactly when a streak reaches its threshold, and `since_ms` is that moment.
    #[test]
    fn transitions_happen_exactly_at_the_thresholds(
        outcomes in proptest::collection::vec(any::<bool>(), 1..200),
        rise in 1u32..5,
        fall in 1u32..5,
    ) {
        let mut h = Hysteresis::new(0);
        let (mut last, mut streak) = (None, 0u32);
        for (i, ok) in outcomes.iter().copied().enumerate() {
            let now = 100 + i as u64 * 1000;
            let before = h.state();
            streak = if last == Some(ok) { streak + 1 } else { 1 };
            last = Some(ok);
            let changed = h.record(ok, rise, fall, now);
            let expected = match (ok, before) {
                (true, State::Up) | (false, State::Down) => before,
                (true, _) if streak >= rise => State::Up,
                (false, _) if streak >= fall => State::Down,
                _ => before,
            };
            prop_assert_eq!(h.state(), expected);
            prop_assert_eq!(changed, (expected != before).then_some(expected));
            if changed.is_some() {
                prop_assert_eq!(h.since_ms(), now);
            }
        }
    }

    /// Majority quorum: down exactly when more than half of the fresh opinions say down; stale opinions
    /// (older than `stale_after_ms`) do not vote, whatever they say.
    #[test]
    fn majority_of_fresh_opinions_decides(
        fresh in proptest::collection::vec(any::<bool>(), 1..9),
        stale in proptest::collection::vec(any::<bool>(), 0..9),
    ) {
        let now = 1_000_000;
        let mut opinions: Vec<Opinion> =
            fresh.iter().enumerate().map(|(i, h)| op(&format!("f{i}"), *h, now - 10_000)).collect();
        opinions.extend(stale.iter().enumerate().map(|(i, h)| op(&format!("s{i}"), *h, now - 10_001)));
        let settings = HealthSettings { panic_below_percent: 0, ..SETTINGS };
        let v = aggregate(&HealthView::default(), &[region("a", opinions)], &settings, now);
        let down = fresh.iter().filter(|h| !**h).count();
        let expected = if 2 * down > fresh.len() { State::Down } else { State::Up };
        prop_assert_eq!(state(&v, "a"), expected);
        prop_assert_eq!(v.region("a").unwrap().votes(), (fresh.len(), down));
        prop_assert!(!v.region("a").unwrap().stale);
    }

    /// Losing every prober (opinions gone, or all stale) never changes a region's state; it is marked stale.
    #[test]
    fn losing_the_probers_keeps_the_last_state(
        before in prop_oneof![Just(true), Just(false)],
        leftovers in proptest::collection::vec(any::<bool>(), 0..5),
        age in 10_001u64..10_000_000,
    ) {
        let t0 = 50_000_000;
        let first = aggregate(
            &HealthView::default(),
            &world(vec![op("v1", before, t0), op("v2", before, t0), op("v3", before, t0)], t0),
            &SETTINGS,
            t0,
        );
        let was = if before { State::Up } else { State::Down };
        prop_assert_eq!(state(&first, "a"), was);
        let now = t0 + age;
        let old: Vec<Opinion> = leftovers.iter().enumerate().map(|(i, h)| op(&format!("v{i}"), *h, t0)).collect();
        let later = aggregate(&first, &world(old, now), &SETTINGS, now);
        let a = later.region("a").unwrap();
        prop_assert_eq!(a.state, was);
        prop_assert!(a.stale);
        prop_assert_eq!(a.since_ms, t0, "no transition");
    }

    /// The same inputs give the same view, whatever order the opinions come in.
    #[test]
    fn aggregation_is_deterministic(healthy in proptest::collection::vec(any::<bool>(), 0..7), now in 0u64..1_000_000) {
        let opinions: Vec<Opinion> = healthy.iter().enumerate().map(|(i, h)| op(&format!("v{i}"), *h, now)).collect();
        let mut reversed = opinions.clone();
        reversed.reverse();
        let a = aggregate(&HealthView::default(), &world(opinions, now), &SETTINGS, now);
        let b = aggregate(&HealthView::default(), &world(reversed, now), &SETTINGS, now);
        prop_assert_eq!(a, b);
    }
}

#[test]
fn a_region_goes_down_with_the_quorum_and_comes_back() {
    let s = SETTINGS;
    let t = 1_000;
    let up = aggregate(
        &HealthView::default(),
        &world(vec![op("v1", true, t), op("v2", true, t), op("v3", true, t)], t),
        &s,
        t,
    );
    assert_eq!(state(&up, "a"), State::Up);
    assert_eq!(up.region("a").unwrap().since_ms, t);

    // One vantage point cannot reach it: not down.
    let t2 = t + 1_000;
    let one = aggregate(
        &up,
        &world(
            vec![op("v1", true, t2), op("v2", false, t2), op("v3", true, t2)],
            t2,
        ),
        &s,
        t2,
    );
    assert_eq!(state(&one, "a"), State::Up);
    assert_eq!(one.region("a").unwrap().since_ms, t, "no transition");

    // Two of three: down, since now.
    let t3 = t2 + 1_000;
    let two = aggregate(
        &one,
        &world(
            vec![op("v1", false, t3), op("v2", false, t3), op("v3", true, t3)],
            t3,
        ),
        &s,
        t3,
    );
    assert_eq!(state(&two, "a"), State::Down);
    assert_eq!(two.region("a").unwrap().since_ms, t3);
    assert!(!two.panic, "one region of three down is not a panic");

    // v1's lease expired (its opinion is gone): recomputed from v2 and v3, who disagree: a tie keeps it up.
    let t4 = t3 + 1_000;
    let tie = aggregate(
        &two,
        &world(vec![op("v2", false, t4), op("v3", true, t4)], t4),
        &s,
        t4,
    );
    assert_eq!(state(&tie, "a"), State::Up);
    let both = aggregate(
        &two,
        &world(vec![op("v2", false, t4), op("v3", false, t4)], t4),
        &s,
        t4,
    );
    assert_eq!(state(&both, "a"), State::Down);
    assert_eq!(both.region("a").unwrap().since_ms, t3, "still the same outage");
}

#[test]
fn route53_style_quorum() {
    let s = HealthSettings {
        quorum: Quorum::HealthyAbove { percent: 18 },
        ..SETTINGS
    };
    let t = 5_000;
    let many = |healthy: usize, total: usize| -> Vec<Opinion> {
        (0..total).map(|i| op(&format!("v{i}"), i < healthy, t)).collect()
    };
    let v = aggregate(&HealthView::default(), &world(many(1, 5), t), &s, t);
    assert_eq!(state(&v, "a"), State::Up, "one in five (20%) says healthy");
    let v = aggregate(&HealthView::default(), &world(many(1, 6), t), &s, t);
    assert_eq!(state(&v, "a"), State::Down, "one in six (16.7%) does not suffice");
}

#[test]
fn opinions_expire_with_time_not_only_with_events() {
    let s = SETTINGS;
    let t = 100_000;
    let regions = world(
        vec![op("v1", false, t), op("v2", false, t), op("v3", true, t + 8_000)],
        t + 8_000,
    );
    let down = aggregate(&HealthView::default(), &regions, &s, t + 8_000);
    assert_eq!(state(&down, "a"), State::Down);
    // Same opinions, later: v1 and v2 are now stale, v3 (healthy) alone is fresh.
    let later = aggregate(&down, &regions, &s, t + 10_001);
    assert_eq!(state(&later, "a"), State::Up);
    let a = later.region("a").unwrap();
    assert_eq!(a.votes(), (1, 0));
    assert_eq!(
        a.opinions
            .iter()
            .map(|o| (o.vantage.as_str(), o.fresh))
            .collect::<Vec<_>>(),
        [("v1", false), ("v2", false), ("v3", true)]
    );
    // Exactly at the limit an opinion is still fresh.
    let edge = aggregate(&HealthView::default(), &regions, &s, t + 10_000);
    assert_eq!(state(&edge, "a"), State::Down);
}

#[test]
fn regions_not_seen_yet_count_as_standing_for_the_panic_threshold() {
    let t = 10;
    let bad = vec![op("v1", false, t), op("v2", false, t), op("v3", false, t)];
    let mut regions = vec![region("a", bad), region("b", vec![]), region("c", vec![])];
    let v = aggregate(&HealthView::default(), &regions, &SETTINGS, t);
    assert_eq!(state(&v, "a"), State::Down, "1 of 3 probed regions down");
    assert!(!v.panic);
    // Regions without health checks and without opinions do not count at all.
    regions[1].probed = false;
    regions[2].probed = false;
    let v = aggregate(&HealthView::default(), &regions, &SETTINGS, t);
    assert!(v.panic, "the only probed region is down");
    assert_eq!(state(&v, "a"), State::Unknown);
    assert!(v.region("a").unwrap().held_by_panic);
}

#[test]
fn a_region_never_seen_is_unknown_not_stale() {
    let v = aggregate(&HealthView::default(), &[region("a", vec![])], &SETTINGS, 1);
    let a = v.region("a").unwrap();
    assert_eq!((a.state, a.stale, v.panic), (State::Unknown, false, false));
}

#[test]
fn panic_threshold_suspects_the_observers() {
    let s = SETTINGS;
    let t = 1_000;
    let ok = |at| vec![op("v1", true, at), op("v2", true, at), op("v3", true, at)];
    let bad = |at| vec![op("v1", false, at), op("v2", false, at), op("v3", false, at)];
    let all_up = aggregate(
        &HealthView::default(),
        &[
            region("a", ok(t)),
            region("b", ok(t)),
            region("c", ok(t)),
            region("d", ok(t)),
        ],
        &s,
        t,
    );
    // d goes down for real: 3 of 4 up (75%), no panic.
    let t1 = t + 1_000;
    let d_down = aggregate(
        &all_up,
        &[
            region("a", ok(t1)),
            region("b", ok(t1)),
            region("c", ok(t1)),
            region("d", bad(t1)),
        ],
        &s,
        t1,
    );
    assert_eq!(state(&d_down, "d"), State::Down);
    assert!(!d_down.panic);
    // Then the probers break and see everything down: 0 of 4 would be up. Nothing new is marked down,
    // d stays down (it was down before the observers broke).
    let t2 = t1 + 1_000;
    let all_bad = [
        region("a", bad(t2)),
        region("b", bad(t2)),
        region("c", bad(t2)),
        region("d", bad(t2)),
    ];
    let panicked = aggregate(&d_down, &all_bad, &s, t2);
    assert!(panicked.panic);
    for id in ["a", "b", "c"] {
        let r = panicked.region(id).unwrap();
        assert_eq!(
            (r.state, r.held_by_panic, r.since_ms),
            (State::Up, true, t),
            "{id}"
        );
    }
    assert_eq!(state(&panicked, "d"), State::Down);
    assert!(!panicked.region("d").unwrap().held_by_panic);
    // d recovers during the panic: recoveries apply.
    let recovering = [
        region("a", bad(t2)),
        region("b", bad(t2)),
        region("c", bad(t2)),
        region("d", ok(t2)),
    ];
    let r = aggregate(&panicked, &recovering, &s, t2);
    assert!(r.panic, "1 of 4 up");
    assert_eq!(state(&r, "d"), State::Up);
    // Two of four down is exactly 50% up: not below the threshold, both go down.
    let half = [
        region("a", ok(t2)),
        region("b", ok(t2)),
        region("c", bad(t2)),
        region("d", bad(t2)),
    ];
    let h = aggregate(&all_up, &half, &s, t2);
    assert!(!h.panic);
    assert_eq!((state(&h, "c"), state(&h, "d")), (State::Down, State::Down));
    // Threshold 0 disables the guard.
    let off = HealthSettings {
        panic_below_percent: 0,
        ..s
    };
    let no_guard = aggregate(&d_down, &all_bad, &off, t2);
    assert!(!no_guard.panic);
    assert!(no_guard.regions.iter().all(|r| r.state == State::Down));
}
