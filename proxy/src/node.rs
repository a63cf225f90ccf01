//! One region's proxy as a running thing, apart from the HTTP server: its routing table (rebuilt from
//! each new snapshot, never per request), its pools and their health checks, its counters, and its load
//! reports to the store.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use meridian_config::{Affinity, Balance, ProxySettings};
use meridian_geoip::GeoDb;
use meridian_steer::{RegionIndex, RegionSet, RegionStates, ServiceIndex};
use meridian_store::schema::{LoadReport, encode};
use meridian_store::{Keys, KvStore, LeaseKeeper, Snapshot, SnapshotWatcher};
use pingora::upstreams::peer::HttpPeer;
use pingora_limits::rate::Rate;
use tokio::task::JoinHandle;

use crate::latency::{LatencySampler, PUBLISH_INTERVAL, connection_rtt_ms};
use crate::pool::{Pool, PoolKey, spawn_health_checks};
use crate::route::drained_copy;
use crate::stats::{ProxyMetrics, Window};

/// How often load is reported.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// TTL of the proxy's lease: its load reports vanish this long after it dies.
pub const LEASE_TTL: Duration = Duration::from_secs(5);

pub(crate) use meridian_store::now_ms;

/// A hostname the proxy serves, resolved to its service.
#[derive(Debug)]
pub struct HostRoute {
    /// Lower case, no trailing dot.
    pub host: String,
    /// The service.
    pub service: ServiceIndex,
    /// Its name.
    pub name: String,
    /// The local region's backends of the service, if any.
    pub pool: Option<Arc<Pool>>,
    /// Some region has backends for the service (else it is DNS-only: 404 here).
    pub proxied: bool,
    /// Where consistent hashing takes its key.
    pub affinity: Option<Affinity>,
    /// Whether residency allows the local region for every client.
    pub local_allowed_for_all: bool,
    pub(crate) ok_local: prometheus::IntCounter,
}

/// Everything a request needs to be routed, built once per snapshot.
#[derive(Debug)]
pub struct RouteTable {
    /// The snapshot it was built from.
    pub snapshot: Arc<Snapshot>,
    /// The local region's index (`None`: the configuration has no such region; every request is refused).
    pub local: Option<RegionIndex>,
    /// The snapshot's states with the local region drained.
    pub states_local_drained: RegionStates,
    /// Regions with a proxy address (other than the local one).
    pub reachable: RegionSet,
    /// Upstream peers of the other regions' proxies, by region index.
    pub peers: Vec<Option<Arc<HttpPeer>>>,
    /// Hostnames served.
    pub hosts: Vec<HostRoute>,
    /// Proxy settings of the configuration.
    pub settings: ProxySettings,
    /// Plain-HTTP requests are redirected to HTTPS (`tls.plain-http = "redirect"`) where the proxy has an
    /// HTTPS listener.
    pub redirect_plain: bool,
    /// `Strict-Transport-Security` for HTTPS answers (`None`: HSTS off).
    pub hsts: Option<Arc<str>>,
    /// Longest TLS handshake accepted.
    pub handshake_timeout: Duration,
    /// The rustls configuration for hops to other regions (`[tls.hops]`), for the fast path's own
    /// upstream connections (pingora's engine reads the same material from each peer).
    pub hop_client: Option<Arc<meridian_tls::rustls::ClientConfig>>,
    /// Requests in flight in the local region at the other proxy instances (their last reports).
    pub others_in_flight: u32,
    /// Some service steers by latency: client connections' round-trip times are sampled.
    pub latency_on: bool,
}

impl RouteTable {
    /// The route of a (lower-case) host.
    pub fn host(&self, host: &str) -> Option<usize> {
        self.hosts.iter().position(|h| h.host == host)
    }
}

/// Options of one region's proxy.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// The region this proxy serves.
    pub region: String,
    /// This instance's name in load reports (`load/REGION/INSTANCE`).
    pub instance: String,
    /// In-flight requests this instance serves well, reported as its capacity (`None`: the region's
    /// configured capacity applies).
    pub capacity: Option<u32>,
    /// Key layout of the store.
    pub keys: Keys,
}

