//! Status documents, read from the node's snapshot: per region health per vantage, weight, load against
//! capacity, drains, active drills, and the snapshot's staleness; plus the registered nodes, the one part
//! read from the store on request ([`nodes`]: an operator's call, never a hot path).

use meridian_steer::{DrillMode, Health, Topology};
use meridian_store::schema::DrillDoc;
use meridian_store::{ConfigSource, Snapshot};
use serde_json::Value;

use crate::AdminContext;
use crate::api::{
    CertificateStatus, ConfigOrigin, DrainView, DrillModeText, DrillView, HealthStoreStatus, NodeList,
    NodeStatus, RegionHealthStatus, RegionStatus, ServiceStatus, Status, VantageOpinion, WeightOverrideView,
};
use crate::safety::usable;

/// A health state's name in the API and the reports.
pub(crate) fn health_name(h: Health) -> &'static str {
    match h {
        Health::Up => "up",
        Health::Down => "down",
        Health::Unknown => "unknown",
    }
}

/// A drill as the API shows it.
pub(crate) fn drill_view(id: &str, d: &DrillDoc, now_ms: u64) -> DrillView {
    DrillView {
        id: id.to_owned(),
        region: d.region.clone(),
        mode: DrillModeText(d.mode),
        started_at_ms: d.started_at_ms,
        expires_at_ms: d.expires_at_ms,
        remaining_ms: d.expires_at_ms.saturating_sub(now_ms),
        active: now_ms < d.expires_at_ms,
        author: d.author.clone(),
        reason: d.reason.clone(),
    }
}

pub(crate) fn drills(snapshot: &Snapshot, now_ms: u64, all: bool) -> Vec<DrillView> {
    snapshot
        .drills
        .iter()
        .filter(|(_, d)| all || now_ms < d.expires_at_ms)
        .map(|(id, d)| drill_view(id, d, now_ms))
        .collect()
}

