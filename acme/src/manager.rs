//! The renewal loop every proxy node runs: each second it looks at its snapshot for certificates that
//! are missing, cover other names than configured, or have passed `renew-fraction` of their lifetime,
//! and are not in backoff. Only then does it try the store lease `acme/lock` (one orderer in the fleet);
//! holding it, it reads the certificate and status documents from the store again (its snapshot may lag
//! another orderer's work), orders what is still due, and writes the certificate, or the error with the
//! next attempt's time (the wait doubling per failure, from `retry-initial-ms` up to `retry-max-ms`,
//! [`backoff_ms`]). The old certificate stays in the store, and serving, until a new one is written.
//!
//! The lock lives under a lease of [`LOCK_TTL`] taken afresh for each round and kept alive while the
//! round runs: an orderer that dies mid-order loses the lock (and its challenge records) when the lease
//! expires, and another node orders then.
//!
//! The operator key file is read every second: `meridian_acme_key_file_ok` says whether it loads. A
//! node that holds the lock but cannot load it records that as the order's error (so `meridian status`
//! shows it, naming the node), with the usual backoff.

use std::sync::Arc;
use std::time::Duration;

use meridian_config::{AcmeCertificate, AcmeSettings};
use meridian_store::schema::{AcmeCertDoc, AcmeStatusDoc, DOC_SCHEMA, decode, encode};
use meridian_store::{Keys, KvStore, LeaseKeeper, Snapshot, SnapshotWatcher, TxnOp, now_ms, take_lock};
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::order::{OrderContext, order};
use crate::seal::OperatorKey;

/// The ACME metrics of a node, from its snapshot (every node that runs the loop reports every
/// certificate, whoever ordered it).
#[derive(Clone, Debug)]
pub struct AcmeMetrics {
    renew_at: IntGaugeVec,
    not_after: IntGaugeVec,
    failing: IntGaugeVec,
    failures: IntGaugeVec,
    info: IntGaugeVec,
    last_error: IntGaugeVec,
    key_file_ok: IntGaugeVec,
    orders: IntCounterVec,
}

/// The longest error text in `meridian_acme_last_error_info` (the whole one is in `meridian status`).
const ERROR_LABEL_MAX: usize = 200;

impl Default for AcmeMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl AcmeMetrics {
    /// Unregistered metrics.
    pub fn new() -> Self {
        let gauge = |name: &str, help: &str| {
            IntGaugeVec::new(Opts::new(name, help), &["name"])
                .unwrap_or_else(|_| unreachable!("valid metric name"))
        };
        Self {
            renew_at: gauge(
                "meridian_acme_renew_at_timestamp_seconds",
                "When each ACME certificate is due for renewal (Unix time), by its first name",
            ),
            not_after: gauge(
                "meridian_acme_certificate_expiry_timestamp_seconds",
                "When each ACME certificate in the store expires (Unix time), by its first name",
            ),
            failing: gauge(
                "meridian_acme_renewal_failing",
                "1 if the last order of the certificate failed (its error: meridian status), else 0",
            ),
            failures: gauge(
                "meridian_acme_renewal_failures",
                "Failed orders of the certificate since its last success",
            ),
            info: IntGaugeVec::new(
                Opts::new(
                    "meridian_acme_certificate_info",
                    "1 per ACME certificate in the store: its id (first name), every name it covers \
                     (comma-separated) and its issuer",
                ),
                &["certificate", "names", "issuer"],
            )
            .unwrap_or_else(|_| unreachable!("valid metric name")),
            last_error: IntGaugeVec::new(
                Opts::new(
                    "meridian_acme_last_error_info",
                    "1 per ACME certificate whose last order failed, with the error (cut at 200 bytes)",
                ),
                &["certificate", "error"],
            )
            .unwrap_or_else(|_| unreachable!("valid metric name")),
            // Labelled by the file so that a node without [acme] exports no series (not a 0).
            key_file_ok: IntGaugeVec::new(
                Opts::new(
                    "meridian_acme_key_file_ok",
                    "1 if this node can load acme.key-file (it opens and seals the certificates' keys), \
                     else 0",
                ),
                &["file"],
            )
            .unwrap_or_else(|_| unreachable!("valid metric name")),
            orders: IntCounterVec::new(
                Opts::new(
                    "meridian_acme_orders_total",
                    "ACME orders this node made, by result",
                ),
                &["result"],
            )
            .unwrap_or_else(|_| unreachable!("valid metric name")),
        }
    }

