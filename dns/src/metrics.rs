//! DNS metrics for Prometheus: queries by type and response code, steered answers by service, region and
//! reason, ECS use, fast-path share, rate-limited responses, answering latency, GeoIP reloads.
//!
//! Why not one `IntCounterVec` per metric: a labelled counter is a hash lookup and an atomic add on a
//! cache line every worker shares — per query, on two cores, that costs more than answering does. Each
//! worker instead counts into its own plain `LocalStats` and flushes into the shared totals every
//! [`FLUSH_EVERY_MS`] (and when the configuration changes, since steered counts are kept by index until
//! then). A scrape therefore lags by at most that interval.
//!
//! Must not: take a lock or allocate per query (steered counts allocate once per new label set).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use meridian_steer::{RegionIndex, ServiceIndex, Topology};
use prometheus::core::{Collector, Desc};
use prometheus::proto::{Bucket, Counter, Histogram, LabelPair, Metric, MetricFamily, MetricType};

use crate::info::{AnswerInfo, Reason};

/// Workers flush their counts at least this often.
pub const FLUSH_EVERY_MS: u64 = 250;

const QTYPES: [(&str, Option<RecordType>); 11] = [
    ("A", Some(RecordType::A)),
    ("AAAA", Some(RecordType::AAAA)),
    ("ANY", Some(RecordType::ANY)),
    ("SOA", Some(RecordType::SOA)),
    ("NS", Some(RecordType::NS)),
    ("CNAME", Some(RecordType::CNAME)),
    ("MX", Some(RecordType::MX)),
    ("TXT", Some(RecordType::TXT)),
    ("SRV", Some(RecordType::SRV)),
    ("CAA", Some(RecordType::CAA)),
    ("other", None),
];

const RCODES: [(&str, Option<ResponseCode>); 9] = [
    ("NOERROR", Some(ResponseCode::NoError)),
    ("FORMERR", Some(ResponseCode::FormErr)),
    ("SERVFAIL", Some(ResponseCode::ServFail)),
    ("NXDOMAIN", Some(ResponseCode::NXDomain)),
    ("NOTIMP", Some(ResponseCode::NotImp)),
    ("REFUSED", Some(ResponseCode::Refused)),
    ("BADVERS", Some(ResponseCode::BADVERS)),
    ("other", None),
    // The last column: requests that got no response at all (not a query, too short).
    ("none", None),
];

/// Upper bounds of the latency histogram, in seconds (5 µs to 10 ms).
const LATENCY_BOUNDS: [f64; 10] = [
    0.000_005, 0.000_01, 0.000_02, 0.000_05, 0.000_1, 0.000_2, 0.000_5, 0.001, 0.005, 0.01,
];

fn qtype_index(t: Option<RecordType>) -> usize {
    QTYPES
        .iter()
        .position(|(_, q)| q.is_some() && *q == t)
        .unwrap_or(QTYPES.len() - 1)
}

fn rcode_index(r: Option<ResponseCode>) -> usize {
    match r {
        None => RCODES.len() - 1,
        Some(r) => RCODES[..RCODES.len() - 2]
            .iter()
            .position(|(_, c)| *c == Some(r))
            .unwrap_or(RCODES.len() - 2),
    }
}

/// The shared totals, and the collector that exports them.
pub struct DnsMetrics {
    totals: Mutex<Totals>,
    descs: Vec<Desc>,
}

#[derive(Default)]
struct Totals {
    queries: Vec<[u64; RCODES.len()]>,
    steered: HashMap<(String, String, Reason), u64>,
    ecs: u64,
    fast: u64,
    truncated: u64,
    rrl_dropped: u64,
    rrl_slipped: u64,
    latency: [u64; LATENCY_BOUNDS.len() + 1],
    latency_sum_ns: u64,
    geoip_reloads: u64,
    geoip_reload_failures: u64,
    geoip_build_epoch: u64,
}

