//! The pingora glue: `ProxyHttp` callbacks that read the routing table, ask [`crate::route`] where to go,
//! and keep the counters. Kept thin: every choice is made by the pure functions of `route` and `pool`.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use meridian_config::Affinity;
use meridian_steer::client_hash;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType, Result};

use crate::client::{client_ip_vouched, forwarded, forwarded_for, is_trusted, request_host};
use crate::node::{ProxyNode, RouteTable, now_ms};
use crate::pool::Tried;
use crate::route::{Leave, Plan, RouteInput, Target, Targets, fast_path, plan};
use crate::tls::ListenKind;

/// Response header naming the region whose backends served (or which answered itself).
pub const REGION_HEADER: &str = "x-meridian-region";
/// Request header a proxy adds when it forwards to another region: the origin region. A request carrying
/// it is never forwarded again.
pub const HOP_HEADER: &str = "x-meridian-hop";
/// Response header saying why the proxy answered itself (refusals) or why the request left its region.
pub const REASON_HEADER: &str = "x-meridian-reason";

/// Most attempts on local backends per request (connection failures and retried upstream errors).
const MAX_LOCAL_ATTEMPTS: u32 = 3;

/// What the proxy's decisions read from a request head, whichever HTTP engine parsed it: pingora's
/// session, or the HTTP/1.1 fast path ([`crate::h1`]). Both engines call the same decisions
/// ([`RegionService::admit`], [`RegionService::next_peer`], ...), so they cannot disagree.
pub(crate) trait RequestHead {
    /// The first value of header `name` (lower case).
    fn header(&self, name: &str) -> Option<&[u8]>;
    /// Every value of header `name` (lower case), in order.
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a;
    /// The authority: the request target's, else the `Host` header.
    fn authority(&self) -> Option<&[u8]>;
    /// Octets of the head as received: request line and header lines.
    fn head_size(&self) -> usize;
    /// Whether the method is idempotent (may be retried after an upstream error).
    fn idempotent(&self) -> bool;
    /// The request target's path and query (`/` when it has none).
    fn target(&self) -> &[u8];
}

impl RequestHead for RequestHeader {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.get(name).map(|v| v.as_bytes())
    }

    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers.get_all(name).iter().map(|v| v.as_bytes())
    }

    fn authority(&self) -> Option<&[u8]> {
        self.uri
            .authority()
            .map(|a| a.as_str().as_bytes())
            .or_else(|| self.header("host"))
    }

    fn head_size(&self) -> usize {
        head_size(self)
    }

    fn idempotent(&self) -> bool {
        self.method.is_idempotent()
    }

    fn target(&self) -> &[u8] {
        self.uri.path_and_query().map_or(b"/", |p| p.as_str().as_bytes())
    }
}

/// The proxy answers itself instead of forwarding: with this status, `x-meridian-reason` and body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub status: u16,
    pub reason: &'static str,
    pub body: &'static str,
    /// Close the client connection after answering (the rest of the request cannot be trusted).
    pub close: bool,
}

const fn refusal(status: u16, reason: &'static str, body: &'static str, close: bool) -> Refusal {
    Refusal {
        status,
        reason,
        body,
        close,
    }
}

/// The headers a forwarded request gets (replacing any received ones). The two list headers are written
/// into the caller's buffer (`x_forwarded_for`, `forwarded`): the fast path appends them straight into the
/// request it sends.
pub(crate) struct ForwardHeaders<'a> {
    peer: IpAddr,
    peer_trusted: bool,
    received_xff: Option<&'a [u8]>,
    received_forwarded: Option<&'a [u8]>,
    host: &'a str,
    /// The scheme this proxy was asked with (`Forwarded: proto=`).
    proto: &'static [u8],
    pub x_forwarded_proto: &'a [u8],
    /// The hop header's value (this region) when the request goes to another region.
    pub hop: Option<&'a str>,
}

