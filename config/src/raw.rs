//! The configuration file exactly as written: serde structs that mirror the TOML, with no meaning checked yet.
//!
//! Every table denies unknown fields, so a typo (`answer-region`) is an error rather than a silently ignored
//! line. Optional fields stay `Option` here; defaults are applied in `validate`, where they are documented.

use indexmap::IndexMap;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawConfig {
    pub(crate) schema_version: Option<i64>,
    #[serde(default)]
    pub(crate) geoip: Option<RawGeoIp>,
    #[serde(default)]
    pub(crate) regions: IndexMap<String, RawRegion>,
    #[serde(default)]
    pub(crate) zones: IndexMap<String, RawZone>,
    #[serde(default)]
    pub(crate) services: IndexMap<String, RawService>,
    #[serde(default)]
    pub(crate) country_groups: IndexMap<String, Vec<String>>,
    #[serde(default)]
    pub(crate) residency: IndexMap<String, RawResidency>,
    #[serde(default)]
    pub(crate) health: Option<RawHealth>,
    #[serde(default)]
    pub(crate) proxy: Option<RawProxy>,
    #[serde(default)]
    pub(crate) tls: Option<crate::tls::RawTls>,
    #[serde(default)]
    pub(crate) acme: Option<RawAcme>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawProxy {
    #[serde(default)]
    pub(crate) trusted_proxies: Vec<String>,
    pub(crate) connect_timeout_ms: Option<i64>,
    pub(crate) upstream_timeout_ms: Option<i64>,
    pub(crate) client_timeout_ms: Option<i64>,
    pub(crate) max_header_bytes: Option<i64>,
    pub(crate) max_body_bytes: Option<i64>,
    pub(crate) rate_limit_per_client: Option<i64>,
    pub(crate) websocket_idle_timeout_ms: Option<i64>,
    pub(crate) websocket_max_lifetime_ms: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawServiceProxy {
    pub(crate) balance: Option<String>,
    pub(crate) affinity_cookie: Option<String>,
    pub(crate) affinity_header: Option<String>,
    pub(crate) health_path: Option<String>,
    pub(crate) health_interval_ms: Option<i64>,
    pub(crate) health_timeout_ms: Option<i64>,
    pub(crate) health_rise: Option<i64>,
    pub(crate) health_fall: Option<i64>,
    pub(crate) eject_after_failures: Option<i64>,
    pub(crate) eject_for_ms: Option<i64>,
    pub(crate) backend_tls: Option<bool>,
    pub(crate) backend_ca: Option<String>,
    pub(crate) backend_server_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawHealth {
    pub(crate) healthy_above_percent: Option<i64>,
    pub(crate) stale_after_ms: Option<i64>,
    pub(crate) panic_below_percent: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawHealthCheck {
    pub(crate) kind: Option<String>,
    pub(crate) url: Option<String>,
    pub(crate) address: Option<String>,
    pub(crate) host: Option<String>,
    pub(crate) expect_status: Option<Vec<i64>>,
    pub(crate) body_match: Option<String>,
    pub(crate) interval_ms: Option<i64>,
    pub(crate) timeout_ms: Option<i64>,
    pub(crate) jitter_ms: Option<i64>,
    pub(crate) rise: Option<i64>,
    pub(crate) fall: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawGeoIp {
    pub(crate) database: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawRegion {
    pub(crate) name: Option<String>,
    pub(crate) lat: Option<f64>,
    pub(crate) lon: Option<f64>,
    pub(crate) country: Option<String>,
    #[serde(default)]
    pub(crate) jurisdictions: Vec<String>,
    #[serde(default)]
    pub(crate) ipv4: Vec<String>,
    #[serde(default)]
    pub(crate) ipv6: Vec<String>,
    pub(crate) capacity: Option<i64>,
    pub(crate) weight: Option<i64>,
    pub(crate) proxy_address: Option<String>,
    #[serde(default)]
    pub(crate) health_checks: Vec<RawHealthCheck>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawZone {
    pub(crate) ttl: Option<i64>,
    #[serde(default)]
    pub(crate) ns: Vec<String>,
    pub(crate) soa: Option<RawSoa>,
    #[serde(default)]
    pub(crate) records: Vec<RawRecord>,
    pub(crate) dnssec: Option<crate::dnssec::RawDnssec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawSoa {
    pub(crate) mname: Option<String>,
    pub(crate) rname: Option<String>,
    pub(crate) refresh: Option<i64>,
    pub(crate) retry: Option<i64>,
    pub(crate) expire: Option<i64>,
    pub(crate) minimum: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawRecord {
    pub(crate) name: Option<String>,
    #[serde(rename = "type")]
    pub(crate) rtype: Option<String>,
    pub(crate) data: Option<String>,
    pub(crate) ttl: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawService {
    pub(crate) hostname: Option<String>,
    pub(crate) policy: Option<String>,
    #[serde(default)]
    pub(crate) regions: Vec<String>,
    pub(crate) answer_regions: Option<i64>,
    pub(crate) max_addresses: Option<i64>,
    pub(crate) ttl: Option<i64>,
    pub(crate) spill_at: Option<f64>,
    pub(crate) when_all_down: Option<String>,
    pub(crate) fallback_region: Option<String>,
    #[serde(default)]
    pub(crate) residency: Vec<String>,
    pub(crate) unknown_location: Option<Vec<String>>,
    pub(crate) near_tie_km: Option<f64>,
    pub(crate) geo: Option<RawGeo>,
    #[serde(default)]
    pub(crate) backends: IndexMap<String, Vec<String>>,
    pub(crate) proxy: Option<RawServiceProxy>,
    /// `"acme"`: the hostname's certificate comes from `[acme]` (checked by `crate::acme`).
    pub(crate) tls: Option<String>,
    pub(crate) latency: Option<RawLatency>,
}

/// `[services.NAME.latency]`: steering by measured latency (`docs/latency.md`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawLatency {
    pub(crate) min_samples: Option<i64>,
    pub(crate) margin_ms: Option<f64>,
    pub(crate) margin_percent: Option<f64>,
    pub(crate) explore_percent: Option<f64>,
    pub(crate) explore_regions: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawGeo {
    #[serde(default)]
    pub(crate) countries: IndexMap<String, Vec<String>>,
    #[serde(default)]
    pub(crate) continents: IndexMap<String, Vec<String>>,
    pub(crate) default: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawResidency {
    pub(crate) description: Option<String>,
    #[serde(default)]
    pub(crate) countries: Vec<String>,
    #[serde(default)]
    pub(crate) country_groups: Vec<String>,
    pub(crate) jurisdiction: Option<String>,
    pub(crate) unknown_clients: Option<String>,
}

/// `[acme]` as written (checked by `crate::acme`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawAcme {
    pub(crate) directory: Option<String>,
    #[serde(default)]
    pub(crate) contact: Vec<String>,
    pub(crate) key_type: Option<String>,
    pub(crate) ca_root: Option<String>,
    pub(crate) key_file: Option<String>,
    pub(crate) renew_fraction: Option<f64>,
    pub(crate) retry_initial_ms: Option<i64>,
    pub(crate) retry_max_ms: Option<i64>,
    pub(crate) propagation_delay_ms: Option<i64>,
    pub(crate) propagation_timeout_ms: Option<i64>,
    #[serde(default)]
    pub(crate) certificates: Vec<RawAcmeCertificate>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawAcmeCertificate {
    #[serde(default)]
    pub(crate) names: Vec<String>,
    pub(crate) key_type: Option<String>,
    pub(crate) directory: Option<String>,
    pub(crate) contact: Option<Vec<String>>,
    pub(crate) ca_root: Option<String>,
}
