//! The secondaries of a DNS node (`meridian dns --secondaries FILE`): which servers may transfer which
//! zone (AXFR/IXFR) with which TSIG key, and are sent a NOTIFY when the zone changes.
//!
//! A file of its own, read by the DNS node and never put in the store: it names TSIG secrets (by file, so
//! that the secret itself is not in this file either), and who may transfer from this node is the node's
//! business. Parsed and validated like the configuration: every problem, with its path.
//!
//! ```toml
//! [keys.xfr]
//! algorithm = "hmac-sha256"
//! secret-file = "xfr.secret"          # base64, as `keymgr -t` or `tsig-keygen` print; relative to this file
//!
//! [[zones."gslb.example".secondaries]]
//! address = "127.0.0.1:5300"          # NOTIFY goes here; transfers are allowed from its IP
//! key = "xfr"
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::checker::Checker;
use crate::names::DomainName;
use crate::{ConfigError, Problem};

/// TSIG algorithms accepted (RFC 8945 §6: HMAC-SHA256 is the one to implement).
pub const TSIG_ALGORITHMS: [&str; 1] = ["hmac-sha256"];

/// A validated secondaries file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Secondaries {
    /// TSIG keys by name.
    pub keys: BTreeMap<String, TsigKeyFile>,
    /// Zones with secondaries, by origin.
    pub zones: BTreeMap<DomainName, Vec<Secondary>>,
}

/// A TSIG key: its algorithm and where its secret is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TsigKeyFile {
    /// The algorithm, one of [`TSIG_ALGORITHMS`].
    pub algorithm: String,
    /// The file holding the secret in base64 (resolved against the secondaries file's directory).
    pub secret_file: PathBuf,
}

/// One secondary of a zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Secondary {
    /// Where NOTIFY is sent; transfers are allowed from its IP address.
    pub address: SocketAddr,
    /// The TSIG key (a name under `[keys]`) it signs its requests with.
    pub key: String,
    /// Whether it is sent NOTIFY (default true).
    pub notify: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    keys: BTreeMap<String, RawKey>,
    #[serde(default)]
    zones: BTreeMap<String, RawZone>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawKey {
    algorithm: Option<String>,
    secret_file: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawZone {
    #[serde(default)]
    secondaries: Vec<RawSecondary>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecondary {
    address: Option<String>,
    key: Option<String>,
    notify: Option<bool>,
}

impl Secondaries {
    /// Parses and validates a secondaries file's text; relative secret files are taken from `base`.
    pub fn from_toml_str(text: &str, base: &Path) -> Result<Self, ConfigError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            line: None,
            column: None,
            message: e.message().trim().to_owned(),
        })?;
        let mut c = Checker::new();
        let mut keys = BTreeMap::new();
        // Keys declared, good or not: a secondary naming a bad key is not told "no key" as well.
        let declared: Vec<String> = raw.keys.keys().cloned().collect();
        for (name, k) in raw.keys {
            let path = format!("keys.{name}");
            if DomainName::parse(&name).is_err() {
                c.err(
                    &path,
                    "a key name must be a domain name (letters, digits, hyphens, dots)",
                );
            }
            let algorithm = c.required(&format!("{path}.algorithm"), k.algorithm);
            if let Some(a) = &algorithm
                && !TSIG_ALGORITHMS.contains(&a.as_str())
            {
                c.err(
                    format!("{path}.algorithm"),
                    format!("{a:?} is not supported; use one of {TSIG_ALGORITHMS:?}"),
                );
            }
            let secret = c.required(&format!("{path}.secret-file"), k.secret_file);
            if let (Some(algorithm), Some(secret)) = (algorithm, secret) {
                keys.insert(
                    name,
                    TsigKeyFile {
                        algorithm,
                        secret_file: base.join(secret),
                    },
                );
            }
        }
        let mut zones = BTreeMap::new();
        for (origin, z) in raw.zones {
            let path = format!("zones.{origin:?}");
            let Ok(name) = DomainName::parse(origin.trim_end_matches('.')) else {
                c.err(&path, "not a domain name");
                continue;
            };
            let mut list = Vec::new();
            let listed = z.secondaries.len();
            for (i, s) in z.secondaries.into_iter().enumerate() {
                let p = format!("{path}.secondaries[{i}]");
                let address = c
                    .required(&format!("{p}.address"), s.address)
                    .and_then(|a| match a.parse::<SocketAddr>() {
                        Ok(a) => Some(a),
                        Err(_) => {
                            c.err(
                                format!("{p}.address"),
                                format!("{a:?} is not an address with a port (\"192.0.2.53:53\", \"[2001:db8::53]:53\")"),
                            );
                            None
                        }
                    });
                let key = c.required(&format!("{p}.key"), s.key);
                if let Some(k) = &key
                    && !declared.contains(k)
                {
                    c.err(format!("{p}.key"), format!("no key {k:?} under [keys]"));
                }
                if let (Some(address), Some(key)) = (address, key) {
                    list.push(Secondary {
                        address,
                        key,
                        notify: s.notify.unwrap_or(true),
                    });
                }
            }
            if listed == 0 {
                c.err(format!("{path}.secondaries"), "lists no secondary");
            }
            zones.insert(name, list);
        }
        let problems: Vec<Problem> = c.into_problems();
        if problems.is_empty() {
            Ok(Self { keys, zones })
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// Reads, parses and validates a secondaries file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml_str(&text, path.parent().unwrap_or(Path::new(".")))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_good_file_resolves_secrets_next_to_it() {
        let s = Secondaries::from_toml_str(
            r#"
            [keys.xfr]
            algorithm = "hmac-sha256"
            secret-file = "xfr.secret"
            [[zones."gslb.example".secondaries]]
            address = "127.0.0.1:5300"
            key = "xfr"
            "#,
            Path::new("/etc/meridian"),
        )
        .unwrap();
        assert_eq!(s.keys["xfr"].secret_file, Path::new("/etc/meridian/xfr.secret"));
        let zone = &s.zones[&DomainName::parse("gslb.example").unwrap()];
        assert_eq!(zone[0].address, "127.0.0.1:5300".parse().unwrap());
        assert!(zone[0].notify);
    }

    #[test]
    fn every_problem_is_named_with_its_path() {
        let err = Secondaries::from_toml_str(
            r#"
            [keys.xfr]
            algorithm = "hmac-md5"
            [[zones."gslb.example".secondaries]]
            address = "127.0.0.1"
            key = "other"
            [zones."b.example"]
            "#,
            Path::new("."),
        )
        .unwrap_err();
        let text: Vec<String> = err.problems().iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "keys.xfr.algorithm: \"hmac-md5\" is not supported; use one of [\"hmac-sha256\"]",
                "keys.xfr.secret-file: is required",
                "zones.\"b.example\".secondaries: lists no secondary",
                "zones.\"gslb.example\".secondaries[0].address: \"127.0.0.1\" is not an address with a port (\"192.0.2.53:53\", \"[2001:db8::53]:53\")",
                "zones.\"gslb.example\".secondaries[0].key: no key \"other\" under [keys]",
            ]
        );
        assert!(matches!(
            Secondaries::from_toml_str("[zones.x]\nbogus = 1", Path::new(".")),
            Err(ConfigError::Syntax { .. })
        ));
    }
}
