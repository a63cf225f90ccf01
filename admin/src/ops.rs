//! The writes the API makes: region weights, drains, drills, the configuration. Each one is validated,
//! checked for safety against the current state (the store's overrides and drills laid over the
//! snapshot's health and load by `meridian_store::overlay_operator_state`, as every snapshot is built;
//! for a new configuration, laid over its own regions), and committed by compare-and-swap in one store
//! transaction with its audit record.
//!
//! The transaction compares the changed key at the revision read (so a concurrent edit of the same thing
//! is a conflict, never a lost update) and every other region's weight and drain key at the revisions the
//! safety check saw (so two operators draining the last two healthy regions at once cannot both pass the
//! check: the second one re-reads and is refused). When only another key moved, the write is retried.

use std::sync::Arc;
use std::time::Duration;

use meridian_config::Config;
use meridian_steer::{RegionStates, Topology};
use meridian_store::schema::{
    AuditRecord, DOC_SCHEMA, DrainOverride, DrillDoc, WeightOverride, decode, encode,
};
use meridian_store::{
    ApplyOptions, ApplyOutcome, Compare, ConfigDocError, KeyValue, Keys, KvStore, Listing, OperatorDoc,
    Revision, Snapshot, StoreError, StoredConfig, TxnOp, overlay_operator_state,
};
use serde_json::{Value, json};

use crate::AdminContext;
use crate::api::{
    ApiError, Applied, ChangeMeta, ConfigApplied, DrillStarted, DrillStopped, MAX_DRILL_MS, PutConfig,
    StartDrill, mode_text,
};
use crate::safety::{Violation, introduced, introduced_across};

/// etcd refuses transactions with more than 128 compares (`--max-txn-ops`).
const MAX_COMPARES: usize = 120;
/// How long a write waits for this node's snapshot to reflect it (read-your-writes for the next status).
const REFLECT_WAIT: Duration = Duration::from_secs(2);
const ATTEMPTS: usize = 5;

pub(crate) fn snapshot(ctx: &AdminContext) -> Result<Arc<Snapshot>, ApiError> {
    ctx.watcher.snapshot().ok_or_else(|| {
        ApiError::unavailable("this node has no configuration yet (none in the store, none to start with)")
    })
}

pub(crate) fn unknown_region(topology: &Topology, id: &str) -> ApiError {
    let known: Vec<&str> = topology
        .config()
        .regions()
        .iter()
        .map(|r| r.id.as_str())
        .collect();
    ApiError::not_found(
        "unknown-region",
        format!("unknown region {id:?} (known: {})", known.join(", ")),
    )
}

fn check_region(topology: &Topology, id: &str) -> Result<(), ApiError> {
    topology
        .region_index(id)
        .map(|_| ())
        .ok_or_else(|| unknown_region(topology, id))
}

/// One change to one key: a weight override, a drain or a drill, written or removed.
struct Write<'a> {
    key: String,
    /// The key's document after the change; `None`: the key is deleted.
    doc: Option<OperatorDoc>,
    /// For the audit record and messages: `region drain waw`.
    what: String,
    meta: &'a ChangeMeta,
    /// 404 if the key is absent (stopping a drill).
    must_exist: Option<ApiError>,
    /// 409 if the key exists (starting a drill with a taken id).
    must_not_exist: bool,
    /// Extra keys to delete in the same transaction (expired drills).
    cleanup: Vec<String>,
}

/// The stored form of an operator document, and its JSON for the audit record.
fn stored_form(doc: &OperatorDoc) -> (Vec<u8>, Value) {
    fn both<T: serde::Serialize>(d: &T) -> (Vec<u8>, Value) {
        (encode(d), serde_json::to_value(d).unwrap_or(Value::Null))
    }
    match doc {
        OperatorDoc::Weight { doc, .. } => both(doc),
        OperatorDoc::Drain { doc, .. } => both(doc),
        OperatorDoc::Drill { doc, .. } => both(doc),
    }
}

