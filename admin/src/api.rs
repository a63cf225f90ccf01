//! The admin API's wire format (version 1): request bodies, the answers of writes (weights, drains,
//! drills, the configuration), the read documents the CLI reads (status, regions, drills, the explain
//! answer) and the error document — shared by the server, which builds them, and the client (the
//! `meridian` CLI), which reads them, so they cannot drift. The server sends every answer through a
//! `serde_json::Value`, so object keys go out sorted whatever the field order here. The stored
//! configuration and the audit log stay JSON values (the CLI prints them as they come;
//! `docs/admin-api.md` describes every field).

use meridian_store::schema::DrillModeDoc;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::safety::Violation;

/// The API's path prefix.
pub const PREFIX: &str = "/v1";

/// An error as sent: [`ErrorDocument`] with an HTTP status.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// Machine-readable code (`conflict`, `refused`, `unknown-region`...).
    pub code: &'static str,
    /// What a human should read.
    pub message: String,
    /// A conflict's current value (`current`; `Some(Value::Null)`: there is none now).
    pub current: Option<Value>,
    /// A refusal's violations (`violations`).
    pub violations: Vec<Violation>,
}

impl ApiError {
    /// An error with no details.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            current: None,
            violations: Vec::new(),
        }
    }

    /// 400: the request itself is wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "bad-request", message)
    }

    /// 401: no token, or the wrong one.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(401, "unauthorized", message)
    }

    /// 404 with a specific code (`unknown-region`, `unknown-drill`, `not-found`...).
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(404, code, message)
    }

    /// 409: someone changed it first; `current` is what is there now.
    pub fn conflict(message: impl Into<String>, current: Value) -> Self {
        Self {
            current: Some(current),
            ..Self::new(409, "conflict", message)
        }
    }

    /// 422: the change would break a safety guarantee; repeat with `force` to do it anyway.
    pub fn refused(violations: &[Violation]) -> Self {
        Self {
            violations: violations.to_vec(),
            ..Self::new(422, "refused", refused_message(violations))
        }
    }

    /// 503: the store cannot be reached, or this node has no state yet.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "unavailable", message)
    }

    /// 500: a bug, or a stored document this build cannot read.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "internal", message)
    }

    /// The response body.
    pub fn body(&self) -> ErrorDocument {
        ErrorDocument {
            error: ErrorBody {
                code: self.code.to_owned(),
                message: self.message.clone(),
                current: self.current.clone(),
                violations: self.violations.clone(),
            },
        }
    }
}

/// The message of a refusal: every violation, and how to override them.
pub fn refused_message(violations: &[Violation]) -> String {
    let list: Vec<String> = violations.iter().map(ToString::to_string).collect();
    format!("refused: {} (use force to override)", list.join("; "))
}

/// The body of every error answer: `{"error": {...}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorDocument {
    /// The error.
    pub error: ErrorBody,
}

/// An error: its code and message, and the details some errors carry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    // Fields in alphabetical order: the server sends this one straight, and the keys went out sorted
    // when it was built as a JSON value.
    /// Machine-readable code (`conflict`, `refused`, `unknown-region`...).
    pub code: String,
    /// 409 `conflict`: the current value (`null`: there is none). A conflict's value is whichever stored
    /// document changed first, so it stays a JSON value.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub current: Option<Value>,
    /// What a human should read.
    pub message: String,
    /// 422 `refused`: the safety guarantees the change would break.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<Violation>,
}

/// Reads a field that is present as `Some`, even when it is `null` (`"current": null` says there is no
/// current value, which is not the same as no `current` at all).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({} {})", self.message, self.status, self.code)
    }
}

impl From<meridian_store::StoreError> for ApiError {
    fn from(e: meridian_store::StoreError) -> Self {
        if e.is_retryable() {
            Self::unavailable(e.to_string())
        } else {
            Self::internal(e.to_string())
        }
    }
}

