//! `meridian dnssec ...`: create a key pair in BIND's format (`keygen`), and print the DS records of a
//! configuration's signed zones for the registrar (`ds`), reading the key files as the DNS server does.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use hickory_proto::rr::Name;
use meridian_config::Config;
use meridian_dns::dnssec::{KeyAlgorithm, KeyRole, ZoneKeys, ds_records, keygen};

#[derive(Subcommand)]
pub(crate) enum DnssecCommand {
    /// Create a key pair (K<zone>.+<alg>+<tag>.key and .private, BIND's format) and print its base path,
    /// for a zone's `dnssec.keys` or `dnssec.publish`.
    Keygen(KeygenArgs),
    /// Print the DS records of the signed zones' key-signing keys, for the registrar (or a validating
    /// resolver's trust anchor).
    Ds(DsArgs),
}

#[derive(Args)]
pub(crate) struct KeygenArgs {
    /// The zone the key is for (`gslb.example`).
    #[arg(long)]
    zone: String,
    /// ecdsap256sha256 (13) or ed25519 (15).
    #[arg(long, default_value = "ecdsap256sha256")]
    algorithm: KeyAlgorithm,
    /// ksk (signs the DNSKEY set; its DS goes to the parent), zsk (signs the rest) or csk (both).
    #[arg(long, default_value = "csk")]
    role: KeyRole,
    /// Where to write the files.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
}

#[derive(Args)]
pub(crate) struct DsArgs {
    /// The configuration file (TOML) naming the keys.
    file: PathBuf,
    /// Only this zone.
    #[arg(long)]
    zone: Option<String>,
}

pub(crate) fn run(cmd: &DnssecCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DnssecCommand::Keygen(a) => {
            let origin = Name::from_ascii(format!("{}.", a.zone.trim_end_matches('.')))
                .with_context(|| format!("--zone {:?} is not a domain name", a.zone))?;
            let dir = std::path::absolute(&a.dir).unwrap_or_else(|_| a.dir.clone());
            let base = keygen(&dir, &origin, a.algorithm, a.role).map_err(anyhow::Error::msg)?;
            println!("{}", base.display());
            Ok(ExitCode::SUCCESS)
        }
        DnssecCommand::Ds(a) => {
            let config = Config::load(&a.file).map_err(|e| anyhow::anyhow!("{}: {e}", a.file.display()))?;
            let mut printed = 0;
            for z in config.zones() {
                if a.zone
                    .as_deref()
                    .is_some_and(|w| w.trim_end_matches('.') != z.origin.as_str())
                {
                    continue;
                }
                let Some(d) = &z.dnssec else { continue };
                let keys = ZoneKeys::load(&z.origin, d).map_err(|p| {
                    let lines: Vec<String> = p.iter().map(|p| format!("  {p}")).collect();
                    anyhow::anyhow!(
                        "{}: {} problem(s):\n{}",
                        a.file.display(),
                        p.len(),
                        lines.join("\n")
                    )
                })?;
                for line in ds_records(&keys, z.ttl) {
                    println!("{line}");
                    printed += 1;
                }
            }
            if printed == 0 {
                bail!(
                    "{}: no signed zone{} (a zone is signed by its [zones.NAME.dnssec] table)",
                    a.file.display(),
                    a.zone
                        .as_deref()
                        .map(|z| format!(" named {z}"))
                        .unwrap_or_default()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `meridian up --dnssec`: for every zone of `config` without a `dnssec` table, its combined signing key
/// in `dir` (the first `K<zone>.+013+*` pair there, else a new one). Returns (zone, key base path) pairs.
pub(crate) fn demo_keys(config: &Config, dir: &std::path::Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for z in config.zones().iter().filter(|z| z.dnssec.is_none()) {
        let zone = z.origin.as_str().to_owned();
        let prefix = format!("K{zone}.+013+");
        let mut existing: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".private"))
                    })
                    .map(|p| p.with_extension(""))
                    .collect()
            })
            .unwrap_or_default();
        existing.sort();
        let base = match existing.into_iter().next() {
            Some(b) => b,
            None => {
                let origin = Name::from_ascii(format!("{zone}.")).with_context(|| zone.clone())?;
                keygen(dir, &origin, KeyAlgorithm::EcdsaP256, KeyRole::Csk)
                    .map_err(|e| anyhow::anyhow!("making a DNSSEC key for {zone}: {e}"))?
            }
        };
        out.push((zone, base));
    }
    Ok(out)
}