/// The store's weight overrides, drains and drills: what decides region usability besides health.
struct OperatorState {
    overrides: Listing,
    /// Every weight override, drain and drill in the store, decoded, with its key (those that do not
    /// decode are left out, as snapshots leave them out).
    docs: Vec<(String, OperatorDoc)>,
}

impl OperatorState {
    async fn read(store: &dyn KvStore, keys: &Keys) -> Result<Self, StoreError> {
        let prefix = keys.prefix();
        // Both at once: each is a round trip to the etcd leader, perhaps across the WAN.
        let (o, d) = (format!("{prefix}overrides/"), format!("{prefix}drills/"));
        let (overrides, drills) = tokio::try_join!(store.list(&o), store.list(&d))?;
        let docs = overrides
            .kvs
            .iter()
            .chain(&drills.kvs)
            .filter_map(|kv| Some((kv.key.clone(), OperatorDoc::from_kv(keys, kv)?.ok()?)))
            .collect();
        Ok(Self { overrides, docs })
    }

    /// The operator documents with the keys in `removed` gone and `added` in.
    fn docs_with<'a>(
        &'a self,
        removed: &'a [&str],
        added: Option<&'a OperatorDoc>,
    ) -> impl Iterator<Item = &'a OperatorDoc> {
        self.docs
            .iter()
            .filter(move |(key, _)| !removed.contains(&key.as_str()))
            .map(|(_, doc)| doc)
            .chain(added)
    }

    /// Region states as the store has them now — `snapshot`'s health and load, the store's weights,
    /// drains and drills (the snapshot may be a few milliseconds behind them) — with the keys in `removed`
    /// gone and `added` in.
    fn states(&self, snapshot: &Snapshot, removed: &[&str], added: Option<&OperatorDoc>) -> RegionStates {
        let mut states = snapshot.states.clone();
        overlay_operator_state(&snapshot.topology, &mut states, self.docs_with(removed, added));
        states
    }

    /// Region states under another configuration's `topology`: its regions with their configured weights
    /// and capacities, the health and load `seen` (the snapshot in force, if any) has for each by region
    /// id, and the store's weights, drains and drills (those of regions it does not have are skipped, as
    /// snapshots skip them).
    fn states_under(&self, topology: &Topology, seen: Option<&Snapshot>) -> RegionStates {
        let mut states = RegionStates::initial(topology.config());
        if let Some(snap) = seen {
            for region in topology.config().regions() {
                if let (Some(new), Some(old)) = (
                    topology.region_index(&region.id).and_then(|i| states.get_mut(i)),
                    snap.topology
                        .region_index(&region.id)
                        .and_then(|i| snap.states.get(i)),
                ) {
                    new.health = old.health;
                    new.in_flight = old.in_flight;
                }
            }
        }
        overlay_operator_state(topology, &mut states, self.docs_with(&[], None));
        states
    }

    /// Compares pinning the weight and drain key of every region of `topology` at what was read (absent:
    /// 0), but `except`.
    fn guards(&self, keys: &Keys, topology: &Topology, except: &str) -> Vec<Compare> {
        let present = |key: &str| -> Revision {
            self.overrides
                .kvs
                .iter()
                .find(|kv| kv.key == key)
                .map_or(0, |kv| kv.mod_revision)
        };
        let mut out = Vec::new();
        for region in topology.config().regions() {
            for key in [keys.drain(&region.id), keys.weight(&region.id)] {
                if key != except {
                    out.push(Compare {
                        mod_revision: present(&key),
                        key,
                    });
                }
            }
        }
        // Over etcd's limit: keep the drains (what safety depends on most) and the existing keys.
        if out.len() > MAX_COMPARES {
            out.retain(|c| c.mod_revision != 0 || c.key.contains("/overrides/drains/"));
            out.truncate(MAX_COMPARES);
        }
        out
    }
}

/// The stored document at `kv` as JSON, with its revision (for conflicts and the audit log).
fn stored_json(kv: &KeyValue) -> Value {
    let doc: Value = serde_json::from_slice(&kv.value).unwrap_or(Value::Null);
    json!({ "revision": kv.mod_revision, "document": doc })
}

