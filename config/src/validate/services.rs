//! `[services]`: each steered name — its hostname (inside a configured zone, one service per name), its
//! regions, its policy (`nearest`, `failover`, `weighted`, or `geo` with its country/continent map), what an
//! answer holds (regions, addresses, TTL), when to spill, what to do when all regions are down, the
//! residency rules it follows and where clients of unknown location go. Its backends and proxy settings
//! are `crate::proxy_settings`'s.

use indexmap::IndexMap;

use super::regions::RegionIndex;
use crate::checker::Checker;
use crate::model::{GeoMap, Policy, ResidencyRule, Service, WhenAllDown, Zone};
use crate::names::path_key;
use crate::raw::{RawGeo, RawService};
use crate::{Continent, DomainName};

/// Upper bound on `answer-regions`.
pub const MAX_ANSWER_REGIONS: usize = 8;

const DEFAULT_SERVICE_TTL: u32 = 30;
const DEFAULT_MAX_ADDRESSES: usize = 8;
const DEFAULT_SPILL_AT: f64 = 0.9;
const DEFAULT_NEAR_TIE_KM: f64 = 50.0;

pub(super) fn check_services(
    c: &mut Checker,
    raw: &IndexMap<String, RawService>,
    index: &RegionIndex<'_>,
    zones: &[Zone],
    rules: &[ResidencyRule],
) -> Vec<Service> {
    let mut out: Vec<Service> = Vec::new();
    for (name, s) in raw {
        let path = format!("services.{}", path_key(name));
        c.identifier(&path, name);
        let (hostname, zone) = check_hostname(c, &path, s, zones, &out);
        let regions = index.check_list(c, &format!("{path}.regions"), &s.regions);
        let policy = check_policy(c, &path, s, index, &regions);

        let answer_regions = c.int(
            &format!("{path}.answer-regions"),
            s.answer_regions,
            1,
            1..=MAX_ANSWER_REGIONS as u32,
        ) as usize;
        if !regions.is_empty() && answer_regions > regions.len() {
            c.err(
                format!("{path}.answer-regions"),
                format!(
                    "{answer_regions} is more than the {} eligible regions",
                    regions.len()
                ),
            );
        }
        let max_addresses = c.int(
            &format!("{path}.max-addresses"),
            s.max_addresses,
            DEFAULT_MAX_ADDRESSES as u32,
            1..=64,
        ) as usize;
        let ttl = c.int(&format!("{path}.ttl"), s.ttl, DEFAULT_SERVICE_TTL, 0..=86_400);
        let spill_at = s.spill_at.unwrap_or(DEFAULT_SPILL_AT);
        if !(spill_at.is_finite() && spill_at > 0.0 && spill_at <= 1.0) {
            c.err(
                format!("{path}.spill-at"),
                format!("{spill_at} is not a utilisation share (greater than 0, at most 1)"),
            );
        }

        let when_all_down = check_when_all_down(c, &path, s, index);
        let residency = check_residency_names(c, &path, &s.residency, rules);
        let unknown_location = check_unknown_location(c, &path, s, index, &regions);
        let proxy =
            crate::proxy_settings::check_service_proxy(c, &path, &s.backends, s.proxy.as_ref(), &regions);
        let latency = super::latency::check_latency(c, &path, s);
        if let (Some(hostname), Some(zone), Some(policy)) = (hostname, zone, policy) {
            out.push(Service {
                name: name.clone(),
                hostname,
                zone,
                policy,
                regions,
                answer_regions,
                max_addresses,
                ttl,
                spill_at,
                when_all_down,
                residency,
                unknown_location,
                proxy,
                latency,
            });
        }
    }
    out
}

/// The service's hostname and the zone it is in (the deepest one containing it); no two services share a
/// hostname (`earlier`: the services already checked).
fn check_hostname(
    c: &mut Checker,
    path: &str,
    s: &RawService,
    zones: &[Zone],
    earlier: &[Service],
) -> (Option<DomainName>, Option<DomainName>) {
    let hostname = c
        .required(&format!("{path}.hostname"), s.hostname.as_deref())
        .and_then(|h| c.domain(&format!("{path}.hostname"), h));
    let zone = hostname.as_ref().and_then(|h| {
        let zone = zones
            .iter()
            .filter(|z| h.is_within(&z.origin))
            .max_by_key(|z| z.origin.label_count());
        if zone.is_none() {
            let known: Vec<String> = zones.iter().map(|z| z.origin.to_string()).collect();
            c.err(
                format!("{path}.hostname"),
                format!(
                    "{h} is not inside any configured zone (zones: {})",
                    known.join(", ")
                ),
            );
        }
        zone.map(|z| z.origin.clone())
    });
    if let Some(h) = &hostname
        && let Some(other) = earlier.iter().find(|o| &o.hostname == h)
    {
        c.err(
            format!("{path}.hostname"),
            format!("{h} is already the hostname of service {:?}", other.name),
        );
    }
    (hostname, zone)
}

