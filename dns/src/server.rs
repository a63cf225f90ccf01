//! Sockets: UDP and TCP listeners feeding [`crate::answer`], with the snapshot read per query.
//!
//! UDP: workers share one socket, each receiving and answering in a loop (no task per packet). TCP: one
//! task per connection, RFC 7766 framing (two-octet length), several queries per connection, an idle
//! timeout, and a cap on connections so a flood of idle TCP clients cannot exhaust the process.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use hickory_proto::op::ResponseCode;
use meridian_geoip::GeoDb;
use meridian_steer::Topology;
use meridian_store::{ConfigSource, Snapshot, SnapshotWatcher};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::answer::{AnswerInfo, Context, Transport, answer, answerable, header_only};
use crate::zone::ZoneIndex;

/// How long a TCP connection may stay idle between queries.
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Concurrent TCP connections accepted.
pub const MAX_TCP_CONNECTIONS: usize = 1024;

/// What every query reads: the snapshot watcher, the GeoIP database and the zones compiled for the
/// snapshot's configuration (rebuilt only when the configuration changes).
pub struct DnsState {
    watcher: Arc<SnapshotWatcher>,
    geo: arc_swap::ArcSwap<GeoDb>,
    /// Keyed by the topology itself (held, so its address cannot be reused by a newer one).
    zones: ArcSwapOption<(Arc<Topology>, Arc<ZoneIndex>)>,
}

impl DnsState {
    /// State over a watcher and a GeoIP database.
    pub fn new(watcher: Arc<SnapshotWatcher>, geo: GeoDb) -> Arc<Self> {
        Arc::new(Self {
            watcher,
            geo: arc_swap::ArcSwap::from_pointee(geo),
            zones: ArcSwapOption::empty(),
        })
    }

    /// Replaces the GeoIP database (new queries use the new one at once).
    pub fn set_geo(&self, geo: GeoDb) {
        self.geo.store(Arc::new(geo));
    }

    fn zones_for(&self, snap: &Snapshot) -> Arc<ZoneIndex> {
        if let Some(cached) = self.zones.load_full()
            && Arc::ptr_eq(&cached.0, &snap.topology)
        {
            return cached.1.clone();
        }
        let serial = match snap.config_source {
            // The serial follows the configuration: its store revision (wrapping, as serials do).
            ConfigSource::Store { revision, .. } => revision as u32,
            ConfigSource::Bootstrap => 1,
        };
        let zones = Arc::new(ZoneIndex::new(&snap.topology, serial));
        self.zones
            .store(Some(Arc::new((snap.topology.clone(), zones.clone()))));
        zones
    }

    /// Answers one request.
    pub fn answer(&self, request: &[u8], src: IpAddr, transport: Transport) -> (Option<Vec<u8>>, AnswerInfo) {
        let Some(snapshot) = self.watcher.snapshot() else {
            // No configuration yet: say so, rather than pretend a name does not exist.
            if !answerable(request) {
                return (None, AnswerInfo::default());
            }
            let info = AnswerInfo {
                rcode: Some(ResponseCode::ServFail),
                ..AnswerInfo::default()
            };
            return (Some(header_only(request, ResponseCode::ServFail)), info);
        };
        let zones = self.zones_for(&snapshot);
        let geo = self.geo.load();
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let ctx = Context {
            snapshot: &snapshot,
            zones: &zones,
            geo: &geo,
            now_ms,
        };
        answer(&ctx, request, src, transport)
    }
}

/// A running server.
pub struct DnsServer {
    /// The UDP address bound.
    pub udp: SocketAddr,
    /// The TCP address bound.
    pub tcp: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl DnsServer {
    /// Binds UDP and TCP on `addr` (port 0: any free port, the same for both where possible) and serves.
    pub async fn bind(addr: SocketAddr, state: Arc<DnsState>, udp_workers: usize) -> std::io::Result<Self> {
        let udp = Arc::new(UdpSocket::bind(addr).await?);
        let udp_addr = udp.local_addr()?;
        let tcp = TcpListener::bind(if addr.port() == 0 { udp_addr } else { addr }).await?;
        let tcp_addr = tcp.local_addr()?;
        let mut tasks = Vec::new();
        for _ in 0..udp_workers.max(1) {
            tasks.push(tokio::spawn(serve_udp(udp.clone(), state.clone())));
        }
        tasks.push(tokio::spawn(serve_tcp(tcp, state)));
        Ok(Self {
            udp: udp_addr,
            tcp: tcp_addr,
            tasks,
        })
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn serve_udp(socket: Arc<UdpSocket>, state: Arc<DnsState>) {
    // Larger than any UDP DNS message we accept; a bigger datagram is truncated by the kernel and then
    // fails to parse (FORMERR), which is the right answer for it.
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                // ICMP errors from earlier sends surface here on some systems; they concern one peer.
                tracing::debug!(error = %e, "udp receive");
                continue;
            }
        };
        let (response, _info) = state.answer(&buf[..n], peer.ip(), Transport::Udp);
        if let Some(r) = response
            && let Err(e) = socket.send_to(&r, peer).await
        {
            tracing::debug!(error = %e, %peer, "udp send");
        }
    }
}

async fn serve_tcp(listener: TcpListener, state: Arc<DnsState>) {
    let permits = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "tcp accept");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // At the cap: close at once rather than queue.
            drop(stream);
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = serve_connection(stream, peer, state).await {
                tracing::debug!(error = %e, %peer, "tcp connection");
            }
        });
    }
}

async fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    state: Arc<DnsState>,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; usize::from(u16::MAX)];
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE_TIMEOUT, stream.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            // Idle timeout or the client closed: done.
            Ok(Err(_)) | Err(_) => return Ok(()),
        }
        let n = usize::from(u16::from_be_bytes(len));
        match tokio::time::timeout(TCP_IDLE_TIMEOUT, stream.read_exact(&mut buf[..n])).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(()),
        }
        let (response, _info) = state.answer(&buf[..n], peer.ip(), Transport::Tcp);
        let Some(r) = response else { return Ok(()) };
        let mut framed = Vec::with_capacity(r.len() + 2);
        framed.extend_from_slice(&(r.len() as u16).to_be_bytes());
        framed.extend_from_slice(&r);
        stream.write_all(&framed).await?;
    }
}
