//! From a decision to the addresses an answer carries: the chosen regions' addresses in answer order,
//! at most `max-addresses` per family. Shared by the DNS server and `meridian explain` so they cannot
//! disagree about what a client is told.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::{RegionIndex, ServiceIndex, Topology};

/// The addresses of an answer, per family.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AnswerAddresses {
    /// A records.
    pub ipv4: Vec<Ipv4Addr>,
    /// AAAA records.
    pub ipv6: Vec<Ipv6Addr>,
}

/// The addresses for `chosen` (a decision's regions, best first) of service `service`.
pub fn answer_addresses(
    topology: &Topology,
    service: ServiceIndex,
    chosen: &[RegionIndex],
) -> AnswerAddresses {
    AnswerAddresses {
        ipv4: answer_ipv4(topology, service, chosen).collect(),
        ipv6: answer_ipv6(topology, service, chosen).collect(),
    }
}

/// The A records of [`answer_addresses`], without collecting them (the DNS fast path writes them
/// straight into its response).
pub fn answer_ipv4<'t>(
    topology: &'t Topology,
    service: ServiceIndex,
    chosen: &'t [RegionIndex],
) -> impl Iterator<Item = Ipv4Addr> + Clone + 't {
    family(topology, service, chosen, |r| &r.ipv4)
}

/// The AAAA records of [`answer_addresses`], without collecting them.
pub fn answer_ipv6<'t>(
    topology: &'t Topology,
    service: ServiceIndex,
    chosen: &'t [RegionIndex],
) -> impl Iterator<Item = Ipv6Addr> + Clone + 't {
    family(topology, service, chosen, |r| &r.ipv6)
}

/// One family's addresses of the chosen regions, in answer order, at most the service's `max-addresses`
/// (none for an unknown service).
fn family<'t, A: Copy + 't>(
    topology: &'t Topology,
    service: ServiceIndex,
    chosen: &'t [RegionIndex],
    addresses: fn(&meridian_config::Region) -> &Vec<A>,
) -> impl Iterator<Item = A> + Clone + 't {
    let config = topology.config();
    let max = config
        .services()
        .get(service.get())
        .map_or(0, |s| s.max_addresses);
    chosen
        .iter()
        .filter_map(move |r| config.regions().get(r.get()))
        .flat_map(move |r| addresses(r).iter().copied())
        .take(max)
}
