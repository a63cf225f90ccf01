//! What holds only across sections, checked once each section is: a steered name has no static address
//! record beside it (services and zones), and every residency rule a service names leaves each client it
//! covers at least one allowed region (services, regions and residency rules).

use std::collections::BTreeSet;

use crate::checker::Checker;
use crate::model::{Policy, Region, ResidencyRule, Service, UnknownClients, Zone};
use crate::names::path_key;
use crate::{CountryCode, RecordData};

/// Steered names are synthesised: a static A, AAAA or CNAME at the same name would contradict them.
pub(super) fn check_service_record_conflicts(c: &mut Checker, services: &[Service], zones: &[Zone]) {
    for s in services {
        let Some(zone) = zones.iter().find(|z| z.origin == s.zone) else {
            continue;
        };
        for r in &zone.records {
            let addressy = matches!(
                r.data,
                RecordData::A(_) | RecordData::Aaaa(_) | RecordData::Cname(_)
            );
            if r.name == s.hostname && addressy {
                c.err(
                    format!("services.{}.hostname", path_key(&s.name)),
                    format!(
                        "{} also has a static {} record in zone {}",
                        s.hostname,
                        r.data.type_name(),
                        zone.origin
                    ),
                );
            }
        }
    }
}

/// A residency rule that no region of a service satisfies means some clients could never be answered:
/// that is a configuration error, not something to discover during an outage.
pub(super) fn check_residency_satisfiable(
    c: &mut Checker,
    services: &[Service],
    regions: &[Region],
    rules: &[ResidencyRule],
) {
    let region = |id: &str| regions.iter().find(|r| r.id == id);
    for s in services {
        let applying: Vec<&ResidencyRule> = s
            .residency
            .iter()
            .filter_map(|n| rules.iter().find(|r| &r.name == n))
            .collect();
        if applying.is_empty() {
            continue;
        }
        let allowed = |rs: &[&ResidencyRule], list: &[String]| -> bool {
            list.iter()
                .filter_map(|id| region(id))
                .any(|reg| rs.iter().all(|r| reg.has_jurisdiction(&r.jurisdiction)))
        };
        // Every covered country must keep at least one allowed region in the list it would be answered from.
        let mut reported = BTreeSet::new();
        for country in CountryCode::all() {
            let rs: Vec<&ResidencyRule> = applying
                .iter()
                .copied()
                .filter(|r| r.countries.contains(country))
                .collect();
            if rs.is_empty() {
                continue;
            }
            let (list, list_path) = candidate_list(s, Some(country));
            if !allowed(&rs, list) && reported.insert(list_path.clone()) {
                let names: Vec<&str> = rs.iter().map(|r| r.name.as_str()).collect();
                c.err(
                    list_path,
                    format!(
                        "no region here satisfies residency rule(s) {} for clients in {country} \
                         (needs jurisdiction {})",
                        names.join(", "),
                        rs.iter()
                            .map(|r| format!("{:?}", r.jurisdiction))
                            .collect::<Vec<_>>()
                            .join(" and ")
                    ),
                );
            }
        }
        let restricting: Vec<&ResidencyRule> = applying
            .iter()
            .copied()
            .filter(|r| r.unknown_clients == UnknownClients::Restrict)
            .collect();
        if !restricting.is_empty() {
            let (list, list_path) = candidate_list(s, None);
            if !allowed(&restricting, list) && reported.insert(list_path.clone()) {
                c.err(
                    list_path,
                    "no region here satisfies the residency rules that restrict clients of unknown location \
                     (set unknown-clients = \"exempt\" on the rule, or list an allowed region)",
                );
            }
        }
    }
}

/// The region list a client in `country` (or of unknown location) is answered from, and its path.
fn candidate_list(s: &Service, country: Option<CountryCode>) -> (&[String], String) {
    let base = format!("services.{}", path_key(&s.name));
    match (&s.policy, country) {
        (Policy::Geo(g), Some(cc)) => {
            if let Some((_, l)) = g.countries.iter().find(|(c, _)| *c == cc) {
                return (l, format!("{base}.geo.countries.{cc}"));
            }
            let continent = cc.info().continent;
            if let Some((_, l)) = g.continents.iter().find(|(c, _)| *c == continent) {
                return (l, format!("{base}.geo.continents.{continent}"));
            }
            (&g.default, format!("{base}.geo.default"))
        }
        (Policy::Geo(g), None) => (&g.default, format!("{base}.geo.default")),
        (Policy::Nearest { .. }, None) => (&s.unknown_location, format!("{base}.unknown-location")),
        _ => (&s.regions, format!("{base}.regions")),
    }
}
