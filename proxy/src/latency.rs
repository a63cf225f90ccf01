//! What the proxy measures for latency steering (`docs/latency.md`): the kernel's smoothed TCP round-trip
//! time of client connections (`TCP_INFO`'s `tcpi_rtt`, read once per connection through pingora's socket
//! digest), attributed to the client's latency area (the unit DNS steers, [`meridian_steer::latency_area`]
//! of the client's GeoIP location), kept as a time-decayed mean per area, and summarised for the store
//! (`latency/REGION/INSTANCE`, at most [`MAX_LATENCY_AREAS`] areas, every [`PUBLISH_INTERVAL`]).
//!
//! Cost on the request path: nothing per request; per connection, while some service steers by latency,
//! a GeoIP lookup of the peer and one short lock; and one `getsockopt(TCP_INFO)` (plus a second short lock)
//! for at most one connection per area every [`MIN_SAMPLE_GAP`]. Why the gap: with a connection per
//! request, sampling every connection cost 10 % of the proxy's CPU per request (bench/RESULTS.md), the
//! syscall most of it; an area's estimate (ten-minute half-life) learns nothing more from the 21st sample
//! of a second than from the 20th. Memory: at most [`MAX_TRACKED_AREAS`] estimates.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use meridian_steer::LatencyArea;
use meridian_store::schema::{AreaLatency, LatencyReport, MAX_LATENCY_AREAS};
use pingora::protocols::Stream;

/// How often a proxy instance writes its latency summary.
pub const PUBLISH_INTERVAL: Duration = Duration::from_secs(10);
/// Half-life of an estimate's weight: a sample counts half after this long, so a change of path shows
/// within minutes and an area that stops connecting fades out.
pub const HALF_LIFE: Duration = Duration::from_secs(600);
/// Areas tracked in memory at most (the least-sampled is forgotten for a new one beyond this).
pub const MAX_TRACKED_AREAS: usize = 1024;
/// Shortest time between two samples of one area (see the module's comment): at most 20 a second.
pub const MIN_SAMPLE_GAP: Duration = Duration::from_millis(50);
/// An estimate whose decayed weight falls below this is dropped.
const MIN_WEIGHT: f64 = 0.5;

#[derive(Clone, Copy, Debug)]
struct Estimate {
    /// Decayed mean, milliseconds.
    rtt_ms: f64,
    /// Decayed sample count, as of `at_ms`.
    weight: f64,
    at_ms: u64,
}

impl Estimate {
    /// The weight as of `now_ms`.
    fn weight_at(&self, now_ms: u64) -> f64 {
        let elapsed = now_ms.saturating_sub(self.at_ms) as f64;
        self.weight * (-elapsed / HALF_LIFE.as_millis() as f64 * std::f64::consts::LN_2).exp()
    }
}

#[derive(Debug, Default)]
struct State {
    estimates: HashMap<LatencyArea, Estimate>,
    /// Every client attributed to this area (tests and labs on loopback, where GeoIP knows nothing).
    attribute_all_to: Option<LatencyArea>,
}

/// Per-area round-trip estimates of one proxy instance.
#[derive(Debug, Default)]
pub struct LatencySampler {
    state: Mutex<State>,
}

impl LatencySampler {
    /// Attributes every client to `area` (`None`: by GeoIP, the default). For loopback tests and labs.
    pub fn attribute_all_to(&self, area: Option<LatencyArea>) {
        self.lock().attribute_all_to = area;
    }

    /// The area a client located by GeoIP is attributed to.
    pub fn area_for(&self, located: Option<LatencyArea>) -> Option<LatencyArea> {
        self.lock().attribute_all_to.or(located)
    }

    /// The area to sample a client located by GeoIP into, if it is due a sample at `now_ms`: it has an
    /// area, and its last sample is at least [`MIN_SAMPLE_GAP`] old.
    pub fn due(&self, located: Option<LatencyArea>, now_ms: u64) -> Option<LatencyArea> {
        let st = self.lock();
        let area = st.attribute_all_to.or(located)?;
        let gap = MIN_SAMPLE_GAP.as_millis() as u64;
        match st.estimates.get(&area) {
            Some(e) if now_ms.saturating_sub(e.at_ms) < gap => None,
            _ => Some(area),
        }
    }

    /// Adds one round-trip sample of `area` at `now_ms`.
    pub fn record(&self, area: LatencyArea, rtt_ms: f64, now_ms: u64) {
        if !(rtt_ms.is_finite() && rtt_ms >= 0.0) {
            return;
        }
        let mut st = self.lock();
        if !st.estimates.contains_key(&area) && st.estimates.len() >= MAX_TRACKED_AREAS {
            let weakest = st
                .estimates
                .iter()
                .min_by(|a, b| a.1.weight_at(now_ms).total_cmp(&b.1.weight_at(now_ms)))
                .map(|(a, _)| *a);
            if let Some(a) = weakest {
                st.estimates.remove(&a);
            }
        }
        let e = st.estimates.entry(area).or_insert(Estimate {
            rtt_ms,
            weight: 0.0,
            at_ms: now_ms,
        });
        let w = e.weight_at(now_ms);
        e.rtt_ms = (e.rtt_ms * w + rtt_ms) / (w + 1.0);
        e.weight = w + 1.0;
        e.at_ms = now_ms;
    }