/// Who a change through the API is recorded as: the author given, trimmed; `admin-api` when none (or a
/// blank one) is.
fn author(given: Option<&str>) -> String {
    given
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .unwrap_or("admin-api")
        .to_owned()
}

fn reason(meta: &ChangeMeta, required: bool) -> Result<String, ApiError> {
    check_reason(meta.reason.as_deref(), required).map_err(ApiError::bad_request)
}

/// The longest reason a change records.
pub const MAX_REASON_LEN: usize = 1000;

/// A change's reason as recorded (trimmed), or why it is refused: missing where `required` (drains,
/// weights, drills), or longer than [`MAX_REASON_LEN`]. The API's rule, which the CLI checks first.
pub fn check_reason(reason: Option<&str>, required: bool) -> Result<String, String> {
    let r = reason.map(str::trim).unwrap_or_default();
    if required && r.is_empty() {
        return Err("a reason is required (it goes to the audit log)".to_owned());
    }
    if r.len() > MAX_REASON_LEN {
        return Err(format!("the reason is longer than {MAX_REASON_LEN} characters"));
    }
    Ok(r.to_owned())
}

/// Whether a region weight is in range (0 to [`meridian_config::MAX_WEIGHT`]); why not. The API's rule,
/// which the CLI checks first.
pub fn check_weight(weight: u32) -> Result<(), String> {
    if weight > meridian_config::MAX_WEIGHT {
        return Err(format!(
            "weight {weight} is above the maximum {}",
            meridian_config::MAX_WEIGHT
        ));
    }
    Ok(())
}

/// A store that fails while a change reads the current state (on the side of a partition without the
/// majority, say) fails it before anything is sent: the operator is told so, as for a failed write.
fn before_writing(e: ApiError, what: &str) -> ApiError {
    if e.status == 503 {
        ApiError::unavailable(format!(
            "{what}: cannot read the current state ({}); nothing was written",
            e.message
        ))
    } else {
        e
    }
}

