//! The desired configuration in the store: read it, and replace it only by compare-and-swap, with an
//! audit record written in the same transaction (so there is never a change without its record, nor a
//! record of a change that did not happen).

use std::sync::atomic::{AtomicU64, Ordering};

use meridian_config::{Config, ConfigError};

use crate::kv::{Compare, KvStore, Revision, StoreError, TxnOp};
use crate::schema::{AuditRecord, ConfigDoc, DOC_SCHEMA, Keys, decode, encode};

/// The configuration as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredConfig {
    /// The document.
    pub doc: ConfigDoc,
    /// Its `mod_revision`: pass it back to [`apply_config`] to apply only if nobody changed it since.
    pub revision: Revision,
}

/// Why reading or applying failed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigDocError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored document cannot be read (written by a newer Meridian, or damaged).
    #[error("the stored configuration cannot be read: {0}")]
    Unreadable(String),
    /// The new configuration is invalid; nothing was written.
    #[error("the configuration is invalid; nothing was applied:\n{0}")]
    Invalid(ConfigError),
}

/// What applying did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// Written at this revision.
    Applied {
        /// The new `mod_revision` of the config key.
        revision: Revision,
        /// What was replaced (None: the store had no configuration).
        previous: Option<StoredConfig>,
    },
    /// The store already holds exactly this text.
    Unchanged {
        /// Its revision.
        revision: Revision,
    },
    /// Someone changed the configuration since the revision the caller expected; nothing was written.
    Conflict {
        /// The revision the caller expected (0: "no configuration").
        expected: Revision,
        /// What is there now.
        current: Option<StoredConfig>,
    },
}

/// Reads the stored configuration.
pub async fn read_config(store: &dyn KvStore, keys: &Keys) -> Result<Option<StoredConfig>, ConfigDocError> {
    let Some(kv) = store.get(&keys.config()).await? else {
        return Ok(None);
    };
    let doc: ConfigDoc = decode(&kv.value).map_err(ConfigDocError::Unreadable)?;
    Ok(Some(StoredConfig {
        doc,
        revision: kv.mod_revision,
    }))
}

/// What else an apply checks and records, besides the compare-and-swap on the configuration key (the
/// admin API's safety checks: [`apply_config_with`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ApplyOptions {
    /// Other keys that must still be at these revisions (0: absent), in the same transaction: the state
    /// the caller's checks read. If one moved, nothing is written and the outcome is a
    /// [`ApplyOutcome::Conflict`] whose `current` is still at `expected`.
    pub guards: Vec<Compare>,
    /// Recorded in the audit record as `after.forced` when present: the safety refusals the author
    /// overrode.
    pub forced: Option<serde_json::Value>,
}

/// Validates `toml` and writes it if the stored configuration is still at `expected` (`None`: whatever
/// is stored now, read just before — the window for a lost update is then one round trip; callers that
/// showed the operator a diff pass the revision they diffed against).
pub async fn apply_config(
    store: &dyn KvStore,
    keys: &Keys,
    toml: &str,
    expected: Option<Revision>,
    author: &str,
    now_ms: u64,
) -> Result<ApplyOutcome, ConfigDocError> {
    apply_config_with(
        store,
        keys,
        toml,
        expected,
        author,
        now_ms,
        &ApplyOptions::default(),
    )
    .await
}

/// [`apply_config`], with `options`' guards in the transaction and its forced violations in the audit
/// record.
pub async fn apply_config_with(
    store: &dyn KvStore,
    keys: &Keys,
    toml: &str,
    expected: Option<Revision>,
    author: &str,
    now_ms: u64,
    options: &ApplyOptions,
) -> Result<ApplyOutcome, ConfigDocError> {
    Config::from_toml_str(toml).map_err(ConfigDocError::Invalid)?;
    let current = read_config(store, keys).await?;
    let current_rev = current.as_ref().map_or(0, |c| c.revision);
    let expected = expected.unwrap_or(current_rev);
    if expected != current_rev {
        return Ok(ApplyOutcome::Conflict { expected, current });
    }
    if let Some(c) = &current
        && c.doc.toml == toml
    {
        return Ok(ApplyOutcome::Unchanged { revision: c.revision });
    }
    let doc = ConfigDoc {
        schema: DOC_SCHEMA,
        toml: toml.to_owned(),
        author: author.to_owned(),
        applied_at_ms: now_ms,
    };
    let audit = AuditRecord {
        schema: DOC_SCHEMA,
        who: author.to_owned(),
        what: "config apply".to_owned(),
        at_ms: now_ms,
        before: current.as_ref().map_or(
            serde_json::Value::Null,
            |c| serde_json::json!({ "revision": c.revision, "toml": c.doc.toml }),
        ),
        after: match &options.forced {
            Some(forced) => serde_json::json!({ "toml": toml, "forced": forced }),
            None => serde_json::json!({ "toml": toml }),
        },
    };
    let ops = vec![
        TxnOp::Put {
            key: keys.config(),
            value: encode(&doc),
            lease: None,
        },
        TxnOp::Put {
            key: keys.audit(now_ms, nonce()),
            value: encode(&audit),
            lease: None,
        },
    ];
    let mut compares = vec![Compare {
        key: keys.config(),
        mod_revision: expected,
    }];
    compares.extend(options.guards.iter().cloned());
    let result = store.txn(compares, ops).await?;
    if result.succeeded {
        Ok(ApplyOutcome::Applied {
            revision: result.revision,
            previous: current,
        })
    } else {
        Ok(ApplyOutcome::Conflict {
            expected,
            current: read_config(store, keys).await?,
        })
    }
}

/// Distinguishes audit records written in the same millisecond (by this process: the time part, the
/// process id and a counter; other processes differ by process id or host clock).
fn nonce() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    (u64::from(std::process::id()) << 32) | (COUNTER.fetch_add(1, Ordering::Relaxed) & 0xffff_ffff)
}
