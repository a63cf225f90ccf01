//! `meridian up`: the whole system on one machine, in one process — the command a newcomer runs first.
//!
//! It runs, over ONE state store (the embedded store in a data directory by default, or etcd): the
//! authoritative DNS server, a demo origin per region (standing in for the region's application), one
//! regional proxy per region in front of it, probers from several vantage points (all local here) probing
//! the origins, the admin API and Prometheus metrics. The configuration (default: the reference deployment
//! `examples/meridian.toml`, built in) is adapted to the machine — every region's health checks and
//! backends point at its demo origin on loopback — and applied to the store (audited) when it differs from
//! what is stored. Operator state (weights, drains, drills) persists in the data directory across runs.
//! The DNS server, the proxies and the probers are started by the functions `meridian dns`, `meridian
//! proxy` and `meridian health` use (`roles`), over one [`Node`]; the proxies follow the DNS server's GeoIP
//! database.
//!
//! Every listening address is bound before anything is announced, so a port already taken is a clear
//! error naming it, and nothing is left half-started. Ctrl-C stops everything: probers revoke their lease,
//! proxies stop within their grace period.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use meridian_admin::notify::Surge;
use meridian_config::Config;
use meridian_dns::rrl::RrlConfig;
use meridian_dns::server::{DnsOptions, DnsServer, DnsState};
use meridian_dns::stream::TlsListen;
use meridian_probe::{Prober, follow_config};
use meridian_proxy::ProxyServer;
use meridian_store::{ApplyOutcome, apply_config, now_ms};
use prometheus::Registry;

use crate::demo_origin::DemoOrigin;
use crate::node::Node;
use crate::roles::{ProberPlan, ProxyGeo, ProxyPlan, RegionListeners};
use crate::store_args::StoreArgs;

/// The reference deployment, served when no `--config` is given.
const EXAMPLE: &str = include_str!("../examples/meridian.toml");

/// Arguments of `meridian up`.
#[derive(clap::Args)]
pub(crate) struct UpArgs {
    /// Configuration to run [default: the reference deployment, examples/meridian.toml, built in].
    /// Health checks and backends are replaced by the local demo origins.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// DNS server address (UDP and TCP).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5353")]
    dns_listen: SocketAddr,
    /// Also serve DNS-over-TLS on ADDR, with a certificate from the demo CA (DATA_DIR/tls/dns.pem).
    #[arg(long, value_name = "ADDR")]
    dns_tls_listen: Option<SocketAddr>,
    /// Also serve DNS-over-HTTPS (HTTP/2, /dns-query) on ADDR, with the same certificate.
    #[arg(long, value_name = "ADDR")]
    dns_https_listen: Option<SocketAddr>,
    /// Prometheus metrics of every part at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9100")]
    metrics_listen: SocketAddr,
    /// Admin API (HTTP/JSON, docs/admin-api.md) for `meridian status`, `region`, `drill`, `explain`.
    /// Its bearer token is DATA_DIR/admin-token (created on first run), where the CLI finds it.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9090")]
    admin_listen: SocketAddr,
    /// First proxy port: region N of the configuration (from 0) gets a proxy on PROXY_IP:PROXY_PORT+N
    /// (0: free ports, for tests).
    #[arg(long, value_name = "PORT", default_value_t = 8081)]
    proxy_port: u16,
    /// Address of the regional proxies.
    #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
    proxy_ip: IpAddr,
    /// First HTTPS port: region N gets HTTPS on PROXY_IP:HTTPS_PORT+N (0: free ports, for tests). Without
    /// a [tls] section in the configuration, the certificates come from a demo CA made in DATA_DIR/tls.
    #[arg(long, value_name = "PORT", default_value_t = 8443)]
    https_port: u16,
    /// Seconds Ctrl-C waits for proxied requests in flight.
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    grace_period: f64,
    /// Probers to run (vantage points up-1, up-2, ...): a region is down when a majority of them says so.
    #[arg(long, value_name = "N", default_value_t = 3)]
    probers: usize,
    /// Address of the demo origins (one per region, on free ports).
    #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
    origin_ip: IpAddr,
    /// GeoIP database [default: the configuration's, else the bundled DB-IP Lite country database]. A
    /// file is watched: a new version is loaded without a restart (also on SIGHUP), by the DNS server and
    /// the proxies alike.
    #[arg(long, value_name = "FILE")]
    geoip: Option<PathBuf>,
    /// How often to check the GeoIP database file for a new version.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    geoip_check_interval: f64,
    #[command(flatten)]
    notify: crate::notify_args::NotifyArgs,
    /// ACME directory of a local test CA (Pebble: https://localhost:14000/dir) to get every service
    /// hostname's certificate from, validated by DNS-01 against this DNS server (docs/up.md).
    #[arg(long, value_name = "URL")]
    acme_directory: Option<String>,
    /// PEM root the ACME directory's HTTPS certificate chains to: for Pebble, the CA of the certificate
    /// its configuration names (the Debian package ships none; docs/up.md makes one).
    #[arg(long, value_name = "FILE", requires = "acme_directory")]
    acme_ca: Option<PathBuf>,
    /// Sign the zones with DNSSEC: a zone without a `dnssec` table gets a combined signing key (ECDSA
    /// P-256) made in DATA_DIR/dnssec on first use and kept after; the banner prints its DS record and how
    /// to validate.
    #[arg(long)]
    dnssec: bool,
    #[command(flatten)]
    store: StoreArgs,
}

