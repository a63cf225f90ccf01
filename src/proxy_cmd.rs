//! `meridian proxy --region ID`: the HTTP entry point of a region, serving until interrupted (SIGINT or
//! SIGTERM: listeners close, requests in flight finish within `--grace-period`, the load report's lease
//! is revoked). A GeoIP database file is followed without a restart (every `--geoip-check-interval`
//! seconds, and on SIGHUP), as `meridian dns` follows its own.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use meridian_config::Config;
use meridian_proxy::ServerOptions;

use crate::geo::open_watched_geoip;
use crate::node::Node;
use crate::roles::{ProxyGeo, ProxyPlan, RegionListeners};
use crate::store_args::StoreArgs;

/// Arguments of `meridian proxy`.
#[derive(clap::Args)]
pub(crate) struct ProxyArgs {
    /// The region this proxy serves (a region id of the configuration).
    #[arg(long, value_name = "ID")]
    region: String,
    /// Address for HTTP (with --https-listen: redirects to HTTPS, or serves, as `tls.plain-http` says).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Address for HTTPS (HTTP/2 and HTTP/1.1; certificates from the configuration's [tls] section).
    #[arg(long, value_name = "ADDR")]
    https_listen: Option<SocketAddr>,
    /// Address for requests spilled from other regions' proxies, over mutual TLS ([tls.hops]); the
    /// configuration's `regions.ID.proxy-address` of this region should name it.
    #[arg(long, value_name = "ADDR")]
    hop_listen: Option<SocketAddr>,
    /// Serve Prometheus metrics on http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// Configuration to serve while the store holds none (the store's, once applied, wins).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// GeoIP database (default: the configuration's, else the bundled DB-IP Lite country database). A file
    /// is watched: a new version is loaded without a restart (also on SIGHUP).
    #[arg(long, value_name = "FILE")]
    geoip: Option<PathBuf>,
    /// How often to check the GeoIP database file for a new version.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    geoip_check_interval: f64,
    /// Seconds a shutdown waits for requests in flight (0 to 300).
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    grace_period: f64,
    /// Worker threads.
    #[arg(long, value_name = "N", default_value_t = 1)]
    threads: usize,
    /// This instance's name in load reports (default: HOSTNAME-PID).
    #[arg(long, value_name = "NAME")]
    instance: Option<String>,
    /// In-flight requests this instance serves well, reported as its capacity (default: the region's
    /// configured capacity applies).
    #[arg(long, value_name = "N")]
    capacity: Option<u32>,
    /// Keep a copy of the last synced state here, to serve from after a restart during a store outage.
    #[arg(long, value_name = "FILE")]
    cache_file: Option<PathBuf>,
    #[command(flatten)]
    notify: crate::notify_args::NotifyArgs,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    health_store: crate::health_store_args::HealthStoreArgs,
}

pub(crate) async fn run(args: &ProxyArgs) -> anyhow::Result<ExitCode> {
    if !(args.grace_period.is_finite() && (0.0..=300.0).contains(&args.grace_period)) {
        bail!("--grace-period: must be 0 to 300 seconds");
    }
    if !(1..=256).contains(&args.threads) {
        bail!("--threads: must be 1 to 256");
    }
    if args.capacity == Some(0) {
        bail!("--capacity: must be at least 1");
    }
    crate::geo::check_interval(args.geoip_check_interval)?;
    let instance = args
        .instance
        .clone()
        .unwrap_or_else(|| crate::node::default_instance("proxy"));
    if instance.is_empty() || instance.contains('/') {
        bail!("--instance {instance:?}: must be non-empty and contain no '/'");
    }
    let notifications = args.notify.load()?;
    let bootstrap = match &args.config {
        Some(p) => Some(Arc::new(
            Config::load(p).with_context(|| format!("{}", p.display()))?,
        )),
        None => None,
    };
    if let Some(c) = &bootstrap
        && c.region(&args.region).is_none()
    {
        let known: Vec<&str> = c.regions().iter().map(|r| r.id.as_str()).collect();
        bail!(
            "--region {:?}: not a region of {} (known: {})",
            args.region,
            args.config
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            known.join(", ")
        );
    }
    let config_file = bootstrap.as_deref().zip(args.config.as_deref());
    let (geo, geo_watch) = open_watched_geoip(config_file, args.geoip.as_deref(), args.geoip_check_interval)?;
    let geo = Arc::new(geo);
    let node = Node::open_zoned(
        &args.store,
        &args.health_store,
        bootstrap.clone(),
        args.cache_file.clone(),
        prometheus::Registry::new(),
    )?;
    let registration = node.register("proxy", Some(&args.region), &instance);
    let https = match args.https_listen {
        Some(addr) => {
            let edge = crate::tls_edge::start_edge(
                node.watcher.clone(),
                node.keys.clone(),
                bootstrap.as_deref(),
                None,
                &node.registry,
            )
            .context("--https-listen")?;
            Some((addr, edge))
        }
        None => None,
    };
    let hop = match args.hop_listen {
        Some(addr) => {
            let hops = crate::tls_edge::hops_of(&node.watcher, bootstrap.as_deref(), None);
            let config = crate::tls_edge::hop_server(hops.as_ref()).context("--hop-listen")?;
            Some((addr, config))
        }
        None => None,
    };
    let geo_description = match &geo_watch {
        Some(w) => format!("{}, {}", geo.description(), w.describe()),
        None => geo.description().to_owned(),
    };
    let grace = Duration::from_secs_f64(args.grace_period);
    let server = crate::roles::start_proxies(
        &node,
        ProxyPlan {
            regions: vec![RegionListeners {
                region: args.region.clone(),
                http: args.listen,
                https,
                hop,
            }],
            instance: instance.clone(),
            capacity: args.capacity,
            server: ServerOptions {
                threads: args.threads,
                grace,
                ..ServerOptions::default()
            },
            geo: ProxyGeo::Own(geo, geo_watch),
        },
    )
    .await?;
    let metrics_addr = match args.metrics_listen {
        Some(addr) => Some(crate::metrics_http::serve(addr, node.registry.clone()).await?.0),
        None => None,
    };
    let notifier = crate::notify_args::start(
        notifications.as_ref(),
        &node,
        vec![meridian_admin::notify::Surge::proxy_rate_limit(&node.registry)],
        &format!("proxy/{instance}"),
    )?;
    let mut stop = crate::node::StopSignals::install()?;
    eprintln!(
        "meridian proxy: region {} serving HTTP on {}{}{} (instance {instance}, {} thread(s)), state from {}, GeoIP {}{}",
        args.region,
        args.listen,
        args.https_listen
            .map(|a| format!(", HTTPS on {a}"))
            .unwrap_or_default(),
        args.hop_listen
            .map(|a| format!(", hops (mutual TLS) on {a}"))
            .unwrap_or_default(),
        args.threads,
        node.describe_stores(),
        geo_description,
        metrics_addr
            .map(|m| format!(", metrics on http://{m}/metrics"))
            .unwrap_or_default(),
    );
    stop.wait().await;
    eprintln!(
        "meridian proxy: stopping (waiting up to {:.1} s for requests in flight)",
        grace.as_secs_f64()
    );
    let left = server.shutdown().await;
    if left > 0 {
        eprintln!("meridian proxy: {left} request(s) still in flight at the end of the grace period");
    }
    crate::notify_args::stop(notifier).await;
    registration.stop().await;
    eprintln!("meridian proxy: stopped");
    Ok(ExitCode::SUCCESS)
}
