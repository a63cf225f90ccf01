//! The key-value contract both back ends implement: the subset of etcd's model Meridian relies on —
//! revisions, compare-and-swap transactions, prefix watches that resume from a revision, and leases whose
//! expiry deletes their keys (emitting delete events).
//!
//! Anything that holds an `Arc<dyn KvStore>` works the same on etcd and on the embedded store; the
//! conformance battery in `store/tests/conformance.rs` holds both to it.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

/// A store revision: increases by one with every change (a transaction is one change).
pub type Revision = i64;

/// A lease handle.
pub type LeaseId = i64;

/// A stored key and its metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value (empty for a delete event).
    pub value: Vec<u8>,
    /// Revision at which the key was created.
    pub create_revision: Revision,
    /// Revision of the last change to the key (of the deletion, in a delete event).
    pub mod_revision: Revision,
    /// Number of changes since creation.
    pub version: i64,
    /// Lease the key is attached to, 0 for none.
    pub lease: LeaseId,
}

/// Keys under a prefix, as of a revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    /// The keys, sorted.
    pub kvs: Vec<KeyValue>,
    /// The store's revision when listed: watch from `revision + 1` to miss nothing.
    pub revision: Revision,
}

/// What happened to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// Created or updated.
    Put,
    /// Deleted (explicitly or by lease expiry).
    Delete,
}

/// One change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Put or delete.
    pub kind: EventKind,
    /// The key after the change (for deletes: key and `mod_revision` only).
    pub kv: KeyValue,
}

/// What a watch delivers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchMessage {
    /// Changes, in revision order; `revision` is the store revision after them.
    Events {
        /// Store revision of this response.
        revision: Revision,
        /// The changes.
        events: Vec<Event>,
    },
    /// Nothing changed under the prefix up to `revision`: the watcher is in sync.
    Progress {
        /// Store revision confirmed.
        revision: Revision,
    },
}

/// A compare in a transaction: "the key's last change was at this revision" (0: the key does not exist).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compare {
    /// The key.
    pub key: String,
    /// Expected `mod_revision`; 0 means "absent".
    pub mod_revision: Revision,
}

/// An operation in a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnOp {
    /// Put a value, optionally under a lease.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: Vec<u8>,
        /// Lease, if any.
        lease: Option<LeaseId>,
    },
    /// Delete a key (no-op if absent).
    Delete {
        /// The key.
        key: String,
    },
}

/// Outcome of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnResult {
    /// Whether every compare held and the operations were applied.
    pub succeeded: bool,
    /// Store revision after the transaction (unchanged if it failed).
    pub revision: Revision,
}

/// Why a store operation failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// The store cannot be reached or did not answer in time. Retry with backoff.
    #[error("state store unavailable: {0}")]
    Unavailable(String),
    /// A watch asked for history that compaction removed; re-list, then watch from the listing.
    #[error("revision compacted (history starts after {compact_revision})")]
    Compacted {
        /// The compaction point.
        compact_revision: Revision,
    },
    /// The lease does not exist (expired or revoked).
    #[error("lease {0} not found (expired or revoked)")]
    LeaseNotFound(LeaseId),
    /// Authentication or permission failure: retrying will not help.
    #[error("state store refused access: {0}")]
    Denied(String),
    /// The request is invalid (bad key, oversized value...).
    #[error("invalid state store request: {0}")]
    Invalid(String),
    /// The embedded store's data directory could not be read or written.
    #[error("state store storage: {0}")]
    Storage(String),
}

impl StoreError {
    /// Whether retrying later may succeed. Exhaustive on purpose: a new variant must choose.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Unavailable(_) => true,
            Self::Compacted { .. }
            | Self::LeaseNotFound(_)
            | Self::Denied(_)
            | Self::Invalid(_)
            | Self::Storage(_) => false,
        }
    }
}

/// Result of a store operation.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A watch on a prefix. Ends with an error: [`StoreError::Compacted`] (re-list) or a retryable one
/// (re-watch from the last revision seen).
#[async_trait]
pub trait WatchStream: Send {
    /// The next message. Returns a [`WatchMessage::Progress`] at least every `progress_interval` given to
    /// [`KvStore::watch`] while the store is reachable, so silence means trouble.
    async fn next(&mut self) -> Result<WatchMessage>;
}

/// The contract of a state store back end.
#[async_trait]
pub trait KvStore: Send + Sync + fmt::Debug {
    /// One key.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;
    /// Every key under `prefix`, and the revision they are as of.
    async fn list(&self, prefix: &str) -> Result<Listing>;
    /// Puts a value; returns the new revision.
    async fn put(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> Result<Revision>;
    /// Deletes a key; returns the revision after (unchanged if the key was absent).
    async fn delete(&self, key: &str) -> Result<Revision>;
    /// If every compare holds, applies every operation atomically, as one revision.
    async fn txn(&self, compares: Vec<Compare>, ops: Vec<TxnOp>) -> Result<TxnResult>;
    /// Grants a lease; its keys are deleted unless it is kept alive within `ttl`.
    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId>;
    /// Refreshes a lease to its full TTL; [`StoreError::LeaseNotFound`] if it already expired.
    async fn keep_alive(&self, lease: LeaseId) -> Result<()>;
    /// Revokes a lease, deleting its keys now.
    async fn revoke_lease(&self, lease: LeaseId) -> Result<()>;
    /// Watches every key under `prefix` from revision `from` (inclusive).
    async fn watch(
        &self,
        prefix: &str,
        from: Revision,
        progress_interval: Duration,
    ) -> Result<Box<dyn WatchStream>>;
    /// Discards history up to `revision` (watches from before it fail with `Compacted`).
    async fn compact(&self, revision: Revision) -> Result<()>;
    /// A human description (`etcd http://127.0.0.1:2379`, `embedded /var/lib/meridian`).
    fn describe(&self) -> String;
}
