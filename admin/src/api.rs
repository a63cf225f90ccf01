//! The admin API's wire format (version 1): request bodies, the answers of writes (weights, drains,
//! drills, the configuration) and of the drill list, and the error document — shared by the server and
//! the client (the `meridian` CLI) so they cannot drift. The larger read documents (status, regions,
//! explain, the stored configuration, the audit log) are built as JSON values by the server and read as
//! such by the client (`docs/admin-api.md` describes every field).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::safety::Violation;

/// The API's path prefix.
pub const PREFIX: &str = "/v1";

/// An error as sent: `{"error": {"code": "...", "message": "...", ...details}}` with an HTTP status.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// Machine-readable code (`conflict`, `refused`, `unknown-region`...).
    pub code: &'static str,
    /// What a human should read.
    pub message: String,
    /// Extra fields merged into the error object (`current`, `violations`...).
    pub details: Option<Value>,
}

impl ApiError {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: None,
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
        Self::new(409, "conflict", message).with(json!({ "current": current }))
    }

    /// 422: the change would break a safety guarantee; repeat with `force` to do it anyway.
    pub fn refused(violations: &[Violation]) -> Self {
        let list: Vec<String> = violations.iter().map(ToString::to_string).collect();
        Self::new(
            422,
            "refused",
            format!("refused: {} (use force to override)", list.join("; ")),
        )
        .with(json!({ "violations": violations }))
    }

    /// 503: the store cannot be reached, or this node has no state yet.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "unavailable", message)
    }

    /// 500: a bug, or a stored document this build cannot read.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "internal", message)
    }

    /// Adds detail fields.
    pub fn with(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// The response body.
    pub fn body(&self) -> Value {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let (Some(Value::Object(extra)), Value::Object(obj)) = (&self.details, &mut error) {
            for (k, v) in extra {
                obj.insert(k.clone(), v.clone());
            }
        }
        json!({ "error": error })
    }
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

/// `POST /v1/drills`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartDrill {
    /// The region.
    pub region: String,
    /// `down`, `drain` or `capacity=PCT`.
    pub mode: String,
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
    pub mode: String,
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