/// A region of the running system, for the banner.
struct RegionRun {
    id: String,
    name: String,
    origin: DemoOrigin,
    /// Where its proxy listens for HTTP.
    proxy: SocketAddr,
    /// Where its proxy listens for HTTPS.
    https: SocketAddr,
    /// Where its proxy takes requests spilled from other regions (mutual TLS).
    hop: SocketAddr,
}

pub(crate) async fn run(args: &UpArgs) -> anyhow::Result<ExitCode> {
    check_args(args)?;
    let (source, text) = match &args.config {
        Some(p) => (
            p.display().to_string(),
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?,
        ),
        None => ("examples/meridian.toml (built in)".to_owned(), EXAMPLE.to_owned()),
    };
    // Validate the operator's file as written first: its problems name its own paths.
    let original =
        Config::from_toml_str(&text).with_context(|| format!("{source}: invalid configuration"))?;

    let notifications = args.notify.load()?;

    // Listeners first: a taken port fails here, before anything is announced or written.
    let registry = Registry::new();
    let metrics = crate::metrics_http::serve(args.metrics_listen, registry.clone())
        .await
        .with_context(|| {
            format!(
                "--metrics-listen {}: address in use or not available",
                args.metrics_listen
            )
        })?;
    let admin_listener = tokio::net::TcpListener::bind(args.admin_listen)
        .await
        .with_context(|| {
            format!(
                "--admin-listen {}: address in use or not available",
                args.admin_listen
            )
        })?;
    let regions = region_runs(args, &original).await?;
    let data_dir = args
        .store
        .embedded_dir()
        .unwrap_or_else(crate::store_args::default_data_dir);
    // The operator's [tls] if the configuration has one, else the demo CA's certificates.
    let demo_pki = match original.tls() {
        Some(_) => None,
        None => Some(demo_certificates(&original, &regions, &data_dir)?),
    };
    let hops = demo_pki.is_some() || original.tls().is_some_and(|t| t.hops.is_some());
    let signing = if args.dnssec {
        crate::dnssec_cmd::demo_keys(&original, &data_dir.join("dnssec"))?
    } else {
        Vec::new()
    };
    let local = localize(&text, &regions, demo_pki.as_ref(), hops)
        .and_then(|l| crate::dnssec_cmd::sign_zones(&l, &signing))
        .context("adapting the configuration to this machine")?;
    let local = match &args.acme_directory {
        Some(url) => crate::up_acme::with_acme(&local, url, args.acme_ca.as_deref(), &data_dir)
            .context("--acme-directory")?,
        None => local,
    };
    let config = Arc::new(
        Config::from_toml_str(&local).context("the configuration adapted to this machine is invalid")?,
    );

    let node = Node::open(&args.store, Some(config.clone()), None, registry.clone())?;

    // --geoip, else the configuration's GeoIP database (relative to its file), else the bundled one.
    let geo_choice = (Some(&original).zip(args.config.as_deref()), args.geoip.as_deref());
    let (geo, geo_watch) =
        crate::geo::open_watched_geoip(geo_choice.0, geo_choice.1, args.geoip_check_interval)?;
    // DoT and DoH, when asked for, with a certificate from the demo CA.
    let (dns_options, dns_ca) = dns_options(args, &data_dir)?;
    let dns = crate::roles::start_dns(
        &node,
        args.dns_listen,
        &dns_options,
        geo,
        geo_watch.as_ref(),
        format!(
            "--dns-listen {}: cannot listen (UDP and TCP); is the port taken?",
            args.dns_listen
        ),
    )
    .await?;

    let proxies = start_proxies(args, &node, &regions, &config, &registry, &dns.state).await?;

    let token_file = data_dir.join(crate::admin_args::TOKEN_FILE_NAME);
    let admin = serve_admin(admin_listener, &node, &dns.state, &token_file).await?;

    let instance = crate::node::default_instance("up");
    let notifier = crate::notify_args::start(
        notifications.as_ref(),
        &node,
        vec![Surge::dns_rrl(&registry), Surge::proxy_rate_limit(&registry)],
        &format!("up/{instance}"),
    )?;

    // Everything is bound: only now is the configuration written to the store.
    apply(&node, &local, &source).await?;

    let (config_rx, _follow) = follow_config(node.watcher.clone()).await;
    let plan = ProberPlan {
        vantages: (1..=args.probers).map(|i| format!("up-{i}")).collect(),
        lease_ttl: None,
        max_concurrent: None,
    };
    let probers = crate::roles::start_probers(&node, &config_rx, &plan).await?;

    let geoip = match &geo_watch {
        Some(w) => format!("{}, {}", dns.state.geo().description(), w.describe()),
        None => dns.state.geo().description().to_owned(),
    };
    let cli = Cli {
        admin: admin.url(),
        token_file,
        metrics: metrics.0,
        probers: args.probers,
        geoip,
        ca: demo_pki.as_ref().map(|p| p.ca.clone()),
        dns_ca,
    };
    let dnssec_banner = if args.dnssec {
        crate::dnssec_cmd::banner(&config, &data_dir.join("dnssec"), &dns.server.udp)?
    } else {
        String::new()
    };
    let registration = node.register("up", None, &instance);
    let mut stop = crate::node::StopSignals::install()?;
    banner(
        &source,
        &node.store.describe(),
        &dns.server,
        &regions,
        &config,
        &cli,
        &dnssec_banner,
    );
    stop.wait().await;
    eprintln!("meridian up: stopping");
    crate::notify_args::stop(notifier).await;
    registration.stop().await;
    shut_down(proxies, probers).await;
    drop(dns);
    drop(admin);
    eprintln!("meridian up: stopped");
    Ok(ExitCode::SUCCESS)
}