/// One region's proxy state, shared by the HTTP service and the background tasks.
pub struct ProxyNode {
    pub(crate) options: NodeOptions,
    pub(crate) watcher: Arc<SnapshotWatcher>,
    /// Swapped whole when a new GeoIP database is loaded ([`ProxyNode::set_geo`]).
    geo: ArcSwap<GeoDb>,
    pub(crate) table: ArcSwapOption<RouteTable>,
    pools: Mutex<HashMap<PoolKey, Arc<Pool>>>,
    /// Requests in flight to the local backends.
    pub(crate) local_in_flight: AtomicU32,
    /// Requests being handled at all (for graceful shutdown).
    pub(crate) active: AtomicU32,
    pub(crate) window: Window,
    pub(crate) metrics: ProxyMetrics,
    pub(crate) limiter: Rate,
    pub(crate) in_flight_gauge: prometheus::IntGauge,
    pub(crate) duration: prometheus::Histogram,
    /// Round-trip times of client connections, per client area (`crate::latency`).
    latency: LatencySampler,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// The hop material last loaded, with the fingerprint of the settings and files it came from.
    hop: Mutex<Option<(u64, Arc<HopPeerTls>)>>,
    stopped: AtomicBool,
    stop_notify: tokio::sync::Notify,
}

impl std::fmt::Debug for ProxyNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyNode")
            .field("options", &self.options)
            .field("local_in_flight", &self.local_in_flight)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

impl ProxyNode {
    /// A proxy for `options.region` reading `watcher`'s snapshots and locating clients with `geo`;
    /// metrics go to `metrics` (shared by every region's proxy of the process). Builds the first routing
    /// table if a snapshot is there; call [`ProxyNode::start`] to keep it current and report load.
    pub fn new(
        options: NodeOptions,
        watcher: Arc<SnapshotWatcher>,
        geo: Arc<GeoDb>,
        metrics: ProxyMetrics,
    ) -> Arc<Self> {
        let in_flight_gauge = metrics.in_flight.with_label_values(&[&options.region]);
        let duration = metrics.duration_for(&options.region);
        Arc::new(Self {
            options,
            watcher,
            geo: ArcSwap::new(geo),
            table: ArcSwapOption::empty(),
            pools: Mutex::new(HashMap::new()),
            local_in_flight: AtomicU32::new(0),
            active: AtomicU32::new(0),
            window: Window::default(),
            metrics,
            limiter: Rate::new(Duration::from_secs(1)),
            in_flight_gauge,
            duration,
            latency: LatencySampler::default(),
            tasks: Mutex::new(Vec::new()),
            hop: Mutex::new(None),
            stopped: AtomicBool::new(false),
            stop_notify: tokio::sync::Notify::new(),
        })
    }

    /// The region served.
    pub fn region(&self) -> &str {
        &self.options.region
    }

    /// Requests being handled now.
    pub fn active_requests(&self) -> u32 {
        self.active.load(Ordering::Relaxed)
    }

    /// Requests in flight to the local backends now.
    pub fn local_in_flight(&self) -> u32 {
        self.local_in_flight.load(Ordering::Relaxed)
    }

    /// The current routing table.
    pub fn table(&self) -> Option<Arc<RouteTable>> {
        self.table.load_full()
    }

    /// Rebuilds the routing table if the watcher has a newer snapshot than the table's. Must run inside a
    /// tokio runtime (new pools start their health checks on it).
    pub fn refresh(&self) {
        let Some(snapshot) = self.watcher.snapshot() else {
            return;
        };
        if let Some(t) = self.table.load().as_ref()
            && Arc::ptr_eq(&t.snapshot, &snapshot)
        {
            return;
        }
        let table = self.build(snapshot);
        self.table.store(Some(Arc::new(table)));
    }

