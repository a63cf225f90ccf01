//! Which GeoIP database a command uses: an explicit `--geoip FILE`, else the configuration's
//! `geoip.database` (relative to the configuration file), else the bundled DB-IP Lite country database; and
//! keeping a DNS server's database current with its file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use meridian_config::Config;
use meridian_dns::server::DnsState;
use meridian_geoip::GeoDb;

/// Opens the database chosen by the rule above. `config` is the configuration and the file it came from,
/// when there is one.
pub(crate) fn open_geoip(config: Option<(&Config, &Path)>, over: Option<&Path>) -> anyhow::Result<GeoDb> {
    match geoip_path(config, over) {
        Some(path) => Ok(GeoDb::open(&path)?),
        None => Ok(GeoDb::bundled()?),
    }
}

/// The database file chosen by the rule above; `None`: the bundled database.
pub(crate) fn geoip_path(config: Option<(&Config, &Path)>, over: Option<&Path>) -> Option<PathBuf> {
    let configured = config.and_then(|(cfg, file)| {
        let p = cfg.geoip().database.as_ref()?;
        Some(if p.is_relative() {
            file.parent().unwrap_or(Path::new(".")).join(p)
        } else {
            p.clone()
        })
    });
    over.map(Path::to_path_buf).or(configured)
}

/// Keeps `state`'s GeoIP database current with `path`: checked every `interval_s` seconds, and at once on
/// SIGHUP. Must run inside the tokio runtime.
pub(crate) fn watch_geoip(state: &Arc<DnsState>, path: PathBuf, interval_s: f64) -> anyhow::Result<()> {
    let hup = Arc::new(tokio::sync::Notify::new());
    state.watch_geo_file(path, Duration::from_secs_f64(interval_s), hup.clone());
    let mut signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    tokio::spawn(async move {
        while signal.recv().await.is_some() {
            hup.notify_one();
        }
    });
    Ok(())
}
