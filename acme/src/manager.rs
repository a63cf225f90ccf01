//! The renewal loop every proxy node runs: each second it looks at its snapshot for certificates that
//! are missing, cover other names than configured, or have passed `renew-fraction` of their lifetime,
//! and are not in backoff. Only then does it try the store lease `acme/lock` (one orderer in the fleet);
//! holding it, it reads the certificate and status documents from the store again (its snapshot may lag
//! another orderer's work), orders what is still due, and writes the certificate, or the error with the
//! next attempt's time (the wait doubling per failure, from `retry-initial-ms` up to `retry-max-ms`). The
//! old certificate stays in the store, and serving, until a new one is written.

use std::sync::Arc;
use std::time::Duration;

use meridian_config::{AcmeCertificate, AcmeSettings};
use meridian_store::schema::{AcmeCertDoc, AcmeLockDoc, AcmeStatusDoc, DOC_SCHEMA, decode, encode};
use meridian_store::{Compare, Keys, KvStore, LeaseKeeper, Snapshot, SnapshotWatcher, TxnOp};
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
    orders: IntCounterVec,
}

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
        registry.register(Box::new(self.orders.clone()))
    }

    fn observe(&self, settings: &AcmeSettings, snapshot: &Snapshot) {
        for g in [&self.renew_at, &self.not_after, &self.failing, &self.failures] {
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
            }
            let status = snapshot.acme_status.iter().find(|(i, _)| i == id).map(|(_, s)| s);
            self.failing
                .with_label_values(&[id])
                .set(i64::from(status.is_some_and(|s| s.last_error.is_some())));
            self.failures
                .with_label_values(&[id])
                .set(i64::from(status.map_or(0, |s| s.failures)));
        }
    }
}

/// When `doc` is due for renewal: `renew-fraction` of its lifetime after it starts.
pub fn renew_at_ms(settings: &AcmeSettings, doc: &AcmeCertDoc) -> u64 {
    let life = doc.not_after_ms.saturating_sub(doc.not_before_ms) as f64;
    doc.not_before_ms + (life * settings.renew_fraction) as u64
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

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The renewal loop of one node.
pub struct AcmeManager {
    store: Arc<dyn KvStore>,
    keys: Keys,
    watcher: Arc<SnapshotWatcher>,
    holder: String,
    metrics: AcmeMetrics,
    /// The last key-file error logged (logged again only when it changes: the loop looks every second).
    key_error: std::sync::Mutex<Option<String>>,
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
            key_error: std::sync::Mutex::new(None),
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

    /// Takes the lock, orders what is due, releases the lock.
    async fn round(&self, settings: &AcmeSettings) {
        let key = OperatorKey::load(&settings.key_file);
        {
            let mut last = self.key_error.lock().unwrap_or_else(|p| p.into_inner());
            let now = key.as_ref().err().cloned();
            if now != *last {
                if let Some(e) = &now {
                    tracing::warn!("ACME: cannot order: acme.key-file {e}");
                }
                *last = now;
            }
        }
        let Ok(key) = key else { return };
        let lease = match LeaseKeeper::start(self.store.clone(), Duration::from_secs(30)).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("ACME: no lease for the ordering lock: {e}");
                return;
            }
        };
        let lock = self.keys.acme_lock();
        let doc = AcmeLockDoc {
            schema: DOC_SCHEMA,
            holder: self.holder.clone(),
            since_ms: now_ms(),
        };
        let taken = self
            .store
            .txn(
                vec![Compare {
                    key: lock.clone(),
                    mod_revision: 0,
                }],
                vec![TxnOp::Put {
                    key: lock.clone(),
                    value: encode(&doc),
                    lease: Some(lease.id()),
                }],
            )
            .await;
        if !matches!(taken, Ok(ref r) if r.succeeded) {
            // Another node orders now (or the store is away): look again next round.
            let _ = lease.stop().await;
            return;
        }
        let ctx = OrderContext {
            store: &self.store,
            keys: &self.keys,
            watcher: &self.watcher,
            settings,
            key: &key,
            lease: lease.id(),
            holder: &self.holder,
        };
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
            tracing::info!(certificate = id, "ACME: ordering");
            let result = order(&ctx, cert).await;
            let failures = status.as_ref().map_or(0, |s| s.failures);
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
                    let wait = u64::from(settings.retry_initial_ms)
                        .saturating_mul(1u64 << failures.min(30))
                        .min(u64::from(settings.retry_max_ms));
                    tracing::warn!(certificate = id, "ACME: order failed, next try in {wait} ms: {e}");
                    AcmeStatusDoc {
                        schema: DOC_SCHEMA,
                        last_attempt_ms: now,
                        last_success_ms: status.as_ref().and_then(|s| s.last_success_ms),
                        last_error: Some(e.clone()),
                        failures: failures.saturating_add(1),
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
        AcmeSettings {
            directory: "https://ca/dir".into(),
            contact: Vec::new(),
            key_type: AcmeKeyType::EcdsaP256,
            ca_root: None,
            key_file: "/k".into(),
            renew_fraction: 2.0 / 3.0,
            retry_initial_ms: 1000,
            retry_max_ms: 8000,
            propagation_delay_ms: 0,
            certificates: vec![AcmeCertificate {
                names: vec!["a.example".into()],
            }],
        }
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
}
