//! The roles a Meridian process runs, each started by one function: the authoritative DNS server
//! ([`start_dns`]), the regional proxies of a set of regions ([`start_proxies`]) and the probers
//! ([`start_probers`]). `meridian dns`, `meridian proxy` and `meridian health` each start one role from
//! their flags; `meridian up` starts all three over one [`Node`]. What sets the commands apart — their
//! flags, the wording of their errors, which configuration the proxies' TLS material is loaded from
//! (`tls_edge`), their banners, the admin API, registration — stays in them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use meridian_config::Config;
use meridian_dns::server::{DnsOptions, DnsServer, DnsState};
use meridian_geoip::GeoDb;
use meridian_probe::{Prober, ProberOptions};
use meridian_proxy::{
    ListenKind, Listener, NodeOptions, ProxyMetrics, ProxyNode, ProxyServer, ServerOptions,
};
use meridian_tls::EdgeTls;
use meridian_tls::rustls::ServerConfig;
use tokio::sync::watch;

use crate::geo::{GeoUser, GeoWatch, follow_dns_geo, watch_geoip};
use crate::node::Node;

/// A running DNS server and the state its answers read.
pub(crate) struct Dns {
    pub(crate) state: Arc<DnsState>,
    pub(crate) server: DnsServer,
}

/// Starts the authoritative DNS server on `listen` (UDP and TCP; DoT and DoH where `options` say) over the node's snapshots, locating
/// clients with `geo` and then with every new version of the file `watch` names; its metrics go to the
/// node's registry. `listen_error`: what a failure to bind `listen` says (each command names its flag).
pub(crate) async fn start_dns(
    node: &Node,
    listen: SocketAddr,
    options: &DnsOptions,
    geo: GeoDb,
    watch: Option<&GeoWatch>,
    listen_error: String,
) -> anyhow::Result<Dns> {
    let state = DnsState::new(node.watcher.clone(), geo, options.rrl);
    node.registry
        .register(state.metrics().collector())
        .context("registering DNS metrics")?;
    node.registry
        .register(state.guard_metrics().collector())
        .context("registering DNS hardening metrics")?;
    // Following the database before answering: a new version is taken up whenever it comes.
    if let Some(watch) = watch {
        watch_geoip(GeoUser::Dns(&state), watch)?;
    }
    let server = DnsServer::bind(listen, state.clone(), options)
        .await
        .context(listen_error)?;
    Ok(Dns { state, server })
}

/// Where one region's proxy listens, and with which TLS.
pub(crate) struct RegionListeners {
    /// The region served.
    pub(crate) region: String,
    /// Plain HTTP; with `https`, it redirects there or serves, as `tls.plain-http` says.
    pub(crate) http: SocketAddr,
    /// HTTPS, with the edge certificates ([`crate::tls_edge::start_edge`]).
    pub(crate) https: Option<(SocketAddr, Arc<EdgeTls>)>,
    /// Requests spilled from other regions' proxies, over mutual TLS ([`crate::tls_edge::hop_server`]).
    pub(crate) hop: Option<(SocketAddr, Arc<ServerConfig>)>,
}

/// Where proxies locate their clients.
pub(crate) enum ProxyGeo {
    /// Their own database, then every new version of the file the watch names (`meridian proxy`).
    Own(Arc<GeoDb>, Option<GeoWatch>),
    /// The database of the DNS server in the same process, following its reloads (`meridian up`).
    Dns(Arc<DnsState>),
}

/// The proxies to start.
pub(crate) struct ProxyPlan {
    /// One proxy per region, in this order.
    pub(crate) regions: Vec<RegionListeners>,
    /// This process's name in the load reports.
    pub(crate) instance: String,
    /// In-flight requests this instance serves well, reported as its capacity (`None`: the region's
    /// configured capacity applies).
    pub(crate) capacity: Option<u32>,
    pub(crate) server: ServerOptions,
    pub(crate) geo: ProxyGeo,
}