    fn build(&self, snapshot: Arc<Snapshot>) -> RouteTable {
        let topology = snapshot.topology.clone();
        let config = topology.config().clone();
        let settings = config.proxy().clone();
        let local = topology.region_index(&self.options.region);
        let mut reachable = RegionSet::default();
        let hops = config.tls().and_then(|t| t.hops.as_ref());
        let hop = hops.and_then(|h| self.hop_material(h));
        let peers: Vec<Option<Arc<HttpPeer>>> = config
            .regions()
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let addr = r.proxy_address?;
                if Some(i) == local.map(RegionIndex::get) {
                    return None;
                }
                // With [tls.hops], a region is reached over mutual TLS or not at all: never in clear
                // because its certificates did not load.
                let mut peer = match (hops, &hop) {
                    (None, _) => HttpPeer::new(addr, false, String::new()),
                    (Some(_), None) => return None,
                    (Some(_), Some(h)) => {
                        let mut p = HttpPeer::new(addr, true, meridian_tls::hop_server_name(&r.id));
                        p.options.ca = Some(h.ca.clone());
                        p.client_cert_key = Some(h.cert_key.clone());
                        p
                    }
                };
                if let Some(ri) = topology.region_index(&r.id) {
                    reachable.insert(ri);
                }
                let connect = Duration::from_millis(u64::from(settings.connect_timeout_ms));
                let io = Duration::from_millis(u64::from(settings.upstream_timeout_ms));
                peer.options.connection_timeout = Some(connect);
                peer.options.total_connection_timeout = Some(connect);
                peer.options.read_timeout = Some(io);
                peer.options.write_timeout = Some(io);
                peer.options.idle_timeout = Some(Duration::from_secs(60));
                Some(Arc::new(peer))
            })
            .collect();
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        let mut kept = HashMap::new();
        let mut hosts = Vec::new();
        for s in config.services() {
            let Some(service) = topology.service_index(&s.name) else {
                continue;
            };
            let local_backends = s.proxy.backends_in(&self.options.region);
            let pool = if local_backends.is_empty() {
                None
            } else {
                let host = s.hostname.to_string();
                let host = host.trim_end_matches('.');
                let key = PoolKey::new(
                    &s.name,
                    host,
                    local_backends,
                    &s.proxy.balance,
                    &s.proxy.checks,
                    &settings,
                    s.proxy.backend_tls.as_ref(),
                );
                let pool = match pools.remove(&key) {
                    Some(p) => Some(p),
                    None => match Pool::new(
                        &s.name,
                        host,
                        local_backends,
                        &s.proxy.balance,
                        &s.proxy.checks,
                        &settings,
                        s.proxy.backend_tls.as_ref(),
                    ) {
                        Ok(p) => {
                            let p = Arc::new(p);
                            spawn_health_checks(&p);
                            Some(p)
                        }
                        Err(e) => {
                            tracing::error!(service = %s.name, error = %e, "cannot build the backend pool");
                            None
                        }
                    },
                };
                if let Some(p) = &pool {
                    kept.insert(key, p.clone());
                    let drained: Vec<&str> = snapshot
                        .backend_drains
                        .iter()
                        .filter(|(svc, _, _)| *svc == s.name)
                        .map(|(_, b, _)| b.as_str())
                        .collect();
                    p.apply_drains(&drained);
                }
                pool
            };
            let affinity = match &s.proxy.balance {
                Balance::ConsistentHash(a) => Some(a.clone()),
                _ => None,
            };
            let host = s.hostname.to_string().trim_end_matches('.').to_ascii_lowercase();
            hosts.push(HostRoute {
                ok_local: self.metrics.requests_for(
                    &s.name,
                    &self.options.region,
                    "200",
                    &self.options.region,
                ),
                host,
                service,
                name: s.name.clone(),
                pool,
                proxied: !s.proxy.backends.is_empty(),
                affinity,
                local_allowed_for_all: local
                    .is_some_and(|l| meridian_steer::residency_allows_everyone(&topology, service, l)),
            });
        }
        // Pools no longer configured are dropped here; their health loops end with them.
        *pools = kept;
        drop(pools);
        let others_in_flight = snapshot
            .loads
            .iter()
            .filter(|(r, i, _)| *r == self.options.region && *i != self.options.instance)
            .map(|(_, _, l)| l.in_flight)
            .fold(0u32, u32::saturating_add);
        let states_local_drained = match local {
            Some(l) => drained_copy(&snapshot.states, l),
            None => snapshot.states.clone(),
        };
        let tls = config.tls();
        RouteTable {
            hop_client: hop.map(|h| h.client.clone()),
            snapshot,
            local,
            states_local_drained,
            reachable,
            peers,
            hosts,
            settings,
            redirect_plain: tls.is_some_and(|t| t.plain_http == meridian_config::PlainHttp::Redirect),
            hsts: tls.and_then(|t| t.hsts_value()).map(Arc::from),
            handshake_timeout: Duration::from_millis(u64::from(
                tls.map_or(10_000, |t| t.handshake_timeout_ms),
            )),
            others_in_flight,
            latency_on: config.services().iter().any(|s| s.latency.is_some()),
        }
    }

    /// Backends of the local region (all services) that can take requests now.
    pub fn healthy_backends(&self) -> u32 {
        let now = now_ms();
        self.table().map_or(0, |t| {
            t.hosts
                .iter()
                .filter_map(|h| h.pool.as_ref())
                .map(|p| p.usable_count(now))
                .sum()
        })
    }

    fn update_gauges(&self) {
        let now = now_ms();
        if let Some(t) = self.table() {
            for h in &t.hosts {
                if let Some(p) = &h.pool {
                    self.metrics
                        .healthy_backends
                        .with_label_values(&[&self.options.region, &h.name])
                        .set(i64::from(p.usable_count(now)));
                }
            }
        }
    }

    /// Starts the background work on the current tokio runtime: the routing table follows the watcher's
    /// snapshots, and a load report is written every second under a lease of `store` (when given).
    pub fn start(self: &Arc<Self>, store: Option<Arc<dyn KvStore>>) {
        self.refresh();
        let node = self.clone();
        let refresher = tokio::spawn(async move {
            let mut revisions = node.watcher.revisions();
            loop {
                // Health is re-aggregated on a timer without a new revision: poll too.
                let _ = tokio::time::timeout(Duration::from_millis(100), revisions.changed()).await;
                node.refresh();
            }
        });
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.push(refresher);
        if let Some(store) = store {
            let node = self.clone();
            tasks.push(tokio::spawn(async move { node.report_loop(store).await }));
        }
    }

    /// The load report for now (and the window it closes).
    pub fn load_report(&self) -> LoadReport {
        let w = self.window.take();
        let secs = REPORT_INTERVAL.as_secs_f64();
        LoadReport {
            schema: 1,
            in_flight: self.local_in_flight(),
            request_rate: w.requests as f64 / secs,
            capacity: self.options.capacity,
            reported_at_ms: now_ms(),
            error_rate: (w.requests > 0).then(|| w.errors as f64 / w.requests as f64),
            latency_ms: w.latency,
            healthy_backends: Some(self.healthy_backends()),
        }
    }

    async fn report_loop(self: Arc<Self>, store: Arc<dyn KvStore>) {
        let key = self
            .options
            .keys
            .load(&self.options.region, &self.options.instance);
        let keeper = loop {
            if self.stopped.load(Ordering::Relaxed) {
                return;
            }
            match LeaseKeeper::start(store.clone(), LEASE_TTL).await {
                Ok(k) => break k,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot get a lease for load reports; retrying");
                    tokio::time::sleep(REPORT_INTERVAL).await;
                }
            }
        };
        let mut keeper = Some(keeper);
        let latency_key = self
            .options
            .keys
            .latency(&self.options.region, &self.options.instance);
        let latency_every = (PUBLISH_INTERVAL.as_millis() / REPORT_INTERVAL.as_millis()).max(1) as u64;
        let mut ticks = 0u64;
        let mut published_areas = 0usize;
        let mut tick = tokio::time::interval(REPORT_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.stop_notify.notified() => break,
            }
            if self.stopped.load(Ordering::Relaxed) {
                break;
            }
            self.update_gauges();
            let report = self.load_report();
            let Some(k) = keeper.as_ref() else { break };
            if let Err(e) = store.put(&key, encode(&report), Some(k.id())).await {
                tracing::warn!(error = %e, key = %key, "cannot write the load report");
            }
            ticks += 1;
            // The latency summary, under the same lease, every PUBLISH_INTERVAL; nothing while no
            // service steers by latency and nothing was published (an emptied summary is written once).
            if ticks.is_multiple_of(latency_every) {
                let summary = self.latency.summary(now_ms());
                let on = self.table().is_some_and(|t| t.latency_on);
                if on && !summary.areas.is_empty() || published_areas > 0 {
                    published_areas = summary.areas.len();
                    if let Err(e) = store.put(&latency_key, encode(&summary), Some(k.id())).await {
                        tracing::warn!(error = %e, key = %latency_key, "cannot write the latency summary");
                    }
                }
            }
        }
        if let Some(k) = keeper.take() {
            let _ = k.stop().await;
        }
    }

    /// Stops the background work; the load report's lease is revoked (its key vanishes at once).
    pub async fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        self.stop_notify.notify_one();
        let tasks: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        let mut reporters = Vec::new();
        for (i, t) in tasks.into_iter().enumerate() {
            if i == 0 {
                t.abort();
            } else {
                reporters.push(t);
            }
        }
        for r in reporters {
            // The reporter notices `stopped` within a report interval and revokes its lease.
            let _ = tokio::time::timeout(REPORT_INTERVAL * 3, r).await;
        }
        *self.pools.lock().unwrap_or_else(|p| p.into_inner()) = HashMap::new();
        self.table.store(None);
    }

    /// Replaces the GeoIP database: requests from now on locate their clients with `geo`.
    pub fn set_geo(&self, geo: Arc<GeoDb>) {
        self.geo.store(geo);
    }

    /// The GeoIP database in use.
    pub fn geo(&self) -> Arc<GeoDb> {
        self.geo.load_full()
    }

    /// The hop material of `hops`, loaded again only when the settings or a file changed (tables are
    /// rebuilt at every snapshot; the files are small). A failure is logged and keeps the last good
    /// material; with none, `None` (the other regions are then not reachable at all).
    fn hop_material(&self, hops: &meridian_config::HopTls) -> Option<Arc<HopPeerTls>> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        hops.hash(&mut h);
        for f in [&hops.ca, &hops.cert, &hops.key] {
            std::fs::read(f).ok().hash(&mut h);
        }
        let fingerprint = h.finish();
        let mut cached = self.hop.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((f, m)) = cached.as_ref()
            && *f == fingerprint
        {
            return Some(m.clone());
        }
        let loaded = meridian_tls::HopMaterial::load(hops)
            .map_err(|e| e.to_string())
            .and_then(|m| HopPeerTls::new(&m).map_err(|e| e.to_string()));
        match loaded {
            Ok(m) => {
                let m = Arc::new(m);
                *cached = Some((fingerprint, m.clone()));
                Some(m)
            }
            Err(e) => {
                tracing::error!(
                    "region {}: the hop TLS material does not load ({e}); {}",
                    self.options.region,
                    if cached.is_some() {
                        "the last good material stays in use"
                    } else {
                        "requests cannot be spilled to other regions"
                    }
                );
                cached.as_ref().map(|(_, m)| m.clone())
            }
        }
    }

    /// The round-trip estimates of this proxy's client connections.
    pub fn latency(&self) -> &LatencySampler {
        &self.latency
    }

    /// Samples the round-trip time of a client connection from `peer` (once per connection, at most once
    /// per area every [`crate::latency::MIN_SAMPLE_GAP`]), when some service steers by latency and the
    /// client has a latency area.
    pub(crate) fn sample_rtt(&self, stream: &pingora::protocols::Stream, peer: IpAddr) {
        if !self.table.load().as_ref().is_some_and(|t| t.latency_on) {
            return;
        }
        let now = now_ms();
        let Some(area) = self
            .latency
            .due(meridian_steer::latency_area(&self.locate(peer)), now)
        else {
            return;
        };
        if let Some(rtt_ms) = connection_rtt_ms(stream) {
            self.latency.record(area, rtt_ms, now);
            self.metrics
                .latency_samples
                .with_label_values(&[&self.options.region])
                .inc();
        }
    }

    /// Locates a client (for the slow path).
    pub(crate) fn locate(&self, ip: IpAddr) -> meridian_steer::ClientLocation {
        let (country, continent, coords) = self.geo.load().locate(ip).parts();
        meridian_steer::ClientLocation::new(country, continent, coords)
    }
}