const FAMILIES: [(&str, &str, &[&str]); 9] = [
    (
        "meridian_dns_queries_total",
        "DNS requests by query type and response code (rcode \"none\": no response sent)",
        &["qtype", "rcode"],
    ),
    (
        "meridian_dns_steered_total",
        "Steered answers by service, first region answered and what decided it",
        &["service", "region", "reason"],
    ),
    (
        "meridian_dns_ecs_queries_total",
        "Requests carrying an EDNS Client Subnet option",
        &[],
    ),
    (
        "meridian_dns_fast_path_total",
        "Requests answered by the fast path (the rest by the general path)",
        &[],
    ),
    (
        "meridian_dns_truncated_total",
        "UDP responses truncated (TC=1) because they did not fit",
        &[],
    ),
    (
        "meridian_dns_rate_limited_total",
        "Responses withheld by response rate limiting, by action (dropped, or slipped: sent empty with TC=1)",
        &["action"],
    ),
    (
        "meridian_dns_answer_seconds",
        "Time to answer one request, from the received packet to the response bytes",
        &[],
    ),
    (
        "meridian_dns_geoip_reloads_total",
        "GeoIP database files loaded after start, by result",
        &["result"],
    ),
    (
        "meridian_dns_geoip_build_epoch_seconds",
        "Build time of the GeoIP database in use (Unix seconds)",
        &[],
    ),
];

impl DnsMetrics {
    /// New, empty totals.
    pub fn new() -> Arc<Self> {
        let descs = descs(&FAMILIES);
        Arc::new(Self {
            totals: Mutex::new(Totals {
                queries: vec![[0; RCODES.len()]; QTYPES.len()],
                ..Totals::default()
            }),
            descs,
        })
    }

    /// A collector to register with a Prometheus registry (it shares these totals).
    pub fn collector(self: &Arc<Self>) -> Box<dyn Collector> {
        Box::new(Exported(self.clone()))
    }

    /// A recorder for one worker.
    pub fn recorder(self: &Arc<Self>) -> Recorder {
        Recorder {
            metrics: self.clone(),
            local: LocalStats::default(),
            tick: 0,
        }
    }

    /// Notes a GeoIP database load after start: `Some(build epoch)` when it succeeded.
    pub fn geoip_reloaded(&self, result: Option<u64>) {
        if let Ok(mut t) = self.totals.lock() {
            match result {
                Some(epoch) => {
                    t.geoip_reloads += 1;
                    t.geoip_build_epoch = epoch;
                }
                None => t.geoip_reload_failures += 1,
            }
        }
    }

    /// Records the build time of the database in use at start.
    pub fn set_geoip_build_epoch(&self, epoch: u64) {
        if let Ok(mut t) = self.totals.lock() {
            t.geoip_build_epoch = epoch;
        }
    }

    /// Queries counted so far with this query type label and response code label (tests, status).
    pub fn queries(&self, qtype: &str, rcode: &str) -> u64 {
        let (Some(q), Some(r)) = (
            QTYPES.iter().position(|(l, _)| *l == qtype),
            RCODES.iter().position(|(l, _)| *l == rcode),
        ) else {
            return 0;
        };
        self.totals.lock().map_or(0, |t| t.queries[q][r])
    }
}

/// The descriptions of hand-built families given as (name, help, label names). A family whose name or
/// labels Prometheus refuses is left out (the tables are constants: none is).
pub(crate) fn descs(families: &[(&str, &str, &[&str])]) -> Vec<Desc> {
    families
        .iter()
        .filter_map(|(name, help, labels)| {
            Desc::new(
                (*name).to_owned(),
                (*help).to_owned(),
                labels.iter().map(|l| (*l).to_owned()).collect(),
                HashMap::new(),
            )
            .ok()
        })
        .collect()
}

/// One label of a hand-built metric.
pub(crate) fn label(name: &str, value: &str) -> LabelPair {
    let mut l = LabelPair::default();
    l.set_name(name.to_owned());
    l.set_value(value.to_owned());
    l
}

/// A counter of a hand-built family.
pub(crate) fn counter(labels: Vec<LabelPair>, value: u64) -> Metric {
    let mut c = Counter::default();
    c.set_value(value as f64);
    let mut m = Metric::from_label(labels);
    m.set_counter(c);
    m
}

fn family(index: usize, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let (name, help, _) = FAMILIES[index];
    family_named((name, help), kind, metrics)
}

