//! Webhook notifications (`docs/dashboard.md`): events a node observes — a region going down or up, a
//! drill starting or ending, rate limiting (DNS RRL, the proxy's per-client limit) engaging or subsiding,
//! the state store lost or regained — POSTed as JSON to the webhooks of the notifications file
//! ([`meridian_config::notifications`]), signed with HMAC-SHA256 under each webhook's shared secret,
//! retried with exponential backoff.
//!
//! Two kinds of events. The **fleet's** (region down/up, drills) are seen alike by every node in the shared
//! snapshot: one node sends them, the holder of the leased store lock `notify/sender` ([`Fleet`]), so a
//! fleet of nodes with `--notify` sends each once. A node that takes the lock over (the holder died or
//! stopped) replays the fleet events it saw in the last [`REPLAY`] that the previous holder did not record
//! as sent (`notify/sent`). The **node's own** (rate limiting, store lost/regained) are sent by each node.
//!
//! Never in the node's way: events are found by reading the node's snapshot and counters every 250 ms
//! (no hot path touches this), the lock and the sent record are kept by tasks of their own, each webhook has
//! its own bounded queue and delivery task, and an event that finds a queue full is dropped and counted.
//! Metrics: `meridian_webhook_deliveries_total{webhook,result}` (`delivered`, `gave-up` after the last
//! attempt, `dropped` on a full queue), `meridian_webhook_failed_attempts_total{webhook}` and
//! `meridian_webhook_fleet_sender` (1 on the node sending the fleet's events).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use meridian_config::notifications::{Notifications, Webhook};
use meridian_steer::{DrillMode, Health};
use meridian_store::schema::{DOC_SCHEMA, LockDoc, NotifySentDoc, SentEvent, decode, encode};
use meridian_store::{Keys, KvStore, LeaseKeeper, Snapshot, SnapshotWatcher, take_lock};
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use ring::hmac;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::now_ms;

/// Events waiting per webhook; beyond this they are dropped (and counted), never waited for.
pub const QUEUE: usize = 256;
/// How often the node's state is compared with what was last seen.
const TICK: Duration = Duration::from_millis(250);
/// Rate limiting counts as subsided after this long without a limited response.
const QUIET: Duration = Duration::from_secs(10);
/// The signature header: `sha256=HEX` of HMAC-SHA256(secret, body).
pub const SIGNATURE_HEADER: &str = "x-meridian-signature";
/// The TTL of the sender's lock: how long the fleet's events can go unsent after a sender dies without
/// stopping (a clean stop hands over at once).
pub const SENDER_TTL: Duration = Duration::from_secs(10);
/// How often a node looks at the lock (takes it when free, checks it still holds it).
const SENDER_CHECK: Duration = Duration::from_secs(1);
/// How far back a node taking the lock over looks for fleet events the previous sender missed.
pub const REPLAY: Duration = Duration::from_secs(30);

/// Reads a counter of the node (a count of rate-limited responses).
pub type Counter = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Rate limiting as events of the node: `engaged` when the counter rises, `subsided` after [`QUIET`]
/// without a rise.
pub struct Surge {
    /// The event when the counter starts rising (`rrl-engaged`).
    pub engaged: &'static str,
    /// The event when it has been still for [`QUIET`] (`rrl-subsided`).
    pub subsided: &'static str,
    /// The counter.
    pub count: Counter,
}

impl Surge {
    /// DNS response rate limiting: `meridian_dns_rate_limited_total` in `registry`.
    pub fn dns_rrl(registry: &Registry) -> Self {
        Self {
            engaged: "rrl-engaged",
            subsided: "rrl-subsided",
            count: counter_sum(registry, "meridian_dns_rate_limited_total", None),
        }
    }

    /// The proxy's per-client rate limit: `meridian_proxy_refused_total{reason="rate-limited"}` in
    /// `registry`.
    pub fn proxy_rate_limit(registry: &Registry) -> Self {
        Self {
            engaged: "rate-limit-engaged",
            subsided: "rate-limit-subsided",
            count: counter_sum(
                registry,
                "meridian_proxy_refused_total",
                Some(("reason", "rate-limited")),
            ),
        }
    }
}

