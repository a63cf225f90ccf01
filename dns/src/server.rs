//! Sockets: UDP and TCP listeners feeding [`crate::respond()`], with the snapshot read once per
//! batch of packets.
//!
//! UDP: one socket per worker thread, all bound to the same address with `SO_REUSEPORT` so the kernel
//! spreads clients over them (gdnsd's design; no shared socket queue, no lock between workers). Each worker
//! is a plain OS thread that receives up to [`UDP_BATCH`] datagrams per `recvmmsg` call and sends the
//! responses with one `sendmmsg` — at high rates, system calls cost more than answering, so batching them
//! is what makes the server fast (measured against gdnsd, whose design this is: bench/RESULTS.md), so the
//! UDP path stays Meridian's own rather than hickory-server's (one tokio task, one message parse and one
//! record-by-record encode per datagram; not measured head to head here). Rate limiting (RRL)
//! applies to UDP only. TCP, DNS-over-TLS and DNS-over-HTTPS are hickory-server's ([`crate::stream`]),
//! behind Meridian's connection governor ([`crate::guard`]).

use std::io::{IoSlice, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::{ArcSwap, ArcSwapOption};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::LowerName;
use meridian_geoip::GeoDb;
use meridian_steer::Topology;
use meridian_store::{ConfigSource, Snapshot, SnapshotWatcher, now_ms};
use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::context::{Context, Transport};
use crate::dnssec::TestHook;
use crate::guard::{ConnectionLimits, Governor, GuardMetrics, MalformedLog};
use crate::info::AnswerInfo;
use crate::memo::DecisionMemo;
use crate::metrics::{DnsMetrics, Recorder};
use crate::request::{answerable, client_address};
use crate::respond::respond_in;
use crate::rrl::{RateLimiter, ResponseKind, RrlConfig, Verdict, slip_response};
use crate::stream::{self, DEFAULT_DOH_PATH, Handler, TlsListen};
use crate::write::header_only;
use crate::xfr::XfrPolicy;
use crate::zone::ZoneIndex;

/// Datagrams received (and responses sent) per system call.
pub const UDP_BATCH: usize = 32;
/// How often an idle UDP worker wakes to check whether the server is stopping.
const UDP_STOP_CHECK: Duration = Duration::from_millis(200);
/// Receive buffer asked of the kernel per UDP socket (it caps this at `net.core.rmem_max`): absorbs bursts.
const UDP_RECV_BUFFER: usize = 4 << 20;

/// How the server runs.
#[derive(Clone, Debug)]
pub struct DnsOptions {
    /// UDP worker threads, each with its own socket (default: one per CPU).
    pub udp_workers: usize,
    /// Response rate limiting.
    pub rrl: RrlConfig,
    /// Limits on stream connections (TCP, DoT, DoH together).
    pub limits: ConnectionLimits,
    /// DNS-over-TLS listener, if any.
    pub dot: Option<TlsListen>,
    /// DNS-over-HTTPS listener, if any.
    pub doh: Option<TlsListen>,
    /// The DoH path.
    pub doh_path: String,
}

impl Default for DnsOptions {
    fn default() -> Self {
        Self {
            udp_workers: std::thread::available_parallelism().map_or(1, usize::from),
            rrl: RrlConfig::default(),
            limits: ConnectionLimits::default(),
            dot: None,
            doh: None,
            doh_path: DEFAULT_DOH_PATH.to_owned(),
        }
    }
}

/// What every query reads: the snapshot watcher, the GeoIP database and the zones compiled for the
/// snapshot's configuration (rebuilt only when the configuration changes); and what it updates: rate
/// limits and metrics.
pub struct DnsState {
    watcher: Arc<SnapshotWatcher>,
    geo: ArcSwap<GeoDb>,
    /// Tells others sharing the process (`meridian up`'s proxies) of a new GeoIP database.
    geo_changes: tokio::sync::watch::Sender<Arc<GeoDb>>,
    /// Keyed by the topology and the ACME challenge answers themselves (held, so their addresses cannot
    /// be reused by newer ones).
    #[allow(clippy::type_complexity)]
    zones: ArcSwapOption<(Arc<Topology>, Arc<AcmeChallenges>, Arc<ZoneIndex>)>,
    rrl: RateLimiter,
    metrics: Arc<DnsMetrics>,
    /// Hardening counters (malformed requests, stream connections).
    guard: Arc<GuardMetrics>,
    malformed: MalformedLog,
    /// Who may transfer zones (none until [`DnsState::set_secondaries`]).
    xfr: ArcSwapOption<XfrPolicy>,
    /// A test-only fault in DNSSEC signatures (`MERIDIAN_DNSSEC_TEST_HOOK`), read once at start.
    dnssec_hook: TestHook,
}

/// A snapshot's ACME challenge answers (owner name -> TXT values).
type AcmeChallenges = std::collections::BTreeMap<String, Vec<String>>;

impl DnsState {
    /// State over a watcher and a GeoIP database, limiting responses as `rrl` says.
    pub fn new(watcher: Arc<SnapshotWatcher>, geo: GeoDb, rrl: RrlConfig) -> Arc<Self> {
        let metrics = DnsMetrics::new();
        metrics.set_geoip_build_epoch(geo.build_epoch());
        let geo = Arc::new(geo);
        let guard = GuardMetrics::new();
        Arc::new(Self {
            malformed: MalformedLog::new(guard.clone()),
            guard,
            xfr: ArcSwapOption::empty(),
            watcher,
            geo: ArcSwap::new(geo.clone()),
            geo_changes: tokio::sync::watch::Sender::new(geo),
            zones: ArcSwapOption::empty(),
            rrl: RateLimiter::new(rrl),
            metrics,
            dnssec_hook: TestHook::from_env(),
        })
    }

    /// The metrics (register them with a Prometheus registry to export them).
    pub fn metrics(&self) -> &Arc<DnsMetrics> {
        &self.metrics
    }

    /// Serves zone transfers to (and sends NOTIFY to) the secondaries of `policy` from now on.
    pub fn set_secondaries(self: &Arc<Self>, policy: Arc<XfrPolicy>) -> JoinHandle<()> {
        self.xfr.store(Some(policy.clone()));
        crate::xfr::spawn_notifier(self.clone(), policy, Duration::from_secs(1))
    }

    /// The apex SOA records of those of `origins` that the current configuration serves.
    pub(crate) fn zone_soas<'a>(
        &self,
        origins: impl Iterator<Item = &'a LowerName>,
    ) -> Vec<(LowerName, hickory_proto::rr::Record)> {
        self.with_context(|ctx| {
            let Some((c, _)) = ctx else {
                return Vec::new();
            };
            origins
                .filter_map(|o| {
                    let zone = c.zones.find(o).filter(|z| z.origin == *o)?;
                    Some((o.clone(), zone.soa.clone()))
                })
                .collect()
        })
    }

    /// The hardening metrics (register their collector too).
    pub fn guard_metrics(&self) -> &Arc<GuardMetrics> {
        &self.guard
    }

    /// Answers one request that came over a stream transport (`transport`: "tcp", "tls", "https"),
    /// recording it in the metrics (through the connection's `recorder`) and noting it when malformed.
    /// `None`: send nothing.
    pub(crate) fn answer_stream(
        &self,
        request: &[u8],
        src: IpAddr,
        transport: &'static str,
        recorder: &mut Recorder,
    ) -> Option<Vec<u8>> {
        let started = Instant::now();
        let mut out = Vec::with_capacity(512);
        self.with_context(|ctx| {
            let info =
                respond_or_unconfigured(ctx.map(|c| c.0), None, request, src, Transport::Tcp, &mut out);
            // Signed queries and transfer requests are the transfer side's.
            if let Some((c, _)) = ctx
                && !info.fast
                && let Some(answer) = crate::xfr::intercept(
                    self.xfr.load().as_deref(),
                    c,
                    request,
                    src,
                    Transport::Tcp,
                    &self.guard,
                )
            {
                out = answer;
            }
            if let Some((c, snapshot)) = ctx {
                if is_malformed(&info, &out) {
                    self.malformed.note(transport, src, request);
                }
                recorder.record(
                    &info,
                    &snapshot.topology,
                    Some(started.elapsed().as_nanos() as u64),
                );
                recorder.maybe_flush(c.now_ms);
            }
        });
        (!out.is_empty()).then_some(out)
    }

    /// The GeoIP database in use.
    pub fn geo(&self) -> Arc<GeoDb> {
        self.geo.load_full()
    }

    /// Replaces the GeoIP database (new queries use the new one at once).
    pub fn set_geo(&self, geo: GeoDb) {
        let geo = Arc::new(geo);
        self.geo.store(geo.clone());
        self.geo_changes.send_replace(geo);
    }

    /// Sees every GeoIP database from now on: whoever locates clients in the same process (the proxies
    /// of `meridian up`) follows the one the DNS server reloads.
    pub fn geo_changes(&self) -> tokio::sync::watch::Receiver<Arc<GeoDb>> {
        self.geo_changes.subscribe()
    }

    fn zones_for(&self, snap: &Snapshot) -> Arc<ZoneIndex> {
        if let Some(cached) = self.zones.load_full()
            && Arc::ptr_eq(&cached.0, &snap.topology)
            && Arc::ptr_eq(&cached.1, &snap.acme_challenges)
        {
            return cached.2.clone();
        }
        let serial = match snap.config_source {
            // The serial follows the configuration: its store revision (wrapping, as serials do).
            ConfigSource::Store { revision, .. } => revision as u32,
            ConfigSource::Bootstrap => 1,
        };
        // ... and the ACME challenge answers, which change the zones' data too.
        let serial = serial.max(snap.acme_challenges_revision as u32);
        // A signed zone's keys are read from their files here, once per configuration or change of ACME
        // challenges (a few small files; never on a query that does not follow such a change). A zone
        // whose keys cannot be read is served unsigned, and said so: `meridian config check` reads them
        // before an apply. The challenge records join the zone's static data, signed like the rest.
        let (keys, problems) = crate::dnssec::load_all(snap.topology.config());
        for p in &problems {
            tracing::error!(problem = %p, "DNSSEC key not usable: the zone is served unsigned");
        }
        let zones = Arc::new(
            ZoneIndex::with_keys(&snap.topology, serial, &keys, self.dnssec_hook)
                .with_acme_challenges(&snap.acme_challenges),
        );
        self.zones.store(Some(Arc::new((
            snap.topology.clone(),
            snap.acme_challenges.clone(),
            zones.clone(),
        ))));
        zones
    }

    /// Runs `f` with the answering context as of now: one snapshot, its zones, the GeoIP database, the
    /// time. `None` before the first snapshot (no configuration yet).
    fn with_context<R>(&self, f: impl FnOnce(Option<(&Context<'_>, &Arc<Snapshot>)>) -> R) -> R {
        let Some(snapshot) = self.watcher.snapshot() else {
            return f(None);
        };
        let zones = self.zones_for(&snapshot);
        let geo = self.geo.load();
        let ctx = Context {
            snapshot: &snapshot,
            zones: &zones,
            geo: &geo,
            now_ms: now_ms(),
        };
        f(Some((&ctx, &snapshot)))
    }

    /// Answers one request (tests and tools; the server answers batches). `None`: send nothing.
    pub fn answer(&self, request: &[u8], src: IpAddr, transport: Transport) -> (Option<Vec<u8>>, AnswerInfo) {
        let mut out = Vec::new();
        let info = self.with_context(|ctx| {
            respond_or_unconfigured(ctx.map(|c| c.0), None, request, src, transport, &mut out)
        });
        ((!out.is_empty()).then_some(out), info)
    }

    /// Loads the GeoIP database at `path` and swaps it in; on failure keeps the current one.
    pub fn reload_geo(&self, path: &Path) -> Result<(), meridian_geoip::GeoIpError> {
        match GeoDb::open(path) {
            Ok(db) => {
                self.metrics.geoip_reloaded(Some(db.build_epoch()));
                tracing::info!(database = db.description(), "GeoIP database loaded");
                self.set_geo(db);
                Ok(())
            }
            Err(e) => {
                self.metrics.geoip_reloaded(None);
                Err(e)
            }
        }
    }

    /// Watches `path` and loads it again whenever it changes (size, modification time or inode), checking
    /// every `interval`; or at once when `nudge` is notified (SIGHUP). A file that fails to load is
    /// reported and the current database kept; the next change is tried again.
    pub fn watch_geo_file(
        self: &Arc<Self>,
        path: PathBuf,
        interval: Duration,
        nudge: Arc<tokio::sync::Notify>,
    ) -> JoinHandle<()> {
        let state = self.clone();
        follow_geo_file(path, interval, nudge, move |p| state.reload_geo(p))
    }

    /// Answers one UDP datagram into `out` (empty: send nothing), rate limiting the response.
    fn handle_udp(
        &self,
        ctx: Option<(&Context<'_>, &Arc<Snapshot>)>,
        worker: &mut UdpWorker,
        request: &[u8],
        src: IpAddr,
        out: &mut Vec<u8>,
    ) {
        let UdpWorker {
            memo,
            scratch,
            recorder,
            ..
        } = worker;
        let started = recorder.sample_latency().then(Instant::now);
        let info = respond_or_unconfigured(ctx.map(|c| c.0), Some(memo), request, src, Transport::Udp, out);
        if ctx.is_some() && is_malformed(&info, out) {
            self.malformed.note("udp", src, request);
        }
        // Signed queries and transfer requests are the transfer side's (never the fast path's shape).
        if let Some((c, _)) = ctx
            && !info.fast
            && let Some(answer) = crate::xfr::intercept(
                self.xfr.load().as_deref(),
                c,
                request,
                src,
                Transport::Udp,
                &self.guard,
            )
        {
            out.clear();
            out.extend_from_slice(&answer);
        }
        if !out.is_empty() && self.rrl.enabled() {
            let now = ctx.map_or_else(now_ms, |c| c.0.now_ms);
            match self.rrl.check(src, response_kind(out, scratch), now) {
                Verdict::Send => {}
                Verdict::Slip => {
                    scratch.clear();
                    scratch.extend_from_slice(out);
                    slip_response(scratch, out);
                    recorder.rate_limited(true);
                }
                Verdict::Drop => {
                    out.clear();
                    recorder.rate_limited(false);
                }
            }
        }
        if let Some((_, snapshot)) = ctx {
            let elapsed = started.map(|s| s.elapsed().as_nanos() as u64);
            recorder.record(&info, &snapshot.topology, elapsed);
        }
    }
}

/// Whether a request was malformed: answered FORMERR, or not answered at all (too short, or not a query).
fn is_malformed(info: &AnswerInfo, out: &[u8]) -> bool {
    info.rcode == Some(ResponseCode::FormErr) || out.is_empty()
}

/// The answer, or SERVFAIL while there is no configuration yet (rather than pretend a name does not exist).
fn respond_or_unconfigured(
    ctx: Option<&Context<'_>>,
    memo: Option<&mut DecisionMemo>,
    request: &[u8],
    src: IpAddr,
    transport: Transport,
    out: &mut Vec<u8>,
) -> AnswerInfo {
    match ctx {
        Some(ctx) => respond_in(ctx, memo, request, src, transport, out),
        None => {
            out.clear();
            if !answerable(request) {
                return AnswerInfo::default();
            }
            out.extend_from_slice(&header_only(request, ResponseCode::ServFail));
            AnswerInfo {
                rcode: Some(ResponseCode::ServFail),
                ..AnswerInfo::default()
            }
        }
    }
}

/// The rate-limiting kind of a response: its lower-cased question and type for NOERROR, else its rcode.
fn response_kind<'a>(response: &[u8], scratch: &'a mut Vec<u8>) -> ResponseKind<'a> {
    let rcode = u16::from(response[3] & 0x0f);
    if rcode != 0 {
        return ResponseKind::Error(rcode);
    }
    scratch.clear();
    let mut i = 12;
    while let Some(&len) = response.get(i) {
        if len == 0 || len & 0xc0 != 0 {
            break;
        }
        let label = response.get(i + 1..i + 1 + usize::from(len)).unwrap_or_default();
        scratch.push(len);
        scratch.extend(label.iter().map(u8::to_ascii_lowercase));
        i += 1 + usize::from(len);
    }
    let qtype = response
        .get(i + 1..i + 3)
        .map_or(0, |t| u16::from_be_bytes([t[0], t[1]]));
    ResponseKind::Answer {
        qname_lower: scratch,
        qtype,
    }
}

/// Calls `reload` with `path` whenever the file there changes (size, modification time or inode), checking
/// every `interval`; or at once when `nudge` is notified (SIGHUP). `reload` runs off the async workers
/// (reading and indexing 100 MB takes a while); a failure is logged (whoever reloads keeps its current
/// database) and the next change is tried again. [`DnsState::watch_geo_file`] is this with
/// [`DnsState::reload_geo`]; other users of a GeoIP database (the proxies of `meridian proxy`) pass their own.
pub fn follow_geo_file<F>(
    path: PathBuf,
    interval: Duration,
    nudge: Arc<tokio::sync::Notify>,
    reload: F,
) -> JoinHandle<()>
where
    F: Fn(&Path) -> Result<(), meridian_geoip::GeoIpError> + Send + Sync + 'static,
{
    let reload = Arc::new(reload);
    // The version there now is the one in use (it was loaded just before): a change from here on is seen
    // even if it comes before the task first runs.
    let mut seen = file_identity(&path);
    tokio::spawn(async move {
        loop {
            let forced = tokio::select! {
                _ = tokio::time::sleep(interval) => false,
                _ = nudge.notified() => true,
            };
            let now = file_identity(&path);
            if now.is_none() || (now == seen && !forced) {
                continue;
            }
            seen = now;
            let (p, r) = (path.clone(), reload.clone());
            let result = tokio::task::spawn_blocking(move || r(&p)).await;
            match result {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "GeoIP database not reloaded; keeping the current one")
                }
                Err(e) => tracing::error!(error = %e, "GeoIP reload task failed"),
            }
        }
    })
}

