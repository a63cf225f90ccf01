//! What Meridian keeps in the store: the key layout under a prefix, and the JSON documents at each key.
//! Every document carries `"schema": 1`; a reader meeting another version, or garbage, reports the key
//! and skips it, it never crashes. `docs/state-schema.md` is the human version of this file.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::kv::{Result, StoreError};

/// The document schema version this build reads and writes.
pub const DOC_SCHEMA: u32 = 1;

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "/meridian/";

/// Key layout under a prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

/// What a key is, parsed back from its path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind<'a> {
    /// `config`: the desired configuration.
    Config,
    /// `overrides/weights/REGION`.
    Weight(&'a str),
    /// `overrides/drains/REGION`.
    Drain(&'a str),
    /// `overrides/backend-drains/SERVICE/ADDRESS`: one backend of a service drained at the proxies.
    BackendDrain {
        /// The service.
        service: &'a str,
        /// The backend's address as configured (`10.0.0.1:8080`, `[2001:db8::1]:8080`).
        backend: &'a str,
    },
    /// `drills/ID`.
    Drill(&'a str),
    /// `health/TARGET/VANTAGE` (leased by the prober).
    Health {
        /// What was probed (a region id, or `region:endpoint`).
        target: &'a str,
        /// Which prober saw it.
        vantage: &'a str,
    },
    /// `load/REGION/INSTANCE` (leased by the proxy).
    Load {
        /// The region.
        region: &'a str,
        /// The proxy instance.
        instance: &'a str,
    },
    /// `latency/REGION/INSTANCE`: a proxy's latency summary (leased by the proxy).
    Latency {
        /// The region.
        region: &'a str,
        /// The proxy instance.
        instance: &'a str,
    },
    /// `audit/...`: an operator change record.
    Audit,
    /// `nodes/ROLE/INSTANCE`: a running node's registration (leased; read by `meridian status`, never by
    /// a decision).
    Node,
    /// `acme/lock`: the node ordering ACME certificates now (leased; one at a time).
    AcmeLock,
    /// `notify/sender`: the node sending the fleet's webhook events now (leased; one at a time).
    NotifySender,
    /// `notify/sent`: the fleet's webhook events sent lately (read by the next sender on a handover).
    NotifySent,
    /// `acme/account` (the `[acme]` CA's) or `acme/accounts/ID` (a certificate's own CA's): an ACME
    /// account's credentials, encrypted (read by the ordering node only).
    AcmeAccount,
    /// `acme/challenges/NAME`: DNS-01 answers for one name being validated (leased by the orderer).
    AcmeChallenge(&'a str),
    /// `acme/certs/ID`: an issued certificate, its private key encrypted.
    AcmeCert(&'a str),
    /// `acme/status/ID`: how ordering the certificate went last.
    AcmeStatus(&'a str),
    /// Anything else under the prefix (reported, ignored).
    Unknown,
}

impl KeyKind<'_> {
    /// Whether the key belongs in a zone's health store when there is one (docs/deployment.md, "The
    /// Atlantic cut"): prober opinions, load reports and latency summaries — leased, rebuilt within
    /// seconds, and what must keep working inside a zone cut off from the global store's majority.
    pub fn is_zone_scoped(&self) -> bool {
        matches!(
            self,
            Self::Health { .. } | Self::Load { .. } | Self::Latency { .. }
        )
    }
}

impl Keys {
    /// The layout under `prefix`, which must start with `/`; a trailing `/` is added if missing.
    pub fn new(prefix: &str) -> Result<Self> {
        if !prefix.starts_with('/') {
            return Err(StoreError::Invalid(format!(
                "key prefix {prefix:?} must start with '/'"
            )));
        }
        let prefix = if prefix.ends_with('/') {
            prefix.to_owned()
        } else {
            format!("{prefix}/")
        };
        Ok(Self { prefix })
    }

    /// The prefix (ends with `/`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The desired configuration.
    pub fn config(&self) -> String {
        format!("{}config", self.prefix)
    }

    /// A region's weight override.
    pub fn weight(&self, region: &str) -> String {
        format!("{}overrides/weights/{region}", self.prefix)
    }

    /// A region's drain.
    pub fn drain(&self, region: &str) -> String {
        format!("{}overrides/drains/{region}", self.prefix)
    }

    /// A backend drain: the proxies stop sending the service's requests to `backend` (`IP:PORT`).
    pub fn backend_drain(&self, service: &str, backend: &str) -> String {
        format!("{}overrides/backend-drains/{service}/{backend}", self.prefix)
    }

    /// A drill.
    pub fn drill(&self, id: &str) -> String {
        format!("{}drills/{id}", self.prefix)
    }

    /// A prober's observation of a target.
    pub fn health(&self, target: &str, vantage: &str) -> String {
        format!("{}health/{target}/{vantage}", self.prefix)
    }

    /// A node's registration: `nodes/ROLE/INSTANCE`.
    pub fn node(&self, role: &str, instance: &str) -> String {
        format!("{}nodes/{role}/{instance}", self.prefix)
    }

    /// Where node registrations live.
    pub fn nodes_prefix(&self) -> String {
        format!("{}nodes/", self.prefix)
    }

    /// A proxy instance's load report.
    pub fn load(&self, region: &str, instance: &str) -> String {
        format!("{}load/{region}/{instance}", self.prefix)
    }

    /// A proxy instance's latency summary (`docs/latency.md`).
    pub fn latency(&self, region: &str, instance: &str) -> String {
        format!("{}latency/{region}/{instance}", self.prefix)
    }

    /// Prefix of the audit log (keys sort by time).
    pub fn audit_prefix(&self) -> String {
        format!("{}audit/", self.prefix)
    }

    /// An audit record key: time first, so the log lists in order.
    pub fn audit(&self, at_ms: u64, nonce: u64) -> String {
        format!("{}audit/{at_ms:020}-{nonce:016x}", self.prefix)
    }

    /// The ACME ordering lock.
    pub fn acme_lock(&self) -> String {
        format!("{}acme/lock", self.prefix)
    }

    /// The lock of the node sending the fleet's webhook events.
    pub fn notify_sender(&self) -> String {
        format!("{}notify/sender", self.prefix)
    }

    /// The fleet's webhook events sent lately.
    pub fn notify_sent(&self) -> String {
        format!("{}notify/sent", self.prefix)
    }

    /// The ACME account (credentials encrypted).
    pub fn acme_account(&self) -> String {
        format!("{}acme/account", self.prefix)
    }

    /// The account at another CA than `[acme]`'s (a certificate's own `directory`); `id` names the CA
    /// and contacts (see `meridian_acme`).
    pub fn acme_account_at(&self, id: &str) -> String {
        format!("{}acme/accounts/{id}", self.prefix)
    }

    /// The DNS-01 answers for `name` (`meet.gslb.example`, `*.gslb.example`).
    pub fn acme_challenge(&self, name: &str) -> String {
        format!("{}acme/challenges/{name}", self.prefix)
    }

    /// An ACME certificate, by its id (its first name).
    pub fn acme_cert(&self, id: &str) -> String {
        format!("{}acme/certs/{id}", self.prefix)
    }

    /// How ordering certificate `id` went last.
    pub fn acme_status(&self, id: &str) -> String {
        format!("{}acme/status/{id}", self.prefix)
    }

    /// What `key` is.
    pub fn classify<'a>(&self, key: &'a str) -> KeyKind<'a> {
        let Some(rest) = key.strip_prefix(self.prefix.as_str()) else {
            return KeyKind::Unknown;
        };
        let parts: Vec<&'a str> = rest.split('/').collect();
        match parts.as_slice() {
            ["config"] => KeyKind::Config,
            ["overrides", "weights", r] if !r.is_empty() => KeyKind::Weight(r),
            ["overrides", "drains", r] if !r.is_empty() => KeyKind::Drain(r),
            ["overrides", "backend-drains", s, b] if !s.is_empty() && !b.is_empty() => {
                KeyKind::BackendDrain {
                    service: s,
                    backend: b,
                }
            }
            ["drills", id] if !id.is_empty() => KeyKind::Drill(id),
            ["health", t, v] if !t.is_empty() && !v.is_empty() => KeyKind::Health {
                target: t,
                vantage: v,
            },
            ["load", r, i] if !r.is_empty() && !i.is_empty() => KeyKind::Load {
                region: r,
                instance: i,
            },
            ["latency", r, i] if !r.is_empty() && !i.is_empty() => KeyKind::Latency {
                region: r,
                instance: i,
            },
            ["audit", _] => KeyKind::Audit,
            ["nodes", role, instance] if !role.is_empty() && !instance.is_empty() => KeyKind::Node,
            ["acme", "lock"] => KeyKind::AcmeLock,
            ["notify", "sender"] => KeyKind::NotifySender,
            ["notify", "sent"] => KeyKind::NotifySent,
            ["acme", "account"] => KeyKind::AcmeAccount,
            ["acme", "accounts", id] if !id.is_empty() => KeyKind::AcmeAccount,
            ["acme", "challenges", n] if !n.is_empty() => KeyKind::AcmeChallenge(n),
            ["acme", "certs", id] if !id.is_empty() => KeyKind::AcmeCert(id),
            ["acme", "status", id] if !id.is_empty() => KeyKind::AcmeStatus(id),
            _ => KeyKind::Unknown,
        }
    }
}

/// `config`: the desired configuration, as the TOML an operator applied (validated before writing, and
/// again by every reader).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigDoc {
    /// Document schema version.
    pub schema: u32,
    /// The configuration file's text.
    pub toml: String,
    /// Who applied it.
    pub author: String,
    /// When, in milliseconds since the Unix epoch.
    pub applied_at_ms: u64,
}

/// `overrides/weights/REGION`: an operator's weight for a region, replacing the configured one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightOverride {
    /// Document schema version.
    pub schema: u32,
    /// 0 to 10000.
    pub weight: u32,
    /// Who set it.
    pub author: String,
    /// Why.
    pub reason: String,
    /// When, ms since the epoch.
    pub at_ms: u64,
}

