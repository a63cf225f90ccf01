//! The explain report: where a client is, which regions it would be sent to, and why — every candidate
//! with its distance, health, weight and load, and the verdict on it — as text and as JSON. Shared by
//! `meridian explain` (from a configuration file) and the admin API's `/v1/explain` (the live snapshot),
//! so both print the same thing. The decision is [`meridian_steer::steer`]'s: the explanation is the
//! decision, not a re-enactment.

use std::net::IpAddr;

use crate::api::{
    Coordinates, ExplainCandidate, ExplainClient, ExplainDecision, ExplainLatency, ExplainLocation,
    ExplainMeasured, ExplainReport,
};
use crate::status::health_name;
use meridian_config::{Config, Policy};
use meridian_geoip::{CoordinatesSource, GeoDb, Located, UnknownReason};
use meridian_steer::{
    Basis, ClientLocation, Decision, LatencyOutcome, Measured, Mode, NoAnswer, Point, Query, RegionIndex,
    RegionStates, ResidencyNote, ServiceIndex, Skip, Status, Topology, answer_addresses, client_hash,
    latency_area, steer,
};

/// An explanation, both ways.
#[derive(Clone, Debug)]
pub struct Explanation {
    /// The human-readable report.
    pub text: String,
    /// The same, as data (printed as JSON).
    pub report: ExplainReport,
}

/// Explains the decision for `client` asking for `service` (name or hostname) in `states` at `now_ms`;
/// `hash` replaces the request hash derived from the client's network. Errors name the known services.
pub fn explain(
    topology: &Topology,
    states: &RegionStates,
    geo: &GeoDb,
    service: &str,
    client: IpAddr,
    hash: Option<u64>,
    now_ms: u64,
) -> Result<Explanation, String> {
    let service_index = topology.service_index(service).ok_or_else(|| {
        let known: Vec<String> = topology
            .config()
            .services()
            .iter()
            .map(|s| format!("{} ({})", s.name, s.hostname))
            .collect();
        format!("unknown service {service:?} (known: {})", known.join(", "))
    })?;
    let located = geo.locate(client);
    let location = client_location(&located);
    let hash = hash.unwrap_or_else(|| client_hash(client));
    let decision = steer(
        topology,
        states,
        &Query {
            service: service_index,
            client: &location,
            request_hash: hash,
            now_ms,
        },
    );
    let report = Report {
        topology,
        states,
        service: service_index,
        geo,
        ip: client,
        located,
        hash,
        decision,
        now_ms,
    };
    Ok(Explanation {
        text: report.text(),
        report: report.report(),
    })
}

fn client_location(located: &Located) -> ClientLocation {
    let (country, continent, coordinates) = located.parts();
    ClientLocation::new(country, continent, coordinates)
}

struct Report<'a> {
    topology: &'a Topology,
    states: &'a RegionStates,
    service: ServiceIndex,
    geo: &'a GeoDb,
    ip: IpAddr,
    located: Located,
    hash: u64,
    decision: Decision,
    now_ms: u64,
}

/// One row of the candidate table.
struct Row {
    region: RegionIndex,
    distance_km: Option<f64>,
    verdict: String,
    reason: String,
}

