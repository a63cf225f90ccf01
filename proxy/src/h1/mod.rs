//! The HTTP/1.1 fast path: the request shape that is nearly all of a regional proxy's traffic — `GET` or
//! `HEAD`, HTTP/1.1, origin-form target, one `Host`, no body, no upgrade — read, decided and forwarded
//! here, over keep-alive upstream connections this module keeps. Everything else (other methods,
//! bodies, HTTP/1.0, h2c, `Expect`, other `Connection` options, malformed or oversized heads) is handed,
//! unread, to pingora's HTTP proxy on the same connection, which answers it with the same
//! [`RegionService`].
//!
//! Why: on this project's benchmark machine pingora's proxy pipeline costs twice what the kernel and
//! tokio cost per request (bench/RESULTS.md: pingora with nothing of Meridian in it reaches 0.6x nginx,
//! a plain tokio forwarder 1.05x). The decisions are not duplicated: admission, the plan, the next
//! upstream, the forwarding headers, the response marks and the accounting are `RegionService`'s own
//! functions, which pingora's callbacks call too. This module owns only HTTP/1.1 framing, the upstream
//! connection reuse, and timeouts.
//!
//! Must not: answer anything it has not fully checked (it hands over instead), retry anything after a
//! response byte went to the client, count a stale pooled connection as a backend failure.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::proxy::{HttpProxy, ProxyHttp};
use pingora::server::ShutdownWatch;
use pingora::upstreams::peer::{HttpPeer, Peer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::service::{REASON_HEADER, REGION_HEADER, RegionService, RequestCtx};
use crate::tls::{ListenKind, Replay, handshake, is_h2};
use crate::upstream::{TlsTo, Upstream};

mod body;
mod head;

use body::{Body, Framing, framing_of};
use head::{Head, Read, fast_shape, read_head};

/// Most headers in a request or response head the fast path parses; more goes to pingora (requests) or
/// is an upstream error (responses).
const MAX_HEADERS: usize = 64;
/// Largest upstream response head accepted.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Idle upstream connections kept per upstream address.
const MAX_IDLE_PER_UPSTREAM: usize = 128;
/// Read size for bodies.
const CHUNK: usize = 16 * 1024;
/// Scratch buffers kept per thread for the next request.
const SCRATCH_POOL: usize = 64;
/// Request headers never forwarded: hop-by-hop (RFC 9110 §7.6.1), and those the proxy sets itself.
const DROPPED_REQUEST_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "x-forwarded-for",
    "forwarded",
    "x-forwarded-proto",
];
/// Response headers never forwarded (hop-by-hop; the proxy says itself whether the connection stays).
const DROPPED_RESPONSE_HEADERS: &[&str] = &["connection", "keep-alive", "proxy-connection", "upgrade"];

/// The pingora application of one region's listener: the fast path, and pingora's proxy for the rest.
pub struct FastH1 {
    service: RegionService,
    proxy: Arc<HttpProxy<RegionService>>,
    idle: Mutex<IdleConns>,
    kind: ListenKind,
}

/// Idle upstream connections by address. foldhash rather than SipHash: the keys are the proxy's own
/// upstream addresses, and SipHash showed in the request path's profile.
type IdleConns = HashMap<SocketAddr, Vec<(Upstream, Instant)>, foldhash::fast::RandomState>;

/// Buffers a request is served with: taken from a per-thread pool when a request begins and given back
/// when it ends, so an idle keep-alive connection holds none of them (16-48 KiB each once used) and a
/// busy thread reuses the same few, warm, without allocating.
#[derive(Default)]
struct Scratch {
    /// The request head sent upstream.
    request: Vec<u8>,
    /// Octets read from the upstream.
    response: Vec<u8>,
    /// The response head (and the body octets that came with it) for the client.
    out: Vec<u8>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<Scratch>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Scratch {
    fn take() -> Self {
        SCRATCH.with(|p| p.borrow_mut().pop()).unwrap_or_default()
    }

    fn give_back(self) {
        SCRATCH.with(|p| {
            let mut pool = p.borrow_mut();
            if pool.len() < SCRATCH_POOL {
                pool.push(self);
            }
        });
    }
}

impl FastH1 {
    /// The fast path in front of `proxy` (pingora's HTTP proxy over the same `service`), on a listener
    /// of `kind` (TLS listeners: the handshake is done here first).
    pub fn new(service: RegionService, proxy: HttpProxy<RegionService>, kind: ListenKind) -> Self {
        Self {
            service,
            proxy: Arc::new(proxy),
            idle: Mutex::new(IdleConns::default()),
            kind,
        }
    }