/// Who makes a change, and the guards on it: common to every write.
///
/// Each field names itself in a deserialization error: the bodies that flatten `ChangeMeta` into theirs
/// ([`SetWeight`], [`StartDrill`]) read it from a buffer, where an error would otherwise not say which
/// field was wrong (`invalid type: string "yes", expected a boolean`, of what?).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChangeMeta {
    /// Who (`alice@ops1`); recorded in the audit log and the document.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "named::author")]
    pub author: Option<String>,
    /// Why; recorded too.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "named::reason")]
    pub reason: Option<String>,
    /// Apply only if the key did not change after this store revision (the `revision` of the status you
    /// read); otherwise 409 with the current value.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "named::expect_revision"
    )]
    pub expect_revision: Option<i64>,
    /// Apply even if a safety check refuses.
    #[serde(deserialize_with = "named::force")]
    pub force: bool,
}

/// [`ChangeMeta`]'s fields, read with their name in the error (`force: invalid type: ...`).
mod named {
    use serde::{Deserialize, Deserializer, de::Error};

    fn field<'de, D: Deserializer<'de>, T: Deserialize<'de>>(name: &str, d: D) -> Result<T, D::Error> {
        T::deserialize(d).map_err(|e| D::Error::custom(format_args!("{name}: {e}")))
    }

    pub(super) fn author<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        field("author", d)
    }

    pub(super) fn reason<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        field("reason", d)
    }

    pub(super) fn expect_revision<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        field("expect_revision", d)
    }

    pub(super) fn force<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        field("force", d)
    }
}

/// `PUT /v1/regions/{id}/weight`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetWeight {
    /// 0 to 10000.
    pub weight: u32,
    /// Author, reason, guards.
    #[serde(flatten)]
    pub meta: ChangeMeta,
}

/// Parses `down`, `drain`, `capacity=PCT` (also `capacity:PCT`).
pub fn parse_drill_mode(text: &str) -> Result<DrillModeDoc, String> {
    let t = text.trim().to_ascii_lowercase();
    match t.as_str() {
        "down" => Ok(DrillModeDoc::Down),
        "drain" => Ok(DrillModeDoc::Drain),
        _ => {
            let pct = t
                .strip_prefix("capacity=")
                .or_else(|| t.strip_prefix("capacity:"))
                .ok_or_else(|| format!("drill mode {text:?}: expected down, drain or capacity=PCT"))?;
            let pct = pct.trim_end_matches('%');
            match pct.parse::<u8>() {
                Ok(p) if p <= 100 => Ok(DrillModeDoc::Capacity { percent: p }),
                _ => Err(format!(
                    "drill mode {text:?}: PCT must be a whole number from 0 to 100"
                )),
            }
        }
    }
}

/// The mode as written on the command line and in drill ids.
pub fn mode_text(mode: DrillModeDoc) -> String {
    match mode {
        DrillModeDoc::Down => "down".to_owned(),
        DrillModeDoc::Drain => "drain".to_owned(),
        DrillModeDoc::Capacity { percent } => format!("capacity={percent}"),
    }
}

/// A drill's mode as the API writes it: `down`, `drain`, `capacity=PCT`; read also as `capacity:PCT%`, in
/// any case ([`parse_drill_mode`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DrillModeText(pub DrillModeDoc);

impl std::str::FromStr for DrillModeText {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        parse_drill_mode(s).map(Self)
    }
}

impl std::fmt::Display for DrillModeText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(&mode_text(self.0))
    }
}

impl Serialize for DrillModeText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&mode_text(self.0))
    }
}

impl<'de> Deserialize<'de> for DrillModeText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// `POST /v1/drills`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartDrill {
    /// The region.
    pub region: String,
    /// `down`, `drain` or `capacity=PCT`.
    pub mode: DrillModeText,
    /// How long it lasts, in milliseconds (at most 72 hours).
    pub duration_ms: u64,
    /// Its identifier (default: `REGION-MODE-STARTMS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Author, reason, guards.
    #[serde(flatten)]
    pub meta: ChangeMeta,
}