async fn commit(ctx: &AdminContext, w: Write<'_>, now_ms: u64) -> Result<Applied, ApiError> {
    let who = author(w.meta.author.as_deref());
    let (stored, after_json) = match &w.doc {
        Some(doc) => {
            let (bytes, json) = stored_form(doc);
            (Some(bytes), json)
        }
        None => (None, Value::Null),
    };
    // What the store holds after the change, besides the key: expired drills removed too.
    let removed: Vec<&str> = std::iter::once(w.key.as_str())
        .chain(w.cleanup.iter().map(String::as_str))
        .collect();
    for _ in 0..ATTEMPTS {
        let snap = snapshot(ctx)?;
        let (current, target) = tokio::try_join!(
            OperatorState::read(ctx.store.as_ref(), &ctx.keys),
            ctx.store.get(&w.key)
        )
        .map_err(|e| before_writing(e.into(), &w.what))?;
        let target_rev = target.as_ref().map_or(0, |kv| kv.mod_revision);
        match (&target, &w.must_exist) {
            (None, Some(e)) => return Err(e.clone()),
            (Some(kv), _) if w.must_not_exist => {
                return Err(ApiError::conflict(
                    format!("{}: {} already exists", w.what, w.key),
                    stored_json(kv),
                ));
            }
            _ => {}
        }
        if let (Some(expected), Some(kv)) = (w.meta.expect_revision, &target)
            && kv.mod_revision > expected
        {
            return Err(ApiError::conflict(
                format!(
                    "{}: changed at revision {} (after revision {expected}, which you read); nothing was written",
                    w.what, kv.mod_revision
                ),
                stored_json(kv),
            ));
        }
        let before = current.states(&snap, &[], None);
        let after = current.states(&snap, &removed, w.doc.as_ref());
        let violations = introduced(&snap.topology, &before, &after, now_ms);
        if !violations.is_empty() && !w.meta.force {
            return Err(ApiError::refused(&violations));
        }
        let mut compares = vec![Compare {
            key: w.key.clone(),
            mod_revision: target_rev,
        }];
        compares.extend(current.guards(&ctx.keys, &snap.topology, &w.key));
        let mut ops = vec![match &stored {
            Some(value) => TxnOp::Put {
                key: w.key.clone(),
                value: value.clone(),
                lease: None,
            },
            None => TxnOp::Delete { key: w.key.clone() },
        }];
        for key in &w.cleanup {
            ops.push(TxnOp::Delete { key: key.clone() });
        }
        let mut after_doc = after_json.clone();
        if !violations.is_empty()
            && let Value::Object(o) = &mut after_doc
        {
            o.insert("forced".into(), json!(violations));
        }
        let audit = AuditRecord {
            schema: DOC_SCHEMA,
            who: who.clone(),
            what: w.what.clone(),
            at_ms: now_ms,
            before: target.as_ref().map_or(Value::Null, stored_json),
            after: after_doc,
        };
        // The audit key is unique to this attempt and written in the same transaction: whether it
        // exists says whether the change was applied, when the store's answer was lost.
        let audit_key = ctx.keys.audit(now_ms, nonce());
        ops.push(TxnOp::Put {
            key: audit_key.clone(),
            value: encode(&audit),
            lease: None,
        });
        let applied = |revision: i64| Applied {
            revision,
            what: w.what.clone(),
            forced: violations.clone(),
        };
        let result = match ctx.store.txn(compares, ops).await {
            Ok(r) => r,
            Err(e) if e.is_retryable() => {
                // The store failed over between members and still gave no answer in time: the change
                // may have been applied by an attempt whose answer was lost. Look before saying.
                return match ctx.store.get(&audit_key).await {
                    Ok(Some(kv)) => {
                        ctx.watcher.wait_for(kv.mod_revision, REFLECT_WAIT).await;
                        Ok(applied(kv.mod_revision))
                    }
                    Ok(None) => Err(ApiError::unavailable(format!(
                        "{}: the state store did not answer ({e}); nothing was written",
                        w.what
                    ))),
                    Err(_) => Err(ApiError::unavailable(format!(
                        "{}: the state store did not answer ({e}); whether the change was applied is \
                         unknown: it is in the audit log (GET /v1/audit) if it was",
                        w.what
                    ))),
                };
            }
            Err(e) => return Err(e.into()),
        };
        if result.succeeded {
            ctx.watcher.wait_for(result.revision, REFLECT_WAIT).await;
            return Ok(applied(result.revision));
        }
        // A repeat (after a lost answer) of an attempt that was in fact applied fails its compare: ours.
        if let Some(kv) = ctx.store.get(&audit_key).await? {
            ctx.watcher.wait_for(kv.mod_revision, REFLECT_WAIT).await;
            return Ok(applied(kv.mod_revision));
        }
        let now = ctx.store.get(&w.key).await?;
        if now.as_ref().map_or(0, |kv| kv.mod_revision) != target_rev {
            return Err(ApiError::conflict(
                format!(
                    "{}: changed by someone else meanwhile; nothing was written",
                    w.what
                ),
                now.as_ref().map_or(Value::Null, stored_json),
            ));
        }
        // Another region's override moved under the safety check: check again.
    }
    Err(kept_changing(&w.what))
}

fn kept_changing(what: &str) -> ApiError {
    ApiError::conflict(
        format!("{what}: the state kept changing; nothing was written, try again"),
        Value::Null,
    )
}

/// Distinguishes audit records written in the same millisecond.
fn nonce() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    (u64::from(std::process::id()) << 32) | (COUNTER.fetch_add(1, Ordering::Relaxed) & 0xffff_ffff)
}

/// The four writes of a region's override keys.
#[derive(Clone, Copy, Debug)]
pub(crate) enum RegionChange {
    /// `PUT /v1/regions/{id}/weight`.
    SetWeight(u32),
    /// `DELETE /v1/regions/{id}/weight`.
    ClearWeight,
    /// `PUT /v1/regions/{id}/drain`.
    Drain,
    /// `DELETE /v1/regions/{id}/drain`.
    Undrain,
}