    fn take_idle(&self, addr: SocketAddr, max_idle: Duration) -> Option<Upstream> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let conns = idle.get_mut(&addr)?;
        while let Some((conn, since)) = conns.pop() {
            if since.elapsed() < max_idle {
                return Some(conn);
            }
        }
        None
    }

    fn put_idle(&self, addr: SocketAddr, conn: Upstream) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let conns = idle.entry(addr).or_default();
        if conns.len() < MAX_IDLE_PER_UPSTREAM {
            conns.push((conn, Instant::now()));
        }
    }

    /// Gives the connection, with the octets already read from it, to pingora's proxy.
    async fn hand_over(
        self: &Arc<Self>,
        stream: Stream,
        read: &[u8],
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let node = self.service.node();
        node.metrics.handed_over.with_label_values(&[node.region()]).inc();
        let stream = rewind(stream, read)?;
        ServerApp::process_new(&self.proxy, stream, shutdown).await
    }
}

/// Puts `read` back in front of the connection's unread octets: in pingora's own TCP stream when it is
/// one, else (TLS) in a [`Replay`] around it.
fn rewind(stream: Stream, read: &[u8]) -> Option<Stream> {
    if read.is_empty() {
        return Some(stream);
    }
    if stream.as_any().is::<L4Stream>() {
        let mut l4: Box<L4Stream> = stream.into_any().downcast().ok()?;
        l4.rewind(read);
        return Some(l4);
    }
    Some(Box::new(Replay::new(stream, read)))
}

/// Outcome of one attempt.
enum Exchange {
    /// The response went out whole.
    Done { status: u16, keep_client: bool },
    /// Could not connect: nothing sent.
    ConnectFailed,
    /// The upstream failed before any of its response went to the client.
    UpstreamFailed,
    /// The client went away before a response began.
    ClientGone,
    /// Part of the response went out, then either side failed.
    Broken { status: u16 },
}

#[async_trait]
impl ServerApp for FastH1 {
    /// Lets pingora's proxy stop its keep-alive connections waiting for a next request (the fast path's
    /// own watch the shutdown signal in `read_head`).
    async fn cleanup(&self) {
        ServerApp::cleanup(&*self.proxy).await;
    }

    /// Serves the connection's requests one after another (keep-alive, pipelining) until it closes or a
    /// request needs pingora; then hands the connection over with the octets read and not yet served.
    ///
    /// On a task of its own, spawned here: pingora's task for an accepted connection is sized for every
    /// stream its listeners can build (its own TLS handshake included) and would be held, with the boxed
    /// future of this function, for as long as the connection lives — kilobytes per idle connection
    /// (bench/RESULTS.md, issue 19). This task holds [`FastH1::connection`]'s future alone, and that
    /// future is small where a connection waits: what is large (the handshake, a request's exchange) is
    /// boxed for as long as it runs.
    async fn process_new(self: &Arc<Self>, stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        let this = Arc::clone(self);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            // Nothing comes back: pingora's HTTP proxy keeps a connection handed to it until it closes.
            drop(this.connection(stream, &shutdown).await);
        });
        None
    }
}