impl ForwardHeaders<'_> {
    /// Appends the `X-Forwarded-For` value to `out`.
    pub(crate) fn x_forwarded_for(&self, out: &mut Vec<u8>) {
        forwarded_for(self.peer, self.received_xff, self.peer_trusted, out);
    }

    /// Appends the `Forwarded` value to `out`.
    pub(crate) fn forwarded(&self, out: &mut Vec<u8>) {
        forwarded(
            self.peer,
            self.received_forwarded,
            self.peer_trusted,
            self.proto,
            self.host,
            out,
        );
    }
}

/// What the listener a request came in on is, as the decisions see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// Plain HTTP; redirects go to this HTTPS port when the proxy has one.
    Http { https_port: Option<u16> },
    /// HTTPS from clients.
    Https,
    /// TLS from another region's proxy, authenticated by its hop certificate: its forwarding headers
    /// are believed like a trusted proxy's.
    Hop,
}

impl Scheme {
    fn of(kind: &ListenKind) -> Self {
        match kind {
            ListenKind::Http { https_port } => Self::Http {
                https_port: *https_port,
            },
            ListenKind::Https(_) => Self::Https,
            ListenKind::Hop(_) => Self::Hop,
        }
    }

    /// The scheme clients used, as written in `X-Forwarded-Proto` and `Forwarded: proto=`.
    fn proto(self) -> &'static [u8] {
        match self {
            Self::Http { .. } => b"http",
            Self::Https | Self::Hop => b"https",
        }
    }
}

/// One region's proxy, as pingora's `ProxyHttp`.
#[derive(Clone, Debug)]
pub struct RegionService {
    node: Arc<ProxyNode>,
    scheme: Scheme,
}

impl RegionService {
    /// The HTTP side of `node` on a plain-HTTP listener of a proxy without HTTPS.
    pub fn new(node: Arc<ProxyNode>) -> Self {
        Self::for_listener(node, &ListenKind::Http { https_port: None })
    }

    /// The HTTP side of `node` on a listener of `kind`.
    pub fn for_listener(node: Arc<ProxyNode>, kind: &ListenKind) -> Self {
        Self {
            node,
            scheme: Scheme::of(kind),
        }
    }

    /// The node it serves.
    pub(crate) fn node(&self) -> &Arc<ProxyNode> {
        &self.node
    }
}

/// The current attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attempt {
    Local(usize),
    Remote(meridian_steer::RegionIndex),
}

/// Per-request state.
#[derive(Debug)]
pub struct RequestCtx {
    node: Arc<ProxyNode>,
    start: Instant,
    table: Option<Arc<RouteTable>>,
    host: usize,
    peer: IpAddr,
    peer_trusted: bool,
    client: IpAddr,
    hopped: bool,
    targets: Targets,
    next: usize,
    replanned: bool,
    spill: Option<Leave>,
    tried: Tried,
    local_attempts: u32,
    attempt: Option<Attempt>,
    served_by: Option<Attempt>,
    counted_local: bool,
    responded: bool,
    body_seen: u64,
    /// An upgrade (WebSocket): idle and lifetime limits instead of the request ones, no body size limit.
    upgrade: bool,
}

impl Drop for RequestCtx {
    fn drop(&mut self) {
        // An attempt still open here saw neither a response nor an upstream error (those close it):
        // the client went away or the request failed on this side, which says nothing about the backend.
        if let Some(Attempt::Local(i)) = self.attempt.take()
            && let Some(pool) = self.pool()
        {
            pool.release(i);
        }
        if self.counted_local {
            self.node.local_in_flight.fetch_sub(1, Ordering::Relaxed);
            self.node.in_flight_gauge.dec();
        }
        self.node.active.fetch_sub(1, Ordering::Relaxed);
    }
}

impl RequestCtx {
    fn route(&self) -> Option<&crate::node::HostRoute> {
        self.table.as_ref()?.hosts.get(self.host)
    }

