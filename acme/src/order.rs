//! One order, start to finish, with instant-acme: the account (created once, its credentials sealed in
//! the store), the order, the DNS-01 answers published in the store under the orderer's lease and
//! waited for in this node's own snapshot and then until every live DNS node reports serving their
//! revision (`propagation`, at most `propagation-timeout-ms`; then `propagation-delay-ms` more), the CA
//! told to look, the order polled until ready, finalised with a CSR for a key made here, the chain
//! fetched. The challenge keys are deleted however the order ends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder,
    OrderStatus, RetryPolicy,
};
use meridian_config::{AcmeCa, AcmeCertificate, AcmeKeyType, AcmeSettings};
use meridian_store::schema::{AcmeAccountDoc, AcmeCertDoc, AcmeChallengeDoc, DOC_SCHEMA, decode, encode};
use meridian_store::{Keys, KvStore, LeaseId, SnapshotWatcher, now_ms};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::propagation::wait_for_dns_nodes;
use crate::seal::OperatorKey;

/// What an order needs around it.
pub(crate) struct OrderContext<'a> {
    pub(crate) store: &'a Arc<dyn KvStore>,
    pub(crate) keys: &'a Keys,
    pub(crate) watcher: &'a SnapshotWatcher,
    pub(crate) settings: &'a AcmeSettings,
    pub(crate) key: &'a OperatorKey,
    /// The orderer's lease: the challenge keys live under it.
    pub(crate) lease: LeaseId,
    /// `ROLE/INSTANCE` of this node.
    pub(crate) holder: &'a str,
}

/// Where the account at `ca` is kept: `acme/account` for `[acme]`'s CA, `acme/accounts/ID` for a
/// certificate's own, `ID` the first 16 hex digits of SHA-256 over its directory and contacts (one account
/// per CA and contacts).
pub(crate) fn account_key(keys: &Keys, settings: &AcmeSettings, ca: &AcmeCa) -> String {
    if *ca == settings.ca {
        return keys.acme_account();
    }
    let mut text = ca.directory.clone();
    for c in &ca.contact {
        text.push('\n');
        text.push_str(c);
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    let id: String = digest.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect();
    keys.acme_account_at(&id)
}

/// The account at `ca`: the stored one, or a new one (stored, sealed).
async fn account(ctx: &OrderContext<'_>, ca: &AcmeCa) -> Result<Account, String> {
    let builder = || match &ca.ca_root {
        Some(root) => {
            Account::builder_with_root(root).map_err(|e| format!("acme.ca-root {}: {e}", root.display()))
        }
        None => Account::builder().map_err(|e| format!("ACME HTTP client: {e}")),
    };
    let key = account_key(ctx.keys, ctx.settings, ca);
    let stored = ctx
        .store
        .get(&key)
        .await
        .map_err(|e| format!("reading {key}: {e}"))?;
    if let Some(kv) = stored {
        match decode::<AcmeAccountDoc>(&kv.value) {
            Ok(doc) if doc.directory == ca.directory => {
                let json = ctx.key.open(&key, &doc.key_id, &doc.sealed_credentials)?;
                let creds: AccountCredentials = serde_json::from_slice(&json)
                    .map_err(|e| format!("{key}: the sealed credentials are not ACME credentials: {e}"))?;
                return builder()?
                    .from_credentials(creds)
                    .await
                    .map_err(|e| format!("restoring the ACME account at {}: {e}", ca.directory));
            }
            // Another directory (the operator moved to another CA): a new account there.
            Ok(_) => {}
            Err(e) => tracing::warn!("{key}: {e}; creating a new ACME account"),
        }
    }
    let contact: Vec<&str> = ca.contact.iter().map(String::as_str).collect();
    let (account, creds) = builder()?
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            ca.directory.clone(),
            None,
        )
        .await
        .map_err(|e| format!("creating an ACME account at {}: {e}", ca.directory))?;
    let json = serde_json::to_vec(&creds).map_err(|e| format!("serialising ACME credentials: {e}"))?;
    let doc = AcmeAccountDoc {
        schema: DOC_SCHEMA,
        directory: ca.directory.clone(),
        sealed_credentials: ctx.key.seal(&key, &json)?,
        key_id: ctx.key.id().to_owned(),
    };
    ctx.store
        .put(&key, encode(&doc), None)
        .await
        .map_err(|e| format!("writing {key}: {e}"))?;
    tracing::info!(directory = %ca.directory, "ACME account created");
    Ok(account)
}

