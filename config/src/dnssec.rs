//! A zone's `dnssec` table: online signing of everything the zone answers, with keys from files on the
//! DNS node's own disk (never from the shared store). Only the shape is checked here — paths absolute and
//! not repeated, at least one signing key, the validity in range; whether the files exist, parse, belong
//! to the zone and agree on the algorithm is `meridian-dns`'s check (`meridian_dns::dnssec::check`), which
//! reads them (`meridian config check` runs both).
//!
//! ```toml
//! [zones."gslb.example".dnssec]
//! keys = ["/etc/meridian/dnssec/Kgslb.example.+013+12345"]   # active keys: they sign
//! publish = ["/etc/meridian/dnssec/Kgslb.example.+013+54321"] # in the DNSKEY set only (rollovers)
//! signature-validity-days = 14
//! ```
//!
//! A key is named by the path of its BIND key pair (`K<zone>.+<alg>+<tag>.key` and `.private`, as
//! `dnssec-keygen`, `ldns-keygen` and `meridian dnssec keygen` write them), with or without the extension.

use std::path::PathBuf;

use serde::Deserialize;

use crate::checker::Checker;
use crate::tls::absolute;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawDnssec {
    #[serde(default)]
    pub(crate) keys: Vec<String>,
    #[serde(default)]
    pub(crate) publish: Vec<String>,
    pub(crate) signature_validity_days: Option<i64>,
}

/// The files of one key pair in BIND's format: `<base>.key` (the DNSKEY record) and `<base>.private`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyFiles {
    /// The path without its extension (`/etc/meridian/dnssec/Kgslb.example.+013+12345`).
    pub base: PathBuf,
}

impl KeyFiles {
    /// The public half: a DNSKEY record in zone-file form.
    pub fn public(&self) -> PathBuf {
        self.with_extension("key")
    }

    /// The private half: `Private-key-format: v1.x`, `Algorithm:` and `PrivateKey:` lines.
    pub fn private(&self) -> PathBuf {
        self.with_extension("private")
    }

    fn with_extension(&self, ext: &str) -> PathBuf {
        // Not `Path::with_extension`: a key's base name ends in `+12345`, after a dot that is no extension.
        let mut s = self.base.clone().into_os_string();
        s.push(".");
        s.push(ext);
        PathBuf::from(s)
    }
}

/// A zone's DNSSEC settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnssecSettings {
    /// Active keys, in file order: they sign. A key with the SEP flag (257, a KSK) signs the DNSKEY set;
    /// one without (256, a ZSK) signs everything else; with no active ZSK, the SEP keys sign everything
    /// (each is then a combined signing key, CSK).
    pub keys: Vec<KeyFiles>,
    /// Keys published in the DNSKEY set without signing: a new key before its turn, an old one after it.
    pub publish: Vec<KeyFiles>,
    /// How long a signature is valid, days (default 14; signatures are refreshed at half of it).
    pub signature_validity_days: u32,
}

/// The validity of signatures when the zone does not say (days).
pub(crate) const DEFAULT_SIGNATURE_VALIDITY_DAYS: u32 = 14;

pub(crate) fn check_dnssec(c: &mut Checker, path: &str, raw: &RawDnssec) -> Option<DnssecSettings> {
    let mut seen: Vec<KeyFiles> = Vec::new();
    let mut files = |c: &mut Checker, field: &str, list: &[String]| -> Vec<KeyFiles> {
        let mut out = Vec::new();
        for (i, v) in list.iter().enumerate() {
            let p = format!("{path}.{field}[{i}]");
            let Some(file) = absolute(c, &p, Some(v)) else {
                continue;
            };
            let s = file.to_string_lossy();
            let base = s
                .strip_suffix(".key")
                .or_else(|| s.strip_suffix(".private"))
                .unwrap_or(&s);
            let key = KeyFiles {
                base: PathBuf::from(base),
            };
            if seen.contains(&key) {
                c.err(p, format!("{} is listed twice", key.base.display()));
                continue;
            }
            seen.push(key.clone());
            out.push(key);
        }
        out
    };
    let keys = files(c, "keys", &raw.keys);
    let publish = files(c, "publish", &raw.publish);
    if raw.keys.is_empty() {
        c.err(
            format!("{path}.keys"),
            "must list at least one signing key (a KSK and a ZSK, or one CSK)",
        );
    }
    let signature_validity_days = c.int(
        &format!("{path}.signature-validity-days"),
        raw.signature_validity_days,
        DEFAULT_SIGNATURE_VALIDITY_DAYS,
        2..=90,
    );
    Some(DnssecSettings {
        keys,
        publish,
        signature_validity_days,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use crate::Config;

    const BASE: &str = r#"
schema-version = 1
[regions.fra]
name = "Frankfurt"
capacity = 100
lat = 50.1
lon = 8.7
country = "DE"
ipv4 = ["192.0.2.1"]
[zones."gslb.example"]
ns = ["ns1.dns.example"]
soa = { mname = "ns1.dns.example", rname = "hostmaster.gslb.example" }
"#;

    fn problems(dnssec: &str) -> Vec<String> {
        let text = format!("{BASE}[zones.\"gslb.example\".dnssec]\n{dnssec}\n");
        match Config::from_toml_str(&text) {
            Ok(_) => Vec::new(),
            Err(e) if e.problems().is_empty() => vec![e.to_string()],
            Err(e) => e.problems().iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn key_paths_are_normalised_to_their_base() {
        let text = format!(
            "{BASE}[zones.\"gslb.example\".dnssec]\nkeys = [\"/k/Kgslb.example.+013+00001.key\", \
             \"/k/Kgslb.example.+013+00002.private\"]\npublish = [\"/k/Kgslb.example.+013+00003\"]\n"
        );
        let config = Config::from_toml_str(&text).unwrap();
        let d = config.zones()[0].dnssec.as_ref().unwrap();
        assert_eq!(d.keys[0].base.to_str(), Some("/k/Kgslb.example.+013+00001"));
        assert_eq!(
            d.keys[1].public().to_str(),
            Some("/k/Kgslb.example.+013+00002.key")
        );
        assert_eq!(
            d.publish[0].private().to_str(),
            Some("/k/Kgslb.example.+013+00003.private")
        );
        assert_eq!(d.signature_validity_days, 14);
    }

    #[test]
    fn bad_settings_are_reported_with_their_path() {
        let p = problems("keys = []\nsignature-validity-days = 1");
        assert!(
            p.iter()
                .any(|m| m.starts_with("zones.\"gslb.example\".dnssec.keys: must list")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|m| m.starts_with("zones.\"gslb.example\".dnssec.signature-validity-days")),
            "{p:?}"
        );
        let p = problems("keys = [\"relative/K\", \"/a/K.key\"]\npublish = [\"/a/K.private\"]");
        assert!(
            p.iter()
                .any(|m| m
                    .starts_with("zones.\"gslb.example\".dnssec.keys[0]: \"relative/K\" is not an absolute")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|m| m.starts_with("zones.\"gslb.example\".dnssec.publish[0]: /a/K is listed twice")),
            "{p:?}"
        );
        let p = problems("keys = [\"/a/K\"]\nalgorithm = 13");
        assert!(!p.is_empty(), "an unknown field is refused");
    }
}
