//! The latency matrix as operators see it (`docs/latency.md`): client area × region, the estimate, its
//! samples and age, from the node's snapshot — in the status document (`latency`) and as the compact
//! table `meridian status` prints.

use std::fmt::Write;

use meridian_store::Snapshot;
use serde_json::{Value, json};

/// Areas the text table shows at most (the most-sampled first); the JSON has every area.
pub const TEXT_AREAS: usize = 20;

/// The status document's `latency`: the regions (column order) and one row per area, most samples first.
pub(crate) fn matrix(snapshot: &Snapshot, now_ms: u64) -> Value {
    let topology = &snapshot.topology;
    let regions: Vec<&str> = topology.region_indices().map(|r| topology.region_id(r)).collect();
    let mut rows: Vec<(u64, Value)> = snapshot
        .states
        .latency()
        .rows()
        .map(|(area, cells)| {
            let total: u64 = cells.iter().map(|m| u64::from(m.samples)).sum();
            let cells: Vec<Option<Value>> = cells
                .iter()
                .map(|m| {
                    (m.samples > 0).then(|| {
                        json!({
                            "rtt_ms": (f64::from(m.rtt_ms) * 10.0).round() / 10.0,
                            "samples": m.samples,
                            "age_ms": now_ms.saturating_sub(m.updated_at_ms),
                        })
                    })
                })
                .collect();
            (total, json!({ "area": area.to_string(), "cells": cells }))
        })
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.0));
    let steering: Vec<&str> = topology
        .config()
        .services()
        .iter()
        .filter(|s| s.latency.is_some())
        .map(|s| s.name.as_str())
        .collect();
    json!({
        "services": steering,
        "regions": regions,
        "areas": rows.into_iter().map(|r| r.1).collect::<Vec<_>>(),
    })
}

/// The compact table: `rtt/samples` per cell, `-` where nothing is measured; empty when no service
/// steers by latency and nothing is measured.
pub fn matrix_text(latency: &Value) -> String {
    let mut out = String::new();
    let areas = latency["areas"].as_array().map_or(&[][..], Vec::as_slice);
    let services = latency["services"].as_array().map_or(&[][..], Vec::as_slice);
    if areas.is_empty() && services.is_empty() {
        return out;
    }
    let regions: Vec<&str> = latency["regions"]
        .as_array()
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .map(|r| r.as_str().unwrap_or("?"))
        .collect();
    let names: Vec<&str> = services.iter().filter_map(Value::as_str).collect();
    let _ = writeln!(
        out,
        "\nlatency (TCP round trip ms/samples, client area x region; steering: {}):",
        if names.is_empty() {
            "no service".to_owned()
        } else {
            names.join(", ")
        }
    );
    if areas.is_empty() {
        let _ = writeln!(out, "  nothing measured yet");
        return out;
    }
    let _ = write!(out, "  {:<11}", "area");
    for r in &regions {
        let _ = write!(out, " {r:>11}");
    }
    let _ = writeln!(out);
    for row in areas.iter().take(TEXT_AREAS) {
        let _ = write!(out, "  {:<11}", row["area"].as_str().unwrap_or("?"));
        for cell in row["cells"].as_array().map_or(&[][..], Vec::as_slice) {
            let text = match (cell["rtt_ms"].as_f64(), cell["samples"].as_u64()) {
                (Some(rtt), Some(n)) => format!("{rtt:.1}/{n}"),
                _ => "-".to_owned(),
            };
            let _ = write!(out, " {text:>11}");
        }
        let _ = writeln!(out);
    }
    if areas.len() > TEXT_AREAS {
        let _ = writeln!(
            out,
            "  ... {} more areas (meridian status --json)",
            areas.len() - TEXT_AREAS
        );
    }
    out
}
