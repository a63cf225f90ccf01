//! Turns the raw file into the validated model, or into the complete list of what is wrong with it.
//!
//! Validation never corrects: a value out of range, an unknown reference or a contradiction is reported with
//! the path of the offending field (`services.meet.regions[2]: unknown region "frx"`), and nothing is
//! applied. It collects every problem it can find in one pass, so an operator fixes a file in one round.
//!
//! This module owns the order of the checks and the top of the file (`schema-version`, `[geoip]`); each
//! section is checked by the module named for it: `regions`, `health` (`[health]` and every region's
//! `health-checks`), `residency` (with `[country-groups]`), `zones`, `services`, and `cross_checks` (what
//! only holds across sections). `[proxy]` and the services' proxy parts are `crate::proxy_settings`'s,
//! `[tls]` is `crate::tls`'s. All of them report to one [`Checker`].

mod cross_checks;
mod health;
mod latency;
mod regions;
mod residency;
mod services;
mod zones;

use std::path::PathBuf;

use crate::checker::Checker;
use crate::model::{GeoIpSettings, SCHEMA_VERSION};
use crate::raw::RawConfig;
use crate::{Config, Problem};

pub use regions::{MAX_REGIONS, MAX_WEIGHT};
pub use services::MAX_ANSWER_REGIONS;

pub(crate) fn validate(raw: RawConfig) -> Result<Config, Vec<Problem>> {
    let mut c = Checker::new();

    let schema_version = match raw.schema_version {
        None => {
            c.err(
                "schema-version",
                format!("is required (this build reads version {SCHEMA_VERSION})"),
            );
            SCHEMA_VERSION
        }
        Some(v) if v == i64::from(SCHEMA_VERSION) => SCHEMA_VERSION,
        Some(v) => {
            c.err(
                "schema-version",
                format!("version {v} is not supported (this build reads {SCHEMA_VERSION})"),
            );
            SCHEMA_VERSION
        }
    };

    let geoip = GeoIpSettings {
        database: raw.geoip.and_then(|g| match g.database {
            Some(d) if d.trim().is_empty() => {
                c.err(
                    "geoip.database",
                    "must not be empty (omit it to use the bundled database)",
                );
                None
            }
            d => d.map(PathBuf::from),
        }),
    };

    let groups = residency::check_country_groups(&mut c, &raw.country_groups);
    let regions = regions::check_regions(&mut c, &raw.regions);
    let proxy = crate::proxy_settings::check_proxy_settings(&mut c, raw.proxy.as_ref());
    let tls = crate::tls::check_tls(&mut c, raw.tls.as_ref());
    let health = health::check_health_settings(&mut c, raw.health.as_ref(), &regions);
    let index = regions::RegionIndex::new(&raw.regions);
    let residency = residency::check_residency(&mut c, &raw.residency, &groups, &regions);
    let zones = zones::check_zones(&mut c, &raw.zones);
    let services = services::check_services(&mut c, &raw.services, &index, &zones, &residency);
    cross_checks::check_service_record_conflicts(&mut c, &services, &zones);
    cross_checks::check_residency_satisfiable(&mut c, &services, &regions, &residency);
    let origins: Vec<_> = zones.iter().map(|z| z.origin.clone()).collect();
    let acme = crate::acme::check_acme(&mut c, raw.acme.as_ref(), &origins, &raw.services);
    if acme.is_some() && tls.is_none() {
        c.err(
            "acme",
            "needs a [tls] section (the proxies serve ACME certificates beside its certificates, the \
             default one among them)",
        );
    }

    let problems = c.into_problems();
    if problems.is_empty() {
        Ok(Config {
            schema_version,
            geoip,
            regions,
            zones,
            services,
            residency,
            health,
            proxy,
            tls,
            acme,
        })
    } else {
        Err(problems)
    }
}