/// `PUT /v1/config`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutConfig {
    /// The configuration file's text.
    pub toml: String,
    /// Apply only if the stored configuration is at this revision (0: there must be none).
    #[serde(default)]
    pub expect_revision: Option<i64>,
    /// Who.
    #[serde(default)]
    pub author: Option<String>,
    /// Apply even if a safety check refuses (the audit record lists what was forced).
    #[serde(default)]
    pub force: bool,
}

/// The answer to a write of a weight, a drain or a drill (`200`, `201` for a drill start).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The store revision of the change.
    pub revision: i64,
    /// What was done, as the audit log says it (`region set-weight fra 50`).
    pub what: String,
    /// The safety refusals overridden with `force` (empty unless forced).
    pub forced: Vec<Violation>,
}

/// A drill as the API shows it (`GET /v1/drills`, status, the answer to a drill start).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillView {
    /// Its identifier.
    pub id: String,
    /// The region drilled.
    pub region: String,
    /// `down`, `drain` or `capacity=PCT`.
    pub mode: DrillModeText,
    /// Start, ms since the epoch.
    pub started_at_ms: u64,
    /// End, ms since the epoch.
    pub expires_at_ms: u64,
    /// Until the end, as of the answer (0 once expired).
    pub remaining_ms: u64,
    /// Whether it acts now.
    pub active: bool,
    /// Who started it.
    pub author: String,
    /// Why.
    pub reason: String,
}

/// The answer to `POST /v1/drills` (201).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillStarted {
    /// The drill's identifier.
    pub id: String,
    /// Revision, what, forced.
    #[serde(flatten)]
    pub applied: Applied,
    /// The drill as started.
    pub drill: DrillView,
}

/// The answer to `DELETE /v1/drills/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillStopped {
    /// The drill's identifier.
    pub id: String,
    /// Revision, what, forced.
    #[serde(flatten)]
    pub applied: Applied,
}

/// `GET /v1/drills[?all=true]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillList {
    /// The snapshot's store revision.
    pub revision: i64,
    /// The node's time when it answered.
    pub now_ms: u64,
    /// Active drills (and expired ones with `all`).
    pub drills: Vec<DrillView>,
}

/// The answer to `PUT /v1/config`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub enum ConfigApplied {
    /// Written.
    Applied {
        /// The configuration's new revision.
        revision: i64,
        /// The revision it replaced (none: the store had no configuration).
        previous_revision: Option<i64>,
        /// The safety refusals overridden with `force` (empty unless forced).
        forced: Vec<Violation>,
    },
    /// The store already held exactly this text; nothing was written.
    Unchanged {
        /// Its revision.
        revision: i64,
    },
}

/// The longest drill (Route 53 ARC's zonal shifts stop at 72 hours too).
pub const MAX_DRILL_MS: u64 = 72 * 3600 * 1000;

/// `GET /v1/status`: what this node serves from, and every region, service, drill and node as it sees
/// them (`docs/admin-api.md`, "Status").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// This node's name.
    pub node: String,
    /// The store it follows (`etcd http://...`, `embedded ...`).
    pub store: String,
    /// The node's time when it answered.
    pub now_ms: u64,
    /// The snapshot's store revision.
    pub revision: i64,
    /// Whether the node's watcher hears from the store now.
    pub connected: bool,
    /// How long since the store last confirmed the snapshot.
    pub staleness_ms: u64,
    /// The zone's health store, when the node has one (`null` otherwise).
    pub health_store: Option<HealthStoreStatus>,
    /// Where the configuration came from.
    pub config: ConfigOrigin,
    /// Whether health is in panic (most regions look down; nothing newly marked down).
    pub panic: bool,
    /// Every region.
    pub regions: Vec<RegionStatus>,
    /// Every service.
    pub services: Vec<ServiceStatus>,
    /// The active drills.
    pub drills: Vec<DrillView>,
    /// Store documents the snapshot skipped, and why.
    pub problems: Vec<String>,
    /// The latency matrix.
    pub latency: LatencyMatrix,
    /// The ACME certificates of the configuration (empty without `[acme]`).
    pub certificates: Vec<CertificateStatus>,
    /// The registered nodes (in `GET /v1/status`; the dashboard's state leaves them out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<NodeList>,
}

