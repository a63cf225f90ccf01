//! Locating addresses in small databases written with `mmdb-writer` (both schemas), and in the bundled one.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use meridian_config::{Continent, CountryCode};
use meridian_geoip::{CoordinatesSource, GeoDb, UnknownReason};
use mmdb_writer::Writer;
use serde::Serialize;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

#[derive(Serialize)]
struct IsoCode {
    iso_code: &'static str,
    names: BTreeMap<&'static str, &'static str>,
}

#[derive(Serialize)]
struct Code {
    code: &'static str,
}

#[derive(Serialize)]
struct Location {
    latitude: f64,
    longitude: f64,
    time_zone: &'static str,
}

#[derive(Serialize)]
struct GeoIp2City {
    country: IsoCode,
    continent: Code,
    location: Location,
}

#[derive(Serialize)]
struct GeoIp2Country {
    country: IsoCode,
    continent: Code,
}

#[derive(Serialize)]
struct DbIpCountry {
    country_code: &'static str,
}

#[derive(Serialize)]
struct DbIpCity {
    country_code: &'static str,
    city: &'static str,
    latitude: f64,
    longitude: f64,
}

fn iso(code: &'static str, name: &'static str) -> IsoCode {
    IsoCode {
        iso_code: code,
        names: [("en", name), ("de", name)].into(),
    }
}

#[test]
fn geoip2_city_schema_gives_database_coordinates_and_network() {
    let mut w = Writer::new("GeoIP2-City");
    let krakow = GeoIp2City {
        country: iso("PL", "Poland"),
        continent: Code { code: "EU" },
        location: Location {
            latitude: 50.06,
            longitude: 19.94,
            time_zone: "Europe/Warsaw",
        },
    };
    w.insert(net("83.0.0.0/15"), &krakow).unwrap();
    let db = GeoDb::from_vec(w.to_bytes().unwrap(), "test").unwrap();

    let got = db.locate(ip("83.1.2.3"));
    assert_eq!(got.prefix_len, 15);
    let loc = got.location.unwrap();
    assert_eq!(loc.country, CountryCode::parse("PL"));
    assert_eq!(loc.continent, Some(Continent::Europe));
    let (c, src) = loc.coordinates.unwrap();
    assert_eq!(src, CoordinatesSource::Database);
    assert!((c.lat - 50.06).abs() < 1e-9 && (c.lon - 19.94).abs() < 1e-9);
}

#[test]
fn country_only_databases_fall_back_to_population_centre() {
    let mut w = Writer::new("GeoIP2-Country");
    w.insert(
        net("24.48.0.0/14"),
        &GeoIp2Country {
            country: iso("CA", "Canada"),
            continent: Code { code: "NA" },
        },
    )
    .unwrap();
    let db = GeoDb::from_vec(w.to_bytes().unwrap(), "test").unwrap();
    let loc = db.locate(ip("24.48.1.1")).location.unwrap();
    let (c, src) = loc.coordinates.unwrap();
    assert_eq!(src, CoordinatesSource::CountryCentre);
    assert_eq!(
        Some(c),
        CountryCode::parse("CA").unwrap().info().population_centre
    );
}

#[test]
fn dbip_lite_schemas_are_read_too() {
    let mut w = Writer::new("dbip-country");
    w.insert(net("217.0.0.0/13"), &DbIpCountry { country_code: "DE" })
        .unwrap();
    w.insert(net("2a00:1450::/32"), &DbIpCountry { country_code: "de" })
        .unwrap();
    let db = GeoDb::from_vec(w.to_bytes().unwrap(), "test").unwrap();
    let got = db.locate(ip("217.1.2.3"));
    assert_eq!(got.prefix_len, 13);
    let loc = got.location.unwrap();
    assert_eq!(loc.country, CountryCode::parse("DE"));
    assert_eq!(
        loc.continent,
        Some(Continent::Europe),
        "continent derived from the country"
    );
    assert_eq!(loc.coordinates.unwrap().1, CoordinatesSource::CountryCentre);
    let v6 = db.locate(ip("2a00:1450:4001::1"));
    assert_eq!(
        v6.location.unwrap().country,
        CountryCode::parse("DE"),
        "lower-case codes accepted from data"
    );
    assert_eq!(v6.prefix_len, 32);

    let mut w = Writer::new("dbip-city");
    w.insert(
        net("24.48.0.0/16"),
        &DbIpCity {
            country_code: "CA",
            city: "Montreal",
            latitude: 45.5,
            longitude: -73.57,
        },
    )
    .unwrap();
    let db = GeoDb::from_vec(w.to_bytes().unwrap(), "test").unwrap();
    let (c, src) = db.locate(ip("24.48.0.9")).location.unwrap().coordinates.unwrap();
    assert_eq!(src, CoordinatesSource::Database);
    assert!((c.lat - 45.5).abs() < 1e-9);
}

