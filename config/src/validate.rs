//! Turns the raw file into the validated model, or into the complete list of what is wrong with it.
//!
//! Validation never corrects: a value out of range, an unknown reference or a contradiction is reported with
//! the path of the offending field (`services.meet.regions[2]: unknown region "frx"`), and nothing is
//! applied. It collects every problem it can find in one pass, so an operator fixes a file in one round.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::RangeInclusive;
use std::path::PathBuf;

use crate::country::{BUILTIN_GROUPS, builtin_group};
use crate::model::*;
use crate::names::{check_identifier, path_key};
use crate::raw::*;
use crate::{Config, Continent, CountryCode, CountrySet, DomainName, Problem, RecordData};

/// Upper bound on regions: steering keeps region sets as fixed-size bitmaps.
pub const MAX_REGIONS: usize = 256;
/// Upper bound on `answer-regions`.
pub const MAX_ANSWER_REGIONS: usize = 8;
/// Upper bound on a region's weight.
pub const MAX_WEIGHT: u32 = 10_000;

const DEFAULT_WEIGHT: u32 = 100;
const DEFAULT_ZONE_TTL: u32 = 3600;
const DEFAULT_SERVICE_TTL: u32 = 30;
const DEFAULT_MAX_ADDRESSES: usize = 8;
const DEFAULT_SPILL_AT: f64 = 0.9;
const DEFAULT_NEAR_TIE_KM: f64 = 50.0;

// Health-check defaults, chosen so a dead region is down everywhere within 3 s and one lost probe changes
// nothing: `fall` = 2 consecutive failures, probes every 1 s plus up to 0.1 s of jitter, each failing
// after at most 0.7 s. Worst case at one prober: the probe just before the death passes, the next two
// start at most 1.1 s apart and the second takes 0.7 s to time out: 2 x 1.1 + 0.7 = 2.9 s (a refused
// connection fails at once: 2.2 s). Publishing and the snapshot watchers add milliseconds. With a
// majority quorum the region turns down when the second-fastest of three probers gets there.
const DEFAULT_CHECK_INTERVAL_MS: u32 = 1000;
const DEFAULT_CHECK_TIMEOUT_MS: u32 = 700;
const DEFAULT_CHECK_JITTER_MS: u32 = 100;
const DEFAULT_RISE: u32 = 2;
const DEFAULT_FALL: u32 = 2;
/// Upper bound on health checks per region.
const MAX_HEALTH_CHECKS: usize = 16;

pub(crate) struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    pub(crate) fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    fn required<T>(&mut self, path: &str, value: Option<T>) -> Option<T> {
        if value.is_none() {
            self.err(path, "is required");
        }
        value
    }

    /// An integer field: absent -> default; present -> must lie in `range`.
    pub(crate) fn int(
        &mut self,
        path: &str,
        value: Option<i64>,
        default: u32,
        range: RangeInclusive<u32>,
    ) -> u32 {
        let Some(v) = value else { return default };
        match u32::try_from(v) {
            Ok(v) if range.contains(&v) => v,
            _ => {
                self.err(
                    path,
                    format!("{v} is out of range ({} to {})", range.start(), range.end()),
                );
                default
            }
        }
    }

    fn identifier(&mut self, path: &str, s: &str) {
        if let Err(e) = check_identifier(s) {
            self.err(path, e);
        }
    }

    fn domain(&mut self, path: &str, s: &str) -> Option<DomainName> {
        DomainName::parse(s).map_err(|e| self.err(path, e)).ok()
    }

    fn country(&mut self, path: &str, s: &str) -> Option<CountryCode> {
        let c = CountryCode::parse(s);
        if c.is_none() {
            let hint = if CountryCode::parse_any_case(s).is_some() {
                format!(" (write it in upper case: {:?})", s.to_ascii_uppercase())
            } else {
                String::new()
            };
            self.err(
                path,
                format!("{s:?} is not an ISO 3166-1 alpha-2 country code{hint}"),
            );
        }
        c
    }
}

/// Region ids in file order, for "unknown region" messages and reference checks.
struct RegionIndex<'a> {
    ids: Vec<&'a str>,
}

