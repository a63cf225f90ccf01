//! Keeping a lease alive for as long as its owner lives: probers attach their observations to one, proxies
//! their load reports, so that when the owner dies its opinions vanish by themselves.
//!
//! The keeper refreshes the lease every third of its TTL. If the lease is lost anyway (the store was
//! unreachable for longer than the TTL, or the lease was revoked), it grants a new one and announces its id
//! on [`LeaseKeeper::lease`]: owners re-publish their keys under it. Dropping the keeper revokes the lease
//! (best effort), deleting the owner's keys at once rather than at expiry.
//!
//! A leased lock ([`take_lock`]: `acme/lock`, `notify/sender`) is a [`LockDoc`] created under its holder's
//! lease only where the key is absent: one holder at a time, gone with its holder's lease.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::kv::{Compare, KvStore, LeaseId, StoreError, TxnOp};
use crate::schema::{DOC_SCHEMA, LockDoc, encode};

/// A lease kept alive in the background.
pub struct LeaseKeeper {
    store: Arc<dyn KvStore>,
    lease: watch::Receiver<LeaseId>,
    task: JoinHandle<()>,
    /// Revoked by [`LeaseKeeper::stop`]: nothing left for drop to do.
    stopped: bool,
}

impl LeaseKeeper {
    /// Grants a lease of `ttl` and keeps it alive.
    pub async fn start(store: Arc<dyn KvStore>, ttl: Duration) -> Result<Self, StoreError> {
        let first = store.grant_lease(ttl).await?;
        let (tx, rx) = watch::channel(first);
        let task = tokio::spawn(keep(store.clone(), ttl, tx));
        Ok(Self {
            store,
            lease: rx,
            task,
            stopped: false,
        })
    }

    /// The current lease id (changes if the lease had to be granted again).
    pub fn id(&self) -> LeaseId {
        *self.lease.borrow()
    }

    /// A channel announcing new lease ids.
    pub fn lease(&self) -> watch::Receiver<LeaseId> {
        self.lease.clone()
    }

    /// Stops refreshing and revokes the lease now, waiting for the store's answer (a clean shutdown:
    /// the owner's keys vanish at once). Dropping the keeper only starts the revocation in the background,
    /// which a runtime shutting down may never run.
    pub async fn stop(mut self) -> Result<(), StoreError> {
        self.task.abort();
        self.stopped = true;
        self.store.revoke_lease(self.id()).await
    }
}

async fn keep(store: Arc<dyn KvStore>, ttl: Duration, tx: watch::Sender<LeaseId>) {
    let period = ttl / 3;
    loop {
        tokio::time::sleep(period).await;
        let id = *tx.borrow();
        match store.keep_alive(id).await {
            Ok(()) => {}
            Err(StoreError::LeaseNotFound(_)) => {
                tracing::warn!(lease = id, "lease lost; granting a new one (owners re-publish)");
                if let Ok(new) = store.grant_lease(ttl).await {
                    let _ = tx.send(new);
                }
            }
            // Unreachable store: keep trying every period; if it comes back within the TTL, nothing lost.
            Err(e) => tracing::warn!(lease = id, error = %e, "cannot refresh lease"),
        }
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.task.abort();
        if self.stopped {
            return;
        }
        let (store, id) = (self.store.clone(), self.id());
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = store.revoke_lease(id).await;
            });
        }
    }
}

/// Takes the lock `key` for `holder` (`ROLE/INSTANCE`) under `lease` if nobody holds it: `Ok(true)` when
/// taken, `Ok(false)` when another holder has it.
pub async fn take_lock(
    store: &dyn KvStore,
    key: &str,
    holder: &str,
    lease: LeaseId,
) -> Result<bool, StoreError> {
    let doc = LockDoc {
        schema: DOC_SCHEMA,
        holder: holder.to_owned(),
        since_ms: crate::now_ms(),
    };
    let taken = store
        .txn(
            vec![Compare {
                key: key.to_owned(),
                mod_revision: 0,
            }],
            vec![TxnOp::Put {
                key: key.to_owned(),
                value: encode(&doc),
                lease: Some(lease),
            }],
        )
        .await?;
    Ok(taken.succeeded)
}