#[test]
fn unknown_and_private_addresses() {
    let mut w = Writer::new("dbip-country");
    w.insert(net("83.0.0.0/8"), &DbIpCountry { country_code: "PL" })
        .unwrap();
    // A record whose country code is not a country: no usable location.
    w.insert(net("84.0.0.0/8"), &DbIpCountry { country_code: "ZZ" })
        .unwrap();
    let db = GeoDb::from_vec(w.to_bytes().unwrap(), "test").unwrap();
    assert_eq!(
        db.locate(ip("9.9.9.9")).location,
        Err(UnknownReason::NotInDatabase)
    );
    assert_eq!(
        db.locate(ip("84.1.1.1")).location,
        Err(UnknownReason::NotInDatabase)
    );
    let private = db.locate(ip("10.1.2.3"));
    assert_eq!(private.location, Err(UnknownReason::NonRoutable));
    assert_eq!(private.prefix_len, 8);
    assert_eq!(db.locate(ip("::1")).location, Err(UnknownReason::NonRoutable));
    // IPv4-mapped IPv6 is looked up as IPv4.
    assert_eq!(
        db.locate(ip("::ffff:83.1.1.1")).location.unwrap().country,
        CountryCode::parse("PL")
    );
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    assert!(GeoDb::from_vec(b"not a database".to_vec(), "junk").is_err());
    assert!(GeoDb::from_vec(Vec::new(), "empty").is_err());
    let err = GeoDb::open(std::path::Path::new("/nonexistent/x.mmdb")).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/x.mmdb"), "{err}");
}

/// The bundled DB-IP Lite database places well-known networks where they are (as of its June 2026 build).
#[test]
fn bundled_database_locates_real_networks() {
    let db = GeoDb::bundled().unwrap();
    let country = |s: &str| {
        db.locate(ip(s))
            .location
            .ok()
            .and_then(|l| l.country)
            .map(|c| c.to_string())
    };
    assert_eq!(country("83.0.0.1").as_deref(), Some("PL"));
    assert_eq!(country("81.2.69.160").as_deref(), Some("GB"));
    assert_eq!(country("24.48.0.1").as_deref(), Some("CA"));
    assert_eq!(country("8.8.8.8").as_deref(), Some("US"));
    assert_eq!(country("2a00:1450:4001::1").as_deref(), Some("DE"));
    let got = db.locate(ip("83.0.0.1"));
    assert!(got.prefix_len >= 8 && got.prefix_len <= 24, "{}", got.prefix_len);
    assert!(db.description().contains("DB-IP"));
}

/// The IPv6 index against the database tree, on the bundled database: as for IPv4 below, over the
/// routable IPv6 space, the IPv4-mapped space and the prefixes databases alias to IPv4 (6to4, Teredo).
mod ipv6_index {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv6Addr;
    use std::sync::OnceLock;

