//! Webhook notifications (`docs/dashboard.md`): events a node observes — a region going down or up, a
//! drill starting or ending, response rate limiting engaging or subsiding, the state store lost or
//! regained — POSTed as JSON to the webhooks of the notifications file
//! ([`meridian_config::notifications`]), signed with HMAC-SHA256 under each webhook's shared secret,
//! retried with exponential backoff.
//!
//! Never in the node's way: events are found by reading the node's snapshot and counters every 250 ms
//! (no hot path touches this), each webhook has its own bounded queue and delivery task, and an event that
//! finds a queue full is dropped and counted. Metrics: `meridian_webhook_deliveries_total{webhook,result}`
//! (`delivered`, `gave-up` after the last attempt, `dropped` on a full queue) and
//! `meridian_webhook_failed_attempts_total{webhook}`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use meridian_config::notifications::{Notifications, Webhook};
use meridian_steer::{DrillMode, Health};
use meridian_store::{Snapshot, SnapshotWatcher};
use prometheus::{IntCounterVec, Opts, Registry};
use ring::hmac;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::now_ms;

/// Events waiting per webhook; beyond this they are dropped (and counted), never waited for.
pub const QUEUE: usize = 256;
/// How often the node's state is compared with what was last seen.
const TICK: Duration = Duration::from_millis(250);
/// RRL counts as subsided after this long without a limited response.
const RRL_QUIET: Duration = Duration::from_secs(10);
/// The signature header: `sha256=HEX` of HMAC-SHA256(secret, body).
pub const SIGNATURE_HEADER: &str = "x-meridian-signature";

/// Reads the node's count of rate-limited DNS responses (`None` when the node runs no DNS server).
pub type RrlCounter = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Running notifications; dropping it stops them.
pub struct Notifier {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Notifier {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

struct Metrics {
    deliveries: IntCounterVec,
    failed_attempts: IntCounterVec,
}

impl Metrics {
    fn new(registry: &Registry) -> Result<Self, String> {
        let deliveries = IntCounterVec::new(
            Opts::new(
                "meridian_webhook_deliveries_total",
                "Webhook events by outcome: delivered, gave-up (every attempt failed), dropped (queue full)",
            ),
            &["webhook", "result"],
        )
        .map_err(|e| e.to_string())?;
        let failed_attempts = IntCounterVec::new(
            Opts::new(
                "meridian_webhook_failed_attempts_total",
                "Webhook delivery attempts that failed (unreachable, timeout, or not 2xx)",
            ),
            &["webhook"],
        )
        .map_err(|e| e.to_string())?;
        registry
            .register(Box::new(deliveries.clone()))
            .map_err(|e| e.to_string())?;
        registry
            .register(Box::new(failed_attempts.clone()))
            .map_err(|e| e.to_string())?;
        Ok(Self {
            deliveries,
            failed_attempts,
        })
    }
}

/// `sha256=HEX` for `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    format!(
        "sha256={}",
        crate::dashboard::session::hex(hmac::sign(&key, body).as_ref())
    )
}

/// Starts watching `watcher` (and `rrl`) for events and delivering them to `config`'s webhooks, with
/// metrics in `registry`. `node` names the sender in every payload.
pub fn start(
    config: &Notifications,
    watcher: Arc<SnapshotWatcher>,
    rrl: Option<RrlCounter>,
    registry: &Registry,
    node: &str,
) -> Result<Notifier, String> {
    let metrics = Arc::new(Metrics::new(registry)?);
    let mut tasks = Vec::new();
    let mut queues = Vec::new();
    for hook in &config.webhooks {
        let target =
            crate::client::parse_url(&hook.url).map_err(|e| format!("webhook {}: {e}", hook.name))?;
        let tls = crate::client::client_tls(hook.ca_file.as_deref())
            .map_err(|e| format!("webhook {}: ca-file: {e}", hook.name))?;
        let (tx, rx) = mpsc::channel::<Value>(QUEUE);
        queues.push((hook.clone(), tx));
        tasks.push(tokio::spawn(deliver(
            hook.clone(),
            target,
            tls.clone(),
            rx,
            metrics.clone(),
        )));
    }
    let node = node.to_owned();
    tasks.push(tokio::spawn(async move {
        let mut seen = Seen::default();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let snapshot = watcher.snapshot();
            let limited = rrl.as_ref().map(|f| f());
            let events = seen.observe(
                snapshot.as_deref(),
                watcher.is_connected(),
                limited,
                now_ms(),
                Instant::now(),
            );
            for mut event in events {
                event["node"] = json!(node);
                for (hook, tx) in &queues {
                    let name = event["event"].as_str().unwrap_or("");
                    if !hook.wants(name) {
                        continue;
                    }
                    if tx.try_send(event.clone()).is_err() {
                        metrics
                            .deliveries
                            .with_label_values(&[hook.name.as_str(), "dropped"])
                            .inc();
                    }
                }
            }
        }
    }));
    Ok(Notifier { tasks })
}

