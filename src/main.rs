//! `meridian`: the one binary. Each part of the system and each operator command is a subcommand.
//!
//! This file only parses arguments and dispatches; every command lives in its own module and returns an
//! error for `main` to print. Exit codes: 0 success, 1 the command failed (invalid configuration, unknown
//! region...), 2 the command line itself is wrong (clap's convention).

#![forbid(unsafe_code)]

mod config_cmd;
mod dns_cmd;
mod explain;
mod geo;
mod health_cmd;
mod metrics_http;
mod proxy_cmd;
mod simulate;
mod store_args;

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
    /// Explain which regions a client would be sent to for a service, and why.
    Explain(Box<explain::ExplainArgs>),
    /// Run a health prober: probe every region's health checks from this vantage point and publish what
    /// it sees to the state store, under a lease.
    Health(Box<health_cmd::HealthArgs>),
    /// Run a region's L7 proxy: balance over its backends, spill to the next region when it cannot serve
    /// a request well, enforce residency, report load.
    Proxy(Box<proxy_cmd::ProxyArgs>),
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
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
        Command::Proxy(args) => block_on(proxy_cmd::run(&args)),
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