/// The sum of counter family `name` in `registry` (its series with `label` only, if given): a gather every
/// tick, far from any hot path.
fn counter_sum(
    registry: &Registry,
    name: &'static str,
    label: Option<(&'static str, &'static str)>,
) -> Counter {
    let registry = registry.clone();
    Arc::new(move || {
        registry
            .gather()
            .iter()
            .filter(|f| f.name() == name)
            .flat_map(|f| f.get_metric())
            .filter(|m| {
                label.is_none_or(|(k, v)| m.get_label().iter().any(|l| l.name() == k && l.value() == v))
            })
            .map(|m| m.get_counter().get_value() as u64)
            .sum()
    })
}

/// Where the lock of the fleet's sender lives, and who this node is to it.
pub struct Fleet {
    /// The state store (the global one: every node of the fleet must see the same lock).
    pub store: Arc<dyn KvStore>,
    /// Its key layout.
    pub keys: Keys,
    /// This node, as the lock names it (`ROLE/INSTANCE`).
    pub holder: String,
}

/// Running notifications: [`stop`](Self::stop) them on the way out (hands the fleet's events over at
/// once); dropping stops them too, the lock then going with its lease.
pub struct Notifier {
    tasks: Vec<JoinHandle<()>>,
    lock: Option<(watch::Sender<bool>, JoinHandle<()>)>,
}

impl Notifier {
    /// Stops, releasing the sender's lock if this node holds it (another node takes over within a second).
    pub async fn stop(mut self) {
        if let Some((stop, task)) = self.lock.take() {
            let _ = stop.send(true);
            let _ = tokio::time::timeout(Duration::from_secs(3), task).await;
        }
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        if let Some((_, task)) = &self.lock {
            task.abort();
        }
    }
}

