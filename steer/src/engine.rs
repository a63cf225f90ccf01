//! The steering function.
//!
//! In order: residency restricts the regions (a hard filter, before anything else); the policy picks the
//! list the client is answered from and orders it (distance, configured order, weighted hash); operator
//! state, drills and health remove regions; capacity spill moves a share of an overloaded region's clients
//! to the next region; the first `answer-regions` remain. When nothing usable is left, `when-all-down`
//! decides between panic mode, a fallback region and no answer.

use meridian_config::{Continent, CountryCode};

use crate::decision::{Basis, Chosen, Decision, Mode, NoAnswer, ResidencyNote, Skip, Status, Verdict};
use crate::geometry::Point;
use crate::hash::{SPILL_SALT, unit};
use crate::state::{DrillMode, Health, RegionState};
use crate::topology::{CompiledAllDown, CompiledPolicy, CompiledService, RegionList, RegionSet};
use crate::{RegionIndex, RegionStates, ServiceIndex, Topology};

/// Where the client is, as far as steering cares.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ClientLocation {
    /// Country, if known.
    pub country: Option<CountryCode>,
    /// Continent, if known.
    pub continent: Option<Continent>,
    /// Position, if known (from the database, or the country's population centre).
    pub point: Option<Point>,
}

impl ClientLocation {
    /// Nothing is known.
    pub const UNKNOWN: Self = Self {
        country: None,
        continent: None,
        point: None,
    };
}

/// One steering question.
#[derive(Clone, Copy, Debug)]
pub struct Query<'a> {
    /// The service asked for.
    pub service: ServiceIndex,
    /// Where the client is.
    pub client: &'a ClientLocation,
    /// Stable hash of the client (see [`crate::client_hash`]): the same client gets the same weighted and
    /// spill choices.
    pub request_hash: u64,
    /// The time, milliseconds since the Unix epoch; only compared with drill expiries.
    pub now_ms: u64,
}

/// A region that may be answered, with its ordering key.
#[derive(Clone, Copy)]
struct Candidate {
    region: RegionIndex,
    /// Position of its verdict.
    verdict: usize,
    /// Ordering: `(group, key, region)` ascending. Group 0 is a near-tie group, 1 everything else.
    group: u8,
    key: f64,
    /// Cosine of the angle to the client (policy nearest with a known location), for near-ties.
    dot: f64,
    weight: u32,
    utilisation: Option<f64>,
}

impl Candidate {
    #[inline]
    fn before(&self, other: &Self) -> bool {
        (self.group, self.key, self.region) < (other.group, other.key, other.region)
    }
}

