//! The configuration compiled for steering: regions as indices and unit vectors, region lists as bitmaps,
//! residency rules as country and region sets. Built once per configuration version, shared by every
//! decision until the next one.

use std::collections::HashMap;
use std::sync::Arc;

use meridian_config::{
    Config, CountryCode, CountrySet, LatencySteering, Policy, UnknownClients, WhenAllDown,
};

use crate::geometry::{EARTH_RADIUS_KM, Point};
use crate::hash::region_seed;

/// Position of a region in the configuration (and in every per-region array).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegionIndex(pub(crate) u16);

impl RegionIndex {
    /// As a `usize` index.
    pub fn get(self) -> usize {
        usize::from(self.0)
    }
}

/// Position of a service in the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ServiceIndex(pub(crate) u16);

impl ServiceIndex {
    /// As a `usize` index.
    pub fn get(self) -> usize {
        usize::from(self.0)
    }
}

/// A set of regions (at most 256, the configuration limit), as a bitmap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegionSet([u64; 4]);

impl RegionSet {
    /// Every region.
    pub const ALL: Self = Self([u64::MAX; 4]);

    /// Adds a region.
    pub fn insert(&mut self, r: RegionIndex) {
        // `& 3`: region indices are below 256 (validated); the mask also spares the bounds check.
        self.0[(r.get() / 64) & 3] |= 1 << (r.get() % 64);
    }

    /// Whether the region is in the set.
    #[inline]
    pub fn contains(&self, r: RegionIndex) -> bool {
        self.0[(r.get() / 64) & 3] & (1 << (r.get() % 64)) != 0
    }

    /// Intersection.
    pub fn and(self, other: Self) -> Self {
        Self([0, 1, 2, 3].map(|i| self.0[i] & other.0[i]))
    }
}

impl FromIterator<RegionIndex> for RegionSet {
    fn from_iter<I: IntoIterator<Item = RegionIndex>>(iter: I) -> Self {
        let mut s = Self::default();
        iter.into_iter().for_each(|r| s.insert(r));
        s
    }
}

/// An ordered region list with its membership bitmap.
#[derive(Clone, Debug, Default)]
pub(crate) struct RegionList {
    pub(crate) order: Vec<RegionIndex>,
    pub(crate) members: RegionSet,
}

impl RegionList {
    fn new(order: Vec<RegionIndex>) -> Self {
        let members = order.iter().copied().collect();
        Self { order, members }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct CompiledRegion {
    pub(crate) point: Point,
    pub(crate) seed: u64,
    /// The configured weight and its reciprocal: weighted choices multiply instead of dividing while an
    /// operator has not overridden the weight (the common case).
    pub(crate) weight: u32,
    pub(crate) inv_weight: f64,
}

/// A near-tie width as a central angle, with its cosine and sine computed once, so that the tie
/// threshold of a decision is algebra rather than `acos` and `cos` per query.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct TieAngle {
    /// Radians; 0: no near-ties.
    pub(crate) angle: f64,
    cos: f64,
    sin: f64,
}

impl TieAngle {
    /// No near-ties.
    pub(crate) const NONE: Self = Self {
        angle: 0.0,
        cos: 1.0,
        sin: 0.0,
    };

    pub(crate) fn new(angle: f64) -> Self {
        // Wider than half the globe is the whole globe: every region ties.
        let within = angle.min(std::f64::consts::PI);
        Self {
            angle,
            cos: within.cos(),
            sin: within.sin(),
        }
    }