    fn pool(&self) -> Option<&Arc<crate::pool::Pool>> {
        self.route()?.pool.as_ref()
    }
}

async fn answer(
    session: &mut Session,
    status: u16,
    region: &str,
    reason: &str,
    body: &'static str,
    close: bool,
) -> Result<bool> {
    let mut resp = ResponseHeader::build(status, Some(5))?;
    resp.insert_header("content-type", "text/plain; charset=utf-8")?;
    resp.insert_header("content-length", body.len().to_string())?;
    resp.insert_header(REGION_HEADER, region)?;
    resp.insert_header(REASON_HEADER, reason)?;
    if close {
        resp.insert_header("connection", "close")?;
        session.set_keepalive(None);
    }
    session.write_response_header(Box::new(resp), false).await?;
    session
        .write_response_body(Some(Bytes::from_static(body.as_bytes())), true)
        .await?;
    Ok(true)
}

fn head_size(req: &RequestHeader) -> usize {
    let target = req.uri.path_and_query().map_or(1, |p| p.as_str().len())
        + req.uri.authority().map_or(0, |a| a.as_str().len());
    let line = req.method.as_str().len() + target + 12;
    req.headers
        .iter()
        .fold(line, |n, (k, v)| n + k.as_str().len() + v.len() + 4)
}

impl RegionService {
    fn refuse_metric(&self, reason: &str) {
        self.node
            .metrics
            .refused
            .with_label_values(&[self.node.region(), reason])
            .inc();
    }

    /// Where a plain-HTTP request goes instead, when this proxy also serves HTTPS and `tls.plain-http` is
    /// `redirect`: `https://HOST[:PORT]/TARGET` for a `308` (counted as refused, `https-redirect`). Only
    /// hostnames the proxy serves are redirected; the port is left out when it is 443.
    pub(crate) fn redirect(&self, req: &impl RequestHead) -> Option<String> {
        let Scheme::Http {
            https_port: Some(port),
        } = self.scheme
        else {
            return None;
        };
        let table = self.node.table()?;
        if !table.redirect_plain {
            return None;
        }
        let mut buf = [0u8; 256];
        let host = request_host(req.authority(), &mut buf)?;
        table.host(host)?;
        let target = std::str::from_utf8(req.target()).ok()?;
        let target = if target.starts_with('/') { target } else { "/" };
        self.refuse_metric("https-redirect");
        Some(if port == 443 {
            format!("https://{host}{target}")
        } else {
            format!("https://{host}:{port}{target}")
        })
    }

    /// The rustls client configuration for the current attempt's upstream, when it is reached over TLS
    /// (another region's proxy, with `[tls.hops]`).
    pub(crate) fn upstream_tls(&self, ctx: &RequestCtx) -> Option<Arc<meridian_tls::rustls::ClientConfig>> {
        match ctx.attempt {
            Some(Attempt::Remote(_)) => ctx.table.as_ref()?.hop_client.clone(),
            Some(Attempt::Local(_)) => ctx.pool()?.tls_client.clone(),
            None => None,
        }
    }

    /// The `Strict-Transport-Security` value for answers on this listener (HTTPS with HSTS configured).
    pub(crate) fn hsts(&self, ctx: &RequestCtx) -> Option<Arc<str>> {
        if self.scheme != Scheme::Https {
            return None;
        }
        ctx.table.as_ref()?.hsts.clone()
    }

