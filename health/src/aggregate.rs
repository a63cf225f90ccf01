//! From every vantage point's opinion of every region to region health, for a given moment.
//!
//! Rules, in order:
//! 1. **Freshness.** An opinion counts only if it was observed at most `stale_after_ms` before `now_ms`
//!    (one from the future — clock skew — counts as fresh).
//! 2. **Quorum.** With fresh opinions, the region is down when the quorum says so
//!    ([`Quorum::Majority`]: more than half say down; [`Quorum::HealthyAbove`]: not more than the
//!    percentage say up), up otherwise.
//! 3. **Staleness.** With no fresh opinion, the region keeps its previous state and is marked stale:
//!    losing the probers is never read as the region being down.
//! 4. **Panic.** If fewer than `panic_below_percent` % of the probed regions (those with health checks
//!    configured, or with a verdict) would be not down (up, or not known yet), the
//!    observers are suspected (a broken prober network looks like a world outage): no region is newly
//!    marked down — it keeps its previous state, flagged `held_by_panic` — while regions already down stay
//!    down and recoveries apply.
//!
//! Deterministic: the same previous view, opinions, settings and `now_ms` give the same result.

use std::collections::BTreeMap;

use meridian_config::{HealthSettings, Quorum};

use crate::State;

/// One prober's latest opinion of one region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opinion {
    /// The prober's vantage id.
    pub vantage: String,
    /// Whether the region passed its checks there (after the prober's rise/fall thresholds).
    pub healthy: bool,
    /// When the prober last confirmed it, ms since the epoch (the prober's clock).
    pub observed_at_ms: u64,
}

/// The opinions about one region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionOpinions {
    /// The region id.
    pub region: String,
    /// The configuration gives it health checks (it counts for the panic threshold even before anyone
    /// has an opinion).
    pub probed: bool,
    /// Every prober's opinion of it (any order).
    pub opinions: Vec<Opinion>,
}

/// An opinion as the aggregation used it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpinionView {
    /// The prober's vantage id.
    pub vantage: String,
    /// Its verdict.
    pub healthy: bool,
    /// When it was observed.
    pub observed_at_ms: u64,
    /// Whether it counted (not older than `stale_after_ms`).
    pub fresh: bool,
}

/// One region's aggregated health, with the evidence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionHealth {
    /// The region id.
    pub region: String,
    /// The state steering should use.
    pub state: State,
    /// When `state` began (ms since the epoch; the first evaluation for a state never seen changing).
    pub since_ms: u64,
    /// No fresh opinion: `state` is the last one known.
    pub stale: bool,
    /// The quorum says down but the panic threshold kept the previous state.
    pub held_by_panic: bool,
    /// Every opinion, sorted by vantage.
    pub opinions: Vec<OpinionView>,
}

impl RegionHealth {
    /// Fresh opinions, and how many of them say down.
    pub fn votes(&self) -> (usize, usize) {
        let fresh = self.opinions.iter().filter(|o| o.fresh);
        let (n, down) = fresh.fold((0, 0), |(n, d), o| (n + 1, d + usize::from(!o.healthy)));
        (n, down)
    }
}

/// Every region's aggregated health at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HealthView {
    /// In the order the regions were given.
    pub regions: Vec<RegionHealth>,
    /// The panic threshold is in force (most regions look down).
    pub panic: bool,
}

impl HealthView {
    /// A region's health, by id.
    pub fn region(&self, id: &str) -> Option<&RegionHealth> {
        self.regions.iter().find(|r| r.region == id)
    }

    /// Regions marked stale.
    pub fn stale_count(&self) -> usize {
        self.regions.iter().filter(|r| r.stale).count()
    }
}

/// What the quorum of fresh opinions says: `None` without any.
fn verdict(fresh: usize, down: usize, quorum: Quorum) -> Option<State> {
    if fresh == 0 {
        return None;
    }
    let is_down = match quorum {
        Quorum::Majority => 2 * down > fresh,
        Quorum::HealthyAbove { percent } => 100 * (fresh - down) <= usize::from(percent) * fresh,
    };
    Some(if is_down { State::Down } else { State::Up })
}

/// Region health at `now_ms` from the opinions, given the previous view (empty at start).
pub fn aggregate(
    previous: &HealthView,
    regions: &[RegionOpinions],
    settings: &HealthSettings,
    now_ms: u64,
) -> HealthView {
    let prev: BTreeMap<&str, &RegionHealth> =
        previous.regions.iter().map(|r| (r.region.as_str(), r)).collect();
    // First pass: what each region would be without the panic guard.
    let candidates: Vec<(State, bool, Vec<OpinionView>)> = regions
        .iter()
        .map(|r| {
            let mut opinions: Vec<OpinionView> = r
                .opinions
                .iter()
                .map(|o| OpinionView {
                    vantage: o.vantage.clone(),
                    healthy: o.healthy,
                    observed_at_ms: o.observed_at_ms,
                    fresh: now_ms.saturating_sub(o.observed_at_ms) <= settings.stale_after_ms,
                })
                .collect();
            opinions.sort_by(|a, b| a.vantage.cmp(&b.vantage));
            let fresh = opinions.iter().filter(|o| o.fresh).count();
            let down = opinions.iter().filter(|o| o.fresh && !o.healthy).count();
            let before = prev.get(r.region.as_str()).map_or(State::Unknown, |p| p.state);
            match verdict(fresh, down, settings.quorum) {
                Some(state) => (state, false, opinions),
                None => {
                    let stale = before != State::Unknown || !opinions.is_empty();
                    (before, stale, opinions)
                }
            }
        })
        .collect();

    let counted: Vec<State> = regions
        .iter()
        .zip(&candidates)
        .filter(|(r, c)| r.probed || c.0 != State::Unknown)
        .map(|(_, c)| c.0)
        .collect();
    let standing = counted.iter().filter(|s| **s != State::Down).count();
    let panic =
        !counted.is_empty() && 100 * standing < usize::from(settings.panic_below_percent) * counted.len();

    let regions = regions
        .iter()
        .zip(candidates)
        .map(|(r, (candidate, stale, opinions))| {
            let before = prev.get(r.region.as_str());
            let before_state = before.map_or(State::Unknown, |p| p.state);
            let held = panic && candidate == State::Down && before_state != State::Down;
            let state = if held { before_state } else { candidate };
            let since_ms = match before {
                Some(p) if p.state == state => p.since_ms,
                _ => now_ms,
            };
            RegionHealth {
                region: r.region.clone(),
                state,
                since_ms,
                stale,
                held_by_panic: held,
                opinions,
            }
        })
        .collect();
    HealthView { regions, panic }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_rules() {
        assert_eq!(verdict(0, 0, Quorum::Majority), None);
        assert_eq!(verdict(3, 1, Quorum::Majority), Some(State::Up));
        assert_eq!(verdict(3, 2, Quorum::Majority), Some(State::Down));
        assert_eq!(
            verdict(2, 1, Quorum::Majority),
            Some(State::Up),
            "a tie keeps it up"
        );
        let r53 = Quorum::HealthyAbove { percent: 18 };
        assert_eq!(
            verdict(5, 4, r53),
            Some(State::Up),
            "20% healthy is more than 18%"
        );
        assert_eq!(verdict(6, 5, r53), Some(State::Down), "16.7% is not");
        assert_eq!(verdict(5, 5, r53), Some(State::Down));
    }
}
