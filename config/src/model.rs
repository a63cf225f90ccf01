//! The validated model. Values of these types only come out of validation, so the rest of Meridian can rely
//! on every reference resolving and every number being in range.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use crate::{Continent, CountryCode, CountrySet, DomainName, RecordData};

/// A point on Earth in degrees (WGS 84).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Coordinates {
    /// Latitude, -90 to 90.
    pub lat: f64,
    /// Longitude, -180 to 180.
    pub lon: f64,
}

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// A datacentre (or cloud region) that can serve clients.
#[derive(Clone, Debug, PartialEq)]
pub struct Region {
    /// Short identifier used everywhere else (`waw`).
    pub id: String,
    /// Display name (`Warsaw`).
    pub name: String,
    /// Where it is; `nearest` measures great-circle distance from here.
    pub location: Coordinates,
    /// The country it is in.
    pub country: CountryCode,
    /// Legal jurisdictions it satisfies (`eu`); residency rules require one of these tags.
    pub jurisdictions: Vec<String>,
    /// IPv4 addresses DNS answers with when this region is chosen.
    pub ipv4: Vec<Ipv4Addr>,
    /// IPv6 addresses DNS answers with when this region is chosen.
    pub ipv6: Vec<Ipv6Addr>,
    /// How many requests it can have in flight at once while serving well. Load reports count in-flight
    /// requests in the same unit; above a service's `spill-at` share of it, clients start to spill over.
    pub capacity: u32,
    /// Default weight (0–10000) until an operator overrides it; 0 means "send nothing here".
    pub weight: u32,
    /// Where this region's L7 proxy takes requests spilled from other regions (`None`: it takes none).
    pub proxy_address: Option<std::net::SocketAddr>,
    /// What probers check to decide whether the region serves (none: the region is never probed, and its
    /// health stays unknown, which steering treats as usable).
    pub health_checks: Vec<HealthCheck>,
}

impl Region {
    /// Whether the region carries jurisdiction tag `tag`.
    pub fn has_jurisdiction(&self, tag: &str) -> bool {
        self.jurisdictions.iter().any(|j| j == tag)
    }
}

/// A zone served authoritatively.
#[derive(Clone, Debug, PartialEq)]
pub struct Zone {
    /// The zone apex (`gslb.example`).
    pub origin: DomainName,
    /// Default TTL of static records, and of SOA and NS.
    pub ttl: u32,
    /// Authoritative name servers (apex NS records).
    pub ns: Vec<DomainName>,
    /// Start of authority data (the serial is not configured: it follows configuration changes).
    pub soa: Soa,
    /// Static records, names fully qualified.
    pub records: Vec<StaticRecord>,
    /// Online DNSSEC signing (`None`: the zone is served unsigned).
    pub dnssec: Option<crate::dnssec::DnssecSettings>,
}

/// SOA fields other than the serial.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Soa {
    /// Primary name server.
    pub mname: DomainName,
    /// Responsible mailbox, in domain-name form (`hostmaster.gslb.example`).
    pub rname: DomainName,
    /// Seconds between secondary refreshes.
    pub refresh: u32,
    /// Seconds between retries of a failed refresh.
    pub retry: u32,
    /// Seconds after which a secondary stops answering.
    pub expire: u32,
    /// Negative-caching TTL (RFC 2308).
    pub minimum: u32,
}

/// One static record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticRecord {
    /// Owner name, fully qualified.
    pub name: DomainName,
    /// TTL in seconds.
    pub ttl: u32,
    /// Type and data.
    pub data: RecordData,
}

/// How a service picks regions for a client.
#[derive(Clone, Debug, PartialEq)]
pub enum Policy {
    /// The nearest region by great-circle distance. Regions within `near_tie_km` of the nearest one are
    /// treated as equally near, and weights split clients between them.
    Nearest {
        /// Width of a near-tie, in kilometres.
        near_tie_km: f64,
    },
    /// The first available region of the ordered `regions` list (primary, then backups).
    Failover,
    /// Clients spread over the regions in proportion to their weights, whatever their location.
    Weighted,
    /// An explicit map from country or continent to an ordered region list.
    Geo(GeoMap),
}

