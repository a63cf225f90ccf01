//! The steering function.
//!
//! In order: residency restricts the regions (a hard filter, before anything else); the policy picks the
//! list the client is answered from and orders it (distance, configured order, weighted hash); operator
//! state, drills and health remove regions; capacity spill moves a share of an overloaded region's clients
//! to the next region; the first `answer-regions` remain. When nothing usable is left, `when-all-down`
//! decides between panic mode, a fallback region and no answer.

use arrayvec::ArrayVec;
use meridian_config::{Continent, Coordinates, CountryCode, MAX_REGIONS};

use crate::decision::{Basis, Chosen, Decision, Mode, NoAnswer, ResidencyNote, Skip, Status, Verdict};
use crate::geometry::Point;
use crate::hash::{SPILL_SALT, rendezvous_key, rendezvous_lower_bound, unit};
use crate::latency::{LatencyArea, LatencyNote, LatencyOutcome, latency_step};
use crate::state::{DrillMode, Health, RegionState};
use crate::topology::{CompiledAllDown, CompiledPolicy, CompiledService, RegionList, RegionSet, TieAngle};
use crate::{RegionIndex, RegionStates, ServiceIndex, Topology};

/// Where the client is, as far as steering cares. Built from a GeoIP lookup by [`ClientLocation::new`],
/// which also derives what decisions would otherwise recompute: the position as a unit vector and the
/// latency area (DNS's memo then decides once per location and snapshot).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ClientLocation {
    /// Country, if known.
    pub country: Option<CountryCode>,
    /// Continent, if known.
    pub continent: Option<Continent>,
    /// Position, if known (from the database, or the country's population centre).
    pub point: Option<Point>,
    /// The latency area of `country` and the coordinates ([`crate::latency_area`]), derived by `new` from
    /// the coordinates in degrees: no trigonometry per decision. Private, so that a location's area
    /// always comes from its own country and coordinates (locations are built by `new`; build a new one
    /// rather than reassigning `country` or `point`).
    area: Option<LatencyArea>,
}

impl ClientLocation {
    /// Nothing is known.
    pub const UNKNOWN: Self = Self {
        country: None,
        continent: None,
        point: None,
        area: None,
    };

    /// From what a GeoIP lookup found (any part may be unknown).
    pub fn new(
        country: Option<CountryCode>,
        continent: Option<Continent>,
        coordinates: Option<Coordinates>,
    ) -> Self {
        Self {
            country,
            continent,
            point: coordinates.map(Point::from_coordinates),
            area: country
                .zip(coordinates)
                .map(|(country, c)| LatencyArea::new(country, c.lat, c.lon)),
        }
    }

    /// The latency area (see [`crate::latency_area`]).
    #[inline]
    pub(crate) fn area(&self) -> Option<LatencyArea> {
        self.area
    }
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
    /// Ordering: `(group, key, region)` ascending, packed into one integer (see [`rank`]). Group 0 is a
    /// near-tie group, 1 everything else.
    rank: u128,
    /// Cosine of the angle to the client (policy nearest with a known location), for near-ties.
    dot: f64,
    weight: u32,
    /// `rank` holds a lower bound of the weighted key, not the key (see [`best_remaining`]).
    bound: bool,
    /// In a near-tie group, ordered by weight (`apply_near_ties`).
    tie: bool,
}

impl Candidate {
    fn group(&self) -> u8 {
        (self.rank >> 80) as u8
    }
}

/// Packs `(group, key, region)` into an integer whose order is their lexicographic order: one comparison
/// instead of three on the selection loop. Keys are finite or infinite, never NaN.
#[inline]
fn rank(group: u8, key: f64, region: RegionIndex) -> u128 {
    let bits = key.to_bits();
    // IEEE 754 total order as unsigned: flip every bit of negatives, only the sign bit of positives.
    let ordered = if bits >> 63 == 1 { !bits } else { bits | (1 << 63) };
    (u128::from(group) << 80) | (u128::from(ordered) << 16) | u128::from(region.0)
}