/// The configuration text `local` with a `dnssec` table naming each key of `keys` in its zone.
pub(crate) fn sign_zones(local: &str, keys: &[(String, PathBuf)]) -> anyhow::Result<String> {
    if keys.is_empty() {
        return Ok(local.to_owned());
    }
    let mut doc: toml::Table = toml::from_str(local)?;
    let zones = doc
        .get_mut("zones")
        .and_then(toml::Value::as_table_mut)
        .context("no [zones]")?;
    for (zone, base) in keys {
        let Some(z) = zones.get_mut(zone).and_then(toml::Value::as_table_mut) else {
            continue;
        };
        let mut d = toml::Table::new();
        d.insert(
            "keys".into(),
            toml::Value::Array(vec![base.display().to_string().into()]),
        );
        z.insert("dnssec".into(), toml::Value::Table(d));
    }
    Ok(format!(
        "# Generated by `meridian up --dnssec`: the zones signed with keys from its data directory.\n{}",
        toml::to_string(&doc)?
    ))
}

/// The banner's DNSSEC lines: each signed zone's DS records (also written to `dir/trust-anchors.conf` for
/// `delv`, and `dir/ZONE.ds` for Unbound's `trust-anchor-file`), and commands that validate.
pub(crate) fn banner(
    config: &Config,
    dir: &std::path::Path,
    dns: &std::net::SocketAddr,
) -> anyhow::Result<String> {
    let at = if dns.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else {
        dns.ip().to_string()
    };
    let port = dns.port();
    let mut out =
        String::from("DNSSEC (signed online; DS records for the parent zone, or a trust anchor):\n");
    let mut anchors = String::from("trust-anchors {\n");
    let host = config
        .services()
        .first()
        .map_or_else(|| "SERVICE".to_owned(), |s| s.hostname.to_string());
    for z in config.zones() {
        let Some(d) = &z.dnssec else { continue };
        let keys = ZoneKeys::load(&z.origin, d).map_err(|p| {
            anyhow::anyhow!(
                "DNSSEC keys of {}: {}",
                z.origin,
                p.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
            )
        })?;
        let lines = ds_records(&keys, z.ttl);
        let ds_file = dir.join(format!("{}.ds", z.origin));
        let mut text = String::new();
        for l in &lines {
            out += &format!("  {l}\n");
            // `ZONE. TTL IN DS TAG ALG DIGEST-TYPE DIGEST ; comment`
            let f: Vec<&str> = l.split_whitespace().collect();
            if let [zone, _, _, _, tag, alg, dt, digest, ..] = f.as_slice() {
                anchors += &format!("  {zone} static-ds {tag} {alg} {dt} \"{digest}\";\n");
                text += &format!("{zone} IN DS {tag} {alg} {dt} {digest}\n");
            }
        }
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(&ds_file, text).with_context(|| format!("writing {}", ds_file.display()))?;
        out += &format!("  (Unbound: trust-anchor-file: \"{}\")\n", ds_file.display());
    }
    anchors += "};\n";
    let anchors_file = dir.join("trust-anchors.conf");
    std::fs::write(&anchors_file, anchors).with_context(|| format!("writing {}", anchors_file.display()))?;
    let zone = config
        .zones()
        .first()
        .map_or_else(String::new, |z| z.origin.to_string());
    out += &format!(
        "  kdig @{at} -p {port} {host} A +dnssec +subnet=83.0.0.0/24    # the answer with its RRSIG\n"
    );
    out += &format!(
        "  delv @{at} -p {port} -a {} +root={zone} {host} A    # validated: \"; fully validated\"\n",
        anchors_file.display()
    );
    Ok(out)
}