/// Decides which regions answer this query, and why. Pure: the result depends only on the arguments.
pub fn steer(topology: &Topology, states: &RegionStates, query: &Query<'_>) -> Decision {
    let Some(svc) = topology.services.get(query.service.get()) else {
        return Decision {
            mode: Mode::NoAnswer(NoAnswer::UnknownService),
            chosen: Chosen::EMPTY,
            basis: Basis::GeoDefault,
            residency: ResidencyNote::NoRules,
            verdicts: Vec::new(),
        };
    };
    let client = query.client;
    let (allowed, residency) = residency_for(svc, client.country);
    let (list, basis) = answer_list(svc, client);

    let mut verdicts = Vec::with_capacity(svc.eligible.order.len());
    let mut usable: Vec<Candidate> = Vec::with_capacity(list.order.len());
    let mut revivable: Vec<Candidate> = Vec::new();

    for (position, &region) in list.order.iter().enumerate() {
        let verdict = verdicts.len();
        let initial;
        let state = match states.get(region) {
            Some(s) => s,
            None => {
                // A snapshot older than the topology: treat the region as freshly configured.
                initial = topology
                    .config()
                    .regions()
                    .get(region.get())
                    .map(RegionState::initial);
                match &initial {
                    Some(s) => s,
                    None => continue,
                }
            }
        };
        let exclusion = if allowed.contains(region) {
            exclusion(state, query.now_ms)
        } else {
            Some(Skip::Residency {
                rule: excluding_rule(svc, client.country, region),
            })
        };
        let mut candidate = Candidate {
            region,
            verdict,
            group: 1,
            key: position as f64,
            dot: 0.0,
            weight: state.weight.max(1),
            utilisation: utilisation(state, query.now_ms),
        };
        let cr = &topology.regions[region.get()];
        match (&svc.policy, basis) {
            (CompiledPolicy::Nearest { .. }, Basis::Distance) => {
                candidate.dot = client.point.map_or(0.0, |p| p.dot(&cr.point));
                candidate.key = -candidate.dot;
            }
            (CompiledPolicy::Weighted, _) => {
                candidate.key = rendezvous(query.request_hash, cr.seed, candidate.weight);
            }
            _ => {}
        }
        match exclusion {
            None => {
                verdicts.push(Verdict {
                    region,
                    status: Status::Available,
                });
                usable.push(candidate);
            }
            Some(skip) => {
                verdicts.push(Verdict {
                    region,
                    status: Status::Skipped(skip),
                });
                if skip.revivable_in_panic() {
                    revivable.push(candidate);
                }
            }
        }
    }
    for &region in &svc.eligible.order {
        if !list.members.contains(region) {
            verdicts.push(Verdict {
                region,
                status: Status::Skipped(Skip::NotListed),
            });
        }
    }

    let tie_angle = match svc.policy {
        CompiledPolicy::Nearest { tie_angle } if basis == Basis::Distance => tie_angle,
        _ => 0.0,
    };
    let mut decision = Decision {
        mode: Mode::Normal,
        chosen: Chosen::EMPTY,
        basis,
        residency,
        verdicts,
    };

    if !usable.is_empty() {
        apply_near_ties(topology, &mut usable, tie_angle, query.request_hash);
        pick(&mut decision, &usable, svc, topology, query.request_hash, true);
        return decision;
    }
    match svc.when_all_down {
        CompiledAllDown::Panic if !revivable.is_empty() => {
            decision.mode = Mode::Panic;
            apply_near_ties(topology, &mut revivable, tie_angle, query.request_hash);
            pick(
                &mut decision,
                &revivable,
                svc,
                topology,
                query.request_hash,
                false,
            );
        }
        CompiledAllDown::Panic => decision.mode = Mode::NoAnswer(NoAnswer::NothingEligible),
        CompiledAllDown::Servfail => decision.mode = Mode::NoAnswer(NoAnswer::AllDown),
        CompiledAllDown::Fallback(region) => {
            if allowed.contains(region) {
                decision.mode = Mode::Fallback;
                decision.chosen.push(region);
            } else {
                decision.mode = Mode::NoAnswer(NoAnswer::FallbackBarredByResidency);
            }
        }
    }
    decision
}

/// The regions residency allows for a client, and how the rules applied.
fn residency_for(svc: &CompiledService, country: Option<CountryCode>) -> (RegionSet, ResidencyNote) {
    if svc.residency.is_empty() {
        return (RegionSet::ALL, ResidencyNote::NoRules);
    }
    let mut allowed = RegionSet::ALL;
    let mut mask = 0u64;
    for (i, rule) in svc.residency.iter().enumerate() {
        let applies = match country {
            Some(c) => rule.countries.contains(c),
            None => rule.restrict_unknown,
        };
        if applies {
            allowed = allowed.and(rule.allowed);
            mask |= 1 << (i % 64);
        }
    }
    let note = match (country, mask) {
        (Some(_), 0) => ResidencyNote::NotCovered,
        (Some(_), m) => ResidencyNote::Applied(m),
        (None, 0) => ResidencyNote::UnknownExempt((1u64 << svc.residency.len().min(63)) - 1),
        (None, m) => ResidencyNote::UnknownRestricted(m),
    };
    (allowed, note)
}