/// What was last observed, to turn states into events.
#[derive(Default)]
struct Seen {
    started: bool,
    /// Region id -> down, and why (`health` or the drill's id).
    down: BTreeMap<String, Option<String>>,
    /// Active drills: id -> (region, mode).
    drills: BTreeMap<String, (String, String)>,
    connected: bool,
    rrl_count: u64,
    rrl_engaged: bool,
    rrl_last_limited: Option<Instant>,
}

fn event(name: &str, at_ms: u64, fields: Value) -> Value {
    let mut e = json!({ "event": name, "at_ms": at_ms });
    if let (Some(e), Value::Object(f)) = (e.as_object_mut(), fields) {
        e.extend(f);
    }
    e
}

impl Seen {
    /// The events between the last observation and this one (none on the first: that is the baseline).
    fn observe(
        &mut self,
        snapshot: Option<&Snapshot>,
        connected: bool,
        rrl_count: Option<u64>,
        now_ms: u64,
        now: Instant,
    ) -> Vec<Value> {
        let mut events = Vec::new();
        let first = !self.started;
        self.started = true;
        if !first && connected != self.connected {
            events.push(event(
                if connected { "store-regained" } else { "store-lost" },
                now_ms,
                json!({}),
            ));
        }
        self.connected = connected;

        if let Some(snap) = snapshot {
            let topology = &snap.topology;
            let mut drills = BTreeMap::new();
            let mut down = BTreeMap::new();
            for r in topology.region_indices() {
                let Some(state) = snap.states.get(r) else {
                    continue;
                };
                let id = topology.region_id(r).to_owned();
                let why = if state.health == Health::Down {
                    Some("health".to_owned())
                } else {
                    state
                        .drills
                        .iter()
                        .find(|d| d.active(now_ms) && d.mode == DrillMode::Down)
                        .map(|d| format!("drill {}", d.id))
                };
                down.insert(id, why);
            }
            for (id, d) in snap.drills.iter().filter(|(_, d)| now_ms < d.expires_at_ms) {
                drills.insert(id.clone(), (d.region.clone(), crate::mode_text(d.mode)));
            }
            if !first {
                for (id, (region, mode)) in &drills {
                    if !self.drills.contains_key(id) {
                        events.push(event(
                            "drill-start",
                            now_ms,
                            json!({ "drill": id, "region": region, "mode": mode }),
                        ));
                    }
                }
                for (id, (region, mode)) in &self.drills {
                    if !drills.contains_key(id) {
                        events.push(event(
                            "drill-end",
                            now_ms,
                            json!({ "drill": id, "region": region, "mode": mode }),
                        ));
                    }
                }
                for (id, why) in &down {
                    let was = self.down.get(id).cloned().flatten();
                    match (was, why) {
                        (None, Some(cause)) => events.push(event(
                            "region-down",
                            now_ms,
                            json!({ "region": id, "cause": cause }),
                        )),
                        (Some(_), None) => events.push(event("region-up", now_ms, json!({ "region": id }))),
                        _ => {}
                    }
                }
            }
            self.drills = drills;
            self.down = down;
        }

        if let Some(count) = rrl_count {
            if count > self.rrl_count {
                self.rrl_last_limited = Some(now);
                if !self.rrl_engaged && !first {
                    self.rrl_engaged = true;
                    events.push(event(
                        "rrl-engaged",
                        now_ms,
                        json!({ "limited_responses": count - self.rrl_count }),
                    ));
                }
            } else if self.rrl_engaged
                && self
                    .rrl_last_limited
                    .is_none_or(|t| now.duration_since(t) >= RRL_QUIET)
            {
                self.rrl_engaged = false;
                events.push(event(
                    "rrl-subsided",
                    now_ms,
                    json!({ "quiet_for_ms": RRL_QUIET.as_millis() as u64 }),
                ));
            }
            self.rrl_count = count;
        }
        events
    }
}

