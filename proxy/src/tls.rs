//! TLS on the proxy's listeners: what each listener speaks, the handshake (bounded by the configured
//! handshake timeout, counted by outcome), and [`Replay`], which gives pingora a connection with the octets
//! the fast path already read put back in front.
//!
//! Why the handshake is done here and not by pingora's TLS listener: pingora's listener bounds a
//! handshake by a fixed 60 s and only logs failures; a stalled or garbage handshake must end within the
//! operator's `tls.handshake-timeout-ms` and be counted. The handshake is tokio-rustls' `accept` (as in
//! pingora's listener) with the rustls configuration of `meridian-tls`; the resulting [`TlsConn`] gives
//! pingora's HTTP/2 and HTTP/1.1 servers the ALPN and digests pingora's own TLS stream would, in less
//! memory per connection.

use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use meridian_tls::EdgeTls;
use meridian_tls::rustls::ServerConfig;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{ALPN, Peek, Shutdown, Ssl, Stream, UniqueID, UniqueIDType};
use pingora::protocols::{GetProxyDigest, GetSocketDigest, GetTimingDigest, SocketDigest, TimingDigest};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream as ServerTlsStream;

use crate::stats::ProxyMetrics;

/// What a listener speaks.
#[derive(Clone, Debug)]
pub enum ListenKind {
    /// Plain HTTP. `https_port`: the port of this proxy's HTTPS listener, where `tls.plain-http =
    /// "redirect"` sends clients (`None`: the proxy has no HTTPS listener; requests are served).
    Http {
        /// The HTTPS port redirects go to.
        https_port: Option<u16>,
    },
    /// HTTPS for clients: certificates by SNI, ALPN `h2` and `http/1.1`.
    Https(Arc<EdgeTls>),
    /// The hop listener: TLS with a client certificate from the hop CA required; only other regions'
    /// proxies connect here (`regions.ID.proxy-address`).
    Hop(Arc<ServerConfig>),
}

impl ListenKind {
    /// The label of the listener in metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Http { .. } => "http",
            Self::Https(_) => "https",
            Self::Hop(_) => "hop",
        }
    }
}