impl Policy {
    /// The name used in the configuration file.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Nearest { .. } => "nearest",
            Self::Failover => "failover",
            Self::Weighted => "weighted",
            Self::Geo(_) => "geo",
        }
    }
}

/// The map of a `geo` policy. Lookup order: country, then continent, then `default`.
#[derive(Clone, Debug, PartialEq)]
pub struct GeoMap {
    /// Per-country ordered region lists.
    pub countries: Vec<(CountryCode, Vec<String>)>,
    /// Per-continent ordered region lists.
    pub continents: Vec<(Continent, Vec<String>)>,
    /// For clients matching neither, and for clients whose location is unknown.
    pub default: Vec<String>,
}

/// What a service answers when every region it could use is down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WhenAllDown {
    /// "Panic mode": ignore health and answer the regions policy would pick if they were up, on the
    /// grounds that a total outage is more often a failure of the observers than of every region
    /// (Envoy's panic threshold). Drained, weight-0 and residency-excluded regions stay excluded.
    Panic,
    /// Answer with this region, whatever its health (a static "sorry" site or a last-resort region).
    /// Residency still applies to it.
    Fallback(String),
    /// Answer SERVFAIL, letting resolvers and clients apply their own failover.
    Servfail,
}

/// A hostname whose A/AAAA answers are steered.
#[derive(Clone, Debug, PartialEq)]
pub struct Service {
    /// Identifier (`meet`).
    pub name: String,
    /// Fully qualified hostname (`meet.gslb.example`).
    pub hostname: DomainName,
    /// Origin of the zone the hostname belongs to.
    pub zone: DomainName,
    /// Selection policy.
    pub policy: Policy,
    /// Eligible regions. For `failover` the order is the failover order.
    pub regions: Vec<String>,
    /// How many regions an answer names (their addresses are concatenated in order).
    pub answer_regions: usize,
    /// Upper bound on addresses per record type in one answer.
    pub max_addresses: usize,
    /// TTL of the steered records, in seconds.
    pub ttl: u32,
    /// Utilisation (in-flight / capacity) above which clients start spilling to the next region, in
    /// proportion to the overload.
    pub spill_at: f64,
    /// Behaviour when every eligible region is down.
    pub when_all_down: WhenAllDown,
    /// Names of the residency rules that apply.
    pub residency: Vec<String>,
    /// Ordered regions for clients whose location is unknown (defaults to `regions`). Used by `nearest`;
    /// `geo` uses its map's default, `failover` and `weighted` do not depend on location.
    pub unknown_location: Vec<String>,
    /// Backends behind the regions' L7 proxies, and how they are balanced and checked.
    pub proxy: ServiceProxy,
    /// Steering by measured latency (`[services.NAME.latency]`, policy `nearest` only); `None`: distance
    /// alone.
    pub latency: Option<LatencySteering>,
}

/// How a `nearest` service uses the latency its proxies measure (`docs/latency.md`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LatencySteering {
    /// Samples a (client area, region) estimate needs before it counts.
    pub min_samples: u32,
    /// A measured region must beat the nearest one by at least this many milliseconds...
    pub margin_ms: f64,
    /// ...and by at least this share of the nearest one's latency (0 to 1).
    pub margin_share: f64,
    /// Share of a client area's networks sent to another allowed region to measure it (0 to 0.2).
    pub explore_share: f64,
    /// How many of the next regions (in answer order after the chosen one) exploration may use.
    pub explore_regions: usize,
}

/// Whether a residency rule restricts clients whose location is unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnknownClients {
    /// Treat them as if they were in the rule's countries (fail closed). The default.
    Restrict,
    /// Let them go anywhere; the decision still says residency was not applied and why.
    Exempt,
}

