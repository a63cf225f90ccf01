//! The dynamic state steering decides over: per region, health, operator overrides, load and drills.
//!
//! A [`RegionStates`] is an immutable snapshot (the store's watcher builds a new one and swaps it in); it is
//! indexed like the configuration's regions.

use std::sync::Arc;

use meridian_config::Config;

use crate::LatencyMatrix;

use crate::RegionIndex;

/// What the health checkers concluded about a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// A quorum of probers sees it serving.
    Up,
    /// A quorum of probers sees it failing.
    Down,
    /// No opinion yet (no prober has reported). Treated as usable: lack of information is not an outage.
    Unknown,
}

/// What a failover drill does to its region while active.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrillMode {
    /// Behave as if health checks said the region is down.
    Down,
    /// Behave as if the region were drained.
    Drain,
    /// Behave as if the region had only this percentage of its capacity.
    Capacity {
        /// 0 to 100.
        percent: u8,
    },
}

/// A failover drill. It acts only while `now < expires_at_ms`, enforced by every decision, so a drill ends
/// on time even if whoever started it is gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drill {
    /// Identifier, for explanations and for stopping it.
    pub id: String,
    /// The effect.
    pub mode: DrillMode,
    /// End of the drill, milliseconds since the Unix epoch.
    pub expires_at_ms: u64,
}

impl Drill {
    /// Whether the drill acts at `now_ms`.
    #[inline]
    pub fn active(&self, now_ms: u64) -> bool {
        now_ms < self.expires_at_ms
    }
}

/// The state of one region.
#[derive(Clone, Debug, PartialEq)]
pub struct RegionState {
    /// Aggregated health.
    pub health: Health,
    /// An operator drained it: it receives no new clients.
    pub drained: bool,
    /// Current weight (operator override or configured default); 0 sends nothing here.
    pub weight: u32,
    /// Requests in flight across the region's proxies, if reported.
    pub in_flight: Option<u32>,
    /// In-flight requests the region serves well (configured, or as its proxies report).
    pub capacity: u32,
    /// Drills targeting the region (expired ones are ignored).
    pub drills: Vec<Drill>,
}

impl RegionState {
    /// No observations yet: health unknown, configured weight and capacity, no load, no drills.
    pub fn initial(region: &meridian_config::Region) -> Self {
        Self {
            health: Health::Unknown,
            drained: false,
            weight: region.weight,
            in_flight: None,
            capacity: region.capacity,
            drills: Vec::new(),
        }
    }
}

/// The state of every region, indexed like the configuration's regions, and the latency the proxies
/// measured (shared, not copied, between the copies a proxy makes).
#[derive(Clone, Debug, PartialEq)]
pub struct RegionStates(Vec<RegionState>, Arc<LatencyMatrix>);

impl RegionStates {
    /// Every region in its initial state, nothing measured.
    pub fn initial(config: &Config) -> Self {
        Self::from_vec(config.regions().iter().map(RegionState::initial).collect())
    }

    /// From explicit states (indexed like the configuration's regions), nothing measured.
    pub fn from_vec(states: Vec<RegionState>) -> Self {
        let n = states.len();
        Self(states, Arc::new(LatencyMatrix::new(n)))
    }

    /// The same states with this latency matrix.
    pub fn with_latency(mut self, latency: Arc<LatencyMatrix>) -> Self {
        self.1 = latency;
        self
    }

    /// The latency the proxies measured, per (client area, region).
    pub fn latency(&self) -> &Arc<LatencyMatrix> {
        &self.1
    }

    /// The state of a region, if this snapshot has it.
    pub fn get(&self, r: RegionIndex) -> Option<&RegionState> {
        self.0.get(r.get())
    }

    /// Mutable access, for whoever builds the snapshot.
    pub fn get_mut(&mut self, r: RegionIndex) -> Option<&mut RegionState> {
        self.0.get_mut(r.get())
    }

    /// All states.
    pub fn as_slice(&self) -> &[RegionState] {
        &self.0
    }

    /// The first instant after `now_ms` at which the passage of time alone can change a decision over
    /// these states: the end of the earliest drill still acting at `now_ms`, or `u64::MAX` if none is.
    /// A decision is the same at every time in `now_ms..unchanged_until(now_ms)` (time enters steering only
    /// through [`Drill::active`]), which is what lets a caller reuse it for that long.
    pub fn unchanged_until(&self, now_ms: u64) -> u64 {
        self.0
            .iter()
            .flat_map(|s| &s.drills)
            .filter(|d| d.active(now_ms))
            .map(|d| d.expires_at_ms)
            .min()
            .unwrap_or(u64::MAX)
    }
}
