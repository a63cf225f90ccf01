//! What the dashboard shows, as one JSON document built from the node's snapshot: the status document of
//! `/v1/status` (regions with health per vantage, load, weight, drains, drills, staleness), every region's
//! coordinates, and the steering as a map — for every service and every country of the map, the regions
//! [`meridian_steer::steer`] sends that country's clients to now (a client at the country's population
//! centre, as explain places a client its GeoIP database knows only by country), where it would send them
//! with every region up and no operator state (so the page shows where clients moved), and the residency
//! rules fencing the country in.

use meridian_config::{Config, CountryCode};
use meridian_steer::{ClientLocation, Mode, Query, RegionStates, Topology, steer};
use meridian_store::Snapshot;
use serde_json::{Map, Value, json};

use crate::AdminContext;
use crate::explain::mode_name;
use crate::status;

/// The map's country shapes (`data/map-eu-na.json`, made by `tools/gen_map.py`).
pub(crate) const MAP_JSON: &str = include_str!("../../../data/map-eu-na.json");

/// The two-letter codes of the countries on the map, read once from [`MAP_JSON`].
pub(crate) fn map_countries() -> &'static [CountryCode] {
    static CODES: std::sync::OnceLock<Vec<CountryCode>> = std::sync::OnceLock::new();
    CODES.get_or_init(|| {
        let doc: Value = serde_json::from_str(MAP_JSON).unwrap_or(Value::Null);
        doc["countries"]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|c| c["cc"].as_str().and_then(CountryCode::parse))
                    .collect()
            })
            .unwrap_or_default()
    })
}

/// The request hash used for a country: fixed per country, so a weighted choice shows the same region
/// from one update to the next (the page says when the answer depends on it).
fn country_hash(cc: CountryCode) -> u64 {
    let b = cc.as_str().as_bytes();
    meridian_steer::hash::mix(u64::from(b[0]) << 8 | u64::from(b[1]))
}

/// Where the clients of `cc` go for `service` under `states`: the chosen region ids, the mode, whether
/// the request hash mattered.
fn decide(
    topology: &Topology,
    states: &RegionStates,
    service: meridian_steer::ServiceIndex,
    cc: CountryCode,
    now_ms: u64,
) -> (Vec<String>, Mode, bool) {
    let info = cc.info();
    let client = ClientLocation::new(Some(cc), Some(info.continent), info.population_centre);
    let d = steer(
        topology,
        states,
        &Query {
            service,
            client: &client,
            request_hash: country_hash(cc),
            now_ms,
        },
    );
    let chosen = d
        .chosen
        .iter()
        .map(|r| topology.region_id(*r).to_owned())
        .collect();
    (chosen, d.mode, d.depends_on_hash)
}

/// The steering map: per service, per country, now and with everything up.
pub(crate) fn steering(snapshot: &Snapshot, now_ms: u64) -> Value {
    let topology = &snapshot.topology;
    let config: &Config = topology.config();
    let baseline = RegionStates::initial(config);
    let services: Vec<Value> = config
        .services()
        .iter()
        .filter_map(|s| {
            let index = topology.service_index(&s.name)?;
            let rules: Vec<&meridian_config::ResidencyRule> = s
                .residency
                .iter()
                .filter_map(|name| config.residency_rules().iter().find(|r| &r.name == name))
                .collect();
            let mut countries = Map::new();
            for &cc in map_countries() {
                let (now, mode, hashed) = decide(topology, &snapshot.states, index, cc, now_ms);
                let (usual, _, _) = decide(topology, &baseline, index, cc, now_ms);
                let fence: Vec<&str> = rules
                    .iter()
                    .filter(|r| r.countries.contains(cc))
                    .map(|r| r.name.as_str())
                    .collect();
                countries.insert(
                    cc.as_str().to_owned(),
                    json!({
                        "regions": now,
                        "usual": usual,
                        "mode": mode_name(mode),
                        "by_hash": hashed,
                        "fence": fence,
                    }),
                );
            }
            Some(json!({ "name": s.name, "hostname": s.hostname.as_str(), "countries": countries }))
        })
        .collect();
    let fences: Vec<Value> = config
        .residency_rules()
        .iter()
        .map(|r| {
            let allowed: Vec<&str> = config
                .regions()
                .iter()
                .filter(|g| g.jurisdictions.iter().any(|j| j == &r.jurisdiction))
                .map(|g| g.id.as_str())
                .collect();
            json!({
                "rule": r.name,
                "jurisdiction": r.jurisdiction,
                "written_as": r.written_as,
                "regions": allowed,
            })
        })
        .collect();
    json!({ "services": services, "fences": fences })
}

/// The whole document the page draws.
pub(crate) fn state(ctx: &AdminContext, snapshot: &Snapshot, now_ms: u64) -> Value {
    let mut doc = status::status(ctx, snapshot, now_ms);
    let locations: Map<String, Value> = snapshot
        .topology
        .config()
        .regions()
        .iter()
        .map(|r| {
            (
                r.id.clone(),
                json!({ "lat": r.location.lat, "lon": r.location.lon, "country": r.country.as_str() }),
            )
        })
        .collect();
    doc["locations"] = Value::Object(locations);
    doc["steering"] = steering(snapshot, now_ms);
    doc
}