fn file_identity(path: &Path) -> Option<(u64, SystemTime, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.modified().ok()?, m.ino()))
}

/// A running server. Dropping it stops it (UDP workers within 200 ms).
pub struct DnsServer {
    /// The UDP address bound.
    pub udp: SocketAddr,
    /// The TCP address bound.
    pub tcp: SocketAddr,
    /// The DNS-over-TLS address bound, if any.
    pub dot: Option<SocketAddr>,
    /// The DNS-over-HTTPS address bound, if any.
    pub doh: Option<SocketAddr>,
    /// The governor of stream connections.
    pub governor: Arc<Governor>,
    tasks: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl DnsServer {
    /// Binds UDP (one socket per worker) and TCP on `addr` (port 0: a free port, the same for both), and
    /// DoT and DoH where `options` say, and serves. Fails, naming nothing but the OS error, when an address
    /// is taken; callers add the address.
    pub async fn bind(addr: SocketAddr, state: Arc<DnsState>, options: &DnsOptions) -> std::io::Result<Self> {
        let workers = options.udp_workers.max(1);
        // Port 0: the kernel picks a free UDP port, and that port may be taken for TCP. Then pick again
        // (a few times) rather than fail: "a free port, the same for both" is the promise.
        let attempts = if addr.port() == 0 { 16 } else { 1 };
        let mut attempt = 0;
        let (sockets, tcp, udp_addr) = loop {
            attempt += 1;
            let first = udp_socket(addr)?;
            let udp_addr = first
                .local_addr()?
                .as_socket()
                .ok_or_else(|| std::io::Error::other("UDP socket has no IP address"))?;
            let mut sockets = vec![first];
            for _ in 1..workers {
                sockets.push(udp_socket(udp_addr)?);
            }
            match TcpListener::bind(udp_addr).await {
                Ok(tcp) => break (sockets, tcp, udp_addr),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && attempt < attempts => continue,
                Err(e) => return Err(e),
            }
        };
        let tcp_addr = tcp.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        for (i, socket) in sockets.into_iter().enumerate() {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::Builder::new()
                .name(format!("dns-udp-{i}"))
                .spawn(move || serve_udp(socket, state, stop))?;
        }
        let governor = Governor::new(options.limits, state.guard.clone());
        let handler = Arc::new(Handler { state: state.clone() });
        let mut tasks = vec![tokio::spawn(stream::serve_tcp(
            tcp,
            handler.clone(),
            governor.clone(),
        ))];
        let mut dot = None;
        if let Some(tls) = &options.dot {
            let listener = TcpListener::bind(tls.addr).await?;
            dot = Some(listener.local_addr()?);
            tasks.push(tokio::spawn(stream::serve_tls(
                listener,
                tls.config.clone(),
                handler.clone(),
                governor.clone(),
            )));
        }
        let mut doh = None;
        if let Some(tls) = &options.doh {
            let listener = TcpListener::bind(tls.addr).await?;
            doh = Some(listener.local_addr()?);
            tasks.push(tokio::spawn(stream::serve_https(
                listener,
                tls.config.clone(),
                Arc::from(options.doh_path.as_str()),
                handler,
                governor.clone(),
            )));
        }
        Ok(Self {
            udp: udp_addr,
            tcp: tcp_addr,
            dot,
            doh,
            governor,
            tasks,
            stop,
        })
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn udp_socket(addr: SocketAddr) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_port(true)?;
    // Responses leave without the DF bit and ignore learnt path MTUs (IP_PMTUDISC_OMIT): a forged ICMP
    // "fragmentation needed" cannot make the server fragment its answers, the opening of DNS cache
    // poisoning by fragment replacement (as gdnsd, Knot and BIND do). Responses fit 1232 octets anyway.
    if addr.is_ipv6() {
        rustix::net::sockopt::set_ipv6_mtu_discover(
            &socket,
            rustix::net::sockopt::Ipv6PathMtuDiscovery::OMIT,
        )?;
    } else {
        rustix::net::sockopt::set_ip_mtu_discover(&socket, rustix::net::sockopt::Ipv4PathMtuDiscovery::OMIT)?;
    }
    // Best effort: the kernel may cap it, which is fine.
    let _ = socket.set_recv_buffer_size(UDP_RECV_BUFFER);
    socket.set_read_timeout(Some(UDP_STOP_CHECK))?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

fn to_std(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

/// What a UDP worker thread owns and reuses across packets.
struct UdpWorker {
    /// Its decisions by client location (see [`DecisionMemo`]).
    memo: DecisionMemo,
    /// Scratch space for rate limiting.
    scratch: Vec<u8>,
    /// Its metrics, flushed to the shared ones now and then.
    recorder: Recorder,
    /// The client addresses of the batch in hand (see [`GeoDb::warm`]).
    clients: Vec<IpAddr>,
}

fn serve_udp(socket: Socket, state: Arc<DnsState>, stop: Arc<AtomicBool>) {
    let fd = socket.as_raw_fd();
    // Larger than any UDP DNS message we accept; a bigger datagram is truncated by the kernel and then
    // fails to parse (FORMERR), which is the right answer for it.
    let mut bufs: Box<[[u8; 4096]; UDP_BATCH]> = Box::new([[0u8; 4096]; UDP_BATCH]);
    let mut outs: Vec<Vec<u8>> = (0..UDP_BATCH).map(|_| Vec::with_capacity(1232)).collect();
    let mut peers: Vec<Option<SocketAddr>> = vec![None; UDP_BATCH];
    let mut lens = [0usize; UDP_BATCH];
    let mut recv_headers = MultiHeaders::<SockaddrStorage>::preallocate(UDP_BATCH, None);
    let mut send_headers = MultiHeaders::<SockaddrStorage>::preallocate(UDP_BATCH, None);
    let mut addrs: Vec<Option<SockaddrStorage>> = Vec::with_capacity(UDP_BATCH);
    let mut worker = UdpWorker {
        memo: DecisionMemo::new(),
        scratch: Vec::with_capacity(512),
        recorder: state.metrics.recorder(),
        clients: Vec::with_capacity(UDP_BATCH),
    };
    while !stop.load(Ordering::Relaxed) {
        let received = {
            // On the stack, like everything per batch: the loop allocates nothing.
            let mut iovs: [[IoSliceMut<'_>; 1]; UDP_BATCH] = bufs.each_mut().map(|b| [IoSliceMut::new(b)]);
            match recvmmsg(
                fd,
                &mut recv_headers,
                iovs.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            ) {
                Ok(results) => {
                    let mut n = 0;
                    for r in results {
                        lens[n] = r.bytes;
                        peers[n] = r.address.as_ref().and_then(to_std);
                        n += 1;
                    }
                    n
                }
                Err(Errno::EAGAIN | Errno::EINTR) => {
                    worker.recorder.maybe_flush(now_ms());
                    continue;
                }
                Err(e) => {
                    // ICMP errors from earlier sends surface here; they concern one peer.
                    tracing::debug!(error = %e, "udp receive");
                    continue;
                }
            }
        };
        state.with_context(|ctx| {
            if let Some((c, snapshot)) = ctx {
                worker.memo.prepare(snapshot, c.geo, c.now_ms);
                // Locate the batch's clients together first: their GeoIP cache misses overlap.
                worker.clients.clear();
                for i in 0..received {
                    if let Some(peer) = peers[i] {
                        worker
                            .clients
                            .push(client_address(&bufs[i][..lens[i]], peer.ip()));
                    }
                }
                c.geo.warm(&worker.clients);
            }
            for i in 0..received {
                outs[i].clear();
                if let Some(peer) = peers[i] {
                    state.handle_udp(ctx, &mut worker, &bufs[i][..lens[i]], peer.ip(), &mut outs[i]);
                }
            }
            worker
                .recorder
                .maybe_flush(ctx.map_or_else(now_ms, |c| c.0.now_ms));
        });
        // Send every non-empty response; sendmmsg may send fewer than asked (a full socket buffer).
        let mut pending = [0usize; UDP_BATCH];
        let mut count = 0;
        for i in (0..received).filter(|&i| !outs[i].is_empty()) {
            pending[count] = i;
            count += 1;
        }
        let mut sent = 0;
        while sent < count {
            let rest = &pending[sent..count];
            let slices: [[IoSlice<'_>; 1]; UDP_BATCH] =
                std::array::from_fn(|k| [IoSlice::new(rest.get(k).map_or(&[][..], |&i| &outs[i]))]);
            // Reused, not an array built per batch: a batch is often one or two datagrams, and 32 socket
            // addresses (4 KiB) written for each would cost more than the answers.
            addrs.clear();
            addrs.extend(rest.iter().map(|&i| peers[i].map(SockaddrStorage::from)));
            match sendmmsg(
                fd,
                &mut send_headers,
                slices[..rest.len()].iter(),
                &addrs,
                [],
                MsgFlags::empty(),
            ) {
                Ok(results) => {
                    let n = results.count();
                    sent += n.max(1);
                }
                Err(Errno::EINTR) => {}
                Err(e) => {
                    // One bad destination fails the call at its position: skip it, send the rest.
                    tracing::debug!(error = %e, "udp send");
                    sent += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use rustix::net::sockopt::{self, Ipv4PathMtuDiscovery, Ipv6PathMtuDiscovery};

    use super::udp_socket;

    /// A forged ICMP "fragmentation needed" must not make the server fragment answers: the sockets ignore
    /// path MTU discovery (and so never set DF).
    #[test]
    fn udp_sockets_omit_path_mtu_discovery() {
        let v4 = udp_socket("127.0.0.1:0".parse().unwrap()).unwrap();
        assert_eq!(sockopt::ip_mtu_discover(&v4).unwrap(), Ipv4PathMtuDiscovery::OMIT);
        let v6 = udp_socket("[::1]:0".parse().unwrap()).unwrap();
        assert_eq!(
            sockopt::ipv6_mtu_discover(&v6).unwrap(),
            Ipv6PathMtuDiscovery::OMIT
        );
    }
}
