//! `meridian config ...`: operator commands on configuration files.

use std::path::Path;
use std::process::ExitCode;

use meridian_config::{Config, ConfigError};

/// `meridian config check FILE`: validates and prints every problem, one per line, `FILE: path: message`.
pub(crate) fn check(file: &Path) -> anyhow::Result<ExitCode> {
    match Config::load(file) {
        Ok(cfg) => {
            println!(
                "{}: ok (schema {}, {} regions, {} zones, {} services, {} residency rules)",
                file.display(),
                cfg.schema_version(),
                cfg.regions().len(),
                cfg.zones().len(),
                cfg.services().len(),
                cfg.residency_rules().len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(ConfigError::Invalid(problems)) => {
            for p in &problems {
                eprintln!("{}: {p}", file.display());
            }
            eprintln!(
                "{}: {} problem(s); nothing was applied",
                file.display(),
                problems.len()
            );
            Ok(ExitCode::FAILURE)
        }
        Err(e @ ConfigError::Syntax { .. }) => {
            eprintln!("{}: {e}", file.display());
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(e.into()),
    }
}