impl FastH1 {
    /// One accepted connection: the TLS handshake on TLS listeners, then the fast path's requests, or
    /// pingora's proxy for HTTP/2 and for what the fast path hands over.
    async fn connection(self: &Arc<Self>, stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        let config = match &self.kind {
            ListenKind::Http { .. } => None,
            ListenKind::Https(edge) => Some(edge.config()),
            ListenKind::Hop(config) => Some(config.clone()),
        };
        let mut stream = match config {
            None => stream,
            Some(config) => {
                let node = self.service.node();
                let timeout = node
                    .table()
                    .map_or(Duration::from_secs(10), |t| t.handshake_timeout);
                let label = self.kind.label();
                // Boxed, for the length of the handshake: rustls' connection state is inline in its future.
                let tls = Box::pin(handshake(
                    config,
                    stream,
                    timeout,
                    &node.metrics,
                    node.region(),
                    label,
                ))
                .await?;
                if is_h2(&tls) {
                    // HTTP/2 is pingora's: its server handles the streams, each through `RegionService`.
                    // The handshake's round trips gave the kernel its estimate.
                    if let Some(peer) = peer_ip(&tls) {
                        node.sample_rtt(&tls, peer);
                    }
                    return ServerApp::process_new(&self.proxy, tls, shutdown).await;
                }
                tls
            }
        };
        let peer = peer_ip(&stream).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        // The round trip is sampled once per connection, after its first request (the kernel's estimate
        // then rests on the handshake and a request/response exchange), or when it is handed over.
        let mut sampled = false;
        // Allocated when a request's octets arrive and freed after it (`read_more`); the response
        // buffers are held only while a request is served (`Scratch`, from a per-thread pool).
        let mut buf = Vec::new();
        loop {
            let Some(table) = self.service.node().table() else {
                return self.hand_over(stream, &buf, shutdown).await;
            };
            let timeout = Duration::from_millis(u64::from(table.settings.client_timeout_ms));
            let limit = table.settings.max_header_bytes as usize;
            drop(table);
            match read_head(&mut stream, &mut buf, limit, timeout, shutdown).await {
                Read::Head => {}
                Read::Gone => return None,
                Read::HandOver => {
                    if !sampled {
                        self.service.node().sample_rtt(&stream, peer);
                    }
                    return self.hand_over(stream, &buf, shutdown).await;
                }
                Read::TimedOut => {
                    let mut client = Client {
                        stream: &mut stream,
                        timeout,
                        shutdown,
                    };
                    // Boxed as `serve` is: rare, and not to be carried by every idle connection.
                    Box::pin(client.write(
                        b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    ))
                    .await;
                    let node = self.service.node();
                    node.metrics
                        .refused
                        .with_label_values(&[node.region(), "request-timeout"])
                        .inc();
                    return None;
                }
            }
            let Some(head) = fast_shape(&buf) else {
                if !sampled {
                    self.service.node().sample_rtt(&stream, peer);
                }
                return self.hand_over(stream, &buf, shutdown).await;
            };
            let len = head.len;
            let mut client = Client {
                stream: &mut stream,
                timeout,
                shutdown,
            };
            let mut scratch = Scratch::take();
            // Boxed, for the length of the request: its future (the upstream exchange, a TLS connect to
            // an upstream) is kilobytes, and inline it would make the connection's own future, held
            // as long as the connection idles, as large (bench/RESULTS.md, issue 19).
            let keep = Box::pin(self.serve(&mut client, &head, peer, &mut scratch)).await;
            scratch.give_back();
            if !sampled {
                sampled = true;
                self.service.node().sample_rtt(&stream, peer);
            }
            if !keep {
                return None;
            }
            // Pipelined octets after this request are the next request's; without any, the buffer goes
            // (an idle connection holds none: `read_more`).
            buf.drain(..len);
            if buf.is_empty() {
                buf = Vec::new();
            }
        }
    }
}

