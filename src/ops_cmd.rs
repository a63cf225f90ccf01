//! Operator commands over a node's admin API: `meridian status`, `meridian region ...`, `meridian drill
//! start|list|stop`. They validate their arguments locally first (a typo never reaches the server), then
//! print what the server did, or why it refused.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::anyhow;
use clap::{Args, Subcommand};
use meridian_admin::api::{
    Applied, CertificateStatus, ChangeMeta, ConfigOrigin, DrillList, DrillStarted, DrillStopped, DrillView,
    NodeList, NodeStatus, RegionStatus, SetWeight, Status,
};
use meridian_admin::safety::Violation;
use serde::Serialize;
use serde_json::Value;

use crate::admin_args::{AdminConnArgs, call, call_as, explain_error, get_status};
use crate::author::author;
use crate::drill_run::DrillSpec;
use crate::durations::human_ms;

/// `meridian status`.
#[derive(Args)]
pub(crate) struct StatusArgs {
    /// Print the API's JSON instead of tables.
    #[arg(long)]
    json: bool,
    /// Refresh every SECONDS until interrupted.
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "2")]
    watch: Option<f64>,
    #[command(flatten)]
    conn: AdminConnArgs,
}

/// Guards common to changes.
#[derive(Args, Clone)]
pub(crate) struct ChangeArgs {
    /// Why (recorded in the audit log).
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
    /// Apply only if this changed nothing since store revision N (the revision `meridian status` shows).
    #[arg(long, value_name = "N")]
    expect_revision: Option<i64>,
    /// Do it even if a safety check refuses (a residency rule or a service left without a usable region).
    #[arg(long)]
    force: bool,
}

impl ChangeArgs {
    fn meta(&self) -> ChangeMeta {
        ChangeMeta {
            author: Some(author()),
            reason: self.reason.clone(),
            expect_revision: self.expect_revision,
            force: self.force,
        }
    }
}

/// `meridian region ...`.
#[derive(Subcommand)]
pub(crate) enum RegionCommand {
    /// Replace a region's configured weight (0-10000; 0 sends it nothing).
    SetWeight {
        /// The region.
        region: String,
        /// The weight.
        weight: u32,
        #[command(flatten)]
        change: ChangeArgs,
        #[command(flatten)]
        conn: AdminConnArgs,
    },
    /// Go back to the configured weight.
    ClearWeight {
        /// The region.
        region: String,
        #[command(flatten)]
        change: ChangeArgs,
        #[command(flatten)]
        conn: AdminConnArgs,
    },
    /// Send no new clients to a region.
    Drain {
        /// The region.
        region: String,
        #[command(flatten)]
        change: ChangeArgs,
        #[command(flatten)]
        conn: AdminConnArgs,
    },
    /// End a drain.
    Undrain {
        /// The region.
        region: String,
        #[command(flatten)]
        change: ChangeArgs,
        #[command(flatten)]
        conn: AdminConnArgs,
    },
}

/// `meridian drill ...`.
#[derive(Subcommand)]
pub(crate) enum DrillCommand {
    /// Start a drill: the region behaves as down, drained, or with less capacity, until it expires.
    Start {
        #[command(flatten)]
        spec: DrillSpec,
        #[command(flatten)]
        conn: AdminConnArgs,
    },
    /// List drills (active ones; --all for expired ones too).
    List {
        /// Include expired drills.
        #[arg(long)]
        all: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: AdminConnArgs,
    },
    /// Stop a drill now.
    Stop {
        /// The drill's id.
        id: String,
        /// Why.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        #[command(flatten)]
        conn: AdminConnArgs,
    },
    /// Prove failover: start a drill, watch DNS answers (and proxies) move, roll back, watch them return.
    Run(Box<crate::drill_run::RunArgs>),
}

/// A region id by the configuration's rule (a typo never reaches the server).
fn check_region_id(id: &str) -> anyhow::Result<()> {
    meridian_config::check_identifier(id).map_err(|e| anyhow!("region id {e}"))
}