    /// Registers every metric.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.renew_at.clone()))?;
        registry.register(Box::new(self.not_after.clone()))?;
        registry.register(Box::new(self.failing.clone()))?;
        registry.register(Box::new(self.failures.clone()))?;
        registry.register(Box::new(self.info.clone()))?;
        registry.register(Box::new(self.last_error.clone()))?;
        registry.register(Box::new(self.key_file_ok.clone()))?;
        registry.register(Box::new(self.orders.clone()))
    }

    fn observe(&self, settings: &AcmeSettings, snapshot: &Snapshot) {
        for g in [
            &self.renew_at,
            &self.not_after,
            &self.failing,
            &self.failures,
            &self.info,
            &self.last_error,
        ] {
            g.reset();
        }
        for cert in &settings.certificates {
            let id = cert.id();
            if let Some((_, doc)) = snapshot.acme_certs.iter().find(|(i, _)| i == id) {
                self.not_after
                    .with_label_values(&[id])
                    .set((doc.not_after_ms / 1000) as i64);
                self.renew_at
                    .with_label_values(&[id])
                    .set((renew_at_ms(settings, doc) / 1000) as i64);
                self.info
                    .with_label_values(&[id, &doc.names.join(","), &doc.issuer])
                    .set(1);
            }
            let status = snapshot.acme_status.iter().find(|(i, _)| i == id).map(|(_, s)| s);
            self.failing
                .with_label_values(&[id])
                .set(i64::from(status.is_some_and(|s| s.last_error.is_some())));
            self.failures
                .with_label_values(&[id])
                .set(i64::from(status.map_or(0, |s| s.failures)));
            if let Some(e) = status.and_then(|s| s.last_error.as_deref()) {
                let mut cut = e.len().min(ERROR_LABEL_MAX);
                while !e.is_char_boundary(cut) {
                    cut -= 1;
                }
                self.last_error.with_label_values(&[id, &e[..cut]]).set(1);
            }
        }
    }
}

/// How long to wait after the `failures`-th failure in a row (1 for the first): `retry-initial-ms`,
/// doubling per failure, at most `retry-max-ms`.
pub fn backoff_ms(settings: &AcmeSettings, failures: u32) -> u64 {
    u64::from(settings.retry_initial_ms)
        .saturating_mul(1u64 << failures.saturating_sub(1).min(30))
        .min(u64::from(settings.retry_max_ms))
}

/// TTL of the lease the ordering lock lives under (kept alive while a round runs).
pub const LOCK_TTL: Duration = Duration::from_secs(30);

/// When `doc` is due for renewal: `renew-fraction` of its lifetime after it starts.
pub fn renew_at_ms(settings: &AcmeSettings, doc: &AcmeCertDoc) -> u64 {
    settings.renew_at_ms(doc.not_before_ms, doc.not_after_ms)
}

/// Whether `cert` should be ordered now, given its document and status.
pub fn due(
    settings: &AcmeSettings,
    cert: &AcmeCertificate,
    doc: Option<&AcmeCertDoc>,
    status: Option<&AcmeStatusDoc>,
    now_ms: u64,
) -> bool {
    if status.is_some_and(|s| s.next_attempt_ms > now_ms) {
        return false;
    }
    match doc {
        None => true,
        Some(d) => d.names != cert.names || now_ms >= renew_at_ms(settings, d),
    }
}

/// The renewal loop of one node.
pub struct AcmeManager {
    store: Arc<dyn KvStore>,
    keys: Keys,
    watcher: Arc<SnapshotWatcher>,
    holder: String,
    metrics: AcmeMetrics,
    /// The key file looked at last, and its last error logged (logged again only when it changes: the
    /// loop looks every second).
    key_error: std::sync::Mutex<(String, Option<String>)>,
}

