//! The configuration model against the shipped example and against files that are wrong in every way we
//! could think of: each must be rejected with the path of the culprit, never repaired.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use meridian_config::{
    CheckTarget, Config, ConfigError, HealthSettings, HttpCheck, Policy, Quorum, StatusMatch, UnknownClients,
    WhenAllDown,
};
use proptest::prelude::*;

const EXAMPLE: &str = include_str!("../../examples/meridian.toml");

/// A small valid file the rejection tests start from.
const BASE: &str = r#"
schema-version = 1

[regions.waw]
name = "Warsaw"
lat = 52.23
lon = 21.01
country = "PL"
jurisdictions = ["eu"]
ipv4 = ["192.0.2.1"]
capacity = 100

[regions.vin]
name = "Vint Hill"
lat = 38.75
lon = -77.67
country = "US"
jurisdictions = ["us"]
ipv6 = ["2001:db8::1"]
capacity = 100

[residency.gdpr]
country-groups = ["EEA"]
jurisdiction = "eu"

[zones."gslb.example"]
ns = ["ns1.other.example."]
[zones."gslb.example".soa]
mname = "ns1.other.example."
rname = "hostmaster.gslb.example."

[services.meet]
hostname = "meet.gslb.example"
policy = "nearest"
regions = ["waw", "vin"]
residency = ["gdpr"]
"#;

fn problems(text: &str) -> Vec<String> {
    match Config::from_toml_str(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(ConfigError::Invalid(p)) => p.iter().map(ToString::to_string).collect(),
        Err(e) => vec![e.to_string()],
    }
}

/// Asserts that `text` is rejected with a problem at `path` whose message contains `fragment`.
#[track_caller]
fn rejects(text: &str, path: &str, fragment: &str) {
    let all = problems(text);
    assert!(
        all.iter()
            .any(|p| p.starts_with(&format!("{path}: ")) && p.contains(fragment)),
        "expected `{path}: ...{fragment}...`, got:\n{}",
        all.join("\n")
    );
}

#[test]
fn example_parses_with_the_deployment_it_describes() {
    let cfg = Config::from_toml_str(EXAMPLE).unwrap();
    let ids: Vec<&str> = cfg.regions().iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["waw", "fra", "lon", "sbg", "gra", "bhs", "vin", "hil"]);
    let eu: Vec<&str> = cfg
        .regions()
        .iter()
        .filter(|r| r.has_jurisdiction("eu"))
        .map(|r| r.id.as_str())
        .collect();
    assert_eq!(eu, ["waw", "fra", "sbg", "gra"], "London is not EU jurisdiction");

    let meet = cfg.service("meet").unwrap();
    assert_eq!(meet.hostname.as_str(), "meet.gslb.example");
    assert!(matches!(meet.policy, Policy::Nearest { .. }));
    assert_eq!(meet.residency, ["gdpr"]);
    assert_eq!(
        cfg.service("meet.gslb.example.").map(|s| s.name.as_str()),
        Some("meet")
    );

    let api = cfg.service("api").unwrap();
    assert_eq!(api.policy, Policy::Nearest { near_tie_km: 400.0 });
    assert_eq!(api.spill_at, 0.8);
    assert_eq!(api.answer_regions, 2);
    assert_ne!(
        cfg.region("fra").unwrap().weight,
        cfg.region("sbg").unwrap().weight,
        "weights differ"
    );

    let files = cfg.service("files").unwrap();
    assert_eq!(files.policy, Policy::Failover);
    assert_eq!(files.regions, ["waw", "fra"]);
    assert_eq!(files.when_all_down, WhenAllDown::Servfail);

    let gdpr = cfg.residency_rule("gdpr").unwrap();
    assert_eq!(gdpr.unknown_clients, UnknownClients::Restrict);
    assert_eq!(
        gdpr.countries.len(),
        37,
        "27 member states, 7 separately coded EU territories, IS, LI, NO"
    );

    let zone = &cfg.zones()[0];
    assert_eq!(zone.origin.as_str(), "gslb.example");
    assert_eq!(zone.records.len(), 7);

    let waw = cfg.region("waw").unwrap();
    assert_eq!(waw.health_checks.len(), 2);
    assert_eq!(
        waw.health_checks[0].target,
        CheckTarget::Http(HttpCheck {
            url: "https://192.0.2.10/healthz".into(),
            tls: true,
            host: "192.0.2.10".into(),
            port: 443,
            path: "/healthz".into(),
            host_header: Some("meet.gslb.example".into()),
            expect_status: StatusMatch::AnyOf(vec![200]),
            body_match: Some("ok".into()),
        })
    );
    assert_eq!(
        waw.health_checks[1].target,
        CheckTarget::Tcp {
            host: "192.0.2.10".into(),
            port: 3478
        }
    );
    for r in cfg.regions() {
        assert!(!r.health_checks.is_empty(), "{} is probed", r.id);
        for hc in &r.health_checks {
            assert_eq!(
                (hc.interval_ms, hc.timeout_ms, hc.jitter_ms, hc.rise, hc.fall),
                (1000, 700, 100, 2, 2)
            );
            assert!(hc.worst_detection_ms() < 3000, "{}: {hc:?}", r.id);
        }
    }
    assert_eq!(*cfg.health(), HealthSettings::default());
}