/// The flags' ranges, checked before anything starts.
fn check_args(args: &UpArgs) -> anyhow::Result<()> {
    if !(1..=9).contains(&args.probers) {
        bail!("--probers {}: between 1 and 9", args.probers);
    }
    if !(args.grace_period.is_finite() && (0.0..=300.0).contains(&args.grace_period)) {
        bail!("--grace-period {}: 0 to 300 seconds", args.grace_period);
    }
    crate::geo::check_interval(args.geoip_check_interval)
}

/// The DNS server's options; with DoT or DoH, a certificate for localhost and the listeners' addresses
/// from the demo CA (whatever the edge uses), so that `kdig +tls-ca=DATA_DIR/tls/ca.pem` validates it,
/// and that CA's file.
fn dns_options(args: &UpArgs, data_dir: &std::path::Path) -> anyhow::Result<(DnsOptions, Option<PathBuf>)> {
    let mut dns_options = DnsOptions {
        rrl: RrlConfig::default(),
        udp_workers: 1,
        ..DnsOptions::default()
    };
    let mut dns_ca = None;
    if args.dns_tls_listen.is_some() || args.dns_https_listen.is_some() {
        let mut names = vec!["localhost".to_owned()];
        for a in [args.dns_tls_listen, args.dns_https_listen].into_iter().flatten() {
            if !a.ip().is_unspecified() && !names.contains(&a.ip().to_string()) {
                names.push(a.ip().to_string());
            }
        }
        let dir = data_dir.join("tls");
        let (cert, key, ca) = meridian_tls::demo::issue(&dir, "dns", &names)
            .with_context(|| format!("making the DNS certificate in {}", dir.display()))?;
        let config = crate::dns_cmd::dns_tls_config(Some(&cert), Some(&key))?;
        dns_options.dot = args.dns_tls_listen.map(|addr| TlsListen {
            addr,
            config: config.clone(),
        });
        dns_options.doh = args.dns_https_listen.map(|addr| TlsListen { addr, config });
        dns_ca = Some(ca);
    }
    Ok((dns_options, dns_ca))
}