impl AcmeManager {
    /// A loop for node `holder` (`ROLE/INSTANCE`).
    pub fn new(
        store: Arc<dyn KvStore>,
        keys: Keys,
        watcher: Arc<SnapshotWatcher>,
        holder: String,
        metrics: AcmeMetrics,
    ) -> Self {
        Self {
            store,
            keys,
            watcher,
            holder,
            metrics,
            key_error: std::sync::Mutex::new((String::new(), None)),
        }
    }

    /// Runs until the task is dropped.
    pub async fn run(self) {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let Some(snapshot) = self.watcher.snapshot() else {
                continue;
            };
            let config = snapshot.topology.config().clone();
            let Some(settings) = config.acme() else { continue };
            self.metrics.observe(settings, &snapshot);
            let _ = self.check_key_file(settings);
            let now = now_ms();
            let any_due = settings.certificates.iter().any(|c| {
                let doc = snapshot
                    .acme_certs
                    .iter()
                    .find(|(i, _)| i == c.id())
                    .map(|(_, d)| d);
                let status = snapshot
                    .acme_status
                    .iter()
                    .find(|(i, _)| i == c.id())
                    .map(|(_, s)| s);
                due(settings, c, doc, status, now)
            });
            if any_due {
                self.round(settings).await;
            }
        }
    }

    /// Loads the key file: sets `meridian_acme_key_file_ok`, logs a new error (once per change).
    fn check_key_file(&self, settings: &AcmeSettings) -> Result<OperatorKey, String> {
        let key = OperatorKey::load(&settings.key_file).map_err(|e| format!("acme.key-file {e}"));
        let file = settings.key_file.display().to_string();
        let mut last = self.key_error.lock().unwrap_or_else(|p| p.into_inner());
        if last.0 != file {
            // A path configured before is no longer this node's key file: only the current one's series.
            self.metrics.key_file_ok.reset();
            last.0.clone_from(&file);
        }
        self.metrics
            .key_file_ok
            .with_label_values(&[&file])
            .set(i64::from(key.is_ok()));
        let now = key.as_ref().err().cloned();
        if now != last.1 {
            match &now {
                Some(e) => tracing::warn!("ACME: cannot order or open certificates: {e}"),
                None => tracing::info!("ACME: acme.key-file loads again"),
            }
            last.1 = now;
        }
        key
    }

    /// Takes the lock, orders what is due, releases the lock.
    async fn round(&self, settings: &AcmeSettings) {
        let lease = match LeaseKeeper::start(self.store.clone(), LOCK_TTL).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("ACME: no lease for the ordering lock: {e}");
                return;
            }
        };
        let lock = self.keys.acme_lock();
        let taken = take_lock(self.store.as_ref(), &lock, &self.holder, lease.id()).await;
        if !matches!(taken, Ok(true)) {
            // Another node orders now (or the store is away): look again next round.
            let _ = lease.stop().await;
            return;
        }
        // Loaded under the lock, so a node that cannot load it records why (status shows it).
        let key = self.check_key_file(settings);
        let mut last_write = 0;
        for cert in &settings.certificates {
            let id = cert.id();
            let cert_key = self.keys.acme_cert(id);
            let status_key = self.keys.acme_status(id);
            // From the store itself: another orderer may have just written them.
            let doc = self.read::<AcmeCertDoc>(&cert_key).await;
            let status = self.read::<AcmeStatusDoc>(&status_key).await;
            let now = now_ms();
            if !due(settings, cert, doc.as_ref(), status.as_ref(), now) {
                continue;
            }
            let result = match &key {
                Ok(key) => {
                    tracing::info!(certificate = id, "ACME: ordering");
                    let ctx = OrderContext {
                        store: &self.store,
                        keys: &self.keys,
                        watcher: &self.watcher,
                        settings,
                        key,
                        lease: lease.id(),
                        holder: &self.holder,
                    };
                    order(&ctx, cert).await
                }
                Err(e) => Err(format!("{}: {e}", self.holder)),
            };
            let failures = status.as_ref().map_or(0, |s| s.failures).saturating_add(1);
            let new_status = match &result {
                Ok(_) => AcmeStatusDoc {
                    schema: DOC_SCHEMA,
                    last_attempt_ms: now,
                    last_success_ms: Some(now_ms()),
                    last_error: None,
                    failures: 0,
                    next_attempt_ms: 0,
                },
                Err(e) => {
                    let wait = backoff_ms(settings, failures);
                    tracing::warn!(certificate = id, "ACME: order failed, next try in {wait} ms: {e}");
                    AcmeStatusDoc {
                        schema: DOC_SCHEMA,
                        last_attempt_ms: now,
                        last_success_ms: status.as_ref().and_then(|s| s.last_success_ms),
                        last_error: Some(e.clone()),
                        failures,
                        next_attempt_ms: now_ms() + wait,
                    }
                }
            };
            let mut ops = vec![TxnOp::Put {
                key: status_key,
                value: encode(&new_status),
                lease: None,
            }];
            match result {
                Ok(doc) => {
                    tracing::info!(
                        certificate = id,
                        not_after_ms = doc.not_after_ms,
                        "ACME: certificate issued"
                    );
                    self.metrics.orders.with_label_values(&["ok"]).inc();
                    ops.push(TxnOp::Put {
                        key: cert_key,
                        value: encode(&doc),
                        lease: None,
                    });
                }
                Err(_) => self.metrics.orders.with_label_values(&["error"]).inc(),
            }
            match self.store.txn(Vec::new(), ops).await {
                Ok(r) => last_write = r.revision,
                Err(e) => tracing::warn!(certificate = id, "ACME: writing the outcome: {e}"),
            }
        }
        // Release only once this node's snapshot shows what it wrote, so that its next round does not
        // order the same certificate again.
        for _ in 0..100 {
            if self.watcher.snapshot().is_some_and(|s| s.revision >= last_write) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = self.store.delete(&lock).await;
        let _ = lease.stop().await;
    }

    async fn read<T: serde::de::DeserializeOwned>(&self, key: &str) -> Option<T> {
        let kv = self.store.get(key).await.ok()??;
        decode(&kv.value).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_config::AcmeKeyType;

    fn settings() -> AcmeSettings {
        let ca = meridian_config::AcmeCa {
            directory: "https://ca/dir".into(),
            contact: Vec::new(),
            ca_root: None,
        };
        AcmeSettings {
            ca: ca.clone(),
            key_type: AcmeKeyType::EcdsaP256,
            key_file: "/k".into(),
            renew_fraction: 2.0 / 3.0,
            retry_initial_ms: 1000,
            retry_max_ms: 8000,
            propagation_timeout_ms: 0,
            propagation_delay_ms: 0,
            certificates: vec![AcmeCertificate {
                names: vec!["a.example".into()],
                key_type: AcmeKeyType::EcdsaP256,
                ca,
            }],
        }
    }

    #[test]
    fn an_account_per_ca_and_contacts() {
        let keys = Keys::new("/m").unwrap();
        let s = settings();
        let key = |ca: &meridian_config::AcmeCa| crate::order::account_key(&keys, &s, ca);
        assert_eq!(key(&s.ca), "/m/acme/account", "[acme]'s CA keeps the one key");
        let mut other = s.ca.clone();
        other.directory = "https://other/dir".into();
        let at_other = key(&other);
        assert!(
            at_other.starts_with("/m/acme/accounts/") && at_other.len() == "/m/acme/accounts/".len() + 16
        );
        let mut other_contact = s.ca.clone();
        other_contact.contact = vec!["mailto:b@x".into()];
        assert_ne!(key(&other_contact), at_other);
        assert_ne!(key(&other_contact), key(&s.ca), "other contacts, another account");
        assert_eq!(key(&other), at_other, "stable");
    }

    fn doc(names: &[&str], from: u64, to: u64) -> AcmeCertDoc {
        AcmeCertDoc {
            schema: 1,
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            chain_pem: String::new(),
            sealed_key: String::new(),
            key_id: String::new(),
            issuer: String::new(),
            not_before_ms: from,
            not_after_ms: to,
            issued_at_ms: from,
            ordered_by: String::new(),
        }
    }

    #[test]
    fn due_when_missing_renamed_or_past_two_thirds_and_not_in_backoff() {
        let s = settings();
        let c = &s.certificates[0];
        assert!(due(&s, c, None, None, 0));
        let d = doc(&["a.example"], 0, 90_000);
        assert_eq!(renew_at_ms(&s, &d), 60_000);
        assert!(!due(&s, c, Some(&d), None, 59_999));
        assert!(due(&s, c, Some(&d), None, 60_000));
        assert!(due(&s, c, Some(&doc(&["b.example"], 0, 90_000)), None, 1));
        let backoff = AcmeStatusDoc {
            schema: 1,
            last_attempt_ms: 60_000,
            last_success_ms: None,
            last_error: Some("x".into()),
            failures: 1,
            next_attempt_ms: 70_000,
        };
        assert!(!due(&s, c, Some(&d), Some(&backoff), 65_000));
        assert!(due(&s, c, Some(&d), Some(&backoff), 70_000));
    }

    #[test]
    fn the_backoff_doubles_per_failure_up_to_its_cap() {
        let s = settings();
        let waits: Vec<u64> = (1..=6).map(|f| backoff_ms(&s, f)).collect();
        assert_eq!(waits, [1000, 2000, 4000, 8000, 8000, 8000]);
        // No overflow however long it fails.
        assert_eq!(backoff_ms(&s, u32::MAX), 8000);
    }

    /// A proxy's loop on an embedded store, with `[acme]` pointing at a CA that refuses connections.
    mod with_a_store {
        #![allow(clippy::unwrap_used)]

        use std::sync::Arc;
        use std::time::Duration;

        use meridian_config::Config;
        use meridian_store::schema::{AcmeStatusDoc, decode, encode};
        use meridian_store::{EmbeddedStore, Keys, KvStore, SnapshotWatcher, WatcherOptions, take_lock};

        use super::super::{AcmeManager, AcmeMetrics, now_ms};

        /// `[acme]` for the fixture deployment (`KEY`: the key file).
        const ACME: &str = r#"[acme]
directory = "https://127.0.0.1:1/dir"
key-file = "KEY"
retry-initial-ms = 1000
retry-max-ms = 3000
[[acme.certificates]]
names = ["meet.gslb.example"]
"#;

        struct Node {
            manager: AcmeManager,
            metrics: AcmeMetrics,
            config: Arc<Config>,
            _watcher: Arc<SnapshotWatcher>,
        }

        fn node(store: &Arc<dyn KvStore>, key_file: &std::path::Path, holder: &str) -> Node {
            let keys = Keys::new("/m/").unwrap();
            let text = format!("{}{ACME}", meridian_config::fixtures::ONE_REGION_WITH_TLS)
                .replace("KEY", &key_file.display().to_string());
            let config = Arc::new(Config::from_toml_str(&text).unwrap());
            let mut options = WatcherOptions::new(keys.clone());
            options.bootstrap = Some(config.clone());
            let watcher = Arc::new(SnapshotWatcher::spawn(store.clone(), options));
            let metrics = AcmeMetrics::new();
            Node {
                manager: AcmeManager::new(
                    store.clone(),
                    keys,
                    watcher.clone(),
                    holder.into(),
                    metrics.clone(),
                ),
                metrics,
                config,
                _watcher: watcher,
            }
        }

        /// Ends the backoff `st` records (as if its time had passed): the next round orders.
        async fn end_backoff(store: &Arc<dyn KvStore>, st: &AcmeStatusDoc) {
            let over = AcmeStatusDoc {
                next_attempt_ms: 0,
                ..st.clone()
            };
            store
                .put(
                    &Keys::new("/m/").unwrap().acme_status("meet.gslb.example"),
                    encode(&over),
                    None,
                )
                .await
                .unwrap();
        }

        async fn status(store: &Arc<dyn KvStore>) -> Option<AcmeStatusDoc> {
            let kv = store
                .get(&Keys::new("/m/").unwrap().acme_status("meet.gslb.example"))
                .await
                .unwrap()?;
            Some(decode(&kv.value).unwrap())
        }

        #[tokio::test]
        async fn a_failed_order_counts_backs_off_doubling_and_a_dead_holders_lock_expires() {
            let dir = tempfile::tempdir().unwrap();
            let key_file = dir.path().join("acme.key");
            std::fs::write(&key_file, "5a".repeat(32)).unwrap();
            let store: Arc<dyn KvStore> = Arc::new(EmbeddedStore::in_memory());
            let keys = Keys::new("/m/").unwrap();
            let a = node(&store, &key_file, "proxy/a");
            let settings = a.config.acme().unwrap().clone();

            // The CA refuses: the order fails, is counted, and backs off retry-initial-ms.
            let before = now_ms();
            a.manager.round(&settings).await;
            let st = status(&store).await.expect("a status after the order");
            assert_eq!(st.failures, 1);
            assert!(
                st.last_error.as_deref().unwrap().contains("127.0.0.1:1"),
                "{st:?}"
            );
            let wait = st.next_attempt_ms - before;
            assert!((1000..2000).contains(&wait), "{wait}");
            assert_eq!(a.metrics.orders.with_label_values(&["error"]).get(), 1);
            assert_eq!(a.metrics.orders.with_label_values(&["ok"]).get(), 0);
            // The lock is released.
            assert!(store.get(&keys.acme_lock()).await.unwrap().is_none());

            // In backoff, a round orders nothing.
            a.manager.round(&settings).await;
            assert_eq!(status(&store).await.unwrap().failures, 1);

            // Once the backoff is over (made so here): the second failure waits twice as long.
            end_backoff(&store, &st).await;
            let before = now_ms();
            a.manager.round(&settings).await;
            let st = status(&store).await.unwrap();
            assert_eq!(st.failures, 2);
            let wait = st.next_attempt_ms - before;
            assert!((2000..3000).contains(&wait), "{wait}");
            assert_eq!(a.metrics.orders.with_label_values(&["error"]).get(), 2);

            // Another node holds the lock, then dies (its lease is no longer kept alive): the other
            // node orders nothing while the lock is held, and orders once the lease has expired.
            let b = node(&store, &key_file, "proxy/b");
            end_backoff(&store, &st).await;
            let dead = store.grant_lease(Duration::from_secs(1)).await.unwrap();
            let taken = take_lock(store.as_ref(), &keys.acme_lock(), "proxy/dead", dead)
                .await
                .unwrap();
            assert!(taken);
            b.manager.round(&settings).await;
            assert_eq!(b.metrics.orders.with_label_values(&["error"]).get(), 0);
            assert_eq!(status(&store).await.unwrap().failures, 2);
            tokio::time::sleep(Duration::from_millis(1500)).await;
            assert!(
                store.get(&keys.acme_lock()).await.unwrap().is_none(),
                "the dead holder's lock outlived its lease"
            );
            b.manager.round(&settings).await;
            assert_eq!(b.metrics.orders.with_label_values(&["error"]).get(), 1);
            let st = status(&store).await.unwrap();
            assert_eq!(st.failures, 3);
            // At the cap.
            let wait = st.next_attempt_ms - now_ms();
            assert!(wait <= 3000, "{wait}");

            // A key file that no longer loads: the metric says so, and the node records why it cannot
            // order, naming itself.
            std::fs::write(&key_file, "short").unwrap();
            end_backoff(&store, &st).await;
            b.manager.round(&settings).await;
            let file = key_file.display().to_string();
            assert_eq!(b.metrics.key_file_ok.with_label_values(&[&file]).get(), 0);
            let st = status(&store).await.unwrap();
            let e = st.last_error.unwrap();
            assert!(e.starts_with("proxy/b: acme.key-file"), "{e}");
        }
    }
}
