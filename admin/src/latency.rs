//! The latency matrix as operators see it (`docs/latency.md`): client area × region, the estimate, its
//! samples and age, from the node's snapshot — in the status document (`latency`) and as the compact
//! table `meridian status` prints.

use std::fmt::Write;

use meridian_store::Snapshot;

use crate::api::{LatencyCell, LatencyMatrix, LatencyRow};

/// Areas the text table shows at most (the most-sampled first); the JSON has every area.
pub const TEXT_AREAS: usize = 20;

/// The status document's `latency`: the regions (column order) and one row per area, most samples first.
pub(crate) fn matrix(snapshot: &Snapshot, now_ms: u64) -> LatencyMatrix {
    let topology = &snapshot.topology;
    let regions = topology
        .region_indices()
        .map(|r| topology.region_id(r).to_owned())
        .collect();
    let mut rows: Vec<(u64, LatencyRow)> = snapshot
        .states
        .latency()
        .rows()
        .map(|(area, cells)| {
            let total: u64 = cells.iter().map(|m| u64::from(m.samples)).sum();
            let cells = cells
                .iter()
                .map(|m| {
                    (m.samples > 0).then(|| LatencyCell {
                        rtt_ms: (f64::from(m.rtt_ms) * 10.0).round() / 10.0,
                        samples: m.samples,
                        age_ms: now_ms.saturating_sub(m.updated_at_ms),
                    })
                })
                .collect();
            (
                total,
                LatencyRow {
                    area: area.to_string(),
                    cells,
                },
            )
        })
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.0));
    let services = topology
        .config()
        .services()
        .iter()
        .filter(|s| s.latency.is_some())
        .map(|s| s.name.clone())
        .collect();
    LatencyMatrix {
        services,
        regions,
        areas: rows.into_iter().map(|r| r.1).collect(),
    }
}

/// The compact table: `rtt/samples` per cell, `-` where nothing is measured; empty when no service
/// steers by latency and nothing is measured.
pub fn matrix_text(latency: &LatencyMatrix) -> String {
    let mut out = String::new();
    let areas = &latency.areas;
    if areas.is_empty() && latency.services.is_empty() {
        return out;
    }
    let _ = writeln!(
        out,
        "\nlatency (TCP round trip ms/samples, client area x region; steering: {}):",
        if latency.services.is_empty() {
            "no service".to_owned()
        } else {
            latency.services.join(", ")
        }
    );
    if areas.is_empty() {
        let _ = writeln!(out, "  nothing measured yet");
        return out;
    }
    let _ = write!(out, "  {:<11}", "area");
    for r in &latency.regions {
        let _ = write!(out, " {r:>11}");
    }
    let _ = writeln!(out);
    for row in areas.iter().take(TEXT_AREAS) {
        let _ = write!(out, "  {:<11}", row.area);
        for cell in &row.cells {
            let text = match cell {
                Some(c) => format!("{:.1}/{}", c.rtt_ms, c.samples),
                None => "-".to_owned(),
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
