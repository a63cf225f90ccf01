//! Probe metrics: results and latency per target (region and check) and vantage point, and the prober's
//! own state transitions per check.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

use crate::Outcome;

/// The prober's metrics.
#[derive(Clone)]
pub struct ProbeMetrics {
    results: IntCounterVec,
    latency: HistogramVec,
    transitions: IntCounterVec,
    publish_errors: IntCounterVec,
}

impl ProbeMetrics {
    /// Creates the metrics, registered in `registry` if given.
    pub fn new(registry: Option<&Registry>) -> Self {
        let labels = ["region", "check", "vantage"];
        let results = IntCounterVec::new(
            Opts::new(
                "meridian_probe_results_total",
                "Probes run, by result (ok or fail)",
            ),
            &["region", "check", "vantage", "result"],
        );
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "meridian_probe_latency_seconds",
                "Probe duration (up to the timeout)",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &labels,
        );
        let transitions = IntCounterVec::new(
            Opts::new(
                "meridian_probe_transitions_total",
                "Changes of a check's state at this prober (after rise/fall), by the state entered",
            ),
            &["region", "check", "vantage", "to"],
        );
        let publish_errors = IntCounterVec::new(
            Opts::new(
                "meridian_probe_publish_errors_total",
                "Observations that could not be written to the state store",
            ),
            &["vantage"],
        );
        // Metric names, help texts and labels are constants: construction cannot fail.
        let (Ok(results), Ok(latency), Ok(transitions), Ok(publish_errors)) =
            (results, latency, transitions, publish_errors)
        else {
            unreachable!("constant metric definitions are valid")
        };
        if let Some(r) = registry {
            // A second prober in the same registry keeps the first one's metrics (tests only).
            let _ = r.register(Box::new(results.clone()));
            let _ = r.register(Box::new(latency.clone()));
            let _ = r.register(Box::new(transitions.clone()));
            let _ = r.register(Box::new(publish_errors.clone()));
        }
        Self {
            results,
            latency,
            transitions,
            publish_errors,
        }
    }

    pub(crate) fn probed(&self, region: &str, check: &str, vantage: &str, outcome: &Outcome) {
        let result = if outcome.ok { "ok" } else { "fail" };
        self.results
            .with_label_values(&[region, check, vantage, result])
            .inc();
        self.latency
            .with_label_values(&[region, check, vantage])
            .observe(outcome.latency.as_secs_f64());
    }

    pub(crate) fn transition(&self, region: &str, check: &str, vantage: &str, to: &str) {
        self.transitions
            .with_label_values(&[region, check, vantage, to])
            .inc();
    }

    pub(crate) fn publish_failed(&self, vantage: &str) {
        self.publish_errors.with_label_values(&[vantage]).inc();
    }
}