/// How candidates of this query are keyed, decided once per query rather than per region.
#[derive(Clone, Copy)]
enum Keying {
    /// Position in the list (failover order, geo list, unknown-location list).
    Position,
    /// Distance from the client.
    Distance(Point),
    /// Weighted rendezvous on the request hash.
    Weighted(u64),
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
            depends_on_hash: false,
            latency: None,
        };
    };
    let client = query.client;
    let (allowed, residency) = residency_for(svc, client.country);
    let (list, basis) = answer_list(svc, client);

    let keying = match (&svc.policy, basis, client.point) {
        (CompiledPolicy::Nearest { .. }, Basis::Distance, Some(p)) => Keying::Distance(p),
        (CompiledPolicy::Weighted, _, _) => Keying::Weighted(query.request_hash),
        _ => Keying::Position,
    };
    let mut verdicts = Vec::with_capacity(svc.eligible.order.len());
    // On the stack: regions are at most MAX_REGIONS (validated), and a heap allocation per decision costs
    // more than the whole selection.
    let mut usable: ArrayVec<Candidate, MAX_REGIONS> = ArrayVec::new();
    let mut revivable: ArrayVec<Candidate, MAX_REGIONS> = ArrayVec::new();

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
        let weight = state.weight.max(1);
        let (key, dot) = match keying {
            Keying::Position => (position as f64, 0.0),
            Keying::Distance(p) => {
                let dot = topology
                    .regions
                    .get(region.get())
                    .map_or(-1.0, |cr| p.dot(&cr.point));
                (-dot, dot)
            }
            // The exact key -ln(u)/w costs a logarithm; its lower bound (1-u)/w (since -ln u >= 1-u) does
            // not. Selection computes exact keys lazily, only for candidates that are best by their bound
            // (`best_remaining`): usually two or three, whatever the number of regions.
            Keying::Weighted(h) => match topology.regions.get(region.get()) {
                Some(cr) if cr.weight == weight => (rendezvous_lower_bound(h, cr.seed, cr.inv_weight), 0.0),
                Some(cr) => (rendezvous_lower_bound(h, cr.seed, 1.0 / f64::from(weight)), 0.0),
                None => (0.0, 0.0),
            },
        };
        let candidate = Candidate {
            region,
            verdict,
            rank: rank(1, key, region),
            dot,
            weight,
            bound: matches!(keying, Keying::Weighted(_)),
            tie: false,
        };
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
                    let _ = revivable.try_push(candidate);
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
        CompiledPolicy::Nearest { tie } if basis == Basis::Distance => tie,
        _ => TieAngle::NONE,
    };
    let mut decision = Decision {
        mode: Mode::Normal,
        chosen: Chosen::EMPTY,
        basis,
        residency,
        verdicts,
        depends_on_hash: matches!(keying, Keying::Weighted(_)),
        latency: None,
    };

    if !usable.is_empty() {
        decision.depends_on_hash |= apply_near_ties(topology, &mut usable, tie_angle, query.request_hash);
        let mut first = None;
        if let (Some(settings), Keying::Distance(_)) = (&svc.latency, keying) {
            let note;
            (note, first) = apply_latency(settings, states, client, &mut usable, query.request_hash);
            // Exploration draws on the hash: any network of the area may be in its share.
            decision.depends_on_hash |= settings.explore_share > 0.0 && note.area.is_some();
            decision.latency = Some(note);
        }
        // Utilisation costs two divisions; only the few candidates the spill logic looks at pay for it.
        let load = |r: RegionIndex| states.get(r).and_then(|s| utilisation(s, query.now_ms));
        pick(
            &mut decision,
            &mut usable,
            svc,
            topology,
            query.request_hash,
            Some(&load),
            first,
        );
        return decision;
    }
    match svc.when_all_down {
        CompiledAllDown::Panic if !revivable.is_empty() => {
            decision.mode = Mode::Panic;
            decision.depends_on_hash |=
                apply_near_ties(topology, &mut revivable, tie_angle, query.request_hash);
            pick(
                &mut decision,
                &mut revivable,
                svc,
                topology,
                query.request_hash,
                None,
                None,
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

/// Why a decision would not use a region in this state at `now_ms` (drained, drained or down by a
/// drill, weight 0, down), or `None` if it is usable. The very check every decision makes (step 3 of
/// `docs/steering.md`), exposed so that the proxy judges its own region exactly like DNS does.
pub fn unusable(state: &RegionState, now_ms: u64) -> Option<Skip> {
    exclusion(state, now_ms)
}

/// The region's capacity at `now_ms`, after capacity drills (the smallest active percentage applies).
pub fn effective_capacity(state: &RegionState, now_ms: u64) -> u32 {
    let percent = state
        .drills
        .iter()
        .filter(|d| d.active(now_ms))
        .filter_map(|d| match d.mode {
            DrillMode::Capacity { percent } => Some(u64::from(percent.min(100))),
            _ => None,
        })
        .min()
        .unwrap_or(100);
    (u64::from(state.capacity) * percent / 100) as u32
}

/// Whether the residency rules of `service` let a client in `country` (`None`: location unknown) be
/// sent to `region` — the hard filter of step 1, as every decision applies it.
pub fn residency_allows(
    topology: &Topology,
    service: ServiceIndex,
    country: Option<CountryCode>,
    region: RegionIndex,
) -> bool {
    topology
        .services
        .get(service.get())
        .is_some_and(|svc| residency_for(svc, country).0.contains(region))
}

/// Whether residency lets **every** client of `service` be sent to `region`, wherever it is: the service
/// has no rules, or the region carries the jurisdiction of each. Then no client location is needed to
/// know that residency allows the region.
pub fn residency_allows_everyone(topology: &Topology, service: ServiceIndex, region: RegionIndex) -> bool {
    topology
        .services
        .get(service.get())
        .is_some_and(|svc| svc.residency.iter().all(|r| r.allowed.contains(region)))
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
        CompiledPolicy::Geo(geo) => {
            let (countries, continents, default) = (&geo.countries, &geo.continents, &geo.default);
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
#[inline]
fn exclusion(state: &RegionState, now_ms: u64) -> Option<Skip> {
    // Most regions have no drills: the scans are skipped entirely then.
    let drill = |mode: DrillMode| {
        if state.drills.is_empty() {
            None
        } else {
            state
                .drills
                .iter()
                .position(|d| d.active(now_ms) && d.mode == mode)
        }
    };
    if state.drained {
        Some(Skip::Drained)
    } else if let Some(drill) = drill(DrillMode::Drain) {
        Some(Skip::DrillDrain { drill })
    } else if state.weight == 0 {
        Some(Skip::WeightZero)
    } else if state.health == Health::Down {
        Some(Skip::Down)
    } else {
        drill(DrillMode::Down).map(|drill| Skip::DrillDown { drill })
    }
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

/// Regions within the near-tie angle of the nearest form group 0, ordered by weighted rendezvous.
/// Returns whether a tie group formed (the request hash then decides within it).
fn apply_near_ties(topology: &Topology, cands: &mut [Candidate], tie_angle: TieAngle, client: u64) -> bool {
    if tie_angle.angle <= 0.0 || cands.len() < 2 {
        return false;
    }
    let best = cands.iter().map(|c| c.dot).fold(f64::NEG_INFINITY, f64::max);
    let threshold = tie_angle.threshold(best);
    let tied = cands.iter().filter(|c| c.dot >= threshold).count();
    if tied < 2 {
        return false;
    }
    for c in cands.iter_mut().filter(|c| c.dot >= threshold) {
        let key = rendezvous_key(client, topology.regions[c.region.get()].seed, c.weight);
        c.rank = rank(0, key, c.region);
        c.tie = true;
    }
    true
}

/// The latency step (`crate::latency`) over the usable candidates in their distance order: the region it
/// puts first (and the explored one before it) move to the front, ahead of any near-tie group; the rest
/// keep their order. Residency, drains, health and weights have already removed what they exclude.
/// Returns the note and the position of the candidate that now answers first (the step found it: the
/// first pick need not look for it).
fn apply_latency(
    settings: &meridian_config::LatencySteering,
    states: &RegionStates,
    client: &ClientLocation,
    cands: &mut [Candidate],
    request_hash: u64,
) -> (LatencyNote, Option<usize>) {
    let ranked = cands.iter().map(|c| (c.rank, c.region));
    let (note, placed) = latency_step(settings, states.latency(), client, ranked, request_hash);
    let Some(placed) = placed else {
        return (note, None);
    };
    // Group 0 with negative keys sorts before everything (near-tie keys are >= 0). Without a faster
    // region the nearest one is already first; an explored region goes before it.
    let faster = (note.outcome == LatencyOutcome::Faster).then_some(placed.chosen);
    for (at, key) in [(faster, -1.0), (placed.explored, -2.0)] {
        if let Some(c) = at.and_then(|at| cands.get_mut(at)) {
            c.rank = rank(0, key, c.region);
            c.tie = false;
        }
    }
    (note, Some(placed.explored.unwrap_or(placed.chosen)))
}

/// Takes candidates best-first into the answer, moving a share of an overloaded region's clients.
///
/// The client's natural region is the first candidate. If it is above its spill threshold, the client
/// leaves with probability `1 - spill_at / utilisation` (the share that would bring the load back to the
/// threshold), drawn per (client, region) so a client's fate is stable. It goes to the first later
/// candidate with headroom; regions in between that are over their own threshold are passed over (they
/// take no spilled clients). With no headroom anywhere the client stays: moving it would help nobody.
/// Later answer slots follow the policy order. `first`: the position of the best candidate when the
/// caller already knows it (the latency step found it), so the first pick does not scan for it.
fn pick(
    decision: &mut Decision,
    cands: &mut [Candidate],
    svc: &CompiledService,
    topology: &Topology,
    client: u64,
    load: Option<&dyn Fn(RegionIndex) -> Option<f64>>,
    first: Option<usize>,
) {
    let n = svc.answer_regions;
    // `None` in panic mode: no spill, and no load judgement of regions that are down anyway.
    let utilisation = |c: &Candidate| load.and_then(|f| f(c.region));
    let over = |c: &Candidate| utilisation(c).is_some_and(|u| u > svc.spill_at);
    let exact = |c: &Candidate| {
        let seed = topology.regions.get(c.region.get()).map_or(0, |cr| cr.seed);
        rank(c.group(), rendezvous_key(client, seed, c.weight), c.region)
    };
    let take = |d: &mut Decision, taken: &mut RegionSet, c: &Candidate, from: Option<RegionIndex>| {
        taken.insert(c.region);
        let rank = d.chosen.len() as u8;
        if usize::from(rank) < n {
            d.chosen.push(c.region);
            d.verdicts[c.verdict].status = Status::Chosen {
                rank,
                spilled_from: from,
                over_capacity: over(c),
                near_tie: c.tie,
            };
        }
    };
    let mut taken = RegionSet::default();

    // A known best is an exact rank (the latency step runs on distance keys, never on bounds); tests and
    // debug builds check it against the scan.
    let known = first.filter(|&i| cands.get(i).is_some_and(|c| !c.bound));
    debug_assert!(known.is_none_or(|i| Some(i) == best_remaining(cands, &taken, &exact)));
    let Some(first) = known.or_else(|| best_remaining(cands, &taken, &exact)) else {
        return;
    };
    let natural = cands[first];
    let natural_load = utilisation(&natural).filter(|u| *u > svc.spill_at);
    // An overloaded natural region means a per-client draw decides who moves.
    decision.depends_on_hash |= natural_load.is_some();
    let leaves = natural_load.is_some_and(|u| {
        unit(client, topology.regions[natural.region.get()].seed ^ SPILL_SALT) <= 1.0 - svc.spill_at / u
    });
    if leaves {
        // Order the rest (exactly: every key resolved), find the first with headroom.
        for c in cands.iter_mut().filter(|c| c.bound) {
            c.rank = exact(c);
            c.bound = false;
        }
        let mut rest: Vec<usize> = (0..cands.len()).filter(|&ci| ci != first).collect();
        rest.sort_unstable_by_key(|&ci| cands[ci].rank);
        if let Some(pos) = rest.iter().position(|&ci| !over(&cands[ci])) {
            let target = rest.remove(pos);
            take(decision, &mut taken, &cands[target], Some(natural.region));
            let u = natural_load.unwrap_or(0.0);
            decision.verdicts[natural.verdict].status = Status::Spilled {
                utilisation: u,
                moved_share: 1.0 - svc.spill_at / u,
            };
            take(decision, &mut taken, &natural, None);
            for (k, &ci) in rest.iter().enumerate() {
                if k < pos && decision.chosen.len() >= n {
                    // Passed over as a spill target and not in the answer: say why.
                    let u = utilisation(&cands[ci]).unwrap_or(0.0);
                    decision.verdicts[cands[ci].verdict].status = Status::Saturated { utilisation: u };
                } else {
                    take(decision, &mut taken, &cands[ci], None);
                }
            }
            return;
        }
    }
    take(decision, &mut taken, &natural, None);
    while decision.chosen.len() < n {
        let Some(ci) = best_remaining(cands, &taken, &exact) else {
            break;
        };
        take(decision, &mut taken, &cands[ci], None);
    }
}

/// The best candidate not yet taken. Candidates whose rank is only a lower bound of their key are
/// resolved lazily: while the minimum is a bound, its exact key replaces it and the search repeats. When
/// the minimum is exact it is the true minimum, since every other key is at least its bound.
#[inline]
fn best_remaining(
    cands: &mut [Candidate],
    taken: &RegionSet,
    exact: &dyn Fn(&Candidate) -> u128,
) -> Option<usize> {
    loop {
        let best = if *taken == RegionSet::default() {
            // The first pick, by far the most frequent: a plain minimum.
            cands
                .iter()
                .enumerate()
                .min_by_key(|(_, c)| c.rank)
                .map(|(i, _)| i)
        } else {
            let mut best: Option<usize> = None;
            for (i, c) in cands.iter().enumerate() {
                if !taken.contains(c.region) && best.is_none_or(|b| c.rank < cands[b].rank) {
                    best = Some(i);
                }
            }
            best
        }?;
        if !cands[best].bound {
            return Some(best);
        }
        cands[best].rank = exact(&cands[best]);
        cands[best].bound = false;
    }
}
