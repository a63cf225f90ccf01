//! Data residency as declared: `[country-groups]` (named sets of countries) and `[residency]` rules (the
//! countries a rule covers, the jurisdiction their clients must stay in, what happens to clients of unknown
//! location). Whether each service can satisfy the rules it names is a cross-check (`cross_checks`).

use std::collections::HashMap;

use indexmap::IndexMap;

use crate::checker::Checker;
use crate::country::{BUILTIN_GROUPS, builtin_group};
use crate::model::{Region, ResidencyRule, UnknownClients};
use crate::names::path_key;
use crate::raw::RawResidency;
use crate::{CountryCode, CountrySet};

pub(super) fn check_country_groups(
    c: &mut Checker,
    raw: &IndexMap<String, Vec<String>>,
) -> HashMap<String, Vec<CountryCode>> {
    let mut groups = HashMap::new();
    for (name, members) in raw {
        let path = format!("country-groups.{}", path_key(name));
        c.identifier(&path, name);
        if members.is_empty() {
            c.err(&path, "must list at least one country");
        }
        let codes = members
            .iter()
            .enumerate()
            .filter_map(|(i, m)| c.country(&format!("{path}[{i}]"), m))
            .collect();
        groups.insert(name.clone(), codes);
    }
    groups
}

pub(super) fn check_residency(
    c: &mut Checker,
    raw: &IndexMap<String, RawResidency>,
    groups: &HashMap<String, Vec<CountryCode>>,
    regions: &[Region],
) -> Vec<ResidencyRule> {
    let mut out = Vec::new();
    for (name, r) in raw {
        let path = format!("residency.{}", path_key(name));
        c.identifier(&path, name);
        let mut countries = CountrySet::new();
        let mut written_as = Vec::new();
        for (i, g) in r.country_groups.iter().enumerate() {
            let p = format!("{path}.country-groups[{i}]");
            let members = builtin_group(g).or_else(|| groups.get(g).cloned());
            match members {
                Some(m) => m.into_iter().for_each(|cc| {
                    countries.insert(cc);
                }),
                None => {
                    let mut known: Vec<&str> = BUILTIN_GROUPS.to_vec();
                    known.extend(groups.keys().map(String::as_str));
                    c.err(
                        p,
                        format!("unknown country group {g:?} (known: {})", known.join(", ")),
                    );
                }
            }
            written_as.push(g.clone());
        }
        for (i, s) in r.countries.iter().enumerate() {
            if let Some(cc) = c.country(&format!("{path}.countries[{i}]"), s) {
                countries.insert(cc);
            }
            written_as.push(s.clone());
        }
        if r.countries.is_empty() && r.country_groups.is_empty() {
            c.err(
                &path,
                "must cover at least one country (countries or country-groups)",
            );
        }
        let jurisdiction = c
            .required(&format!("{path}.jurisdiction"), r.jurisdiction.clone())
            .unwrap_or_default();
        if r.jurisdiction.is_some() {
            c.identifier(&format!("{path}.jurisdiction"), &jurisdiction);
            if !regions.iter().any(|reg| reg.has_jurisdiction(&jurisdiction)) {
                c.err(
                    format!("{path}.jurisdiction"),
                    format!(
                        "no region carries jurisdiction {jurisdiction:?}: its clients could never be answered"
                    ),
                );
            }
        }
        let unknown_clients = match r.unknown_clients.as_deref() {
            None | Some("restrict") => UnknownClients::Restrict,
            Some("exempt") => UnknownClients::Exempt,
            Some(other) => {
                c.err(
                    format!("{path}.unknown-clients"),
                    format!("{other:?} is not \"restrict\" or \"exempt\""),
                );
                UnknownClients::Restrict
            }
        };
        out.push(ResidencyRule {
            name: name.clone(),
            description: r.description.clone(),
            countries,
            written_as,
            jurisdiction,
            unknown_clients,
        });
    }
    out
}
