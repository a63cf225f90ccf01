//! One service's backends in the local region: pingora's `LoadBalancer` (round robin or ketama) for
//! selection and active health checks, plus what pingora lacks — least-outstanding-requests selection and
//! passive ejection after consecutive failures.
//!
//! A backend is *ready* when pingora's health check says healthy **and** it is enabled. Draining (an
//! operator's `overrides/backend-drains/...` key) uses `Backends::set_enable(false)`, never weight 0: a
//! weight-0 backend panics pingora's ketama selector (pingora issue #1006).
//!
//! The request path reads readiness from flags of its own, not from pingora's `Backends::ready` (a
//! SipHash of the backend and a map lookup, twice per request in the profile): pingora's health check
//! reports every flip to [`HealthFlags`], and a drain sets both pingora's enablement and the slot's flag.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use meridian_config::{BackendChecks, BackendTls, Balance, ProxySettings};
use pingora::http::RequestHeader;
use pingora::lb::health_check::{HealthObserve, HttpHealthCheck, TcpHealthCheck};
use pingora::lb::selection::{Consistent, RoundRobin};
use pingora::lb::{Backend, Backends, LoadBalancer};
use pingora::upstreams::peer::HttpPeer;

/// Up to this many candidates are examined per selection.
const MAX_SELECT_ITERATIONS: usize = 256;

/// Backends already tried by one request (their slot indices), so a retry picks another.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tried(u128);

impl Tried {
    /// Marks slot `i` as tried (slots beyond 127 share the last bit; pools are at most 256 backends and
    /// retries few, so this only makes a retry skip more than it must).
    pub fn insert(&mut self, i: usize) {
        self.0 |= 1 << i.min(127);
    }

    /// Whether slot `i` was tried.
    pub fn contains(&self, i: usize) -> bool {
        self.0 & (1 << i.min(127)) != 0
    }

    /// Number of slots tried.
    pub fn count(&self) -> u32 {
        self.0.count_ones()
    }
}

/// One backend and its request-path counters.
#[derive(Debug)]
pub struct Slot {
    /// Its address.
    pub addr: SocketAddr,
    backend: Backend,
    peer: Arc<HttpPeer>,
    in_flight: AtomicU32,
    failures: AtomicU32,
    ejected_until_ms: AtomicU64,
    drained: AtomicBool,
}

/// The health-check verdict of each slot, as pingora's health check last reported it (healthy until it
/// says otherwise, as pingora starts).
#[derive(Clone, Debug)]
struct HealthFlags {
    addrs: Arc<[SocketAddr]>,
    healthy: Arc<[AtomicBool]>,
}

impl HealthFlags {
    fn new(addrs: &[SocketAddr]) -> Self {
        Self {
            addrs: addrs.into(),
            healthy: addrs.iter().map(|_| AtomicBool::new(true)).collect(),
        }
    }

    fn healthy(&self, i: usize) -> bool {
        self.healthy.get(i).is_some_and(|h| h.load(Ordering::Relaxed))
    }
}

#[async_trait]
impl HealthObserve for HealthFlags {
    async fn observe(&self, target: &Backend, healthy: bool) {
        let Some(addr) = target.addr.as_inet() else { return };
        for (a, h) in self.addrs.iter().zip(self.healthy.iter()) {
            if a == addr {
                h.store(healthy, Ordering::Relaxed);
            }
        }
    }
}

impl Slot {
    /// Requests in flight to this backend from this proxy.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// An upstream peer for this backend (pingora pools its connections by peer: keep-alive is reused).
    /// Shared: handing it to a request is a reference count, not a copy of pingora's peer options.
    pub fn peer(&self) -> Arc<HttpPeer> {
        Arc::clone(&self.peer)
    }
}

enum Selector {
    RoundRobin(LoadBalancer<RoundRobin>),
    Consistent(LoadBalancer<Consistent>),
}

impl Selector {
    fn backends(&self) -> &Backends {
        match self {
            Self::RoundRobin(lb) => lb.backends(),
            Self::Consistent(lb) => lb.backends(),
        }
    }
}

/// One service's backends in the local region.
pub struct Pool {
    /// The service.
    pub service: String,
    slots: Vec<Slot>,
    selector: Selector,
    balance: Balance,
    checks: BackendChecks,
    health: HealthFlags,
    turn: AtomicUsize,
    /// The fast path's rustls configuration for these backends (`None`: plain HTTP).
    pub(crate) tls_client: Option<Arc<meridian_tls::rustls::ClientConfig>>,
}

/// TLS to a pool's backends in the forms the two engines take: pingora's peer options (name, CA) and
/// the fast path's client configuration.
struct BackendTlsPeer {
    name: String,
    ca: Option<Arc<pingora::protocols::tls::CaType>>,
    client: Arc<meridian_tls::rustls::ClientConfig>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("service", &self.service)
            .field("slots", &self.slots)
            .field("balance", &self.balance)
            .finish_non_exhaustive()
    }
}