    /// Decides whether a request from `peer` is forwarded: fills `ctx` (client, route, plan) and returns
    /// `Ok`, or the answer the proxy gives itself. Counts refusals and spills.
    pub(crate) fn admit(
        &self,
        req: &impl RequestHead,
        peer: IpAddr,
        ctx: &mut RequestCtx,
    ) -> Result<(), Refusal> {
        let region = self.node.region();
        let Some(table) = self.node.table() else {
            self.refuse_metric("not-ready");
            return Err(refusal(
                503,
                "not-ready",
                "proxy has no configuration yet\n",
                false,
            ));
        };
        let settings = &table.settings;
        ctx.peer = peer.to_canonical();
        ctx.peer_trusted = self.scheme == Scheme::Hop || is_trusted(&settings.trusted_proxies, ctx.peer);
        ctx.client = client_ip_vouched(
            ctx.peer,
            req.header("x-forwarded-for"),
            &settings.trusted_proxies,
            ctx.peer_trusted,
        );
        if settings.rate_limit_per_client > 0
            && self.node.limiter.observe(&ctx.client, 1)
                > isize::try_from(settings.rate_limit_per_client).unwrap_or(isize::MAX)
        {
            self.refuse_metric("rate-limited");
            return Err(refusal(429, "rate-limited", "too many requests\n", false));
        }
        if req.head_size() > settings.max_header_bytes as usize {
            self.refuse_metric("header-too-large");
            return Err(refusal(
                431,
                "header-too-large",
                "request header fields too large\n",
                true,
            ));
        }
        let declared = req
            .header("content-length")
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(|v| v.trim().parse::<u64>());
        match declared {
            Some(Ok(n)) if n > settings.max_body_bytes => {
                self.refuse_metric("body-too-large");
                return Err(refusal(413, "body-too-large", "request body too large\n", true));
            }
            Some(Err(_)) => {
                self.refuse_metric("bad-request");
                return Err(refusal(400, "bad-request", "bad content-length\n", true));
            }
            _ => {}
        }
        let mut buf = [0u8; 256];
        let Some(host) = request_host(req.authority(), &mut buf) else {
            self.refuse_metric("no-host");
            return Err(refusal(400, "no-host", "missing or invalid Host\n", false));
        };
        let Some(h) = table.host(host) else {
            self.refuse_metric("unknown-host");
            return Err(refusal(404, "unknown-host", "no service for this host\n", false));
        };
        ctx.host = h;
        if !table.hosts[h].proxied {
            self.refuse_metric("dns-only");
            return Err(refusal(
                404,
                "dns-only",
                "this service has no backends behind the proxy\n",
                false,
            ));
        }
        if table.local.is_none() {
            self.refuse_metric("unknown-region");
            return Err(refusal(
                503,
                "unknown-region",
                "this proxy's region is not in the configuration\n",
                false,
            ));
        }
        ctx.hopped = req.header(HOP_HEADER).is_some();
        let now = now_ms();
        let has_backend = table.hosts[h]
            .pool
            .as_ref()
            .is_some_and(|p| p.has_usable(ctx.tried, now));
        match self.make_plan(ctx, &table, has_backend) {
            Some(Plan::Serve { targets, spill }) => {
                ctx.targets = targets;
                ctx.spill = spill;
                if let Some(reason) = spill {
                    self.node
                        .metrics
                        .spills
                        .with_label_values(&[region, reason.label()])
                        .inc();
                }
            }
            Some(Plan::Refuse(why)) => {
                self.refuse_metric(why.label());
                ctx.table = Some(table);
                let body = match why {
                    crate::route::Refuse::Residency => {
                        "no region allowed for this client by data residency can serve the request\n"
                    }
                    crate::route::Refuse::HopLimit => {
                        "the request already crossed a region and this region cannot serve it\n"
                    }
                    crate::route::Refuse::NoRegion => "no region can serve the request\n",
                };
                return Err(refusal(503, why.label(), body, false));
            }
            None => {
                self.refuse_metric("unknown-region");
                return Err(refusal(503, "unknown-region", "no route\n", false));
            }
        }
        ctx.table = Some(table);
        Ok(())
    }