#[test]
fn defaults_are_applied_and_documented_values_hold() {
    let cfg = Config::from_toml_str(BASE).unwrap();
    let s = cfg.service("meet").unwrap();
    assert_eq!(s.policy, Policy::Nearest { near_tie_km: 50.0 });
    assert_eq!((s.answer_regions, s.max_addresses, s.ttl), (1, 8, 30));
    assert_eq!(s.spill_at, 0.9);
    assert_eq!(s.when_all_down, WhenAllDown::Panic);
    assert_eq!(s.unknown_location, s.regions);
    assert_eq!(cfg.region("waw").unwrap().weight, 100);
    assert_eq!(cfg.zones()[0].ttl, 3600);
    assert!(cfg.region("waw").unwrap().health_checks.is_empty());
    assert_eq!(
        *cfg.health(),
        HealthSettings {
            quorum: Quorum::Majority,
            stale_after_ms: 10_000,
            panic_below_percent: 50
        }
    );

    let checked = Config::from_toml_str(&with_check("kind = \"http\"\nurl = \"http://[::1]:8080\"")).unwrap();
    let hc = &checked.region("waw").unwrap().health_checks[0];
    assert_eq!(
        (hc.interval_ms, hc.timeout_ms, hc.jitter_ms, hc.rise, hc.fall),
        (1000, 700, 100, 2, 2),
        "documented defaults"
    );
    assert_eq!(hc.worst_detection_ms(), 2900, "2 x (1000 + 100) + 700");
    let CheckTarget::Http(h) = &hc.target else {
        panic!("{hc:?}")
    };
    assert_eq!(
        (h.tls, h.host.as_str(), h.port, h.path.as_str()),
        (false, "::1", 8080, "/")
    );
    assert!(h.expect_status.accepts(204) && h.expect_status.accepts(302));
    assert!(!h.expect_status.accepts(404) && !h.expect_status.accepts(503));
}

/// BASE with one health check (the given TOML lines) on region waw.
fn with_check(lines: &str) -> String {
    BASE.replacen(
        "capacity = 100",
        &format!("capacity = 100\n[[regions.waw.health-checks]]\n{lines}"),
        1,
    )
}

