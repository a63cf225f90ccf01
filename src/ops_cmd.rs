//! Operator commands over a node's admin API: `meridian status`, `meridian region ...`, `meridian drill
//! start|list|stop`. They validate their arguments locally first (a typo never reaches the server), then
//! print what the server did, or why it refused.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::anyhow;
use clap::{Args, Subcommand};
use meridian_admin::api::{
    Applied, CertificateStatus, ChangeMeta, ConfigOrigin, DrillList, DrillModeText, DrillStarted, DrillStopped, DrillView,
    NodeList, NodeStatus, RegionStatus, SetWeight, StartDrill, Status,
};
use meridian_admin::client::AdminClient;
use meridian_admin::safety::Violation;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::admin_args::{AdminConnArgs, explain_error};
use crate::author::author;

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

/// What a drill does and for how long (shared by `drill start` and `drill run`).
#[derive(Args, Clone)]
pub(crate) struct DrillSpec {
    /// The region drilled.
    #[arg(long, value_name = "REGION")]
    pub(crate) region: String,
    /// down (as if health checks failed), drain, or capacity=PCT.
    #[arg(long, value_name = "MODE", value_parser = str::parse::<DrillModeText>)]
    pub(crate) mode: DrillModeText,
    /// How long: 90s, 5m, 1h30m (at most 72h). The drill ends then even if nobody stops it.
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) duration: Duration,
    /// Why (recorded in the drill and the audit log).
    #[arg(long, value_name = "TEXT")]
    pub(crate) reason: String,
    /// The drill's id (default: REGION-MODE-STARTMS).
    #[arg(long, value_name = "ID")]
    pub(crate) id: Option<String>,
    /// Start it even if a safety check refuses.
    #[arg(long)]
    pub(crate) force: bool,
}

impl DrillSpec {
    pub(crate) fn body(&self) -> StartDrill {
        StartDrill {
            region: self.region.clone(),
            mode: self.mode,
            duration_ms: self.duration.as_millis() as u64,
            id: self.id.clone(),
            meta: ChangeMeta {
                author: Some(author()),
                reason: Some(self.reason.clone()),
                expect_revision: None,
                force: self.force,
            },
        }
    }
}

/// Parses `500ms`, `90s`, `5m`, `1h30m`, `2d`; a bare number is seconds.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?}: expected a duration such as 90s, 5m or 1h30m");
    let t = s.trim();
    if t.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = t.parse::<f64>() {
        return (secs.is_finite() && secs > 0.0)
            .then(|| Duration::from_secs_f64(secs))
            .ok_or_else(bad);
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return Err(bad()),
        };
        total += Duration::from_secs_f64(n * factor);
        rest = &rest[unit_len..];
    }
    if total.is_zero() {
        return Err(bad());
    }
    Ok(total)
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

pub(crate) async fn call(
    client: &AdminClient,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<Value> {
    client
        .send(method, path, body)
        .await
        .map_err(|e| explain_error(e, client))
}

/// A request with one of the API's typed bodies, its answer read as the API's typed answer.
pub(crate) async fn call_as<B: Serialize, R: DeserializeOwned>(
    client: &AdminClient,
    method: &str,
    path: &str,
    body: &B,
) -> anyhow::Result<R> {
    client
        .send_as(method, path, body)
        .await
        .map_err(|e| explain_error(e, client))
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

pub(crate) fn human_ms(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0 => format!("{ms} ms"),
        1..60 => format!("{:.1} s", ms as f64 / 1000.0),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
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
        NodeList::Listed {
            store_revision,
            list,
        } => (*store_revision, list),
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

/// `GET /v1/status`, read as the API's status document.
pub(crate) async fn get_status(client: &AdminClient) -> anyhow::Result<Status> {
    client
        .get_as("/v1/status")
        .await
        .map_err(|e| explain_error(e, client))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        for bad in ["", "m", "5x", "0s", "-1", "1h30", "s5"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