/// Starts a proxy for each region of `plan` over the node's snapshots, all served by one pingora server:
/// each reports its load to the store; the metrics go to the node's registry. Fails when an address
/// cannot be bound.
pub(crate) async fn start_proxies(node: &Node, plan: ProxyPlan) -> anyhow::Result<ProxyServer> {
    let metrics = ProxyMetrics::new();
    metrics
        .register(&node.registry)
        .context("registering proxy metrics")?;
    let geo = match &plan.geo {
        ProxyGeo::Own(geo, _) => geo.clone(),
        ProxyGeo::Dns(dns) => dns.geo(),
    };
    let mut listeners = Vec::new();
    let mut nodes = Vec::new();
    for r in plan.regions {
        let proxy = ProxyNode::new(
            NodeOptions {
                region: r.region,
                instance: plan.instance.clone(),
                capacity: plan.capacity,
                keys: node.keys.clone(),
            },
            node.watcher.clone(),
            geo.clone(),
            metrics.clone(),
        );
        // Load and latency reports go to the zone's health store when there is one.
        proxy.start(Some(node.health_store()));
        listeners.push(Listener {
            node: proxy.clone(),
            addr: r.http,
            kind: ListenKind::Http {
                https_port: r.https.as_ref().map(|(addr, _)| addr.port()),
            },
        });
        if let Some((addr, edge)) = r.https {
            listeners.push(Listener {
                node: proxy.clone(),
                addr,
                kind: ListenKind::Https(edge),
            });
        }
        if let Some((addr, config)) = r.hop {
            listeners.push(Listener {
                node: proxy.clone(),
                addr,
                kind: ListenKind::Hop(config),
            });
        }
        nodes.push(proxy);
    }
    // Certificates from an ACME CA ([acme]): every proxy node runs the renewal loop, one orders at a time.
    let acme_metrics = meridian_acme::AcmeMetrics::new();
    acme_metrics
        .register(&node.registry)
        .context("registering ACME metrics")?;
    tokio::spawn(
        meridian_acme::AcmeManager::new(
            node.store.clone(),
            node.keys.clone(),
            node.watcher.clone(),
            format!("proxy/{}", plan.instance),
            acme_metrics,
        )
        .run(),
    );
    // Following the database before listening: a new version is taken up whenever it comes.
    match &plan.geo {
        ProxyGeo::Own(_, Some(watch)) => watch_geoip(GeoUser::Proxies(&nodes), watch)?,
        ProxyGeo::Own(_, None) => {}
        ProxyGeo::Dns(dns) => follow_dns_geo(dns, nodes),
    }
    Ok(ProxyServer::start(listeners, &plan.server).await?)
}

/// The probers to start: one per vantage point, and what sets them apart from `ProberOptions::new`'s
/// defaults.
pub(crate) struct ProberPlan {
    pub(crate) vantages: Vec<String>,
    pub(crate) lease_ttl: Option<Duration>,
    pub(crate) max_concurrent: Option<usize>,
}

/// Starts the probers of `plan`, each publishing its opinions under its own lease, probing the
/// configuration `config` follows (`meridian_probe::follow_config`). Their metrics go to the node's
/// registry, with the first prober (they are labelled by vantage; a registry takes a family once).
pub(crate) async fn start_probers(
    node: &Node,
    config: &watch::Receiver<Arc<Config>>,
    plan: &ProberPlan,
) -> anyhow::Result<Vec<Prober>> {
    let mut probers = Vec::new();
    for (i, vantage) in plan.vantages.iter().enumerate() {
        let mut options = ProberOptions::new(vantage, node.keys.clone());
        if let Some(ttl) = plan.lease_ttl {
            options.lease_ttl = ttl;
        }
        if let Some(n) = plan.max_concurrent {
            options.max_concurrent = n;
        }
        if i == 0 {
            options.registry = Some(node.registry.clone());
        }
        probers.push(
            Prober::start(node.health_store(), options, config.clone())
                .await
                .with_context(|| format!("starting prober {vantage}"))?,
        );
    }
    Ok(probers)
}