#[test]
fn health_checks_are_checked() {
    let http = "kind = \"http\"\nurl = \"http://192.0.2.1/healthz\"";
    let p = "regions.waw.health-checks[0]";
    rejects(
        &with_check(&format!("{http}\ninterval-ms = 1000\ntimeout-ms = 1000")),
        &format!("{p}.timeout-ms"),
        "must be less than interval-ms",
    );
    rejects(
        &with_check(&format!("{http}\ninterval-ms = 50")),
        &format!("{p}.interval-ms"),
        "out of range",
    );
    rejects(
        &with_check(&format!("{http}\nrise = 0")),
        &format!("{p}.rise"),
        "out of range",
    );
    rejects(
        &with_check(&format!("{http}\nfall = 101")),
        &format!("{p}.fall"),
        "out of range",
    );
    rejects(
        &with_check(&format!("{http}\njitter-ms = 1000")),
        &format!("{p}.jitter-ms"),
        "must be less than interval-ms",
    );
    rejects(
        &with_check("url = \"http://a/\""),
        &format!("{p}.kind"),
        "is required",
    );
    rejects(
        &with_check("kind = \"icmp\""),
        &format!("{p}.kind"),
        "\"icmp\" is not",
    );
    rejects(&with_check("kind = \"http\""), &format!("{p}.url"), "is required");
    rejects(
        &with_check("kind = \"http\"\nurl = \"ftp://a/\""),
        &format!("{p}.url"),
        "not an http:// or https:// URL",
    );
    rejects(
        &with_check("kind = \"http\"\nurl = \"http://a:0/\""),
        &format!("{p}.url"),
        "not a port",
    );
    rejects(
        &with_check("kind = \"http\"\nurl = \"http://2001:db8::1/\""),
        &format!("{p}.url"),
        "in brackets",
    );
    rejects(
        &with_check("kind = \"http\"\nurl = \"http://u:pw@a/\""),
        &format!("{p}.url"),
        "credentials",
    );
    rejects(
        &with_check(&format!("{http}\nexpect-status = [200, 200]")),
        &format!("{p}.expect-status[1]"),
        "twice",
    );
    rejects(
        &with_check(&format!("{http}\nexpect-status = [600]")),
        &format!("{p}.expect-status[0]"),
        "not an HTTP status code",
    );
    rejects(
        &with_check(&format!("{http}\nexpect-status = []")),
        &format!("{p}.expect-status"),
        "at least one",
    );
    rejects(
        &with_check(&format!("{http}\nbody-match = \"\"")),
        &format!("{p}.body-match"),
        "must not be empty",
    );
    rejects(
        &with_check(&format!("{http}\nhost = \"a b\"")),
        &format!("{p}.host"),
        "not a host name",
    );
    rejects(
        &with_check(&format!("{http}\naddress = \"a:1\"")),
        &format!("{p}.address"),
        "only applies",
    );
    rejects(
        &with_check("kind = \"tcp\""),
        &format!("{p}.address"),
        "is required",
    );
    rejects(
        &with_check("kind = \"tcp\"\naddress = \"a\""),
        &format!("{p}.address"),
        "no port",
    );
    rejects(
        &with_check("kind = \"tcp\"\naddress = \"a:1\"\nbody-match = \"x\""),
        &format!("{p}.body-match"),
        "only applies to kind = \"http\"",
    );
    let typo = problems(&with_check(&format!("{http}\ntimeout = 5"))).join("\n");
    assert!(typo.contains("unknown field `timeout`"), "{typo}");
    rejects(
        &format!("{BASE}\n[health]\nhealthy-above-percent = 100"),
        "health.healthy-above-percent",
        "out of range",
    );
    rejects(
        &format!("{BASE}\n[health]\npanic-below-percent = 101"),
        "health.panic-below-percent",
        "out of range",
    );
    rejects(
        &format!("{}\n[health]\nstale-after-ms = 1500", with_check(http)),
        "health.stale-after-ms",
        "shorter than two probe intervals of regions.waw.health-checks[0]",
    );
    // Every problem at once, each with its own path.
    let all = problems(&with_check(
        "kind = \"http\"\nurl = \"http://a/\"\nrise = 0\nfall = 0\ntimeout-ms = 5000",
    ));
    assert_eq!(all.len(), 3, "{all:?}");

    let tcp = Config::from_toml_str(&format!(
        "{}\n[health]\nhealthy-above-percent = 18\nstale-after-ms = 5000\npanic-below-percent = 0",
        with_check("kind = \"tcp\"\naddress = \"[2001:db8::1]:443\"")
    ))
    .unwrap();
    assert_eq!(
        tcp.region("waw").unwrap().health_checks[0].target,
        CheckTarget::Tcp {
            host: "2001:db8::1".into(),
            port: 443
        }
    );
    assert_eq!(
        *tcp.health(),
        HealthSettings {
            quorum: Quorum::HealthyAbove { percent: 18 },
            stale_after_ms: 5000,
            panic_below_percent: 0
        }
    );
}

