//! The embedded store: the whole contract in one process, for one machine (`meridian up`'s default).
//!
//! Same semantics as etcd where Meridian relies on them: one revision per change, compare-and-swap
//! transactions, prefix watches that replay history from a revision, compaction, and leases whose expiry
//! deletes their keys with delete events. Keys not bound to a lease are persisted in a data directory,
//! written atomically (temporary file, fsync, rename, fsync of the directory) so a crash leaves either the
//! old or the new state, never a torn file. Leased keys are ephemeral by nature (their owners re-publish
//! them), so they are not persisted. A lock file keeps two processes off one directory.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::kv::*;

/// Events kept for watch replay; older history is compacted automatically (as etcd's auto-compaction).
const HISTORY_LIMIT: usize = 10_000;
/// How often lease deadlines are checked.
const LEASE_TICK: Duration = Duration::from_millis(50);
/// Name of the state file in the data directory.
const STATE_FILE: &str = "state.json";

/// The embedded store. Cheap to clone (shared).
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Mutex<Inner>>,
    /// Shared by the handles only (never by background tasks or watch streams), so the data directory's
    /// lock is released exactly when the last handle is dropped.
    open: Arc<OpenHandle>,
    description: String,
}

struct OpenHandle {
    /// The OS lock on this file keeps other processes (and other opens) out of the data directory.
    _lock: Option<File>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

struct Lease {
    ttl: Duration,
    deadline: Instant,
    keys: BTreeSet<String>,
}

struct Subscriber {
    prefix: String,
    tx: mpsc::UnboundedSender<(Revision, Vec<Event>)>,
}

struct Persistence {
    dir: PathBuf,
}

struct Inner {
    kvs: BTreeMap<String, KeyValue>,
    revision: Revision,
    compact_revision: Revision,
    history: VecDeque<(Revision, Event)>,
    leases: HashMap<LeaseId, Lease>,
    next_lease: LeaseId,
    subscribers: Vec<Subscriber>,
    persistence: Option<Persistence>,
}

/// A key-value as written to disk (the state file, and the snapshot watcher's cache file).
#[derive(Serialize, Deserialize)]
pub(crate) struct PersistedKv {
    key: String,
    value_b64: String,
    create_revision: Revision,
    mod_revision: Revision,
    version: i64,
}

impl PersistedKv {
    pub(crate) fn from_kv(kv: &KeyValue) -> Self {
        Self {
            key: kv.key.clone(),
            value_b64: base64::engine::general_purpose::STANDARD.encode(&kv.value),
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
        }
    }

