//! Hardening against clients that attack the server rather than query it (and the counters of zone
//! transfers refused and served, `xfr`'s): limits on stream connections
//! (TCP, DNS-over-TLS, DNS-over-HTTPS) per client network and in total, idle connections closed early
//! under pressure ([`Governor`]); malformed requests counted and logged as bounded, escaped, rate-limited
//! summaries ([`MalformedLog`]); and the metrics of both ([`GuardMetrics`]).
//!
//! Why per network and not per address: one host rarely holds one address (a /24 or an IPv6 /56 is what
//! one attacker controls), while real resolvers keep a few connections each. Why a shorter idle time
//! under pressure rather than evicting: a connection waiting for its next query is cheap to close and
//! its client reconnects when it has a query; one in the middle of a query is never cut.
//!
//! Must not: touch the UDP hot path but for a malformed request (one relaxed atomic add and a `try_lock`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Gauge, LabelPair, Metric, MetricFamily, MetricType};
use tokio::sync::watch;

use crate::metrics::label;

/// Limits on stream connections (TCP, DoT, DoH together: they share the process's file descriptors).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once, over all stream transports.
    pub max_connections: usize,
    /// Connections open at once from one client network (see the prefixes).
    pub per_network: usize,
    /// The IPv4 client network: addresses sharing this many leading bits count together.
    pub ipv4_prefix: u8,
    /// The IPv6 client network.
    pub ipv6_prefix: u8,
    /// How long a connection may wait for its next query.
    pub idle_timeout: Duration,
    /// How long it may wait while the server is under pressure.
    pub busy_idle_timeout: Duration,
    /// Under pressure from this many open connections on.
    pub busy_at: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            per_network: 64,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
            idle_timeout: Duration::from_secs(10),
            busy_idle_timeout: Duration::from_secs(1),
            busy_at: 512,
        }
    }
}

/// Why a connection was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Its client network holds its share already.
    Network,
    /// The server holds its cap of connections.
    Full,
}

/// Admits stream connections within [`ConnectionLimits`], and tells open ones whether the server is
/// under pressure. Shared by every stream listener of a server.
pub struct Governor {
    limits: ConnectionLimits,
    open: Mutex<Open>,
    /// `true` while at least `busy_at` connections are open: idle connections wait less.
    busy: watch::Sender<bool>,
    metrics: Arc<GuardMetrics>,
}

#[derive(Default)]
struct Open {
    total: usize,
    by_network: HashMap<(bool, u128), usize>,
}

/// An admitted connection: its slot is given back when this is dropped.
pub struct Permit {
    governor: Arc<Governor>,
    network: (bool, u128),
}

impl Governor {
    /// A governor enforcing `limits`, counting into `metrics`.
    pub fn new(limits: ConnectionLimits, metrics: Arc<GuardMetrics>) -> Arc<Self> {
        Arc::new(Self {
            limits,
            open: Mutex::new(Open::default()),
            busy: watch::Sender::new(false),
            metrics,
        })
    }

    /// The limits enforced.
    pub fn limits(&self) -> &ConnectionLimits {
        &self.limits
    }