/// What makes two pools the same (kept across configuration changes, with their health state).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PoolKey {
    service: String,
    hostname: String,
    backends: Vec<SocketAddr>,
    balance: String,
    checks: String,
    timeouts: (u32, u32),
    tls: Option<BackendTls>,
}

impl PoolKey {
    /// The identity of a pool built from these inputs.
    pub fn new(
        service: &str,
        hostname: &str,
        backends: &[SocketAddr],
        balance: &Balance,
        checks: &BackendChecks,
        settings: &ProxySettings,
        tls: Option<&BackendTls>,
    ) -> Self {
        Self {
            service: service.to_owned(),
            hostname: hostname.to_owned(),
            backends: backends.to_vec(),
            balance: format!("{balance:?}"),
            checks: format!("{checks:?}"),
            timeouts: (settings.connect_timeout_ms, settings.upstream_timeout_ms),
            tls: tls.cloned(),
        }
    }
}

impl Pool {
    /// A pool over `backends` (at least one), health-checked with `checks` against `hostname`, reached
    /// over TLS when `tls` says so (the CA file is read here: pools are built when the configuration
    /// changes, never per request).
    pub fn new(
        service: &str,
        hostname: &str,
        backends: &[SocketAddr],
        balance: &Balance,
        checks: &BackendChecks,
        settings: &ProxySettings,
        tls: Option<&BackendTls>,
    ) -> std::io::Result<Self> {
        let timeout = Duration::from_millis(u64::from(checks.timeout_ms));
        let tls = match tls {
            None => None,
            Some(t) => {
                let client = meridian_tls::backend_client(t.ca.as_deref()).map_err(std::io::Error::other)?;
                let ca: Option<Arc<pingora::protocols::tls::CaType>> = (!client.ca.is_empty()).then(|| {
                    let list: Vec<pingora::utils::tls::WrappedX509> = client
                        .ca
                        .iter()
                        .map(|c| {
                            pingora::utils::tls::WrappedX509::new(c.to_vec(), pingora::utils::tls::parse_x509)
                        })
                        .collect();
                    Arc::from(list)
                });
                Some(BackendTlsPeer {
                    name: t.server_name.clone().unwrap_or_else(|| hostname.to_owned()),
                    ca,
                    client: client.config,
                })
            }
        };
        let flags = HealthFlags::new(backends);
        let health: Box<dyn pingora::lb::health_check::HealthCheck + Send + Sync> = match &checks.path {
            Some(path) => {
                let mut hc = HttpHealthCheck::new(hostname, tls.is_some());
                if let Some(t) = &tls {
                    hc.peer_template.sni = t.name.clone();
                    hc.peer_template.options.ca = t.ca.clone();
                }
                let mut req = RequestHeader::build("GET", path.as_bytes(), None)
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                req.insert_header("Host", hostname)
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                req.insert_header("User-Agent", "meridian-proxy-health")
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                hc.req = req;
                hc.peer_template.options.connection_timeout = Some(timeout);
                hc.peer_template.options.read_timeout = Some(timeout);
                hc.peer_template.options.total_connection_timeout = Some(timeout);
                hc.consecutive_success = checks.rise as usize;
                hc.consecutive_failure = checks.fall as usize;
                hc.health_changed_callback = Some(Box::new(flags.clone()));
                Box::new(hc)
            }
            None => {
                let mut hc = TcpHealthCheck::new();
                hc.peer_template.options.connection_timeout = Some(timeout);
                hc.peer_template.options.total_connection_timeout = Some(timeout);
                hc.consecutive_success = checks.rise as usize;
                hc.consecutive_failure = checks.fall as usize;
                hc.health_changed_callback = Some(Box::new(flags.clone()));
                hc
            }
        };
        let selector = match balance {
            Balance::ConsistentHash(_) => {
                let mut lb = LoadBalancer::<Consistent>::try_from_iter(backends.iter().copied())?;
                lb.set_health_check(health);
                Selector::Consistent(lb)
            }
            Balance::RoundRobin | Balance::LeastRequests => {
                let mut lb = LoadBalancer::<RoundRobin>::try_from_iter(backends.iter().copied())?;
                lb.set_health_check(health);
                Selector::RoundRobin(lb)
            }
        };
        let connect = Duration::from_millis(u64::from(settings.connect_timeout_ms));
        let io = Duration::from_millis(u64::from(settings.upstream_timeout_ms));
        let slots = backends
            .iter()
            .map(|&addr| {
                let mut peer = match &tls {
                    None => HttpPeer::new(addr, false, String::new()),
                    Some(t) => {
                        let mut p = HttpPeer::new(addr, true, t.name.clone());
                        p.options.ca = t.ca.clone();
                        p
                    }
                };
                peer.options.connection_timeout = Some(connect);
                peer.options.total_connection_timeout = Some(connect);
                peer.options.read_timeout = Some(io);
                peer.options.write_timeout = Some(io);
                peer.options.idle_timeout = Some(Duration::from_secs(60));
                Slot {
                    addr,
                    backend: Backend {
                        addr: pingora::protocols::l4::socket::SocketAddr::Inet(addr),
                        weight: 1,
                        ext: Default::default(),
                    },
                    peer: Arc::new(peer),
                    in_flight: AtomicU32::new(0),
                    failures: AtomicU32::new(0),
                    ejected_until_ms: AtomicU64::new(0),
                    drained: AtomicBool::new(false),
                }
            })
            .collect();
        Ok(Self {
            service: service.to_owned(),
            slots,
            selector,
            balance: balance.clone(),
            checks: checks.clone(),
            health: flags,
            turn: AtomicUsize::new(0),
            tls_client: tls.map(|t| t.client),
        })
    }

