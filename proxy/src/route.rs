//! Which upstream a request goes to — the pure rule, with no I/O, clock or randomness (time and the
//! request hash are arguments), so it is unit- and property-tested apart from pingora.
//!
//! **The rule.** A request is served by the local region's backends unless the local region cannot serve
//! it well. It cannot when (checked in this order, the first that holds is the reason):
//! 1. residency forbids the local region for this client ([`Leave::Residency`]);
//! 2. the local pool has no backend left to try: none healthy, all ejected, drained, or already tried
//!    for this request ([`Leave::NoHealthyBackend`]);
//! 3. steering would not use the region: drained by an operator or a drill, weight 0, down by health
//!    checks or a drill — the very check every steering decision makes ([`meridian_steer::unusable`])
//!    ([`Leave::Unusable`]);
//! 4. the region's in-flight requests reach its capacity (capacity drills applied) ([`Leave::OverCapacity`]).
//!
//! Then the request goes where **steering would send this client if the local region were drained**:
//! the regions of `steer(topology, states with the local region drained, client)`, in answer order, that
//! have a proxy address. Residency, drills, health and capacity spill therefore act exactly as in DNS.
//! The local pool stays the last resort when it can still serve (residency allows it and a backend is
//! left): better a busy or drained region than an error. With nowhere to go: 503 (residency says so when
//! it is the cause).
//!
//! **At most one hop.** A request that already crossed regions (it carries the hop header) is never
//! forwarded again: it is served locally if residency allows the local region and a backend is left,
//! otherwise refused.
//!
//! **Fast path.** When the local pool has a backend, the region is usable and under capacity, and residency
//! allows the region for *every* client of the service, the rule cannot leave the region whoever the client
//! is: [`fast_path`] says so without locating the client or calling `steer`. A property test checks that
//! whenever it says so, [`plan`] agrees for any client.

use arrayvec::ArrayVec;
use meridian_steer::{
    ClientLocation, Query, RegionIndex, RegionSet, RegionState, RegionStates, ServiceIndex, Skip, Topology,
    effective_capacity, residency_allows, residency_allows_everyone, steer, unusable,
};

/// Most targets a plan lists (remote regions, then possibly the local pool).
pub const MAX_TARGETS: usize = 4;

/// Where to try to send a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The local region's backends.
    Local,
    /// Another region's proxy (one hop).
    Region(RegionIndex),
}

/// Why a request leaves (or would leave) the local region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leave {
    /// Residency forbids the local region for this client.
    Residency,
    /// The local pool has no backend left to try.
    NoHealthyBackend,
    /// Steering would not use the local region (drained, drill, weight 0, down).
    Unusable(Skip),
    /// The region's in-flight requests reached its capacity.
    OverCapacity,
}

impl Leave {
    /// Label for metrics and headers.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Residency => "residency",
            Self::NoHealthyBackend => "no-healthy-backend",
            Self::Unusable(Skip::Drained) => "drained",
            Self::Unusable(Skip::DrillDrain { .. }) => "drill-drained",
            Self::Unusable(Skip::WeightZero) => "weight-0",
            Self::Unusable(Skip::Down) => "down",
            Self::Unusable(Skip::DrillDown { .. }) => "drill-down",
            Self::Unusable(Skip::Residency { .. }) => "residency",
            Self::Unusable(Skip::NotListed) => "not-listed",
            Self::OverCapacity => "over-capacity",
        }
    }
}

/// Why a request is refused (503).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refuse {
    /// Residency forbids the local region, and no allowed region can take the request.
    Residency,
    /// The request already hopped once; the local region cannot serve it.
    HopLimit,
    /// No region can take it (nothing usable with a proxy address, and no local backend).
    NoRegion,
}

impl Refuse {
    /// Label for metrics and headers.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Residency => "residency",
            Self::HopLimit => "hop-limit",
            Self::NoRegion => "no-region",
        }
    }
}

/// Targets in the order to try them.
pub type Targets = ArrayVec<Target, MAX_TARGETS>;

/// What to do with a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Try these in order. `spill` is why the request left the local region when the first target is
    /// another region (`None` when the local pool is first).
    Serve {
        /// In order; never empty.
        targets: Targets,
        /// Why the local region was passed over, when it was.
        spill: Option<Leave>,
    },
    /// Answer 503.
    Refuse(Refuse),
}