    fn network(&self, ip: IpAddr) -> (bool, u128) {
        match ip {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4);
                let p = u32::from(self.limits.ipv4_prefix.min(32));
                let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
                (false, u128::from(bits & mask))
            }
            IpAddr::V6(v6) => {
                // An IPv4-mapped address is its IPv4 address (a dual-stack socket sees them).
                if let Some(v4) = v6.to_ipv4_mapped() {
                    return self.network(IpAddr::V4(v4));
                }
                let bits = u128::from(v6);
                let p = u32::from(self.limits.ipv6_prefix.min(128));
                let mask = if p == 0 { 0 } else { u128::MAX << (128 - p) };
                (true, bits & mask)
            }
        }
    }

    /// Admits a connection from `ip`, or says why not (and counts the refusal).
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Refusal> {
        let network = self.network(ip);
        let Ok(mut open) = self.open.lock() else {
            return Err(Refusal::Full);
        };
        if open.total >= self.limits.max_connections {
            drop(open);
            self.metrics.refused_full.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::Full);
        }
        let n = open.by_network.entry(network).or_insert(0);
        if *n >= self.limits.per_network {
            drop(open);
            self.metrics.refused_network.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::Network);
        }
        *n += 1;
        open.total += 1;
        let total = open.total;
        drop(open);
        self.metrics.open.store(total as u64, Ordering::Relaxed);
        if total >= self.limits.busy_at {
            self.busy.send_if_modified(|b| !std::mem::replace(b, true));
        }
        Ok(Permit {
            governor: self.clone(),
            network,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.lock().map_or(0, |o| o.total)
    }

    /// Follows whether the server is under pressure.
    pub fn busy(&self) -> watch::Receiver<bool> {
        self.busy.subscribe()
    }

    /// How long a connection may wait for its next query now.
    pub fn idle_timeout(&self, busy: bool) -> Duration {
        if busy {
            self.limits.busy_idle_timeout
        } else {
            self.limits.idle_timeout
        }
    }

    /// Counts a connection closed because it idled under pressure.
    pub fn closed_idle_under_pressure(&self) {
        self.metrics.closed_busy.fetch_add(1, Ordering::Relaxed);
    }

    /// `next` (a connection's next query), or `None` once the connection has idled since `last` longer
    /// than [`idle_timeout`](Self::idle_timeout) allows — counted when that was under pressure. When the
    /// pressure comes or goes meanwhile, the wait goes on with the new idle time, from the same `last`.
    /// `busy` is the connection's [`busy`](Self::busy) receiver.
    pub async fn or_idle<F: Future>(
        &self,
        busy: &mut watch::Receiver<bool>,
        last: tokio::time::Instant,
        next: F,
    ) -> Option<F::Output> {
        tokio::pin!(next);
        loop {
            let pressure = *busy.borrow_and_update();
            let deadline = last + self.idle_timeout(pressure);
            tokio::select! {
                v = &mut next => return Some(v),
                _ = tokio::time::sleep_until(deadline) => {
                    if pressure {
                        self.closed_idle_under_pressure();
                    }
                    return None;
                }
                _ = busy.changed() => {}
            }
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let g = &self.governor;
        let Ok(mut open) = g.open.lock() else {
            return;
        };
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.by_network.get_mut(&self.network) {
            *n -= 1;
            if *n == 0 {
                open.by_network.remove(&self.network);
            }
        }
        let total = open.total;
        drop(open);
        g.metrics.open.store(total as u64, Ordering::Relaxed);
        if total < g.limits.busy_at {
            g.busy.send_if_modified(|b| std::mem::replace(b, false));
        }
    }
}

/// Log directives that keep attacker-supplied octets out of the log: hickory-proto logs a malformed
/// request's contents at WARN while parsing it (EDNS options, CAA flags: lines of kilobytes). Its
/// errors stay; [`MalformedLog`] says what was malformed instead. Added to every filter the binary builds.
pub const QUIET_LIBRARIES: [&str; 2] = ["hickory_proto=error", "hickory_server=error"];

/// How often at most a summary of malformed requests is logged.
pub const MALFORMED_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Octets of a malformed request shown in the summary (escaped: at most four characters each).
pub const MALFORMED_SAMPLE_OCTETS: usize = 32;

/// Counts malformed requests and logs at most one summary line per [`MALFORMED_LOG_INTERVAL`]: how
/// many since the last line, and the source and first [`MALFORMED_SAMPLE_OCTETS`] octets (escaped) of
/// the latest. An attacker chooses the octets, never the length or the rate of the log.
pub struct MalformedLog {
    metrics: Arc<GuardMetrics>,
    state: Mutex<LogState>,
}

struct LogState {
    last_line: Option<Instant>,
    since_line: u64,
}

impl MalformedLog {
    /// A log counting into `metrics`.
    pub fn new(metrics: Arc<GuardMetrics>) -> Self {
        Self {
            metrics,
            state: Mutex::new(LogState {
                last_line: None,
                since_line: 0,
            }),
        }
    }

    /// Notes a malformed request from `src` over `transport` ("udp", "tcp", "tls", "https").
    pub fn note(&self, transport: &'static str, src: IpAddr, request: &[u8]) {
        let counter = match transport {
            "udp" => &self.metrics.malformed_udp,
            _ => &self.metrics.malformed_stream,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        // Another worker is logging: this one is counted in the metric, which is the record.
        let Ok(mut state) = self.state.try_lock() else {
            return;
        };
        state.since_line += 1;
        let now = Instant::now();
        if state
            .last_line
            .is_some_and(|t| now.duration_since(t) < MALFORMED_LOG_INTERVAL)
        {
            return;
        }
        let count = std::mem::take(&mut state.since_line);
        state.last_line = Some(now);
        drop(state);
        tracing::warn!(
            count,
            transport,
            latest_source = %src,
            latest_length = request.len(),
            latest_start = %escape(&request[..request.len().min(MALFORMED_SAMPLE_OCTETS)]),
            "malformed DNS requests (FORMERR or not answered); at most one line per {} s",
            MALFORMED_LOG_INTERVAL.as_secs()
        );
    }
}

/// Printable ASCII as is (but `\`), everything else as `\xNN`: no control character, no newline, no
/// terminal escape reaches the log.
pub fn escape(octets: &[u8]) -> String {
    let mut out = String::with_capacity(octets.len() * 4);
    for &b in octets {
        if b.is_ascii_graphic() && b != b'\\' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Counters of the hardening: malformed requests, refused and closed stream connections, open ones.
#[derive(Default)]
pub struct GuardMetrics {
    malformed_udp: AtomicU64,
    malformed_stream: AtomicU64,
    refused_network: AtomicU64,
    refused_full: AtomicU64,
    closed_busy: AtomicU64,
    open: AtomicU64,
    /// Zone transfer requests refused, by reason ([`XFR_REFUSED_REASONS`]; see `xfr`).
    pub(crate) xfr_refused: [AtomicU64; 3],
    /// Zone transfers served.
    pub(crate) xfr_served: AtomicU64,
    /// NOTIFY messages sent, and acknowledged.
    pub(crate) notify_sent: [AtomicU64; 2],
}

/// Labels of [`GuardMetrics`]'s refused transfers, by `xfr::Refused` index.
const XFR_REFUSED_REASONS: [&str; 3] = ["unsigned", "bad_key", "not_allowed"];

const GUARD_FAMILIES: [(&str, &str, &[&str]); 6] = [
    (
        "meridian_dns_malformed_total",
        "Requests answered FORMERR or not at all because they were malformed, by transport",
        &["transport"],
    ),
    (
        "meridian_dns_stream_refused_total",
        "Stream (TCP, DoT, DoH) connections closed at once, by reason (network: its client network's share is held; full: the server's cap)",
        &["reason"],
    ),
    (
        "meridian_dns_stream_idle_closed_total",
        "Stream connections closed because they idled while the server was under pressure",
        &[],
    ),
    ("meridian_dns_stream_connections", "Stream connections open", &[]),
    (
        "meridian_dns_xfr_refused_total",
        "Zone transfer (AXFR/IXFR) requests refused, by reason",
        &["reason"],
    ),
    (
        "meridian_dns_xfr_total",
        "Zone transfers served (transfer), NOTIFY messages sent (notify_sent) and acknowledged (notify_acked)",
        &["kind"],
    ),
];

impl GuardMetrics {
    /// New, zero counters.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Malformed requests counted over UDP and over stream transports (tests, status).
    pub fn malformed(&self) -> (u64, u64) {
        (
            self.malformed_udp.load(Ordering::Relaxed),
            self.malformed_stream.load(Ordering::Relaxed),
        )
    }

    /// Connections refused for their network and for the cap (tests, status).
    pub fn refused(&self) -> (u64, u64) {
        (
            self.refused_network.load(Ordering::Relaxed),
            self.refused_full.load(Ordering::Relaxed),
        )
    }

    /// Stream connections closed because they idled under pressure (tests, status).
    pub fn closed_idle(&self) -> u64 {
        self.closed_busy.load(Ordering::Relaxed)
    }

    /// Zone transfer requests refused, all reasons (tests, status).
    pub fn xfr_refused(&self) -> u64 {
        self.xfr_refused.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Zone transfers served, NOTIFY sent and acknowledged (tests, status).
    pub fn xfr_served(&self) -> (u64, u64, u64) {
        (
            self.xfr_served.load(Ordering::Relaxed),
            self.notify_sent[0].load(Ordering::Relaxed),
            self.notify_sent[1].load(Ordering::Relaxed),
        )
    }

    /// A collector to register with a Prometheus registry.
    pub fn collector(self: &Arc<Self>) -> Box<dyn Collector> {
        let descs = crate::metrics::descs(&GUARD_FAMILIES);
        Box::new(GuardCollector {
            metrics: self.clone(),
            descs,
        })
    }
}

struct GuardCollector {
    metrics: Arc<GuardMetrics>,
    descs: Vec<Desc>,
}

fn counter(labels: Vec<LabelPair>, value: &AtomicU64) -> Metric {
    crate::metrics::counter(labels, value.load(Ordering::Relaxed))
}

fn family(index: usize, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let (name, help, _) = GUARD_FAMILIES[index];
    crate::metrics::family_named((name, help), kind, metrics)
}

impl Collector for GuardCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let m = &self.metrics;
        let mut open = Gauge::default();
        open.set_value(m.open.load(Ordering::Relaxed) as f64);
        vec![
            family(
                0,
                MetricType::COUNTER,
                vec![
                    counter(vec![label("transport", "udp")], &m.malformed_udp),
                    counter(vec![label("transport", "stream")], &m.malformed_stream),
                ],
            ),
            family(
                1,
                MetricType::COUNTER,
                vec![
                    counter(vec![label("reason", "network")], &m.refused_network),
                    counter(vec![label("reason", "full")], &m.refused_full),
                ],
            ),
            family(2, MetricType::COUNTER, vec![counter(vec![], &m.closed_busy)]),
            family(3, MetricType::GAUGE, vec![Metric::from_gauge(open)]),
            family(
                4,
                MetricType::COUNTER,
                XFR_REFUSED_REASONS
                    .iter()
                    .zip(&m.xfr_refused)
                    .map(|(r, c)| counter(vec![label("reason", r)], c))
                    .collect(),
            ),
            family(
                5,
                MetricType::COUNTER,
                vec![
                    counter(vec![label("kind", "transfer")], &m.xfr_served),
                    counter(vec![label("kind", "notify_sent")], &m.notify_sent[0]),
                    counter(vec![label("kind", "notify_acked")], &m.notify_sent[1]),
                ],
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn governor(per_network: usize, max: usize) -> Arc<Governor> {
        Governor::new(
            ConnectionLimits {
                per_network,
                max_connections: max,
                busy_at: 3,
                ..ConnectionLimits::default()
            },
            GuardMetrics::new(),
        )
    }

    #[test]
    fn one_network_gets_its_share_and_others_still_get_in() {
        let g = governor(2, 10);
        let a: Vec<_> = ["10.0.0.1", "10.0.0.200"]
            .iter()
            .map(|ip| g.admit(ip.parse().unwrap()).unwrap())
            .collect();
        // The same /24, another address: refused.
        assert_eq!(g.admit("10.0.0.7".parse().unwrap()).err(), Some(Refusal::Network));
        // Another /24: admitted.
        let b = g.admit("10.0.1.7".parse().unwrap()).unwrap();
        // IPv6: one /56.
        let c = g.admit("2001:db8:0:1::1".parse().unwrap()).unwrap();
        let d = g.admit("2001:db8:0:ff::2".parse().unwrap()).unwrap();
        assert_eq!(
            g.admit("2001:db8:0:10::3".parse().unwrap()).err(),
            Some(Refusal::Network)
        );
        assert_eq!(g.metrics.refused(), (2, 0));
        assert_eq!(g.open(), 5);
        drop(a);
        assert!(g.admit("10.0.0.9".parse().unwrap()).is_ok());
        drop((b, c, d));
    }

    #[test]
    fn the_cap_holds_and_pressure_is_signalled_and_lifted() {
        let g = governor(100, 4);
        let busy = g.busy();
        let mut held: Vec<_> = (0..2)
            .map(|i| g.admit(format!("10.{i}.0.1").parse().unwrap()).unwrap())
            .collect();
        assert!(!*busy.borrow());
        held.push(g.admit("10.9.0.1".parse().unwrap()).unwrap());
        assert!(*busy.borrow(), "busy from busy_at (3) open connections");
        assert_eq!(g.idle_timeout(true), Duration::from_secs(1));
        held.push(g.admit("10.8.0.1".parse().unwrap()).unwrap());
        assert_eq!(g.admit("10.7.0.1".parse().unwrap()).err(), Some(Refusal::Full));
        held.truncate(1);
        assert!(!*busy.borrow());
        assert_eq!(g.open(), 1);
    }

    #[test]
    fn escaping_leaves_no_control_characters() {
        let s = escape(b"ab\\\n\x1b[31m\xff ");
        assert_eq!(s, "ab\\x5c\\x0a\\x1b[31m\\xff\\x20");
        assert!(s.chars().all(|c| c.is_ascii_graphic()));
    }
}
