//! Which GeoIP database a command uses: an explicit `--geoip FILE`, else the configuration's
//! `geoip.database` (relative to the configuration file), else the bundled DB-IP Lite country database.

use std::path::{Path, PathBuf};

use meridian_config::Config;
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