/// A region's weight or drain written or removed: validated (known region, weight in range, a reason
/// where one is required), then committed like every write.
pub(crate) async fn region_change(
    ctx: &AdminContext,
    region: &str,
    change: RegionChange,
    meta: &ChangeMeta,
) -> Result<Applied, ApiError> {
    let now_ms = crate::now_ms();
    let snap = snapshot(ctx)?;
    check_region(&snap.topology, region)?;
    if let RegionChange::SetWeight(weight) = change {
        check_weight(weight).map_err(ApiError::bad_request)?;
    }
    let adds = matches!(change, RegionChange::SetWeight(_) | RegionChange::Drain);
    let reason = reason(meta, adds)?;
    let region = region.to_owned();
    let (key, doc, what) = match change {
        RegionChange::SetWeight(weight) => (
            ctx.keys.weight(&region),
            Some(OperatorDoc::Weight {
                doc: WeightOverride {
                    schema: DOC_SCHEMA,
                    weight,
                    author: author(meta.author.as_deref()),
                    reason,
                    at_ms: now_ms,
                },
                region: region.clone(),
            }),
            format!("region set-weight {region} {weight}"),
        ),
        RegionChange::ClearWeight => (
            ctx.keys.weight(&region),
            None,
            with_reason(format!("region clear-weight {region}"), &reason),
        ),
        RegionChange::Drain => (
            ctx.keys.drain(&region),
            Some(OperatorDoc::Drain {
                doc: DrainOverride {
                    schema: DOC_SCHEMA,
                    author: author(meta.author.as_deref()),
                    reason,
                    at_ms: now_ms,
                },
                region: region.clone(),
            }),
            format!("region drain {region}"),
        ),
        RegionChange::Undrain => (
            ctx.keys.drain(&region),
            None,
            with_reason(format!("region undrain {region}"), &reason),
        ),
    };
    commit(
        ctx,
        Write {
            key,
            doc,
            what,
            meta,
            must_exist: None,
            must_not_exist: false,
            cleanup: Vec::new(),
        },
        now_ms,
    )
    .await
}

fn with_reason(what: String, reason: &str) -> String {
    if reason.is_empty() {
        what
    } else {
        format!("{what}: {reason}")
    }
}

fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.'))
        && id.as_bytes()[0].is_ascii_alphanumeric()
}

pub(crate) async fn start_drill(ctx: &AdminContext, body: StartDrill) -> Result<DrillStarted, ApiError> {
    let now_ms = crate::now_ms();
    let snap = snapshot(ctx)?;
    check_region(&snap.topology, &body.region)?;
    let mode = body.mode.0;
    if body.duration_ms == 0 || body.duration_ms > MAX_DRILL_MS {
        return Err(ApiError::bad_request(format!(
            "duration_ms {}: must be between 1 and {MAX_DRILL_MS} (72 hours)",
            body.duration_ms
        )));
    }
    let reason = reason(&body.meta, true)?;
    let id = match &body.id {
        Some(id) => id.clone(),
        None => format!("{}-{}-{now_ms}", body.region, mode_text(mode).replace('=', "")),
    };
    if !valid_id(&id) {
        return Err(ApiError::bad_request(format!(
            "drill id {id:?}: 1-64 of a-z, 0-9, '-', '_' and '.', starting with a letter or digit"
        )));
    }
    // One active drill per region: two overlapping drills make results unreadable.
    let drills = ctx.store.list(&format!("{}drills/", ctx.keys.prefix())).await?;
    let mut cleanup = Vec::new();
    for kv in &drills.kvs {
        let Ok(d) = decode::<DrillDoc>(&kv.value) else {
            continue;
        };
        if d.expires_at_ms <= now_ms {
            cleanup.push(kv.key.clone());
        } else if d.region == body.region {
            return Err(ApiError::conflict(
                format!(
                    "region {} already has an active drill ({}); stop it first",
                    body.region,
                    kv.key.rsplit('/').next().unwrap_or_default()
                ),
                stored_json(kv),
            ));
        }
    }
    let doc = DrillDoc {
        schema: DOC_SCHEMA,
        region: body.region.clone(),
        mode,
        started_at_ms: now_ms,
        expires_at_ms: now_ms + body.duration_ms,
        author: author(body.meta.author.as_deref()),
        reason,
    };
    let drill = crate::status::drill_view(&id, &doc, now_ms);
    let applied = commit(
        ctx,
        Write {
            key: ctx.keys.drill(&id),
            what: format!("drill start {id} ({} {})", mode_text(mode), body.region),
            doc: Some(OperatorDoc::Drill { id: id.clone(), doc }),
            meta: &body.meta,
            must_exist: None,
            must_not_exist: true,
            cleanup,
        },
        now_ms,
    )
    .await?;
    Ok(DrillStarted { id, applied, drill })
}