pub(crate) async fn region(cmd: &RegionCommand) -> anyhow::Result<ExitCode> {
    let (region, change, conn) = match cmd {
        RegionCommand::SetWeight {
            region,
            weight,
            change,
            conn,
        } => {
            meridian_admin::check_weight(*weight).map_err(|e| anyhow!(e))?;
            (region, change, conn)
        }
        RegionCommand::ClearWeight { region, change, conn }
        | RegionCommand::Drain { region, change, conn }
        | RegionCommand::Undrain { region, change, conn } => (region, change, conn),
    };
    let required = matches!(cmd, RegionCommand::SetWeight { .. } | RegionCommand::Drain { .. });
    meridian_admin::check_reason(change.reason.as_deref(), required).map_err(|e| anyhow!("--reason: {e}"))?;
    check_region_id(region)?;
    let client = conn.client()?;
    let path = |suffix: &str| format!("/v1/regions/{region}/{suffix}");
    let meta = change.meta();
    let (r, verb): (Applied, String) = match cmd {
        RegionCommand::SetWeight { weight, .. } => {
            let body = SetWeight {
                weight: *weight,
                meta,
            };
            (
                call_as(&client, "PUT", &path("weight"), &body).await?,
                format!("weight of {region} set to {weight}"),
            )
        }
        RegionCommand::ClearWeight { .. } => (
            call_as(&client, "DELETE", &path("weight"), &meta).await?,
            format!("{region} is back to its configured weight"),
        ),
        RegionCommand::Drain { .. } => (
            call_as(&client, "PUT", &path("drain"), &meta).await?,
            format!("{region} drained"),
        ),
        RegionCommand::Undrain { .. } => (
            call_as(&client, "DELETE", &path("drain"), &meta).await?,
            format!("{region} undrained"),
        ),
    };
    print_forced(&r.forced);
    println!("{verb} (revision {})", r.revision);
    Ok(ExitCode::SUCCESS)
}

/// Warns of each safety refusal a change was forced past.
pub(crate) fn print_forced(forced: &[Violation]) {
    for v in forced {
        eprintln!("warning: forced past a safety check: {v}");
    }
}

pub(crate) async fn drill(cmd: &DrillCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DrillCommand::Start { spec, conn } => {
            check_region_id(&spec.region)?;
            let client = conn.client()?;
            let r: DrillStarted = call_as(&client, "POST", "/v1/drills", &spec.body()).await?;
            print_forced(&r.applied.forced);
            let d = &r.drill;
            println!(
                "drill {} started: {} {} for {} (until expiry at {}, whatever happens to this command)",
                r.id,
                d.mode,
                d.region,
                human_ms(d.remaining_ms),
                d.expires_at_ms,
            );
            Ok(ExitCode::SUCCESS)
        }
        DrillCommand::List { all, json, conn } => {
            let client = conn.client()?;
            let path = if *all { "/v1/drills?all=true" } else { "/v1/drills" };
            if *json {
                let r = call(&client, "GET", path, None).await?;
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                let r: DrillList = client.get_as(path).await.map_err(|e| explain_error(e, &client))?;
                print!("{}", drills_table(&r.drills));
            }
            Ok(ExitCode::SUCCESS)
        }
        DrillCommand::Stop { id, reason, conn } => {
            let client = conn.client()?;
            let body = ChangeMeta {
                author: Some(author()),
                reason: reason.clone(),
                ..ChangeMeta::default()
            };
            let r: DrillStopped = call_as(&client, "DELETE", &format!("/v1/drills/{id}"), &body).await?;
            println!("drill {id} stopped (revision {})", r.applied.revision);
            Ok(ExitCode::SUCCESS)
        }
        DrillCommand::Run(args) => crate::drill_run::run(args).await,
    }
}

fn drills_table(drills: &[DrillView]) -> String {
    if drills.is_empty() {
        return "no drills\n".to_owned();
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<32} {:<8} {:<12} {:<10} {:<20} reason",
        "id", "region", "mode", "ends in", "by"
    );
    for d in drills {
        let ends = if d.active {
            human_ms(d.remaining_ms)
        } else {
            "expired".to_owned()
        };
        let _ = writeln!(
            out,
            "{:<32} {:<8} {:<12} {:<10} {:<20} {}",
            d.id, d.region, d.mode, ends, d.author, d.reason,
        );
    }
    out
}