/// `overrides/drains/REGION`: the region receives no new clients while this exists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainOverride {
    /// Document schema version.
    pub schema: u32,
    /// Who drained it.
    pub author: String,
    /// Why.
    pub reason: String,
    /// When, ms since the epoch.
    pub at_ms: u64,
}

/// What a drill does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum DrillModeDoc {
    /// As if health checks failed.
    Down,
    /// As if drained.
    Drain,
    /// As if capacity were this percentage.
    Capacity {
        /// 0 to 100.
        percent: u8,
    },
}

/// `drills/ID`: a failover drill. Readers ignore it once `expires_at_ms` has passed, so it ends on time
/// even if nobody deletes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillDoc {
    /// Document schema version.
    pub schema: u32,
    /// The region drilled.
    pub region: String,
    /// The effect.
    pub mode: DrillModeDoc,
    /// Start, ms since the epoch.
    pub started_at_ms: u64,
    /// End, ms since the epoch.
    pub expires_at_ms: u64,
    /// Who started it.
    pub author: String,
    /// Why.
    pub reason: String,
}

/// `health/TARGET/VANTAGE`: one prober's latest opinion of one target, under the prober's lease.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HealthObservation {
    /// Document schema version.
    pub schema: u32,
    /// Whether the target passed (after the prober's rise/fall thresholds).
    pub healthy: bool,
    /// When, ms since the epoch.
    pub observed_at_ms: u64,
    /// Probe latency, if it answered.
    #[serde(default)]
    pub latency_ms: Option<f64>,
    /// Why it failed, if it did.
    #[serde(default)]
    pub detail: Option<String>,
}