/// One region's status.
pub(crate) fn region(
    snapshot: &Snapshot,
    topology: &Topology,
    id: &str,
    now_ms: u64,
) -> Option<RegionStatus> {
    let index = topology.region_index(id)?;
    let config = &topology.config().regions()[index.get()];
    let state = snapshot.states.get(index)?;
    let health = snapshot.health.region(id);
    let active: Vec<&meridian_steer::Drill> = state.drills.iter().filter(|d| d.active(now_ms)).collect();
    let capacity_pct = active
        .iter()
        .filter_map(|d| match d.mode {
            DrillMode::Capacity { percent } => Some(percent.min(100)),
            _ => None,
        })
        .min()
        .unwrap_or(100);
    let effective_capacity = u64::from(state.capacity) * u64::from(capacity_pct) / 100;
    let excluded = if state.drained {
        Some("drained".to_owned())
    } else if let Some(d) = active.iter().find(|d| d.mode == DrillMode::Drain) {
        Some(format!("drill {} (drain)", d.id))
    } else if state.weight == 0 {
        Some("weight 0".to_owned())
    } else if state.health == Health::Down {
        Some("down".to_owned())
    } else {
        active
            .iter()
            .find(|d| d.mode == DrillMode::Down)
            .map(|d| format!("drill {} (down)", d.id))
    };
    let vantages: Vec<VantageOpinion> = health
        .map(|h| {
            h.opinions
                .iter()
                .map(|o| {
                    let detail = snapshot
                        .observations
                        .iter()
                        .find(|(t, v, _)| t == id && *v == o.vantage)
                        .and_then(|(_, _, obs)| obs.detail.clone());
                    VantageOpinion {
                        vantage: o.vantage.clone(),
                        healthy: o.healthy,
                        fresh: o.fresh,
                        observed_at_ms: o.observed_at_ms,
                        detail,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let weight_override = snapshot
        .weights
        .iter()
        .find(|(r, _)| r == id)
        .map(|(_, w)| WeightOverrideView {
            weight: w.weight,
            author: w.author.clone(),
            reason: w.reason.clone(),
            at_ms: w.at_ms,
        });
    let drained = snapshot
        .drains
        .iter()
        .find(|(r, _)| r == id)
        .map(|(_, d)| DrainView {
            author: d.author.clone(),
            reason: d.reason.clone(),
            at_ms: d.at_ms,
        });
    let drills: Vec<DrillView> = snapshot
        .drills
        .iter()
        .filter(|(_, d)| d.region == id && now_ms < d.expires_at_ms)
        .map(|(i, d)| drill_view(i, d, now_ms))
        .collect();
    Some(RegionStatus {
        id: config.id.clone(),
        name: config.name.clone(),
        health: RegionHealthStatus {
            state: health_name(state.health).to_owned(),
            stale: health.is_some_and(|h| h.stale),
            since_ms: health.map(|h| h.since_ms),
            held_by_panic: health.is_some_and(|h| h.held_by_panic),
            probed: !config.health_checks.is_empty(),
            vantages,
        },
        weight: state.weight,
        configured_weight: config.weight,
        weight_override,
        drained,
        in_flight: state.in_flight,
        capacity: state.capacity,
        effective_capacity,
        utilisation: state
            .in_flight
            .map(|n| {
                if effective_capacity > 0 {
                    f64::from(n) / effective_capacity as f64
                } else {
                    f64::INFINITY
                }
            })
            .filter(|u| u.is_finite()),
        drills,
        usable: usable(state, now_ms),
        excluded,
        ipv4: config.ipv4.iter().map(ToString::to_string).collect(),
        ipv6: config.ipv6.iter().map(ToString::to_string).collect(),
    })
}

pub(crate) fn regions(snapshot: &Snapshot, now_ms: u64) -> Vec<RegionStatus> {
    let topology = &snapshot.topology;
    topology
        .config()
        .regions()
        .iter()
        .filter_map(|r| region(snapshot, topology, &r.id, now_ms))
        .collect()
}

/// The status document, without the registered nodes ([`nodes`] reads those from the store).
pub(crate) fn status_doc(ctx: &AdminContext, snapshot: &Snapshot, now_ms: u64) -> Status {
    let config = match &snapshot.config_source {
        ConfigSource::Store {
            revision,
            author,
            applied_at_ms,
        } => ConfigOrigin::Store {
            revision: *revision,
            author: author.clone(),
            applied_at_ms: *applied_at_ms,
        },
        ConfigSource::Bootstrap => ConfigOrigin::Bootstrap,
    };
    let services = snapshot
        .topology
        .config()
        .services()
        .iter()
        .map(|s| ServiceStatus {
            name: s.name.clone(),
            hostname: s.hostname.as_str().to_owned(),
            regions: s.regions.clone(),
        })
        .collect();
    Status {
        node: ctx.node.clone(),
        store: ctx.store.describe(),
        now_ms,
        revision: snapshot.revision,
        connected: ctx.watcher.is_connected(),
        staleness_ms: ctx.watcher.staleness().as_millis() as u64,
        // The zone's health store, when the node has one (docs/deployment.md, "The Atlantic cut").
        health_store: ctx
            .watcher
            .health_store_connected()
            .map(|connected| HealthStoreStatus {
                connected,
                revision: snapshot.health_revision,
                staleness_ms: ctx.watcher.health_store_staleness().map(|d| d.as_millis() as u64),
            }),
        config,
        panic: snapshot.health.panic,
        regions: regions(snapshot, now_ms),
        services,
        drills: drills(snapshot, now_ms, false),
        problems: snapshot.problems.clone(),
        latency: crate::latency::matrix(snapshot, now_ms),
        certificates: acme_certificates(snapshot),
        nodes: None,
    }
}

/// The status document as a JSON value, for documents that add to it (the dashboard's state).
pub(crate) fn status(ctx: &AdminContext, snapshot: &Snapshot, now_ms: u64) -> Value {
    // Cannot fail: every map in it has string keys.
    serde_json::to_value(status_doc(ctx, snapshot, now_ms)).unwrap_or_default()
}

/// The ACME certificates of the configuration: names, issuer, validity, when they renew, and how the
/// last order went (an empty list without `[acme]`).
pub(crate) fn acme_certificates(snapshot: &Snapshot) -> Vec<CertificateStatus> {
    let Some(acme) = snapshot.topology.config().acme() else {
        return Vec::new();
    };
    acme.certificates
        .iter()
        .map(|c| {
            let id = c.id();
            let doc = snapshot.acme_certs.iter().find(|(i, _)| i == id).map(|(_, d)| d);
            let st = snapshot.acme_status.iter().find(|(i, _)| i == id).map(|(_, s)| s);
            let renew_at_ms = doc.map(|d| acme.renew_at_ms(d.not_before_ms, d.not_after_ms));
            CertificateStatus {
                id: id.to_owned(),
                names: c.names.clone(),
                issued: doc.is_some(),
                issuer: doc.map(|d| d.issuer.clone()),
                not_before_ms: doc.map(|d| d.not_before_ms),
                not_after_ms: doc.map(|d| d.not_after_ms),
                renew_at_ms,
                ordered_by: doc.map(|d| d.ordered_by.clone()),
                last_attempt_ms: st.map(|s| s.last_attempt_ms),
                last_success_ms: st.and_then(|s| s.last_success_ms),
                last_error: st.and_then(|s| s.last_error.clone()),
                failures: st.map_or(0, |s| s.failures),
                next_attempt_ms: st.map(|s| s.next_attempt_ms).filter(|t| *t > 0),
            }
        })
        .collect()
}

/// A node whose last report is older than this has gone silent.
pub(crate) const SILENT_AFTER_MS: u64 = meridian_store::nodes::NODE_SILENT_AFTER.as_millis() as u64;
/// A node whose watcher has not heard from the store for this long lags.
pub(crate) const LAGGING_AFTER_MS: u64 = 3_000;

/// The registered nodes (`nodes/...`) and the store's revision, read from the store; each node with its
/// state: `ok`, `lagging` (its snapshot has not been confirmed by the store for 3 s, or it is
/// disconnected) or `silent` (no report for 3 s; it disappears when its lease expires).
pub(crate) async fn nodes(ctx: &AdminContext, now_ms: u64) -> NodeList {
    let listing = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        ctx.store.list(&ctx.keys.nodes_prefix()),
    )
    .await;
    let listing = match listing {
        Ok(Ok(l)) => l,
        Ok(Err(e)) => return NodeList::Unreadable { error: e.to_string() },
        Err(_) => {
            return NodeList::Unreadable {
                error: "the store did not answer within 1 s".to_owned(),
            };
        }
    };
    let list = listing
        .kvs
        .iter()
        .filter_map(|kv| meridian_store::schema::decode::<meridian_store::schema::NodeReport>(&kv.value).ok())
        .map(|n| {
            let age = now_ms.saturating_sub(n.reported_at_ms);
            let state = if age > SILENT_AFTER_MS {
                "silent"
            } else if !n.connected || n.staleness_ms > LAGGING_AFTER_MS {
                "lagging"
            } else {
                "ok"
            };
            NodeStatus {
                behind: listing.revision.saturating_sub(n.revision),
                role: n.role,
                region: n.region,
                instance: n.instance,
                version: n.version,
                revision: n.revision,
                staleness_ms: n.staleness_ms,
                connected: n.connected,
                report_age_ms: age,
                up_ms: now_ms.saturating_sub(n.started_at_ms),
                state: state.to_owned(),
            }
        })
        .collect();
    NodeList::Listed {
        store_revision: listing.revision,
        list,
    }
}