/// Accepts TLS on `stream` within `timeout`; `None` (counted, logged at debug) when the client sent
/// garbage, stalled, or failed verification.
pub(crate) async fn handshake(
    config: Arc<ServerConfig>,
    stream: Stream,
    timeout: Duration,
    metrics: &ProxyMetrics,
    region: &str,
    listener: &'static str,
) -> Option<Stream> {
    let count = |result: &str| {
        metrics
            .tls_handshakes
            .with_label_values(&[region, listener, result])
            .inc();
    };
    let l4: Box<L4Stream> = match stream.into_any().downcast() {
        Ok(s) => s,
        Err(_) => {
            count("failed");
            return None;
        }
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let mut l4 = *l4;
    // A connection closed before its first octet (a TCP health check, a port scan, a load balancer's
    // probe) is no failed handshake: counted apart, so the failure rate means what it says.
    let mut first = [0u8; 1];
    match tokio::time::timeout_at(deadline, l4.try_peek(&mut first)).await {
        Ok(Ok(true)) => {}
        Ok(_) => {
            count("closed");
            return None;
        }
        Err(_) => {
            count("timeout");
            return None;
        }
    }
    let started = Instant::now();
    match tokio::time::timeout_at(deadline, TlsAcceptor::from(config).accept(l4)).await {
        Ok(Ok(tls)) => {
            count("ok");
            Some(Box::new(TlsConn::new(tls, started.elapsed())))
        }
        Ok(Err(e)) => {
            tracing::debug!("TLS handshake failed: {e}");
            count("failed");
            None
        }
        Err(_) => {
            count("timeout");
            None
        }
    }
}

/// A TLS connection a listener accepted: tokio-rustls' stream over pingora's TCP stream, with what
/// pingora's HTTP servers ask of a TLS stream (ALPN, the TLS digest, the timing of each layer).
///
/// Why not pingora's own TLS stream (`Acceptor::tls_handshake`): it keeps, beside the connection, room
/// for a client and for a server handshake in progress (each as large as a connection: rustls' state
/// inline) and a copy of the client's SNI name, for as long as the connection lives — kilobytes per
/// idle connection (bench/RESULTS.md, issue 19). The handshake is the same tokio-rustls `accept`
/// pingora's listener calls.
#[derive(Debug)]
pub(crate) struct TlsConn {
    inner: ServerTlsStream<L4Stream>,
    digest: Arc<SslDigest>,
    timing: TimingDigest,
}

impl TlsConn {
    fn new(inner: ServerTlsStream<L4Stream>, handshake: Duration) -> Self {
        let session = inner.get_ref().1;
        let cipher = session
            .negotiated_cipher_suite()
            .and_then(|s| s.suite().as_str())
            .unwrap_or_default();
        let version = session
            .protocol_version()
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        // A client certificate (the hop listener's peers) as pingora's digest describes it.
        let leaf = session.peer_certificates().and_then(|c| c.first());
        let cert_digest = leaf.map(pingora::tls::hash_certificate).unwrap_or_default();
        let (organization, serial) = leaf
            .and_then(|c| pingora::utils::tls::get_organization_serial_bytes(c.as_ref()).ok())
            .map_or((None, None), |(o, s)| (o, Some(s)));
        Self {
            digest: Arc::new(SslDigest::new(cipher, version, organization, serial, cert_digest)),
            timing: TimingDigest {
                established_ts: SystemTime::now(),
                establishment_duration: Some(handshake),
                offload_wait_duration: None,
            },
            inner,
        }
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for TlsConn {
    async fn shutdown(&mut self) {
        // As pingora's TLS stream: close_notify, then the TCP shutdown; a failure only logged.
        if let Err(e) = AsyncWriteExt::shutdown(&mut self.inner).await {
            tracing::debug!("TLS shutdown failed: {e}");
        }
    }
}

impl UniqueID for TlsConn {
    fn id(&self) -> UniqueIDType {
        self.inner.get_ref().0.id()
    }
}

impl Ssl for TlsConn {
    /// `None`: pingora reads it only in its own listener's handshake callbacks, which Meridian does not
    /// use.
    fn get_ssl(&self) -> Option<&TlsRef> {
        None
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        Some(self.digest.clone())
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        // The listeners offer no other protocols (`meridian-tls`).
        match self.inner.get_ref().1.alpn_protocol()? {
            b"h2" => Some(ALPN::H2),
            b"http/1.1" => Some(ALPN::H1),
            _ => None,
        }
    }
}

impl GetTimingDigest for TlsConn {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        let mut layers = self.inner.get_ref().0.get_timing_digest();
        layers.push(Some(self.timing.clone()));
        layers
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_ref().0.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_ref().0.get_write_pending_time()
    }
}

impl GetProxyDigest for TlsConn {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_ref().0.get_proxy_digest()
    }
}

impl GetSocketDigest for TlsConn {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_ref().0.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.get_mut().0.set_socket_digest(digest);
    }
}

#[async_trait]
impl Peek for TlsConn {}

/// Whether a stream negotiated HTTP/2 by ALPN.
pub(crate) fn is_h2(stream: &Stream) -> bool {
    matches!(stream.selected_alpn_proto(), Some(ALPN::H2))
}

/// A connection with `prefix` read again before its own unread octets.
#[derive(Debug)]
pub(crate) struct Replay {
    prefix: Vec<u8>,
    pos: usize,
    inner: Stream,
}

impl Replay {
    /// `inner`, whose next reads return `prefix` first.
    pub(crate) fn new(inner: Stream, prefix: &[u8]) -> Self {
        Self {
            prefix: prefix.to_vec(),
            pos: 0,
            inner,
        }
    }
}

impl AsyncRead for Replay {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.pos < self.prefix.len() {
            let n = (self.prefix.len() - self.pos).min(buf.remaining());
            let start = self.pos;
            buf.put_slice(&self.prefix[start..start + n]);
            self.pos += n;
            if self.pos == self.prefix.len() {
                self.prefix = Vec::new();
                self.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut *self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Replay {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for Replay {
    async fn shutdown(&mut self) {
        Shutdown::shutdown(&mut *self.inner).await;
    }
}

impl UniqueID for Replay {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Replay {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Replay {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }
}

impl GetProxyDigest for Replay {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest);
    }
}

impl GetSocketDigest for Replay {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest);
    }
}

#[async_trait]
impl Peek for Replay {}
