//! `meridian`: the one binary. Each part of the system and each operator command is a subcommand.
//!
//! This file only parses arguments and dispatches; every command lives in its own module and returns an
//! error for `main` to print. Exit codes: 0 success, 1 the command failed (invalid configuration, unknown
//! region...), 2 the command line itself is wrong (clap's convention).

#![forbid(unsafe_code)]

mod config_cmd;
mod explain;
mod simulate;

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
    /// Explain which regions a client would be sent to for a service, and why.
    Explain(Box<explain::ExplainArgs>),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file; print every problem with its path; exit non-zero if there is any.
    Check(CheckArgs),
}

#[derive(Args)]
struct CheckArgs {
    /// The configuration file (TOML).
    file: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Config(ConfigCommand::Check(args)) => config_cmd::check(&args.file),
        Command::Explain(args) => explain::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