impl RegionIndex<'_> {
    fn check(&self, c: &mut Checker, path: &str, id: &str) -> bool {
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
    fn check_list(&self, c: &mut Checker, path: &str, list: &[String]) -> Vec<String> {
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

pub(crate) fn validate(raw: RawConfig) -> Result<Config, Vec<Problem>> {
    let mut c = Checker { problems: Vec::new() };

    let schema_version = match raw.schema_version {
        None => {
            c.err(
                "schema-version",
                format!("is required (this build reads version {SCHEMA_VERSION})"),
            );
            SCHEMA_VERSION
        }
        Some(v) if v == i64::from(SCHEMA_VERSION) => SCHEMA_VERSION,
        Some(v) => {
            c.err(
                "schema-version",
                format!("version {v} is not supported (this build reads {SCHEMA_VERSION})"),
            );
            SCHEMA_VERSION
        }
    };

    let geoip = GeoIpSettings {
        database: raw.geoip.and_then(|g| match g.database {
            Some(d) if d.trim().is_empty() => {
                c.err(
                    "geoip.database",
                    "must not be empty (omit it to use the bundled database)",
                );
                None
            }
            d => d.map(PathBuf::from),
        }),
    };

    let groups = check_country_groups(&mut c, &raw.country_groups);
    let regions = check_regions(&mut c, &raw.regions);
    let proxy = crate::proxy_settings::check_proxy_settings(&mut c, raw.proxy.as_ref());
    let tls = crate::tls::check_tls(&mut c, raw.tls.as_ref());
    let health = check_health_settings(&mut c, raw.health.as_ref(), &regions);
    let index = RegionIndex {
        ids: raw.regions.keys().map(String::as_str).collect(),
    };
    let residency = check_residency(&mut c, &raw.residency, &groups, &regions);
    let zones = check_zones(&mut c, &raw.zones);
    let services = check_services(&mut c, &raw.services, &index, &zones, &residency);
    check_service_record_conflicts(&mut c, &services, &zones);
    check_residency_satisfiable(&mut c, &services, &regions, &residency);

    if c.problems.is_empty() {
        Ok(Config {
            schema_version,
            geoip,
            regions,
            zones,
            services,
            residency,
            health,
            proxy,
            tls,
        })
    } else {
        Err(c.problems)
    }
}

fn check_country_groups(
    c: &mut Checker,
    raw: &indexmap::IndexMap<String, Vec<String>>,
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

fn check_regions(c: &mut Checker, raw: &indexmap::IndexMap<String, RawRegion>) -> Vec<Region> {
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

fn check_health_settings(c: &mut Checker, raw: Option<&RawHealth>, regions: &[Region]) -> HealthSettings {
    let defaults = HealthSettings::default();
    let settings = match raw {
        None => defaults,
        Some(raw) => HealthSettings {
            quorum: match raw.healthy_above_percent {
                None => Quorum::Majority,
                Some(_) => Quorum::HealthyAbove {
                    percent: c.int(
                        "health.healthy-above-percent",
                        raw.healthy_above_percent,
                        50,
                        0..=99,
                    ) as u8,
                },
            },
            stale_after_ms: u64::from(c.int(
                "health.stale-after-ms",
                raw.stale_after_ms,
                defaults.stale_after_ms as u32,
                1000..=3_600_000,
            )),
            panic_below_percent: c.int(
                "health.panic-below-percent",
                raw.panic_below_percent,
                u32::from(defaults.panic_below_percent),
                0..=100,
            ) as u8,
        },
    };
    // A prober re-publishes an unchanged opinion at least once per probe: an opinion must stay fresh
    // across the gap between two probes, with room for one slow one.
    for r in regions {
        for (i, hc) in r.health_checks.iter().enumerate() {
            let gap = 2 * (u64::from(hc.interval_ms) + u64::from(hc.jitter_ms));
            if settings.stale_after_ms < gap {
                c.err(
                    "health.stale-after-ms",
                    format!(
                        "{} ms is shorter than two probe intervals of regions.{}.health-checks[{i}] \
                         ({gap} ms): its opinions would go stale between probes",
                        settings.stale_after_ms,
                        path_key(&r.id)
                    ),
                );
            }
        }
    }
    settings
}

fn check_health_check(c: &mut Checker, path: &str, raw: &RawHealthCheck) -> Option<HealthCheck> {
    let interval_ms = c.int(
        &format!("{path}.interval-ms"),
        raw.interval_ms,
        DEFAULT_CHECK_INTERVAL_MS,
        100..=3_600_000,
    );
    let timeout_ms = c.int(
        &format!("{path}.timeout-ms"),
        raw.timeout_ms,
        DEFAULT_CHECK_TIMEOUT_MS,
        10..=60_000,
    );
    // A probe still running when the next is due would overlap it: the verdict of one interval would
    // count twice, or a slow target would pile up connections.
    if timeout_ms >= interval_ms {
        c.err(
            format!("{path}.timeout-ms"),
            format!("{timeout_ms} ms must be less than interval-ms ({interval_ms} ms)"),
        );
    }
    let jitter_ms = c.int(
        &format!("{path}.jitter-ms"),
        raw.jitter_ms,
        DEFAULT_CHECK_JITTER_MS.min(interval_ms / 2),
        0..=60_000,
    );
    if raw.jitter_ms.is_some() && jitter_ms >= interval_ms {
        c.err(
            format!("{path}.jitter-ms"),
            format!("{jitter_ms} ms must be less than interval-ms ({interval_ms} ms)"),
        );
    }
    let rise = c.int(&format!("{path}.rise"), raw.rise, DEFAULT_RISE, 1..=100);
    let fall = c.int(&format!("{path}.fall"), raw.fall, DEFAULT_FALL, 1..=100);
    let http_only = |c: &mut Checker, field: &str, present: bool| {
        if present {
            c.err(format!("{path}.{field}"), "only applies to kind = \"http\"");
        }
    };
    let target = match raw.kind.as_deref() {
        None => {
            c.err(format!("{path}.kind"), "is required (\"http\" or \"tcp\")");
            None
        }
        Some("http") => {
            if raw.address.is_some() {
                c.err(
                    format!("{path}.address"),
                    "only applies to kind = \"tcp\" (an http check has a url)",
                );
            }
            let url = c.required(&format!("{path}.url"), raw.url.as_deref());
            let parsed = url.and_then(|u| parse_url(u).map_err(|e| c.err(format!("{path}.url"), e)).ok());
            let host_header = raw.host.as_ref().and_then(|h| {
                let bad = h.is_empty() || h.chars().any(|ch| ch.is_whitespace() || ch.is_control());
                if bad {
                    c.err(
                        format!("{path}.host"),
                        format!("{h:?} is not a host name (no spaces or control characters, not empty)"),
                    );
                    None
                } else {
                    Some(h.clone())
                }
            });
            let expect_status = match &raw.expect_status {
                None => StatusMatch::Success,
                Some(codes) => {
                    if codes.is_empty() {
                        c.err(
                            format!("{path}.expect-status"),
                            "must list at least one status code (omit it for any 2xx or 3xx)",
                        );
                    }
                    let mut out: Vec<u16> = Vec::new();
                    for (i, code) in codes.iter().enumerate() {
                        let p = format!("{path}.expect-status[{i}]");
                        match u16::try_from(*code) {
                            Ok(v) if (100..=599).contains(&v) && out.contains(&v) => {
                                c.err(p, format!("{v} is listed twice"));
                            }
                            Ok(v) if (100..=599).contains(&v) => out.push(v),
                            _ => c.err(p, format!("{code} is not an HTTP status code (100 to 599)")),
                        }
                    }
                    StatusMatch::AnyOf(out)
                }
            };
            if raw.body_match.as_deref() == Some("") {
                c.err(
                    format!("{path}.body-match"),
                    "must not be empty (omit it to accept any body)",
                );
            }
            parsed.map(|(tls, host, port, path)| {
                CheckTarget::Http(HttpCheck {
                    url: url.unwrap_or_default().to_owned(),
                    tls,
                    host,
                    port,
                    path,
                    host_header,
                    expect_status,
                    body_match: raw.body_match.clone().filter(|b| !b.is_empty()),
                })
            })
        }
        Some("tcp") => {
            http_only(c, "url", raw.url.is_some());
            http_only(c, "host", raw.host.is_some());
            http_only(c, "expect-status", raw.expect_status.is_some());
            http_only(c, "body-match", raw.body_match.is_some());
            let address = c.required(&format!("{path}.address"), raw.address.as_deref());
            address.and_then(|a| {
                parse_host_port(a, None)
                    .map(|(host, port)| CheckTarget::Tcp { host, port })
                    .map_err(|e| c.err(format!("{path}.address"), e))
                    .ok()
            })
        }
        Some(other) => {
            c.err(
                format!("{path}.kind"),
                format!("{other:?} is not \"http\" or \"tcp\""),
            );
            None
        }
    };
    Some(HealthCheck {
        target: target?,
        interval_ms,
        timeout_ms,
        jitter_ms,
        rise,
        fall,
    })
}

/// `http://host[:port][/path]` or `https://...` into (tls, host, port, path).
fn parse_url(url: &str) -> Result<(bool, String, u16, String), String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else {
        return Err(format!("{url:?} is not an http:// or https:// URL"));
    };
    if url.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
        return Err(format!("{url:?} contains spaces or control characters"));
    }
    if url.contains('#') {
        return Err(format!("{url:?} has a fragment (#...), which is never sent"));
    }
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], rest[i..].to_owned()),
        None => (rest, "/".to_owned()),
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path
    };
    if authority.contains('@') {
        return Err(format!("{url:?}: credentials in URLs are not supported"));
    }
    let (host, port) =
        parse_host_port(authority, Some(if tls { 443 } else { 80 })).map_err(|e| format!("{url:?}: {e}"))?;
    Ok((tls, host, port, path))
}