/// The policy, with its own settings (`near-tie-km` for `nearest`, the map for `geo`), which are refused
/// under any other policy. `regions`: the service's regions, checked.
fn check_policy(
    c: &mut Checker,
    path: &str,
    s: &RawService,
    index: &RegionIndex<'_>,
    regions: &[String],
) -> Option<Policy> {
    let policy_name = c.required(&format!("{path}.policy"), s.policy.as_deref());
    let policy = match policy_name {
        Some("nearest") => {
            let near_tie_km = s.near_tie_km.unwrap_or(DEFAULT_NEAR_TIE_KM);
            if !(near_tie_km.is_finite() && (0.0..=20_000.0).contains(&near_tie_km)) {
                c.err(
                    format!("{path}.near-tie-km"),
                    format!("{near_tie_km} is out of range (0 to 20000 km)"),
                );
            }
            Some(Policy::Nearest { near_tie_km })
        }
        Some("failover") => Some(Policy::Failover),
        Some("weighted") => Some(Policy::Weighted),
        Some("geo") => match &s.geo {
            None => {
                c.err(format!("{path}.geo"), "is required with policy \"geo\"");
                None
            }
            Some(g) => Some(Policy::Geo(check_geo_map(
                c,
                &format!("{path}.geo"),
                g,
                index,
                regions,
            ))),
        },
        Some(other) => {
            c.err(
                format!("{path}.policy"),
                format!("unknown policy {other:?} (nearest, failover, weighted or geo)"),
            );
            None
        }
        None => None,
    };
    if s.near_tie_km.is_some() && policy_name != Some("nearest") {
        c.err(
            format!("{path}.near-tie-km"),
            "only applies to policy \"nearest\"",
        );
    }
    if s.geo.is_some() && policy_name != Some("geo") {
        c.err(format!("{path}.geo"), "only applies to policy \"geo\"");
    }
    policy
}

/// `when-all-down`, and the `fallback-region` only `"fallback"` takes.
fn check_when_all_down(c: &mut Checker, path: &str, s: &RawService, index: &RegionIndex<'_>) -> WhenAllDown {
    let when_all_down = match s.when_all_down.as_deref() {
        None | Some("panic") => WhenAllDown::Panic,
        Some("servfail") => WhenAllDown::Servfail,
        Some("fallback") => match &s.fallback_region {
            None => {
                c.err(
                    format!("{path}.fallback-region"),
                    "is required with when-all-down = \"fallback\"",
                );
                WhenAllDown::Servfail
            }
            Some(r) => {
                index.check(c, &format!("{path}.fallback-region"), r);
                WhenAllDown::Fallback(r.clone())
            }
        },
        Some(other) => {
            c.err(
                format!("{path}.when-all-down"),
                format!("{other:?} is not \"panic\", \"fallback\" or \"servfail\""),
            );
            WhenAllDown::Panic
        }
    };
    if s.fallback_region.is_some() && s.when_all_down.as_deref() != Some("fallback") {
        c.err(
            format!("{path}.fallback-region"),
            "only applies with when-all-down = \"fallback\"",
        );
    }
    when_all_down
}

/// The residency rules a service names: each one defined, none twice.
fn check_residency_names(
    c: &mut Checker,
    path: &str,
    names: &[String],
    rules: &[ResidencyRule],
) -> Vec<String> {
    let mut residency = Vec::new();
    for (i, r) in names.iter().enumerate() {
        let p = format!("{path}.residency[{i}]");
        if !rules.iter().any(|rule| &rule.name == r) {
            let known: Vec<&str> = rules.iter().map(|r| r.name.as_str()).collect();
            c.err(
                p,
                format!("unknown residency rule {r:?} (known: {})", known.join(", ")),
            );
        } else if residency.contains(r) {
            c.err(p, format!("residency rule {r:?} is listed twice"));
        } else {
            residency.push(r.clone());
        }
    }
    residency
}

/// Where clients of unknown location go under `nearest` (default: all the service's regions), among the
/// service's `regions`.
fn check_unknown_location(
    c: &mut Checker,
    path: &str,
    s: &RawService,
    index: &RegionIndex<'_>,
    regions: &[String],
) -> Vec<String> {
    let Some(list) = &s.unknown_location else {
        return regions.to_vec();
    };
    let p = format!("{path}.unknown-location");
    if s.policy.as_deref() != Some("nearest") {
        c.err(&p, "only applies to policy \"nearest\" (geo uses geo.default)");
    }
    let checked = index.check_list(c, &p, list);
    for (i, id) in checked.iter().enumerate() {
        if !regions.contains(id) {
            c.err(
                format!("{p}[{i}]"),
                format!("region {id:?} is not among this service's regions"),
            );
        }
    }
    checked
}

/// A `geo` policy's map: lists by country and by continent, and the default list, each naming only the
/// service's own regions (`eligible`).
fn check_geo_map(
    c: &mut Checker,
    path: &str,
    g: &RawGeo,
    index: &RegionIndex<'_>,
    eligible: &[String],
) -> GeoMap {
    let list = |c: &mut Checker, p: &str, l: &[String]| -> Vec<String> {
        let checked = index.check_list(c, p, l);
        for (i, id) in checked.iter().enumerate() {
            if !eligible.contains(id) {
                c.err(
                    format!("{p}[{i}]"),
                    format!("region {id:?} is not among this service's regions"),
                );
            }
        }
        checked
    };
    let mut countries = Vec::new();
    for (code, l) in &g.countries {
        let p = format!("{path}.countries.{}", path_key(code));
        if let Some(cc) = c.country(&p, code) {
            countries.push((cc, list(c, &p, l)));
        }
    }
    let mut continents = Vec::new();
    for (code, l) in &g.continents {
        let p = format!("{path}.continents.{}", path_key(code));
        match Continent::parse(code) {
            Some(ct) => continents.push((ct, list(c, &p, l))),
            None => c.err(
                &p,
                format!("{code:?} is not a continent code (AF, AN, AS, EU, NA, OC, SA)"),
            ),
        }
    }
    let default = match &g.default {
        Some(d) => list(c, &format!("{path}.default"), d),
        None => {
            c.err(
                format!("{path}.default"),
                "is required (clients matching no country or continent)",
            );
            Vec::new()
        }
    };
    GeoMap {
        countries,
        continents,
        default,
    }
}
