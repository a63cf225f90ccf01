//! Meridian's probers (`meridian health --vantage ID`): from one vantage point, probe every region's public
//! endpoints and publish what this vantage point concludes, under its own lease, for every node to
//! aggregate.
//!
//! Owns: the HTTP(S) and TCP probes ([`probe`]), scheduling (per-check interval, timeout and jitter,
//! bounded concurrency), the per-check rise/fall decision (with `meridian_health::Hysteresis`), publishing
//! `health/REGION/VANTAGE` under a [`meridian_store::LeaseKeeper`] lease (a dead prober's opinions expire
//! with it), and the probe metrics. Regions and checks come from the configuration and follow its changes.
//!
//! Must not depend on: the steering engine, DNS or the proxy; the decisions stay in pure
//! `meridian-health`, the aggregation runs in every node's snapshot watcher (`meridian-store`).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod http;
mod metrics;
mod prober;
#[cfg(feature = "testing")]
pub mod testing;

use std::time::{Duration, Instant};

use meridian_config::CheckTarget;

pub use metrics::ProbeMetrics;
pub use prober::{Prober, ProberOptions, follow_config};

/// The `User-Agent` of every HTTP probe: names Meridian and the vantage point, so endpoints can tell
/// probes (and which prober) from clients.
pub fn user_agent(vantage: &str) -> String {
    format!(
        "meridian-health/{} (vantage {vantage})",
        env!("CARGO_PKG_VERSION")
    )
}

/// What one probe found.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// Whether the check passed.
    pub ok: bool,
    /// How long the probe took (up to the timeout).
    pub latency: Duration,
    /// Why it failed (`connect 192.0.2.1:443: Connection refused`, `status 503`, `timeout after 700 ms`).
    pub detail: Option<String>,
}

/// Runs one probe of `target`, failing after `timeout`.
pub async fn probe(target: &CheckTarget, user_agent: &str, timeout: Duration) -> Outcome {
    let start = Instant::now();
    let run = async {
        match target {
            CheckTarget::Http(check) => http::probe(check, user_agent).await,
            CheckTarget::Tcp { host, port } => tokio::net::TcpStream::connect((host.as_str(), *port))
                .await
                .map(drop)
                .map_err(|e| format!("connect {host}:{port}: {e}")),
        }
    };
    let result = match tokio::time::timeout(timeout, run).await {
        Ok(r) => r,
        Err(_) => Err(format!("timeout after {} ms", timeout.as_millis())),
    };
    Outcome {
        ok: result.is_ok(),
        latency: start.elapsed(),
        detail: result.err(),
    }
}

/// A short name for a check in metrics and logs: its URL, or `tcp://host:port`.
pub fn check_name(target: &CheckTarget) -> String {
    match target {
        CheckTarget::Http(h) => h.url.clone(),
        CheckTarget::Tcp { host, port } if host.contains(':') => format!("tcp://[{host}]:{port}"),
        CheckTarget::Tcp { host, port } => format!("tcp://{host}:{port}"),
    }
}