struct Metrics {
    deliveries: IntCounterVec,
    failed_attempts: IntCounterVec,
    sender: IntGauge,
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
        let sender = IntGauge::new(
            "meridian_webhook_fleet_sender",
            "1 while this node holds the lock of the fleet's webhook events (region down/up, drills) and sends them",
        )
        .map_err(|e| e.to_string())?;
        for c in [
            Box::new(deliveries.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(failed_attempts.clone()),
            Box::new(sender.clone()),
        ] {
            registry.register(c).map_err(|e| e.to_string())?;
        }
        Ok(Self {
            deliveries,
            failed_attempts,
            sender,
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

/// Whether `event` is the fleet's (seen alike by every node, sent by one) rather than the node's own.
pub fn is_fleet_event(event: &str) -> bool {
    matches!(event, "region-down" | "region-up" | "drill-start" | "drill-end")
}

/// What a fleet event is about: its region, or its drill.
fn subject(event: &Value) -> String {
    event
        .get("drill")
        .or_else(|| event.get("region"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// Starts watching `watcher` (and `surges`) for events and delivering them to `config`'s webhooks, with
/// metrics in `registry`; the fleet's events only while this node holds `fleet`'s lock. `node` names the
/// sender in every payload.
pub fn start(
    config: &Notifications,
    watcher: Arc<SnapshotWatcher>,
    surges: Vec<Surge>,
    fleet: Fleet,
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
            tls,
            rx,
            metrics.clone(),
        )));
    }
    let (role_tx, mut role) = watch::channel(Role::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let (sent_tx, sent_rx) = mpsc::channel::<Vec<SentEvent>>(16);
    let lock = tokio::spawn(hold_lock(fleet, role_tx, stop_rx, sent_rx, metrics.clone()));
    let send = move |event: &Value| {
        let name = event["event"].as_str().unwrap_or("");
        for (hook, tx) in &queues {
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
    };
    let node = node.to_owned();
    tasks.push(tokio::spawn(async move {
        let mut seen = Seen::new(surges.len());
        // The fleet events of the last REPLAY, whoever sent them: what a handover replays.
        let mut recent: VecDeque<Value> = VecDeque::new();
        let mut generation = 0;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let snapshot = watcher.snapshot();
            let counts: Vec<u64> = surges.iter().map(|s| (s.count)()).collect();
            let now = now_ms();
            let events = seen.observe(
                snapshot.as_deref(),
                watcher.is_connected(),
                &surges,
                &counts,
                now,
                Instant::now(),
            );
            let current = role.borrow_and_update().clone();
            let mut sent = Vec::new();
            if current.held && current.generation != generation {
                // Just became the sender: what the last one may have missed.
                generation = current.generation;
                for event in &recent {
                    let (name, subj) = (event["event"].as_str().unwrap_or(""), subject(event));
                    let at = event["at_ms"].as_u64().unwrap_or(0);
                    let recorded = current.sent.iter().any(|s| {
                        s.event == name
                            && s.subject == subj
                            && s.at_ms.abs_diff(at) <= REPLAY.as_millis() as u64
                    });
                    if !recorded {
                        let mut event = event.clone();
                        event["handover"] = json!(true);
                        send(&event);
                        sent.push(sent_event(&event));
                    }
                }
            }
            for mut event in events {
                event["node"] = json!(node);
                let name = event["event"].as_str().unwrap_or("").to_owned();
                if is_fleet_event(&name) {
                    recent.push_back(event.clone());
                    if !current.held {
                        continue;
                    }
                    sent.push(sent_event(&event));
                }
                send(&event);
            }
            let horizon = now.saturating_sub(REPLAY.as_millis() as u64);
            while recent
                .front()
                .is_some_and(|e| e["at_ms"].as_u64().unwrap_or(0) < horizon)
            {
                recent.pop_front();
            }
            if !sent.is_empty() {
                // Recorded by the lock's task; never waited for here.
                let _ = sent_tx.try_send(sent);
            }
        }
    }));
    Ok(Notifier {
        tasks,
        lock: Some((stop_tx, lock)),
    })
}

fn sent_event(event: &Value) -> SentEvent {
    SentEvent {
        event: event["event"].as_str().unwrap_or_default().to_owned(),
        subject: subject(event),
        at_ms: event["at_ms"].as_u64().unwrap_or(0),
    }
}

/// Whether this node sends the fleet's events, as the lock's task last found.
#[derive(Clone, Default)]
struct Role {
    held: bool,
    /// Counts the takings of the lock: a new one means "replay what was missed".
    generation: u64,
    /// The events the previous sender recorded, read when the lock was taken.
    sent: Arc<Vec<SentEvent>>,
}

/// Keeps (or waits for) the sender's lock: every [`SENDER_CHECK`] it takes the lock when free and checks
/// that it still holds it (its key, under this node's lease). It holds it no longer than [`SENDER_TTL`]
/// after the last time the store said so: a node cut off from the store stops sending before another can
/// have taken over. Also records the events sent (`notify/sent`), and releases the lock on `stop`.
async fn hold_lock(
    fleet: Fleet,
    role: watch::Sender<Role>,
    mut stop: watch::Receiver<bool>,
    mut sent: mpsc::Receiver<Vec<SentEvent>>,
    metrics: Arc<Metrics>,
) {
    let key = fleet.keys.notify_sender();
    let sent_key = fleet.keys.notify_sent();
    let mut lease: Option<LeaseKeeper> = None;
    let mut confirmed: Option<Instant> = None;
    let mut generation = 0;
    let mut record: Vec<SentEvent> = Vec::new();
    let mut check = tokio::time::interval(SENDER_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = check.tick() => {}
            batch = sent.recv() => {
                // `None`: the observing task is gone; nothing more will be sent, so stop as asked to.
                if let Some(batch) = batch {
                    record.extend(batch);
                    let skip = record.len().saturating_sub(NotifySentDoc::KEEP);
                    record.drain(..skip);
                    let doc = NotifySentDoc { schema: DOC_SCHEMA, events: record.clone() };
                    if let Err(e) = fleet.store.put(&sent_key, encode(&doc), None).await {
                        tracing::warn!(error = %e, "notifications: cannot record the events sent");
                    }
                    continue;
                }
                release(lease, &metrics).await;
                return;
            }
            _ = stop.changed() => {
                release(lease, &metrics).await;
                return;
            }
        }
        let was = role.borrow().held;
        let held = match look(&fleet, &key, &mut lease).await {
            Some(true) => {
                confirmed = Some(Instant::now());
                true
            }
            Some(false) => false,
            // No answer: still the sender while the lease may still be alive.
            None => was && confirmed.is_some_and(|t| t.elapsed() < SENDER_TTL),
        };
        if held && !was {
            generation += 1;
            let previous: Vec<SentEvent> = match fleet.store.get(&sent_key).await {
                Ok(Some(kv)) => decode::<NotifySentDoc>(&kv.value)
                    .map(|d| d.events)
                    .unwrap_or_default(),
                _ => Vec::new(),
            };
            record = previous.clone();
            tracing::info!(holder = %fleet.holder, "notifications: this node sends the fleet's events now");
            role.send_replace(Role {
                held: true,
                generation,
                sent: Arc::new(previous),
            });
        } else if !held && was {
            tracing::info!(holder = %fleet.holder, "notifications: this node no longer sends the fleet's events");
            role.send_replace(Role::default());
        }
        metrics.sender.set(i64::from(held));
    }
}

/// Gives the lock up: revoking the lease deletes the lock with it, so the next node takes over at its next
/// look.
async fn release(lease: Option<LeaseKeeper>, metrics: &Metrics) {
    if let Some(lease) = lease {
        let _ = lease.stop().await;
    }
    metrics.sender.set(0);
}

/// One look at the lock: `Some(true)` if this node holds it (taking it if free), `Some(false)` if another
/// does, `None` if the store did not answer.
async fn look(fleet: &Fleet, key: &str, lease: &mut Option<LeaseKeeper>) -> Option<bool> {
    if lease.is_none() {
        *lease = Some(LeaseKeeper::start(fleet.store.clone(), SENDER_TTL).await.ok()?);
    }
    let id = lease.as_ref()?.id();
    match fleet.store.get(key).await.ok()? {
        Some(kv) => {
            Some(kv.lease == id && decode::<LockDoc>(&kv.value).is_ok_and(|d| d.holder == fleet.holder))
        }
        None => take_lock(fleet.store.as_ref(), key, &fleet.holder, id).await.ok(),
    }
}

/// What was last observed, to turn states into events.
struct Seen {
    started: bool,
    /// Region id -> down, and why (`health` or the drill's id).
    down: BTreeMap<String, Option<String>>,
    /// Active drills: id -> (region, mode).
    drills: BTreeMap<String, (String, String)>,
    connected: bool,
    /// A `store-lost` was sent and no `store-regained` yet.
    lost: bool,
    /// Per surge: its last count, whether engaged, when it last rose.
    surges: Vec<SurgeSeen>,
}

#[derive(Default, Clone)]
struct SurgeSeen {
    count: u64,
    engaged: bool,
    last_rise: Option<Instant>,
}

fn event(name: &str, at_ms: u64, fields: Value) -> Value {
    let mut e = json!({ "event": name, "at_ms": at_ms });
    if let (Some(e), Value::Object(f)) = (e.as_object_mut(), fields) {
        e.extend(f);
    }
    e
}

impl Seen {
    fn new(surges: usize) -> Self {
        Self {
            started: false,
            down: BTreeMap::new(),
            drills: BTreeMap::new(),
            connected: false,
            lost: false,
            surges: vec![SurgeSeen::default(); surges],
        }
    }

    /// The events between the last observation and this one (none on the first: that is the baseline).
    /// `counts[i]` is `surges[i]`'s counter now.
    fn observe(
        &mut self,
        snapshot: Option<&Snapshot>,
        connected: bool,
        surges: &[Surge],
        counts: &[u64],
        now_ms: u64,
        now: Instant,
    ) -> Vec<Value> {
        let mut events = Vec::new();
        let first = !self.started;
        self.started = true;
        // Lost: it was connected and is no longer. Regained: only after a loss (a node still connecting
        // at its first looks has lost nothing).
        if !first && self.connected && !connected {
            self.lost = true;
            events.push(event("store-lost", now_ms, json!({})));
        } else if self.lost && connected {
            self.lost = false;
            events.push(event("store-regained", now_ms, json!({})));
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

        for ((surge, seen), &count) in surges.iter().zip(&mut self.surges).zip(counts) {
            if count > seen.count {
                seen.last_rise = Some(now);
                if !seen.engaged && !first {
                    seen.engaged = true;
                    events.push(event(
                        surge.engaged,
                        now_ms,
                        json!({ "limited_responses": count - seen.count }),
                    ));
                }
            } else if seen.engaged && seen.last_rise.is_none_or(|t| now.duration_since(t) >= QUIET) {
                seen.engaged = false;
                events.push(event(
                    surge.subsided,
                    now_ms,
                    json!({ "quiet_for_ms": QUIET.as_millis() as u64 }),
                ));
            }
            seen.count = count;
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

    /// The example deployment's snapshot with every region up from three vantages but `down`, down.
    fn snapshot_with(down: &[&str], now: u64) -> Snapshot {
        use meridian_store::schema::HealthObservation;
        let config = meridian_config::Config::from_toml_str(include_str!("../../examples/meridian.toml"))
            .expect("the example configuration");
        let keys = Keys::new("/meridian").expect("keys");
        let mut kvs = Vec::new();
        for region in config.regions() {
            for vantage in ["v1", "v2", "v3"] {
                let observation = HealthObservation {
                    schema: 1,
                    healthy: !down.contains(&region.id.as_str()),
                    observed_at_ms: now,
                    latency_ms: None,
                    detail: None,
                };
                kvs.push(meridian_store::KeyValue {
                    key: keys.health(&region.id, vantage),
                    value: encode(&observation),
                    create_revision: 2,
                    mod_revision: 2,
                    version: 1,
                    lease: 0,
                });
            }
        }
        let mut builder = meridian_store::SnapshotBuilder::new(keys, Some(Arc::new(config)));
        builder.reset(kvs, 2);
        builder.build(now).expect("a snapshot")
    }

    #[test]
    fn a_region_the_probers_find_down_is_an_event_and_so_is_its_recovery() {
        let mut seen = Seen::new(0);
        let t0 = Instant::now();
        let now = 1_000_000;
        let up = snapshot_with(&[], now);
        assert!(seen.observe(Some(&up), true, &[], &[], now, t0).is_empty());
        let down = snapshot_with(&["waw"], now);
        let e = seen.observe(Some(&down), true, &[], &[], now + 1, t0);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(
            (&e[0]["event"], &e[0]["region"], &e[0]["cause"]),
            (&json!("region-down"), &json!("waw"), &json!("health"))
        );
        assert!(is_fleet_event("region-down"));
        assert!(
            seen.observe(Some(&down), true, &[], &[], now + 2, t0).is_empty(),
            "once"
        );
        let e = seen.observe(Some(&up), true, &[], &[], now + 3, t0);
        assert_eq!(
            (&e[0]["event"], &e[0]["region"]),
            (&json!("region-up"), &json!("waw"))
        );
    }

    #[test]
    fn rrl_engages_on_a_rising_count_and_subsides_after_quiet() {
        let registry = Registry::new();
        let surges = [Surge::dns_rrl(&registry), Surge::proxy_rate_limit(&registry)];
        let mut seen = Seen::new(surges.len());
        let t0 = Instant::now();
        let mut look = |connected, counts: [u64; 2], ms, secs| {
            seen.observe(
                None,
                connected,
                &surges,
                &counts,
                ms,
                t0 + Duration::from_secs(secs),
            )
        };
        assert!(
            look(false, [0, 0], 0, 0).is_empty(),
            "the first look is the baseline"
        );
        assert!(
            look(true, [0, 0], 0, 0).is_empty(),
            "connecting at start is no regaining"
        );
        let e = look(true, [50, 0], 1, 1);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0]["event"], "rrl-engaged");
        assert_eq!(e[0]["limited_responses"], 50);
        let e = look(true, [60, 3], 2, 2);
        assert_eq!(e.len(), 1, "RRL stays engaged; the proxy's limit engages: {e:?}");
        assert_eq!(e[0]["event"], "rate-limit-engaged");
        assert!(look(true, [60, 4], 3, 5).is_empty(), "both stay engaged");
        let e = look(true, [60, 4], 4, 12);
        let names: Vec<&str> = e.iter().filter_map(|e| e["event"].as_str()).collect();
        assert_eq!(
            names,
            ["rrl-subsided"],
            "10 s quiet since 2 s for RRL, only 7 s for the proxy"
        );
        let e = look(true, [60, 4], 5, 15);
        assert_eq!(e[0]["event"], "rate-limit-subsided");
        let e = look(false, [60, 4], 6, 16);
        assert_eq!(e[0]["event"], "store-lost");
        let e = look(true, [60, 4], 7, 17);
        assert_eq!(e[0]["event"], "store-regained");
    }
}
