//! The stream transports — TCP, DNS-over-TLS (RFC 7858) and DNS-over-HTTPS (RFC 8484, HTTP/2, POST and
//! GET on one path, `/dns-query` by default) — on hickory-server's network layer (`hickory_server::net`,
//! hickory-net 0.26.3): its `TcpStream` frames TCP and TLS messages (RFC 7766, pipelined, responses queued
//! on its `BufDnsStreamHandle`), its `h2::message_from` reads a DoH POST (content type, length) and its
//! `http::response` writes the DoH answer's head. Every request is answered by Meridian's one
//! [`crate::respond()`] — the same function, and so the same steered answer, as UDP, ECS and the source
//! address honoured — and its octets are sent as they are.
//!
//! What is Meridian's own here, and why:
//! - the accept loop. hickory-server 0.26.3's `Server` accepts every connection and spawns a task for it
//!   without any cap (`server/mod.rs`, `handle_tcp`/`handle_tls`), so one host opening idle connections
//!   takes every file descriptor. Ours admits each connection through the [`Governor`] (a share per client
//!   network, a cap in total, a shorter idle time under pressure) before hickory's framing sees it.
//! - the answer octets. hickory-server's `RequestHandler`/`MessageResponse` path re-encodes a response
//!   from records, and its question emitter leaves the first answer's owner name uncompressed (11 octets
//!   more for `meet.gslb.example`, seen in `dns/tests/transports.rs`): the answer section would differ
//!   from UDP's. Sending [`crate::respond()`]'s octets keeps every transport byte-identical (tested), and
//!   costs no second parse and encode.
//! - the DoH connection loop (hickory-server's is private to its `Server`), with GET, which hickory's
//!   `message_from` does not implement and RFC 8484 requires.
//! - what one TLS write holds ([`crate::records`]): on DoT the answers to pipelined queries leave
//!   together, one write when nothing more is readable; on DoH a TLS record ends after each answer (what
//!   dnsperf's DoH client needs not to stall), the records of one h2 flush sent in one write.
//!
//! The UDP hot path is not here at all: it is `server`'s `recvmmsg` workers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use hickory_net::runtime::iocompat::AsyncIoTokioAsStd;
use hickory_net::xfer::Protocol;
use hickory_net::{BufDnsStreamHandle, DnsStreamHandle};
use hickory_proto::op::SerialMessage;
use hickory_server::net as hickory_net;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

use crate::guard::Governor;
use crate::metrics::Recorder;
use crate::records::{Batched, OneAnswerPerRecord};
use crate::server::DnsState;

/// How long a TLS handshake (DoT, DoH) may take.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests in flight at once on one HTTP/2 connection (Unbound's default, `http-max-streams`).
const H2_MAX_STREAMS: u32 = 100;
/// The TCP write buffer under a DoH connection's TLS: the records of one h2 flush leave in one write.
const H2_WRITE_BUFFER: usize = 32 * 1024;
/// The DoH path when none is configured (RFC 8484's example, and what clients try).
pub const DEFAULT_DOH_PATH: &str = "/dns-query";

/// A TLS listener: its address and the rustls configuration (certificate and key) it serves.
#[derive(Clone, Debug)]
pub struct TlsListen {
    /// The address to listen on (853 by convention for DoT, 443 for DoH).
    pub addr: SocketAddr,
    /// The certificate and key, with ALPN set by the listener (`dot`, `h2`).
    pub config: Arc<ServerConfig>,
}

/// Answers each request with Meridian's [`crate::respond()`] octets, as they are.
pub(crate) struct Handler {
    pub(crate) state: Arc<DnsState>,
}

fn transport_label(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Tcp => "tcp",
        Protocol::Https => "https",
        _ => "tls",
    }
}