/// The zone's health store as a node follows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthStoreStatus {
    /// Whether the node hears from it now.
    pub connected: bool,
    /// The revision of the health the snapshot holds.
    pub revision: Option<i64>,
    /// How long since it last confirmed that health.
    pub staleness_ms: Option<u64>,
}

/// Where a node's configuration came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "lowercase")]
pub enum ConfigOrigin {
    /// The store's `config` key.
    Store {
        /// Its revision.
        revision: i64,
        /// Who applied it.
        author: String,
        /// When.
        applied_at_ms: u64,
    },
    /// None in the store (yet): the file the process started with.
    Bootstrap,
}

/// One region's status (`GET /v1/status`, `/v1/regions`, `/v1/regions/{id}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegionStatus {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its health, and every vantage's opinion.
    pub health: RegionHealthStatus,
    /// The weight in force.
    pub weight: u32,
    /// The configuration's weight.
    pub configured_weight: u32,
    /// The operator's weight, if one replaces the configuration's.
    pub weight_override: Option<WeightOverrideView>,
    /// The operator's drain, if the region is drained.
    pub drained: Option<DrainView>,
    /// Requests in flight, as the proxies report them (none reported: `null`).
    pub in_flight: Option<u32>,
    /// The configured capacity.
    pub capacity: u32,
    /// The capacity after capacity drills.
    pub effective_capacity: u64,
    /// `in_flight` over `effective_capacity` (`null` without load reports or capacity).
    pub utilisation: Option<f64>,
    /// Its active drills.
    pub drills: Vec<DrillView>,
    /// Whether it may be answered now.
    pub usable: bool,
    /// Why not, when it is not (`drained`, `weight 0`, `down`, `drill ID (MODE)`).
    pub excluded: Option<String>,
    /// Its IPv4 addresses.
    pub ipv4: Vec<String>,
    /// Its IPv6 addresses.
    pub ipv6: Vec<String>,
}

/// A region's health.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionHealthStatus {
    /// `up`, `down` or `unknown`.
    pub state: String,
    /// Whether the opinions are too old to act on.
    pub stale: bool,
    /// Since when it is in this state.
    pub since_ms: Option<u64>,
    /// Whether panic keeps it up.
    pub held_by_panic: bool,
    /// Whether it has health checks at all.
    pub probed: bool,
    /// Each vantage's opinion.
    pub vantages: Vec<VantageOpinion>,
}

/// One vantage's opinion of a region.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VantageOpinion {
    /// The vantage (the prober's region).
    pub vantage: String,
    /// What it saw.
    pub healthy: bool,
    /// Whether it is recent enough to count.
    pub fresh: bool,
    /// When it looked.
    pub observed_at_ms: u64,
    /// What failed, when something did.
    pub detail: Option<String>,
}

/// An operator's weight for a region.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightOverrideView {
    /// The weight.
    pub weight: u32,
    /// Who set it.
    pub author: String,
    /// Why.
    pub reason: String,
    /// When.
    pub at_ms: u64,
}

/// An operator's drain of a region.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainView {
    /// Who drained it.
    pub author: String,
    /// Why.
    pub reason: String,
    /// When.
    pub at_ms: u64,
}

/// A service as the status shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// Its name.
    pub name: String,
    /// Its hostname.
    pub hostname: String,
    /// Its regions.
    pub regions: Vec<String>,
}