    pub(crate) fn into_kv(self) -> std::result::Result<KeyValue, String> {
        let value = base64::engine::general_purpose::STANDARD
            .decode(&self.value_b64)
            .map_err(|e| format!("key {}: {e}", self.key))?;
        Ok(KeyValue {
            key: self.key,
            value,
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
            lease: 0,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct PersistedState {
    format: u32,
    revision: Revision,
    kvs: Vec<PersistedKv>,
}

impl EmbeddedStore {
    /// A store that lives in memory only (tests, `explain`-style tools).
    pub fn in_memory() -> Self {
        Self::from_inner(Inner::new(None), None, "embedded (in memory)".to_owned())
    }

    /// Opens (creating if needed) a store persisted in `dir`. Fails if another process holds the directory
    /// or if the state file is unreadable — an unreadable file is never silently replaced by an empty
    /// store, which would lose every operator change.
    pub fn open(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir).map_err(|e| storage(dir, "create", &e))?;
        let lock_path = dir.join("lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| storage(&lock_path, "open", &e))?;
        // A lock can outlive its holder by a moment: a process that just exited, or a child forked (to exec
        // a tool) while the lock's descriptor was open shares it until its exec closes it. Try for half a
        // second before calling the directory taken.
        let mut locked = lock.try_lock().is_ok();
        for _ in 0..50 {
            if locked {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
            locked = lock.try_lock().is_ok();
        }
        if !locked {
            return Err(StoreError::Storage(format!(
                "data directory {} is in use by another Meridian process (lock file {})",
                dir.display(),
                lock_path.display()
            )));
        }
        let mut inner = Inner::new(Some(Persistence { dir: dir.to_owned() }));
        let path = dir.join(STATE_FILE);
        match fs::read(&path) {
            Ok(bytes) => {
                let state: PersistedState = serde_json::from_slice(&bytes).map_err(|e| {
                    StoreError::Storage(format!("{} is not a Meridian state file: {e}", path.display()))
                })?;
                if state.format != 1 {
                    return Err(StoreError::Storage(format!(
                        "{} has format {}, this build reads 1",
                        path.display(),
                        state.format
                    )));
                }
                for p in state.kvs {
                    let kv = p
                        .into_kv()
                        .map_err(|e| StoreError::Storage(format!("{}: {e}", path.display())))?;
                    inner.kvs.insert(kv.key.clone(), kv);
                }
                // One past the persisted revision marks the restart; leased keys (not persisted) are gone,
                // as if their leases had expired while the process was down.
                inner.revision = state.revision + 1;
                inner.compact_revision = inner.revision;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(storage(&path, "read", &e)),
        }
        Ok(Self::from_inner(
            inner,
            Some(lock),
            format!("embedded {}", dir.display()),
        ))
    }

    fn from_inner(inner: Inner, lock: Option<File>, description: String) -> Self {
        let store = Self {
            inner: Arc::new(Mutex::new(inner)),
            open: Arc::new(OpenHandle { _lock: lock }),
            description,
        };
        // Leases expire on their own while the store is open. Outside a runtime (a synchronous tool),
        // expiry happens on the next operation instead.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(expire_leases(
                Arc::downgrade(&store.inner),
                Arc::downgrade(&store.open),
            ));
        }
        store
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated in a way later operations
        // misread (each mutation completes before unlocking), so a poisoned lock is still usable.
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.expire(Instant::now());
        inner
    }
}

async fn expire_leases(inner: Weak<Mutex<Inner>>, open: Weak<OpenHandle>) {
    let mut tick = tokio::time::interval(LEASE_TICK);
    loop {
        tick.tick().await;
        if open.strong_count() == 0 {
            return;
        }
        let Some(inner) = inner.upgrade() else { return };
        inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .expire(Instant::now());
    }
}

fn storage(path: &Path, what: &str, e: &std::io::Error) -> StoreError {
    StoreError::Storage(format!("cannot {what} {}: {e}", path.display()))
}

impl Inner {
    fn new(persistence: Option<Persistence>) -> Self {
        Self {
            kvs: BTreeMap::new(),
            revision: 1,
            compact_revision: 0,
            history: VecDeque::new(),
            leases: HashMap::new(),
            next_lease: 0x4d45_0000_0000_0001,
            subscribers: Vec::new(),
            persistence,
        }
    }

    /// Applies a batch of operations as one revision; notifies watchers; persists if needed.
    fn commit(&mut self, ops: Vec<TxnOp>) -> Result<Revision> {
        for op in &ops {
            if let TxnOp::Put { lease: Some(l), .. } = op
                && !self.leases.contains_key(l)
            {
                return Err(StoreError::LeaseNotFound(*l));
            }
        }
        let revision = self.revision + 1;
        let mut events = Vec::new();
        let mut persist = false;
        for op in ops {
            match op {
                TxnOp::Put { key, value, lease } => {
                    let lease = lease.unwrap_or(0);
                    let (create_revision, version, old_lease) = match self.kvs.get(&key) {
                        Some(kv) => (kv.create_revision, kv.version + 1, kv.lease),
                        None => (revision, 1, 0),
                    };
                    if old_lease != 0
                        && old_lease != lease
                        && let Some(l) = self.leases.get_mut(&old_lease)
                    {
                        l.keys.remove(&key);
                    }
                    if let Some(l) = self.leases.get_mut(&lease) {
                        l.keys.insert(key.clone());
                    }
                    persist |= lease == 0 || old_lease == 0;
                    let kv = KeyValue {
                        key: key.clone(),
                        value,
                        create_revision,
                        mod_revision: revision,
                        version,
                        lease,
                    };
                    self.kvs.insert(key, kv.clone());
                    events.push(Event {
                        kind: EventKind::Put,
                        kv,
                    });
                }
                TxnOp::Delete { key } => {
                    if let Some(old) = self.kvs.remove(&key) {
                        if let Some(l) = self.leases.get_mut(&old.lease) {
                            l.keys.remove(&key);
                        }
                        persist |= old.lease == 0;
                        events.push(Event {
                            kind: EventKind::Delete,
                            kv: deleted(key, revision),
                        });
                    }
                }
            }
        }
        if events.is_empty() {
            return Ok(self.revision);
        }
        self.revision = revision;
        if persist {
            self.persist()?;
        }
        for e in &events {
            self.history.push_back((revision, e.clone()));
        }
        while self.history.len() > HISTORY_LIMIT {
            if let Some((r, _)) = self.history.pop_front() {
                self.compact_revision = self.compact_revision.max(r - 1);
            }
        }
        self.subscribers.retain(|s| {
            let mine: Vec<Event> = events
                .iter()
                .filter(|e| e.kv.key.starts_with(&s.prefix))
                .cloned()
                .collect();
            mine.is_empty() || s.tx.send((revision, mine)).is_ok()
        });
        Ok(revision)
    }

    fn expire(&mut self, now: Instant) {
        let expired: Vec<LeaseId> = self
            .leases
            .iter()
            .filter(|(_, l)| l.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(lease) = self.leases.remove(&id) {
                let ops = lease.keys.into_iter().map(|key| TxnOp::Delete { key }).collect();
                // Leased keys are not persisted, so this commit cannot fail on storage.
                let _ = self.commit(ops);
            }
        }
    }

    fn persist(&self) -> Result<()> {
        let Some(p) = &self.persistence else { return Ok(()) };
        let state = PersistedState {
            format: 1,
            revision: self.revision,
            kvs: self
                .kvs
                .values()
                .filter(|kv| kv.lease == 0)
                .map(PersistedKv::from_kv)
                .collect(),
        };
        let bytes = serde_json::to_vec(&state).map_err(|e| StoreError::Storage(e.to_string()))?;
        write_atomically(&p.dir, STATE_FILE, &bytes)
    }
}

/// Writes `dir/name` so that a crash at any point leaves either the old or the new content.
pub(crate) fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let target = dir.join(name);
    let mut f = File::create(&tmp).map_err(|e| storage(&tmp, "create", &e))?;
    f.write_all(bytes).map_err(|e| storage(&tmp, "write", &e))?;
    f.sync_all().map_err(|e| storage(&tmp, "sync", &e))?;
    drop(f);
    fs::rename(&tmp, &target).map_err(|e| storage(&target, "replace", &e))?;
    // The rename is durable only once the directory entry is.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| storage(dir, "sync", &e))
}

fn deleted(key: String, revision: Revision) -> KeyValue {
    KeyValue {
        key,
        value: Vec::new(),
        create_revision: 0,
        mod_revision: revision,
        version: 0,
        lease: 0,
    }
}

struct EmbeddedWatch {
    inner: Weak<Mutex<Inner>>,
    pending: VecDeque<(Revision, Vec<Event>)>,
    rx: mpsc::UnboundedReceiver<(Revision, Vec<Event>)>,
    progress_interval: Duration,
}

#[async_trait]
impl WatchStream for EmbeddedWatch {
    async fn next(&mut self) -> Result<WatchMessage> {
        if let Some((revision, events)) = self.pending.pop_front() {
            return Ok(WatchMessage::Events { revision, events });
        }
        match tokio::time::timeout(self.progress_interval, self.rx.recv()).await {
            Ok(Some((revision, events))) => Ok(WatchMessage::Events { revision, events }),
            Ok(None) => Err(StoreError::Unavailable("embedded store closed".to_owned())),
            Err(_) => match self.inner.upgrade() {
                Some(inner) => {
                    let revision = inner.lock().unwrap_or_else(|e| e.into_inner()).revision;
                    Ok(WatchMessage::Progress { revision })
                }
                None => Err(StoreError::Unavailable("embedded store closed".to_owned())),
            },
        }
    }
}

#[async_trait]
impl KvStore for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(self.lock().kvs.get(key).cloned())
    }

