//! `[regions]`: each region's name, coordinates, country, jurisdictions, addresses, capacity and weight
//! (its `health-checks` are `health`'s, its `proxy-address` is `crate::proxy_settings`'s); and the
//! [`RegionIndex`] other sections check their region references against.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};

use indexmap::IndexMap;

use super::health::check_health_check;
use crate::checker::Checker;
use crate::model::{Coordinates, Region};
use crate::names::path_key;
use crate::raw::RawRegion;

/// Upper bound on regions: steering keeps region sets as fixed-size bitmaps.
pub const MAX_REGIONS: usize = 256;
/// Upper bound on a region's weight.
pub const MAX_WEIGHT: u32 = 10_000;

const DEFAULT_WEIGHT: u32 = 100;
/// Upper bound on health checks per region.
const MAX_HEALTH_CHECKS: usize = 16;

/// Region ids in file order, for "unknown region" messages and reference checks.
pub(super) struct RegionIndex<'a> {
    ids: Vec<&'a str>,
}

impl<'a> RegionIndex<'a> {
    /// The ids of every region of the file, valid or not (a reference to a broken region is not also
    /// reported as unknown).
    pub(super) fn new(raw: &'a IndexMap<String, RawRegion>) -> Self {
        Self {
            ids: raw.keys().map(String::as_str).collect(),
        }
    }

    pub(super) fn check(&self, c: &mut Checker, path: &str, id: &str) -> bool {
        if self.ids.contains(&id) {
            true
        } else {
            c.err(
                path,
                format!("unknown region {id:?} (known: {})", self.ids.join(", ")),
            );
            false
        }
    }

    /// A list of region references: each known, none repeated, at least one.
    pub(super) fn check_list(&self, c: &mut Checker, path: &str, list: &[String]) -> Vec<String> {
        if list.is_empty() {
            c.err(path, "must name at least one region");
        }
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for (i, id) in list.iter().enumerate() {
            let p = format!("{path}[{i}]");
            if !seen.insert(id.as_str()) {
                c.err(p, format!("region {id:?} is listed twice"));
            } else if self.check(c, &p, id) {
                out.push(id.clone());
            }
        }
        out
    }
}

pub(super) fn check_regions(c: &mut Checker, raw: &IndexMap<String, RawRegion>) -> Vec<Region> {
    if raw.is_empty() {
        c.err("regions", "at least one region is required");
    }
    if raw.len() > MAX_REGIONS {
        c.err(
            "regions",
            format!("{} regions; at most {MAX_REGIONS} are supported", raw.len()),
        );
    }
    let mut out = Vec::new();
    for (id, r) in raw {
        let path = format!("regions.{}", path_key(id));
        c.identifier(&path, id);
        let name = c
            .required(&format!("{path}.name"), r.name.clone())
            .unwrap_or_default();
        if r.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
            c.err(format!("{path}.name"), "must not be empty");
        }
        let lat = c.required(&format!("{path}.lat"), r.lat);
        let lon = c.required(&format!("{path}.lon"), r.lon);
        if let Some(lat) = lat.filter(|l| !(l.is_finite() && (-90.0..=90.0).contains(l))) {
            c.err(
                format!("{path}.lat"),
                format!("{lat} is not a latitude (-90 to 90)"),
            );
        }
        if let Some(lon) = lon.filter(|l| !(l.is_finite() && (-180.0..=180.0).contains(l))) {
            c.err(
                format!("{path}.lon"),
                format!("{lon} is not a longitude (-180 to 180)"),
            );
        }
        let country = c
            .required(&format!("{path}.country"), r.country.as_deref())
            .and_then(|s| c.country(&format!("{path}.country"), s));
        let mut jurisdictions = Vec::new();
        for (i, j) in r.jurisdictions.iter().enumerate() {
            let p = format!("{path}.jurisdictions[{i}]");
            c.identifier(&p, j);
            if jurisdictions.contains(j) {
                c.err(p, format!("jurisdiction {j:?} is listed twice"));
            } else {
                jurisdictions.push(j.clone());
            }
        }
        let ipv4: Vec<Ipv4Addr> = parse_addresses(c, &format!("{path}.ipv4"), &r.ipv4, "IPv4");
        let ipv6: Vec<Ipv6Addr> = parse_addresses(c, &format!("{path}.ipv6"), &r.ipv6, "IPv6");
        if r.ipv4.is_empty() && r.ipv6.is_empty() {
            c.err(
                &path,
                "needs at least one address in ipv4 or ipv6 (what DNS answers with)",
            );
        }
        let capacity = match r.capacity {
            None => {
                c.err(
                    format!("{path}.capacity"),
                    "is required (in-flight requests the region serves well)",
                );
                1
            }
            Some(v) => c.int(&format!("{path}.capacity"), Some(v), 1, 1..=u32::MAX),
        };
        let weight = c.int(
            &format!("{path}.weight"),
            r.weight,
            DEFAULT_WEIGHT,
            0..=MAX_WEIGHT,
        );
        if r.health_checks.len() > MAX_HEALTH_CHECKS {
            c.err(
                format!("{path}.health-checks"),
                format!(
                    "{} checks; at most {MAX_HEALTH_CHECKS} per region",
                    r.health_checks.len()
                ),
            );
        }
        let proxy_address = crate::proxy_settings::check_proxy_address(
            c,
            &format!("{path}.proxy-address"),
            r.proxy_address.as_deref(),
        );
        let health_checks = r
            .health_checks
            .iter()
            .enumerate()
            .filter_map(|(i, hc)| check_health_check(c, &format!("{path}.health-checks[{i}]"), hc))
            .collect();
        // A region whose country is unusable is already reported; leaving it out only spares later checks
        // from reasoning about a half-built region.
        let Some(country) = country else { continue };
        out.push(Region {
            id: id.clone(),
            name,
            location: Coordinates {
                lat: lat.unwrap_or(0.0),
                lon: lon.unwrap_or(0.0),
            },
            country,
            jurisdictions,
            ipv4,
            ipv6,
            capacity,
            weight,
            health_checks,
            proxy_address,
        });
    }
    out
}

fn parse_addresses<A: std::str::FromStr + PartialEq>(
    c: &mut Checker,
    path: &str,
    raw: &[String],
    family: &str,
) -> Vec<A> {
    let mut out: Vec<A> = Vec::new();
    for (i, s) in raw.iter().enumerate() {
        match s.parse::<A>() {
            Ok(a) if out.contains(&a) => c.err(format!("{path}[{i}]"), format!("{s} is listed twice")),
            Ok(a) => out.push(a),
            Err(_) => c.err(
                format!("{path}[{i}]"),
                format!("{s:?} is not an {family} address"),
            ),
        }
    }
    out
}
