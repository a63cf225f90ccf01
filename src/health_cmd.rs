//! `meridian health --vantage ID`: one prober, probing every region's health checks from this vantage
//! point and publishing its opinions under its lease, until interrupted (SIGINT revokes the lease, so its
//! opinions vanish at once; a prober that dies without it is forgotten when the lease expires).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use meridian_config::Config;
use meridian_probe::follow_config;
use prometheus::Registry;

use crate::admin_args::AdminServeArgs;
use crate::metrics_http;
use crate::node::Node;
use crate::roles::ProberPlan;
use crate::store_args::StoreArgs;

/// Arguments of `meridian health`.
#[derive(clap::Args)]
pub(crate) struct HealthArgs {
    /// This prober's vantage point (`fra-1`): 1–32 of a-z, 0-9 and '-', starting with a letter. Its
    /// opinions are stored as health/REGION/ID, and its probes' User-Agent names it.
    #[arg(long, value_name = "ID")]
    vantage: String,
    /// Configuration to probe while the store holds none (the store's, once applied, wins; changes apply
    /// live).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// Lease TTL in milliseconds: how long this prober's opinions outlive it if it dies without stopping.
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    lease_ttl_ms: u64,
    /// Probes running at once, at most.
    #[arg(long, value_name = "N", default_value_t = 64)]
    max_concurrent: usize,
    /// GeoIP database for the admin API's explain (default: the configuration's, else bundled).
    #[arg(long, value_name = "FILE")]
    geoip: Option<PathBuf>,
    #[command(flatten)]
    notify: crate::notify_args::NotifyArgs,
    #[command(flatten)]
    admin: AdminServeArgs,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    health_store: crate::health_store_args::HealthStoreArgs,
}

fn check_vantage(id: &str) -> anyhow::Result<()> {
    let ok = (1..=32).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        bail!("--vantage {id:?}: expected 1-32 of a-z, 0-9 and '-', starting with a letter (e.g. fra-1)");
    }
    Ok(())
}

pub(crate) async fn run(args: &HealthArgs) -> anyhow::Result<ExitCode> {
    check_vantage(&args.vantage)?;
    if args.lease_ttl_ms < 1000 {
        bail!("--lease-ttl-ms {}: at least 1000", args.lease_ttl_ms);
    }
    let notifications = args.notify.load()?;
    let bootstrap = match &args.config {
        Some(p) => Some(Arc::new(
            Config::load(p).with_context(|| format!("{}", p.display()))?,
        )),
        None => None,
    };
    let registry = Registry::new();
    if let Some(addr) = args.metrics_listen {
        let (bound, _task) = metrics_http::serve(addr, registry.clone())
            .await
            .with_context(|| format!("--metrics-listen: cannot listen on {addr}"))?;
        eprintln!("meridian health: metrics on http://{bound}/metrics");
    }
    let node = Node::open_zoned(&args.store, &args.health_store, bootstrap.clone(), None, registry)?;
    let config_file = bootstrap.as_deref().zip(args.config.as_deref());
    let geo = Arc::new(crate::geo::open_geoip(config_file, args.geoip.as_deref())?);
    let instance = crate::node::default_instance("health");
    let registration = node.register("health", Some(&args.vantage), &instance);
    let notifier = crate::notify_args::start(
        notifications.as_ref(),
        &node,
        Vec::new(),
        &format!("health/{instance}"),
    )?;
    let admin = args
        .admin
        .start(
            node.store.clone(),
            node.keys.clone(),
            node.watcher.clone(),
            Arc::new(move || geo.clone()),
            format!("meridian health --vantage {}", args.vantage),
            args.store.embedded_dir().as_deref(),
        )
        .await?;
    if let Some(a) = &admin {
        eprintln!("meridian health: admin API on {}", a.url());
    }
    if node.watcher.snapshot().is_none() {
        eprintln!(
            "meridian health: no --config and none in the store yet: waiting for `meridian config apply`"
        );
    }
    let mut stop = crate::node::StopSignals::install()?;
    let (config, _follow) = tokio::select! {
        c = follow_config(node.watcher.clone()) => c,
        _ = stop.wait() => {
            crate::notify_args::stop(notifier).await;
            registration.stop().await;
            return Ok(ExitCode::SUCCESS);
        }
    };
    let checks: usize = config
        .borrow()
        .regions()
        .iter()
        .map(|r| r.health_checks.len())
        .sum();
    let plan = ProberPlan {
        vantages: vec![args.vantage.clone()],
        lease_ttl: Some(Duration::from_millis(args.lease_ttl_ms)),
        max_concurrent: Some(args.max_concurrent.max(1)),
    };
    let probers = crate::roles::start_probers(&node, &config, &plan)
        .await
        .with_context(|| format!("cannot take a lease in {}", node.health_store().describe()))?;
    eprintln!(
        "meridian health: vantage {} probing {checks} check(s), publishing to {}",
        args.vantage,
        node.health_store().describe()
    );
    stop.wait().await;
    eprintln!("meridian health: stopping");
    crate::notify_args::stop(notifier).await;
    registration.stop().await;
    for prober in probers {
        if let Err(e) = prober.stop().await {
            // The lease expires by itself: the opinions go then instead of now.
            eprintln!("meridian health: could not revoke the lease ({e}); it will expire");
        }
    }
    Ok(ExitCode::SUCCESS)
}