impl FastH1 {
    /// Answers one request of the fast path's shape from `peer`; `true`: the connection stays open.
    async fn serve(
        &self,
        client: &mut Client<'_>,
        head: &Head<'_>,
        peer: IpAddr,
        scratch: &mut Scratch,
    ) -> bool {
        let mut ctx = self.service.new_ctx();
        if let Some(location) = self.service.redirect(head) {
            let out = &mut scratch.out;
            out.clear();
            out.extend_from_slice(b"HTTP/1.1 308 Permanent Redirect\r\n");
            push_header(out, "location", location.as_bytes());
            push_header(out, "content-length", b"0");
            push_header(out, REGION_HEADER, self.service.node().region().as_bytes());
            push_header(out, REASON_HEADER, b"https-redirect");
            let keep = !head.close && !client.stopping();
            if !keep {
                push_header(out, "connection", b"close");
            }
            out.extend_from_slice(b"\r\n");
            let sent = client.write(out).await;
            self.service.finish(&mut ctx, 308);
            return sent && keep;
        }
        match self.service.admit(head, peer, &mut ctx) {
            Err(r) => {
                let region = self.service.node().region();
                let out = &mut scratch.out;
                out.clear();
                out.extend_from_slice(b"HTTP/1.1 ");
                push_status(out, r.status);
                out.push(b' ');
                out.extend_from_slice(reason_phrase(r.status).as_bytes());
                out.extend_from_slice(b"\r\n");
                push_header(out, "content-type", b"text/plain; charset=utf-8");
                push_header(out, "content-length", r.body.len().to_string().as_bytes());
                push_header(out, REGION_HEADER, region.as_bytes());
                push_header(out, REASON_HEADER, r.reason.as_bytes());
                let keep = !r.close && !head.close && !client.stopping();
                if !keep {
                    push_header(out, "connection", b"close");
                }
                out.extend_from_slice(b"\r\n");
                if head.method != "HEAD" {
                    out.extend_from_slice(r.body.as_bytes());
                }
                let sent = client.write(out).await;
                self.service.finish(&mut ctx, r.status);
                sent && keep
            }
            Ok(()) => loop {
                let peer = match self.service.next_peer(head, &mut ctx) {
                    Ok(p) => p,
                    Err(code) => {
                        let out = format!(
                            "HTTP/1.1 {code} {}\r\ncontent-length: 0\r\ncache-control: private, no-store\r\n\
                             connection: close\r\n\r\n",
                            reason_phrase(code)
                        );
                        client.write(out.as_bytes()).await;
                        self.service.finish(&mut ctx, code);
                        break false;
                    }
                };
                match self.exchange(client, head, &mut ctx, &peer, scratch).await {
                    Exchange::Done { status, keep_client } => {
                        self.service.finish(&mut ctx, status);
                        break keep_client;
                    }
                    Exchange::ConnectFailed => self.service.attempt_failed(&mut ctx, "connect"),
                    Exchange::UpstreamFailed => self.service.attempt_failed(&mut ctx, "proxy"),
                    Exchange::ClientGone => {
                        self.service.finish(&mut ctx, 0);
                        break false;
                    }
                    Exchange::Broken { status } => {
                        self.service.finish(&mut ctx, status);
                        break false;
                    }
                }
            },
        }
    }
}

/// The client's IP address, from the stream's socket digest.
fn peer_ip(stream: &Stream) -> Option<IpAddr> {
    stream
        .get_socket_digest()
        .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()))
}

/// Appends a status code (three digits: httparse accepts no other) without the formatting machinery.
fn push_status(out: &mut Vec<u8>, status: u16) {
    let s = status.min(999);
    out.extend_from_slice(&[
        b'0' + (s / 100) as u8,
        b'0' + (s / 10 % 10) as u8,
        b'0' + (s % 10) as u8,
    ]);
}

fn push_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The client side of a connection the fast path serves.
struct Client<'c> {
    stream: &'c mut Stream,
    /// Limit on each read from and write to the client.
    timeout: Duration,
    shutdown: &'c ShutdownWatch,
}

impl Client<'_> {
    /// Writes `out` whole; `false`: the client failed or was too slow.
    async fn write(&mut self, out: &[u8]) -> bool {
        let write = async {
            self.stream.write_all(out).await?;
            self.stream.flush().await
        };
        matches!(tokio::time::timeout(self.timeout, write).await, Ok(Ok(())))
    }

    /// The server is stopping: this response is the connection's last.
    fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }
}