/// `load/REGION/INSTANCE`: one proxy instance's load, under its lease.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    /// Document schema version.
    pub schema: u32,
    /// Requests in flight now.
    pub in_flight: u32,
    /// Requests per second over the last interval.
    pub request_rate: f64,
    /// In-flight requests this instance serves well, if it knows (else the region's configured capacity
    /// applies).
    #[serde(default)]
    pub capacity: Option<u32>,
    /// When, ms since the epoch.
    pub reported_at_ms: u64,
    /// Share of the last interval's requests that failed (5xx answered, or no answer), 0 to 1.
    #[serde(default)]
    pub error_rate: Option<f64>,
    /// Latency quantiles of the last interval's requests, in milliseconds (absent without requests).
    #[serde(default)]
    pub latency_ms: Option<LatencyQuantiles>,
    /// Backends of the region (all services) that the instance can send requests to now.
    #[serde(default)]
    pub healthy_backends: Option<u32>,
}

/// `latency/REGION/INSTANCE`: the round-trip times one proxy instance measured on its client connections,
/// per client area, under its lease (`docs/latency.md`). Bounded: at most [`MAX_LATENCY_AREAS`] areas, the
/// ones with the most samples.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyReport {
    /// Document schema version.
    pub schema: u32,
    /// When, ms since the epoch.
    pub reported_at_ms: u64,
    /// One entry per client area.
    pub areas: Vec<AreaLatency>,
}