/// The latency matrix (`docs/latency.md`): client area × region.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyMatrix {
    /// The services that steer by latency.
    pub services: Vec<String>,
    /// The regions, in the order of each row's cells.
    pub regions: Vec<String>,
    /// One row per client area, most samples first.
    pub areas: Vec<LatencyRow>,
}

/// One client area's row of the latency matrix.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyRow {
    /// The area.
    pub area: String,
    /// One cell per region (`null`: nothing measured).
    pub cells: Vec<Option<LatencyCell>>,
}

/// An estimate of the round trip from an area to a region.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyCell {
    /// The estimate, ms (one decimal).
    pub rtt_ms: f64,
    /// How many samples it rests on.
    pub samples: u32,
    /// How old it is.
    pub age_ms: u64,
}

/// An ACME certificate of the configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateStatus {
    /// Its id.
    pub id: String,
    /// Its names.
    pub names: Vec<String>,
    /// Whether one is in the store.
    pub issued: bool,
    /// Who issued it.
    pub issuer: Option<String>,
    /// Valid from.
    pub not_before_ms: Option<u64>,
    /// Valid until.
    pub not_after_ms: Option<u64>,
    /// When it renews.
    pub renew_at_ms: Option<u64>,
    /// The node that ordered it.
    pub ordered_by: Option<String>,
    /// The last order's start.
    pub last_attempt_ms: Option<u64>,
    /// The last successful order.
    pub last_success_ms: Option<u64>,
    /// How the last order failed, if it did.
    pub last_error: Option<String>,
    /// Failures in a row.
    pub failures: u32,
    /// When the next order is due after a failure.
    pub next_attempt_ms: Option<u64>,
}

/// The registered nodes, or why they cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NodeList {
    /// The registrations.
    Listed {
        /// The store's revision when read.
        store_revision: i64,
        /// Each node.
        list: Vec<NodeStatus>,
    },
    /// The store did not answer.
    Unreadable {
        /// Why.
        error: String,
    },
}

/// A registered node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// `dns`, `proxy`, `prober`...
    pub role: String,
    /// Its region, if it has one.
    pub region: Option<String>,
    /// Its instance name.
    pub instance: String,
    /// Its version.
    pub version: String,
    /// The revision it serves.
    pub revision: i64,
    /// How far behind the store it is.
    pub behind: i64,
    /// How long since the store last confirmed its snapshot.
    pub staleness_ms: u64,
    /// Whether it hears from the store.
    pub connected: bool,
    /// Its last report's age.
    pub report_age_ms: u64,
    /// How long it has been up.
    pub up_ms: u64,
    /// `ok`, `lagging` or `silent`.
    pub state: String,
}

/// `GET /v1/regions`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegionList {
    /// The snapshot's store revision.
    pub revision: i64,
    /// Every region.
    pub regions: Vec<RegionStatus>,
}

/// `GET /v1/regions/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegionAnswer {
    /// The snapshot's store revision.
    pub revision: i64,
    /// The region.
    pub region: RegionStatus,
}

/// `GET /v1/drills/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillAnswer {
    /// The snapshot's store revision.
    pub revision: i64,
    /// The drill.
    pub drill: DrillView,
}

/// `GET /v1/explain`: the explanation as text and as JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExplainAnswer {
    /// The snapshot's store revision.
    pub revision: i64,
    /// The report as `meridian explain` prints it.
    pub text: String,
    /// The report as data.
    pub report: ExplainReport,
}

/// The explain report as data (`meridian explain --json`, `GET /v1/explain`'s `report`): where the client
/// is, which regions it would be sent to, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExplainReport {
    /// The service's name.
    pub service: String,
    /// Its hostname.
    pub hostname: String,
    /// Its steering policy.
    pub policy: String,
    /// The client.
    pub client: ExplainClient,
    /// The residency rules that cover the client, in words.
    pub residency: String,
    /// What ordered the candidates, in words.
    pub basis: String,
    /// The answer.
    pub decision: ExplainDecision,
    /// Every region of the service, with its verdict.
    pub candidates: Vec<ExplainCandidate>,
    /// How latency steering decided (`null` when the service does not steer by latency).
    pub latency: Option<ExplainLatency>,
}