    /// The backends.
    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    fn slot_of(&self, b: &Backend) -> Option<usize> {
        let addr = b.addr.as_inet()?;
        self.slots.iter().position(|s| s.addr == *addr)
    }

    /// Whether slot `i` can take a request now: healthy, enabled, not ejected.
    pub fn usable(&self, i: usize, now_ms: u64) -> bool {
        self.slots.get(i).is_some_and(|s| {
            self.health.healthy(i)
                && !s.drained.load(Ordering::Relaxed)
                && s.ejected_until_ms.load(Ordering::Relaxed) <= now_ms
        })
    }

    /// Whether any backend not in `tried` can take a request now.
    pub fn has_usable(&self, tried: Tried, now_ms: u64) -> bool {
        (0..self.slots.len()).any(|i| !tried.contains(i) && self.usable(i, now_ms))
    }

    /// Backends that can take a request now.
    pub fn usable_count(&self, now_ms: u64) -> u32 {
        (0..self.slots.len()).filter(|&i| self.usable(i, now_ms)).count() as u32
    }

    /// Picks a backend not in `tried`; `key` is the affinity key (consistent hashing only).
    pub fn select(&self, key: &[u8], tried: Tried, now_ms: u64) -> Option<usize> {
        let candidate = |i: usize| !tried.contains(i) && self.usable(i, now_ms);
        match &self.selector {
            Selector::Consistent(lb) => lb
                .select_with(key, MAX_SELECT_ITERATIONS, |b, _| {
                    self.slot_of(b).is_some_and(candidate)
                })
                .and_then(|b| self.slot_of(&b)),
            // Round robin and least-outstanding-requests both start at the next slot in turn, so that
            // equal loads still rotate.
            Selector::RoundRobin(_) => {
                let n = self.slots.len();
                let start = self.turn.fetch_add(1, Ordering::Relaxed);
                let mut usable = (0..n).map(|k| (start + k) % n).filter(|&i| candidate(i));
                if matches!(self.balance, Balance::LeastRequests) {
                    usable.min_by_key(|&i| self.slots[i].in_flight())
                } else {
                    usable.next()
                }
            }
        }
    }