    /// The next upstream to try for an admitted request, opening an attempt in `ctx` (a local backend or
    /// another region's proxy); when none is left, the status to answer (502 after failed attempts, else
    /// 503). Re-plans once when the local pool runs out, leaving the region if steering allows.
    pub(crate) fn next_peer(
        &self,
        req: &impl RequestHead,
        ctx: &mut RequestCtx,
    ) -> Result<Arc<HttpPeer>, u16> {
        let Some(table) = ctx.table.clone() else {
            return Err(503);
        };
        let now = now_ms();
        loop {
            let Some(&target) = ctx.targets.get(ctx.next) else {
                // The local pool ran out while it was the plan: leave the region if steering allows.
                if !ctx.replanned && !ctx.hopped && ctx.served_by.is_none() {
                    ctx.replanned = true;
                    if let Some(Plan::Serve { targets, spill }) = self.make_plan(ctx, &table, false) {
                        let fresh: Vec<Target> = targets
                            .into_iter()
                            .filter(|t| matches!(t, Target::Region(_)) && !ctx.targets.contains(t))
                            .collect();
                        if !fresh.is_empty() {
                            ctx.targets.clear();
                            ctx.next = 0;
                            ctx.targets
                                .extend(fresh.into_iter().take(crate::route::MAX_TARGETS));
                            ctx.spill = spill;
                            self.node
                                .metrics
                                .spills
                                .with_label_values(&[
                                    self.node.region(),
                                    spill.unwrap_or(Leave::NoHealthyBackend).label(),
                                ])
                                .inc();
                            continue;
                        }
                    }
                }
                let code = if ctx.local_attempts > 0 || ctx.replanned {
                    502
                } else {
                    503
                };
                return Err(code);
            };
            match target {
                Target::Local => {
                    let Some(pool) = ctx.pool().cloned() else {
                        ctx.next += 1;
                        continue;
                    };
                    if ctx.local_attempts >= MAX_LOCAL_ATTEMPTS {
                        ctx.next += 1;
                        continue;
                    }
                    let mut buf = [0u8; 16];
                    let key = self.affinity_key(req, ctx, &mut buf);
                    let Some(i) = pool.select(key, ctx.tried, now) else {
                        ctx.next += 1;
                        continue;
                    };
                    ctx.tried.insert(i);
                    ctx.local_attempts += 1;
                    pool.begin(i);
                    ctx.attempt = Some(Attempt::Local(i));
                    if !ctx.counted_local {
                        ctx.counted_local = true;
                        self.node.local_in_flight.fetch_add(1, Ordering::Relaxed);
                        self.node.in_flight_gauge.inc();
                    }
                    return Ok(pool.slots()[i].peer());
                }
                Target::Region(r) => {
                    ctx.next += 1;
                    let Some(Some(peer)) = table.peers.get(r.get()) else {
                        continue;
                    };
                    ctx.attempt = Some(Attempt::Remote(r));
                    return Ok(Arc::clone(peer));
                }
            }
        }
    }

    /// Builds the plan for a request whose local pool may be exhausted.
    fn make_plan(&self, ctx: &RequestCtx, table: &RouteTable, pool_has_backend: bool) -> Option<Plan> {
        let route = table.hosts.get(ctx.host)?;
        let local = table.local?;
        let now = now_ms();
        let input = RouteInput {
            topology: &table.snapshot.topology,
            states: &table.snapshot.states,
            states_local_drained: &table.states_local_drained,
            service: route.service,
            local,
            reachable: table.reachable,
            pool_has_backend,
            in_flight: table
                .others_in_flight
                .saturating_add(self.node.local_in_flight.load(Ordering::Relaxed)),
            hopped: ctx.hopped,
            now_ms: now,
        };
        if route.local_allowed_for_all && fast_path(&input) {
            return Some(Plan::local());
        }
        let location = self.node.locate(ctx.client);
        Some(plan(&input, &location, client_hash(ctx.client)))
    }

