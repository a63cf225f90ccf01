//! `meridian explain` against the example deployment, with the bundled GeoIP database and with a city
//! database written for the test.

use std::collections::BTreeMap;

use ipnet::IpNet;
use mmdb_writer::Writer;
use serde_json::Value;

use crate::support::{example, meridian, run, stderr, stdout};

fn explain(service: &str, client: &str, extra: &[&str]) -> Value {
    let config = example();
    let mut args = vec![
        "explain",
        "--config",
        config.to_str().unwrap(),
        service,
        "--client",
        client,
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = run(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)))
}

fn regions(v: &Value) -> Vec<String> {
    v["decision"]["regions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect()
}

fn candidate<'a>(v: &'a Value, id: &str) -> &'a Value {
    v["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["region"] == id)
        .unwrap()
}

#[test]
fn clients_in_four_countries_get_their_nearest_region() {
    // Addresses the bundled DB-IP database places in Poland, Germany, the UK, Canada and the US.
    for (ip, country, region) in [
        ("83.0.0.1", "PL", "waw"),
        ("2a00:1450:4001::1", "DE", "fra"),
        ("81.2.69.160", "GB", "lon"),
        ("24.48.0.1", "CA", "bhs"),
        ("8.8.8.8", "US", "vin"),
    ] {
        let v = explain("meet", ip, &[]);
        assert_eq!(v["client"]["location"]["country"], country, "{ip}");
        assert_eq!(
            v["client"]["location"]["coordinates_source"],
            "country-population-centre"
        );
        assert_eq!(regions(&v), [region], "{ip}");
        assert_eq!(v["decision"]["mode"], "normal");
    }
}

#[test]
fn every_candidate_is_explained() {
    let v = explain("meet", "83.0.0.1", &[]);
    let all = v["candidates"].as_array().unwrap();
    assert_eq!(all.len(), 8);
    assert_eq!(candidate(&v, "waw")["verdict"], "chosen");
    assert_eq!(candidate(&v, "fra")["verdict"], "available");
    assert_eq!(candidate(&v, "lon")["verdict"], "residency");
    assert!(candidate(&v, "lon")["reason"].as_str().unwrap().contains("gdpr"));
    let d = candidate(&v, "fra")["distance_km"].as_f64().unwrap();
    assert!((700.0..850.0).contains(&d), "{d}");
    assert_eq!(
        v["decision"]["ipv4"],
        serde_json::json!(["192.0.2.10", "192.0.2.11"])
    );
    assert_eq!(v["decision"]["ttl"], 30);
}

#[test]
fn what_if_flags_move_the_answer_and_say_why() {
    let v = explain("meet", "83.0.0.1", &["--down", "waw"]);
    assert_eq!(regions(&v), ["fra"]);
    assert_eq!(candidate(&v, "waw")["verdict"], "down");
    let v = explain("meet", "83.0.0.1", &["--drain", "waw"]);
    assert_eq!(candidate(&v, "waw")["verdict"], "drained");
    let v = explain("meet", "83.0.0.1", &["--drill", "waw=down"]);
    assert_eq!(candidate(&v, "waw")["verdict"], "drill: down");
    // Drill modes read as `drill start` reads them: `capacity:PCT%`, any case.
    let v = explain("meet", "83.0.0.1", &["--drill", "waw=Drain"]);
    assert_eq!(candidate(&v, "waw")["verdict"], "drill: drained");
    assert_eq!(regions(&v), ["fra"]);
    let reason = |extra: &[&str]| {
        let v = explain("meet", "83.0.0.1", &[&["--load", "waw=2000"], extra].concat());
        candidate(&v, "waw")["reason"].as_str().unwrap().to_owned()
    };
    assert_eq!(
        reason(&[]),
        "nearest usable",
        "2000 of 4000 is under the spill threshold"
    );
    for mode in ["waw=capacity:25%", "waw=capacity=25"] {
        assert_eq!(
            reason(&["--drill", mode]),
            "nearest usable (itself over its spill threshold)",
            "{mode}: a quarter of 4000 is 1000"
        );
    }
    let v = explain("meet", "83.0.0.1", &["--weight", "waw=0"]);
    assert_eq!(candidate(&v, "waw")["verdict"], "weight 0");
    // Every EU region down: panic mode among EU regions, never London or North America.
    let v = explain(
        "meet",
        "83.0.0.1",
        &["--down", "waw", "--down", "fra", "--down", "sbg", "--down", "gra"],
    );
    assert_eq!(v["decision"]["mode"], "panic");
    assert_eq!(regions(&v), ["waw"]);
    // files: both down -> SERVFAIL.
    let v = explain("files", "83.0.0.1", &["--down", "waw", "--down", "fra"]);
    assert_eq!(v["decision"]["mode"], "no-answer");
    assert!(regions(&v).is_empty());
}