    /// A request to slot `i` starts.
    pub fn begin(&self, i: usize) {
        if let Some(s) = self.slots.get(i) {
            s.in_flight.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A request to slot `i` ended; `ok`: the backend answered (whatever the status). Consecutive
    /// failures eject the backend for `eject-for-ms`; returns `true` when this failure ejected it.
    pub fn end(&self, i: usize, ok: bool, now_ms: u64) -> bool {
        self.release(i);
        self.outcome(i, ok, now_ms)
    }

    /// A request to slot `i` ended without a verdict on the backend: the client went away, or the
    /// request failed on this side. Why it matters: counting a client's abort as a backend failure
    /// ejects a healthy backend whenever a load generator (or an impatient browser) closes connections
    /// with requests in flight.
    pub fn release(&self, i: usize) {
        if let Some(s) = self.slots.get(i) {
            s.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Records the outcome of an attempt on slot `i` without touching its in-flight count.
    pub fn outcome(&self, i: usize, ok: bool, now_ms: u64) -> bool {
        let Some(s) = self.slots.get(i) else { return false };
        if ok {
            if s.failures.load(Ordering::Relaxed) != 0 {
                s.failures.store(0, Ordering::Relaxed);
            }
            return false;
        }
        let limit = self.checks.eject_after_failures;
        if limit == 0 {
            return false;
        }
        let n = s.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= limit {
            s.failures.store(0, Ordering::Relaxed);
            s.ejected_until_ms
                .store(now_ms + u64::from(self.checks.eject_for_ms), Ordering::Relaxed);
            tracing::warn!(
                service = %self.service,
                backend = %s.addr,
                failures = n,
                "backend ejected after consecutive failures"
            );
            return true;
        }
        false
    }

    /// Drains (or restores) the backends named in `drained` (`IP:PORT` as written in the store).
    pub fn apply_drains(&self, drained: &[&str]) {
        for s in &self.slots {
            let text = s.addr.to_string();
            let d = drained.contains(&text.as_str());
            if s.drained.swap(d, Ordering::Relaxed) != d {
                tracing::info!(service = %self.service, backend = %s.addr, drained = d, "backend drain changed");
            }
            // Never weight 0 (pingora #1006): enablement is the drain switch.
            self.selector.backends().set_enable(&s.backend, !d);
        }
    }

    /// Whether slot `i` is drained by an operator.
    pub fn drained(&self, i: usize) -> bool {
        self.slots
            .get(i)
            .is_some_and(|s| s.drained.load(Ordering::Relaxed))
    }

    /// One health-check round over every backend.
    pub async fn check_once(&self) {
        self.selector.backends().run_health_check(true).await;
    }

    /// Time between health-check rounds.
    pub fn check_interval(&self) -> Duration {
        Duration::from_millis(u64::from(self.checks.interval_ms))
    }
}

/// Runs the health checks of `pool` until it is dropped (the loop holds it weakly).
pub async fn health_loop(pool: Weak<Pool>) {
    loop {
        let Some(p) = pool.upgrade() else { return };
        let interval = p.check_interval();
        p.check_once().await;
        drop(p);
        tokio::time::sleep(interval).await;
    }
}

/// Spawns the health-check loop of `pool` on the current tokio runtime.
pub fn spawn_health_checks(pool: &Arc<Pool>) {
    tokio::spawn(health_loop(Arc::downgrade(pool)));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pool(balance: Balance) -> Pool {
        let addrs: Vec<SocketAddr> = (1..=3)
            .map(|p| format!("127.0.0.1:{p}").parse().unwrap())
            .collect();
        let checks = BackendChecks::default();
        Pool::new(
            "svc",
            "svc.example",
            &addrs,
            &balance,
            &checks,
            &ProxySettings::default(),
            None,
        )
        .unwrap()
    }

    fn backend(pool: &Pool, i: usize) -> Backend {
        pool.slots[i].backend.clone()
    }

    /// Round robin rotates over the usable slots; a health-check verdict, a drain, an ejection or an
    /// earlier attempt of the same request each take a slot out, and the verdict brings it back.
    #[tokio::test]
    async fn selection_follows_health_drains_and_ejections() {
        let p = pool(Balance::RoundRobin);
        let picks: Vec<_> = (0..6)
            .map(|_| p.select(&[], Tried::default(), 0).unwrap())
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);

        p.health.observe(&backend(&p, 1), false).await;
        assert!(!p.usable(1, 0));
        let picks: Vec<_> = (0..4)
            .map(|_| p.select(&[], Tried::default(), 0).unwrap())
            .collect();
        assert!(!picks.contains(&1), "{picks:?}");

        p.apply_drains(&["127.0.0.1:3"]);
        assert!(p.drained(2) && !p.usable(2, 0));
        assert_eq!(p.select(&[], Tried::default(), 0), Some(0));
        let mut tried = Tried::default();
        tried.insert(0);
        assert_eq!(
            p.select(&[], tried, 0),
            None,
            "only slot 0 is usable and it was tried"
        );

        p.health.observe(&backend(&p, 1), true).await;
        p.apply_drains(&[]);
        assert_eq!(p.usable_count(0), 3);
        for _ in 0..BackendChecks::default().eject_after_failures {
            p.begin(0);
            p.end(0, false, 1_000);
        }
        assert!(!p.usable(0, 1_000) && p.usable(0, 1_000 + 10_000));
        assert!(p.has_usable(Tried::default(), 1_000));
    }

    /// Least-outstanding-requests picks the least loaded usable slot, rotating among equals.
    #[tokio::test]
    async fn least_requests_prefers_idle_backends() {
        let p = pool(Balance::LeastRequests);
        p.begin(0);
        p.begin(0);
        p.begin(1);
        assert_eq!(p.select(&[], Tried::default(), 0), Some(2));
        p.health.observe(&backend(&p, 2), false).await;
        assert_eq!(p.select(&[], Tried::default(), 0), Some(1));
        p.release(0);
        p.release(0);
        let picks: Vec<_> = (0..2)
            .map(|_| p.select(&[], Tried::default(), 0).unwrap())
            .collect();
        assert_eq!(picks, [0, 0], "slot 0 is now idle, slot 1 busy");
    }
}
