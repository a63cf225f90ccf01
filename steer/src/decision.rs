//! What a steering decision says: the regions to answer with, in order, and for every region of the service
//! why it was taken or skipped. This is what `meridian explain`, logs and metrics report.

use std::ops::Deref;

use meridian_config::{Continent, CountryCode, MAX_ANSWER_REGIONS};

use crate::RegionIndex;

/// The decision for one client of one service.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// Normal operation, or one of the degraded modes.
    pub mode: Mode,
    /// Regions to answer with, best first (empty only in [`Mode::NoAnswer`]).
    pub chosen: Chosen,
    /// What ordered the candidates.
    pub basis: Basis,
    /// How residency rules applied to this client.
    pub residency: ResidencyNote,
    /// One verdict per region of the service: listed regions in policy order first, then unlisted ones.
    pub verdicts: Vec<Verdict>,
    /// Whether the request hash influenced the answer (a weighted choice, a near-tie, a spill draw). If not,
    /// every client at the same location gets the same answer — which lets DNS announce a wide ECS scope.
    pub depends_on_hash: bool,
    /// What measured latency did (policy `nearest` with `[services.NAME.latency]`, normal mode only).
    pub latency: Option<crate::LatencyNote>,
}

impl Decision {
    /// The verdict for a region, if it belongs to the service.
    pub fn verdict(&self, r: RegionIndex) -> Option<&Status> {
        self.verdicts.iter().find(|v| v.region == r).map(|v| &v.status)
    }
}

/// The regions chosen, in answer order. Inline storage: deciding allocates no answer list.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Chosen {
    len: u8,
    regions: [RegionIndex; MAX_ANSWER_REGIONS],
}

impl Chosen {
    pub(crate) const EMPTY: Self = Self {
        len: 0,
        regions: [RegionIndex(0); MAX_ANSWER_REGIONS],
    };

    pub(crate) fn push(&mut self, r: RegionIndex) {
        if usize::from(self.len) < MAX_ANSWER_REGIONS {
            self.regions[usize::from(self.len)] = r;
            self.len += 1;
        }
    }
}

impl Deref for Chosen {
    type Target = [RegionIndex];
    fn deref(&self) -> &[RegionIndex] {
        &self.regions[..usize::from(self.len)]
    }
}

impl std::fmt::Debug for Chosen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// How the answer was reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Usable regions were found.
    Normal,
    /// Every eligible region was down: the answer ignores health (`when-all-down = "panic"`).
    Panic,
    /// Every eligible region was down: the configured fallback region answers.
    Fallback,
    /// Nothing may be answered; DNS answers SERVFAIL, the proxy 503.
    NoAnswer(NoAnswer),
}

/// Why there is no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NoAnswer {
    /// No region was usable and the service says `when-all-down = "servfail"`.
    AllDown,
    /// Panic mode found nothing to revive: every region was excluded by residency, drain or weight 0,
    /// which no amount of panic overrides.
    NothingEligible,
    /// The fallback region is not allowed for this client by residency.
    FallbackBarredByResidency,
    /// The query named a service this topology does not have.
    UnknownService,
}

/// What ordered the candidates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Basis {
    /// Great-circle distance from the client (policy `nearest`).
    Distance,
    /// The client's location is unknown: the service's `unknown-location` order (policy `nearest`).
    UnknownLocation,
    /// The configured primary/backup order (policy `failover`).
    FailoverOrder,
    /// Weighted random choice, stable per client (policy `weighted`).
    Weighted,
    /// The geo map's entry for the client's country.
    GeoCountry(CountryCode),
    /// The geo map's entry for the client's continent.
    GeoContinent(Continent),
    /// The geo map's default (no country or continent entry, or unknown location).
    GeoDefault,
}

/// Residency rules as they applied to this client. Rule sets are bitmasks over the *service's* `residency`
/// list (bit 0 = its first rule).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResidencyNote {
    /// The service has no residency rules.
    NoRules,
    /// The client's country is covered by none of the service's rules.
    NotCovered,
    /// These rules cover the client's country and restricted the regions.
    Applied(u64),
    /// Location unknown, and these rules restrict unknown clients (fail closed).
    UnknownRestricted(u64),
    /// Location unknown, and every rule exempts unknown clients: residency was not applied.
    UnknownExempt(u64),
}

/// The verdict on one region.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Verdict {
    /// The region.
    pub region: RegionIndex,
    /// Taken or not, and why.
    pub status: Status,
}

/// Taken or not, and why.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Status {
    /// In the answer.
    Chosen {
        /// 0 for the first region of the answer.
        rank: u8,
        /// The client got here because this better region was over capacity for it.
        spilled_from: Option<RegionIndex>,
        /// The region is over its spill threshold (kept because this client is in the share that stays,
        /// because no region has headroom, or as a later answer behind the region the client spilled to).
        over_capacity: bool,
        /// Chosen by weight among regions within `near-tie-km` of the nearest.
        near_tie: bool,
    },
    /// Usable, but ranked below the regions chosen.
    Available,
    /// Over its spill threshold, and this client is in the share moved elsewhere.
    Spilled {
        /// In-flight requests over (effective) capacity.
        utilisation: f64,
        /// Share of this region's clients being moved, `1 - spill_at / utilisation`.
        moved_share: f64,
    },
    /// Over its own spill threshold, so it was passed over as the destination of a spilled client.
    Saturated {
        /// In-flight requests over (effective) capacity.
        utilisation: f64,
    },
    /// Not usable for this client.
    Skipped(Skip),
}

/// Why a region is not usable for this client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// Not in the list this client is answered from (geo map entry, or `unknown-location`).
    NotListed,
    /// Residency: the client may not be sent here. `rule` indexes the configuration's residency rules.
    Residency {
        /// The first rule that excludes the region.
        rule: usize,
    },
    /// Drained by an operator.
    Drained,
    /// Drained by a drill; `drill` indexes the region state's drills.
    DrillDrain {
        /// Which drill.
        drill: usize,
    },
    /// Weight 0.
    WeightZero,
    /// Health checks say it is down.
    Down,
    /// A drill makes it down; `drill` indexes the region state's drills.
    DrillDown {
        /// Which drill.
        drill: usize,
    },
}

impl Skip {
    /// Short label (`down`, `drained`, `residency`, `weight 0`, ...).
    pub fn label(&self) -> &'static str {
        match self {
            Self::NotListed => "not listed",
            Self::Residency { .. } => "residency",
            Self::Drained => "drained",
            Self::DrillDrain { .. } => "drill: drained",
            Self::WeightZero => "weight 0",
            Self::Down => "down",
            Self::DrillDown { .. } => "drill: down",
        }
    }

    /// Whether panic mode may use the region anyway: only health (real or drilled) is overridden, never
    /// an operator's drain or weight, nor residency.
    pub fn revivable_in_panic(&self) -> bool {
        matches!(self, Self::Down | Self::DrillDown { .. })
    }
}

impl Status {
    /// Short label (`chosen`, `available`, `over capacity`, or the skip label).
    pub fn label(&self) -> &'static str {
        match self {
            Self::Chosen { .. } => "chosen",
            Self::Available => "available",
            Self::Spilled { .. } => "over capacity",
            Self::Saturated { .. } => "no headroom",
            Self::Skipped(s) => s.label(),
        }
    }
}
