//! `meridian dns`: the authoritative GeoDNS server, serving until interrupted.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use meridian_config::Config;
use meridian_dns::rrl::RrlConfig;
use meridian_dns::server::DnsOptions;

use crate::admin_args::AdminServeArgs;
use crate::geo::open_watched_geoip;
use crate::node::Node;
use crate::roles::Dns;
use crate::store_args::StoreArgs;

/// Arguments of `meridian dns`.
#[derive(clap::Args)]
pub(crate) struct DnsArgs {
    /// Configuration to serve while the store holds none (the store's, once applied, wins).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address for UDP and TCP.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5353")]
    listen: SocketAddr,
    /// Serve Prometheus metrics on http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// GeoIP database (default: the configuration's, else the bundled DB-IP Lite country database). A file
    /// is watched: a new version is loaded without a restart (also on SIGHUP).
    #[arg(long, value_name = "FILE")]
    geoip: Option<PathBuf>,
    /// How often to check the GeoIP database file for a new version.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    geoip_check_interval: f64,
    /// Keep a copy of the last synced state here, to serve from after a restart during a store outage.
    #[arg(long, value_name = "FILE")]
    cache_file: Option<PathBuf>,
    /// UDP worker threads, each with its own socket (default: one per CPU).
    #[arg(long, value_name = "N")]
    udp_workers: Option<usize>,
    /// Response rate limiting: identical responses per second per client /24 (IPv6 /56); 0 turns it off.
    #[arg(long, value_name = "N", default_value_t = RrlConfig::default().rate)]
    rrl_rate: u32,
    /// Response rate limiting: burst allowed above the rate.
    #[arg(long, value_name = "N", default_value_t = RrlConfig::default().burst)]
    rrl_burst: u32,
    /// Response rate limiting: send every Nth limited response truncated (TC=1) instead of dropping it,
    /// so real clients retry over TCP (0: drop all).
    #[arg(long, value_name = "N", default_value_t = RrlConfig::default().slip)]
    rrl_slip: u32,
    #[command(flatten)]
    admin: AdminServeArgs,
    #[command(flatten)]
    store: StoreArgs,
}

pub(crate) async fn run(args: &DnsArgs) -> anyhow::Result<ExitCode> {
    crate::geo::check_interval(args.geoip_check_interval)?;
    if args.udp_workers == Some(0) {
        anyhow::bail!("--udp-workers: must be at least 1");
    }
    let bootstrap = match &args.config {
        Some(p) => Some(Arc::new(
            Config::load(p).with_context(|| format!("{}", p.display()))?,
        )),
        None => None,
    };
    let config_file = bootstrap.as_deref().zip(args.config.as_deref());
    let (geo, geo_watch) = open_watched_geoip(config_file, args.geoip.as_deref(), args.geoip_check_interval)?;
    let node = Node::open(
        &args.store,
        bootstrap,
        args.cache_file.clone(),
        prometheus::Registry::new(),
    )?;
    let rrl = RrlConfig {
        rate: args.rrl_rate,
        burst: args.rrl_burst,
        slip: args.rrl_slip,
        ..RrlConfig::default()
    };
    let mut dns_options = DnsOptions {
        rrl,
        ..DnsOptions::default()
    };
    if let Some(n) = args.udp_workers {
        dns_options.udp_workers = n;
    }
    let Dns { state, server } = crate::roles::start_dns(
        &node,
        args.listen,
        &dns_options,
        geo,
        geo_watch.as_ref(),
        format!("cannot listen on {} (UDP and TCP)", args.listen),
    )
    .await?;
    let metrics = match args.metrics_listen {
        Some(addr) => Some(crate::metrics_http::serve(addr, node.registry.clone()).await?.0),
        None => None,
    };
    let geo_source: meridian_admin::GeoSource = {
        let state = state.clone();
        Arc::new(move || state.geo())
    };
    let registration = node.register("dns", None, &crate::node::default_instance("dns"));
    let admin = args
        .admin
        .start(
            node.store.clone(),
            node.keys.clone(),
            node.watcher.clone(),
            geo_source,
            format!("meridian dns on {}", server.udp),
            args.store.embedded_dir().as_deref(),
        )
        .await?;
    eprintln!(
        "meridian dns: serving on {} (UDP, {} workers) and {} (TCP), state from {}, GeoIP {}{}{}",
        server.udp,
        dns_options.udp_workers,
        server.tcp,
        node.store.describe(),
        state.geo().description(),
        metrics
            .map(|m| format!(", metrics on http://{m}/metrics"))
            .unwrap_or_default(),
        admin
            .as_ref()
            .map(|a| format!(", admin API on {}", a.url()))
            .unwrap_or_default(),
    );
    crate::node::stop_signal().await?;
    eprintln!("meridian dns: stopping");
    registration.stop().await;
    Ok(ExitCode::SUCCESS)
}