/// Every region's proxy, serving HTTP and HTTPS, and hop listeners when [tls.hops] encrypts spilled
/// requests.
async fn start_proxies(
    args: &UpArgs,
    node: &Node,
    regions: &[RegionRun],
    config: &Arc<Config>,
    registry: &Registry,
    dns: &Arc<DnsState>,
) -> anyhow::Result<ProxyServer> {
    let edge = crate::tls_edge::start_edge(
        node.watcher.clone(),
        node.keys.clone(),
        Some(config),
        Some(config),
        registry,
    )?;
    let hop_server = match crate::tls_edge::hops_of(&node.watcher, None, Some(config)) {
        Some(h) => Some(crate::tls_edge::hop_server(Some(&h))?),
        None => None,
    };
    let plan = ProxyPlan {
        regions: regions
            .iter()
            .map(|r| RegionListeners {
                region: r.id.clone(),
                http: r.proxy,
                https: Some((r.https, edge.clone())),
                hop: hop_server.as_ref().map(|h| (r.hop, h.clone())),
            })
            .collect(),
        instance: "up".to_owned(),
        capacity: None,
        server: meridian_proxy::ServerOptions {
            grace: std::time::Duration::from_secs_f64(args.grace_period),
            ..meridian_proxy::ServerOptions::default()
        },
        // The proxies locate clients with the database the DNS server has: they follow its reloads.
        geo: ProxyGeo::Dns(dns.clone()),
    };
    crate::roles::start_proxies(node, plan)
        .await
        .context("starting the regional proxies (--proxy-ip, --proxy-port)")
}

/// Stops the proxies (in-flight requests get the grace period) and the probers.
async fn shut_down(proxies: ProxyServer, probers: Vec<Prober>) {
    let left = proxies.shutdown().await;
    if left > 0 {
        eprintln!("meridian up: {left} proxied request(s) still in flight at the end of the grace period");
    }
    for p in probers {
        let _ = p.stop().await;
    }
}

/// Every region's addresses (proxy, HTTPS, hop listener) and its demo origin, started.
async fn region_runs(args: &UpArgs, config: &Config) -> anyhow::Result<Vec<RegionRun>> {
    let mut regions = Vec::new();
    for (i, r) in config.regions().iter().enumerate() {
        let proxy = proxy_address(args.proxy_ip, args.proxy_port, i).context("--proxy-port")?;
        let https = proxy_address(args.proxy_ip, args.https_port, i).context("--https-port")?;
        let hop = proxy_address(args.proxy_ip, 0, i)?;
        let origin = DemoOrigin::start(SocketAddr::new(args.origin_ip, 0), &r.id, &r.name)
            .await
            .with_context(|| format!("cannot start the demo origin of {} on {}", r.id, args.origin_ip))?;
        regions.push(RegionRun {
            id: r.id.clone(),
            name: r.name.clone(),
            origin,
            proxy,
            https,
            hop,
        });
    }
    Ok(regions)
}