impl Plan {
    /// Serve locally, nothing else.
    pub fn local() -> Self {
        let mut targets = Targets::new();
        targets.push(Target::Local);
        Self::Serve { targets, spill: None }
    }
}

/// Everything the rule looks at, except the client (which only the slow path needs).
#[derive(Clone, Copy, Debug)]
pub struct RouteInput<'a> {
    /// The compiled configuration.
    pub topology: &'a Topology,
    /// The snapshot's region states.
    pub states: &'a RegionStates,
    /// The same states with the local region drained (built once per snapshot).
    pub states_local_drained: &'a RegionStates,
    /// The service asked for.
    pub service: ServiceIndex,
    /// This proxy's region.
    pub local: RegionIndex,
    /// Regions whose proxy takes spilled requests (have a proxy address).
    pub reachable: RegionSet,
    /// The local pool has a backend left to try for this request.
    pub pool_has_backend: bool,
    /// Requests in flight in the local region, this one excluded.
    pub in_flight: u32,
    /// The request already crossed a region (hop header).
    pub hopped: bool,
    /// Milliseconds since the epoch (drill expiry).
    pub now_ms: u64,
}

fn local_state<'a>(input: &RouteInput<'a>, initial: &'a mut Option<RegionState>) -> Option<&'a RegionState> {
    if let Some(s) = input.states.get(input.local) {
        return Some(s);
    }
    *initial = input
        .topology
        .config()
        .regions()
        .get(input.local.get())
        .map(RegionState::initial);
    initial.as_ref()
}

/// Why the region itself (not residency) makes the request leave, if it does.
fn region_reason(input: &RouteInput<'_>) -> Option<Leave> {
    if !input.pool_has_backend {
        return Some(Leave::NoHealthyBackend);
    }
    let mut initial = None;
    let Some(state) = local_state(input, &mut initial) else {
        return Some(Leave::Unusable(Skip::NotListed));
    };
    if let Some(skip) = unusable(state, input.now_ms) {
        return Some(Leave::Unusable(skip));
    }
    if input.in_flight >= effective_capacity(state, input.now_ms) {
        return Some(Leave::OverCapacity);
    }
    None
}

/// `true` when the request certainly stays local, whoever the client is: then [`plan`] returns
/// [`Plan::local`] for every client, and the client need not be located.
pub fn fast_path(input: &RouteInput<'_>) -> bool {
    residency_allows_everyone(input.topology, input.service, input.local) && region_reason(input).is_none()
}

/// The plan for a request from `client` (`request_hash`: [`meridian_steer::client_hash`] of its address).
pub fn plan(input: &RouteInput<'_>, client: &ClientLocation, request_hash: u64) -> Plan {
    let allowed = residency_allows(input.topology, input.service, client.country, input.local);
    let reason = if allowed {
        match region_reason(input) {
            None => return Plan::local(),
            Some(r) => r,
        }
    } else {
        Leave::Residency
    };
    let local_can_serve = allowed && input.pool_has_backend;
    if input.hopped {
        return if local_can_serve {
            Plan::local()
        } else if !allowed {
            Plan::Refuse(Refuse::Residency)
        } else {
            Plan::Refuse(Refuse::HopLimit)
        };
    }
    let decision = steer(
        input.topology,
        input.states_local_drained,
        &Query {
            service: input.service,
            client,
            request_hash,
            now_ms: input.now_ms,
        },
    );
    let mut targets = Targets::new();
    for &r in decision.chosen.iter() {
        if r != input.local && input.reachable.contains(r) && targets.len() < MAX_TARGETS - 1 {
            targets.push(Target::Region(r));
        }
    }
    if local_can_serve {
        targets.push(Target::Local);
    }
    match targets.first() {
        None if !allowed => Plan::Refuse(Refuse::Residency),
        None => Plan::Refuse(Refuse::NoRegion),
        Some(Target::Local) => Plan::Serve { targets, spill: None },
        Some(Target::Region(_)) => Plan::Serve {
            targets,
            spill: Some(reason),
        },
    }
}

/// The region states with `local` drained: what [`plan`] asks steering about when the request leaves.
pub fn drained_copy(states: &RegionStates, local: RegionIndex) -> RegionStates {
    let mut copy = states.clone();
    if let Some(s) = copy.get_mut(local) {
        s.drained = true;
    }
    copy
}