/// The hop material in the forms the two HTTP engines take: pingora's peer options and the fast path's
/// rustls client configuration.
pub(crate) struct HopPeerTls {
    ca: Arc<pingora::protocols::tls::CaType>,
    cert_key: Arc<pingora::utils::tls::CertKey>,
    client: Arc<meridian_tls::rustls::ClientConfig>,
}

impl HopPeerTls {
    fn new(m: &meridian_tls::HopMaterial) -> Result<Self, meridian_tls::rustls::Error> {
        use pingora::utils::tls::{WrappedX509, parse_x509};
        let ca: Vec<WrappedX509> = m
            .ca_certificates()
            .iter()
            .map(|c| WrappedX509::new(c.to_vec(), parse_x509))
            .collect();
        let (chain, key) = m.chain_and_key();
        let cert_key = pingora::utils::tls::CertKey::new(
            chain.iter().map(|c| c.to_vec()).collect(),
            key.secret_der().to_vec(),
        );
        Ok(Self {
            ca: Arc::from(ca),
            cert_key: Arc::new(cert_key),
            client: Arc::new(m.client_config()?),
        })
    }
}

/// A listening address with its region's proxy.
#[derive(Clone, Debug)]
pub struct Listener {
    /// The proxy.
    pub node: Arc<ProxyNode>,
    /// Where it takes requests.
    pub addr: SocketAddr,
    /// What it speaks.
    pub kind: crate::tls::ListenKind,
}

impl Listener {
    /// A plain-HTTP listener of a proxy without HTTPS.
    pub fn http(node: Arc<ProxyNode>, addr: SocketAddr) -> Self {
        Self {
            node,
            addr,
            kind: crate::tls::ListenKind::Http { https_port: None },
        }
    }
}
