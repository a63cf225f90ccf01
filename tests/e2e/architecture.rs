//! The dependency rules of ARCHITECTURE.md, checked against the real dependency graph: the pure crates
//! (config, steer, health) must not reach I/O back ends, however indirectly; probing stays out of the store;
//! the admin API reaches neither DNS nor the proxy.

use std::process::Command;

/// Every crate `package` depends on for normal (non-dev, non-build) use, transitively.
fn normal_dependencies(package: &str) -> Vec<String> {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "-p",
            package,
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Fails, naming it, if `package`'s dependencies `deps` include any of `forbidden`.
fn assert_none_of<'a>(package: &str, deps: &[String], forbidden: impl IntoIterator<Item = &'a str>) {
    for f in forbidden {
        assert!(!deps.iter().any(|d| d == f), "{package} depends on {f}: {deps:?}");
    }
}

const IO_CRATES: &[&str] = &[
    "tokio",
    "etcd-client",
    "hickory-server",
    "hickory-proto",
    "pingora",
    "pingora-core",
    "maxminddb",
    "hyper",
    "mio",
];

#[test]
fn steering_is_pure() {
    let deps = normal_dependencies("meridian-steer");
    assert!(deps.contains(&"meridian-config".to_owned()), "{deps:?}");
    assert_none_of("meridian-steer", &deps, IO_CRATES.iter().copied());
}

#[test]
fn the_model_depends_on_nothing_but_parsing() {
    let deps = normal_dependencies("meridian-config");
    assert_none_of("meridian-config", &deps, IO_CRATES.iter().copied());
    assert!(
        !deps
            .iter()
            .any(|d| d.starts_with("meridian-") && d != "meridian-config"),
        "{deps:?}"
    );
}

#[test]
fn geoip_does_not_depend_on_steering() {
    let deps = normal_dependencies("meridian-geoip");
    assert!(!deps.contains(&"meridian-steer".to_owned()), "{deps:?}");
}

#[test]
fn the_store_owns_no_serving_code_and_steering_knows_no_store() {
    let deps = normal_dependencies("meridian-store");
    assert_none_of(
        "meridian-store",
        &deps,
        [
            "hickory-server",
            "hickory-proto",
            "pingora",
            "pingora-core",
            "maxminddb",
            "meridian-dns",
            "meridian-proxy",
        ],
    );
    assert!(!normal_dependencies("meridian-steer").contains(&"meridian-store".to_owned()));
}

#[test]
fn health_logic_is_pure() {
    let deps = normal_dependencies("meridian-health");
    assert!(deps.contains(&"meridian-config".to_owned()), "{deps:?}");
    assert_none_of(
        "meridian-health",
        &deps,
        IO_CRATES
            .iter()
            .copied()
            .chain(["meridian-steer", "meridian-store", "meridian-probe", "rustls"]),
    );
}

#[test]
fn probing_stays_out_of_the_store_and_away_from_serving_code() {
    let store = normal_dependencies("meridian-store");
    // (rustls is there already, for etcd over TLS; the web PKI roots are only for probing HTTPS.)
    assert_none_of("meridian-store", &store, ["meridian-probe", "webpki-roots"]);
    assert!(
        store.contains(&"meridian-health".to_owned()),
        "the store aggregates with the pure logic"
    );
    let probe = normal_dependencies("meridian-probe");
    assert_none_of(
        "meridian-probe",
        &probe,
        [
            "meridian-dns",
            "meridian-proxy",
            "hickory-server",
            "hickory-proto",
            "pingora",
            "pingora-core",
            "maxminddb",
            "openssl",
            "openssl-sys",
        ],
    );
}

#[test]
fn the_admin_api_works_whatever_a_node_runs() {
    let admin = normal_dependencies("meridian-admin");
    assert!(admin.contains(&"meridian-store".to_owned()), "{admin:?}");
    assert_none_of(
        "meridian-admin",
        &admin,
        [
            "meridian-dns",
            "meridian-proxy",
            "meridian-probe",
            "hickory-server",
            "hickory-proto",
            "pingora",
            "pingora-core",
            "openssl",
            "openssl-sys",
        ],
    );
}

#[test]
fn the_proxy_knows_no_dns_nor_probing_and_uses_no_openssl() {
    let deps = normal_dependencies("meridian-proxy");
    assert!(deps.contains(&"pingora-proxy".to_owned()), "{deps:?}");
    assert!(
        deps.contains(&"meridian-steer".to_owned()),
        "spillover asks the one steering function"
    );
    assert_none_of(
        "meridian-proxy",
        &deps,
        [
            "meridian-dns",
            "meridian-probe",
            "hickory-server",
            "hickory-proto",
            "openssl",
            "openssl-sys",
            "boring",
            "boring-sys",
        ],
    );
}

#[test]
fn tls_material_is_rustls_only_and_knows_no_server() {
    let deps = normal_dependencies("meridian-tls");
    assert!(deps.contains(&"rustls".to_owned()), "{deps:?}");
    assert_none_of(
        "meridian-tls",
        &deps,
        [
            "meridian-proxy",
            "meridian-dns",
            "meridian-store",
            "meridian-probe",
            "pingora-core",
            "hickory-proto",
            "tokio",
            "openssl",
            "openssl-sys",
            "boring",
            "aws-lc-rs",
            "aws-lc-sys",
        ],
    );
}

#[test]
fn acme_knows_no_server_and_uses_ring_only() {
    let deps = normal_dependencies("meridian-acme");
    assert!(deps.contains(&"instant-acme".to_owned()), "{deps:?}");
    assert_none_of(
        "meridian-acme",
        &deps,
        [
            "meridian-proxy",
            "meridian-dns",
            "meridian-probe",
            "pingora-core",
            "hickory-proto",
            "openssl",
            "openssl-sys",
            "boring",
            "aws-lc-rs",
            "aws-lc-sys",
        ],
    );
}

/// The one crate allowed unsafe code holds the allocator and nothing of Meridian: no other crate's code
/// can hide behind its exception to the workspace's `forbid(unsafe_code)`.
#[test]
fn alloc_depends_on_no_other_meridian_crate() {
    let deps = normal_dependencies("meridian-alloc");
    assert!(deps.contains(&"mimalloc".to_owned()), "{deps:?}");
    let ours: Vec<&String> = deps.iter().filter(|d| d.starts_with("meridian")).collect();
    assert_eq!(ours, [&"meridian-alloc".to_owned()], "{deps:?}");
}