/// A metric family of `(name, help)` (hand-built families: this module's and `guard`'s collectors).
pub(crate) fn family_named(
    (name, help): (&str, &str),
    kind: MetricType,
    metrics: Vec<Metric>,
) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_owned());
    f.set_help(help.to_owned());
    f.set_field_type(kind);
    f.set_metric(metrics);
    f
}

impl Collector for DnsMetrics {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Ok(t) = self.totals.lock() else {
            return Vec::new();
        };
        let mut queries = Vec::new();
        for (qi, (q, _)) in QTYPES.iter().enumerate() {
            for (ri, (r, _)) in RCODES.iter().enumerate() {
                if t.queries[qi][ri] > 0 {
                    queries.push(counter(
                        vec![label("qtype", q), label("rcode", r)],
                        t.queries[qi][ri],
                    ));
                }
            }
        }
        let mut steered: Vec<_> = t.steered.iter().collect();
        steered.sort_by(|a, b| (&a.0.0, &a.0.1, a.0.2.label()).cmp(&(&b.0.0, &b.0.1, b.0.2.label())));
        let steered = steered
            .into_iter()
            .map(|((s, r, why), n)| {
                counter(
                    vec![
                        label("service", s),
                        label("region", r),
                        label("reason", why.label()),
                    ],
                    *n,
                )
            })
            .collect();
        let mut h = Histogram::default();
        let mut cumulative = 0;
        h.set_bucket(
            LATENCY_BOUNDS
                .iter()
                .zip(t.latency)
                .map(|(bound, n)| {
                    cumulative += n;
                    let mut b = Bucket::default();
                    b.set_upper_bound(*bound);
                    b.set_cumulative_count(cumulative);
                    b
                })
                .collect(),
        );
        h.set_sample_count(t.latency.iter().sum());
        h.set_sample_sum(t.latency_sum_ns as f64 / 1e9);
        let mut hm = Metric::default();
        hm.set_histogram(h);
        let mut epoch = prometheus::proto::Gauge::default();
        epoch.set_value(t.geoip_build_epoch as f64);
        vec![
            family(0, MetricType::COUNTER, queries),
            family(1, MetricType::COUNTER, steered),
            family(2, MetricType::COUNTER, vec![counter(vec![], t.ecs)]),
            family(3, MetricType::COUNTER, vec![counter(vec![], t.fast)]),
            family(4, MetricType::COUNTER, vec![counter(vec![], t.truncated)]),
            family(
                5,
                MetricType::COUNTER,
                vec![
                    counter(vec![label("action", "dropped")], t.rrl_dropped),
                    counter(vec![label("action", "slipped")], t.rrl_slipped),
                ],
            ),
            family(6, MetricType::HISTOGRAM, vec![hm]),
            family(
                7,
                MetricType::COUNTER,
                vec![
                    counter(vec![label("result", "loaded")], t.geoip_reloads),
                    counter(vec![label("result", "failed")], t.geoip_reload_failures),
                ],
            ),
            family(8, MetricType::GAUGE, vec![Metric::from_gauge(epoch)]),
        ]
    }
}

/// The totals as registered (a registry takes ownership of its collectors).
struct Exported(Arc<DnsMetrics>);

impl Collector for Exported {
    fn desc(&self) -> Vec<&Desc> {
        self.0.desc()
    }
    fn collect(&self) -> Vec<MetricFamily> {
        self.0.collect()
    }
}

/// One worker's counts since its last flush, and where to flush them.
pub struct Recorder {
    metrics: Arc<DnsMetrics>,
    local: LocalStats,
    /// UDP queries seen, for sampling their latency.
    tick: u32,
}

/// One UDP query in this many is timed for the latency histogram: two clock reads per query were about
/// 1% of the server's CPU, and a one-in-eight sample of a stream of queries has the same distribution.
pub const LATENCY_SAMPLE_EVERY: u32 = 8;

#[derive(Default)]
struct LocalStats {
    queries: [[u64; RCODES.len()]; QTYPES.len()],
    /// foldhash: a SipHash of this key per query showed in the profile; the keys are indices.
    steered: HashMap<(ServiceIndex, Option<RegionIndex>, Reason), u64, foldhash::fast::RandomState>,
    /// The topology the steered indices refer to.
    topology: Option<Arc<Topology>>,
    ecs: u64,
    fast: u64,
    truncated: u64,
    rrl_dropped: u64,
    rrl_slipped: u64,
    latency: [u64; LATENCY_BOUNDS.len() + 1],
    latency_sum_ns: u64,
    last_flush_ms: u64,
    dirty: bool,
}

