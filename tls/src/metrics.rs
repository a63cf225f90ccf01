//! The TLS metrics of a node: certificate reloads and every edge certificate's expiry, so an alert can
//! fire well before a certificate lapses (`meridian_tls_certificate_expiry_timestamp_seconds - time()`).

use prometheus::{IntCounter, IntGauge, IntGaugeVec, Opts, Registry};

use crate::certs::LoadedCert;

/// Counters and gauges of the TLS edge (cheap to clone: they share their values).
#[derive(Clone, Debug)]
pub struct TlsMetrics {
    pub(crate) reloads: IntCounter,
    pub(crate) reload_failures: IntCounter,
    pub(crate) reload_ok: IntGauge,
    expiry: IntGaugeVec,
}

impl Default for TlsMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl TlsMetrics {
    /// Unregistered metrics.
    pub fn new() -> Self {
        let counter = |name: &str, help: &str| {
            IntCounter::new(name, help).unwrap_or_else(|_| unreachable!("valid metric name"))
        };
        Self {
            reloads: counter(
                "meridian_tls_reloads_total",
                "Times a changed set of edge certificates was loaded and swapped in",
            ),
            reload_failures: counter(
                "meridian_tls_reload_failures_total",
                "Reloads that failed (the previous certificates kept serving)",
            ),
            reload_ok: IntGauge::new(
                "meridian_tls_reload_ok",
                "1 if the last look at the certificate files loaded them all, 0 if it failed",
            )
            .unwrap_or_else(|_| unreachable!("valid metric name")),
            expiry: IntGaugeVec::new(
                Opts::new(
                    "meridian_tls_certificate_expiry_timestamp_seconds",
                    "When each edge certificate expires (Unix time), by its first name",
                ),
                &["name"],
            )
            .unwrap_or_else(|_| unreachable!("valid metric name")),
        }
    }

    /// Registers every metric.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.reloads.clone()))?;
        registry.register(Box::new(self.reload_failures.clone()))?;
        registry.register(Box::new(self.reload_ok.clone()))?;
        registry.register(Box::new(self.expiry.clone()))
    }

    /// Sets the expiry gauges to `certs` (an edge's whole set: the others' gauges go).
    pub(crate) fn observe(&self, certs: &[LoadedCert]) {
        self.expiry.reset();
        for c in certs {
            let name = c.names.first().map_or("", String::as_str);
            self.expiry.with_label_values(&[name]).set(c.not_after);
        }
    }
}
