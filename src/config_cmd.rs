//! `meridian config ...`: check a file; read, diff and apply the configuration held by the state store.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use meridian_admin::ConfigCheck;
use meridian_config::calendar::utc_datetime_ms;
use meridian_config::{Config, ConfigError};
use meridian_steer::Topology;
use meridian_store::{
    ApplyOutcome, ConfigDocError, Keys, KvStore, SnapshotBuilder, StoredConfig, apply_config_with, now_ms,
    read_config,
};
use similar::TextDiff;

use crate::store_args::StoreArgs;

/// `meridian config check FILE`: validates and prints every problem, one per line, `FILE: path: message`.
pub(crate) fn check(file: &Path) -> anyhow::Result<ExitCode> {
    match Config::load(file) {
        Ok(cfg) => {
            // The files [tls] names, read on this machine: every node reads them at the same paths.
            let now = (now_ms() / 1000) as i64;
            let mut tls = meridian_tls::check(&cfg, now);
            // [acme]'s key file, read here as every proxy node will.
            if let Some(acme) = cfg.acme()
                && let Err(e) = meridian_acme::OperatorKey::load(&acme.key_file)
            {
                tls.errors.push(meridian_config::Problem {
                    path: "acme.key-file".to_owned(),
                    message: e,
                });
            }
            for w in &tls.warnings {
                eprintln!("{}: warning: {w}", file.display());
            }
            // The DNSSEC key files of signed zones, read as the DNS server reads them.
            let dnssec: Vec<String> = meridian_dns::dnssec::check(&cfg)
                .iter()
                .map(ToString::to_string)
                .collect();
            if !tls.errors.is_empty() || !dnssec.is_empty() {
                for p in tls
                    .errors
                    .iter()
                    .map(ToString::to_string)
                    .chain(dnssec.iter().cloned())
                {
                    eprintln!("{}: {p}", file.display());
                }
                eprintln!(
                    "{}: {} problem(s); nothing was applied",
                    file.display(),
                    tls.errors.len() + dnssec.len()
                );
                return Ok(ExitCode::FAILURE);
            }
            println!(
                "{}: ok (schema {}, {} regions, {} zones, {} services, {} residency rules{})",
                file.display(),
                cfg.schema_version(),
                cfg.regions().len(),
                cfg.zones().len(),
                cfg.services().len(),
                cfg.residency_rules().len(),
                cfg.tls()
                    .map(|t| format!(", {} TLS certificate(s)", t.certificates.len()))
                    .unwrap_or_default()
                    + &cfg
                        .acme()
                        .map(|a| format!(", {} ACME certificate(s)", a.certificates.len()))
                        .unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            report_invalid(file, &e)?;
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Prints validation or syntax problems; other errors (unreadable file) are returned.
fn report_invalid(file: &Path, e: &ConfigError) -> anyhow::Result<()> {
    match e {
        ConfigError::Invalid(problems) => {
            for p in problems {
                eprintln!("{}: {p}", file.display());
            }
            eprintln!(
                "{}: {} problem(s); nothing was applied",
                file.display(),
                problems.len()
            );
            Ok(())
        }
        ConfigError::Syntax { .. } => {
            eprintln!("{}: {e}", file.display());
            Ok(())
        }
        ConfigError::Read { .. } => bail!("{e}"),
    }
}

fn describe(c: &StoredConfig) -> String {
    format!(
        "revision {}, applied by {} at {}",
        c.revision,
        c.doc.author,
        utc_datetime_ms(c.doc.applied_at_ms)
    )
}

fn diff(old: &str, new: &str, old_name: &str, new_name: &str) -> String {
    TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(old_name, new_name)
        .to_string()
}

fn read_file(file: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))
}

/// `meridian config get`: the stored configuration on stdout (exactly as applied), its revision on stderr.
pub(crate) async fn get(store: &StoreArgs) -> anyhow::Result<ExitCode> {
    let kv = store.open()?;
    let keys = store.keys()?;
    match read_config(kv.as_ref(), &keys).await? {
        Some(c) => {
            eprintln!("# {} ({})", describe(&c), kv.describe());
            print!("{}", c.doc.toml);
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!(
                "no configuration in {} under {} (apply one with: meridian config apply FILE)",
                kv.describe(),
                keys.prefix()
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `meridian config diff FILE`: what applying FILE would change.
pub(crate) async fn diff_cmd(file: &Path, exit_code: bool, store: &StoreArgs) -> anyhow::Result<ExitCode> {
    let text = read_file(file)?;
    let kv = store.open()?;
    let current = read_config(kv.as_ref(), &store.keys()?).await?;
    let (old, old_name) = match &current {
        Some(c) => (c.doc.toml.as_str(), format!("stored ({})", describe(c))),
        None => ("", "stored (none)".to_owned()),
    };
    if old == text {
        eprintln!(
            "no differences: {} matches the stored configuration",
            file.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", diff(old, &text, &old_name, &file.display().to_string()));
    Ok(if exit_code {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Arguments of `meridian config apply`.
#[derive(clap::Args)]
pub(crate) struct ApplyArgs {
    /// The configuration file to make the desired configuration.
    file: PathBuf,
    /// Apply only if the stored configuration is still at this revision (the one `config get` or
    /// `config diff` showed you). Without it, the revision read just before applying.
    #[arg(long, value_name = "REVISION")]
    expect_revision: Option<i64>,
    /// Who is applying, for the audit log [default: $MERIDIAN_AUTHOR, else USER@HOSTNAME; see
    /// docs/operations.md].
    #[arg(long, value_name = "NAME")]
    author: Option<String>,
    /// Validate, check for safety and show the diff, write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Apply even if a safety check refuses (a residency rule, or a service, left without a usable
    /// region); the audit record lists what was forced.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    store: StoreArgs,
}

/// `meridian config apply FILE`: validate, show the diff, check for safety as `PUT /v1/config` does
/// ([`ConfigCheck`]: refused unless `--force`), compare-and-swap, audit (with what was forced).
pub(crate) async fn apply(args: &ApplyArgs) -> anyhow::Result<ExitCode> {
    let text = read_file(&args.file)?;
    let config = match Config::from_toml_str(&text) {
        Ok(c) => c,
        Err(e) => {
            report_invalid(&args.file, &e)?;
            return Ok(ExitCode::FAILURE);
        }
    };
    let topology = Topology::new(Arc::new(config));
    let kv = args.store.open()?;
    let keys = args.store.keys()?;
    let current = read_config(kv.as_ref(), &keys).await?;
    let current_rev = current.as_ref().map_or(0, |c| c.revision);
    let expected = args.expect_revision.unwrap_or(current_rev);
    let old = current.as_ref().map_or("", |c| c.doc.toml.as_str());
    let name = args.file.display().to_string();
    let old_name = current.as_ref().map_or("stored (none)".to_owned(), |c| {
        format!("stored ({})", describe(c))
    });
    // A stale --expect-revision is reported as a conflict below, with the diff against what is there now.
    if old != text && expected == current_rev {
        print!("{}", diff(old, &text, &old_name, &name));
    }
    if expected != current_rev && !args.dry_run {
        return Ok(conflict(&args.file, &text, expected, current));
    }
    let author = args.author.clone().unwrap_or_else(crate::author::author);
    for _ in 0..APPLY_ATTEMPTS {
        let now_ms = now_ms();
        let check = safety_check(kv.as_ref(), &keys, &topology, now_ms).await?;
        // An unchanged file changes nothing, whatever the store's state: only a change is checked.
        if old != text && !check.violations.is_empty() && !args.force {
            eprintln!(
                "{}\nNothing was written.",
                crate::admin_args::refusal_text(&check.violations)
            );
            return Ok(ExitCode::FAILURE);
        }
        if args.dry_run {
            if old != text {
                crate::ops_cmd::print_forced(&check.violations);
            }
            eprintln!("dry run: {} is valid; nothing was written", args.file.display());
            return Ok(ExitCode::SUCCESS);
        }
        let outcome = apply_config_with(
            kv.as_ref(),
            &keys,
            &text,
            Some(expected),
            &author,
            now_ms,
            &check.options(),
        )
        .await;
        match outcome {
            Ok(ApplyOutcome::Applied { revision, previous }) => {
                crate::ops_cmd::print_forced(&check.violations);
                let was = previous.map_or("none".to_owned(), |p| format!("revision {}", p.revision));
                eprintln!(
                    "applied {} as revision {revision} (was {was}) to {}",
                    args.file.display(),
                    kv.describe()
                );
                return Ok(ExitCode::SUCCESS);
            }
            Ok(ApplyOutcome::Unchanged { revision }) => {
                eprintln!(
                    "unchanged: the stored configuration (revision {revision}) already matches {}",
                    args.file.display()
                );
                return Ok(ExitCode::SUCCESS);
            }
            // The configuration did not move: a region's weight or drain did, under the safety check.
            Ok(ApplyOutcome::Conflict { expected, current })
                if current.as_ref().map_or(0, |c| c.revision) == expected => {}
            Ok(ApplyOutcome::Conflict { expected, current }) => {
                return Ok(conflict(&args.file, &text, expected, current));
            }
            Err(ConfigDocError::Invalid(e)) => {
                report_invalid(&args.file, &e)?;
                return Ok(ExitCode::FAILURE);
            }
            Err(e) => return Err(e.into()),
        }
    }
    bail!(
        "region weights and drains kept changing during the safety check ({APPLY_ATTEMPTS} attempts); nothing was \
         written: try again"
    )
}

/// Attempts at a write whose safety check is overtaken by a weight or drain change.
const APPLY_ATTEMPTS: usize = 5;

/// The safety check of `PUT /v1/config` ([`ConfigCheck`]), against the state a node would build from the
/// store now. Health comes from the store: with a zone's own health store (`--health-etcd`) the
/// regions' health is unknown here, so only operator state (weights, drains, drills) and the
/// configuration's own regions and rules can make a refusal.
async fn safety_check(
    kv: &dyn KvStore,
    keys: &Keys,
    topology: &Topology,
    now_ms: u64,
) -> anyhow::Result<ConfigCheck> {
    let listing = kv.list(keys.prefix()).await?;
    let mut builder = SnapshotBuilder::new(keys.clone(), None);
    builder.reset(listing.kvs, listing.revision);
    let in_force = builder.build(now_ms);
    Ok(ConfigCheck::run(kv, keys, topology, in_force.as_ref(), now_ms).await?)
}

/// Reports a conflict: what is stored now, and what applying `text` would change against it.
fn conflict(file: &Path, text: &str, expected: i64, current: Option<StoredConfig>) -> ExitCode {
    let now = current.as_ref().map_or("no configuration".to_owned(), describe);
    eprintln!(
        "conflict: the stored configuration changed since revision {expected}; it is now {now}. Nothing was \
         written. What applying {} would now change:",
        file.display()
    );
    let cur = current.as_ref().map_or("", |c| c.doc.toml.as_str());
    let cur_name = current.as_ref().map_or("stored (none)".to_owned(), |c| {
        format!("stored ({})", describe(c))
    });
    print!("{}", diff(cur, text, &cur_name, &file.display().to_string()));
    eprintln!(
        "review, then re-run with --expect-revision {}",
        current.map_or(0, |c| c.revision)
    );
    ExitCode::FAILURE
}
