//! The fast path's connections to upstreams: plain TCP, or TLS (hops to other regions' proxies over
//! mutual TLS) with rustls, one type for both so the keep-alive pool and the exchange need not care.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use meridian_tls::rustls::ClientConfig;
use meridian_tls::rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A connection to an upstream.
pub(crate) enum Upstream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
}

/// How to reach an upstream over TLS: the client configuration and the name its certificate must carry.
pub(crate) struct TlsTo<'a> {
    pub(crate) config: Arc<ClientConfig>,
    pub(crate) name: &'a str,
}

impl Upstream {
    /// Connects to `addr` (and does the TLS handshake, when `tls` says so) within `timeout`.
    pub(crate) async fn connect(addr: SocketAddr, tls: Option<TlsTo<'_>>, timeout: Duration) -> Option<Self> {
        let work = async {
            let tcp = TcpStream::connect(addr).await.ok()?;
            let _ = tcp.set_nodelay(true);
            let Some(tls) = tls else {
                return Some(Self::Plain(tcp));
            };
            let name = ServerName::try_from(tls.name.to_owned()).ok()?;
            match TlsConnector::from(tls.config).connect(name, tcp).await {
                Ok(s) => Some(Self::Tls(Box::new(s))),
                Err(e) => {
                    tracing::warn!("TLS to {addr} ({}) failed: {e}", tls.name);
                    None
                }
            }
        };
        tokio::time::timeout(timeout, work).await.ok().flatten()
    }
}

impl AsyncRead for Upstream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Upstream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }
}
