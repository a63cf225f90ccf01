//! The writes the API makes: region weights, drains, drills, the configuration. Each one is validated,
//! checked for safety against the current state (the store's overrides and drills, the snapshot's health
//! and load), and committed by compare-and-swap in one store transaction with its audit record.
//!
//! The transaction compares the changed key at the revision read (so a concurrent edit of the same thing
//! is a conflict, never a lost update) and every other region's weight and drain key at the revisions the
//! safety check saw (so two operators draining the last two healthy regions at once cannot both pass the
//! check: the second one re-reads and is refused). When only another key moved, the write is retried.

use std::sync::Arc;
use std::time::Duration;

use meridian_steer::{Drill, DrillMode, RegionStates, Topology};
use meridian_store::schema::{
    AuditRecord, DOC_SCHEMA, DrainOverride, DrillDoc, DrillModeDoc, KeyKind, WeightOverride, decode, encode,
};
use meridian_store::{ApplyOutcome, Compare, ConfigDocError, KeyValue, Listing, Revision, Snapshot, TxnOp};
use serde_json::{Value, json};

use crate::AdminContext;
use crate::api::{ApiError, ChangeMeta, MAX_DRILL_MS, PutConfig, SetWeight, StartDrill};
use crate::safety::introduced;

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

/// What to do to the target key.
enum Edit {
    Put(Vec<u8>),
    Delete,
}

/// One change to one key.
struct Write<'a> {
    key: String,
    edit: Edit,
    /// For the audit record and messages: `region drain waw`.
    what: String,
    meta: &'a ChangeMeta,
    /// The document after the change, for the audit record (null when deleted).
    after: Value,
    /// 404 if the key is absent (stopping a drill).
    must_exist: Option<ApiError>,
    /// 409 if the key exists (starting a drill with a taken id).
    must_not_exist: bool,
    /// The change's effect on region states, for the safety check.
    effect: &'a (dyn Fn(&Topology, &mut RegionStates) + Sync),
    /// Extra keys to delete in the same transaction (expired drills).
    cleanup: Vec<String>,
}

/// What the store holds that decides region usability.
struct Current {
    snapshot: Arc<Snapshot>,
    overrides: Listing,
    drills: Listing,
}

impl Current {
    async fn read(ctx: &AdminContext) -> Result<Self, ApiError> {
        let snapshot = snapshot(ctx)?;
        let prefix = ctx.keys.prefix();
        // Both at once: each is a round trip to the etcd leader, perhaps across the WAN.
        let (o, d) = (format!("{prefix}overrides/"), format!("{prefix}drills/"));
        let (overrides, drills) = tokio::try_join!(ctx.store.list(&o), ctx.store.list(&d))?;
        Ok(Self {
            snapshot,
            overrides,
            drills,
        })
    }

    /// Region states as the store has them now: the snapshot's health and load, the store's overrides
    /// and drills (the snapshot may be a few milliseconds behind them).
    fn states(&self, ctx: &AdminContext) -> RegionStates {
        let topology = &self.snapshot.topology;
        let config = topology.config();
        let mut states = self.snapshot.states.clone();
        for region in config.regions() {
            if let Some(s) = topology.region_index(&region.id).and_then(|i| states.get_mut(i)) {
                s.drained = false;
                s.weight = region.weight;
                s.drills.clear();
            }
        }
        for kv in &self.overrides.kvs {
            match ctx.keys.classify(&kv.key) {
                KeyKind::Weight(r) => {
                    if let (Ok(w), Some(s)) = (
                        decode::<WeightOverride>(&kv.value),
                        topology.region_index(r).and_then(|i| states.get_mut(i)),
                    ) && w.weight <= meridian_config::MAX_WEIGHT
                    {
                        s.weight = w.weight;
                    }
                }
                KeyKind::Drain(r) => {
                    if let (Ok(_), Some(s)) = (
                        decode::<DrainOverride>(&kv.value),
                        topology.region_index(r).and_then(|i| states.get_mut(i)),
                    ) {
                        s.drained = true;
                    }
                }
                _ => {}
            }
        }
        for kv in &self.drills.kvs {
            if let (KeyKind::Drill(id), Ok(d)) = (ctx.keys.classify(&kv.key), decode::<DrillDoc>(&kv.value))
                && let Some(s) = topology.region_index(&d.region).and_then(|i| states.get_mut(i))
            {
                s.drills.push(Drill {
                    id: id.to_owned(),
                    mode: steer_mode(d.mode),
                    expires_at_ms: d.expires_at_ms,
                });
            }
        }
        states
    }