#[test]
fn unknown_region_is_named_with_its_path() {
    rejects(
        &BASE.replace(
            r#"regions = ["waw", "vin"]"#,
            r#"regions = ["waw", "vin", "frx"]"#,
        ),
        "services.meet.regions[2]",
        "unknown region \"frx\" (known: waw, vin)",
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = BASE
        .replace("lat = 52.23", "lat = 95.0")
        .replace(r#"country = "US""#, r#"country = "us""#)
        .replace(r#"policy = "nearest""#, r#"policy = "closest""#);
    let all = problems(&text);
    assert!(all.len() >= 3, "{all:?}");
    assert!(
        all.iter()
            .any(|p| p.starts_with("regions.waw.lat: 95 is not a latitude"))
    );
    assert!(
        all.iter()
            .any(|p| p.starts_with("regions.vin.country:") && p.contains("\"US\"")),
        "{all:?}"
    );
    assert!(
        all.iter()
            .any(|p| p.starts_with("services.meet.policy: unknown policy \"closest\""))
    );
}

#[test]
fn typos_in_field_names_are_syntax_errors_with_a_line() {
    let err = Config::from_toml_str(&BASE.replace(
        "capacity = 100\n\n[regions.vin]",
        "capacty = 100\n\n[regions.vin]",
    ))
    .unwrap_err();
    let ConfigError::Syntax { line, message, .. } = &err else {
        panic!("{err}")
    };
    assert!(message.contains("capacty"), "{message}");
    assert_eq!(*line, Some(11));
    let err = Config::from_toml_str("schema-version = 1\n[regions.waw\n").unwrap_err();
    assert!(matches!(err, ConfigError::Syntax { line: Some(2), .. }), "{err}");
}

#[test]
fn schema_version_is_required_and_checked() {
    rejects(
        &BASE.replace("schema-version = 1", ""),
        "schema-version",
        "is required",
    );
    rejects(
        &BASE.replace("schema-version = 1", "schema-version = 2"),
        "schema-version",
        "not supported",
    );
}

#[test]
fn regions_are_checked() {
    rejects(
        &BASE.replace("lon = 21.01", "lon = -181"),
        "regions.waw.lon",
        "not a longitude",
    );
    rejects(
        &BASE.replace("lon = 21.01", "lon = nan"),
        "regions.waw.lon",
        "not a longitude",
    );
    rejects(
        &BASE.replace("[regions.waw]\nname = \"Warsaw\"", "[regions.waw]"),
        "regions.waw.name",
        "is required",
    );
    rejects(
        &BASE.replace(r#"country = "PL""#, r#"country = "XX""#),
        "regions.waw.country",
        "not an ISO 3166-1",
    );
    rejects(
        &BASE.replace(r#"ipv4 = ["192.0.2.1"]"#, r#"ipv4 = ["192.0.2.1", "192.0.2.1"]"#),
        "regions.waw.ipv4[1]",
        "twice",
    );
    rejects(
        &BASE.replace(r#"ipv4 = ["192.0.2.1"]"#, r#"ipv4 = ["2001:db8::9"]"#),
        "regions.waw.ipv4[0]",
        "not an IPv4",
    );
    rejects(
        &BASE.replace(r#"ipv4 = ["192.0.2.1"]"#, ""),
        "regions.waw",
        "at least one address",
    );
    rejects(
        &BASE.replacen("capacity = 100", "capacity = 0", 1),
        "regions.waw.capacity",
        "out of range",
    );
    rejects(
        &BASE.replacen("capacity = 100", "", 1),
        "regions.waw.capacity",
        "is required",
    );
    rejects(
        &BASE.replacen("capacity = 100", "capacity = 100\nweight = -1", 1),
        "regions.waw.weight",
        "out of range",
    );
    rejects(
        &BASE.replacen("capacity = 100", "capacity = 100\nweight = 10001", 1),
        "regions.waw.weight",
        "out of range",
    );
    rejects(
        &BASE
            .replace("[regions.waw]", "[regions.Waw]")
            .replace("\"waw\"", "\"Waw\""),
        "regions.Waw",
        "lower-case",
    );
    rejects(
        &BASE.replace(r#"jurisdictions = ["eu"]"#, r#"jurisdictions = ["eu", "eu"]"#),
        "regions.waw.jurisdictions[1]",
        "twice",
    );
}

#[test]
fn zones_are_checked() {
    rejects(
        &BASE.replace(r#"ns = ["ns1.other.example."]"#, "ns = []"),
        "zones.\"gslb.example\".ns",
        "at least one",
    );
    rejects(
        &BASE.replace(r#"ns = ["ns1.other.example."]"#, r#"ns = ["ns1.gslb.example."]"#),
        "zones.\"gslb.example\".ns[0]",
        "no A or AAAA record (glue)",
    );
    rejects(
        &BASE.replace(r#"mname = "ns1.other.example.""#, ""),
        "zones.\"gslb.example\".soa.mname",
        "is required",
    );
    let with = |records: &str| format!("{BASE}\n{records}");
    rejects(
        &with("[[zones.\"gslb.example\".records]]\nname = \"x\"\ntype = \"A\"\ndata = \"300.1.1.1\""),
        "zones.\"gslb.example\".records[0].data",
        "not an IPv4 address",
    );
    rejects(
        &with("[[zones.\"gslb.example\".records]]\nname = \"x\"\ntype = \"PTR\"\ndata = \"y\""),
        "zones.\"gslb.example\".records[0].data",
        "unsupported record type",
    );
    rejects(
        &with("[[zones.\"gslb.example\".records]]\nname = \"x.elsewhere.\"\ntype = \"TXT\"\ndata = \"y\""),
        "zones.\"gslb.example\".records[0].name",
        "outside zone",
    );
    rejects(
        &with("[[zones.\"gslb.example\".records]]\nname = \"@\"\ntype = \"CNAME\"\ndata = \"x.other.\""),
        "zones.\"gslb.example\".records",
        "apex",
    );
    rejects(
        &with(
            "[[zones.\"gslb.example\".records]]\nname = \"w\"\ntype = \"CNAME\"\ndata = \"meet\"\n\
             [[zones.\"gslb.example\".records]]\nname = \"w\"\ntype = \"TXT\"\ndata = \"t\"",
        ),
        "zones.\"gslb.example\".records",
        "cannot coexist",
    );
    rejects(
        &with("[[zones.\"gslb.example\".records]]\nname = \"meet\"\ntype = \"A\"\ndata = \"192.0.2.9\""),
        "services.meet.hostname",
        "also has a static A record",
    );
    rejects(
        &with(
            "[zones.\"sub.gslb.example\"]\nns = [\"a.b.\"]\n[zones.\"sub.gslb.example\".soa]\nmname = \"a.b.\"\nrname = \"c.d.\"",
        ),
        "zones.\"sub.gslb.example\"",
        "overlaps zone gslb.example",
    );
}

#[test]
fn services_are_checked() {
    let svc = |from: &str, to: &str| BASE.replace(from, to);
    rejects(
        &svc("meet.gslb.example", "meet.elsewhere.example"),
        "services.meet.hostname",
        "not inside any configured zone",
    );
    rejects(
        &svc(r#"regions = ["waw", "vin"]"#, "regions = []"),
        "services.meet.regions",
        "at least one region",
    );
    rejects(
        &svc(r#"regions = ["waw", "vin"]"#, r#"regions = ["waw", "waw"]"#),
        "services.meet.regions[1]",
        "twice",
    );
    rejects(
        &svc(
            "residency = [\"gdpr\"]",
            "residency = [\"gdpr\"]\nanswer-regions = 3",
        ),
        "services.meet.answer-regions",
        "more than the 2",
    );
    rejects(
        &svc("residency = [\"gdpr\"]", "residency = [\"gdpr\"]\nspill-at = 0"),
        "services.meet.spill-at",
        "utilisation share",
    );
    rejects(
        &svc("residency = [\"gdpr\"]", "residency = [\"gdpr\"]\nspill-at = 1.5"),
        "services.meet.spill-at",
        "utilisation share",
    );
    rejects(
        &svc("residency = [\"gdpr\"]", "residency = [\"gdpr\"]\nttl = 90000"),
        "services.meet.ttl",
        "out of range",
    );
    rejects(
        &svc("residency = [\"gdpr\"]", "residency = [\"gdpr\", \"hipaa\"]"),
        "services.meet.residency[1]",
        "unknown residency rule",
    );
    rejects(
        &svc(
            "residency = [\"gdpr\"]",
            "residency = [\"gdpr\"]\nwhen-all-down = \"fallback\"",
        ),
        "services.meet.fallback-region",
        "is required",
    );
    rejects(
        &svc(
            "residency = [\"gdpr\"]",
            "residency = [\"gdpr\"]\nfallback-region = \"waw\"",
        ),
        "services.meet.fallback-region",
        "only applies",
    );
    rejects(
        &svc(
            "residency = [\"gdpr\"]",
            "residency = [\"gdpr\"]\nwhen-all-down = \"pray\"",
        ),
        "services.meet.when-all-down",
        "not \"panic\"",
    );
    rejects(
        &svc(r#"policy = "nearest""#, "policy = \"failover\"\nnear-tie-km = 10"),
        "services.meet.near-tie-km",
        "only applies",
    );
    rejects(
        &svc(r#"policy = "nearest""#, r#"policy = "geo""#),
        "services.meet.geo",
        "is required",
    );
    rejects(
        &svc(
            "residency = [\"gdpr\"]",
            "residency = [\"gdpr\"]\nunknown-location = [\"lon\"]",
        ),
        "services.meet.unknown-location[0]",
        "unknown region",
    );
    let dup = format!(
        "{BASE}\n[services.other]\nhostname = \"meet.gslb.example\"\npolicy = \"weighted\"\nregions = [\"vin\"]\n"
    );
    rejects(
        &dup,
        "services.other.hostname",
        "already the hostname of service \"meet\"",
    );
}

#[test]
fn geo_maps_are_checked() {
    let geo = |map: &str| {
        BASE.replace(r#"policy = "nearest""#, r#"policy = "geo""#)
            .replace("residency = [\"gdpr\"]", "")
            + map
    };
    let ok = geo(
        "[services.meet.geo]\ndefault = [\"vin\"]\ncountries = { PL = [\"waw\"] }\ncontinents = { NA = [\"vin\", \"waw\"] }\n",
    );
    let cfg = Config::from_toml_str(&ok).unwrap();
    let Policy::Geo(map) = &cfg.service("meet").unwrap().policy else {
        panic!()
    };
    assert_eq!(map.countries.len(), 1);
    assert_eq!(map.continents[0].1, ["vin", "waw"]);
    rejects(
        &geo("[services.meet.geo]\ncountries = { PL = [\"waw\"] }\n"),
        "services.meet.geo.default",
        "is required",
    );
    rejects(
        &geo("[services.meet.geo]\ndefault = [\"vin\"]\ncountries = { QQ = [\"waw\"] }\n"),
        "services.meet.geo.countries.QQ",
        "not an ISO",
    );
    rejects(
        &geo("[services.meet.geo]\ndefault = [\"vin\"]\ncontinents = { EUR = [\"waw\"] }\n"),
        "services.meet.geo.continents.EUR",
        "not a continent",
    );
    rejects(
        &geo("[services.meet.geo]\ndefault = [\"frx\"]\n"),
        "services.meet.geo.default[0]",
        "unknown region",
    );
}

#[test]
fn residency_rules_are_checked_and_must_be_satisfiable() {
    rejects(
        &BASE.replace(r#"country-groups = ["EEA"]"#, r#"country-groups = ["EFTA"]"#),
        "residency.gdpr.country-groups[0]",
        "unknown country group \"EFTA\"",
    );
    rejects(
        &BASE.replace(r#"country-groups = ["EEA"]"#, ""),
        "residency.gdpr",
        "at least one country",
    );
    rejects(
        &BASE.replace(r#"jurisdiction = "eu""#, r#"jurisdiction = "ch""#),
        "residency.gdpr.jurisdiction",
        "no region carries",
    );
    // The service has no EU region at all: EEA clients could never be answered.
    rejects(
        &BASE.replace(r#"regions = ["waw", "vin"]"#, r#"regions = ["vin"]"#),
        "services.meet.regions",
        "no region here satisfies residency rule(s) gdpr for clients in AT",
    );
    // Unknown-location clients are restricted by default, and the unknown-location list has no EU region.
    rejects(
        &BASE.replace(
            "residency = [\"gdpr\"]",
            "residency = [\"gdpr\"]\nunknown-location = [\"vin\"]",
        ),
        "services.meet.unknown-location",
        "unknown location",
    );
    let exempt = BASE
        .replace(
            "residency = [\"gdpr\"]",
            "residency = [\"gdpr\"]\nunknown-location = [\"vin\"]",
        )
        .replace(
            r#"jurisdiction = "eu""#,
            "jurisdiction = \"eu\"\nunknown-clients = \"exempt\"",
        );
    assert!(Config::from_toml_str(&exempt).is_ok());
    // A geo map that sends an EEA country to a non-EU list.
    let geo = BASE.replace(r#"policy = "nearest""#, r#"policy = "geo""#)
        + "[services.meet.geo]\ndefault = [\"waw\"]\ncountries = { DE = [\"vin\"] }\n";
    rejects(&geo, "services.meet.geo.countries.DE", "for clients in DE");
    // User-defined groups work and are expanded.
    let grp = BASE.replace(r#"country-groups = ["EEA"]"#, r#"country-groups = ["dach"]"#)
        + "[country-groups]\ndach = [\"DE\", \"AT\", \"CH\"]\n";
    let cfg = Config::from_toml_str(&grp).unwrap();
    assert_eq!(cfg.residency_rule("gdpr").unwrap().countries.len(), 3);
}

proptest! {
    /// Whatever the input, parsing returns a value or an error; it never panics.
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
        let _ = Config::from_toml_str(&text);
    }

    /// Mangling one line of the example never panics and never yields a config that silently lost a region.
    #[test]
    fn mangled_example_never_panics(line in 0usize..200, junk in "[a-z0-9=\\[\\]\". -]{0,20}") {
        let mut lines: Vec<&str> = EXAMPLE.lines().collect();
        if line < lines.len() {
            lines[line] = &junk;
        }
        if let Ok(cfg) = Config::from_toml_str(&lines.join("\n")) {
            prop_assert!(cfg.regions().len() >= 7);
        }
    }
}

#[test]
fn example_describes_the_proxies() {
    use std::net::SocketAddr;
    let cfg = Config::from_toml_str(EXAMPLE).unwrap();
    let waw = cfg.region("waw").unwrap();
    assert_eq!(waw.proxy_address, Some("192.0.2.10:80".parse().unwrap()));
    let p = cfg.proxy();
    assert_eq!(p.trusted_proxies.len(), 1);
    assert!(p.trusted_proxies[0].contains("10.1.2.3".parse().unwrap()));
    assert!(!p.trusted_proxies[0].contains("11.1.2.3".parse().unwrap()));
    assert_eq!(p.rate_limit_per_client, 1000);
    assert_eq!((p.connect_timeout_ms, p.max_body_bytes), (1000, 10 * 1024 * 1024));
    let api = cfg.service("api").unwrap();
    let fra: Vec<SocketAddr> = ["10.20.0.11:8080", "10.20.0.12:8080", "10.20.0.13:8080"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(api.proxy.backends_in("fra"), fra.as_slice());
    assert!(api.proxy.backends_in("sbg").is_empty());
    assert_eq!(api.proxy.balance, meridian_config::Balance::LeastRequests);
    assert_eq!(api.proxy.checks.path.as_deref(), Some("/healthz"));
    assert_eq!((api.proxy.checks.rise, api.proxy.checks.fall), (2, 3));
    // Services without backends are DNS-only.
    assert!(cfg.service("meet").unwrap().proxy.backends.is_empty());
}

#[test]
fn proxy_settings_are_checked() {
    let with = |extra: &str| format!("{BASE}\n{extra}");
    rejects(
        &with("[proxy]\ntrusted-proxies = [\"10.0.0.1/8\"]"),
        "proxy.trusted-proxies[0]",
        "host bits set",
    );
    rejects(
        &with("[proxy]\ntrusted-proxies = [\"nope\"]"),
        "proxy.trusted-proxies[0]",
        "not an address",
    );
    rejects(
        &with("[proxy]\nconnect-timeout-ms = 0"),
        "proxy.connect-timeout-ms",
        "out of range",
    );
    rejects(
        &with("[proxy]\nmax-header-bytes = 10"),
        "proxy.max-header-bytes",
        "out of range",
    );
    rejects(
        &with("[proxy]\nmax-body-bytes = -1"),
        "proxy.max-body-bytes",
        "out of range",
    );
    rejects(
        &BASE.replace(
            "capacity = 100\n\n[regions.vin]",
            "capacity = 100\nproxy-address = \"example.com:80\"\n\n[regions.vin]",
        ),
        "regions.waw.proxy-address",
        "not IP:PORT",
    );
    rejects(
        &BASE.replace(
            "capacity = 100\n\n[regions.vin]",
            "capacity = 100\nproxy-address = \"0.0.0.0:80\"\n\n[regions.vin]",
        ),
        "regions.waw.proxy-address",
        "unspecified",
    );
    let svc = |extra: &str| format!("{BASE}{extra}");
    rejects(
        &svc("[services.meet.backends]\nlon = [\"10.0.0.1:80\"]\n"),
        "services.meet.backends.lon",
        "not among this service's regions",
    );
    rejects(
        &svc("[services.meet.backends]\nwaw = []\n"),
        "services.meet.backends.waw",
        "at least one",
    );
    rejects(
        &svc("[services.meet.backends]\nwaw = [\"10.0.0.1:80\", \"10.0.0.1:80\"]\n"),
        "services.meet.backends.waw[1]",
        "listed twice",
    );
    rejects(
        &svc("[services.meet.backends]\nwaw = [\"10.0.0.1\"]\n"),
        "services.meet.backends.waw[0]",
        "not IP:PORT",
    );
    rejects(
        &svc("[services.meet.proxy]\nbalance = \"round-robin\"\n"),
        "services.meet.proxy",
        "no backends",
    );
    let b = "[services.meet.backends]\nwaw = [\"10.0.0.1:80\"]\n[services.meet.proxy]\n";
    rejects(
        &svc(&format!("{b}balance = \"fastest\"\n")),
        "services.meet.proxy.balance",
        "is not",
    );
    rejects(
        &svc(&format!("{b}balance = \"consistent-hash\"\n")),
        "services.meet.proxy",
        "needs affinity",
    );
    rejects(
        &svc(&format!(
            "{b}balance = \"consistent-hash\"\naffinity-cookie = \"a\"\naffinity-header = \"b\"\n"
        )),
        "services.meet.proxy",
        "not both",
    );
    rejects(
        &svc(&format!("{b}affinity-cookie = \"sid\"\n")),
        "services.meet.proxy.affinity-cookie",
        "only applies",
    );
    rejects(
        &svc(&format!(
            "{b}balance = \"consistent-hash\"\naffinity-header = \"a b\"\n"
        )),
        "services.meet.proxy.affinity-header",
        "not a header name",
    );
    rejects(
        &svc(&format!("{b}health-path = \"healthz\"\n")),
        "services.meet.proxy.health-path",
        "must start with '/'",
    );
    rejects(
        &svc(&format!("{b}health-interval-ms = 500\nhealth-timeout-ms = 500\n")),
        "services.meet.proxy.health-timeout-ms",
        "shorter than",
    );
    rejects(
        &svc(&format!("{b}health-fall = 0\n")),
        "services.meet.proxy.health-fall",
        "out of range",
    );
    let ok = Config::from_toml_str(&svc(&format!(
        "{b}balance = \"consistent-hash\"\naffinity-header = \"X-User\"\neject-after-failures = 0\n"
    )))
    .unwrap();
    assert_eq!(
        ok.service("meet").unwrap().proxy.balance,
        meridian_config::Balance::ConsistentHash(meridian_config::Affinity::Header("x-user".into()))
    );
}