pub(crate) async fn stop_drill(
    ctx: &AdminContext,
    id: &str,
    meta: ChangeMeta,
) -> Result<DrillStopped, ApiError> {
    let now_ms = crate::now_ms();
    snapshot(ctx)?;
    let reason = reason(&meta, false)?;
    let applied = commit(
        ctx,
        Write {
            key: ctx.keys.drill(id),
            doc: None,
            what: with_reason(format!("drill stop {id}"), &reason),
            meta: &meta,
            must_exist: Some(ApiError::not_found("unknown-drill", format!("no drill {id:?}"))),
            must_not_exist: false,
            cleanup: Vec::new(),
        },
        now_ms,
    )
    .await?;
    Ok(DrillStopped {
        id: id.to_owned(),
        applied,
    })
}

fn config_error(e: ConfigDocError) -> ApiError {
    match e {
        ConfigDocError::Store(s) => ApiError::from(s),
        ConfigDocError::Invalid(e) => {
            ApiError::bad_request(format!("the configuration is invalid; nothing was applied:\n{e}"))
        }
        ConfigDocError::Unreadable(m) => ApiError::internal(m),
    }
}

fn config_conflict(expected: Revision, current: Option<StoredConfig>) -> ApiError {
    ApiError::conflict(
        format!(
            "the stored configuration is at revision {}, not {expected}; nothing was applied",
            current.as_ref().map_or(0, |c| c.revision)
        ),
        current.map_or(
            Value::Null,
            |c| json!({ "revision": c.revision, "toml": c.doc.toml, "author": c.doc.author }),
        ),
    )
}

/// A new configuration checked for safety like every other write: the region states it gives (its
/// regions, services and residency rules, with the health and load of the configuration in force and the
/// store's weights, drains and drills) against the states now under the configuration in force. Used by
/// `PUT /v1/config` and by `meridian config apply` (which works on the store directly), so both refuse
/// the same changes.
pub struct ConfigCheck {
    /// The guarantees the new configuration would break that the one in force does not already break.
    pub violations: Vec<Violation>,
    /// Compares pinning every region's weight and drain key at what the check read.
    guards: Vec<Compare>,
}

impl ConfigCheck {
    /// Checks the configuration of `topology` at `now_ms`; `seen` is the snapshot of the configuration
    /// in force (none: nothing is served yet, every guarantee is new).
    pub async fn run(
        store: &dyn KvStore,
        keys: &Keys,
        topology: &Topology,
        seen: Option<&Snapshot>,
        now_ms: u64,
    ) -> Result<Self, StoreError> {
        let current = OperatorState::read(store, keys).await?;
        let after = current.states_under(topology, seen);
        let violations = match seen {
            Some(snap) => {
                let before = current.states(snap, &[], None);
                introduced_across(&snap.topology, &before, topology, &after, now_ms)
            }
            None => crate::safety::violations(topology, &after, now_ms),
        };
        Ok(Self {
            violations,
            guards: current.guards(keys, topology, &keys.config()),
        })
    }

    /// What to write the configuration with: the guards (a weight or drain that moved since the check is
    /// a conflict), and the violations as forced in the audit record, when there are any (write only
    /// when the author forced them).
    pub fn options(&self) -> ApplyOptions {
        ApplyOptions {
            guards: self.guards.clone(),
            forced: (!self.violations.is_empty()).then(|| json!(self.violations)),
        }
    }
}