impl Report<'_> {
    fn config(&self) -> &Config {
        self.topology.config()
    }

    fn service_config(&self) -> &meridian_config::Service {
        &self.config().services()[self.service.get()]
    }

    fn network(&self) -> String {
        let p = self.located.prefix_len;
        let masked = match self.ip.to_canonical() {
            IpAddr::V4(a) => {
                IpAddr::V4((u32::from(a) & u32::MAX.checked_shl(32 - u32::from(p)).unwrap_or(0)).into())
            }
            IpAddr::V6(a) => {
                IpAddr::V6((u128::from(a) & u128::MAX.checked_shl(128 - u32::from(p)).unwrap_or(0)).into())
            }
        };
        format!("{masked}/{p}")
    }

    fn client_point(&self) -> Option<Point> {
        client_location(&self.located).point
    }

    /// Rows: the answer in rank order, then every other region in policy order (distance for `nearest`).
    fn rows(&self) -> Vec<Row> {
        let mut rows: Vec<Row> = self
            .decision
            .verdicts
            .iter()
            .map(|v| {
                let distance_km = self
                    .client_point()
                    .zip(self.topology.region_point(v.region))
                    .map(|(c, r)| c.distance_km(&r));
                let (verdict, reason) = self.describe(v.region, &v.status);
                Row {
                    region: v.region,
                    distance_km,
                    verdict,
                    reason,
                }
            })
            .collect();
        let rank = |r: &Row| match self.decision.verdict(r.region) {
            Some(Status::Chosen { rank, .. }) => (0, f64::from(*rank)),
            _ if self.decision.basis == Basis::Distance => (1, r.distance_km.unwrap_or(f64::MAX)),
            _ => (1, 0.0),
        };
        rows.sort_by(|a, b| rank(a).partial_cmp(&rank(b)).unwrap_or(std::cmp::Ordering::Equal));
        rows
    }

    fn describe(&self, region: RegionIndex, status: &Status) -> (String, String) {
        let cfg = self.config();
        let id = |r: RegionIndex| self.topology.region_id(r).to_owned();
        let drill_id = |d: usize| {
            self.states
                .get(region)
                .and_then(|s| s.drills.get(d))
                .map_or("?".to_owned(), |d| d.id.clone())
        };
        match status {
            Status::Chosen {
                rank,
                spilled_from,
                over_capacity,
                near_tie,
            } => {
                let mut why = match self.decision.mode {
                    Mode::Panic => {
                        "panic mode: every eligible region is down; least-bad by policy".to_owned()
                    }
                    Mode::Fallback => "fallback region (every eligible region is down)".to_owned(),
                    _ => basis_reason(&self.decision.basis, *rank),
                };
                if *near_tie {
                    why.push_str(", chosen by weight among regions within near-tie-km");
                }
                if let Some(l) = self.latency_reason(region) {
                    why = l;
                }
                if let Some(from) = spilled_from {
                    why = format!(
                        "{} is over capacity and this client is in the share moved; next region with headroom",
                        id(*from)
                    );
                }
                if *over_capacity {
                    why.push_str(" (itself over its spill threshold)");
                }
                (format!("chosen #{}", rank + 1), why)
            }
            Status::Available => (
                "available".to_owned(),
                "usable, ranked below the answer".to_owned(),
            ),
            Status::Spilled {
                utilisation,
                moved_share,
            } => (
                "over capacity".to_owned(),
                format!(
                    "load {:.0}% of capacity is above spill-at {:.0}%: {:.0}% of its clients move, this one included",
                    utilisation * 100.0,
                    self.service_config().spill_at * 100.0,
                    moved_share * 100.0
                ),
            ),
            Status::Saturated { utilisation } => (
                "no headroom".to_owned(),
                format!(
                    "load {:.0}% is above spill-at: takes no spilled clients",
                    utilisation * 100.0
                ),
            ),
            Status::Skipped(skip) => {
                let why = match skip {
                    Skip::NotListed => match self.decision.basis {
                        Basis::UnknownLocation => {
                            "not in unknown-location (client location unknown)".to_owned()
                        }
                        _ => "not in the geo list this client is answered from".to_owned(),
                    },
                    Skip::Residency { rule } => {
                        let r = &cfg.residency_rules()[*rule];
                        let region = &cfg.regions()[region.get()];
                        format!(
                            "residency rule {}: clients here may only go to jurisdiction {:?}; {} has {}",
                            r.name,
                            r.jurisdiction,
                            region.id,
                            if region.jurisdictions.is_empty() {
                                "none".to_owned()
                            } else {
                                format!("{:?}", region.jurisdictions)
                            }
                        )
                    }
                    Skip::Drained => "drained by an operator".to_owned(),
                    Skip::DrillDrain { drill } => format!("drained by drill {}", drill_id(*drill)),
                    Skip::WeightZero => "weight is 0".to_owned(),
                    Skip::Down => "health checks say it is down".to_owned(),
                    Skip::DrillDown { drill } => format!("down by drill {}", drill_id(*drill)),
                };
                (format!("skipped: {}", skip.label()), why)
            }
        }
    }

    /// This region's measured latency for the client's area, if the service steers by latency.
    fn measured(&self, region: RegionIndex) -> Option<Measured> {
        self.service_config().latency?;
        let area = latency_area(&client_location(&self.located))?;
        self.states
            .latency()
            .row(area)
            .and_then(|row| row.get(region.get()).copied())
            .filter(|m| m.samples > 0)
    }

    /// The latency column: estimate, samples and age, or why there is none.
    fn latency_cell(&self, region: RegionIndex) -> String {
        let Some(settings) = self.service_config().latency else {
            return String::new();
        };
        match self.measured(region) {
            None => "-".to_owned(),
            Some(m) => {
                let age = self.now_ms.saturating_sub(m.updated_at_ms) / 1000;
                let few = if m.samples < settings.min_samples {
                    " (few)"
                } else {
                    ""
                };
                format!("{:.1} ms n={} {age}s{few}", m.rtt_ms, m.samples)
            }
        }
    }

    /// Why latency put this region first, if it did.
    fn latency_reason(&self, region: RegionIndex) -> Option<String> {
        let note = self.decision.latency?;
        let id = |r: Option<RegionIndex>| r.map_or("?", |r| self.topology.region_id(r));
        let rtt = |r: Option<RegionIndex>| {
            r.and_then(|r| self.measured(r))
                .map_or("-".to_owned(), |m| format!("{:.1} ms", m.rtt_ms))
        };
        if note.explored == Some(region) {
            let share = self.service_config().latency.map_or(0.0, |l| l.explore_share);
            return Some(format!(
                "exploring: this network is in the {:.1}% share that measures other regions (natural answer {})",
                share * 100.0,
                id(note.chosen)
            ));
        }
        (note.outcome == LatencyOutcome::Faster && note.chosen == Some(region)).then(|| {
            format!(
                "measured faster: {} against {} for the nearest, {} (margin {:.1} ms)",
                rtt(Some(region)),
                rtt(note.nearest),
                id(note.nearest),
                note.margin_ms
            )
        })
    }

    /// The latency line of the report: what the step concluded and why.
    fn latency_summary(&self) -> Option<String> {
        let note = self.decision.latency?;
        let settings = self.service_config().latency?;
        let id = |r: Option<RegionIndex>| r.map_or("?", |r| self.topology.region_id(r));
        let area = note.area.map_or("none".to_owned(), |a| a.to_string());
        let outcome = match note.outcome {
            LatencyOutcome::NoArea => {
                "the client has no latency area (no country or coordinates): distance decides".to_owned()
            }
            LatencyOutcome::NotMeasured => format!(
                "the nearest usable region, {}, has fewer than {} samples here: distance decides",
                id(note.nearest),
                settings.min_samples
            ),
            LatencyOutcome::WithinMargin => format!(
                "no measured region beats the nearest, {}, by more than {:.1} ms: it stays",
                id(note.nearest),
                note.margin_ms
            ),
            LatencyOutcome::Faster => format!(
                "{} is measured faster than the nearest, {}, by more than {:.1} ms",
                id(note.chosen),
                id(note.nearest),
                note.margin_ms
            ),
        };
        let explore = match note.explored {
            Some(r) => format!("; this network explores {}", id(Some(r))),
            None => format!(
                "; exploration {:.1}% of networks (not this one)",
                settings.explore_share * 100.0
            ),
        };
        Some(format!("area {area}: {outcome}{explore}"))
    }

    fn mode(&self) -> &'static str {
        mode_name(self.decision.mode)
    }

    fn mode_detail(&self) -> Option<&'static str> {
        match self.decision.mode {
            Mode::Normal => None,
            Mode::Panic => {
                Some("every eligible region is down; answering the least-bad ones (when-all-down = panic)")
            }
            Mode::Fallback => Some("every eligible region is down; answering the fallback region"),
            Mode::NoAnswer(NoAnswer::AllDown) => {
                Some("every eligible region is down and when-all-down = servfail: SERVFAIL")
            }
            Mode::NoAnswer(NoAnswer::NothingEligible) => {
                Some("no region may serve this client (residency, drains, weight 0): SERVFAIL / 503")
            }
            Mode::NoAnswer(NoAnswer::FallbackBarredByResidency) => {
                Some("the fallback region is barred for this client by residency: SERVFAIL / 503")
            }
            Mode::NoAnswer(NoAnswer::UnknownService) => Some("unknown service"),
        }
    }

    fn residency(&self) -> String {
        let svc = self.service_config();
        let names = |mask: u64| -> String {
            svc.residency
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, n)| {
                    let j = self
                        .config()
                        .residency_rule(n)
                        .map_or("?", |r| r.jurisdiction.as_str());
                    format!("{n} (jurisdiction {j:?})")
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self.decision.residency {
            ResidencyNote::NoRules => "none configured for this service".to_owned(),
            ResidencyNote::NotCovered => "no rule covers this client's country".to_owned(),
            ResidencyNote::Applied(m) => format!("applied: {}", names(m)),
            ResidencyNote::UnknownRestricted(m) => {
                format!("location unknown, restricted (fail closed): {}", names(m))
            }
            ResidencyNote::UnknownExempt(m) => {
                format!(
                    "location unknown; NOT applied, the rules exempt unknown clients: {}",
                    names(m)
                )
            }
        }
    }

    fn location_text(&self) -> String {
        match &self.located.location {
            Ok(l) => {
                let country = l.country.map_or("country unknown".to_owned(), |c| {
                    format!("{c} ({})", c.info().name)
                });
                let continent = l.continent.map_or(String::new(), |c| format!(", {}", c.name()));
                let coords = match l.coordinates {
                    Some((c, CoordinatesSource::Database)) => {
                        format!("{:.3}, {:.3} (from the database)", c.lat, c.lon)
                    }
                    Some((c, CoordinatesSource::CountryCentre)) => {
                        format!(
                            "{:.3}, {:.3} (population centre of the country: the database has no coordinates)",
                            c.lat, c.lon
                        )
                    }
                    None => "unknown".to_owned(),
                };
                format!("{country}{continent}; coordinates {coords}")
            }
            Err(UnknownReason::NonRoutable) => {
                "unknown: a private or otherwise non-routable address".to_owned()
            }
            Err(UnknownReason::NotInDatabase) => "unknown: not in the GeoIP database".to_owned(),
        }
    }

    fn text(&self) -> String {
        use std::fmt::Write;
        let svc = self.service_config();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} (service {}, policy {}, {} region(s) per answer, TTL {} s)",
            svc.hostname,
            svc.name,
            svc.policy.name(),
            svc.answer_regions,
            svc.ttl
        );
        let _ = writeln!(
            out,
            "client     {} in {} ({})",
            self.ip,
            self.network(),
            self.geo.description()
        );
        let _ = writeln!(out, "located    {}", self.location_text());
        let _ = writeln!(out, "residency  {}", self.residency());
        let _ = writeln!(
            out,
            "basis      {}",
            basis_text(&self.decision.basis, &svc.policy)
        );
        let chosen: Vec<&str> = self
            .decision
            .chosen
            .iter()
            .map(|r| self.topology.region_id(*r))
            .collect();
        let _ = writeln!(
            out,
            "decision   {} ({}){}",
            if chosen.is_empty() {
                "no answer".to_owned()
            } else {
                chosen.join(", ")
            },
            self.mode(),
            self.mode_detail().map_or(String::new(), |d| format!(": {d}"))
        );
        if let Some(l) = self.latency_summary() {
            let _ = writeln!(out, "latency    {l}");
        }
        let answer = answer_addresses(self.topology, self.service, &self.decision.chosen);
        if !chosen.is_empty() {
            let v4: Vec<String> = answer.ipv4.iter().map(ToString::to_string).collect();
            let v6: Vec<String> = answer.ipv6.iter().map(ToString::to_string).collect();
            let _ = writeln!(out, "answer     A {}; AAAA {}", or_none(&v4), or_none(&v6));
        }
        let _ = writeln!(out);
        // The latency column only for services that steer by latency (other reports are unchanged).
        let with_latency = svc.latency.is_some();
        let latency_head = if with_latency {
            format!(" {:<24}", "latency")
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "{:<8} {:<14} {:>9} {:<8} {:>6} {:>13}{latency_head}  {:<20} why",
            "region", "name", "distance", "health", "weight", "load", "verdict"
        );
        for row in self.rows() {
            let region = &self.config().regions()[row.region.get()];
            let st = self.states.get(row.region);
            let health = st.map_or("?", |s| health_name(s.health));
            let weight = st.map_or(0, |s| s.weight);
            let load = st.map_or("-".to_owned(), |s| match s.in_flight {
                Some(n) => format!("{n}/{}", s.capacity),
                None => format!("-/{}", s.capacity),
            });
            let distance = row.distance_km.map_or("-".to_owned(), |d| format!("{d:.0} km"));
            let latency = if with_latency {
                format!(" {:<24}", self.latency_cell(row.region))
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "{:<8} {:<14} {:>9} {:<8} {:>6} {:>13}{latency}  {:<20} {}",
                region.id, region.name, distance, health, weight, load, row.verdict, row.reason
            );
        }
        out
    }

    fn report(&self) -> ExplainReport {
        let svc = self.service_config();
        let answer = answer_addresses(self.topology, self.service, &self.decision.chosen);
        let location = match &self.located.location {
            Ok(l) => ExplainLocation::Known {
                known: true,
                country: l.country.map(|c| c.to_string()),
                continent: l.continent.map(|c| c.code().to_owned()),
                coordinates: l.coordinates.map(|(c, _)| Coordinates {
                    lat: c.lat,
                    lon: c.lon,
                }),
                coordinates_source: l.coordinates.map(|(_, s)| {
                    match s {
                        CoordinatesSource::Database => "database",
                        CoordinatesSource::CountryCentre => "country-population-centre",
                    }
                    .to_owned()
                }),
            },
            Err(reason) => ExplainLocation::Unknown {
                known: false,
                reason: match reason {
                    UnknownReason::NonRoutable => "non-routable",
                    UnknownReason::NotInDatabase => "not-in-database",
                }
                .to_owned(),
            },
        };
        let candidates = self
            .rows()
            .into_iter()
            .map(|row| {
                let region = &self.config().regions()[row.region.get()];
                let st = self.states.get(row.region);
                let status = self.decision.verdict(row.region);
                ExplainCandidate {
                    region: region.id.clone(),
                    name: region.name.clone(),
                    distance_km: row.distance_km.map(|d| (d * 10.0).round() / 10.0),
                    health: st.map(|s| health_name(s.health).to_owned()),
                    drained: st.map(|s| s.drained),
                    weight: st.map(|s| s.weight),
                    in_flight: st.and_then(|s| s.in_flight),
                    capacity: st.map(|s| s.capacity),
                    verdict: status.map(|s| s.label().to_owned()),
                    rank: match status {
                        Some(Status::Chosen { rank, .. }) => Some(rank + 1),
                        _ => None,
                    },
                    latency: self.measured(row.region).map(|m| ExplainMeasured {
                        rtt_ms: f64::from(m.rtt_ms),
                        samples: m.samples,
                        age_ms: self.now_ms.saturating_sub(m.updated_at_ms),
                        enough_samples: svc.latency.is_some_and(|l| m.samples >= l.min_samples),
                    }),
                    reason: row.reason,
                }
            })
            .collect();
        let region_id = |r: RegionIndex| self.topology.region_id(r).to_owned();
        ExplainReport {
            service: svc.name.clone(),
            hostname: svc.hostname.as_str().to_owned(),
            policy: svc.policy.name().to_owned(),
            client: ExplainClient {
                ip: self.ip.to_string(),
                network: self.network(),
                geoip: self.geo.description().to_owned(),
                location,
                request_hash: self.hash,
            },
            residency: self.residency(),
            basis: basis_text(&self.decision.basis, &svc.policy),
            decision: ExplainDecision {
                mode: self.mode().to_owned(),
                detail: self.mode_detail().map(str::to_owned),
                regions: self.decision.chosen.iter().map(|r| region_id(*r)).collect(),
                ttl: svc.ttl,
                ipv4: answer.ipv4.iter().map(ToString::to_string).collect(),
                ipv6: answer.ipv6.iter().map(ToString::to_string).collect(),
            },
            candidates,
            latency: self.decision.latency.map(|n| ExplainLatency {
                area: n.area.map(|a| a.to_string()),
                outcome: match n.outcome {
                    LatencyOutcome::NoArea => "no-area",
                    LatencyOutcome::NotMeasured => "not-measured",
                    LatencyOutcome::WithinMargin => "within-margin",
                    LatencyOutcome::Faster => "faster",
                }
                .to_owned(),
                nearest: n.nearest.map(region_id),
                chosen: n.chosen.map(region_id),
                margin_ms: n.margin_ms,
                explored: n.explored.map(region_id),
                explore_share: svc.latency.map(|l| l.explore_share),
                summary: self.latency_summary(),
            }),
        }
    }
}