    fn affinity_key<'s>(
        &self,
        req: &'s impl RequestHead,
        ctx: &RequestCtx,
        buf: &'s mut [u8; 16],
    ) -> &'s [u8] {
        let from_request = match ctx.route().and_then(|r| r.affinity.as_ref()) {
            Some(Affinity::Header(h)) => req.header(h.as_str()),
            Some(Affinity::Cookie(name)) => req
                .values("cookie")
                .flat_map(|v| v.split(|b| *b == b';'))
                .find_map(|kv| {
                    let kv = kv.trim_ascii();
                    let (k, v) = kv.split_at(kv.iter().position(|b| *b == b'=')?);
                    (k == name.as_bytes()).then(|| &v[1..])
                }),
            None => return &[],
        };
        match from_request {
            Some(k) if !k.is_empty() => k,
            _ => {
                let n = match ctx.client {
                    IpAddr::V4(a) => {
                        buf[..4].copy_from_slice(&a.octets());
                        4
                    }
                    IpAddr::V6(a) => {
                        buf.copy_from_slice(&a.octets());
                        16
                    }
                };
                &buf[..n]
            }
        }
    }
}

#[async_trait]
impl ProxyHttp for RegionService {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        self.node.active.fetch_add(1, Ordering::Relaxed);
        RequestCtx {
            node: self.node.clone(),
            start: Instant::now(),
            table: None,
            host: usize::MAX,
            peer: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            peer_trusted: false,
            client: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            hopped: false,
            targets: Targets::new(),
            next: 0,
            replanned: false,
            spill: None,
            tried: Tried::default(),
            local_attempts: 0,
            attempt: None,
            served_by: None,
            counted_local: false,
            responded: false,
            body_seen: 0,
            upgrade: false,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        if let Some(table) = self.node.table() {
            let client_timeout =
                std::time::Duration::from_millis(u64::from(table.settings.client_timeout_ms));
            session.set_read_timeout(Some(client_timeout));
            session.set_keepalive(Some(client_timeout.as_secs().max(1)));
        }
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
        if let Some(location) = self.redirect(session.req_header()) {
            let mut resp = ResponseHeader::build(308, Some(4))?;
            resp.insert_header("location", location)?;
            resp.insert_header("content-length", "0")?;
            resp.insert_header(REGION_HEADER, self.node.region())?;
            resp.insert_header(REASON_HEADER, "https-redirect")?;
            session.write_response_header(Box::new(resp), true).await?;
            return Ok(true);
        }
        match self.admit(session.req_header(), peer, ctx) {
            Ok(()) => {
                if session.is_upgrade_req()
                    && let Some(t) = &ctx.table
                {
                    // Residency, drains and spills were decided above, at the upgrade, as for any
                    // request; what follows is a long-lived tunnel with its own limits.
                    ctx.upgrade = true;
                    let idle =
                        std::time::Duration::from_millis(u64::from(t.settings.websocket_idle_timeout_ms));
                    session.set_read_timeout(Some(idle));
                    session.set_write_timeout(Some(idle));
                }
                Ok(false)
            }
            Err(r) => answer(session, r.status, self.node.region(), r.reason, r.body, r.close).await,
        }
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if ctx.upgrade {
            return self.tunnel_lifetime(ctx);
        }
        if let Some(b) = body {
            ctx.body_seen += b.len() as u64;
            if let Some(t) = &ctx.table
                && ctx.body_seen > t.settings.max_body_bytes
            {
                self.refuse_metric("body-too-large");
                return Error::e_explain(ErrorType::HTTPStatus(413), "request body too large");
            }
        }
        Ok(())
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
        match self.next_peer(session.req_header(), ctx) {
            Ok(peer) => {
                let mut peer = Box::new(HttpPeer::clone(&peer));
                if ctx.upgrade
                    && let Some(t) = &ctx.table
                {
                    let idle =
                        std::time::Duration::from_millis(u64::from(t.settings.websocket_idle_timeout_ms));
                    peer.options.read_timeout = Some(idle);
                    peer.options.write_timeout = Some(idle);
                }
                Ok(peer)
            }
            Err(code) => Error::e_explain(ErrorType::HTTPStatus(code), "no upstream left to try"),
        }
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let f = self.forward_headers(session.req_header(), ctx);
        let mut value = Vec::with_capacity(64);
        f.x_forwarded_for(&mut value);
        upstream.insert_header("x-forwarded-for", value)?;
        let mut value = Vec::with_capacity(96);
        f.forwarded(&mut value);
        upstream.insert_header("forwarded", value)?;
        upstream.insert_header("x-forwarded-proto", f.x_forwarded_proto)?;
        if let Some(origin) = f.hop {
            upstream.insert_header(HOP_HEADER, origin)?;
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(hsts) = self.hsts(ctx) {
            resp.insert_header("strict-transport-security", hsts.as_ref())?;
        }
        let (region, reason) = self.response_marks(ctx, resp.headers.contains_key(REGION_HEADER));
        if let Some(region) = region {
            resp.insert_header(REGION_HEADER, region)?;
        }
        if let Some(reason) = reason {
            resp.insert_header(REASON_HEADER, reason)?;
        }
        Ok(())
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        self.attempt_failed(ctx, "connect");
        // Nothing was sent: always safe to try the next candidate.
        e.set_retry(true);
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        _client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("peer: {peer}"));
        if ctx.responded {
            // Part of the response went out: nothing can be retried.
            e.set_retry(false);
            return e;
        }
        if *e.esource() != ErrorSource::Upstream {
            // The client went away or something failed on this side: not the backend's fault, and
            // nothing to retry elsewhere. The attempt stays open; dropping the context releases it.
            e.set_retry(false);
            return e;
        }
        self.attempt_failed(ctx, "proxy");
        let idempotent = session.req_header().idempotent();
        e.set_retry(idempotent && !session.as_ref().retry_buffer_truncated());
        e
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        _body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<std::time::Duration>> {
        if ctx.upgrade {
            self.tunnel_lifetime(ctx)?;
        }
        Ok(None)
    }

    /// pingora's mapping, except that a client too slow to send its request (head or body) gets `408`
    /// and an upstream that timed out `504`, so no request ends in silence or in a misleading `502`.
    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, _ctx: &mut RequestCtx) -> FailToProxy {
        let code = match (e.esource(), e.etype()) {
            (_, ErrorType::HTTPStatus(code)) => *code,
            (ErrorSource::Downstream, ErrorType::ReadTimedout) => 408,
            (
                ErrorSource::Downstream,
                ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed,
            ) => 0,
            (ErrorSource::Downstream, _) => 400,
            (
                ErrorSource::Upstream,
                ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout,
            ) => 504,
            (ErrorSource::Upstream, _) => 502,
            _ => 500,
        };
        tracing::debug!("request failed ({code}): {e}");
        if code > 0 {
            let _ = session.respond_error(code).await;
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        self.finish(ctx, status);
    }
}

impl RegionService {
    /// The forwarding headers for an admitted request on its current attempt.
    pub(crate) fn forward_headers<'a>(
        &'a self,
        req: &'a impl RequestHead,
        ctx: &'a RequestCtx,
    ) -> ForwardHeaders<'a> {
        let proto = self.scheme.proto();
        let x_forwarded_proto = if ctx.peer_trusted {
            req.header("x-forwarded-proto").unwrap_or(proto)
        } else {
            proto
        };
        // To another region: the hop header names this (origin) region. To a local backend, a received
        // one passes through and tells the application the request crossed regions.
        let hop = matches!(ctx.attempt, Some(Attempt::Remote(_))).then(|| self.node.region());
        ForwardHeaders {
            peer: ctx.peer,
            peer_trusted: ctx.peer_trusted,
            received_xff: req.header("x-forwarded-for"),
            received_forwarded: req.header("forwarded"),
            host: ctx.route().map(|r| r.host.as_str()).unwrap_or_default(),
            proto,
            x_forwarded_proto,
            hop,
        }
    }

    /// A response arrived on the current attempt: records it in `ctx` and returns the region header to
    /// set (none when another region's proxy already named itself) and the reason header (why the
    /// request left its region).
    pub(crate) fn response_marks<'a>(
        &'a self,
        ctx: &'a mut RequestCtx,
        upstream_named_region: bool,
    ) -> (Option<&'a str>, Option<&'static str>) {
        ctx.responded = true;
        ctx.served_by = ctx.attempt;
        match ctx.attempt {
            Some(Attempt::Local(_)) | None => (Some(self.node.region()), None),
            Some(Attempt::Remote(r)) => {
                let region = match &ctx.table {
                    Some(t) if !upstream_named_region => Some(t.snapshot.topology.region_id(r)),
                    _ => None,
                };
                (region, ctx.spill.map(|l| l.label()))
            }
        }
    }

    /// The request is over, answered with `status` (0: no response went out): closes the attempt and
    /// counts it.
    pub(crate) fn finish(&self, ctx: &mut RequestCtx, status: u16) {
        let now = now_ms();
        // Only a response clears the backend's failure count. An attempt with neither a response nor an
        // upstream error (that closes it in `attempt_failed`) stays open: dropping the context releases it.
        if ctx.responded
            && let Some(Attempt::Local(i)) = ctx.attempt.take()
            && let Some(pool) = ctx.pool()
        {
            pool.end(i, true, now);
        }
        let elapsed = ctx.start.elapsed();
        self.node.duration.observe(elapsed.as_secs_f64());
        self.node.window.record(elapsed, status >= 500 || status == 0);
        let Some(route) = ctx.route() else { return };
        match ctx.served_by {
            Some(Attempt::Local(_)) if status == 200 => route.ok_local.inc(),
            served => {
                let served_by = match (served, &ctx.table) {
                    (Some(Attempt::Local(_)), _) => self.node.region().to_owned(),
                    (Some(Attempt::Remote(r)), Some(t)) => t.snapshot.topology.region_id(r).to_owned(),
                    _ => "none".to_owned(),
                };
                self.node
                    .metrics
                    .requests
                    .with_label_values(&[
                        route.name.as_str(),
                        self.node.region(),
                        &status.to_string(),
                        &served_by,
                    ])
                    .inc();
            }
        }
    }

    pub(crate) fn attempt_failed(&self, ctx: &mut RequestCtx, kind: &str) {
        let now = now_ms();
        match ctx.attempt.take() {
            Some(Attempt::Local(i)) => {
                let ejected = ctx.pool().cloned().is_some_and(|p| p.end(i, false, now));
                if ejected {
                    self.ejected(ctx);
                }
                self.node
                    .metrics
                    .upstream_errors
                    .with_label_values(&[self.node.region(), "local", kind])
                    .inc();
            }
            Some(Attempt::Remote(r)) => {
                let id = ctx
                    .table
                    .as_ref()
                    .map_or_else(String::new, |t| t.snapshot.topology.region_id(r).to_owned());
                self.node
                    .metrics
                    .upstream_errors
                    .with_label_values(&[self.node.region(), &id, kind])
                    .inc();
            }
            None => {}
        }
    }

    /// An upgraded connection past `proxy.websocket-max-lifetime-ms` ends at its next octet.
    fn tunnel_lifetime(&self, ctx: &RequestCtx) -> Result<()> {
        let limit = ctx
            .table
            .as_ref()
            .map_or(0, |t| t.settings.websocket_max_lifetime_ms);
        if limit > 0 && ctx.start.elapsed() > std::time::Duration::from_millis(u64::from(limit)) {
            self.refuse_metric("websocket-lifetime");
            return Error::e_explain(ErrorType::ConnectionClosed, "websocket lifetime over");
        }
        Ok(())
    }

    fn ejected(&self, ctx: &RequestCtx) {
        if let Some(route) = ctx.route() {
            self.node
                .metrics
                .ejections
                .with_label_values(&[self.node.region(), &route.name])
                .inc();
        }
    }
}
