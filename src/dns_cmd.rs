//! `meridian dns`: the authoritative GeoDNS server, serving until interrupted.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use meridian_config::Config;
use meridian_dns::guard::ConnectionLimits;
use meridian_dns::rrl::RrlConfig;
use meridian_dns::server::DnsOptions;
use meridian_dns::stream::TlsListen;

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
    /// Also serve DNS-over-TLS (RFC 7858) on ADDR (853 by convention); needs --dns-tls-cert and --dns-tls-key.
    #[arg(long, value_name = "ADDR")]
    tls_listen: Option<SocketAddr>,
    /// Also serve DNS-over-HTTPS (RFC 8484, HTTP/2) on ADDR (443 by convention); needs the same certificate.
    #[arg(long, value_name = "ADDR")]
    https_listen: Option<SocketAddr>,
    /// The DNS-over-HTTPS path.
    #[arg(long, value_name = "PATH", default_value = meridian_dns::stream::DEFAULT_DOH_PATH)]
    https_path: String,
    /// Certificate chain (PEM) of the DoT and DoH listeners.
    #[arg(long, value_name = "FILE")]
    dns_tls_cert: Option<PathBuf>,
    /// Private key (PEM) of the DoT and DoH listeners.
    #[arg(long, value_name = "FILE")]
    dns_tls_key: Option<PathBuf>,
    /// TCP, DoT and DoH connections open at once, in total.
    #[arg(long, value_name = "N", default_value_t = ConnectionLimits::default().max_connections)]
    tcp_max_connections: usize,
    /// TCP, DoT and DoH connections open at once from one client network (IPv4 /24, IPv6 /56).
    #[arg(long, value_name = "N", default_value_t = ConnectionLimits::default().per_network)]
    tcp_per_network: usize,
    /// Secondaries file: who may transfer which zone (AXFR/IXFR) with which TSIG key, and is sent NOTIFY
    /// when the zone changes (docs/dns.md, "Secondaries").
    #[arg(long, value_name = "FILE")]
    secondaries: Option<PathBuf>,
    #[command(flatten)]
    notify: crate::notify_args::NotifyArgs,
    #[command(flatten)]
    admin: AdminServeArgs,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    health_store: crate::health_store_args::HealthStoreArgs,
}

pub(crate) async fn run(args: &DnsArgs) -> anyhow::Result<ExitCode> {
    crate::geo::check_interval(args.geoip_check_interval)?;
    if args.udp_workers == Some(0) {
        anyhow::bail!("--udp-workers: must be at least 1");
    }
    // Read before anything listens: a bad file or secret is an error at start, not a refused transfer.
    let secondaries = match &args.secondaries {
        Some(p) => {
            let file = meridian_config::secondaries::Secondaries::load(p)
                .with_context(|| format!("--secondaries {}", p.display()))?;
            let policy = meridian_dns::xfr::XfrPolicy::from_config(&file)
                .map_err(|e| anyhow::anyhow!("--secondaries {}: {e}", p.display()))?;
            Some(Arc::new(policy))
        }
        None => None,
    };
    let notifications = args.notify.load()?;
    let bootstrap = match &args.config {
        Some(p) => Some(Arc::new(
            Config::load(p).with_context(|| format!("{}", p.display()))?,
        )),
        None => None,
    };
    let config_file = bootstrap.as_deref().zip(args.config.as_deref());
    let (geo, geo_watch) = open_watched_geoip(config_file, args.geoip.as_deref(), args.geoip_check_interval)?;
    let node = Node::open_zoned(
        &args.store,
        &args.health_store,
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
    if args.tcp_max_connections == 0 || args.tcp_per_network == 0 {
        anyhow::bail!("--tcp-max-connections and --tcp-per-network: must be at least 1");
    }
    dns_options.limits = ConnectionLimits {
        max_connections: args.tcp_max_connections,
        per_network: args.tcp_per_network,
        busy_at: args.tcp_max_connections / 2,
        ..ConnectionLimits::default()
    };
    if !args.https_path.starts_with('/') {
        anyhow::bail!("--https-path {:?}: must start with /", args.https_path);
    }
    dns_options.doh_path = args.https_path.clone();
    if args.tls_listen.is_some() || args.https_listen.is_some() {
        let config = dns_tls_config(args.dns_tls_cert.as_deref(), args.dns_tls_key.as_deref())?;
        dns_options.dot = args.tls_listen.map(|addr| TlsListen {
            addr,
            config: config.clone(),
        });
        dns_options.doh = args.https_listen.map(|addr| TlsListen { addr, config });
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
    let _notifier = secondaries.map(|policy| state.set_secondaries(policy));
    let metrics = match args.metrics_listen {
        Some(addr) => Some(crate::metrics_http::serve(addr, node.registry.clone()).await?.0),
        None => None,
    };
    let geo_source: meridian_admin::GeoSource = {
        let state = state.clone();
        Arc::new(move || state.geo())
    };
    let instance = crate::node::default_instance("dns");
    let registration = node.register("dns", None, &instance);
    let notifier = crate::notify_args::start(
        notifications.as_ref(),
        &node,
        vec![meridian_admin::notify::Surge::dns_rrl(&node.registry)],
        &format!("dns/{instance}"),
    )?;
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
    let mut stop = crate::node::StopSignals::install()?;
    eprintln!(
        "meridian dns: serving on {} (UDP, {} workers) and {} (TCP){}{}, state from {}, GeoIP {}{}{}",
        server.udp,
        dns_options.udp_workers,
        server.tcp,
        server
            .dot
            .map(|a| format!(", {a} (DNS-over-TLS)"))
            .unwrap_or_default(),
        server
            .doh
            .map(|a| format!(", https://{a}{} (DNS-over-HTTPS)", dns_options.doh_path))
            .unwrap_or_default(),
        node.describe_stores(),
        state.geo().description(),
        metrics
            .map(|m| format!(", metrics on http://{m}/metrics"))
            .unwrap_or_default(),
        admin
            .as_ref()
            .map(|a| format!(", admin API on {}", a.url()))
            .unwrap_or_default(),
    );
    stop.wait().await;
    eprintln!("meridian dns: stopping");
    crate::notify_args::stop(notifier).await;
    registration.stop().await;
    Ok(ExitCode::SUCCESS)
}

/// The rustls configuration of the DoT and DoH listeners, from `--dns-tls-cert` and `--dns-tls-key` (ALPN
/// is set by each listener).
pub(crate) fn dns_tls_config(
    cert: Option<&std::path::Path>,
    key: Option<&std::path::Path>,
) -> anyhow::Result<Arc<meridian_tls::rustls::ServerConfig>> {
    let (Some(cert), Some(key)) = (cert, key) else {
        anyhow::bail!("--tls-listen and --https-listen need --dns-tls-cert FILE and --dns-tls-key FILE");
    };
    let chain = meridian_tls::certs::read_chain(cert)
        .with_context(|| format!("--dns-tls-cert {}", cert.display()))?;
    let key_der =
        meridian_tls::certs::read_key(key).with_context(|| format!("--dns-tls-key {}", key.display()))?;
    let provider = Arc::new(meridian_tls::rustls::crypto::ring::default_provider());
    let config = meridian_tls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .with_context(|| {
            format!(
                "--dns-tls-cert {} and --dns-tls-key {}: do not match",
                cert.display(),
                key.display()
            )
        })?;
    Ok(Arc::new(config))
}