    /// The summary to publish at `now_ms`: the [`MAX_LATENCY_AREAS`] areas with the most (decayed)
    /// samples; faded estimates are dropped here.
    pub fn summary(&self, now_ms: u64) -> LatencyReport {
        let mut st = self.lock();
        st.estimates.retain(|_, e| e.weight_at(now_ms) >= MIN_WEIGHT);
        let mut areas: Vec<(f64, AreaLatency)> = st
            .estimates
            .iter()
            .map(|(area, e)| {
                let w = e.weight_at(now_ms);
                let entry = AreaLatency {
                    area: area.to_string(),
                    rtt_ms: (e.rtt_ms * 1000.0).round() / 1000.0,
                    samples: w.round().max(1.0) as u32,
                };
                (w, entry)
            })
            .collect();
        areas.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.area.cmp(&b.1.area)));
        areas.truncate(MAX_LATENCY_AREAS);
        LatencyReport {
            schema: 1,
            reported_at_ms: now_ms,
            areas: areas.into_iter().map(|a| a.1).collect(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The kernel's smoothed round-trip time of the client connection under `stream` (TLS included), in
/// milliseconds; `None` for a non-TCP stream or when the kernel has no estimate yet.
pub fn connection_rtt_ms(stream: &Stream) -> Option<f64> {
    // The stream's id is its socket's descriptor (pingora's `UniqueID`, through TLS too). Asked directly:
    // the socket digest's `tcp_info` first asks the kernel for the local address (a second system call)
    // to learn whether the socket is TCP, which a connection with a client IP address is.
    let info = pingora::protocols::l4::ext::get_tcp_info(stream.id()).ok()?;
    (info.tcpi_rtt > 0).then(|| f64::from(info.tcpi_rtt) / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn area(s: &str) -> LatencyArea {
        s.parse().unwrap()
    }

    #[test]
    fn estimates_decay_and_summaries_are_bounded() {
        let s = LatencySampler::default();
        let pl = area("PL@50,20");
        for _ in 0..10 {
            s.record(pl, 20.0, 0);
        }
        s.record(pl, 120.0, 0);
        let r = s.summary(0);
        assert_eq!(r.areas.len(), 1);
        assert_eq!(r.areas[0].samples, 11);
        assert!((r.areas[0].rtt_ms - 29.091).abs() < 0.01, "{}", r.areas[0].rtt_ms);
        // One half-life later the weight has halved; a new sample moves the mean more.
        let later = HALF_LIFE.as_millis() as u64;
        assert_eq!(s.summary(later).areas[0].samples, 6);
        s.record(pl, 120.0, later);
        assert!(s.summary(later).areas[0].rtt_ms > 40.0);
        // Far later it fades out entirely.
        assert!(s.summary(later * 20).areas.is_empty());

        // More areas than a summary holds: the most-sampled ones are published.
        let s = LatencySampler::default();
        let mut n = 0;
        for lat in (-80..80).step_by(10) {
            for lon in (-180..180).step_by(10) {
                n += 1;
                let a = LatencyArea::new(
                    meridian_config::CountryCode::parse("US").unwrap(),
                    f64::from(lat),
                    f64::from(lon),
                );
                for _ in 0..(n % 7 + 1) {
                    s.record(a, 1.0, 0);
                }
            }
        }
        let r = s.summary(0);
        assert_eq!(r.areas.len(), MAX_LATENCY_AREAS);
        assert!(r.areas.iter().all(|a| a.samples == 7));
        assert!(s.lock().estimates.len() <= MAX_TRACKED_AREAS);
    }

    #[test]
    fn an_area_is_due_a_sample_at_most_every_gap() {
        let s = LatencySampler::default();
        let pl = area("PL@50,20");
        assert_eq!(s.due(None, 0), None, "no area, no sample");
        assert_eq!(s.due(Some(pl), 1_000), Some(pl), "never sampled");
        s.record(pl, 20.0, 1_000);
        let gap = MIN_SAMPLE_GAP.as_millis() as u64;
        assert_eq!(s.due(Some(pl), 1_000 + gap - 1), None);
        assert_eq!(s.due(Some(pl), 1_000 + gap), Some(pl));
        assert_eq!(
            s.due(Some(area("DE@50,0")), 1_001),
            Some(area("DE@50,0")),
            "per area"
        );
    }

    #[test]
    fn attribution_can_be_pinned_for_labs() {
        let s = LatencySampler::default();
        assert_eq!(s.area_for(None), None);
        s.attribute_all_to(Some(area("DE@50,0")));
        assert_eq!(s.area_for(Some(area("PL@50,20"))), Some(area("DE@50,0")));
    }
}
