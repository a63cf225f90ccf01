//! The etcd back end (production), on `etcd-client`.
//!
//! Connection handling: several endpoints, optional TLS and user/password authentication, a request
//! deadline on every call, and lazy (re)connection — a node started while etcd is unreachable still starts
//! (and serves its cached snapshot). Watches use progress requests to prove liveness: a watch that hears
//! nothing, not even progress, within its interval reports the store unavailable instead of waiting
//! forever on a half-open connection.
//!
//! **Failover between members.** `etcd-client`'s balanced channel sends requests to every endpoint in
//! turn, dead ones included (its issues #12 and #39): with one member of three down, a third of the calls
//! fail. etcd's client design asks clients to fail over instead. So this store keeps one client per
//! member, sends each call to the member that last answered, and on a failure that says nothing was done
//! (unreachable, timed out, no leader, leader changed) tries the next member, until the call's deadline;
//! a member that failed is skipped for [`MEMBER_PENALTY`] so later calls do not wait on it again.
//! Every operation is safe to repeat: reads; puts and deletes of a given value; compare-and-swap
//! transactions (a repeat of one that was in fact applied fails its compare, and the caller sees a
//! conflict, never a double write); lease grants (an orphan expires with its TTL) and keep-alives.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use etcd_client::{
    Certificate, Client, Compare as EtcdCompare, CompareOp, ConnectOptions, EventType, GetOptions, Identity,
    PutOptions, TlsOptions, Txn, TxnOp as EtcdTxnOp, WatchOptions,
};
use tokio::sync::Mutex;

use crate::kv::*;

/// How to reach etcd.
#[derive(Clone, Debug)]
pub struct EtcdOptions {
    /// Client URLs (`http://10.0.0.1:2379`, `https://...` with TLS).
    pub endpoints: Vec<String>,
    /// User name and password, for etcd with authentication enabled.
    pub auth: Option<(String, String)>,
    /// PEM CA bundle to verify the servers (enables TLS).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key, for mutual TLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Deadline of one request.
    pub request_timeout: Duration,
    /// Deadline of one connection attempt.
    pub connect_timeout: Duration,
}

impl EtcdOptions {
    /// Plain-text endpoints with default timeouts (2 s per request, 2 s per connection attempt).
    pub fn new(endpoints: Vec<String>) -> Self {
        Self {
            endpoints,
            auth: None,
            ca_file: None,
            client_cert: None,
            request_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
        }
    }
}

/// How long a member that failed a call is passed over (unless every member is).
pub const MEMBER_PENALTY: Duration = Duration::from_secs(2);

/// One endpoint, with its own connection.
struct Member {
    endpoint: String,
    client: Mutex<Option<Client>>,
    /// Milliseconds since the store's epoch until which the member is passed over (0: not).
    down_until_ms: AtomicU64,
}