    /// Compares pinning every region's weight and drain key at what was read (absent: 0).
    fn guards(&self, ctx: &AdminContext, except: &str) -> Vec<Compare> {
        let present = |key: &str| -> Revision {
            self.overrides
                .kvs
                .iter()
                .find(|kv| kv.key == key)
                .map_or(0, |kv| kv.mod_revision)
        };
        let mut out = Vec::new();
        for region in self.snapshot.topology.config().regions() {
            for key in [ctx.keys.drain(&region.id), ctx.keys.weight(&region.id)] {
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

pub(crate) fn steer_mode(mode: DrillModeDoc) -> DrillMode {
    match mode {
        DrillModeDoc::Down => DrillMode::Down,
        DrillModeDoc::Drain => DrillMode::Drain,
        DrillModeDoc::Capacity { percent } => DrillMode::Capacity {
            percent: percent.min(100),
        },
    }
}

/// The stored document at `kv` as JSON, with its revision (for conflicts and the audit log).
fn stored_json(kv: &KeyValue) -> Value {
    let doc: Value = serde_json::from_slice(&kv.value).unwrap_or(Value::Null);
    json!({ "revision": kv.mod_revision, "document": doc })
}

fn author(meta: &ChangeMeta) -> String {
    meta.author
        .as_deref()
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .unwrap_or("admin-api")
        .to_owned()
}

fn reason(meta: &ChangeMeta, required: bool) -> Result<String, ApiError> {
    let r = meta.reason.as_deref().map(str::trim).unwrap_or_default();
    if required && r.is_empty() {
        return Err(ApiError::bad_request(
            "a reason is required (it goes to the audit log)",
        ));
    }
    if r.len() > 1000 {
        return Err(ApiError::bad_request("the reason is longer than 1000 characters"));
    }
    Ok(r.to_owned())
}

async fn commit(ctx: &AdminContext, w: Write<'_>, now_ms: u64) -> Result<Value, ApiError> {
    let who = author(w.meta);
    for _ in 0..ATTEMPTS {
        let (current, target) = tokio::try_join!(Current::read(ctx), async {
            ctx.store.get(&w.key).await.map_err(ApiError::from)
        })?;
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
        let topology = current.snapshot.topology.clone();
        let before = current.states(ctx);
        let mut after = before.clone();
        (w.effect)(&topology, &mut after);
        let violations = introduced(&topology, &before, &after, now_ms);
        if !violations.is_empty() && !w.meta.force {
            return Err(ApiError::refused(&violations));
        }
        let mut compares = vec![Compare {
            key: w.key.clone(),
            mod_revision: target_rev,
        }];
        compares.extend(current.guards(ctx, &w.key));
        let mut ops = vec![match &w.edit {
            Edit::Put(value) => TxnOp::Put {
                key: w.key.clone(),
                value: value.clone(),
                lease: None,
            },
            Edit::Delete => TxnOp::Delete { key: w.key.clone() },
        }];
        for key in &w.cleanup {
            ops.push(TxnOp::Delete { key: key.clone() });
        }
        let mut after_doc = w.after.clone();
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
        let applied = |revision: i64| {
            json!({
                "revision": revision,
                "what": w.what,
                "forced": violations,
            })
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
    Err(ApiError::conflict(
        format!(
            "{}: the state kept changing; nothing was written, try again",
            w.what
        ),
        Value::Null,
    ))
}

/// Distinguishes audit records written in the same millisecond.
fn nonce() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    (u64::from(std::process::id()) << 32) | (COUNTER.fetch_add(1, Ordering::Relaxed) & 0xffff_ffff)
}

pub(crate) async fn set_weight(ctx: &AdminContext, region: &str, body: SetWeight) -> Result<Value, ApiError> {
    let now_ms = crate::now_ms();
    let snap = snapshot(ctx)?;
    check_region(&snap.topology, region)?;
    if body.weight > meridian_config::MAX_WEIGHT {
        return Err(ApiError::bad_request(format!(
            "weight {} is above the maximum {}",
            body.weight,
            meridian_config::MAX_WEIGHT
        )));
    }
    let reason = reason(&body.meta, true)?;
    let doc = WeightOverride {
        schema: DOC_SCHEMA,
        weight: body.weight,
        author: author(&body.meta),
        reason,
        at_ms: now_ms,
    };
    let weight = body.weight;
    let id = region.to_owned();
    let effect = move |t: &Topology, s: &mut RegionStates| {
        if let Some(st) = t.region_index(&id).and_then(|i| s.get_mut(i)) {
            st.weight = weight;
        }
    };
    commit(
        ctx,
        Write {
            key: ctx.keys.weight(region),
            after: serde_json::to_value(&doc).unwrap_or(Value::Null),
            edit: Edit::Put(encode(&doc)),
            what: format!("region set-weight {region} {weight}"),
            meta: &body.meta,
            must_exist: None,
            must_not_exist: false,
            effect: &effect,
            cleanup: Vec::new(),
        },
        now_ms,
    )
    .await
}

pub(crate) async fn clear_weight(
    ctx: &AdminContext,
    region: &str,
    meta: ChangeMeta,
) -> Result<Value, ApiError> {
    let now_ms = crate::now_ms();
    let snap = snapshot(ctx)?;
    check_region(&snap.topology, region)?;
    let reason = reason(&meta, false)?;
    let id = region.to_owned();
    let effect = move |t: &Topology, s: &mut RegionStates| {
        if let (Some(r), Some(st)) = (
            t.config().region(&id),
            t.region_index(&id).and_then(|i| s.get_mut(i)),
        ) {
            st.weight = r.weight;
        }
    };
    commit(
        ctx,
        Write {
            key: ctx.keys.weight(region),
            edit: Edit::Delete,
            what: with_reason(format!("region clear-weight {region}"), &reason),
            meta: &meta,
            after: Value::Null,
            must_exist: None,
            must_not_exist: false,
            effect: &effect,
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

pub(crate) async fn drain(ctx: &AdminContext, region: &str, meta: ChangeMeta) -> Result<Value, ApiError> {
    let now_ms = crate::now_ms();
    let snap = snapshot(ctx)?;
    check_region(&snap.topology, region)?;
    let doc = DrainOverride {
        schema: DOC_SCHEMA,
        author: author(&meta),
        reason: reason(&meta, true)?,
        at_ms: now_ms,
    };
    let id = region.to_owned();
    let effect = move |t: &Topology, s: &mut RegionStates| {
        if let Some(st) = t.region_index(&id).and_then(|i| s.get_mut(i)) {
            st.drained = true;
        }
    };
    commit(
        ctx,
        Write {
            key: ctx.keys.drain(region),
            after: serde_json::to_value(&doc).unwrap_or(Value::Null),
            edit: Edit::Put(encode(&doc)),
            what: format!("region drain {region}"),
            meta: &meta,
            must_exist: None,
            must_not_exist: false,
            effect: &effect,
            cleanup: Vec::new(),
        },
        now_ms,
    )
    .await
}

pub(crate) async fn undrain(ctx: &AdminContext, region: &str, meta: ChangeMeta) -> Result<Value, ApiError> {
    let now_ms = crate::now_ms();
    let snap = snapshot(ctx)?;
    check_region(&snap.topology, region)?;
    let reason = reason(&meta, false)?;
    let id = region.to_owned();
    let effect = move |t: &Topology, s: &mut RegionStates| {
        if let Some(st) = t.region_index(&id).and_then(|i| s.get_mut(i)) {
            st.drained = false;
        }
    };
    commit(
        ctx,
        Write {
            key: ctx.keys.drain(region),
            edit: Edit::Delete,
            what: with_reason(format!("region undrain {region}"), &reason),
            meta: &meta,
            after: Value::Null,
            must_exist: None,
            must_not_exist: false,
            effect: &effect,
            cleanup: Vec::new(),
        },
        now_ms,
    )
    .await
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

fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.'))
        && id.as_bytes()[0].is_ascii_alphanumeric()
}

pub(crate) async fn start_drill(ctx: &AdminContext, body: StartDrill) -> Result<Value, ApiError> {
    let now_ms = crate::now_ms();
    let snap = snapshot(ctx)?;
    check_region(&snap.topology, &body.region)?;
    let mode = parse_drill_mode(&body.mode).map_err(ApiError::bad_request)?;
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
        author: author(&body.meta),
        reason,
    };
    let (region, expires, drill_id) = (body.region.clone(), doc.expires_at_ms, id.clone());
    let effect = move |t: &Topology, s: &mut RegionStates| {
        if let Some(st) = t.region_index(&region).and_then(|i| s.get_mut(i)) {
            st.drills.push(Drill {
                id: drill_id.clone(),
                mode: steer_mode(mode),
                expires_at_ms: expires,
            });
        }
    };
    let mut result = commit(
        ctx,
        Write {
            key: ctx.keys.drill(&id),
            after: serde_json::to_value(&doc).unwrap_or(Value::Null),
            edit: Edit::Put(encode(&doc)),
            what: format!("drill start {id} ({} {})", mode_text(mode), body.region),
            meta: &body.meta,
            must_exist: None,
            must_not_exist: true,
            effect: &effect,
            cleanup,
        },
        now_ms,
    )
    .await?;
    if let Value::Object(o) = &mut result {
        o.insert("id".into(), json!(id));
        o.insert("drill".into(), crate::status::drill_json(&id, &doc, now_ms));
    }
    Ok(result)
}

pub(crate) async fn stop_drill(ctx: &AdminContext, id: &str, meta: ChangeMeta) -> Result<Value, ApiError> {
    let now_ms = crate::now_ms();
    snapshot(ctx)?;
    let reason = reason(&meta, false)?;
    let effect = |_: &Topology, _: &mut RegionStates| {};
    let mut result = commit(
        ctx,
        Write {
            key: ctx.keys.drill(id),
            edit: Edit::Delete,
            what: with_reason(format!("drill stop {id}"), &reason),
            meta: &meta,
            after: Value::Null,
            must_exist: Some(ApiError::not_found("unknown-drill", format!("no drill {id:?}"))),
            must_not_exist: false,
            effect: &effect,
            cleanup: Vec::new(),
        },
        now_ms,
    )
    .await?;
    if let Value::Object(o) = &mut result {
        o.insert("id".into(), json!(id));
    }
    Ok(result)
}

pub(crate) async fn put_config(ctx: &AdminContext, body: PutConfig) -> Result<Value, ApiError> {
    let who = body.author.clone().unwrap_or_else(|| "admin-api".to_owned());
    let outcome = meridian_store::apply_config(
        ctx.store.as_ref(),
        &ctx.keys,
        &body.toml,
        body.expect_revision,
        &who,
        crate::now_ms(),
    )
    .await
    .map_err(|e| match e {
        ConfigDocError::Store(s) => ApiError::from(s),
        ConfigDocError::Invalid(e) => {
            ApiError::bad_request(format!("the configuration is invalid; nothing was applied:\n{e}"))
        }
        ConfigDocError::Unreadable(m) => ApiError::internal(m),
    })?;
    match outcome {
        ApplyOutcome::Applied { revision, previous } => {
            ctx.watcher.wait_for(revision, REFLECT_WAIT).await;
            Ok(json!({
                "outcome": "applied",
                "revision": revision,
                "previous_revision": previous.map(|p| p.revision),
            }))
        }
        ApplyOutcome::Unchanged { revision } => Ok(json!({ "outcome": "unchanged", "revision": revision })),
        ApplyOutcome::Conflict { expected, current } => Err(ApiError::conflict(
            format!(
                "the stored configuration is at revision {}, not {expected}; nothing was applied",
                current.as_ref().map_or(0, |c| c.revision)
            ),
            current.map_or(
                Value::Null,
                |c| json!({ "revision": c.revision, "toml": c.doc.toml, "author": c.doc.author }),
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn drill_modes_parse() {
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
    fn drill_ids_are_checked() {
        assert!(valid_id("waw-down-1795000000000"));
        assert!(!valid_id(""));
        assert!(!valid_id("-x"));
        assert!(!valid_id("a/b"));
        assert!(!valid_id(&"a".repeat(65)));
    }
}