/// "Clients located in these countries may only be sent to regions carrying this jurisdiction tag."
#[derive(Clone, Debug, PartialEq)]
pub struct ResidencyRule {
    /// Identifier (`gdpr`).
    pub name: String,
    /// Free text for operators.
    pub description: Option<String>,
    /// The countries covered, groups expanded.
    pub countries: CountrySet,
    /// How the rule was written (`EEA`, `CH`), for display.
    pub written_as: Vec<String>,
    /// The jurisdiction tag an allowed region must carry.
    pub jurisdiction: String,
    /// Treatment of clients whose location is unknown.
    pub unknown_clients: UnknownClients,
}

/// GeoIP settings.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct GeoIpSettings {
    /// A MaxMind-format database (GeoIP2/GeoLite2 City or Country, or DB-IP Lite), as written in the file;
    /// relative paths are relative to the configuration file. `None` selects the bundled DB-IP Lite
    /// country database.
    pub database: Option<PathBuf>,
}

/// One probe of a region's public endpoint, run by every prober (vantage point) on its own schedule.
///
/// A prober flips its opinion of the check only after `fall` consecutive failures (to down) or `rise`
/// consecutive successes (to up), so one lost probe never changes anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    /// What is probed and how.
    pub target: CheckTarget,
    /// Time between the starts of two probes, in milliseconds.
    pub interval_ms: u32,
    /// A probe not finished after this long failed (milliseconds; less than `interval_ms`).
    pub timeout_ms: u32,
    /// Each wait between probes is lengthened by a random 0 to `jitter_ms`, so probers drift apart.
    pub jitter_ms: u32,
    /// Consecutive successes that make a down (or not yet known) check up.
    pub rise: u32,
    /// Consecutive failures that make an up (or not yet known) check down.
    pub fall: u32,
}

impl HealthCheck {
    /// The longest time from the endpoint dying to this check being down at one prober: `fall` probes
    /// must fail; the first may start just before the death (and pass), so the last failing one starts at
    /// most `fall` waits later and takes at most `timeout_ms` to fail.
    pub fn worst_detection_ms(&self) -> u64 {
        u64::from(self.fall) * (u64::from(self.interval_ms) + u64::from(self.jitter_ms))
            + u64::from(self.timeout_ms)
    }
}

/// What a health check probes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckTarget {
    /// An HTTP or HTTPS request.
    Http(HttpCheck),
    /// A TCP connection (success: the connection is accepted).
    Tcp {
        /// Host name or IP address to connect to.
        host: String,
        /// Port.
        port: u16,
    },
}

/// An HTTP(S) GET and what its answer must look like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpCheck {
    /// The URL as written.
    pub url: String,
    /// `https`: the connection uses TLS (server certificate checked against the web PKI roots).
    pub tls: bool,
    /// Host name or IP address to connect to (IPv6 without brackets).
    pub host: String,
    /// Port (default 80, or 443 with TLS).
    pub port: u16,
    /// Path and query (`/healthz`), starting with `/`.
    pub path: String,
    /// `Host` header (and TLS server name) to send instead of the URL's host.
    pub host_header: Option<String>,
    /// Which status codes pass.
    pub expect_status: StatusMatch,
    /// Text the first 64 KiB of the body must contain.
    pub body_match: Option<String>,
}

/// Which HTTP status codes pass a check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StatusMatch {
    /// Any 2xx or 3xx (the default).
    Success,
    /// Exactly these codes.
    AnyOf(Vec<u16>),
}

impl StatusMatch {
    /// Whether `status` passes.
    pub fn accepts(&self, status: u16) -> bool {
        match self {
            Self::Success => (200..400).contains(&status),
            Self::AnyOf(codes) => codes.contains(&status),
        }
    }
}

/// How many fresh prober opinions it takes to call a region down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quorum {
    /// Down when more than half of the fresh opinions say down (a tie keeps it up). The default.
    Majority,
    /// Route 53's rule: up when more than `percent` % of the fresh opinions say up, down otherwise.
    HealthyAbove {
        /// 0 to 99.
        percent: u8,
    },
}