/// The etcd store.
pub struct EtcdStore {
    options: EtcdOptions,
    members: Vec<Member>,
    /// The member that answered last: calls go there first.
    preferred: AtomicUsize,
    epoch: Instant,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl EtcdStore {
    /// A store for these endpoints. Does not connect yet: the first operation does, and later ones
    /// reconnect as needed.
    pub fn new(options: EtcdOptions) -> Result<Self> {
        if options.endpoints.is_empty() {
            return Err(StoreError::Invalid("no etcd endpoints given".to_owned()));
        }
        let members = options
            .endpoints
            .iter()
            .map(|e| Member {
                endpoint: e.clone(),
                client: Mutex::new(None),
                down_until_ms: AtomicU64::new(0),
            })
            .collect();
        Ok(Self {
            options,
            members,
            preferred: AtomicUsize::new(0),
            epoch: Instant::now(),
        })
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The order to try members in: the preferred one first, then the others in turn, members passed
    /// over (recently failed) last.
    fn order(&self) -> Vec<usize> {
        let n = self.members.len();
        let first = self.preferred.load(Ordering::Relaxed) % n;
        let now = self.now_ms();
        let (mut up, mut down): (Vec<usize>, Vec<usize>) = (0..n)
            .map(|k| (first + k) % n)
            .partition(|&i| self.members[i].down_until_ms.load(Ordering::Relaxed) <= now);
        down.sort_by_key(|&i| self.members[i].down_until_ms.load(Ordering::Relaxed));
        up.append(&mut down);
        up
    }

    async fn client(&self, member: usize) -> Result<Client> {
        let m = &self.members[member];
        let mut guard = m.client.lock().await;
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let mut opts = ConnectOptions::new()
            .with_timeout(self.options.request_timeout)
            .with_connect_timeout(self.options.connect_timeout)
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3))
            // A member cut off from the leader must not keep a watch alive with its own, frozen revision
            // (its progress answers would say "in sync"): requests and watches require a leader, so a
            // partitioned member fails them and the call moves on (or the node knows it is cut off).
            .with_require_leader(true);
        if let Some((user, password)) = &self.options.auth {
            opts = opts.with_user(user.clone(), password.clone());
        }
        if self.options.ca_file.is_some() || self.options.client_cert.is_some() {
            let mut tls = TlsOptions::new();
            if let Some(ca) = &self.options.ca_file {
                let pem = std::fs::read(ca)
                    .map_err(|e| StoreError::Invalid(format!("etcd CA file {}: {e}", ca.display())))?;
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            if let Some((cert, key)) = &self.options.client_cert {
                let read = |p: &PathBuf| {
                    std::fs::read(p).map_err(|e| {
                        StoreError::Invalid(format!("etcd client certificate {}: {e}", p.display()))
                    })
                };
                tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            opts = opts.with_tls(tls);
        }
        let connect = Client::connect([m.endpoint.clone()], Some(opts));
        let client = tokio::time::timeout(self.options.connect_timeout, connect)
            .await
            .map_err(|_| StoreError::Unavailable(format!("connecting to {} timed out", m.endpoint)))?
            .map_err(map_err)?;
        *guard = Some(client.clone());
        Ok(client)
    }

    /// Runs a request within the request deadline, failing over between members (see the module
    /// documentation). One attempt gets at most half the deadline while another member is left to try,
    /// so one member that does not answer at all cannot use up the whole call.
    async fn call<T, F>(&self, f: impl Fn(Client) -> F) -> Result<T>
    where
        F: Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = Instant::now() + self.options.request_timeout;
        let mut last = None;
        for round in 0.. {
            for (k, i) in self.order().into_iter().enumerate() {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                let left = deadline - now;
                let others = self.members.len() - k - 1;
                let budget = if others > 0 { left / 2 } else { left };
                let attempt = async {
                    let client = self.client(i).await?;
                    f(client).await.map_err(map_err)
                };
                let outcome = tokio::time::timeout(budget, attempt).await.unwrap_or_else(|_| {
                    Err(StoreError::Unavailable(format!(
                        "{} did not answer within {budget:?}",
                        self.members[i].endpoint
                    )))
                });
                match outcome {
                    Ok(v) => {
                        self.preferred.store(i, Ordering::Relaxed);
                        self.members[i].down_until_ms.store(0, Ordering::Relaxed);
                        return Ok(v);
                    }
                    Err(e) if e.is_retryable() => {
                        let until = self.now_ms() + MEMBER_PENALTY.as_millis() as u64;
                        self.members[i].down_until_ms.store(until, Ordering::Relaxed);
                        // A broken connection is made anew next time.
                        if let Ok(mut c) = self.members[i].client.try_lock() {
                            *c = None;
                        }
                        tracing::debug!(member = %self.members[i].endpoint, error = %e, "etcd member failed a call; trying another");
                        last = Some(e);
                    }
                    Err(e) => return Err(e),
                }
            }
            if Instant::now() >= deadline {
                break;
            }
            // Every member failed quickly (an election in progress): wait a little, then go round again.
            let pause = Duration::from_millis(50 * (round + 1).min(4));
            tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
        }
        Err(match last {
            Some(StoreError::Unavailable(m)) => StoreError::Unavailable(format!(
                "no etcd member answered within {:?} ({}); last error: {m}",
                self.options.request_timeout,
                self.options.endpoints.join(",")
            )),
            Some(e) => e,
            None => StoreError::Unavailable(format!(
                "etcd request timed out after {:?}",
                self.options.request_timeout
            )),
        })
    }
}

fn map_err(e: etcd_client::Error) -> StoreError {
    use etcd_client::Error as E;
    match e {
        E::GRpcStatus(s) => {
            let msg = s.message().to_owned();
            match s.code() {
                tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => StoreError::Denied(msg),
                tonic::Code::NotFound if msg.contains("lease") => StoreError::LeaseNotFound(0),
                tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition | tonic::Code::OutOfRange
                    if msg.contains("compacted") =>
                {
                    StoreError::Compacted { compact_revision: 0 }
                }
                tonic::Code::InvalidArgument | tonic::Code::OutOfRange => StoreError::Invalid(msg),
                _ => StoreError::Unavailable(format!("{:?}: {msg}", s.code())),
            }
        }
        E::LeaseKeepAliveError(m) if m.contains("not found") => StoreError::LeaseNotFound(0),
        E::InvalidArgs(m) | E::EndpointError(m) => StoreError::Invalid(m),
        E::InvalidUri(u) => StoreError::Invalid(u.to_string()),
        other => StoreError::Unavailable(other.to_string()),
    }
}

/// etcd's "lease not found" does not say which lease; the caller knows.
fn naming_lease(lease: LeaseId) -> impl Fn(StoreError) -> StoreError {
    move |e| match e {
        StoreError::LeaseNotFound(_) => StoreError::LeaseNotFound(lease),
        e => e,
    }
}

fn convert(kv: &etcd_client::KeyValue) -> KeyValue {
    KeyValue {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        version: kv.version(),
        lease: kv.lease(),
    }
}

struct EtcdWatch {
    stream: etcd_client::WatchStream,
    progress_interval: Duration,
    /// A progress request is outstanding: the next silence means the store is gone.
    asked: bool,
}

#[async_trait]
impl WatchStream for EtcdWatch {
    async fn next(&mut self) -> Result<WatchMessage> {
        loop {
            let msg = match tokio::time::timeout(self.progress_interval, self.stream.message()).await {
                Err(_) if self.asked => {
                    return Err(StoreError::Unavailable(
                        "etcd watch silent: no events and no progress".to_owned(),
                    ));
                }
                Err(_) => {
                    // Idle or dead? Ask; the answer (or its absence) tells.
                    self.asked = true;
                    self.stream.request_progress().await.map_err(map_err)?;
                    continue;
                }
                Ok(Err(e)) => return Err(map_err(e)),
                Ok(Ok(None)) => return Err(StoreError::Unavailable("etcd closed the watch".to_owned())),
                Ok(Ok(Some(m))) => m,
            };
            self.asked = false;
            if msg.compact_revision() > 0 {
                return Err(StoreError::Compacted {
                    compact_revision: msg.compact_revision(),
                });
            }
            if msg.canceled() {
                return Err(StoreError::Unavailable(format!(
                    "etcd cancelled the watch: {}",
                    msg.cancel_reason()
                )));
            }
            let revision = msg.header().map_or(0, |h| h.revision());
            if msg.created() && msg.events().is_empty() {
                continue;
            }
            if msg.events().is_empty() {
                return Ok(WatchMessage::Progress { revision });
            }
            let events = msg
                .events()
                .iter()
                .filter_map(|e| {
                    let kv = convert(e.kv()?);
                    let kind = match e.event_type() {
                        EventType::Put => EventKind::Put,
                        EventType::Delete => EventKind::Delete,
                    };
                    Some(Event { kind, kv })
                })
                .collect();
            return Ok(WatchMessage::Events { revision, events });
        }
    }
}

#[async_trait]
impl KvStore for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = key.to_owned();
        let resp = self
            .call(|mut c| {
                let key = key.clone();
                async move { c.get(key, None).await }
            })
            .await?;
        Ok(resp.kvs().first().map(convert))
    }

    async fn list(&self, prefix: &str) -> Result<Listing> {
        let prefix = prefix.to_owned();
        let resp = self
            .call(|mut c| {
                let prefix = prefix.clone();
                async move { c.get(prefix, Some(GetOptions::new().with_prefix())).await }
            })
            .await?;
        Ok(Listing {
            kvs: resp.kvs().iter().map(convert).collect(),
            revision: resp.header().map_or(0, |h| h.revision()),
        })
    }

    async fn put(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> Result<Revision> {
        let key = key.to_owned();
        let opts = lease.map(|l| PutOptions::new().with_lease(l));
        let resp = self
            .call(|mut c| {
                let (key, value, opts) = (key.clone(), value.clone(), opts.clone());
                async move { c.put(key, value, opts).await }
            })
            .await
            .map_err(|e| match lease {
                Some(l) => naming_lease(l)(e),
                None => e,
            })?;
        Ok(resp.header().map_or(0, |h| h.revision()))
    }

    async fn delete(&self, key: &str) -> Result<Revision> {
        let key = key.to_owned();
        let resp = self
            .call(|mut c| {
                let key = key.clone();
                async move { c.delete(key, None).await }
            })
            .await?;
        Ok(resp.header().map_or(0, |h| h.revision()))
    }

    async fn txn(&self, compares: Vec<Compare>, ops: Vec<TxnOp>) -> Result<TxnResult> {
        let compares: Vec<EtcdCompare> = compares
            .into_iter()
            .map(|c| EtcdCompare::mod_revision(c.key, CompareOp::Equal, c.mod_revision))
            .collect();
        let ops: Vec<EtcdTxnOp> = ops
            .into_iter()
            .map(|op| match op {
                TxnOp::Put { key, value, lease } => {
                    EtcdTxnOp::put(key, value, lease.map(|l| PutOptions::new().with_lease(l)))
                }
                TxnOp::Delete { key } => EtcdTxnOp::delete(key, None),
            })
            .collect();
        let txn = Txn::new().when(compares).and_then(ops);
        let resp = self
            .call(|mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await?;
        Ok(TxnResult {
            succeeded: resp.succeeded(),
            revision: resp.header().map_or(0, |h| h.revision()),
        })
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId> {
        let secs = ttl.as_secs_f64().ceil().max(1.0) as i64;
        let resp = self
            .call(|mut c| async move { c.lease_grant(secs, None).await })
            .await?;
        Ok(resp.id())
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<()> {
        let resp = self
            .call(|mut c| async move {
                let (mut keeper, mut stream) = c.lease_keep_alive(lease).await?;
                keeper.keep_alive().await?;
                stream.message().await
            })
            .await
            .map_err(naming_lease(lease))?;
        match resp {
            Some(r) if r.ttl() > 0 => Ok(()),
            _ => Err(StoreError::LeaseNotFound(lease)),
        }
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<()> {
        self.call(|mut c| async move { c.lease_revoke(lease).await })
            .await
            .map(|_| ())
            .map_err(naming_lease(lease))
    }

    async fn watch(
        &self,
        prefix: &str,
        from: Revision,
        progress_interval: Duration,
    ) -> Result<Box<dyn WatchStream>> {
        let prefix = prefix.to_owned();
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(from)
            .with_progress_notify();
        let stream = self
            .call(|mut c| {
                let (prefix, opts) = (prefix.clone(), opts.clone());
                async move { c.watch(prefix, Some(opts)).await }
            })
            .await?;
        Ok(Box::new(EtcdWatch {
            stream,
            progress_interval,
            asked: false,
        }))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.call(|mut c| async move { c.compact(revision, None).await })
            .await
            .map(|_| ())
    }

    fn describe(&self) -> String {
        format!("etcd {}", self.options.endpoints.join(","))
    }
}