    async fn list(&self, prefix: &str) -> Result<Listing> {
        let inner = self.lock();
        let kvs = inner
            .kvs
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect();
        Ok(Listing {
            kvs,
            revision: inner.revision,
        })
    }

    async fn put(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> Result<Revision> {
        check_key(key)?;
        self.lock().commit(vec![TxnOp::Put {
            key: key.to_owned(),
            value,
            lease,
        }])
    }

    async fn delete(&self, key: &str) -> Result<Revision> {
        self.lock().commit(vec![TxnOp::Delete { key: key.to_owned() }])
    }

    async fn txn(&self, compares: Vec<Compare>, ops: Vec<TxnOp>) -> Result<TxnResult> {
        let mut seen = BTreeSet::new();
        for op in &ops {
            let key = match op {
                TxnOp::Put { key, .. } | TxnOp::Delete { key } => key,
            };
            check_key(key)?;
            if !seen.insert(key.clone()) {
                return Err(StoreError::Invalid(format!(
                    "key {key} appears twice in one transaction"
                )));
            }
        }
        let mut inner = self.lock();
        let holds = compares
            .iter()
            .all(|c| inner.kvs.get(&c.key).map_or(0, |kv| kv.mod_revision) == c.mod_revision);
        if !holds {
            return Ok(TxnResult {
                succeeded: false,
                revision: inner.revision,
            });
        }
        let revision = inner.commit(ops)?;
        Ok(TxnResult {
            succeeded: true,
            revision,
        })
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId> {
        if ttl < Duration::from_millis(100) {
            return Err(StoreError::Invalid(format!("lease TTL {ttl:?} is below 100 ms")));
        }
        let mut inner = self.lock();
        let id = inner.next_lease;
        inner.next_lease += 1;
        inner.leases.insert(
            id,
            Lease {
                ttl,
                deadline: Instant::now() + ttl,
                keys: BTreeSet::new(),
            },
        );
        Ok(id)
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<()> {
        let mut inner = self.lock();
        let l = inner
            .leases
            .get_mut(&lease)
            .ok_or(StoreError::LeaseNotFound(lease))?;
        l.deadline = Instant::now() + l.ttl;
        Ok(())
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<()> {
        let mut inner = self.lock();
        let l = inner
            .leases
            .remove(&lease)
            .ok_or(StoreError::LeaseNotFound(lease))?;
        inner.commit(l.keys.into_iter().map(|key| TxnOp::Delete { key }).collect())?;
        Ok(())
    }

    async fn watch(
        &self,
        prefix: &str,
        from: Revision,
        progress_interval: Duration,
    ) -> Result<Box<dyn WatchStream>> {
        let mut inner = self.lock();
        if from <= inner.compact_revision {
            return Err(StoreError::Compacted {
                compact_revision: inner.compact_revision,
            });
        }
        let mut pending: VecDeque<(Revision, Vec<Event>)> = VecDeque::new();
        for (rev, e) in inner
            .history
            .iter()
            .filter(|(r, e)| *r >= from && e.kv.key.starts_with(prefix))
        {
            match pending.back_mut() {
                Some((r, events)) if r == rev => events.push(e.clone()),
                _ => pending.push_back((*rev, vec![e.clone()])),
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        inner.subscribers.push(Subscriber {
            prefix: prefix.to_owned(),
            tx,
        });
        Ok(Box::new(EmbeddedWatch {
            inner: Arc::downgrade(&self.inner),
            pending,
            rx,
            progress_interval,
        }))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let mut inner = self.lock();
        if revision > inner.revision {
            return Err(StoreError::Invalid(format!(
                "cannot compact to {revision}: current revision is {}",
                inner.revision
            )));
        }
        inner.compact_revision = inner.compact_revision.max(revision);
        while inner.history.front().is_some_and(|(r, _)| *r <= revision) {
            inner.history.pop_front();
        }
        Ok(())
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

fn check_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(StoreError::Invalid("empty key".to_owned()));
    }
    Ok(())
}