/// The client of an explanation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExplainClient {
    /// Its address.
    pub ip: String,
    /// Its network (the /24 or /56 the request hash derives from).
    pub network: String,
    /// The GeoIP database that located it.
    pub geoip: String,
    /// Where it is.
    pub location: ExplainLocation,
    /// The request hash.
    pub request_hash: u64,
}

/// Where a client is, or why that is unknown.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ExplainLocation {
    /// Not located (`known` is false). First: the located form would read this one too.
    Unknown {
        /// `false`.
        known: bool,
        /// `non-routable` or `not-in-database`.
        reason: String,
    },
    /// Located (`known` is true).
    Known {
        /// `true`.
        known: bool,
        /// Its country.
        country: Option<String>,
        /// Its continent.
        continent: Option<String>,
        /// Its coordinates.
        coordinates: Option<Coordinates>,
        /// Where they come from: `database` or `country-population-centre`.
        coordinates_source: Option<String>,
    },
}

/// A point on the globe.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Coordinates {
    /// Latitude, degrees.
    pub lat: f64,
    /// Longitude, degrees.
    pub lon: f64,
}

/// The answer an explanation explains.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExplainDecision {
    /// `normal`, `panic`, `fallback` or `no-answer`.
    pub mode: String,
    /// What the mode means here (`null` when normal).
    pub detail: Option<String>,
    /// The regions answered, first first.
    pub regions: Vec<String>,
    /// The answer's TTL.
    pub ttl: u32,
    /// The IPv4 addresses answered.
    pub ipv4: Vec<String>,
    /// The IPv6 addresses answered.
    pub ipv6: Vec<String>,
}

/// One region of the service, and the verdict on it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExplainCandidate {
    /// Its id.
    pub region: String,
    /// Its name.
    pub name: String,
    /// Its distance from the client, km (one decimal; `null` when the client is not located).
    pub distance_km: Option<f64>,
    /// `up`, `down` or `unknown`.
    pub health: Option<String>,
    /// Whether an operator drained it.
    pub drained: Option<bool>,
    /// Its weight.
    pub weight: Option<u32>,
    /// Requests in flight.
    pub in_flight: Option<u32>,
    /// Its capacity.
    pub capacity: Option<u32>,
    /// `chosen`, `available`, `down`, `drained`...
    pub verdict: Option<String>,
    /// Its place in the answer, from 1, when chosen.
    pub rank: Option<u8>,
    /// The latency measured from the client's area.
    pub latency: Option<ExplainMeasured>,
    /// Why, in words.
    pub reason: String,
}

/// A latency estimate in an explanation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExplainMeasured {
    /// The estimate, ms.
    pub rtt_ms: f64,
    /// The samples it rests on.
    pub samples: u32,
    /// Its age.
    pub age_ms: u64,
    /// Whether it has the samples the service needs to act on it.
    pub enough_samples: bool,
}

/// How latency steering decided.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExplainLatency {
    /// The client's area.
    pub area: Option<String>,
    /// `no-area`, `not-measured`, `within-margin` or `faster`.
    pub outcome: String,
    /// The region distance alone would have put first.
    pub nearest: Option<String>,
    /// The region latency put first.
    pub chosen: Option<String>,
    /// The margin a region had to win by, ms.
    pub margin_ms: f64,
    /// The region answering first to be measured (this network is in the exploration share).
    pub explored: Option<String>,
    /// The service's exploration share.
    pub explore_share: Option<f64>,
    /// What happened, in words.
    pub summary: Option<String>,
}