/// The configuration index of the first rule that keeps this client away from `region`.
fn excluding_rule(svc: &CompiledService, country: Option<CountryCode>, region: RegionIndex) -> usize {
    svc.residency
        .iter()
        .find(|r| {
            let applies = country.map_or(r.restrict_unknown, |c| r.countries.contains(c));
            applies && !r.allowed.contains(region)
        })
        .map_or(0, |r| r.rule)
}

/// The list the client is answered from, and what orders it.
fn answer_list<'s>(svc: &'s CompiledService, client: &ClientLocation) -> (&'s RegionList, Basis) {
    match &svc.policy {
        CompiledPolicy::Nearest { .. } if client.point.is_some() => (&svc.eligible, Basis::Distance),
        CompiledPolicy::Nearest { .. } => (&svc.unknown_location, Basis::UnknownLocation),
        CompiledPolicy::Failover => (&svc.eligible, Basis::FailoverOrder),
        CompiledPolicy::Weighted => (&svc.eligible, Basis::Weighted),
        CompiledPolicy::Geo {
            countries,
            continents,
            default,
        } => {
            if let Some(l) = client.country.and_then(|c| countries.get(&c).map(|l| (l, c))) {
                return (l.0, Basis::GeoCountry(l.1));
            }
            let continent = client.continent.or(client.country.map(|c| c.info().continent));
            match continent.and_then(|c| continents[c.index()].as_ref().map(|l| (l, c))) {
                Some((l, c)) => (l, Basis::GeoContinent(c)),
                None => (default, Basis::GeoDefault),
            }
        }
    }
}

/// Why a region cannot be used now, if it cannot. Operator intent (drain, weight) is checked before
/// observed health, so an explanation names the decision a human made.
fn exclusion(state: &RegionState, now_ms: u64) -> Option<Skip> {
    let active = || state.drills.iter().enumerate().filter(|(_, d)| d.active(now_ms));
    if state.drained {
        return Some(Skip::Drained);
    }
    if let Some((drill, _)) = active().find(|(_, d)| d.mode == DrillMode::Drain) {
        return Some(Skip::DrillDrain { drill });
    }
    if state.weight == 0 {
        return Some(Skip::WeightZero);
    }
    if state.health == Health::Down {
        return Some(Skip::Down);
    }
    if let Some((drill, _)) = active().find(|(_, d)| d.mode == DrillMode::Down) {
        return Some(Skip::DrillDown { drill });
    }
    None
}

/// In-flight over effective capacity (capacity drills scale it down), when load is reported.
fn utilisation(state: &RegionState, now_ms: u64) -> Option<f64> {
    let in_flight = state.in_flight?;
    let percent = state
        .drills
        .iter()
        .filter(|d| d.active(now_ms))
        .filter_map(|d| match d.mode {
            DrillMode::Capacity { percent } => Some(percent.min(100)),
            _ => None,
        })
        .min()
        .unwrap_or(100);
    let capacity = f64::from(state.capacity) * f64::from(percent) / 100.0;
    Some(if capacity > 0.0 {
        f64::from(in_flight) / capacity
    } else {
        f64::INFINITY
    })
}

/// Weighted rendezvous hashing: each region draws `-ln(u) / weight`, the smallest wins. Region r wins with
/// probability weight_r / total, and a region's draw depends on nothing but itself and the client.
#[inline]
fn rendezvous(client: u64, seed: u64, weight: u32) -> f64 {
    -unit(client, seed).ln() / f64::from(weight)
}

