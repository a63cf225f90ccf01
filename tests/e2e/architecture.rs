//! The dependency rules of ARCHITECTURE.md, checked against the real dependency graph: the pure crates
//! must not reach I/O back ends, however indirectly.

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
    for io in IO_CRATES {
        assert!(
            !deps.iter().any(|d| d == io),
            "meridian-steer depends on {io}: {deps:?}"
        );
    }
}

#[test]
fn the_model_depends_on_nothing_but_parsing() {
    let deps = normal_dependencies("meridian-config");
    for io in IO_CRATES {
        assert!(
            !deps.iter().any(|d| d == io),
            "meridian-config depends on {io}: {deps:?}"
        );
    }
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
    for forbidden in [
        "hickory-server",
        "hickory-proto",
        "pingora",
        "pingora-core",
        "maxminddb",
        "meridian-dns",
        "meridian-proxy",
    ] {
        assert!(
            !deps.iter().any(|d| d == forbidden),
            "meridian-store depends on {forbidden}: {deps:?}"
        );
    }
    assert!(!normal_dependencies("meridian-steer").contains(&"meridian-store".to_owned()));
}
