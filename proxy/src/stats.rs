//! What a proxy measures about itself: Prometheus metrics, and the one-second window its load reports
//! summarise (request rate, error rate, latency quantiles).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use meridian_store::schema::LatencyQuantiles;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};

/// Latency buckets of the window: bucket `b` holds latencies below `2^(b/4)` microseconds.
const BUCKETS: usize = 128;

/// Lock-free counters of the current reporting window.
#[derive(Debug)]
pub struct Window {
    requests: AtomicU64,
    errors: AtomicU64,
    latency: [AtomicU64; BUCKETS],
}

/// A window's summary.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WindowSummary {
    /// Requests finished in the window.
    pub requests: u64,
    /// Of which failed (5xx, or no response).
    pub errors: u64,
    /// Latency quantiles (absent without requests).
    pub latency: Option<LatencyQuantiles>,
}

impl Default for Window {
    fn default() -> Self {
        Self {
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

fn bucket(d: Duration) -> usize {
    let us = d.as_micros().max(1) as f64;
    ((us.log2() * 4.0).ceil() as usize).min(BUCKETS - 1)
}

fn bucket_ms(b: usize) -> f64 {
    2f64.powf(b as f64 / 4.0) / 1000.0
}

impl Window {
    /// Records one finished request.
    pub fn record(&self, latency: Duration, error: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if error {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.latency[bucket(latency)].fetch_add(1, Ordering::Relaxed);
    }

    /// Summarises the window and starts a new one.
    pub fn take(&self) -> WindowSummary {
        let requests = self.requests.swap(0, Ordering::Relaxed);
        let errors = self.errors.swap(0, Ordering::Relaxed);
        let counts: Vec<u64> = self
            .latency
            .iter()
            .map(|c| c.swap(0, Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        let latency = (total > 0).then(|| {
            let q = |p: f64| {
                let target = ((total as f64) * p).ceil().max(1.0) as u64;
                let mut seen = 0;
                for (b, c) in counts.iter().enumerate() {
                    seen += c;
                    if seen >= target {
                        return bucket_ms(b);
                    }
                }
                bucket_ms(BUCKETS - 1)
            };
            LatencyQuantiles {
                p50: q(0.5),
                p90: q(0.9),
                p99: q(0.99),
            }
        });
        WindowSummary {
            requests,
            errors,
            latency,
        }
    }
}

/// The proxy's Prometheus metrics (all labelled by the proxy's region, so several regions' proxies can
/// share one registry).
#[derive(Clone, Debug)]
pub struct ProxyMetrics {
    /// `meridian_proxy_requests_total{service,region,status,served_by}`.
    pub requests: IntCounterVec,
    /// `meridian_proxy_spills_total{region,reason}`.
    pub spills: IntCounterVec,
    /// `meridian_proxy_refused_total{region,reason}`.
    pub refused: IntCounterVec,
    /// `meridian_proxy_upstream_errors_total{region,upstream,kind}`.
    pub upstream_errors: IntCounterVec,
    /// `meridian_proxy_ejections_total{region,service}`.
    pub ejections: IntCounterVec,
    /// `meridian_proxy_handed_over_total{region}`.
    pub handed_over: IntCounterVec,
    /// `meridian_proxy_tls_handshakes_total{region,listener,result}`.
    pub tls_handshakes: IntCounterVec,
    /// `meridian_proxy_latency_samples_total{region}`.
    pub latency_samples: IntCounterVec,
    /// `meridian_proxy_in_flight{region}`.
    pub in_flight: IntGaugeVec,
    /// `meridian_proxy_healthy_backends{region,service}`.
    pub healthy_backends: IntGaugeVec,
    /// `meridian_proxy_request_duration_seconds{region}`.
    pub duration: HistogramVec,
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    // Names, help texts and labels are constants: construction cannot fail.
    IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| unreachable!("{name}: {e}"))
}

impl ProxyMetrics {
    /// Creates the metrics (not registered).
    pub fn new() -> Self {
        Self {
            requests: counter(
                "meridian_proxy_requests_total",
                "Requests answered, by service, this proxy's region, status and the region that served",
                &["service", "region", "status", "served_by"],
            ),
            spills: counter(
                "meridian_proxy_spills_total",
                "Requests sent to another region, by why the local region was passed over",
                &["region", "reason"],
            ),
            refused: counter(
                "meridian_proxy_refused_total",
                "Requests the proxy answered itself with an error, by reason",
                &["region", "reason"],
            ),
            upstream_errors: counter(
                "meridian_proxy_upstream_errors_total",
                "Failed attempts to reach an upstream (local backend or another region's proxy)",
                &["region", "upstream", "kind"],
            ),
            ejections: counter(
                "meridian_proxy_ejections_total",
                "Backends ejected after consecutive failed requests",
                &["region", "service"],
            ),
            handed_over: counter(
                "meridian_proxy_handed_over_total",
                "Requests the HTTP/1.1 fast path handed to pingora's proxy (other methods, bodies, HTTP/1.0, \
                 unusual or malformed heads)",
                &["region"],
            ),
            tls_handshakes: counter(
                "meridian_proxy_tls_handshakes_total",
                "TLS handshakes on the proxy's listeners, by listener (https, hop) and result (ok; failed: \
                 garbage, no shared protocol or a rejected client certificate; timeout: not finished within \
                 tls.handshake-timeout-ms; closed: the client left before sending anything)",
                &["region", "listener", "result"],
            ),
            latency_samples: counter(
                "meridian_proxy_latency_samples_total",
                "Client connections whose round-trip time was recorded for latency steering (docs/latency.md): \
                 while some service steers by latency, one per connection from a client with a latency area",
                &["region"],
            ),
            in_flight: IntGaugeVec::new(
                Opts::new(
                    "meridian_proxy_in_flight",
                    "Requests in flight to this region's backends from this proxy",
                ),
                &["region"],
            )
            .unwrap_or_else(|e| unreachable!("{e}")),
            healthy_backends: IntGaugeVec::new(
                Opts::new(
                    "meridian_proxy_healthy_backends",
                    "Backends that can take requests (healthy, enabled, not ejected)",
                ),
                &["region", "service"],
            )
            .unwrap_or_else(|e| unreachable!("{e}")),
            duration: HistogramVec::new(
                HistogramOpts::new(
                    "meridian_proxy_request_duration_seconds",
                    "Time from the request head to the end of the response",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
                &["region"],
            )
            .unwrap_or_else(|e| unreachable!("{e}")),
        }
    }

    /// Registers every metric. Proxies of several regions in one process share one `ProxyMetrics`
    /// (clones share their counters), registered once.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.requests.clone()))?;
        registry.register(Box::new(self.spills.clone()))?;
        registry.register(Box::new(self.refused.clone()))?;
        registry.register(Box::new(self.upstream_errors.clone()))?;
        registry.register(Box::new(self.ejections.clone()))?;
        registry.register(Box::new(self.handed_over.clone()))?;
        registry.register(Box::new(self.tls_handshakes.clone()))?;
        registry.register(Box::new(self.latency_samples.clone()))?;
        registry.register(Box::new(self.in_flight.clone()))?;
        registry.register(Box::new(self.healthy_backends.clone()))?;
        registry.register(Box::new(self.duration.clone()))
    }

    /// The latency histogram of a region, resolved once.
    pub fn duration_for(&self, region: &str) -> Histogram {
        self.duration.with_label_values(&[region])
    }

    /// The counter of a (service, region, status, served_by) combination, resolved once.
    pub fn requests_for(&self, service: &str, region: &str, status: &str, served_by: &str) -> IntCounter {
        self.requests
            .with_label_values(&[service, region, status, served_by])
    }
}

impl Default for ProxyMetrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_quantiles() {
        let w = Window::default();
        for i in 0..100u64 {
            w.record(Duration::from_micros(100 + i * 10), i >= 95);
        }
        let s = w.take();
        assert_eq!(s.requests, 100);
        assert_eq!(s.errors, 5);
        let l = s.latency.unwrap();
        assert!(l.p50 >= 0.59 && l.p50 <= 0.75, "{l:?}");
        assert!(l.p99 >= 1.08 && l.p99 <= 1.35, "{l:?}");
        assert!(l.p50 <= l.p90 && l.p90 <= l.p99);
        assert_eq!(w.take().requests, 0);
        assert!(w.take().latency.is_none());
    }
}
