//! `meridian explain`: where is this client, which regions would it be sent to, and why — every candidate
//! with its distance, health, weight and load, and the verdict on it. The same [`meridian_steer::steer`]
//! call the DNS server and the proxy make, so the explanation is the decision, not a re-enactment.
//!
//! From a configuration file (`--config`, with "what if" state flags), or from a running node's live
//! snapshot through its admin API (no `--config`: `--server`, `$MERIDIAN_SERVER`); both print the same
//! report (`meridian_admin::explain`).

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use meridian_admin::api::{ExplainAnswer, ExplainReport};
use meridian_admin::explain::explain;
use meridian_config::Config;
use meridian_steer::Topology;

use crate::admin_args::AdminConnArgs;
use crate::geo::open_geoip;
use crate::simulate::StateFlags;

/// Arguments of `meridian explain`.
#[derive(clap::Args)]
pub(crate) struct ExplainArgs {
    /// The configuration file. Without it, the live state of the node at --server is explained.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The service: its name (`meet`) or hostname (`meet.gslb.example`).
    service: String,
    /// The client's address (or the EDNS Client Subnet address a resolver would send).
    #[arg(long, value_name = "IP")]
    client: IpAddr,
    /// A GeoIP database to use instead of the configuration's (or the bundled one).
    #[arg(long, value_name = "FILE")]
    geoip: Option<PathBuf>,
    /// The request hash, instead of the one derived from the client's /24 or /56 (to see another client of
    /// the same network).
    #[arg(long, value_name = "N")]
    hash: Option<u64>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    state: StateFlags,
    #[command(flatten)]
    conn: AdminConnArgs,
}

pub(crate) fn run(args: &ExplainArgs) -> anyhow::Result<ExitCode> {
    let Some(path) = &args.config else {
        return crate::block_on(live(args));
    };
    let config = Config::load(path).with_context(|| format!("{}", path.display()))?;
    let geo = open_geoip(Some((&config, path)), args.geoip.as_deref())?;
    let topology = Topology::new(Arc::new(config));
    let states = args.state.states(&topology)?;
    let now_ms = meridian_store::now_ms();
    let e = explain(
        &topology,
        &states,
        &geo,
        &args.service,
        args.client,
        args.hash,
        now_ms,
    )
    .map_err(|m| anyhow!(m))?;
    print_explanation(args.json, &e.text, &e.report)
}

fn print_explanation(json: bool, text: &str, report: &ExplainReport) -> anyhow::Result<ExitCode> {
    if json {
        // Through a JSON value, as the API sends it: keys sorted.
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::to_value(report)?)?
        );
    } else {
        print!("{text}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Explains against the live snapshot of the node at `--server`.
async fn live(args: &ExplainArgs) -> anyhow::Result<ExitCode> {
    if args.state.any() {
        bail!(
            "--up/--down/--drain/--weight/--load/--drill simulate state with --config FILE; the live state is what it is"
        );
    }
    if args.geoip.is_some() {
        bail!("--geoip applies with --config FILE; live explanations use the node's GeoIP database");
    }
    let client = args.conn.client()?;
    let mut path = format!(
        "/v1/explain?service={}&client={}",
        encode(&args.service),
        encode(&args.client.to_string())
    );
    if let Some(h) = args.hash {
        path.push_str(&format!("&hash={h}"));
    }
    let answer: ExplainAnswer = client
        .get_as(&path)
        .await
        .map_err(|e| crate::admin_args::explain_error(e, &client))?;
    print_explanation(args.json, &answer.text, &answer.report)
}

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