/// How prober opinions are turned into region health (`[health]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthSettings {
    /// The rule for calling a region down from its fresh opinions.
    pub quorum: Quorum,
    /// An opinion older than this (by its `observed_at_ms`) no longer counts. A region with no fresh
    /// opinion keeps its last state and is reported stale: losing the probers is not an outage.
    pub stale_after_ms: u64,
    /// When fewer than this percentage of the probed regions (those with health checks) would be up or not
    /// yet known, the observers are
    /// suspected rather than the regions (Envoy's panic threshold): no region is newly marked down until
    /// enough recover. 0 disables the guard.
    pub panic_below_percent: u8,
}

impl Default for HealthSettings {
    fn default() -> Self {
        Self {
            quorum: Quorum::Majority,
            stale_after_ms: 10_000,
            panic_below_percent: 50,
        }
    }
}

/// A network of addresses (`10.0.0.0/8`, `2001:db8::/32`, or one address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    /// The network address (host bits zero).
    pub addr: std::net::IpAddr,
    /// Prefix length (0–32 for IPv4, 0–128 for IPv6).
    pub prefix: u8,
}

impl Cidr {
    /// Parses `ADDR/LEN` or a bare address (a /32 or /128). Host bits must be zero.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (a, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: std::net::IpAddr = a
            .parse()
            .map_err(|_| format!("{s:?} is not an address or ADDRESS/PREFIX network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match len {
            None => max,
            Some(l) => match l.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(format!("{s:?}: prefix length must be 0 to {max}")),
            },
        };
        let net = Self { addr, prefix };
        if net.network_bits(addr) != Self::bits(addr) {
            return Err(format!(
                "{s:?} has host bits set (the network is {})",
                net.normalised()
            ));
        }
        Ok(net)
    }

    fn bits(ip: std::net::IpAddr) -> u128 {
        match ip {
            std::net::IpAddr::V4(a) => u128::from(u32::from(a)),
            std::net::IpAddr::V6(a) => u128::from(a),
        }
    }

    fn network_bits(&self, ip: std::net::IpAddr) -> u128 {
        let width: u32 = if ip.is_ipv4() { 32 } else { 128 };
        let host = width - u32::from(self.prefix);
        let bits = Self::bits(ip);
        if host >= 128 { 0 } else { (bits >> host) << host }
    }

    fn normalised(&self) -> String {
        let bits = self.network_bits(self.addr);
        let addr: std::net::IpAddr = match self.addr {
            std::net::IpAddr::V4(_) => Ipv4Addr::from(bits as u32).into(),
            std::net::IpAddr::V6(_) => Ipv6Addr::from(bits).into(),
        };
        format!("{addr}/{}", self.prefix)
    }

    /// Whether `ip` is in the network (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.addr.is_ipv4() && self.network_bits(ip) == Self::bits(self.addr)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Process-wide settings of the regional L7 proxies (`[proxy]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxySettings {
    /// Peers whose `X-Forwarded-For` is believed: the client is its last address not in this list. From
    /// anyone else the peer's own address is the client.
    pub trusted_proxies: Vec<Cidr>,
    /// Time allowed to connect to a backend or a peer region's proxy, in milliseconds.
    pub connect_timeout_ms: u32,
    /// Longest silence while reading from or writing to an upstream, in milliseconds.
    pub upstream_timeout_ms: u32,
    /// Longest silence from a client (request head or body, or an idle keep-alive connection), in
    /// milliseconds.
    pub client_timeout_ms: u32,
    /// Largest request head (request line and headers), in bytes.
    pub max_header_bytes: u32,
    /// Largest request body, in bytes.
    pub max_body_bytes: u64,
    /// Requests per second allowed per client address; 0 turns rate limiting off.
    pub rate_limit_per_client: u32,
    /// An upgraded connection (WebSocket) with no octet in either direction for this long is closed,
    /// in milliseconds.
    pub websocket_idle_timeout_ms: u32,
    /// An upgraded connection is closed at its first octet after this long, in milliseconds (0: no limit).
    pub websocket_max_lifetime_ms: u32,
}