fn status_text(s: &Status) -> String {
    let mut out = String::new();
    let source = match &s.config {
        ConfigOrigin::Store { revision, author, .. } => format!("store revision {revision} by {author}"),
        ConfigOrigin::Bootstrap => "bootstrap file (none in the store)".to_owned(),
    };
    let _ = writeln!(
        out,
        "node {} | state {} | revision {} | snapshot {} old{} | config: {source}",
        s.node,
        s.store,
        s.revision,
        human_ms(s.staleness_ms),
        if s.connected {
            ""
        } else {
            " (STORE UNREACHABLE: serving the last snapshot)"
        },
    );
    // Health per zone (--health-etcd): the zone's health store, followed apart from the global store.
    if let Some(h) = &s.health_store {
        let _ = writeln!(
            out,
            "health store: revision {} | {} old{}",
            h.revision.map_or("null".to_owned(), |r| r.to_string()),
            human_ms(h.staleness_ms.unwrap_or(0)),
            if h.connected {
                ""
            } else {
                " (HEALTH STORE UNREACHABLE: health as last known)"
            },
        );
    }
    if s.panic {
        let _ = writeln!(
            out,
            "PANIC: most regions look down; the probers are suspected, nothing newly marked down"
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<8} {:<14} {:<16} {:<24} {:>7} {:>18}  state",
        "region", "name", "health", "vantages", "weight", "load/capacity"
    );
    for r in &s.regions {
        out.push_str(&region_line(r));
    }
    if !s.drills.is_empty() {
        let _ = writeln!(out, "\nactive drills:");
        out.push_str(&drills_table(&s.drills));
    }
    if let Some(nodes) = &s.nodes {
        out.push_str(&nodes_text(nodes));
    }
    out.push_str(&meridian_admin::latency::matrix_text(&s.latency));
    out.push_str(&certificates_text(&s.certificates, s.now_ms));
    if !s.problems.is_empty() {
        let _ = writeln!(out, "\nproblems in the store (skipped):");
        for x in &s.problems {
            let _ = writeln!(out, "  {x}");
        }
    }
    out
}

/// One region's row of the status table.
fn region_line(r: &RegionStatus) -> String {
    let h = &r.health;
    let mut health = h.state.clone();
    if h.stale {
        health.push_str(" (stale)");
    } else if !h.probed {
        health.push_str(" (no checks)");
    }
    let vantages: Vec<String> = h
        .vantages
        .iter()
        .map(|o| {
            format!(
                "{}:{}{}",
                o.vantage,
                if o.healthy { "up" } else { "down" },
                if o.fresh { "" } else { "?" }
            )
        })
        .collect();
    let weight = if r.weight_override.is_none() {
        r.weight.to_string()
    } else {
        format!("{}*", r.weight)
    };
    let load = match r.in_flight {
        Some(n) => format!(
            "{n}/{} ({:.0}%)",
            r.effective_capacity,
            r.utilisation.unwrap_or(0.0) * 100.0
        ),
        None => format!("-/{}", r.effective_capacity),
    };
    let mut state = Vec::new();
    if let Some(d) = &r.drained {
        state.push(format!("DRAINED by {}: {}", d.author, d.reason));
    }
    for d in &r.drills {
        state.push(format!(
            "DRILL {} {} ({} left)",
            d.id,
            d.mode,
            human_ms(d.remaining_ms)
        ));
    }
    if let Some(w) = &r.weight_override {
        state.push(format!("weight set by {}: {}", w.author, w.reason));
    }
    let serving = if r.usable {
        "serving".to_owned()
    } else {
        format!("NOT SERVING ({})", r.excluded.as_deref().unwrap_or("?"))
    };
    state.insert(0, serving);
    format!(
        "{:<8} {:<14} {:<16} {:<24} {:>7} {:>18}  {}\n",
        r.id,
        r.name,
        health,
        if vantages.is_empty() {
            "-".to_owned()
        } else {
            vantages.join(" ")
        },
        weight,
        load,
        state.join("; ")
    )
}