/// `PUT /v1/config`: validated, checked for safety ([`ConfigCheck`]), then compare-and-swap on the
/// configuration key and every region's weight and drain key, with its audit record (listing what was
/// forced, if anything).
pub(crate) async fn put_config(ctx: &AdminContext, body: PutConfig) -> Result<ConfigApplied, ApiError> {
    let now_ms = crate::now_ms();
    let who = author(body.author.as_deref());
    let config = Config::from_toml_str(&body.toml).map_err(|e| config_error(ConfigDocError::Invalid(e)))?;
    let topology = Topology::new(Arc::new(config));
    for _ in 0..ATTEMPTS {
        let stored = meridian_store::read_config(ctx.store.as_ref(), &ctx.keys)
            .await
            .map_err(config_error)?;
        let stored_rev = stored.as_ref().map_or(0, |c| c.revision);
        let expected = body.expect_revision.unwrap_or(stored_rev);
        if expected != stored_rev {
            return Err(config_conflict(expected, stored));
        }
        if let Some(c) = stored.as_ref().filter(|c| c.doc.toml == body.toml) {
            return Ok(ConfigApplied::Unchanged { revision: c.revision });
        }
        // The states now are those under the stored configuration: this node's snapshot must have it.
        ctx.watcher.wait_for(stored_rev, REFLECT_WAIT).await;
        let snap = ctx.watcher.snapshot();
        let check =
            ConfigCheck::run(ctx.store.as_ref(), &ctx.keys, &topology, snap.as_deref(), now_ms).await?;
        if !check.violations.is_empty() && !body.force {
            return Err(ApiError::refused(&check.violations));
        }
        let outcome = meridian_store::apply_config_with(
            ctx.store.as_ref(),
            &ctx.keys,
            &body.toml,
            Some(expected),
            &who,
            now_ms,
            &check.options(),
        )
        .await
        .map_err(config_error)?;
        match outcome {
            ApplyOutcome::Applied { revision, previous } => {
                ctx.watcher.wait_for(revision, REFLECT_WAIT).await;
                return Ok(ConfigApplied::Applied {
                    revision,
                    previous_revision: previous.map(|p| p.revision),
                    forced: check.violations,
                });
            }
            ApplyOutcome::Unchanged { revision } => return Ok(ConfigApplied::Unchanged { revision }),
            // The configuration did not move: a region's weight or drain did, under the safety check.
            ApplyOutcome::Conflict { expected, current }
                if current.as_ref().map_or(0, |c| c.revision) == expected => {}
            ApplyOutcome::Conflict { expected, current } => {
                return Err(config_conflict(expected, current));
            }
        }
    }
    Err(kept_changing("config apply"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn drill_modes_parse() {
        use crate::api::parse_drill_mode;
        use meridian_store::schema::DrillModeDoc;
        assert_eq!(parse_drill_mode("down").unwrap(), DrillModeDoc::Down);
        assert_eq!(parse_drill_mode("Drain").unwrap(), DrillModeDoc::Drain);
        assert_eq!(
            parse_drill_mode("capacity=50").unwrap(),
            DrillModeDoc::Capacity { percent: 50 }
        );
        assert_eq!(
            parse_drill_mode("capacity:25%").unwrap(),
            DrillModeDoc::Capacity { percent: 25 }
        );
        assert!(parse_drill_mode("capacity=101").is_err());
        assert!(
            parse_drill_mode("up")
                .unwrap_err()
                .contains("expected down, drain")
        );
    }

    #[test]
    fn one_default_author() {
        assert_eq!(author(None), "admin-api");
        assert_eq!(author(Some(" \t")), "admin-api", "blank is none");
        assert_eq!(author(Some(" alice@ops1 ")), "alice@ops1", "trimmed");
    }

    #[test]
    fn drill_ids_are_checked() {
        assert!(valid_id("waw-down-1795000000000"));
        assert!(!valid_id(""));
        assert!(!valid_id("-x"));
        assert!(!valid_id("a/b"));
        assert!(!valid_id(&"a".repeat(65)));
    }
}