/// Serves one accepted, governed connection of DNS messages framed as RFC 7766 says (TCP, and TLS
/// inside): each message through hickory-server's request reading and [`Handler`]; closed when the
/// client closes, on an error, or when it idles longer than the governor allows (less under pressure).
async fn serve_framed<S: hickory_net::runtime::DnsTcpStream>(
    mut stream: hickory_net::tcp::TcpStream<S>,
    handle: BufDnsStreamHandle,
    peer: SocketAddr,
    protocol: Protocol,
    handler: Arc<Handler>,
    governor: Arc<Governor>,
) {
    let mut busy = governor.busy();
    let mut last = tokio::time::Instant::now();
    // The connection's metrics, flushed now and then and when it closes (a flush per query costs a lock).
    let mut recorder = handler.state.metrics().recorder();
    loop {
        let Some(Some(Ok(message))) = governor.or_idle(&mut busy, last, stream.next()).await else {
            return;
        };
        last = tokio::time::Instant::now();
        let (bytes, _) = message.into_parts();
        answer_message(&bytes, peer, protocol, &handler, &handle, &mut recorder);
    }
}

/// Answers one request's octets with [`crate::respond()`]'s, queued on the connection's hickory stream
/// handle (written by the framed stream as it is polled).
fn answer_message(
    bytes: &[u8],
    peer: SocketAddr,
    protocol: Protocol,
    handler: &Handler,
    handle: &BufDnsStreamHandle,
    recorder: &mut Recorder,
) {
    if let Some(answer) = handler
        .state
        .answer_stream(bytes, peer.ip(), transport_label(protocol), recorder)
    {
        let _ = handle.clone().send(SerialMessage::new(answer, peer));
    }
}

/// Accepts TCP connections on `listener` for as long as the task runs.
pub(crate) async fn serve_tcp(listener: TcpListener, handler: Arc<Handler>, governor: Arc<Governor>) {
    loop {
        let Some((stream, peer, permit)) = accept(&listener, &governor).await else {
            continue;
        };
        let (handler, governor) = (handler.clone(), governor.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let (framed, handle) =
                hickory_net::tcp::TcpStream::from_stream_with_buffer_size(AsyncIoTokioAsStd(stream), peer, 8);
            serve_framed(framed, handle, peer, Protocol::Tcp, handler, governor).await;
        });
    }
}

/// Accepts DNS-over-TLS connections on `listener` with `config` (its ALPN set to `dot`).
pub(crate) async fn serve_tls(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    handler: Arc<Handler>,
    governor: Arc<Governor>,
) {
    let acceptor = TlsAcceptor::from(with_alpn(&config, b"dot"));
    loop {
        let Some((stream, peer, permit)) = accept(&listener, &governor).await else {
            continue;
        };
        let (handler, governor, acceptor) = (handler.clone(), governor.clone(), acceptor.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let Ok(Ok(tls)) = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
            else {
                return;
            };
            // Answers to pipelined queries leave together, one TLS write per batch (records.rs).
            let (framed, handle) =
                hickory_net::tls::tls_from_stream(AsyncIoTokioAsStd(Batched::new(tls)), peer);
            serve_framed(framed, handle, peer, Protocol::Tls, handler, governor).await;
        });
    }
}

/// Accepts DNS-over-HTTPS connections (HTTP/2 over TLS) on `listener`, answering on `path`.
pub(crate) async fn serve_https(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    path: Arc<str>,
    handler: Arc<Handler>,
    governor: Arc<Governor>,
) {
    let acceptor = TlsAcceptor::from(with_alpn(&config, b"h2"));
    loop {
        let Some((stream, peer, permit)) = accept(&listener, &governor).await else {
            continue;
        };
        let (handler, governor, acceptor, path) =
            (handler.clone(), governor.clone(), acceptor.clone(), path.clone());
        tokio::spawn(async move {
            let _permit = permit;
            // One answer per TLS record, the records sent together when h2 flushes (records.rs: what
            // dnsperf's DoH client needs not to stall).
            let buffered = tokio::io::BufWriter::with_capacity(H2_WRITE_BUFFER, stream);
            let Ok(Ok(tls)) = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(buffered)).await
            else {
                return;
            };
            serve_h2(OneAnswerPerRecord::new(tls), peer, path, handler, governor).await;
        });
    }
}

/// A copy of `config` offering `protocol` by ALPN.
fn with_alpn(config: &Arc<ServerConfig>, protocol: &[u8]) -> Arc<ServerConfig> {
    let mut c = (**config).clone();
    c.alpn_protocols = vec![protocol.to_vec()];
    Arc::new(c)
}