/// The admin API on `listener`, over the node's state, with the DNS server's GeoIP database for explain
/// and the bearer token in `token_file` (made if missing).
async fn serve_admin(
    listener: tokio::net::TcpListener,
    node: &Node,
    dns: &Arc<DnsState>,
    token_file: &std::path::Path,
) -> anyhow::Result<meridian_admin::AdminServer> {
    let auth =
        meridian_admin::Auth::token_file(&ensure_token(token_file)?).map_err(|e| anyhow::anyhow!("{e}"))?;
    let geo_source: meridian_admin::GeoSource = {
        let state = dns.clone();
        Arc::new(move || state.geo())
    };
    meridian_admin::serve(
        listener,
        meridian_admin::AdminContext {
            store: node.store.clone(),
            keys: node.keys.clone(),
            watcher: node.watcher.clone(),
            geo: geo_source,
            auth,
            tls: None,
            node: "meridian up".to_owned(),
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("--admin-listen: {e}"))
}

/// The demo CA's certificates for the configuration's hostnames (and a wildcard per zone) and the hop
/// certificates of its regions, in DATA_DIR/tls (made on first use, kept after).
fn demo_certificates(
    config: &Config,
    regions: &[RegionRun],
    data_dir: &std::path::Path,
) -> anyhow::Result<meridian_tls::demo::DemoPki> {
    let mut names: Vec<String> = config
        .services()
        .iter()
        .map(|s| s.hostname.to_string().trim_end_matches('.').to_owned())
        .collect();
    for z in config.zones() {
        names.push(format!("*.{}", z.origin.to_string().trim_end_matches('.')));
    }
    let ids: Vec<String> = regions.iter().map(|r| r.id.clone()).collect();
    let dir = data_dir.join("tls");
    meridian_tls::demo::ensure(&dir, &names, &ids)
        .with_context(|| format!("making the demo CA's certificates in {}", dir.display()))
}

/// Writes the configuration `local` to the node's store (with an audit record) unless it is already there.
async fn apply(node: &Node, local: &str, source: &str) -> anyhow::Result<()> {
    let store = &node.store;
    let author = format!("meridian up ({})", crate::author::author());
    match apply_config(store.as_ref(), &node.keys, local, None, &author, now_ms())
        .await
        .with_context(|| format!("applying the configuration to {}", store.describe()))?
    {
        ApplyOutcome::Applied { revision, .. } => {
            eprintln!("meridian up: configuration from {source} applied at revision {revision}")
        }
        ApplyOutcome::Unchanged { .. } => {}
        ApplyOutcome::Conflict { .. } => {
            bail!("the stored configuration changed while `meridian up` was applying its own; run it again")
        }
    }
    Ok(())
}

/// The HTTP side of the running system, for the banner: metrics, the admin API and how the CLI reaches it.
struct Cli {
    admin: String,
    token_file: PathBuf,
    metrics: SocketAddr,
    probers: usize,
    /// The GeoIP database, and whether its file is watched.
    geoip: String,
    /// The demo CA's certificate, when the edge uses it.
    ca: Option<PathBuf>,
    /// The demo CA's certificate, when DoT or DoH runs.
    dns_ca: Option<PathBuf>,
}

impl Cli {
    /// The environment the CLI needs to reach this instance (empty when its defaults do).
    fn environment(&self) -> Vec<String> {
        let mut env = Vec::new();
        if self.admin != crate::admin_args::DEFAULT_SERVER {
            env.push(format!("MERIDIAN_SERVER={}", self.admin));
        }
        let default_token = crate::store_args::default_data_dir().join(crate::admin_args::TOKEN_FILE_NAME);
        if self.token_file != default_token {
            env.push(format!("MERIDIAN_TOKEN=$(cat {})", self.token_file.display()));
        }
        env
    }
}

/// The admin API's token file: created with a random token (readable by its owner only) if missing.
fn ensure_token(path: &std::path::Path) -> anyhow::Result<PathBuf> {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    if path.exists() {
        return Ok(path.to_path_buf());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom for the admin token")?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating the admin token file {}", path.display()))?;
    writeln!(f, "{token}").with_context(|| format!("writing {}", path.display()))?;
    Ok(path.to_path_buf())
}

/// The proxy address of the `i`th region: consecutive ports from `first`, or a free port when `first` is 0.
fn proxy_address(ip: IpAddr, first: u16, i: usize) -> anyhow::Result<SocketAddr> {
    if first == 0 {
        return auto_address(ip);
    }
    let port = u16::try_from(usize::from(first) + i).ok().with_context(|| {
        format!(
            "--proxy-port {first}: region {} would need port {}",
            i + 1,
            usize::from(first) + i
        )
    })?;
    Ok(SocketAddr::new(ip, port))
}