    /// The dot product (cosine of the central angle) of a region exactly this angle farther than the
    /// nearest one, whose dot product is `best`: `cos(min(acos(best) + angle, pi))`, by the angle-sum
    /// identity.
    pub(crate) fn threshold(&self, best: f64) -> f64 {
        let best = best.clamp(-1.0, 1.0);
        // acos(best) + angle reaches pi exactly when best <= cos(pi - angle) = -cos(angle).
        if best <= -self.cos {
            return -1.0;
        }
        best * self.cos - (1.0 - best * best).max(0.0).sqrt() * self.sin
    }
}

#[derive(Clone, Debug)]
pub(crate) enum CompiledPolicy {
    /// `tie` is the near-tie width as a central angle.
    Nearest {
        tie: TieAngle,
    },
    Failover,
    Weighted,
    Geo(Box<CompiledGeo>),
}

#[derive(Clone, Debug)]
pub(crate) struct CompiledGeo {
    pub(crate) countries: HashMap<CountryCode, RegionList>,
    pub(crate) continents: [Option<RegionList>; 7],
    pub(crate) default: RegionList,
}

#[derive(Clone, Debug)]
pub(crate) struct CompiledRule {
    /// Index of the rule in the configuration's residency rules.
    pub(crate) rule: usize,
    pub(crate) countries: CountrySet,
    /// Regions carrying the rule's jurisdiction.
    pub(crate) allowed: RegionSet,
    pub(crate) restrict_unknown: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct CompiledService {
    pub(crate) eligible: RegionList,
    pub(crate) unknown_location: RegionList,
    pub(crate) policy: CompiledPolicy,
    pub(crate) answer_regions: usize,
    pub(crate) spill_at: f64,
    pub(crate) when_all_down: CompiledAllDown,
    pub(crate) residency: Vec<CompiledRule>,
    /// Steering by measured latency (policy `nearest` only).
    pub(crate) latency: Option<LatencySteering>,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum CompiledAllDown {
    Panic,
    Fallback(RegionIndex),
    Servfail,
}

/// A configuration compiled for steering.
#[derive(Clone, Debug)]
pub struct Topology {
    config: Arc<Config>,
    pub(crate) regions: Vec<CompiledRegion>,
    pub(crate) services: Vec<CompiledService>,
}

impl Topology {
    /// Compiles a validated configuration. Total: validation already resolved every reference.
    pub fn new(config: Arc<Config>) -> Self {
        let index_of = |id: &str| config.region_index(id).map(|i| RegionIndex(i as u16));
        let list = |ids: &[String]| RegionList::new(ids.iter().filter_map(|id| index_of(id)).collect());
        let regions = config
            .regions()
            .iter()
            .map(|r| CompiledRegion {
                point: Point::from_coordinates(r.location),
                seed: region_seed(&r.id),
                weight: r.weight,
                inv_weight: 1.0 / f64::from(r.weight.max(1)),
            })
            .collect();
        let services = config
            .services()
            .iter()
            .map(|s| {
                let policy = match &s.policy {
                    Policy::Nearest { near_tie_km } => CompiledPolicy::Nearest {
                        tie: TieAngle::new(near_tie_km / EARTH_RADIUS_KM),
                    },
                    Policy::Failover => CompiledPolicy::Failover,
                    Policy::Weighted => CompiledPolicy::Weighted,
                    Policy::Geo(map) => {
                        let mut continents: [Option<RegionList>; 7] = Default::default();
                        for (c, l) in &map.continents {
                            continents[c.index()] = Some(list(l));
                        }
                        CompiledPolicy::Geo(Box::new(CompiledGeo {
                            countries: map.countries.iter().map(|(c, l)| (*c, list(l))).collect(),
                            continents,
                            default: list(&map.default),
                        }))
                    }
                };
                let residency = s
                    .residency
                    .iter()
                    .filter_map(|name| {
                        let rule = config.residency_rules().iter().position(|r| &r.name == name)?;
                        let r = &config.residency_rules()[rule];
                        let allowed = config
                            .regions()
                            .iter()
                            .enumerate()
                            .filter(|(_, reg)| reg.has_jurisdiction(&r.jurisdiction))
                            .map(|(i, _)| RegionIndex(i as u16))
                            .collect();
                        Some(CompiledRule {
                            rule,
                            countries: r.countries.clone(),
                            allowed,
                            restrict_unknown: r.unknown_clients == UnknownClients::Restrict,
                        })
                    })
                    .collect();
                let when_all_down = match &s.when_all_down {
                    WhenAllDown::Panic => CompiledAllDown::Panic,
                    WhenAllDown::Servfail => CompiledAllDown::Servfail,
                    WhenAllDown::Fallback(id) => {
                        index_of(id).map_or(CompiledAllDown::Servfail, CompiledAllDown::Fallback)
                    }
                };
                CompiledService {
                    eligible: list(&s.regions),
                    unknown_location: list(&s.unknown_location),
                    policy,
                    answer_regions: s.answer_regions,
                    spill_at: s.spill_at,
                    when_all_down,
                    residency,
                    latency: s.latency.filter(|_| matches!(s.policy, Policy::Nearest { .. })),
                }
            })
            .collect();
        Self {
            config,
            regions,
            services,
        }
    }

    /// The configuration this was compiled from.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// A service by name or hostname.
    pub fn service_index(&self, name_or_host: &str) -> Option<ServiceIndex> {
        let s = self.config.service(name_or_host)?;
        self.config
            .services()
            .iter()
            .position(|x| x.name == s.name)
            .map(|i| ServiceIndex(i as u16))
    }

    /// A region by id.
    pub fn region_index(&self, id: &str) -> Option<RegionIndex> {
        self.config.region_index(id).map(|i| RegionIndex(i as u16))
    }

    /// Every region index, in configuration order.
    pub fn region_indices(&self) -> impl Iterator<Item = RegionIndex> + '_ {
        (0..self.regions.len()).map(|i| RegionIndex(i as u16))
    }

    /// The id of a region (`waw`).
    pub fn region_id(&self, r: RegionIndex) -> &str {
        self.config
            .regions()
            .get(r.get())
            .map_or("?", |reg| reg.id.as_str())
    }

    /// The unit-sphere position of a region.
    pub fn region_point(&self, r: RegionIndex) -> Option<Point> {
        self.regions.get(r.get()).map(|c| c.point)
    }

    /// The eligible regions of a service, in configuration order.
    pub fn eligible(&self, s: ServiceIndex) -> &[RegionIndex] {
        self.services
            .get(s.get())
            .map_or(&[], |c| c.eligible.order.as_slice())
    }
}

#[cfg(test)]
mod tie_tests {
    use super::TieAngle;

    /// The algebraic threshold is the trigonometric one it replaces, across the whole range.
    #[test]
    fn tie_threshold_matches_trigonometry() {
        for angle in [1e-6, 0.001, 0.05, 0.5, 1.0, 2.0, 3.0, std::f64::consts::PI, 4.0] {
            let tie = TieAngle::new(angle);
            for k in 0..=2000 {
                let best = -1.0 + f64::from(k) / 1000.0;
                let trig = (best.acos() + angle).min(std::f64::consts::PI).cos();
                let got = tie.threshold(best);
                assert!(
                    (got - trig).abs() < 1e-9,
                    "angle {angle} best {best}: {got} vs {trig}"
                );
            }
        }
    }
}
