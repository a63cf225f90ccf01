//! Safety checks on operator changes, pure: given the topology and the region states before and after a
//! change (weight, drain, drill; or a new configuration, with its own topology), which guarantees would
//! the change break?
//!
//! - **Residency**: a service's residency rule must keep at least one usable region carrying the rule's
//!   jurisdiction, or the clients it covers get no answer at all (residency fails closed).
//! - **Last usable region**: a service must keep at least one usable region.
//!
//! *Usable* is what steering uses (`docs/steering.md`, step 3): not drained (by an operator or a drill),
//! weight above 0, health not `down`, not down by a drill. Health `unknown` is usable. A change is refused
//! only for the violations it *introduces*: a state that is already broken does not block unrelated work
//! (nor the changes that repair it).
//!
//! Must not: read the clock, the store or the network (time is an argument).

use std::fmt;

use meridian_steer::{DrillMode, Health, RegionState, RegionStates, Topology};
use serde::{Deserialize, Serialize};

/// A guarantee a state breaks.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Violation {
    /// Clients covered by `rule` have no usable region of `jurisdiction` for `service`.
    ResidencyWithoutRegion {
        /// The service.
        service: String,
        /// The residency rule.
        rule: String,
        /// The jurisdiction it requires.
        jurisdiction: String,
    },
    /// No region of `service` is usable.
    NoUsableRegion {
        /// The service.
        service: String,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ResidencyWithoutRegion {
                service,
                rule,
                jurisdiction,
            } => write!(
                f,
                "service {service}: clients covered by residency rule {rule} would have no usable region of \
                 jurisdiction {jurisdiction:?} (they would get no answer)"
            ),
            Self::NoUsableRegion { service } => {
                write!(f, "service {service} would have no usable region left")
            }
        }
    }
}

/// Whether steering may send clients to a region in `state` at `now_ms`, health and operator intent
/// considered.
pub fn usable(state: &RegionState, now_ms: u64) -> bool {
    let drilled = |mode: DrillMode| state.drills.iter().any(|d| d.active(now_ms) && d.mode == mode);
    !state.drained
        && state.weight > 0
        && state.health != Health::Down
        && !drilled(DrillMode::Drain)
        && !drilled(DrillMode::Down)
}

/// Every guarantee `states` breaks, in a stable order.
pub fn violations(topology: &Topology, states: &RegionStates, now_ms: u64) -> Vec<Violation> {
    let config = topology.config();
    let ok = |id: &str| {
        topology
            .region_index(id)
            .and_then(|r| states.get(r))
            .is_some_and(|s| usable(s, now_ms))
    };
    let mut out = Vec::new();
    for service in config.services() {
        if !service.regions.iter().any(|r| ok(r)) {
            out.push(Violation::NoUsableRegion {
                service: service.name.clone(),
            });
        }
        for rule_name in &service.residency {
            let Some(rule) = config.residency_rule(rule_name) else {
                continue;
            };
            let served = service.regions.iter().any(|id| {
                config
                    .region(id)
                    .is_some_and(|r| r.has_jurisdiction(&rule.jurisdiction))
                    && ok(id)
            });
            if !served {
                out.push(Violation::ResidencyWithoutRegion {
                    service: service.name.clone(),
                    rule: rule.name.clone(),
                    jurisdiction: rule.jurisdiction.clone(),
                });
            }
        }
    }
    out.sort();
    out
}

/// The guarantees that going from `before` to `after` breaks (those `after` breaks and `before` did not).
pub fn introduced(
    topology: &Topology,
    before: &RegionStates,
    after: &RegionStates,
    now_ms: u64,
) -> Vec<Violation> {
    introduced_across(topology, before, topology, after, now_ms)
}

/// The guarantees a change of configuration breaks: those `after` breaks under the new topology and
/// `before` did not under the old one. Violations name services, rules and jurisdictions, not region
/// indices, so they compare across configurations: a service that loses its last region of a residency
/// rule's jurisdiction (removed from its list, or from the configuration) introduces a violation; one
/// that was already without one does not.
pub fn introduced_across(
    old_topology: &Topology,
    before: &RegionStates,
    new_topology: &Topology,
    after: &RegionStates,
    now_ms: u64,
) -> Vec<Violation> {
    let old = violations(old_topology, before, now_ms);
    violations(new_topology, after, now_ms)
        .into_iter()
        .filter(|v| !old.contains(v))
        .collect()
}
