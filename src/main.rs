//! `meridian`: the one binary. Each part of the system and each operator command is a subcommand.
//!
//! This file only parses arguments and dispatches; every command lives in its own module and returns an
//! error for `main` to print. Exit codes: 0 success, 1 the command failed (invalid configuration, unknown
//! region...), 2 the command line itself is wrong (clap's convention), 130 `drill run` interrupted (rolled back).

#![forbid(unsafe_code)]

mod admin_args;
mod author;
mod config_cmd;
mod demo_origin;
mod dns_cmd;
mod dnssec_cmd;
mod drill_run;
mod durations;
mod explain;
mod geo;
mod health_cmd;
mod health_store_args;
mod metrics_http;
mod node;
mod notify_args;
mod ops_cmd;
mod proxy_cmd;
mod roles;
mod simulate;
mod store_args;
mod tls_edge;
mod up;
mod up_acme;

/// The allocator: mimalloc (`meridian-alloc` says why).
#[global_allocator]
static ALLOCATOR: meridian_alloc::Allocator = meridian_alloc::Allocator;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Meridian: a global load balancer (GeoDNS, regional L7 proxies, multi-vantage health checks).
#[derive(Parser)]
#[command(name = "meridian", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work with configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Run the authoritative GeoDNS server.
    Dns(Box<dns_cmd::DnsArgs>),
    /// Explain which regions a client would be sent to for a service, and why: from a configuration file
    /// (--config), or from a running node's live state (its admin API: --server).
    Explain(Box<explain::ExplainArgs>),
    /// Run a health prober: probe every region's health checks from this vantage point and publish what
    /// it sees to the state store, under a lease.
    Health(Box<health_cmd::HealthArgs>),
    /// Run the whole system on this machine: DNS, a proxy and a demo origin per region, probers, the
    /// admin API and metrics, over the embedded store (or etcd).
    Up(Box<up::UpArgs>),
    /// Show every region: health per vantage point, weight, load against capacity, drains, drills, and
    /// how fresh the node's view of the store is (through a node's admin API).
    Status(Box<ops_cmd::StatusArgs>),
    /// Change a region's weight or drain it (through a node's admin API; audited, checked for safety).
    #[command(subcommand)]
    Region(ops_cmd::RegionCommand),
    /// Failover drills: start, list, stop, or run one end to end and measure it.
    #[command(subcommand)]
    Drill(ops_cmd::DrillCommand),
    /// Run a region's L7 proxy: balance over its backends, spill to the next region when it cannot serve
    /// a request well, enforce residency, report load.
    Proxy(Box<proxy_cmd::ProxyArgs>),
    /// DNSSEC keys: create one, print the DS records for the registrar.
    #[command(subcommand)]
    Dnssec(dnssec_cmd::DnssecCommand),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file; print every problem with its path; exit non-zero if there is any.
    Check(CheckArgs),
    /// Print the configuration held by the state store (its revision on stderr).
    Get(Box<GetArgs>),
    /// Show what applying FILE would change in the stored configuration.
    Diff(Box<DiffArgs>),
    /// Validate FILE and make it the stored configuration, by compare-and-swap, with an audit record.
    Apply(Box<config_cmd::ApplyArgs>),
}

#[derive(Args)]
struct GetArgs {
    #[command(flatten)]
    store: store_args::StoreArgs,
}

#[derive(Args)]
struct DiffArgs {
    /// The configuration file to compare with the stored one.
    file: PathBuf,
    /// Exit 1 when there are differences (for scripts).
    #[arg(long)]
    exit_code: bool,
    #[command(flatten)]
    store: store_args::StoreArgs,
}

#[derive(Args)]
struct CheckArgs {
    /// The configuration file (TOML).
    file: PathBuf,
}

/// `RUST_LOG`'s filter (default: warnings), with hickory's parsing chatter off unless `RUST_LOG` names
/// hickory itself (see `meridian_dns::guard::QUIET_LIBRARIES`).
fn log_filter() -> tracing_subscriber::EnvFilter {
    let env = std::env::var("RUST_LOG").unwrap_or_default();
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    if !env.contains("hickory") {
        for d in meridian_dns::guard::QUIET_LIBRARIES {
            if let Ok(d) = d.parse() {
                filter = filter.add_directive(d);
            }
        }
    }
    filter
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(log_filter())
        .init();
    let result = match cli.command {
        Command::Config(ConfigCommand::Check(args)) => config_cmd::check(&args.file),
        Command::Config(ConfigCommand::Get(args)) => block_on(config_cmd::get(&args.store)),
        Command::Config(ConfigCommand::Diff(args)) => {
            block_on(config_cmd::diff_cmd(&args.file, args.exit_code, &args.store))
        }
        Command::Config(ConfigCommand::Apply(args)) => block_on(config_cmd::apply(&args)),
        Command::Dns(args) => block_on(dns_cmd::run(&args)),
        Command::Explain(args) => explain::run(&args),
        Command::Health(args) => block_on(health_cmd::run(&args)),
        Command::Up(args) => block_on(up::run(&args)),
        Command::Status(args) => block_on(ops_cmd::status(&args)),
        Command::Region(cmd) => block_on(ops_cmd::region(&cmd)),
        Command::Drill(cmd) => block_on(ops_cmd::drill(&cmd)),
        Command::Proxy(args) => block_on(proxy_cmd::run(&args)),
        Command::Dnssec(cmd) => dnssec_cmd::run(&cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs an async command on a runtime made for it (one-shot commands need no long-lived runtime).
fn block_on<F: Future<Output = anyhow::Result<ExitCode>>>(f: F) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(f)
}
