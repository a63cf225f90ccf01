//! Deciding: which regions a client of a steered service is sent to, and the ECS scope that answer
//! holds for. The one place DNS asks `meridian_steer::steer`; the general path, the fast path and a
//! worker's memo of decisions (built on these functions) all decide through it, so they cannot disagree.
//!
//! A decision is a function of the snapshot, the client's location, the time and the request hash (of the
//! client address); the ECS scope is the width of the client's GeoIP network, widened to /24 (/56) when
//! the decision used the hash.

use std::net::IpAddr;

use meridian_config::{Continent, Coordinates, CountryCode};
use meridian_steer::{Chosen, ClientLocation, Decision, Mode, Query, ServiceIndex, client_hash, steer};

use crate::context::Context;
use crate::info::Reason;

/// What answering needs of a steering decision (the verdicts are for `explain`, not for DNS): small and
/// `Copy`, so that a worker can remember it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Steered {
    pub(crate) mode: Mode,
    pub(crate) chosen: Chosen,
    pub(crate) reason: Reason,
    pub(crate) depends_on_hash: bool,
}

impl From<&Decision> for Steered {
    fn from(d: &Decision) -> Self {
        Self {
            mode: d.mode,
            chosen: d.chosen,
            reason: Reason::of(d),
            depends_on_hash: d.depends_on_hash,
        }
    }
}

/// A client's location as GeoIP gives it (`GeoLocation::parts`).
pub(crate) type LocationParts = (Option<CountryCode>, Option<Continent>, Option<Coordinates>);

/// The address a client is located by: the ECS address (`ecs`: address and source prefix) when the option
/// carries a non-zero source prefix, else the packet's source.
pub(crate) fn client_ip(ecs: Option<(IpAddr, u8)>, src: IpAddr) -> IpAddr {
    match ecs {
        Some((addr, prefix)) if prefix > 0 => addr,
        _ => src,
    }
}

/// Steers `service` for the client at `client_ip`, located at `location`.
pub(crate) fn decide(
    ctx: &Context<'_>,
    service: ServiceIndex,
    client_ip: IpAddr,
    location: LocationParts,
) -> Steered {
    let (country, continent, coordinates) = location;
    let client = ClientLocation::new(country, continent, coordinates);
    let query = Query {
        service,
        client: &client,
        request_hash: client_hash(client_ip),
        now_ms: ctx.now_ms,
    };
    Steered::from(&steer(&ctx.snapshot.topology, &ctx.snapshot.states, &query))
}

/// Locates the client and steers `service` for it (see [`client_ip`]). Returns the decision and, when the
/// request carried ECS, the scope prefix to announce.
pub(crate) fn steer_client(
    ctx: &Context<'_>,
    service: ServiceIndex,
    ecs: Option<(IpAddr, u8)>,
    src: IpAddr,
) -> (Steered, Option<u8>) {
    let client_ip = client_ip(ecs, src);
    let located = ctx.geo.locate(client_ip);
    let steered = decide(ctx, service, client_ip, located.parts());
    (steered, scope(ecs, &steered, located.prefix_len, client_ip))
}

/// The ECS scope to announce for `steered` when the request carried ECS (`ecs`: address and source
/// prefix): how many leading bits of the client address the answer depends on, never more than the source
/// prefix. `location_prefix` is the width of the client's GeoIP network.
pub(crate) fn scope(
    ecs: Option<(IpAddr, u8)>,
    steered: &Steered,
    location_prefix: u8,
    client_ip: IpAddr,
) -> Option<u8> {
    ecs.map(|(_, prefix)| {
        if prefix == 0 {
            0
        } else {
            answer_scope(steered, location_prefix, client_ip).min(prefix)
        }
    })
}

/// How many leading bits of the client address the answer depends on: the GeoIP network's, unless the
/// decision used the per-client hash (weighted choice, near-tie, spill), which is per /24 or /56.
fn answer_scope(decision: &Steered, location_prefix: u8, ip: IpAddr) -> u8 {
    let hash_bits = if ip.is_ipv4() { 24 } else { 56 };
    if decision.depends_on_hash {
        location_prefix.max(hash_bits)
    } else {
        location_prefix
    }
}