/// Accepts one connection and admits it through the governor; `None` when the accept failed or the
/// connection was refused (and closed at once).
async fn accept(
    listener: &TcpListener,
    governor: &Arc<Governor>,
) -> Option<(TcpStream, SocketAddr, crate::guard::Permit)> {
    let (stream, peer) = match listener.accept().await {
        Ok(x) => x,
        Err(e) => {
            // Out of descriptors, mostly: wait rather than spin.
            tracing::debug!(error = %e, "stream accept");
            tokio::time::sleep(Duration::from_millis(10)).await;
            return None;
        }
    };
    let permit = governor.admit(peer.ip()).ok()?;
    Some((stream, peer, permit))
}

/// One HTTP/2 connection: each request on `path` (POST with an `application/dns-message` body, or GET with
/// `?dns=` base64url) answered through hickory-server's `Request` and [`Handler`].
async fn serve_h2<S>(io: S, peer: SocketAddr, path: Arc<str>, handler: Arc<Handler>, governor: Arc<Governor>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = h2::server::Builder::new();
    builder.max_concurrent_streams(H2_MAX_STREAMS);
    let Ok(Ok(mut conn)) =
        tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, builder.handshake::<_, Bytes>(io)).await
    else {
        return;
    };
    let mut busy = governor.busy();
    let mut last = tokio::time::Instant::now();
    let mut recorder = handler.state.metrics().recorder();
    loop {
        let Some(Some(Ok((request, respond)))) = governor.or_idle(&mut busy, last, conn.accept()).await
        else {
            return;
        };
        last = tokio::time::Instant::now();
        // The body nearly always came with the headers: answer at once, in the order of the requests,
        // without a task per request. A body still on its way is awaited in a task.
        let mut message = Box::pin(doh_message(request, path.clone()));
        if let Some(body) = (&mut message).now_or_never() {
            answer_h2(&handler, peer, body, respond, &mut recorder);
            continue;
        }
        let handler = handler.clone();
        tokio::spawn(async move {
            if let Ok(body) = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, message).await {
                let mut recorder = handler.state.metrics().recorder();
                answer_h2(&handler, peer, body, respond, &mut recorder);
            }
        });
    }
}

/// Answers one DoH request: the DNS answer with hickory-net's response head, or an HTTP error status.
fn answer_h2(
    handler: &Handler,
    peer: SocketAddr,
    body: Result<Vec<u8>, http::StatusCode>,
    mut respond: h2::server::SendResponse<Bytes>,
    recorder: &mut Recorder,
) {
    let body = match body {
        Ok(body) => body,
        Err(status) => {
            let _ = respond.send_response(status_only(status), true);
            return;
        }
    };
    let Some(answer) = handler.state.answer_stream(&body, peer.ip(), "https", recorder) else {
        let _ = respond.send_response(status_only(http::StatusCode::BAD_REQUEST), true);
        return;
    };
    let Ok(head) = hickory_net::http::response(hickory_net::http::Version::Http2, answer.len()) else {
        return;
    };
    if let Ok(mut stream) = respond.send_response(head, false) {
        let _ = stream.send_data(Bytes::from(answer), true);
    }
}

/// An HTTP response with only a status.
fn status_only(status: http::StatusCode) -> http::Response<()> {
    let mut r = http::Response::new(());
    *r.status_mut() = status;
    r
}

/// The DNS message of a DoH request, or the HTTP status to refuse it with.
async fn doh_message(
    request: http::Request<h2::RecvStream>,
    path: Arc<str>,
) -> Result<Vec<u8>, http::StatusCode> {
    if request.uri().path() != &*path {
        return Err(http::StatusCode::NOT_FOUND);
    }
    if request.method() == http::Method::GET {
        // RFC 8484 §4.1: `?dns=` is the message in base64url without padding.
        let query = request.uri().query().unwrap_or_default();
        let encoded = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("dns="))
            .ok_or(http::StatusCode::BAD_REQUEST)?;
        use base64::Engine;
        return base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(encoded.trim_end_matches('='))
            .map_err(|_| http::StatusCode::BAD_REQUEST);
    }
    // POST (and hickory's checks of the content type and the length): hickory-net's reading.
    hickory_net::h2::message_from(None, path, request)
        .await
        .map(|b| b.to_vec())
        .map_err(|_| http::StatusCode::BAD_REQUEST)
}