/// Regions within the near-tie angle of the nearest form group 0, ordered by weighted rendezvous.
fn apply_near_ties(topology: &Topology, cands: &mut [Candidate], tie_angle: f64, client: u64) {
    if tie_angle <= 0.0 || cands.len() < 2 {
        return;
    }
    let best = cands.iter().map(|c| c.dot).fold(f64::NEG_INFINITY, f64::max);
    let threshold = (best.clamp(-1.0, 1.0).acos() + tie_angle)
        .min(std::f64::consts::PI)
        .cos();
    let tied = cands.iter().filter(|c| c.dot >= threshold).count();
    if tied < 2 {
        return;
    }
    for c in cands.iter_mut().filter(|c| c.dot >= threshold) {
        c.group = 0;
        c.key = rendezvous(client, topology.regions[c.region.get()].seed, c.weight);
    }
}

/// Takes candidates best-first into the answer, moving a share of an overloaded region's clients.
///
/// The client's natural region is the first candidate. If it is above its spill threshold, the client
/// leaves with probability `1 - spill_at / utilisation` (the share that would bring the load back to the
/// threshold), drawn per (client, region) so a client's fate is stable. It goes to the first later
/// candidate with headroom; regions in between that are over their own threshold are passed over (they
/// take no spilled clients). With no headroom anywhere the client stays: moving it would help nobody.
/// Later answer slots follow the policy order.
fn pick(
    decision: &mut Decision,
    cands: &[Candidate],
    svc: &CompiledService,
    topology: &Topology,
    client: u64,
    spill: bool,
) {
    let n = svc.answer_regions;
    let over = |c: &Candidate| spill && c.utilisation.is_some_and(|u| u > svc.spill_at);
    let mut taken = RegionSet::default();
    let take = |d: &mut Decision, taken: &mut RegionSet, ci: usize, from: Option<RegionIndex>| {
        let c = &cands[ci];
        taken.insert(c.region);
        let rank = d.chosen.len() as u8;
        if usize::from(rank) < n {
            d.chosen.push(c.region);
            d.verdicts[c.verdict].status = Status::Chosen {
                rank,
                spilled_from: from,
                over_capacity: over(c),
                near_tie: c.group == 0,
            };
        }
    };

    let Some(first) = best_remaining(cands, &taken) else {
        return;
    };
    let natural = &cands[first];
    let leaves = over(natural)
        && natural.utilisation.is_some_and(|u| {
            unit(client, topology.regions[natural.region.get()].seed ^ SPILL_SALT) <= 1.0 - svc.spill_at / u
        });
    if leaves {
        // Order the rest, find the first with headroom.
        let mut rest: Vec<usize> = Vec::new();
        let mut seen = RegionSet::default();
        seen.insert(natural.region);
        while let Some(ci) = best_remaining(cands, &seen) {
            seen.insert(cands[ci].region);
            rest.push(ci);
        }
        if let Some(pos) = rest.iter().position(|&ci| !over(&cands[ci])) {
            let target = rest.remove(pos);
            take(decision, &mut taken, target, Some(natural.region));
            let u = natural.utilisation.unwrap_or(0.0);
            decision.verdicts[natural.verdict].status = Status::Spilled {
                utilisation: u,
                moved_share: 1.0 - svc.spill_at / u,
            };
            take(decision, &mut taken, first, None);
            for (k, &ci) in rest.iter().enumerate() {
                if k < pos && decision.chosen.len() >= n {
                    // Passed over as a spill target and not in the answer: say why.
                    let u = cands[ci].utilisation.unwrap_or(0.0);
                    decision.verdicts[cands[ci].verdict].status = Status::Saturated { utilisation: u };
                } else {
                    take(decision, &mut taken, ci, None);
                }
            }
            return;
        }
    }
    take(decision, &mut taken, first, None);
    while decision.chosen.len() < n {
        let Some(ci) = best_remaining(cands, &taken) else {
            break;
        };
        take(decision, &mut taken, ci, None);
    }
}

#[inline]
fn best_remaining(cands: &[Candidate], taken: &RegionSet) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, c) in cands.iter().enumerate() {
        if taken.contains(c.region) {
            continue;
        }
        if best.is_none_or(|b| c.before(&cands[b])) {
            best = Some(i);
        }
    }
    best
}