/// A free address on `ip` for port 0 ("free ports, for tests"). Free now; the proxies bind it moments
/// later. Why not the kernel's port 0: it hands out ports of the ephemeral range (32768 and up), which
/// every outgoing connection on the machine also takes, and one of them did take a proxy's port in that
/// moment (CI, 2026-12-07). Ports 10000–19999 are never ephemeral; the tests' own free ports are
/// 20000–32767 (tests/e2e/support.rs). Where to start is spread by process id, so that `up`s started
/// together try different ports.
fn auto_address(ip: IpAddr) -> anyhow::Result<SocketAddr> {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 10_000;
    const SPAN: u32 = 10_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7_919);
    for _ in 0..SPAN {
        let port = (LOW + start.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN) as u16;
        let addr = SocketAddr::new(ip, port);
        if std::net::TcpListener::bind(addr).is_ok() {
            return Ok(addr);
        }
    }
    bail!(
        "--proxy-ip {ip}: no free port between {LOW} and {}",
        LOW + SPAN - 1
    )
}

/// The configuration text adapted to this machine: every region is probed at its demo origin, its proxy
/// is at its local address, and every service has the region's demo origin as its backend there.
fn localize(
    text: &str,
    regions: &[RegionRun],
    demo: Option<&meridian_tls::demo::DemoPki>,
    hops: bool,
) -> anyhow::Result<String> {
    let mut doc: toml::Table = toml::from_str(text)?;
    if let Some(pki) = demo {
        let mut hop = toml::Table::new();
        hop.insert("ca".into(), pki.ca.display().to_string().into());
        hop.insert("cert".into(), pki.hop_cert.display().to_string().into());
        hop.insert("key".into(), pki.hop_key.display().to_string().into());
        // The demo CA's edge certificate; plain HTTP keeps serving (the commands above use it).
        let mut cert = toml::Table::new();
        cert.insert("cert".into(), pki.edge_cert.display().to_string().into());
        cert.insert("key".into(), pki.edge_key.display().to_string().into());
        let mut tls = toml::Table::new();
        tls.insert("plain-http".into(), "serve".into());
        tls.insert(
            "certificates".into(),
            toml::Value::Array(vec![toml::Value::Table(cert)]),
        );
        tls.insert("hops".into(), toml::Value::Table(hop));
        doc.insert("tls".into(), toml::Value::Table(tls));
    }
    let table = doc
        .get_mut("regions")
        .and_then(toml::Value::as_table_mut)
        .context("no [regions]")?;
    for r in regions {
        let Some(region) = table.get_mut(&r.id).and_then(toml::Value::as_table_mut) else {
            continue;
        };
        let mut check = toml::Table::new();
        check.insert("kind".into(), "http".into());
        check.insert("url".into(), format!("http://{}/healthz", r.origin.addr).into());
        check.insert("body-match".into(), "ok".into());
        region.insert(
            "health-checks".into(),
            toml::Value::Array(vec![toml::Value::Table(check)]),
        );
        // Spilled requests go to the hop listener (mutual TLS) when hops are encrypted.
        let spill_to = if hops { r.hop } else { r.proxy };
        region.insert("proxy-address".into(), spill_to.to_string().into());
    }
    if let Some(services) = doc.get_mut("services").and_then(toml::Value::as_table_mut) {
        for (_, service) in services.iter_mut() {
            let Some(service) = service.as_table_mut() else {
                continue;
            };
            let listed: Vec<String> = service
                .get("regions")
                .and_then(toml::Value::as_array)
                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
            let mut backends = toml::Table::new();
            for r in regions
                .iter()
                .filter(|r| listed.is_empty() || listed.contains(&r.id))
            {
                backends.insert(
                    r.id.clone(),
                    toml::Value::Array(vec![r.origin.addr.to_string().into()]),
                );
            }
            service.insert("backends".into(), toml::Value::Table(backends));
        }
    }
    Ok(format!(
        "# Generated by `meridian up`: the configuration it was given, with health checks and backends\n\
         # pointing at this machine's demo origins.\n{}",
        toml::to_string(&doc)?
    ))
}