/// Areas in one [`LatencyReport`], at most.
pub const MAX_LATENCY_AREAS: usize = 64;

/// One client area's estimate in a [`LatencyReport`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AreaLatency {
    /// The area (`PL@50,20`: country, then the south-west corner of its 10-degree cell).
    pub area: String,
    /// Decayed mean of the connections' TCP round-trip time, milliseconds.
    pub rtt_ms: f64,
    /// Decayed number of samples behind it.
    pub samples: u32,
}

/// `nodes/ROLE/INSTANCE`: a running node says what it is and how current its state is, every second,
/// under its lease (a node that dies vanishes when the lease expires; one whose reports stop while its
/// lease lives shows as silent).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeReport {
    /// Document schema version.
    pub schema: u32,
    /// `dns`, `proxy`, `health` or `up`.
    pub role: String,
    /// The region it serves (proxies), or its vantage point (probers); none for DNS and `up`.
    #[serde(default)]
    pub region: Option<String>,
    /// The instance name (unique per role).
    pub instance: String,
    /// The Meridian version it runs.
    pub version: String,
    /// The store revision its snapshot is in sync with.
    pub revision: i64,
    /// Milliseconds since its watcher last heard from the store.
    pub staleness_ms: u64,
    /// Whether its watcher is connected to the store.
    pub connected: bool,
    /// When it started, ms since the epoch.
    pub started_at_ms: u64,
    /// When this report was written, ms since the epoch.
    pub reported_at_ms: u64,
}

/// Latency quantiles, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyQuantiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
}

/// `audit/TIME-NONCE`: who changed what, when, from what to what.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Document schema version.
    pub schema: u32,
    /// Who.
    pub who: String,
    /// What (`config apply`, `region drain waw`...).
    pub what: String,
    /// When, ms since the epoch.
    pub at_ms: u64,
    /// The state before (null if none).
    pub before: serde_json::Value,
    /// The state after (null if removed).
    pub after: serde_json::Value,
}

/// A leased lock (`acme/lock`, `notify/sender`): which node holds it, under its lease (it vanishes with
/// the node).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockDoc {
    /// Document schema version.
    pub schema: u32,
    /// The node (`ROLE/INSTANCE`).
    pub holder: String,
    /// Since when, ms since the epoch.
    pub since_ms: u64,
}