fn reason_phrase(status: u16) -> &'static str {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("")
}

impl FastH1 {
    /// One attempt: the request to `peer`, its response back to the client.
    async fn exchange(
        &self,
        client: &mut Client<'_>,
        head: &Head<'_>,
        ctx: &mut RequestCtx,
        peer: &HttpPeer,
        scratch: &mut Scratch,
    ) -> Exchange {
        let Some(&addr) = peer.address().as_inet() else {
            return Exchange::ConnectFailed;
        };
        let connect_timeout = peer.options.connection_timeout.unwrap_or(Duration::from_secs(5));
        let io = peer.options.read_timeout.unwrap_or(Duration::from_secs(30));
        let max_idle = peer.options.idle_timeout.unwrap_or(Duration::from_secs(60));

        let Scratch {
            request,
            response: resp,
            out,
        } = scratch;
        request.clear();
        request.extend_from_slice(head.method.as_bytes());
        request.push(b' ');
        request.extend_from_slice(head.path.as_bytes());
        request.extend_from_slice(b" HTTP/1.1\r\n");
        let fwd = self.service.forward_headers(head, ctx);
        for (name, value) in &head.headers {
            let dropped = DROPPED_REQUEST_HEADERS
                .iter()
                .any(|d| name.eq_ignore_ascii_case(d))
                || (fwd.hop.is_some() && name.eq_ignore_ascii_case(crate::service::HOP_HEADER));
            if !dropped {
                push_header(request, name, value);
            }
        }
        request.extend_from_slice(b"x-forwarded-for: ");
        fwd.x_forwarded_for(request);
        request.extend_from_slice(b"\r\nforwarded: ");
        fwd.forwarded(request);
        request.extend_from_slice(b"\r\n");
        push_header(request, "x-forwarded-proto", fwd.x_forwarded_proto);
        if let Some(origin) = fwd.hop {
            push_header(request, crate::service::HOP_HEADER, origin.as_bytes());
        }
        request.extend_from_slice(b"\r\n");

        // A pooled connection the upstream closed meanwhile fails on first use: that says nothing about
        // the backend, so it is retried once on a new connection.
        let mut pooled = self.take_idle(addr, max_idle);
        let (mut upstream, head_len, status, framing, reusable) = loop {
            let reused = pooled.is_some();
            let mut conn = match pooled.take() {
                Some(c) => c,
                None => {
                    let tls = if peer.is_tls() {
                        // A TLS upstream without a client configuration is never tried in clear.
                        let Some(config) = self.service.upstream_tls(ctx) else {
                            return Exchange::ConnectFailed;
                        };
                        Some(TlsTo {
                            config,
                            name: peer.sni(),
                        })
                    } else {
                        None
                    };
                    match Upstream::connect(addr, tls, connect_timeout).await {
                        Some(c) => c,
                        None => return Exchange::ConnectFailed,
                    }
                }
            };
            resp.clear();
            match self.request_response(&mut conn, request, resp, io, client).await {
                Ok(Some((n, status, framing, reusable))) => break (conn, n, status, framing, reusable),
                Ok(None) if reused => {} // stale: once more on a new connection
                Ok(None) => return Exchange::UpstreamFailed,
                Err(()) => return Exchange::ClientGone,
            }
        };
        let framing = if head.method == "HEAD" {
            Framing::None
        } else {
            framing
        };

        // The response head to the client.
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut headers);
        if !matches!(parsed.parse(&resp[..head_len]), Ok(httparse::Status::Complete(_))) {
            return Exchange::UpstreamFailed;
        }
        let named = parsed
            .headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case(REGION_HEADER));
        let keep_client = framing != Framing::UntilClose && !head.close && !client.stopping();
        let hsts = self.service.hsts(ctx);
        let (region, reason) = self.service.response_marks(ctx, named);
        out.clear();
        out.extend_from_slice(b"HTTP/1.1 ");
        push_status(out, status);
        out.push(b' ');
        out.extend_from_slice(parsed.reason.unwrap_or("").as_bytes());
        out.extend_from_slice(b"\r\n");
        for h in parsed.headers.iter() {
            let dropped = DROPPED_RESPONSE_HEADERS
                .iter()
                .any(|d| h.name.eq_ignore_ascii_case(d))
                || (region.is_some() && h.name.eq_ignore_ascii_case(REGION_HEADER))
                || (reason.is_some() && h.name.eq_ignore_ascii_case(REASON_HEADER))
                || (hsts.is_some() && h.name.eq_ignore_ascii_case("strict-transport-security"));
            if !dropped {
                push_header(out, h.name, h.value);
            }
        }
        if let Some(hsts) = &hsts {
            push_header(out, "strict-transport-security", hsts.as_bytes());
        }
        if let Some(region) = region {
            push_header(out, REGION_HEADER, region.as_bytes());
        }
        if let Some(reason) = reason {
            push_header(out, REASON_HEADER, reason.as_bytes());
        }
        if !keep_client {
            push_header(out, "connection", b"close");
        }
        out.extend_from_slice(b"\r\n");

        // The body: what came with the head, then the rest.
        let mut body = Body::new(framing);
        let have = &resp[head_len..];
        let take = body.feed(have);
        out.extend_from_slice(&have[..take]);
        let extra = take < have.len();
        if !client.write(out).await {
            return Exchange::Broken { status };
        }
        // The response buffer again, for the rest of the body (most bodies came with the head).
        let chunk = resp;
        while !body.done() {
            chunk.clear();
            let n = match tokio::time::timeout(io, upstream.read_buf(chunk)).await {
                Ok(Ok(0)) if framing == Framing::UntilClose => break,
                Ok(Ok(n)) if n > 0 => n,
                _ => return Exchange::Broken { status },
            };
            let take = body.feed(&chunk[..n]);
            if take < n {
                // Octets past the end of the response: the connection cannot be trusted again.
                body.spoiled = true;
            }
            if !client.write(&chunk[..take]).await {
                return Exchange::Broken { status };
            }
        }
        if reusable && !extra && !body.spoiled && framing != Framing::UntilClose {
            self.put_idle(addr, upstream);
        } else {
            let _ = upstream.shutdown().await;
        }
        Exchange::Done { status, keep_client }
    }

    /// Sends `request` and reads the response head into `resp`, forwarding informational (1xx) heads to
    /// the client. `Ok(None)`: the upstream failed (closed, timed out, malformed); `Err`: the client did.
    async fn request_response(
        &self,
        conn: &mut Upstream,
        request: &[u8],
        resp: &mut Vec<u8>,
        io: Duration,
        client: &mut Client<'_>,
    ) -> Result<Option<(usize, u16, Framing, bool)>, ()> {
        if !matches!(
            tokio::time::timeout(io, conn.write_all(request)).await,
            Ok(Ok(()))
        ) {
            return Ok(None);
        }
        loop {
            if !resp.is_empty() {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut parsed = httparse::Response::new(&mut headers);
                match parsed.parse(resp) {
                    Ok(httparse::Status::Complete(n)) => {
                        let status = parsed.code.unwrap_or(0);
                        if (100..200).contains(&status) {
                            if status == 101 {
                                return Ok(None); // no upgrade was asked for
                            }
                            if !client.write(&resp[..n]).await {
                                return Err(());
                            }
                            resp.drain(..n);
                            continue;
                        }
                        let Some((framing, reusable)) = framing_of(&parsed, status) else {
                            return Ok(None);
                        };
                        return Ok(Some((n, status, framing, reusable)));
                    }
                    Ok(httparse::Status::Partial) if resp.len() <= MAX_RESPONSE_HEAD => {}
                    _ => return Ok(None),
                }
            }
            resp.reserve(CHUNK);
            match tokio::time::timeout(io, conn.read_buf(resp)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return Ok(None),
            }
        }
    }
}
