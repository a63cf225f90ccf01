//! Which GeoIP database a command uses: an explicit `--geoip FILE`, else the configuration's
//! `geoip.database` (relative to the configuration file), else the bundled DB-IP Lite country database; and
//! keeping whoever locates clients with it — a DNS server, proxies — current with its file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use meridian_config::Config;
use meridian_dns::server::{DnsState, follow_geo_file};
use meridian_geoip::GeoDb;
use meridian_proxy::ProxyNode;

/// Opens the database chosen by the rule above. `config` is the configuration and the file it came from,
/// when there is one.
pub(crate) fn open_geoip(config: Option<(&Config, &Path)>, over: Option<&Path>) -> anyhow::Result<GeoDb> {
    match geoip_path(config, over) {
        Some(path) => {
            let db = GeoDb::open(&path)?;
            meridian_alloc::release_freed_memory();
            Ok(db)
        }
        None => Ok(GeoDb::bundled()?),
    }
}

/// [`open_geoip`], and the file to follow for new versions, checked every `interval_s` seconds (`None`:
/// the bundled database, which never changes).
pub(crate) fn open_watched_geoip(
    config: Option<(&Config, &Path)>,
    over: Option<&Path>,
    interval_s: f64,
) -> anyhow::Result<(GeoDb, Option<GeoWatch>)> {
    let geo = open_geoip(config, over)?;
    let watch = geoip_path(config, over).map(|file| GeoWatch { file, interval_s });
    Ok((geo, watch))
}

/// The database file chosen by the rule above; `None`: the bundled database.
fn geoip_path(config: Option<(&Config, &Path)>, over: Option<&Path>) -> Option<PathBuf> {
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

/// A GeoIP database file to follow, and how often to look at it (`--geoip-check-interval`).
#[derive(Clone, Debug)]
pub(crate) struct GeoWatch {
    pub(crate) file: PathBuf,
    pub(crate) interval_s: f64,
}

impl GeoWatch {
    /// How the banners say it.
    pub(crate) fn describe(&self) -> String {
        format!("file watched (every {} s, and on SIGHUP)", self.interval_s)
    }
}

/// Refuses a `--geoip-check-interval` that is not a positive number of seconds.
pub(crate) fn check_interval(seconds: f64) -> anyhow::Result<()> {
    if !(seconds.is_finite() && seconds > 0.0) {
        bail!("--geoip-check-interval: must be a positive number of seconds");
    }
    Ok(())
}

/// What locates clients with a database and takes every new version of its file.
pub(crate) enum GeoUser<'a> {
    /// A DNS server: its state loads the file (its metrics count reloads and failures) and passes each
    /// database on to whoever follows it ([`follow_dns_geo`]).
    Dns(&'a Arc<DnsState>),
    /// Proxies: each swaps in every new database (`ProxyNode::set_geo`).
    Proxies(&'a [Arc<ProxyNode>]),
}

/// Keeps `user`'s GeoIP database current with `watch.file`: checked every `watch.interval_s` seconds, and at
/// once on SIGHUP. A file that does not load is logged and the current database kept. Must run inside the
/// tokio runtime.
pub(crate) fn watch_geoip(user: GeoUser<'_>, watch: &GeoWatch) -> anyhow::Result<()> {
    let hup = Arc::new(tokio::sync::Notify::new());
    let (file, interval) = (watch.file.clone(), Duration::from_secs_f64(watch.interval_s));
    match user {
        GeoUser::Dns(state) => {
            let state = state.clone();
            follow_geo_file(file, interval, hup.clone(), move |path| {
                let loaded = state.reload_geo(path);
                meridian_alloc::release_freed_memory();
                loaded
            });
        }
        GeoUser::Proxies(nodes) => {
            let nodes = nodes.to_vec();
            follow_geo_file(file, interval, hup.clone(), move |path| {
                let geo = Arc::new(GeoDb::open(path)?);
                meridian_alloc::release_freed_memory();
                tracing::info!(database = geo.description(), "GeoIP database loaded");
                for node in &nodes {
                    node.set_geo(geo.clone());
                }
                Ok(())
            });
        }
    }
    let mut signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    tokio::spawn(async move {
        while signal.recv().await.is_some() {
            hup.notify_one();
        }
    });
    Ok(())
}

/// Makes `proxies` locate clients with the database `dns` has, now and after each of its reloads:
/// `meridian up`'s proxies and DNS server share one database.
pub(crate) fn follow_dns_geo(dns: &DnsState, proxies: Vec<Arc<ProxyNode>>) {
    let mut changes = dns.geo_changes();
    // Whatever the DNS server loaded before this subscription is passed on first.
    let current = changes.borrow_and_update().clone();
    for node in &proxies {
        node.set_geo(current.clone());
    }
    tokio::spawn(async move {
        while changes.changed().await.is_ok() {
            let geo = changes.borrow_and_update().clone();
            for node in &proxies {
                node.set_geo(geo.clone());
            }
        }
    });
}