/// `notify/sent`: the fleet's webhook events the sender handed to its webhooks lately, newest last (at
/// most [`NotifySentDoc::KEEP`]). A node that takes over sending replays the events it saw in the
/// meantime that are not here.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifySentDoc {
    /// Document schema version.
    pub schema: u32,
    /// The events, each named by its kind and subject.
    pub events: Vec<SentEvent>,
}

impl NotifySentDoc {
    /// How many events are kept.
    pub const KEEP: usize = 64;
}

/// One fleet event sent ([`NotifySentDoc`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentEvent {
    /// `region-down`, `region-up`, `drill-start`, `drill-end`.
    pub event: String,
    /// The region or the drill it is about.
    pub subject: String,
    /// When the sender saw it, ms since the epoch.
    pub at_ms: u64,
}

/// `acme/account`: the ACME account, its credentials (with the account's private key) sealed with the
/// operator's key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcmeAccountDoc {
    /// Document schema version.
    pub schema: u32,
    /// The directory the account belongs to.
    pub directory: String,
    /// The credentials' JSON, sealed (base64 of nonce, ciphertext and tag).
    pub sealed_credentials: String,
    /// Which operator key sealed it (the first 8 bytes of its SHA-256, hex).
    pub key_id: String,
}

/// `acme/challenges/NAME`: the DNS-01 answers for `NAME` while the CA validates it, under the ordering
/// node's lease. Every DNS node answers `_acme-challenge.NAME` (without a leading `*.`) TXT with them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcmeChallengeDoc {
    /// Document schema version.
    pub schema: u32,
    /// The TXT values (base64url SHA-256 digests of key authorisations).
    pub values: Vec<String>,
    /// The ordering node.
    pub holder: String,
}

/// `acme/certs/ID`: an issued certificate. The chain is public; the private key is sealed with the
/// operator's key, which is never in the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcmeCertDoc {
    /// Document schema version.
    pub schema: u32,
    /// The names it covers, as configured.
    pub names: Vec<String>,
    /// The chain, PEM, leaf first.
    pub chain_pem: String,
    /// The PKCS#8 private key (DER), sealed (base64 of nonce, ciphertext and tag).
    pub sealed_key: String,
    /// Which operator key sealed it (the first 8 bytes of its SHA-256, hex).
    pub key_id: String,
    /// The leaf's issuer (its distinguished name).
    pub issuer: String,
    /// Validity start, ms since the epoch.
    pub not_before_ms: u64,
    /// Validity end, ms since the epoch.
    pub not_after_ms: u64,
    /// When it was stored, ms since the epoch.
    pub issued_at_ms: u64,
    /// The node that ordered it.
    pub ordered_by: String,
}

/// `acme/status/ID`: how the last order of certificate `ID` went (written by the ordering node).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcmeStatusDoc {
    /// Document schema version.
    pub schema: u32,
    /// When the last order started, ms since the epoch.
    pub last_attempt_ms: u64,
    /// When an order last succeeded.
    #[serde(default)]
    pub last_success_ms: Option<u64>,
    /// Why the last order failed (`None`: it succeeded).
    #[serde(default)]
    pub last_error: Option<String>,
    /// Failed orders since the last success.
    pub failures: u32,
    /// No new order before this time (backoff after failures), ms since the epoch.
    pub next_attempt_ms: u64,
}

/// Encodes a document.
pub fn encode<T: Serialize>(doc: &T) -> Vec<u8> {
    // Serialising these plain structs to JSON cannot fail (no maps with non-string keys, no foreign types).
    serde_json::to_vec(doc).unwrap_or_default()
}

