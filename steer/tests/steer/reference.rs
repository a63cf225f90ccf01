//! A deliberately naive reference implementation of the steering rules, written from docs/steering.md
//! without looking at the engine's data structures: it works on the configuration directly, measures
//! distance with the haversine formula in kilometres, sorts everything, and builds lists by hand.
//! It shares only the hash draws (which define *which* clients move, not *how many*).

use meridian_config::{Config, Policy, UnknownClients, WhenAllDown};
use meridian_steer::hash::{SPILL_SALT, region_seed, unit};
use meridian_steer::{DrillMode, Health, RegionStates, great_circle_km};

use super::world::{NOW, World};

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub(crate) enum RefMode {
    Normal,
    Panic,
    Fallback,
    NoAnswer,
}

/// (mode, ids of the chosen regions in order)
pub(crate) fn decide(w: &World, states: &RegionStates) -> (RefMode, Vec<String>) {
    let (mode, mut ids) = decide_untruncated(w, states);
    ids.truncate(w.config.services()[0].answer_regions);
    (mode, ids)
}

/// The usable regions in policy order, before spill and truncation.
pub(crate) fn ranked(w: &World, states: &RegionStates) -> Vec<String> {
    match decide_inner(w, states, false) {
        (RefMode::Normal, ids) => ids,
        _ => Vec::new(),
    }
}

fn decide_untruncated(w: &World, states: &RegionStates) -> (RefMode, Vec<String>) {
    decide_inner(w, states, true)
}

fn decide_inner(w: &World, states: &RegionStates, spill: bool) -> (RefMode, Vec<String>) {
    let cfg: &Config = &w.config;
    let svc = &cfg.services()[0];
    let country = w.client.country;
    let coords = w
        .spec
        .client_point
        .map(|(lat, lon)| meridian_config::Coordinates { lat, lon });

    // Residency.
    let applying: Vec<_> = svc
        .residency
        .iter()
        .map(|n| cfg.residency_rule(n).unwrap())
        .filter(|r| match country {
            Some(c) => r.countries.contains(c),
            None => r.unknown_clients == UnknownClients::Restrict,
        })
        .collect();
    let allowed = |id: &str| {
        applying
            .iter()
            .all(|r| cfg.region(id).unwrap().has_jurisdiction(&r.jurisdiction))
    };

    // The list the client is answered from.
    let list: Vec<String> = match &svc.policy {
        Policy::Nearest { .. } if coords.is_some() => svc.regions.clone(),
        Policy::Nearest { .. } => svc.unknown_location.clone(),
        Policy::Failover | Policy::Weighted => svc.regions.clone(),
        Policy::Geo(map) => {
            let by_country = country.and_then(|c| map.countries.iter().find(|(k, _)| *k == c));
            let continent = country.map(|c| c.info().continent);
            let by_continent = continent.and_then(|k| map.continents.iter().find(|(c, _)| *c == k));
            match (by_country, by_continent) {
                (Some((_, l)), _) => l.clone(),
                (None, Some((_, l))) => l.clone(),
                _ => map.default.clone(),
            }
        }
    };

    // Classify every listed region.
    let index = |id: &str| cfg.region_index(id).unwrap();
    let mut usable = Vec::new();
    let mut health_only = Vec::new();
    for (position, id) in list.iter().enumerate() {
        if !allowed(id) {
            continue;
        }
        let st = &states.as_slice()[index(id)];
        let active =
            |m: fn(&DrillMode) -> bool| st.drills.iter().any(|d| NOW < d.expires_at_ms && m(&d.mode));
        let drained = st.drained || active(|m| *m == DrillMode::Drain);
        let down = st.health == Health::Down || active(|m| *m == DrillMode::Down);
        if drained || st.weight == 0 {
            continue;
        }
        let entry = (id.clone(), position);
        if down {
            health_only.push(entry)
        } else {
            usable.push(entry)
        }
    }

    let order = |cands: &[(String, usize)]| -> Vec<String> {
        let rdv = |id: &str| {
            let weight = states.as_slice()[index(id)].weight as f64;
            -unit(w.spec.hash, region_seed(id)).ln() / weight
        };
        // (group, key, index) ascending.
        let mut keyed: Vec<(u8, f64, usize, String)> = match (&svc.policy, coords) {
            (Policy::Nearest { near_tie_km }, Some(c)) => {
                let km = |id: &str| great_circle_km(c, cfg.region(id).unwrap().location);
                let nearest = cands.iter().map(|(id, _)| km(id)).fold(f64::INFINITY, f64::min);
                let tied = cands
                    .iter()
                    .filter(|(id, _)| km(id) <= nearest + near_tie_km)
                    .count();
                cands
                    .iter()
                    .map(|(id, _)| {
                        if *near_tie_km > 0.0 && tied >= 2 && km(id) <= nearest + near_tie_km {
                            (0, rdv(id), index(id), id.clone())
                        } else {
                            (1, km(id), index(id), id.clone())
                        }
                    })
                    .collect()
            }
            (Policy::Weighted, _) => cands
                .iter()
                .map(|(id, _)| (1, rdv(id), index(id), id.clone()))
                .collect(),
            _ => cands
                .iter()
                .map(|(id, p)| (1, *p as f64, index(id), id.clone()))
                .collect(),
        };
        keyed.sort_by(|a, b| (a.0, a.1, a.2).partial_cmp(&(b.0, b.1, b.2)).unwrap());
        keyed.into_iter().map(|k| k.3).collect()
    };

    if !usable.is_empty() {
        // Spill: the first region, if over its threshold, loses the client with probability
        // 1 - spill_at / utilisation, to the first later region under its own threshold (if any).
        let utilisation = |id: &str| -> Option<f64> {
            let st = &states.as_slice()[index(id)];
            let inf = st.in_flight?;
            let pct = st
                .drills
                .iter()
                .filter(|d| NOW < d.expires_at_ms)
                .filter_map(|d| {
                    if let DrillMode::Capacity { percent } = d.mode {
                        Some(percent)
                    } else {
                        None
                    }
                })
                .min()
                .unwrap_or(100);
            let cap = st.capacity as f64 * pct as f64 / 100.0;
            Some(if cap > 0.0 {
                inf as f64 / cap
            } else {
                f64::INFINITY
            })
        };
        let over = |id: &str| utilisation(id).is_some_and(|u| u > svc.spill_at);
        let mut out = order(&usable);
        let first = out[0].clone();
        let leaves = spill
            && over(&first)
            && unit(w.spec.hash, region_seed(&first) ^ SPILL_SALT)
                <= 1.0 - svc.spill_at / utilisation(&first).unwrap();
        if leaves && let Some(pos) = out.iter().position(|id| !over(id)) {
            let target = out.remove(pos);
            out.insert(0, target);
        }
        return (RefMode::Normal, out);
    }
    match &svc.when_all_down {
        WhenAllDown::Panic if !health_only.is_empty() => (RefMode::Panic, order(&health_only)),
        WhenAllDown::Panic | WhenAllDown::Servfail => (RefMode::NoAnswer, vec![]),
        WhenAllDown::Fallback(id) if allowed(id) => (RefMode::Fallback, vec![id.clone()]),
        WhenAllDown::Fallback(_) => (RefMode::NoAnswer, vec![]),
    }
}