/// The ACME certificates: names, issuer, expiry and renewal, and the last renewal error.
fn certificates_text(list: &[CertificateStatus], now: u64) -> String {
    let mut out = String::new();
    if list.is_empty() {
        return out;
    }
    // Days for certificate lifetimes; human_ms below a day.
    let span = |ms: u64| {
        if ms >= 86_400_000 {
            format!("{}d{:02}h", ms / 86_400_000, (ms % 86_400_000) / 3_600_000)
        } else {
            human_ms(ms)
        }
    };
    let in_time = |v: Option<u64>| match v {
        Some(t) if t >= now => format!("in {}", span(t - now)),
        Some(t) => format!("{} ago", span(now - t)),
        None => "-".to_owned(),
    };
    let _ = writeln!(
        out,
        "
certificates (ACME):"
    );
    for c in list {
        let names = c.names.join(", ");
        if c.issued {
            let _ = writeln!(
                out,
                "  {names}: issuer {}; expires {}; renews {}; last renewal {}",
                c.issuer.as_deref().unwrap_or("?"),
                in_time(c.not_after_ms),
                in_time(c.renew_at_ms),
                in_time(c.last_success_ms),
            );
        } else {
            let _ = writeln!(out, "  {names}: not issued yet");
        }
        if let Some(e) = &c.last_error {
            let _ = writeln!(
                out,
                "    last error ({} failure(s), next try {}): {e}",
                c.failures,
                in_time(c.next_attempt_ms),
            );
        }
    }
    out
}

/// The registered nodes, those that lag or went silent first, each said in a sentence an operator can act
/// on ("dns in bhs (dns-bhs-1) serves revision 412, the store is at 415, 3.0 s stale").
fn nodes_text(nodes: &NodeList) -> String {
    let mut out = String::new();
    let (store, list) = match nodes {
        NodeList::Unreadable { error } => {
            let _ = writeln!(out, "\nnodes: cannot read the registrations: {error}");
            return out;
        }
        NodeList::Listed { store_revision, list } => (*store_revision, list),
    };
    let _ = writeln!(out, "\nnodes ({}; store at revision {store}):", list.len());
    let mut rows: Vec<&NodeStatus> = list.iter().collect();
    let rank = |n: &NodeStatus| match n.state.as_str() {
        "silent" => 0,
        "lagging" => 1,
        _ => 2,
    };
    rows.sort_by_key(|n| (rank(n), n.role.clone(), n.region.clone().unwrap_or_default()));
    for n in rows {
        let place = n.region.as_ref().map(|r| format!(" in {r}")).unwrap_or_default();
        let what = format!("{}{place} ({}, v{})", n.role, n.instance, n.version);
        let line = match n.state.as_str() {
            "silent" => format!(
                "SILENT   {what}: no report for {} (last served revision {})",
                human_ms(n.report_age_ms),
                n.revision
            ),
            "lagging" => format!(
                "LAGGING  {what} serves revision {}, the store is at {store}, {} stale{}",
                n.revision,
                human_ms(n.staleness_ms),
                if n.connected {
                    ""
                } else {
                    " (disconnected from the store)"
                }
            ),
            _ => format!(
                "ok       {what} serves revision {}, {} stale",
                n.revision,
                human_ms(n.staleness_ms)
            ),
        };
        let _ = writeln!(out, "  {line}");
    }
    out
}

/// A typed answer as the server sent it: through a JSON value, so with its keys sorted.
fn as_sent<T: Serialize>(answer: &T) -> anyhow::Result<Value> {
    Ok(serde_json::to_value(answer)?)
}

pub(crate) async fn status(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let client = args.conn.client()?;
    let Some(every) = args.watch else {
        let s = get_status(&client).await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&as_sent(&s)?)?);
        } else {
            print!("{}", status_text(&s));
        }
        return Ok(ExitCode::SUCCESS);
    };
    if !(every.is_finite() && every >= 0.1) {
        return Err(anyhow!("--watch {every}: at least 0.1 seconds"));
    }
    loop {
        let text = match get_status(&client).await {
            Ok(s) if args.json => serde_json::to_string(&as_sent(&s)?)? + "\n",
            Ok(s) => format!("\x1b[2J\x1b[H{}", status_text(&s)),
            // A node restarting is worth watching through: say so, keep trying.
            Err(e) => format!("\x1b[2J\x1b[Herror: {e:#}\n"),
        };
        print!("{text}");
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs_f64(every)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        }
    }
}
