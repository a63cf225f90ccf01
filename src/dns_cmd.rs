//! `meridian dns`: the authoritative GeoDNS server, serving until interrupted.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use meridian_config::Config;
use meridian_dns::server::{DnsServer, DnsState};
use meridian_store::{SnapshotWatcher, WatcherOptions};

use crate::geo::open_geoip;
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
    /// GeoIP database (default: the configuration's, else the bundled DB-IP Lite country database).
    #[arg(long, value_name = "FILE")]
    geoip: Option<PathBuf>,
    /// Keep a copy of the last synced state here, to serve from after a restart during a store outage.
    #[arg(long, value_name = "FILE")]
    cache_file: Option<PathBuf>,
    /// UDP worker tasks.
    #[arg(long, value_name = "N", default_value_t = 2)]
    udp_workers: usize,
    #[command(flatten)]
    store: StoreArgs,
}

pub(crate) async fn run(args: &DnsArgs) -> anyhow::Result<ExitCode> {
    let bootstrap = match &args.config {
        Some(p) => Some(Arc::new(
            Config::load(p).with_context(|| format!("{}", p.display()))?,
        )),
        None => None,
    };
    let geo = open_geoip(
        bootstrap.as_deref().zip(args.config.as_deref()),
        args.geoip.as_deref(),
    )?;
    let store = args.store.open()?;
    let mut options = WatcherOptions::new(args.store.keys()?);
    options.bootstrap = bootstrap;
    options.cache_file = args.cache_file.clone();
    let watcher = Arc::new(SnapshotWatcher::spawn(store.clone(), options));
    let server = DnsServer::bind(args.listen, DnsState::new(watcher, geo), args.udp_workers)
        .await
        .with_context(|| format!("cannot listen on {} (UDP and TCP)", args.listen))?;
    eprintln!(
        "meridian dns: serving on {} (UDP) and {} (TCP), state from {}",
        server.udp,
        server.tcp,
        store.describe()
    );
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    eprintln!("meridian dns: stopping");
    Ok(ExitCode::SUCCESS)
}