fn banner(
    source: &str,
    store: &str,
    dns: &DnsServer,
    regions: &[RegionRun],
    config: &Config,
    cli: &Cli,
    dnssec: &str,
) {
    let (metrics, probers) = (cli.metrics, cli.probers);
    let mut out = String::new();
    let dns_port = dns.udp.port();
    let at = match dns.udp.ip() {
        IpAddr::V4(v4) if v4 == Ipv4Addr::UNSPECIFIED => "127.0.0.1".to_owned(),
        ip => ip.to_string(),
    };
    out += &format!("meridian up: ready — configuration {source}, state in {store}\n");
    out += &format!("  DNS       {} (UDP and TCP)", dns.udp);
    for z in config.zones() {
        out += &format!(", zone {}", z.origin);
    }
    out += "\n";
    if let Some(a) = dns.dot {
        out += &format!("  DoT       {a} (DNS-over-TLS)\n");
    }
    if let Some(a) = dns.doh {
        out += &format!("  DoH       https://{a}/dns-query (DNS-over-HTTPS)\n");
    }
    for r in regions {
        out += &format!(
            "  region    {:<5} {:<14} proxy http://{}/ https://{}/  demo origin http://{}/\n",
            r.id, r.name, r.proxy, r.https, r.origin.addr
        );
    }
    out += &format!("  GeoIP     {}\n", cli.geoip);
    out += &format!("  probers   {probers} vantage points (up-1..up-{probers}), probing the demo origins\n");
    out += &format!("  metrics   http://{metrics}/metrics\n");
    out += &format!(
        "  admin API {} (bearer token in {})\n",
        cli.admin,
        cli.token_file.display()
    );
    out += &format!(
        "  dashboard {}/dashboard (log in with the admin token)\n",
        cli.admin
    );
    let host = config
        .services()
        .first()
        .map_or_else(|| "SERVICE".to_owned(), |s| s.hostname.to_string());
    out += "Try:\n";
    for (cc, subnet) in [
        ("Poland", "83.0.0.0/24"),
        ("Germany", "217.0.0.0/24"),
        ("the UK", "81.2.69.0/24"),
        ("Canada", "24.48.0.0/24"),
    ] {
        out +=
            &format!("  kdig @{at} -p {dns_port} {host} A +subnet={subnet} +short    # a client in {cc}\n");
    }
    let ca = cli
        .dns_ca
        .as_ref()
        .map(|c| format!(" +tls-ca={} +tls-hostname=localhost", c.display()))
        .unwrap_or_default();
    for (a, how) in [(dns.dot, "+tls"), (dns.doh, "+https")] {
        if let Some(a) = a {
            out += &format!(
                "  kdig @{} -p {} {how}{ca} {host} A +subnet=83.0.0.0/24 +short    # over {}\n",
                if a.ip().is_unspecified() {
                    at.clone()
                } else {
                    a.ip().to_string()
                },
                a.port(),
                if how == "+tls" {
                    "DNS-over-TLS"
                } else {
                    "DNS-over-HTTPS"
                },
            );
        }
    }
    if let Some(first) = regions.first() {
        out += &format!(
            "  curl -s -H 'Host: {host}' http://{}/    # through {}'s proxy\n",
            first.proxy, first.id
        );
        let bare = host.trim_end_matches('.');
        let ca = cli
            .ca
            .as_ref()
            .map(|c| format!("--cacert {} ", c.display()))
            .unwrap_or_default();
        out += &format!(
            "  curl -s {ca}--resolve {bare}:{port}:{ip} https://{bare}:{port}/    # HTTPS (HTTP/2) through {}'s proxy\n",
            first.id,
            port = first.https.port(),
            ip = first.https.ip(),
        );
    }
    let env = cli.environment();
    if !env.is_empty() {
        out += &format!("  export {}\n", env.join(" "));
    }
    let m = "meridian";
    out += &format!("  {m} status\n");
    out += &format!("  {m} explain {host} --client 83.0.0.1\n");
    out += &format!(
        "  {m} drill run --region waw --mode down --for 30s --reason \"first drill\" --dns {at}:{dns_port}{}\n",
        regions
            .first()
            .map(|r| format!(" --proxy http://{}/ --host {host}", r.proxy))
            .unwrap_or_default()
    );
    if let Some(ca) = &cli.ca {
        out += &format!(
            "HTTPS certificates come from a demo CA made for this machine: trust {} (curl --cacert, or your \
             browser's authorities) to use them.\n",
            ca.display()
        );
    }
    out += dnssec;
    out += "Ctrl-C stops everything; operator state stays in the store.\n";
    print!("{out}");
}
