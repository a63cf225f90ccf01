//! The multi-region lab (`scripts/lab`, docs/deployment.md): five regions in network namespaces with WAN
//! delay, a three-member global etcd cluster across three of them and a health cluster per zone, a DNS
//! node, a proxy and a prober in each, and a packet-level delay line for latency steering. Every scenario
//! must hold; the lab prints its figures (bench/RESULTS.md records a run). Needs root, as CI is.
//! A second lab on the machine (another checkout's test run) waits for this one: `scripts/lab` holds a lock.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

#[test]
fn every_lab_scenario_holds() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("lab.json");
    let out = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/lab"))
        .args(["run", "--meridian", env!("CARGO_BIN_EXE_meridian"), "--json"])
        .arg(&report)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    eprintln!("{log}");
    let doc: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&report).unwrap_or_else(|e| panic!("no lab report ({e}):\n{log}")),
    )
    .unwrap();
    let scenarios = doc["scenarios"].as_array().unwrap();
    assert_eq!(scenarios.len(), 8, "{doc}");
    let failed: Vec<String> = scenarios
        .iter()
        .filter(|s| s["ok"] != true)
        .map(|s| format!("{}: {}", s["name"], s["failures"]))
        .collect();
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    assert!(out.status.success(), "{log}");
    // Residency held under every load the lab generated.
    for s in scenarios {
        if let Some(v) = s["figures"]["dns"]["residency_violations"].as_u64() {
            assert_eq!(v, 0, "{}", s["name"]);
        }
    }
    // The namespaces are gone.
    let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&ns.stdout).contains("ml-"),
        "the lab left namespaces behind"
    );
}
