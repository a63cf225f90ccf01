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
    let config = topology.config();
    let Some(svc) = config.services().get(service.get()) else {
        return AnswerAddresses::default();
    };
    let regions = chosen.iter().filter_map(|r| config.regions().get(r.get()));
    AnswerAddresses {
        ipv4: regions
            .clone()
            .flat_map(|r| r.ipv4.iter().copied())
            .take(svc.max_addresses)
            .collect(),
        ipv6: regions
            .flat_map(|r| r.ipv6.iter().copied())
            .take(svc.max_addresses)
            .collect(),
    }
}