    fn bundled() -> &'static GeoDb {
        static DB: OnceLock<GeoDb> = OnceLock::new();
        DB.get_or_init(|| GeoDb::bundled().unwrap())
    }

    /// Addresses where the data is: global unicast (2000::/3), 6to4, Teredo, IPv4-compatible, anywhere.
    fn address() -> impl Strategy<Value = u128> {
        prop_oneof![
            4 => any::<u128>().prop_map(|a| (a >> 3) | (1u128 << 125)),
            1 => any::<u128>().prop_map(|a| (0x2002u128 << 112) | (a >> 16)),
            1 => any::<u128>().prop_map(|a| (0x2001_0000u128 << 96) | (a >> 32)),
            1 => any::<u32>().prop_map(u128::from),
            1 => any::<u128>(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]
        #[test]
        fn index_agrees_with_the_tree(a in address(), probes in prop::collection::vec(any::<u128>(), 8)) {
            let db = bundled();
            let addr = IpAddr::V6(Ipv6Addr::from(a));
            let fast = db.locate(addr);
            let tree = db.locate_in_tree(addr);
            prop_assert_eq!(fast.location, tree.location, "{}", addr);
            // (Not for unknown answers: the tree's empty network may span a non-routable block, which
            // the index keeps apart.)
            prop_assert!(fast.location.is_err() || fast.prefix_len <= tree.prefix_len, "{}: index /{} narrower than the tree's /{}", addr, fast.prefix_len, tree.prefix_len);
            let mask = u128::MAX.checked_shl(128 - u32::from(fast.prefix_len)).unwrap_or(0);
            let base = a & mask;
            let mut inside: Vec<u128> = probes.iter().map(|p| base | (p & !mask)).collect();
            inside.extend([base, base | !mask]);
            for p in inside {
                let other = IpAddr::V6(Ipv6Addr::from(p));
                prop_assert_eq!(db.locate_in_tree(other).location, tree.location, "{} within /{} of {}", other, fast.prefix_len, addr);
            }
        }
    }

    /// A database opened from a file keeps no tree, and answers as the same database with its tree.
    #[test]
    fn a_file_database_drops_its_tree_and_answers_the_same() {
        let dir = std::env::temp_dir().join(format!("meridian-geoip-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("country.mmdb");
        std::fs::write(&path, include_bytes!("../../data/dbip-country-lite.mmdb")).unwrap();
        let file = GeoDb::open(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(!file.keeps_tree(), "the indexes answer everything");
        assert!(bundled().keeps_tree());
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        for _ in 0..20_000 {
            let a = proptest::strategy::ValueTree::current(&address().new_tree(&mut runner).unwrap());
            for addr in [IpAddr::V6(Ipv6Addr::from(a)), IpAddr::V4((a as u32).into())] {
                assert_eq!(file.locate(addr), bundled().locate(addr), "{addr}");
                assert_eq!(
                    file.locate_id(addr).map(|(_, p)| p),
                    bundled().locate_id(addr).map(|(_, p)| p)
                );
            }
        }
    }
}

/// The IPv4 index against the database tree, on the bundled database: the same location for every
/// address, a prefix at least as wide as the tree's network, and every address inside that prefix
/// located the same by the tree (so an ECS scope of that width is honest).
mod ipv4_index {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;
    use std::sync::OnceLock;

    fn bundled() -> &'static GeoDb {
        static DB: OnceLock<GeoDb> = OnceLock::new();
        DB.get_or_init(|| GeoDb::bundled().unwrap())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]
        #[test]
        fn index_agrees_with_the_tree(a in any::<u32>(), probes in prop::collection::vec(any::<u32>(), 8)) {
            let db = bundled();
            let addr = IpAddr::V4(Ipv4Addr::from(a));
            let fast = db.locate(addr);
            let tree = db.locate_in_tree(addr);
            prop_assert_eq!(fast.location, tree.location, "{}", addr);
            prop_assert!(fast.prefix_len <= tree.prefix_len, "{}: index /{} narrower than the tree's /{}", addr, fast.prefix_len, tree.prefix_len);
            // Addresses inside the index's prefix, including its two ends, are located the same.
            let mask = u32::MAX.checked_shl(32 - u32::from(fast.prefix_len)).unwrap_or(0);
            let base = a & mask;
            let mut inside: Vec<u32> = probes.iter().map(|p| base | (p & !mask)).collect();
            inside.extend([base, base | !mask]);
            for p in inside {
                let other = IpAddr::V4(Ipv4Addr::from(p));
                prop_assert_eq!(db.locate_in_tree(other).location, tree.location, "{} within /{} of {}", other, fast.prefix_len, addr);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
        /// Location ids name location values: within the id range, 0 exactly for unknown locations, and
        /// standing for the location `locate` finds, with its prefix (callers key derived answers by them).
        #[test]
        fn location_ids_name_location_values(addrs in prop::collection::vec(any::<u32>(), 64)) {
            let db = bundled();
            // Warming (a hint, reading ahead) takes any address, IPv4-mapped and IPv6 included.
            let mut clients: Vec<IpAddr> = addrs.iter().map(|&a| IpAddr::V4(Ipv4Addr::from(a))).collect();
            clients.extend(addrs.iter().map(|&a| IpAddr::V6(Ipv4Addr::from(a).to_ipv6_mapped())));
            clients.push(ip("2a00:1450:4001::1"));
            db.warm(&clients);
            for a in addrs {
                let addr = IpAddr::V4(Ipv4Addr::from(a));
                let located = db.locate(addr);
                let (id, prefix_len) = db.locate_id(addr).expect("IPv4 addresses get an id");
                prop_assert_eq!(prefix_len, located.prefix_len);
                prop_assert_eq!(db.location(id), located.location.ok());
                prop_assert!(id.index() < db.location_ids(), "{}: id {:?} of {}", addr, id, db.location_ids());
                prop_assert_eq!(id == meridian_geoip::LocationId::UNKNOWN, located.location.is_err(), "{}", addr);
            }
        }
    }

    #[test]
    fn ipv6_lookups_have_ids_and_instances_differ() {
        let db = bundled();
        let unknown = meridian_geoip::LocationId::UNKNOWN;
        let (id, prefix_len) = db.locate_id(ip("2a00:1450:4001::1")).expect("indexed");
        assert_eq!(db.location(id), db.locate(ip("2a00:1450:4001::1")).location.ok());
        assert_eq!(prefix_len, db.locate(ip("2a00:1450:4001::1")).prefix_len);
        assert!(db.ipv6_ranges() > 1000, "{} IPv6 ranges", db.ipv6_ranges());
        assert_eq!(db.locate_id(ip("::1")), Some((unknown, 128)));
        assert_eq!(db.locate_id(ip("10.0.0.1")), Some((unknown, 8)));
        assert_eq!(db.location(unknown), None);
        let other = GeoDb::bundled().unwrap();
        assert_ne!(db.instance(), other.instance());
        assert!(
            db.location_ids() > 200,
            "{} location values in the bundled country database",
            db.location_ids()
        );
    }

    #[test]
    fn adjacent_networks_with_the_same_place_merge_and_holes_stay() {
        let mut w = Writer::new("dbip-country");
        // Two adjacent /16s in Germany merge into one /15; a French /16 after them does not.
        w.insert(net("80.0.0.0/16"), &DbIpCountry { country_code: "DE" })
            .unwrap();
        // (Written in lower case: a different record, so the writer cannot merge them itself.)
        w.insert(net("80.1.0.0/16"), &DbIpCountry { country_code: "de" })
            .unwrap();
        w.insert(net("80.2.0.0/16"), &DbIpCountry { country_code: "FR" })
            .unwrap();
        // A database that (wrongly) places private space somewhere: the hole wins.
        w.insert(net("10.0.0.0/8"), &DbIpCountry { country_code: "DE" })
            .unwrap();
        w.insert(net("11.0.0.0/8"), &DbIpCountry { country_code: "DE" })
            .unwrap();
        let db = GeoDb::from_vec(w.to_bytes().unwrap(), "test").unwrap();
        let de = db.locate(ip("80.1.2.3"));
        assert_eq!(de.prefix_len, 15, "80.0.0.0/15 is all Germany");
        assert_eq!(db.locate_in_tree(ip("80.1.2.3")).prefix_len, 16);
        let fr = db.locate(ip("80.2.0.1"));
        assert_eq!(fr.location.unwrap().country, CountryCode::parse("FR"));
        assert_eq!(fr.prefix_len, 16);
        let private = db.locate(ip("10.1.1.1"));
        assert_eq!(private.location, Err(UnknownReason::NonRoutable));
        let eleven = db.locate(ip("11.1.1.1"));
        assert_eq!(
            eleven.prefix_len, 8,
            "10/8 is a hole, so 11/8 does not merge with it"
        );
        let gap = db.locate(ip("81.0.0.1"));
        assert_eq!(gap.location, Err(UnknownReason::NotInDatabase));
        assert!(db.ipv4_ranges() >= 6);
    }
}