/// Decodes a document, checking its schema version first so a newer writer is reported as such rather
/// than as a confusing missing-field error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    match value.get("schema").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(DOC_SCHEMA) => {}
        Some(v) => {
            return Err(format!(
                "schema version {v} is not supported (this build reads {DOC_SCHEMA})"
            ));
        }
        None => return Err("no schema version".to_owned()),
    }
    serde_json::from_value(value).map_err(|e| format!("schema {DOC_SCHEMA} document is malformed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let k = Keys::new("/m").unwrap();
        assert_eq!(k.prefix(), "/m/");
        assert_eq!(k.classify(&k.config()), KeyKind::Config);
        assert_eq!(k.classify(&k.weight("waw")), KeyKind::Weight("waw"));
        assert_eq!(k.classify(&k.drain("fra")), KeyKind::Drain("fra"));
        assert_eq!(k.classify(&k.drill("d1")), KeyKind::Drill("d1"));
        assert_eq!(
            k.classify(&k.backend_drain("api", "10.0.0.1:80")),
            KeyKind::BackendDrain {
                service: "api",
                backend: "10.0.0.1:80"
            }
        );
        assert_eq!(
            k.classify(&k.health("waw", "v1")),
            KeyKind::Health {
                target: "waw",
                vantage: "v1"
            }
        );
        assert_eq!(
            k.classify(&k.load("waw", "p1")),
            KeyKind::Load {
                region: "waw",
                instance: "p1"
            }
        );
        assert_eq!(
            k.classify(&k.latency("waw", "p1")),
            KeyKind::Latency {
                region: "waw",
                instance: "p1"
            }
        );
        assert_eq!(k.classify(&k.audit(1, 2)), KeyKind::Audit);
        assert_eq!(k.classify(&k.acme_lock()), KeyKind::AcmeLock);
        assert_eq!(k.classify(&k.notify_sender()), KeyKind::NotifySender);
        assert_eq!(k.classify(&k.notify_sent()), KeyKind::NotifySent);
        assert_eq!(k.classify(&k.acme_account()), KeyKind::AcmeAccount);
        assert_eq!(k.classify(&k.acme_account_at("0123abcd")), KeyKind::AcmeAccount);
        assert_eq!(
            k.classify(&k.acme_challenge("*.gslb.example")),
            KeyKind::AcmeChallenge("*.gslb.example")
        );
        assert_eq!(
            k.classify(&k.acme_cert("meet.gslb.example")),
            KeyKind::AcmeCert("meet.gslb.example")
        );
        assert_eq!(
            k.classify(&k.acme_status("a.example")),
            KeyKind::AcmeStatus("a.example")
        );
        assert_eq!(k.classify("/m/overrides/weights/"), KeyKind::Unknown);
        assert_eq!(k.classify("/other/config"), KeyKind::Unknown);
        assert!(Keys::new("meridian").is_err());
        assert!(k.audit(5, 1) < k.audit(10, 0), "audit keys sort by time");
    }

    #[test]
    fn decode_checks_the_schema_first() {
        let doc = DrainOverride {
            schema: 1,
            author: "a".into(),
            reason: "r".into(),
            at_ms: 1,
        };
        assert_eq!(decode::<DrainOverride>(&encode(&doc)).unwrap(), doc);
        assert!(decode::<DrainOverride>(b"{").unwrap_err().starts_with("not JSON"));
        assert!(
            decode::<DrainOverride>(br#"{"schema": 2}"#)
                .unwrap_err()
                .contains("schema version 2 is not supported")
        );
        assert!(
            decode::<DrainOverride>(br#"{"author": "x"}"#)
                .unwrap_err()
                .contains("no schema version")
        );
        assert!(
            decode::<DrainOverride>(br#"{"schema": 1}"#)
                .unwrap_err()
                .contains("malformed")
        );
        let drill = br#"{"schema":1,"region":"waw","mode":{"kind":"capacity","percent":50},"started_at_ms":1,"expires_at_ms":2,"author":"a","reason":"r"}"#;
        assert_eq!(
            decode::<DrillDoc>(drill).unwrap().mode,
            DrillModeDoc::Capacity { percent: 50 }
        );
    }
}