/// `host:port`, `[v6]:port`, or (with a default port) `host` / `[v6]`.
fn parse_host_port(s: &str, default_port: Option<u16>) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{s:?}: unclosed '[' around an IPv6 address"))?;
        if h.parse::<Ipv6Addr>().is_err() {
            return Err(format!("{h:?} is not an IPv6 address"));
        }
        match after.strip_prefix(':') {
            Some(p) => (h, Some(p)),
            None if after.is_empty() => (h, None),
            None => return Err(format!("{s:?}: unexpected text after ']'")),
        }
    } else {
        match s.split_once(':') {
            Some((h, p)) if !p.contains(':') => (h, Some(p)),
            Some(_) => {
                return Err(format!(
                    "{s:?}: write an IPv6 address in brackets ([2001:db8::1]:443)"
                ));
            }
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err(format!("{s:?} has no host"));
    }
    let port = match (port, default_port) {
        (Some(p), _) => match p.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(format!("{p:?} is not a port (1 to 65535)")),
        },
        (None, Some(d)) => d,
        (None, None) => return Err(format!("{s:?} has no port (host:port)")),
    };
    Ok((host.to_owned(), port))
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

fn check_residency(
    c: &mut Checker,
    raw: &indexmap::IndexMap<String, RawResidency>,
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

fn check_zones(c: &mut Checker, raw: &indexmap::IndexMap<String, RawZone>) -> Vec<Zone> {
    let mut out: Vec<Zone> = Vec::new();
    for (origin, z) in raw {
        let path = format!("zones.{}", path_key(origin));
        let Some(origin) = c.domain(&path, origin) else {
            continue;
        };
        if let Some(other) = out
            .iter()
            .find(|o| origin.is_within(&o.origin) || o.origin.is_within(&origin))
        {
            c.err(
                &path,
                format!("overlaps zone {} (nested zones are not supported)", other.origin),
            );
        }
        let ttl = c.int(&format!("{path}.ttl"), z.ttl, DEFAULT_ZONE_TTL, 1..=604_800);

        let mut ns = Vec::new();
        if z.ns.is_empty() {
            c.err(format!("{path}.ns"), "must list at least one name server");
        }
        for (i, n) in z.ns.iter().enumerate() {
            let p = format!("{path}.ns[{i}]");
            if let Some(n) = c.domain(&p, n) {
                if ns.contains(&n) {
                    c.err(p, format!("{n} is listed twice"));
                } else {
                    ns.push(n);
                }
            }
        }

        let soa = match &z.soa {
            None => {
                c.err(format!("{path}.soa"), "is required");
                None
            }
            Some(s) => {
                let sp = format!("{path}.soa");
                let mname = c
                    .required(&format!("{sp}.mname"), s.mname.as_deref())
                    .and_then(|m| c.domain(&format!("{sp}.mname"), m));
                let rname = c
                    .required(&format!("{sp}.rname"), s.rname.as_deref())
                    .and_then(|m| c.domain(&format!("{sp}.rname"), m));
                let refresh = c.int(&format!("{sp}.refresh"), s.refresh, 3600, 1..=u32::MAX);
                let retry = c.int(&format!("{sp}.retry"), s.retry, 600, 1..=u32::MAX);
                let expire = c.int(&format!("{sp}.expire"), s.expire, 604_800, 1..=u32::MAX);
                let minimum = c.int(&format!("{sp}.minimum"), s.minimum, 60, 0..=86_400);
                mname.zip(rname).map(|(mname, rname)| Soa {
                    mname,
                    rname,
                    refresh,
                    retry,
                    expire,
                    minimum,
                })
            }
        };

        let mut records = Vec::new();
        for (i, r) in z.records.iter().enumerate() {
            let rp = format!("{path}.records[{i}]");
            let name = c.required(&format!("{rp}.name"), r.name.as_deref());
            let rtype = c.required(&format!("{rp}.type"), r.rtype.as_deref());
            let data = c.required(&format!("{rp}.data"), r.data.as_deref());
            let rttl = c.int(&format!("{rp}.ttl"), r.ttl, ttl, 0..=604_800);
            let name = name.and_then(|n| match DomainName::resolve(n, &origin) {
                Ok(n) if n.is_within(&origin) => Some(n),
                Ok(n) => {
                    c.err(format!("{rp}.name"), format!("{n} is outside zone {origin}"));
                    None
                }
                Err(e) => {
                    c.err(format!("{rp}.name"), e);
                    None
                }
            });
            let data = match (rtype, data) {
                (Some(t), Some(d)) => RecordData::parse(t, d, &origin)
                    .map_err(|e| c.err(format!("{rp}.data"), e))
                    .ok(),
                _ => None,
            };
            if let (Some(name), Some(data)) = (name, data) {
                if records
                    .iter()
                    .any(|x: &StaticRecord| x.name == name && x.data == data)
                {
                    c.err(
                        &rp,
                        format!("duplicate record {name} {} {data}", data.type_name()),
                    );
                }
                records.push(StaticRecord {
                    name,
                    ttl: rttl,
                    data,
                });
            }
        }
        check_cname_rules(c, &path, &origin, &records);
        check_glue(c, &path, &origin, &ns, &records);

        if let Some(soa) = soa {
            out.push(Zone {
                origin,
                ttl,
                ns,
                soa,
                records,
            });
        }
    }
    out
}

/// RFC 1034: a CNAME owner has no other data, and the apex (which holds SOA and NS) cannot be a CNAME.
fn check_cname_rules(c: &mut Checker, path: &str, origin: &DomainName, records: &[StaticRecord]) {
    let mut by_name: BTreeMap<&DomainName, Vec<&StaticRecord>> = BTreeMap::new();
    for r in records {
        by_name.entry(&r.name).or_default().push(r);
    }
    for (name, rs) in by_name {
        let cnames = rs
            .iter()
            .filter(|r| matches!(r.data, RecordData::Cname(_)))
            .count();
        if cnames == 0 {
            continue;
        }
        if name == origin {
            c.err(
                format!("{path}.records"),
                format!("{name}: a CNAME cannot be at the zone apex"),
            );
        } else if rs.len() > 1 {
            c.err(
                format!("{path}.records"),
                format!("{name}: a CNAME cannot coexist with other records"),
            );
        }
    }
}

/// A name server inside its own zone needs an address record, or nobody can reach it (glue).
fn check_glue(c: &mut Checker, path: &str, origin: &DomainName, ns: &[DomainName], records: &[StaticRecord]) {
    for (i, n) in ns.iter().enumerate() {
        let has_address = records
            .iter()
            .any(|r| &r.name == n && matches!(r.data, RecordData::A(_) | RecordData::Aaaa(_)));
        if n.is_within(origin) && !has_address {
            c.err(
                format!("{path}.ns[{i}]"),
                format!("{n} is inside the zone but has no A or AAAA record (glue)"),
            );
        }
    }
}

fn check_services(
    c: &mut Checker,
    raw: &indexmap::IndexMap<String, RawService>,
    index: &RegionIndex<'_>,
    zones: &[Zone],
    rules: &[ResidencyRule],
) -> Vec<Service> {
    let mut out: Vec<Service> = Vec::new();
    for (name, s) in raw {
        let path = format!("services.{}", path_key(name));
        c.identifier(&path, name);

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
            && let Some(other) = out.iter().find(|o| &o.hostname == h)
        {
            c.err(
                format!("{path}.hostname"),
                format!("{h} is already the hostname of service {:?}", other.name),
            );
        }

        let regions = index.check_list(c, &format!("{path}.regions"), &s.regions);

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
                    &regions,
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
        let policy_is = |n: &str| policy_name == Some(n);
        if s.near_tie_km.is_some() && !policy_is("nearest") {
            c.err(
                format!("{path}.near-tie-km"),
                "only applies to policy \"nearest\"",
            );
        }
        if s.geo.is_some() && !policy_is("geo") {
            c.err(format!("{path}.geo"), "only applies to policy \"geo\"");
        }

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

        let mut residency = Vec::new();
        for (i, r) in s.residency.iter().enumerate() {
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

        let unknown_location = match &s.unknown_location {
            None => regions.clone(),
            Some(list) => {
                let p = format!("{path}.unknown-location");
                if !policy_is("nearest") {
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
        };

        let proxy =
            crate::proxy_settings::check_service_proxy(c, &path, &s.backends, s.proxy.as_ref(), &regions);
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
            });
        }
    }
    out
}

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

/// Steered names are synthesised: a static A, AAAA or CNAME at the same name would contradict them.
fn check_service_record_conflicts(c: &mut Checker, services: &[Service], zones: &[Zone]) {
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
fn check_residency_satisfiable(
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