impl Recorder {
    /// Whether to time the next UDP query (one in [`LATENCY_SAMPLE_EVERY`]).
    pub fn sample_latency(&mut self) -> bool {
        self.tick = self.tick.wrapping_add(1);
        self.tick.is_multiple_of(LATENCY_SAMPLE_EVERY)
    }

    /// Counts one request, answered as `info` says (in `elapsed_ns`, when it was timed), steered against
    /// `topology`.
    pub fn record(&mut self, info: &AnswerInfo, topology: &Arc<Topology>, elapsed_ns: Option<u64>) {
        let l = &mut self.local;
        l.dirty = true;
        l.queries[qtype_index(info.qtype)][rcode_index(info.rcode)] += 1;
        l.ecs += u64::from(info.ecs);
        l.fast += u64::from(info.fast);
        l.truncated += u64::from(info.truncated);
        if let (Some(service), Some(reason)) = (info.service, info.reason) {
            if l.topology
                .as_ref()
                .is_some_and(|mine| !Arc::ptr_eq(mine, topology))
            {
                // Indices mean something only against their own topology: settle the old ones first.
                self.flush();
            }
            let l = &mut self.local;
            l.topology.get_or_insert_with(|| topology.clone());
            *l.steered.entry((service, info.region, reason)).or_default() += 1;
        }
        let Some(elapsed_ns) = elapsed_ns else { return };
        let l = &mut self.local;
        let secs = elapsed_ns as f64 / 1e9;
        let bucket = LATENCY_BOUNDS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BOUNDS.len());
        l.latency[bucket] += 1;
        l.latency_sum_ns += elapsed_ns;
    }

    /// Counts a response withheld by rate limiting (`slipped`: sent empty and truncated instead).
    pub fn rate_limited(&mut self, slipped: bool) {
        self.local.dirty = true;
        if slipped {
            self.local.rrl_slipped += 1;
        } else {
            self.local.rrl_dropped += 1;
        }
    }

    /// Flushes if the last flush is older than [`FLUSH_EVERY_MS`].
    pub fn maybe_flush(&mut self, now_ms: u64) {
        if self.local.dirty && now_ms.saturating_sub(self.local.last_flush_ms) >= FLUSH_EVERY_MS {
            self.local.last_flush_ms = now_ms;
            self.flush();
        }
    }

    /// Adds the local counts to the totals and zeroes them.
    pub fn flush(&mut self) {
        let l = std::mem::take(&mut self.local);
        self.local.last_flush_ms = l.last_flush_ms;
        let Ok(mut t) = self.metrics.totals.lock() else {
            return;
        };
        for (tq, lq) in t.queries.iter_mut().zip(l.queries) {
            for (a, b) in tq.iter_mut().zip(lq) {
                *a += b;
            }
        }
        if let Some(topology) = &l.topology {
            let config = topology.config();
            for ((service, region, reason), n) in l.steered {
                let service = config
                    .services()
                    .get(service.get())
                    .map_or("?", |s| s.name.as_str());
                let region = region.map_or("none", |r| topology.region_id(r));
                *t.steered
                    .entry((service.to_owned(), region.to_owned(), reason))
                    .or_default() += n;
            }
        }
        t.ecs += l.ecs;
        t.fast += l.fast;
        t.truncated += l.truncated;
        t.rrl_dropped += l.rrl_dropped;
        t.rrl_slipped += l.rrl_slipped;
        for (a, b) in t.latency.iter_mut().zip(l.latency) {
            *a += b;
        }
        t.latency_sum_ns += l.latency_sum_ns;
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exactly one UDP query in [`LATENCY_SAMPLE_EVERY`] is timed, evenly spaced.
    #[test]
    fn latency_is_sampled_one_in_eight() {
        let mut recorder = DnsMetrics::new().recorder();
        let timed: Vec<usize> = (0..32).filter(|_| recorder.sample_latency()).collect();
        assert_eq!(timed, [7, 15, 23, 31]);
    }
}