fn or_none(v: &[String]) -> String {
    if v.is_empty() {
        "(none)".to_owned()
    } else {
        v.join(", ")
    }
}

/// A decision's mode as reports and the dashboard name it.
pub(crate) fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Normal => "normal",
        Mode::Panic => "panic",
        Mode::Fallback => "fallback",
        Mode::NoAnswer(_) => "no-answer",
    }
}

fn basis_text(basis: &Basis, policy: &Policy) -> String {
    match basis {
        Basis::Distance => match policy {
            Policy::Nearest { near_tie_km } => {
                format!("great-circle distance from the client (near-tie {near_tie_km} km broken by weight)")
            }
            _ => "great-circle distance from the client".to_owned(),
        },
        Basis::UnknownLocation => "client location unknown: the service's unknown-location order".to_owned(),
        Basis::FailoverOrder => "failover order (primary first)".to_owned(),
        Basis::Weighted => "weighted choice, stable for this client".to_owned(),
        Basis::GeoCountry(c) => format!("geo map entry for country {c}"),
        Basis::GeoContinent(c) => format!("geo map entry for continent {c}"),
        Basis::GeoDefault => "geo map default".to_owned(),
    }
}

fn basis_reason(basis: &Basis, rank: u8) -> String {
    let nth = if rank == 0 {
        String::new()
    } else {
        format!(" #{}", rank + 1)
    };
    match basis {
        Basis::Distance => format!("nearest usable{nth}"),
        Basis::UnknownLocation => format!("first usable{nth} of unknown-location"),
        Basis::FailoverOrder => {
            if rank == 0 {
                "first usable in failover order".to_owned()
            } else {
                format!("failover order{nth}")
            }
        }
        Basis::Weighted => format!("weighted choice{nth}"),
        Basis::GeoCountry(_) | Basis::GeoContinent(_) | Basis::GeoDefault => {
            format!("first usable{nth} of the geo list")
        }
    }
}