/// One webhook's delivery task: its events in order, each tried up to `max_attempts` times with
/// exponential backoff (250 ms, doubling, at most 30 s between attempts).
async fn deliver(
    hook: Webhook,
    target: crate::client::Target,
    tls: Arc<rustls::ClientConfig>,
    mut rx: mpsc::Receiver<Value>,
    metrics: Arc<Metrics>,
) {
    let mut sequence: u64 = 0;
    while let Some(mut event) = rx.recv().await {
        sequence += 1;
        let delivery = format!("{}-{}-{sequence}", hook.name, event["at_ms"]);
        event["delivery"] = json!(delivery);
        let body = Bytes::from(event.to_string());
        let sig = signature(&hook.secret, &body);
        let name = event["event"].as_str().unwrap_or("").to_owned();
        let mut backoff = Duration::from_millis(250);
        let mut delivered = false;
        for attempt in 1..=hook.max_attempts {
            let request = hyper::Request::post(target.path_uri())
                .header(hyper::header::HOST, target.authority())
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .header(
                    hyper::header::USER_AGENT,
                    concat!("meridian/", env!("CARGO_PKG_VERSION")),
                )
                .header(SIGNATURE_HEADER, &sig)
                .header("x-meridian-event", &name)
                .header("x-meridian-delivery", &delivery)
                .header("x-meridian-attempt", attempt.to_string())
                .body(Full::new(body.clone()));
            let Ok(request) = request else {
                break;
            };
            let result = tokio::time::timeout(
                Duration::from_millis(u64::from(hook.timeout_ms)),
                crate::client::exchange(&target, Some(&tls), request),
            )
            .await;
            match result {
                Ok(Ok((status, _, _))) if (200..300).contains(&status) => {
                    delivered = true;
                    break;
                }
                other => {
                    let why = match other {
                        Ok(Ok((status, _, _))) => format!("HTTP {status}"),
                        Ok(Err(e)) => e,
                        Err(_) => format!("no answer within {} ms", hook.timeout_ms),
                    };
                    tracing::warn!(webhook = %hook.name, event = %name, attempt, error = %why, "webhook delivery failed");
                    metrics
                        .failed_attempts
                        .with_label_values(&[hook.name.as_str()])
                        .inc();
                }
            }
            if attempt < hook.max_attempts {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
        let result = if delivered { "delivered" } else { "gave-up" };
        metrics
            .deliveries
            .with_label_values(&[hook.name.as_str(), result])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn rrl_engages_on_a_rising_count_and_subsides_after_quiet() {
        let mut seen = Seen::default();
        let t0 = Instant::now();
        assert!(
            seen.observe(None, true, Some(0), 0, t0).is_empty(),
            "the first look is the baseline"
        );
        let e = seen.observe(None, true, Some(50), 1, t0 + Duration::from_secs(1));
        assert_eq!(e.len(), 1);
        assert_eq!(e[0]["event"], "rrl-engaged");
        assert!(
            seen.observe(None, true, Some(60), 2, t0 + Duration::from_secs(2))
                .is_empty()
        );
        assert!(
            seen.observe(None, true, Some(60), 3, t0 + Duration::from_secs(5))
                .is_empty()
        );
        let e = seen.observe(None, true, Some(60), 4, t0 + Duration::from_secs(12));
        assert_eq!(e[0]["event"], "rrl-subsided");
        let e = seen.observe(None, false, Some(60), 5, t0 + Duration::from_secs(13));
        assert_eq!(e[0]["event"], "store-lost");
        let e = seen.observe(None, true, Some(60), 6, t0 + Duration::from_secs(14));
        assert_eq!(e[0]["event"], "store-regained");
    }
}