#[test]
fn overload_spills_some_clients_and_says_so() {
    // Warsaw at 9000/4000 in flight: 1 - 0.9/2.25 = 60% of its clients move. Find one that moved.
    let moved = (0..40u64)
        .map(|h| {
            explain(
                "meet",
                "83.0.0.1",
                &["--load", "waw=9000", "--hash", &h.to_string()],
            )
        })
        .find(|v| regions(v) != ["waw"])
        .expect("some client moves");
    assert_eq!(regions(&moved), ["fra"]);
    assert_eq!(candidate(&moved, "waw")["verdict"], "over capacity");
    assert!(
        candidate(&moved, "waw")["reason"]
            .as_str()
            .unwrap()
            .contains("60% of its clients move")
    );
}

#[test]
fn unknown_locations_use_the_service_default_and_residency_fails_closed() {
    let v = explain("meet", "10.1.2.3", &[]);
    assert_eq!(v["client"]["location"]["known"], false);
    assert_eq!(v["client"]["location"]["reason"], "non-routable");
    assert_eq!(regions(&v), ["fra"]);
    assert_eq!(candidate(&v, "vin")["verdict"], "residency");
}

#[test]
fn a_city_database_gives_real_coordinates() {
    #[derive(serde::Serialize)]
    struct City {
        country: BTreeMap<&'static str, &'static str>,
        location: BTreeMap<&'static str, f64>,
    }
    // Vancouver: nearer Hillsboro than Beauharnois, which the country's population centre would pick.
    let mut w = Writer::new("GeoIP2-City");
    let rec = City {
        country: [("iso_code", "CA")].into(),
        location: [("latitude", 49.28), ("longitude", -123.12)].into(),
    };
    w.insert("24.80.0.0/16".parse::<IpNet>().unwrap(), &rec).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("city.mmdb");
    std::fs::write(&db, w.to_bytes().unwrap()).unwrap();
    let v = explain("api", "24.80.1.1", &["--geoip", db.to_str().unwrap()]);
    assert_eq!(v["client"]["location"]["coordinates_source"], "database");
    assert_eq!(v["client"]["network"], "24.80.0.0/16");
    assert_eq!(regions(&v)[0], "hil");
    // The same address with the bundled country database: Canada's population centre, near Beauharnois.
    assert_eq!(regions(&explain("api", "24.80.1.1", &[]))[0], "bhs");
}

#[test]
fn the_table_is_readable() {
    let out = meridian()
        .args([
            "explain",
            "--config",
            example().to_str().unwrap(),
            "meet.gslb.example",
            "--client",
            "83.0.0.1",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(text.contains("located    PL (Poland), Europe"), "{text}");
    assert!(text.contains("decision   waw (normal)"), "{text}");
    assert!(
        text.contains("answer     A 192.0.2.10, 192.0.2.11; AAAA 2001:db8:10::10"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("lon") && l.contains("skipped: residency")),
        "{text}"
    );
}

/// Runs `meridian explain` on the example with `args` and asserts the exit code and a stderr fragment.
#[track_caller]
fn refused(args: &[&str], code: i32, fragment: &str) {
    let config = example();
    let mut all = vec!["explain", "--config", config.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = run(&all);
    assert_eq!(out.status.code(), Some(code), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(fragment),
        "expected {fragment:?} in: {}",
        stderr(&out)
    );
}

#[test]
fn bad_arguments_are_named() {
    let client = ["meet", "--client", "1.2.3.4"];
    let with = |extra: &[&'static str]| [&client[..], extra].concat();
    refused(
        &["nope", "--client", "1.2.3.4"],
        1,
        "unknown service \"nope\" (known: meet",
    );
    refused(&with(&["--down", "xyz"]), 1, "--down: unknown region \"xyz\"");
    refused(&with(&["--load", "waw"]), 1, "expected REGION=VALUE");
    refused(
        &with(&["--drill", "waw=sideways"]),
        1,
        "--drill \"waw=sideways\": drill mode \"sideways\": expected down, drain or capacity=PCT",
    );
    refused(&with(&["--geoip", "/nonexistent.mmdb"]), 1, "/nonexistent.mmdb");
    refused(&["meet", "--client", "not-an-ip"], 2, "invalid value 'not-an-ip'");
}