/// Orders `cert` and returns its document, ready to store (not stored).
pub(crate) async fn order(ctx: &OrderContext<'_>, cert: &AcmeCertificate) -> Result<AcmeCertDoc, String> {
    let mut published = Vec::new();
    let result = order_inner(ctx, cert, &mut published).await;
    for key in published {
        if let Err(e) = ctx.store.delete(&key).await {
            tracing::warn!("deleting the challenge {key}: {e} (it goes with the orderer's lease)");
        }
    }
    result
}

async fn order_inner(
    ctx: &OrderContext<'_>,
    cert: &AcmeCertificate,
    published: &mut Vec<String>,
) -> Result<AcmeCertDoc, String> {
    let account = account(ctx, &cert.ca).await?;
    let identifiers: Vec<Identifier> = cert.names.iter().map(|n| Identifier::Dns(n.clone())).collect();
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(|e| format!("new order: {e}"))?;

    // The answers of every pending authorisation (one reused from an earlier order may be valid).
    let mut answers: Vec<(String, String)> = Vec::new();
    {
        let mut authzs = order.authorizations();
        while let Some(authz) = authzs.next().await {
            let mut authz = authz.map_err(|e| format!("fetching an authorisation: {e}"))?;
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => return Err(format!("authorisation {other:?} at the start of the order")),
            }
            let challenge = authz
                .challenge(ChallengeType::Dns01)
                .ok_or_else(|| "the CA offers no dns-01 challenge".to_owned())?;
            answers.push((
                challenge.identifier().to_string(),
                challenge.key_authorization().dns_value(),
            ));
        }
    }
    // One key per name; two authorisations of one name in an order (rare) answer with both values.
    let mut by_name: std::collections::BTreeMap<&str, Vec<String>> = std::collections::BTreeMap::new();
    for (name, value) in &answers {
        by_name.entry(name).or_default().push(value.clone());
    }
    let mut written = 0;
    for (name, values) in by_name {
        let key = ctx.keys.acme_challenge(name);
        let doc = AcmeChallengeDoc {
            schema: DOC_SCHEMA,
            values,
            holder: ctx.holder.to_owned(),
        };
        let revision = ctx
            .store
            .put(&key, encode(&doc), Some(ctx.lease))
            .await
            .map_err(|e| format!("publishing {key}: {e}"))?;
        written = written.max(revision);
        published.push(key);
    }
    wait_until_answered(ctx, &answers).await?;
    if written > 0 {
        let limit = Duration::from_millis(u64::from(ctx.settings.propagation_timeout_ms));
        let p = wait_for_dns_nodes(ctx.store.as_ref(), ctx.keys, written, limit).await;
        if !p.lagging.is_empty() {
            tracing::warn!(
                certificate = cert.id(),
                "ACME: asking the CA to validate although DNS nodes lag after {} ms: {}",
                limit.as_millis(),
                p.lagging.join(", ")
            );
        }
        if !p.silent.is_empty() {
            tracing::warn!(
                certificate = cert.id(),
                "ACME: not waiting for silent DNS nodes: {}",
                p.silent.join(", ")
            );
        }
        tracing::info!(
            certificate = cert.id(),
            revision = written,
            "ACME: challenge records served by DNS nodes {:?}",
            p.caught_up
        );
    }
    tokio::time::sleep(Duration::from_millis(u64::from(
        ctx.settings.propagation_delay_ms,
    )))
    .await;

    {
        let mut authzs = order.authorizations();
        while let Some(authz) = authzs.next().await {
            let mut authz = authz.map_err(|e| format!("fetching an authorisation: {e}"))?;
            if authz.status != AuthorizationStatus::Pending {
                continue;
            }
            let Some(mut challenge) = authz.challenge(ChallengeType::Dns01) else {
                continue;
            };
            challenge
                .set_ready()
                .await
                .map_err(|e| format!("telling the CA to validate: {e}"))?;
        }
    }
    // The CA may take its time (Pebble sleeps up to 15 s per validation, by design).
    let polling = RetryPolicy::new()
        .initial_delay(Duration::from_millis(500))
        .backoff(1.5)
        .timeout(Duration::from_secs(300));
    let status = order
        .poll_ready(&polling)
        .await
        .map_err(|e| format!("waiting for validation: {e}"))?;
    if status != OrderStatus::Ready {
        let mut why = Vec::new();
        let mut authzs = order.authorizations();
        while let Some(Ok(mut a)) = authzs.next().await {
            if let Ok(state) = a.refresh().await {
                for c in &state.challenges {
                    if let Some(e) = &c.error {
                        why.push(format!("{}: {e}", state.identifier()));
                    }
                }
            }
        }
        return Err(format!("the order is {status:?}: {}", why.join("; ")));
    }

    let alg = match cert.key_type {
        AcmeKeyType::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        AcmeKeyType::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
    };
    let key_pair = rcgen::KeyPair::generate_for(alg).map_err(|e| format!("making a key: {e}"))?;
    let mut params = rcgen::CertificateParams::new(cert.names.clone()).map_err(|e| format!("CSR: {e}"))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params
        .serialize_request(&key_pair)
        .map_err(|e| format!("CSR: {e}"))?;
    order
        .finalize_csr(csr.der())
        .await
        .map_err(|e| format!("finalising the order: {e}"))?;
    let chain_pem = order
        .poll_certificate(&polling)
        .await
        .map_err(|e| format!("fetching the certificate: {e}"))?;

    // Checked as the proxies will load it: chain parses, key matches.
    let store_key = ctx.keys.acme_cert(cert.id());
    let label = std::path::Path::new(&store_key);
    let chain: Vec<CertificateDer<'static>> = meridian_tls::certs::parse_chain(label, chain_pem.as_bytes())
        .map_err(|e| format!("the CA's certificate: {e}"))?;
    let der = key_pair.serialize_der();
    let loaded = meridian_tls::certs::from_parts(
        label,
        label,
        chain,
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der.clone())),
    )
    .map_err(|e| format!("the CA's certificate: {e}"))?;
    Ok(AcmeCertDoc {
        schema: DOC_SCHEMA,
        names: cert.names.clone(),
        chain_pem,
        sealed_key: ctx.key.seal(&store_key, &der)?,
        key_id: ctx.key.id().to_owned(),
        issuer: loaded.issuer,
        not_before_ms: u64::try_from(loaded.not_before).unwrap_or(0).saturating_mul(1000),
        not_after_ms: u64::try_from(loaded.not_after).unwrap_or(0).saturating_mul(1000),
        issued_at_ms: now_ms(),
        ordered_by: ctx.holder.to_owned(),
    })
}

/// Waits until this node's snapshot answers every value (so its DNS does; the others follow the store
/// as it does).
async fn wait_until_answered(ctx: &OrderContext<'_>, answers: &[(String, String)]) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let snapshot = ctx.watcher.snapshot();
        let all = answers.iter().all(|(name, value)| {
            let owner = format!("_acme-challenge.{}", name.strip_prefix("*.").unwrap_or(name));
            snapshot
                .as_ref()
                .and_then(|s| s.acme_challenges.get(&owner))
                .is_some_and(|vs| vs.contains(value))
        });
        if all {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("the challenge records did not reach this node's snapshot within 30 s".to_owned());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
