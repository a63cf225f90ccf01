//! Meridian's declarative model — regions, zones, services and their policies, residency rules — parsed from
//! TOML and validated.
//!
//! Owns: the configuration schema (`schema-version = 1`), the vocabulary of places (countries, continents,
//! country groups, population centres) and the rules that make a configuration acceptable.
//!
//! Must not depend on: any I/O back end (etcd, sockets, GeoIP readers) or the steering engine. Everything
//! else depends on this crate, so it stays small: serde, toml and thiserror.
//!
//! Parse, don't validate: [`Config`] can only be obtained from [`Config::from_toml_str`] or
//! [`Config::load`], which reject a file with the full list of its [`Problem`]s rather than repairing it.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod acme;
pub mod calendar;
mod checker;
mod country;
mod country_table;
mod dnssec;
#[cfg(any(test, feature = "testing"))]
pub mod fixtures;
mod model;
mod names;
pub mod notifications;
mod proxy_settings;
mod raw;
mod records;
pub mod secondaries;
mod tls;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

pub use acme::{AcmeCa, AcmeCertificate, AcmeKeyType, AcmeSettings};
pub use country::{BUILTIN_GROUPS, Continent, CountryCode, CountryInfo, CountrySet, builtin_group};
pub use dnssec::{DnssecSettings, KeyFiles};
pub use model::*;
pub use names::{DomainName, check_identifier};
pub use proxy_settings::MAX_BACKENDS_PER_REGION;
pub use records::RecordData;
pub use tls::{CertificateFiles, HopTls, PlainHttp, TlsSettings, TlsVersion};
pub use validate::{MAX_ANSWER_REGIONS, MAX_REGIONS, MAX_WEIGHT};

/// A validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    schema_version: u32,
    geoip: GeoIpSettings,
    regions: Vec<Region>,
    zones: Vec<Zone>,
    services: Vec<Service>,
    residency: Vec<ResidencyRule>,
    health: HealthSettings,
    proxy: ProxySettings,
    tls: Option<TlsSettings>,
    acme: Option<AcmeSettings>,
}

/// One thing wrong with a configuration: where, and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Dotted path of the offending field (`services.meet.regions[2]`).
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The text is not TOML of the expected shape (syntax, unknown field, wrong type).
    #[error("{}", syntax_message(.line, .column, .message))]
    Syntax {
        /// 1-based line, when known.
        line: Option<usize>,
        /// 1-based column, when known.
        column: Option<usize>,
        /// The parser's message.
        message: String,
    },
    /// The file parsed but does not describe a valid deployment.
    #[error("{} problem(s):\n{}", .0.len(), .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

fn syntax_message(line: &Option<usize>, column: &Option<usize>, message: &str) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!("line {l}, column {c}: {message}"),
        _ => message.to_owned(),
    }
}

impl ConfigError {
    /// The validation problems, if that is what went wrong.
    pub fn problems(&self) -> &[Problem] {
        match self {
            Self::Invalid(p) => p,
            _ => &[],
        }
    }
}

impl Config {
    /// Parses and validates a configuration.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        let raw: raw::RawConfig = toml::from_str(text).map_err(|e| {
            let (line, column) = match e.span() {
                Some(span) => {
                    let before = &text[..span.start.min(text.len())];
                    let line = before.matches('\n').count() + 1;
                    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                    (Some(line), Some(column))
                }
                None => (None, None),
            };
            ConfigError::Syntax {
                line,
                column,
                message: e.message().trim().to_owned(),
            }
        })?;
        validate::validate(raw).map_err(ConfigError::Invalid)
    }

    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml_str(&text)
    }

    /// The schema version the file declared.
    pub fn schema_version(&self) -> u32 {
        self.schema_version
    }

    /// GeoIP settings.
    pub fn geoip(&self) -> &GeoIpSettings {
        &self.geoip
    }

    /// Regions, in file order. Their position is their index everywhere in a running system.
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// A region by id.
    pub fn region(&self, id: &str) -> Option<&Region> {
        self.regions.iter().find(|r| r.id == id)
    }

    /// Index of a region by id.
    pub fn region_index(&self, id: &str) -> Option<usize> {
        self.regions.iter().position(|r| r.id == id)
    }

    /// Zones, in file order.
    pub fn zones(&self) -> &[Zone] {
        &self.zones
    }

    /// Services, in file order.
    pub fn services(&self) -> &[Service] {
        &self.services
    }

    /// A service by name (`meet`) or hostname (`meet.gslb.example`, trailing dot optional).
    pub fn service(&self, name_or_host: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name_or_host).or_else(|| {
            let host = DomainName::parse(name_or_host).ok()?;
            self.services.iter().find(|s| s.hostname == host)
        })
    }

    /// How prober opinions become region health.
    pub fn health(&self) -> &HealthSettings {
        &self.health
    }

    /// Settings of the regional L7 proxies.
    pub fn proxy(&self) -> &ProxySettings {
        &self.proxy
    }

    /// TLS of the proxies' HTTPS edge and of their hops between regions (`None`: no `[tls]` section).
    pub fn tls(&self) -> Option<&TlsSettings> {
        self.tls.as_ref()
    }

    /// Certificates ordered from an ACME CA (`None`: no `[acme]` section).
    pub fn acme(&self) -> Option<&AcmeSettings> {
        self.acme.as_ref()
    }

    /// Residency rules, in file order.
    pub fn residency_rules(&self) -> &[ResidencyRule] {
        &self.residency
    }

    /// A residency rule by name.
    pub fn residency_rule(&self, name: &str) -> Option<&ResidencyRule> {
        self.residency.iter().find(|r| r.name == name)
    }
}