impl Default for ProxySettings {
    fn default() -> Self {
        Self {
            trusted_proxies: Vec::new(),
            connect_timeout_ms: 1000,
            upstream_timeout_ms: 30_000,
            client_timeout_ms: 60_000,
            max_header_bytes: 32 * 1024,
            max_body_bytes: 10 * 1024 * 1024,
            rate_limit_per_client: 0,
            websocket_idle_timeout_ms: 300_000,
            websocket_max_lifetime_ms: 86_400_000,
        }
    }
}

/// How a region's proxy spreads a service's requests over the region's backends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Balance {
    /// In turn (weighted round robin with equal weights).
    RoundRobin,
    /// The backend with the fewest requests in flight from this proxy (ties in turn).
    LeastRequests,
    /// Consistent hashing (ketama) on an affinity key, so one key keeps its backend while it is up.
    ConsistentHash(Affinity),
}

/// Where the affinity key of consistent hashing comes from. Requests without it hash on the client
/// address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Affinity {
    /// The value of this cookie.
    Cookie(String),
    /// The value of this request header (lower case).
    Header(String),
}

/// How a proxy checks its region's backends of a service: actively, on a schedule, and passively, from
/// the requests it sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendChecks {
    /// HTTP GET of this path (a 200 passes); `None`: a TCP connection is enough.
    pub path: Option<String>,
    /// Time between two checks of a backend, in milliseconds.
    pub interval_ms: u32,
    /// A check not done by then failed, in milliseconds (less than the interval).
    pub timeout_ms: u32,
    /// Consecutive passing checks that bring a backend back.
    pub rise: u32,
    /// Consecutive failing checks that take a backend out.
    pub fall: u32,
    /// Consecutive failed requests (connection refused or reset, timeout) that eject a backend at once,
    /// before the active checks notice; 0 turns passive ejection off.
    pub eject_after_failures: u32,
    /// How long an ejected backend gets no requests, in milliseconds.
    pub eject_for_ms: u32,
}

impl Default for BackendChecks {
    fn default() -> Self {
        Self {
            path: None,
            interval_ms: 1000,
            timeout_ms: 500,
            rise: 2,
            fall: 3,
            eject_after_failures: 5,
            eject_for_ms: 10_000,
        }
    }
}

/// The proxy side of a service: its backends per region and how they are used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceProxy {
    /// Backends per region (regions of the service only, in the file's order). Empty: the service is
    /// DNS-only and proxies answer 404 for its hostname.
    pub backends: Vec<(String, Vec<std::net::SocketAddr>)>,
    /// Balancing within a region.
    pub balance: Balance,
    /// Active and passive backend health.
    pub checks: BackendChecks,
    /// TLS to the backends (`None`: plain HTTP).
    pub backend_tls: Option<BackendTls>,
}

/// TLS from the proxy to a service's backends, with the backends' certificates verified.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BackendTls {
    /// PEM file of the CA(s) the backends' certificates must chain to (`None`: the system's roots).
    pub ca: Option<PathBuf>,
    /// The name sent as SNI and required in the backends' certificates (`None`: the service's hostname).
    pub server_name: Option<String>,
}

impl ServiceProxy {
    /// The backends of a region (empty if none).
    pub fn backends_in(&self, region: &str) -> &[std::net::SocketAddr] {
        self.backends
            .iter()
            .find(|(r, _)| r == region)
            .map_or(&[], |(_, b)| b.as_slice())
    }
}

impl Default for ServiceProxy {
    fn default() -> Self {
        Self {
            backends: Vec::new(),
            balance: Balance::RoundRobin,
            checks: BackendChecks::default(),
            backend_tls: None,
        }
    }
}
